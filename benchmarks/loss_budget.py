"""Validation loss reached in a fixed wall-clock budget: the character preset's FactoredALiBi next
to Vanilla of the same size, on the Markdown-stripped Shakespeare corpus.

    python benchmarks/loss_budget.py [--seconds 180] [--models FactoredALiBi,Vanilla]

Each model gets the same budget, data, seed, batch size and schedule shape (warmup then cosine decay
to the step count that its measured speed fits in the budget). This is a measurement, not a target.
"""

import argparse
import time

import torch

from machine import describe_machine
from tfa_core import create_tokenizer, get_model, load_alibi_config_preset, load_shakespeare, train_val_split
from tfa_core.training.trainer import Trainer, TrainingConfig, estimate_loss


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="training budget per model")
    parser.add_argument("--models", default="FactoredALiBi,Vanilla")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args()

    print(describe_machine())
    text = load_shakespeare(strip_markdown=True)
    tokenizer = create_tokenizer("character", text=text)
    train, val = train_val_split(torch.tensor(tokenizer.encode(text)), 0.1)
    print(f"{len(train):,} training and {len(val):,} validation characters; "
          f"budget {args.seconds:.0f} s per model")
    print(f"{'model':<14} {'params':>9} {'steps':>6} {'train s':>8} {'val loss':>9}")
    for name in args.models.split(","):
        config = load_alibi_config_preset("character", dropout=0.0).update_from_tokenizer(tokenizer)
        torch.manual_seed(args.seed)
        model = get_model(name, config)
        common = dict(batch_size=args.batch_size, learning_rate=config.learning_rate, seed=args.seed,
                      warmup_steps=20, eval_interval=10 ** 9, progress=False)
        # measure this model's step time, then size the schedule to the budget
        probe = Trainer(model, train, None, TrainingConfig(max_steps=10 ** 6, **common))
        start = time.perf_counter()
        for _ in range(5):
            probe.train_step()
        steps = max(20, int(args.seconds / ((time.perf_counter() - start) / 5)))
        torch.manual_seed(args.seed)
        model = get_model(name, config)
        trainer = Trainer(model, train, None, TrainingConfig(max_steps=steps, **common))
        start = time.perf_counter()
        trainer.fit()
        elapsed = time.perf_counter() - start
        val_loss = estimate_loss(model, val, config.block_size, batch_size=64,
                                 tokens_scored=min(20 * 64 * config.block_size, len(val) - 1))
        params = model.get_num_params(non_embedding=False)
        print(f"{name:<14} {params:>9,} {steps:>6} {elapsed:>8.0f} {val_loss:>9.3f}", flush=True)


if __name__ == "__main__":
    main()
