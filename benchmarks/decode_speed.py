"""Decoding speed with and without the key/value cache, on this machine.

    python benchmarks/decode_speed.py

Greedy decoding from a one-token prompt with the ``character`` preset (4 layers, 4 heads, 128 wide,
81 symbols), timed once per setting under ``torch.inference_mode()`` after a short warm-up. Without
the cache every token runs the whole context again (O(n^2) work per token); with it, one token
(O(n)). Both paths must give the same tokens, which is checked here too.

FactoredALiBi gets ``max_position_embeddings=2048``. Vanilla has a learned position table that stops
at ``block_size``; it is built with ``block_size=1024`` so that 1024 new tokens fit without the window
sliding (the preset's 128 would make both paths recompute the window at every step past 128).
The whole script takes two to three minutes on two CPU cores, mostly the uncached runs at 1024.
"""

from __future__ import annotations

import time

import torch

from machine import describe_machine
from tfa_core import get_model, load_alibi_config_preset

NEW_TOKENS = [256, 1024]
MODELS = {
    "FactoredALiBi": dict(vocab_size=81, max_position_embeddings=2048),
    "Vanilla": dict(vocab_size=81, block_size=1024),
}


def time_generate(model, new_tokens: int, use_cache: bool) -> tuple[float, torch.Tensor]:
    """Seconds to decode ``new_tokens`` greedily from a one-token prompt, and the ids produced."""
    prompt = torch.zeros(1, 1, dtype=torch.long)
    with torch.inference_mode():
        model.generate(prompt, 8, temperature=0, use_cache=use_cache)  # warm-up
        start = time.perf_counter()
        ids = model.generate(prompt, new_tokens, temperature=0, use_cache=use_cache)
        return time.perf_counter() - start, ids


def main():
    torch.manual_seed(0)
    print(describe_machine())
    print("greedy decoding from a 1-token prompt, character preset (4L-4H-128D, vocab 81), batch 1")
    models = {name: get_model(name, load_alibi_config_preset("character", **overrides)).eval()
              for name, overrides in MODELS.items()}
    for name, model in models.items():
        print(f"{name}: block_size={model.config.block_size}, longest input "
              f"{model.max_sequence_length} tokens")
    print("Vanilla is built with block_size=1024 (preset: 128) so that 1024 new tokens fit its "
          "position table")
    print(f"{'model':<14}{'new tokens':>11}{'cached tok/s':>14}{'uncached tok/s':>16}{'speed-up':>10}"
          f"{'same tokens':>13}")
    for name, model in models.items():
        for new_tokens in NEW_TOKENS:
            cached_s, cached_ids = time_generate(model, new_tokens, use_cache=True)
            plain_s, plain_ids = time_generate(model, new_tokens, use_cache=False)
            same = "yes" if torch.equal(cached_ids, plain_ids) else "NO"
            print(f"{name:<14}{new_tokens:>11}{new_tokens / cached_s:>14.1f}{new_tokens / plain_s:>16.1f}"
                  f"{plain_s / cached_s:>9.1f}x{same:>13}", flush=True)


def cached_at_long_context(contexts=(1024, 4096), new_tokens: int = 64) -> None:
    """Tokens/s of cached decoding once the context is already long: the prompt is ``context``
    tokens, then ``new_tokens`` are decoded one by one (each attends to the whole context)."""
    config = load_alibi_config_preset("character", vocab_size=81,
                                      max_position_embeddings=max(contexts) + new_tokens)
    model = get_model("FactoredALiBi", config).eval()
    print(f"FactoredALiBi, cached decoding of {new_tokens} tokens after a long prompt")
    print(f"{'context':>8}{'tok/s':>10}")
    for context in contexts:
        prompt = torch.randint(0, 81, (1, context))
        with torch.inference_mode():
            cache = model.new_kv_cache()
            logits = model(prompt, past_key_values=cache)["logits"][:, -1]  # prefill, not timed
            start = time.perf_counter()
            for _ in range(new_tokens):
                next_id = logits.argmax(-1, keepdim=True)
                logits = model(next_id, past_key_values=cache)["logits"][:, -1]
            elapsed = time.perf_counter() - start
        print(f"{context:>8}{new_tokens / elapsed:>10.1f}", flush=True)


if __name__ == "__main__":
    main()
    cached_at_long_context()
