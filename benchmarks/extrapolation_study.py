"""The length-extrapolation study as a script (the same as ``tfa extrapolate``).

    python benchmarks/extrapolation_study.py --recipe cpu --out runs/study
    python benchmarks/extrapolation_study.py --recipe cuda --out runs/study-gpu   # on a GPU

Trains every variant (each position scheme on both blocks, and the factored block's ablations) at a
learning rate chosen per variant on held-out tuning text, with three seeds, evaluates every run at 1x
to 16x the training length on the other half of the held-out text, and writes report.md,
results.csv, summary.csv, sweep.csv, chosen.json, perplexity.png and loss_by_position.png into
--out. Started again with the same --out, it runs only what is missing. Every flag of
``tfa extrapolate`` works here (--seeds, --lrs, --models, --no-ablations, --eval-tokens, ...).
"""

import sys

from machine import describe_machine
from tfa_core.cli import main

if __name__ == "__main__":
    print(describe_machine())
    sys.exit(main(["extrapolate", *sys.argv[1:]]))
