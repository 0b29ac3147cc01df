"""Peak memory and time of one evaluation forward pass at long lengths (the character preset).

    python benchmarks/long_eval_memory.py [--lengths 1024,4096,16384] [--dense-up-to 4096]

Each point runs in a fresh process (peak resident memory only grows). "peak growth" is what the
forward pass added to the process's peak resident memory, "process peak" the whole process's, torch
included. The default path attends in query blocks (tfa_core.model.fast_attention.QUERY_BLOCK rows, fewer past
16k keys so that a block's bias stays under BLOCK_BIAS_BYTES); "dense" rows force one block holding
the whole H x T x T bias, for comparison where it still fits. Resident memory includes what glibc
keeps after a free; MALLOC_MMAP_THRESHOLD_=1048576 in the environment shows memory actually in use.
"""

import argparse
import json
import subprocess
import sys

from machine import describe_machine

CODE = """
import json, sys
import tfa_core.model.fast_attention as attention
from tfa_core.experiments.comparison import measure_forward
args = json.loads(sys.argv[1])
if args.pop("dense"):
    attention.QUERY_BLOCK = 10 ** 9
print(json.dumps(measure_forward(**args)))
"""

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1024,4096,16384")
    parser.add_argument("--dense-up-to", type=int, default=4096)
    parser.add_argument("--model", default="FactoredALiBi")
    args = parser.parse_args()
    print(describe_machine())
    lengths = [int(n) for n in args.lengths.split(",")]
    print(f"{args.model}, character preset (4L-4H-128D, vocab 81), batch 1, inference")
    print(f"{'path':<8} {'length':>7} {'time (s)':>9} {'peak growth (MB)':>17} {'process peak (MB)':>18}")
    for dense in (False, True):
        for length in lengths:
            if dense and length > args.dense_up_to:
                continue
            point = dict(name=args.model, length=length, preset="character", max_length=max(lengths),
                         vocab_size=81, repeats=1, dense=dense)
            done = subprocess.run([sys.executable, "-c", CODE, json.dumps(point)], capture_output=True,
                                  text=True, check=True)
            row = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{'dense' if dense else 'blocks':<8} {length:>7} {row['forward_ms'] / 1000:>9.2f} "
                  f"{row['peak_mb']:>17.0f} {row['process_peak_mb']:>18.0f}", flush=True)
