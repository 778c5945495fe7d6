"""Run the LoRA-composition benchmark: `python run_all.py --methods loraflow,lorahub` (see --help)."""

import sys

from bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
