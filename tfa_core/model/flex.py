"""ALiBi through FlexAttention: the fast path on CUDA.

FlexAttention (``torch.nn.attention.flex_attention``) takes the attention scores' modification as a
small function, ``score_mod``, and a ``block_mask`` that lets it skip whole tiles above the causal
diagonal; under ``torch.compile`` it becomes one fused kernel that never materialises the ``T x T``
bias. For ALiBi the score_mod is one line: ``score - slope[h] * (q_idx - kv_idx)``.

It also runs eagerly on a CPU (slowly), which is how the tests check it against the plain path.
``causal_attention`` uses it on CUDA for full causal ALiBi attention without padding or dropout.
"""

from __future__ import annotations

import functools

import torch

__all__ = ["flex_available", "takes", "flex_alibi_attention", "USE_FLEX_ON_CUDA"]

USE_FLEX_ON_CUDA = True
"""Set to False to send CUDA attention through scaled_dot_product_attention instead."""


@functools.lru_cache(maxsize=1)
def flex_available() -> bool:
    """Whether this torch has FlexAttention."""
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def takes(q: torch.Tensor) -> bool:
    """Whether full causal ALiBi attention on ``q`` goes through FlexAttention: on CUDA, when this
    torch has it and ``USE_FLEX_ON_CUDA`` is on."""
    return q.is_cuda and USE_FLEX_ON_CUDA and flex_available()


def _new_causal_block_mask(t: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    return create_block_mask(causal, B=None, H=None, Q_LEN=t, KV_LEN=t, device=device)


_causal_block_mask = functools.lru_cache(maxsize=32)(_new_causal_block_mask)
"""The block mask of each length, built once (outside a compiled model)."""


@functools.lru_cache(maxsize=1)
def _compiled_flex_attention():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def flex_alibi_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor,
                         compile: bool = True) -> torch.Tensor:
    """Causal ALiBi attention with FlexAttention: ``q``, ``k``, ``v`` are ``(B, H, T, d)`` (as many
    queries as keys), ``slopes`` is ``(H,)``. ``compile=False`` runs the eager (reference) version."""
    from torch.nn.attention.flex_attention import flex_attention

    slopes = slopes.to(device=q.device, dtype=torch.float32)

    def alibi(score, b, h, q_idx, kv_idx):
        return score - slopes[h] * (q_idx - kv_idx)

    if torch.compiler.is_compiling():
        # inside a compiled model (Trainer(compile=True), benchmarks/cuda_throughput.py) the model's
        # own graph takes FlexAttention and the block mask whole; a cache would only be bypassed
        block_mask = _new_causal_block_mask(q.shape[-2], str(q.device))
        return flex_attention(q, k, v, score_mod=alibi, block_mask=block_mask)
    attend = _compiled_flex_attention() if compile else flex_attention
    block_mask = _causal_block_mask(q.shape[-2], str(q.device))
    return attend(q, k, v, score_mod=alibi, block_mask=block_mask)
