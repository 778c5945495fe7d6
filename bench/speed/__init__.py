"""Speed and memory benchmarks: each prints ratios measured side by side in one run."""
