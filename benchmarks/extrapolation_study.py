"""The length-extrapolation study as a script (the same as ``tfa extrapolate``).

    python benchmarks/extrapolation_study.py --recipe cpu --out runs/study
    python benchmarks/extrapolation_study.py --recipe cuda --out runs/study-gpu   # on a GPU

Trains every position scheme with one seed, data, step count and training length, evaluates each
at 1x to 16x the training length, and writes results.csv, report.md, perplexity.png and
loss_by_position.png into --out.
"""

import sys

from machine import describe_machine
from tfa_core.cli import main

if __name__ == "__main__":
    print(describe_machine())
    sys.exit(main(["extrapolate", *sys.argv[1:]]))
