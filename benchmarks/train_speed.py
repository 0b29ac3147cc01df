"""Training throughput of FactoredALiBi against Vanilla (GPT-2 style) at the same sizes.

    python benchmarks/train_speed.py [--preset character] [--widths 128] [--batch-size 32]
                                     [--block-size N] [--rounds 9] [--steps 5]

Both models train on the same random batches, with AdamW, at the preset's depth, heads and length;
``--widths 128,256`` repeats the comparison at other widths ``n_embd``. Their timing rounds are
interleaved (A, B, A, B, ...) so that a busy machine slows both alike. Prints the median tokens/s
of each, the ratio, and the attention kernel each used: Vanilla takes PyTorch's fused causal path
(``is_causal``), the factored model the fused kernel with the shared ``(1, H, T, T)`` ALiBi bias.

Where the factored model's speed comes from: per block it has ``10 C^2`` weights (Q, K, the MLP)
against Vanilla's ``12 C^2`` (plus V and the output projection), while attention itself costs both
the same. So the ratio rises with the width, as the matrices take a larger share of the time.
"""

import argparse
import statistics
import time

import torch

from machine import describe_machine
from tfa_core import get_model, load_alibi_config_preset
from tfa_core.training.trainer import TrainingConfig, configure_optimizer


def compare(preset: str, width: int | None, vocab_size: int, batch_size: int, rounds: int, steps: int,
            names: list[str], block_size: int | None = None) -> dict[str, float]:
    """Median training tokens/s of each model at one size, timed in interleaved rounds."""
    torch.manual_seed(0)
    overrides = dict(vocab_size=vocab_size, dropout=0.0)
    if width is not None:
        overrides["n_embd"] = width
    if block_size is not None:
        overrides["block_size"] = block_size
    runs = {}
    for name in names:
        config = load_alibi_config_preset(preset, **overrides)
        model = get_model(name, config)
        runs[name] = (model, configure_optimizer(model, TrainingConfig()), [])
    T = config.block_size
    batch = torch.randint(0, vocab_size, (batch_size, T))
    print(f"\n{preset} preset, width {config.n_embd}: {config.n_layer} layers, {config.n_head} heads, "
          f"batch {batch_size} x {T} tokens, {rounds} rounds of {steps} steps")

    def train(model, optimizer, n):
        for _ in range(n):
            loss = model(batch, labels=batch)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    for model, optimizer, _ in runs.values():
        train(model, optimizer, 2)  # warm-up
    for _ in range(rounds):
        for model, optimizer, rates in runs.values():
            start = time.perf_counter()
            train(model, optimizer, steps)
            rates.append(steps * batch_size * T / (time.perf_counter() - start))

    medians = {}
    for name, (model, _, rates) in runs.items():
        medians[name] = statistics.median(rates)
        alibi = model.alibi_slopes is not None
        kernel = "fused, ALiBi bias" if alibi else "fused, is_causal"
        print(f"  {name:<14} {model.get_num_params(non_embedding=False):>11,} params  "
              f"{medians[name]:>9,.0f} tokens/s (median; min {min(rates):,.0f}, max {max(rates):,.0f})"
              f"  attention: {kernel}")
    if len(names) == 2:
        print(f"  {names[0]} / {names[1]} = {medians[names[0]] / medians[names[1]]:.2f}x")
    return medians


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="character")
    parser.add_argument("--widths", default="", help="comma-separated n_embd values (default: the preset's)")
    parser.add_argument("--vocab-size", type=int, default=81)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--block-size", type=int, help="training length (default: the preset's)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=5, help="training steps per timing round")
    parser.add_argument("--models", default="FactoredALiBi,Vanilla")
    args = parser.parse_args()

    print(describe_machine())
    widths = [int(w) for w in args.widths.split(",")] if args.widths else [None]
    names = args.models.split(",")
    ratios = []
    for width in widths:
        medians = compare(args.preset, width, args.vocab_size, args.batch_size, args.rounds, args.steps,
                          names, args.block_size)
        if len(names) == 2:
            ratios.append((width, medians[names[0]] / medians[names[1]]))
    if len(ratios) > 1:
        print("\n" + ", ".join(f"width {w}: {r:.2f}x" for w, r in ratios))


if __name__ == "__main__":
    main()
