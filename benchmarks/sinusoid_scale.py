"""How loud should sinusoidal positions be next to the token embeddings? Three ways, measured.

    python benchmarks/sinusoid_scale.py [--steps 300] [--variants unscaled,tokens_x_sqrt_d,sinusoid_x_std]

"Attention Is All You Need" (Vaswani et al. 2017, section 3.4) multiplies the embedding weights by
``sqrt(d_model)`` and adds unit-amplitude sinusoids. Our embeddings start at GPT-2's std 0.02, so
the three candidates for ``FactoredSinusoidal`` are:

- ``unscaled``: token embedding + sinusoid, what the package did before issue #19 (the sinusoid
  is about 35x the token embedding's norm at 128 channels);
- ``tokens_x_sqrt_d``: ``sqrt(C)`` x token embedding + sinusoid, the paper's formula taken literally
  with our initialisation (the output head stays tied and unscaled);
- ``sinusoid_x_std``: token embedding + 0.02 x sinusoid, the paper's ratio of the two (its
  embeddings start at std ``1/sqrt(C)``, so ``sqrt(C)`` x embedding is std 1 per channel against
  the sinusoid's ``1/sqrt(2)``) at our initialisation's scale -- what ``CausalLanguageModel.embed``
  now does.

Each variant trains the character preset with the study's CPU recipe (seed, batch 32, learning rate
1e-3, warmup 50) for ``--steps`` steps; it prints the two norms at initialisation and the
perplexity per character at the training length (128) and at 4x, non-overlapping windows.
"""

import argparse
import math
import time

import torch

from machine import describe_machine
from tfa_core import create_tokenizer, get_model, load_alibi_config_preset, load_shakespeare, train_val_split
from tfa_core.experiments.evaluation import evaluate_length
from tfa_core.model.common import INIT_STD
from tfa_core.model.positions import sinusoidal_embeddings
from tfa_core.training.trainer import Trainer, TrainingConfig

# variant -> (token scale, sinusoid scale), given the width C
VARIANTS = {
    "unscaled": lambda C: (1.0, 1.0),
    "tokens_x_sqrt_d": lambda C: (math.sqrt(C), 1.0),
    "sinusoid_x_std": lambda C: (1.0, INIT_STD),
}


def use_variant(model, token_scale: float, sinusoid_scale: float) -> None:
    """Make ``model.embed`` return ``token_scale * wte(ids) + sinusoid_scale * sinusoid``."""
    def embed(input_ids, start=0):
        positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
        table = sinusoidal_embeddings(positions, model.config.n_embd)  # (T, C)
        return token_scale * model.transformer.wte(input_ids) + sinusoid_scale * table

    model.embed = embed


def init_norms(model, token_scale: float, sinusoid_scale: float) -> tuple[float, float]:
    """Mean norm of a scaled token embedding and of a scaled sinusoid (positions 0..127), at init."""
    tokens = token_scale * model.transformer.wte.weight.norm(dim=-1).mean().item()
    table = sinusoidal_embeddings(torch.arange(128), model.config.n_embd)
    return tokens, sinusoid_scale * table.norm(dim=-1).mean().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--eval-tokens", type=int, default=32768)
    args = parser.parse_args()

    print(describe_machine())
    text = load_shakespeare(strip_markdown=True)
    tokenizer = create_tokenizer("character", text=text)
    train, val = train_val_split(torch.tensor(tokenizer.encode(text)), 0.1)
    print(f"FactoredSinusoidal, character preset, {args.steps} steps, batch 32, lr 1e-3, seed {args.seed}")
    print(f"{'variant':<16} {'|token|':>8} {'|sinusoid|':>10} {'ratio':>6} {'train s':>8} "
          f"{'ppl 128':>8} {'ppl 512':>8}")
    for name in args.variants.split(","):
        config = load_alibi_config_preset("character", max_position_embeddings=512, dropout=0.0)
        config.update_from_tokenizer(tokenizer)
        torch.manual_seed(args.seed)
        model = get_model("FactoredSinusoidal", config)
        scales = VARIANTS[name](config.n_embd)
        use_variant(model, *scales)
        token_norm, sinusoid_norm = init_norms(model, *scales)
        training = TrainingConfig(max_steps=args.steps, batch_size=32, learning_rate=1e-3,
                                  warmup_steps=min(50, args.steps), eval_interval=args.steps,
                                  eval_tokens=args.eval_tokens, seed=args.seed, progress=False)
        start = time.perf_counter()
        Trainer(model, train, val, training, tokenizer=tokenizer).fit()
        seconds = time.perf_counter() - start
        ppl = [evaluate_length(model, val, length, tokens_scored=args.eval_tokens).perplexity
               for length in (128, 512)]
        print(f"{name:<16} {token_norm:>8.3f} {sinusoid_norm:>10.3f} {sinusoid_norm / token_norm:>6.2f} "
              f"{seconds:>8.0f} {ppl[0]:>8.2f} {ppl[1]:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
