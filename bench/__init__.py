"""The harness: suites (model, zoo, task data), the experiment grid, scoring, reports and benchmarks."""
