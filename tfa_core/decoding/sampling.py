"""Choosing the next token from logits: temperature, top-k, top-p (nucleus) and greedy."""

from __future__ import annotations

import math

import torch

from tfa_core.model.checks import is_int

__all__ = ["top_k_filter", "top_p_filter", "sample_next_token", "check_sampling_args"]


def check_sampling_args(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise a clear error for a bad sampling setting (NaN and infinity included)."""
    if not (is_int(temperature) or isinstance(temperature, float)) or not math.isfinite(temperature) \
            or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 means greedy), got {temperature!r}")
    if top_k is not None and (not is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k must be a positive int or None, got {top_k!r}")
    if top_p is not None and (not (is_int(top_p) or isinstance(top_p, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def _check_logits(logits: torch.Tensor) -> None:
    if torch.isnan(logits).any():
        raise ValueError("the logits hold NaN, so there is no distribution to sample from: the model's "
                         "weights or inputs are not finite numbers (was it loaded from a diverged run?)")


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row, set the rest to ``-inf``. ``logits``: ``(B, V)``."""
    k = min(k, logits.shape[-1])
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose probability reaches ``p``.

    The most likely token is always kept. ``logits``: ``(B, V)``.
    """
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each one
    drop_sorted = mass_before >= p  # already reached p without this token
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one token per row of ``logits`` (``(B, V)``) and return ids of shape ``(B, 1)``.

    ``temperature=0`` is greedy (argmax; top-k and top-p do not change the argmax).
    """
    check_sampling_args(temperature, top_k, top_p)
    _check_logits(logits)
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1:
        logits = top_p_filter(logits, top_p)
    probs = torch.softmax(logits, dim=-1)
    if torch.isnan(probs).any():  # a row of -inf only: nothing left to choose from
        raise ValueError("every token of a row has probability 0 (all its logits are -inf); "
                         "the model's output is not usable")
    return torch.multinomial(probs, num_samples=1, generator=generator)
