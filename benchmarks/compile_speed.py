"""Training throughput eager against ``torch.compile`` on this machine's CPU (or GPU), both models.

    python benchmarks/compile_speed.py [--preset character] [--batch-size 32] [--rounds 9] [--steps 5]
                                       [--mode default|reduce-overhead|max-autotune]

FactoredALiBi and Vanilla at the preset's size, AdamW, the same random batch. Each of the four runs
(two models, eager and compiled) first takes two warm-up steps -- for a compiled model that is the
compilation, timed and printed -- then their timing rounds are interleaved (A, B, C, D, A, ...) so
that a busy machine slows all four alike. Prints the median tokens/s of each, compiled over eager
per model, and compiled FactoredALiBi over compiled Vanilla. The compiled logits are checked against
eager ones before timing. On a CPU Inductor needs a C++ compiler; without one the script says so.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from machine import describe_machine
from tfa_core import get_model, load_alibi_config_preset
from tfa_core.training.trainer import TrainingConfig, configure_optimizer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="character")
    parser.add_argument("--vocab-size", type=int, default=81)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=5, help="training steps per timing round")
    parser.add_argument("--models", default="FactoredALiBi,Vanilla")
    parser.add_argument("--mode", default="default", choices=["default", "reduce-overhead", "max-autotune"],
                        help="torch.compile's mode (max-autotune also tries Inductor's own GEMM kernels)")
    args = parser.parse_args()
    print(describe_machine())
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    config = load_alibi_config_preset(args.preset, vocab_size=args.vocab_size, dropout=0.0)
    T = config.block_size
    batch = torch.randint(0, args.vocab_size, (args.batch_size, T), device=device)
    print(f"{args.preset} preset: {config.n_layer} layers, {config.n_head} heads, {config.n_embd} wide, "
          f"batch {args.batch_size} x {T}, {args.rounds} rounds of {args.steps} steps, on {device}, "
          f"torch.compile mode {args.mode!r}")

    runs = {}
    for name in args.models.split(","):
        for compiled in (False, True):
            torch.manual_seed(0)
            model = get_model(name, config.copy()).to(device)
            forward = torch.compile(model, mode=args.mode) if compiled else model
            runs[(name, compiled)] = dict(model=model, forward=forward, rates=[],
                                          optimizer=configure_optimizer(model, TrainingConfig()))

    def train(run, n):
        for _ in range(n):
            loss = run["forward"](batch, labels=batch)["loss"]
            run["optimizer"].zero_grad(set_to_none=True)
            loss.backward()
            run["optimizer"].step()

    for (name, compiled), run in runs.items():
        if compiled:
            with torch.no_grad():
                eager_logits = run["model"](batch[:2])["logits"]
            try:
                with torch.no_grad():
                    compiled_logits = run["forward"](batch[:2])["logits"]
            except Exception as error:  # e.g. no C++ compiler for Inductor
                print(f"  {name} could not be compiled here: {str(error).strip().splitlines()[0][:160]}")
                return 1
            gap = (compiled_logits - eager_logits).abs().max().item()
            print(f"  {name}: compiled logits differ from eager by at most {gap:.1e}")
        start = time.perf_counter()
        train(run, 2)  # warm-up; for the compiled model, compilation
        run["warmup"] = time.perf_counter() - start
    for _ in range(args.rounds):
        for run in runs.values():
            start = time.perf_counter()
            train(run, args.steps)
            run["rates"].append(args.steps * args.batch_size * T / (time.perf_counter() - start))

    print("\n| model | eager tok/s | compiled tok/s | compiled / eager | compile + 2 steps |")
    print("|---|---:|---:|---:|---:|")
    median = {key: statistics.median(run["rates"]) for key, run in runs.items()}
    for name in args.models.split(","):
        eager, compiled = median[(name, False)], median[(name, True)]
        print(f"| {name} | {eager:,.0f} | {compiled:,.0f} | {compiled / eager:.2f}x | "
              f"{runs[(name, True)]['warmup']:.0f} s |")
    names = args.models.split(",")
    if len(names) == 2:
        a, b = names
        print(f"\ncompiled {a} / compiled {b} = {median[(a, True)] / median[(b, True)]:.2f}x; "
              f"eager {a} / eager {b} = {median[(a, False)] / median[(b, False)]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
