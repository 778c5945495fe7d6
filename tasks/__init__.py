"""What to solve: task data, prompts and scorers."""
