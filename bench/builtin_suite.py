"""The built-in suite (generated tasks, a small base model and zoo built on CPU): registered as `builtin`."""
