"""Training throughput of FactoredALiBi against Vanilla (GPT-2 style) at the same sizes.

    python benchmarks/train_speed.py [--preset character] [--batch-size 32] [--rounds 5] [--steps 5]

Both models train on the same random batches; their timing rounds are interleaved (A, B, A, B, ...)
so that a busy machine slows both alike. Prints the median tokens/s of each and the ratio.
"""

import argparse
import statistics
import time

import torch

from machine import describe_machine
from tfa_core import get_model, load_alibi_config_preset
from tfa_core.training import TrainingConfig, configure_optimizer


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="character")
    parser.add_argument("--vocab-size", type=int, default=81)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="training steps per timing round")
    parser.add_argument("--models", default="FactoredALiBi,Vanilla")
    args = parser.parse_args()

    print(describe_machine())
    torch.manual_seed(0)
    runs = {}
    for name in args.models.split(","):
        config = load_alibi_config_preset(args.preset, vocab_size=args.vocab_size, dropout=0.0)
        model = get_model(name, config)
        runs[name] = (model, configure_optimizer(model, TrainingConfig()), [])
    T = config.block_size
    batch = torch.randint(0, args.vocab_size, (args.batch_size, T))
    print(f"preset {args.preset}: {config.n_layer} layers, {config.n_head} heads, width {config.n_embd}, "
          f"batch {args.batch_size} x {T} tokens")

    def train(model, optimizer, steps):
        for _ in range(steps):
            loss = model(batch, labels=batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    for model, optimizer, _ in runs.values():
        train(model, optimizer, 2)  # warm-up
    for _ in range(args.rounds):
        for model, optimizer, rates in runs.values():
            start = time.perf_counter()
            train(model, optimizer, args.steps)
            rates.append(args.steps * args.batch_size * T / (time.perf_counter() - start))

    medians = {}
    for name, (model, _, rates) in runs.items():
        medians[name] = statistics.median(rates)
        print(f"{name:<14} {model.get_num_params(non_embedding=False):>11,} params  "
              f"{medians[name]:>9,.0f} tokens/s (median of {args.rounds} rounds; "
              f"min {min(rates):,.0f}, max {max(rates):,.0f})")
    names = list(medians)
    if len(names) == 2:
        print(f"{names[0]} / {names[1]} = {medians[names[0]] / medians[names[1]]:.2f}x")


if __name__ == "__main__":
    main()
