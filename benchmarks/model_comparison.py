"""The tutorial's model comparison: parameters, peak memory and forward time against length.

    python benchmarks/model_comparison.py [--preset small] [--lengths 128,256,512,1024,2048] [--out DIR]

Prints a table and writes comparison.png (2 x 2) and comparison.json into --out.
"""

import argparse

from machine import describe_machine
from tfa_core.experiments.comparison import COMPARED_MODELS, run_comprehensive_comparison

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--lengths", default="128,256,512,1024,2048")
    parser.add_argument("--models", default=",".join(COMPARED_MODELS))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", default="benchmarks/results/comparison")
    args = parser.parse_args()
    print(describe_machine())
    run_comprehensive_comparison([int(n) for n in args.lengths.split(",")], args.models.split(","),
                                 preset=args.preset, device=args.device, out_dir=args.out)
