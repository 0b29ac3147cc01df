"""The five ways a model can know where a token is, for the length-extrapolation study.

- ``alibi``: a linear bias on attention scores (``alibi.py``); nothing is added to ``xt``.
- ``learned``: a trained table of ``block_size`` vectors added to ``xt`` (GPT-2); it has no row for
  a position past ``block_size``, so the model cannot run longer.
- ``sinusoidal``: the fixed sine/cosine vectors of "Attention Is All You Need" added to ``xt``;
  defined for any position, but the model never saw the far ones in training. The model adds them
  at the token embeddings' scale (``CausalLanguageModel.embed`` says why).
- ``rotary``: queries and keys rotated by an angle proportional to their position (RoFormer), so
  scores depend on the distance; applied to Q and K only, so ``xt`` stays clean.
- ``none``: no positional signal at all; the causal mask alone lets a model infer order.
"""

from __future__ import annotations

import torch

__all__ = ["POSITION_SCHEMES", "sinusoidal_embeddings", "rotary_angles", "apply_rotary"]

POSITION_SCHEMES = ("alibi", "learned", "sinusoidal", "rotary", "none")


def sinusoidal_embeddings(positions: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """``(T, dim)`` vectors: channel ``2i`` is ``sin(p / base^(2i/dim))``, channel ``2i+1`` the cosine."""
    frequencies = base ** (-torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim)
    angles = positions.float()[:, None] * frequencies[None, :]  # (T, dim/2)
    table = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (T, dim/2, 2)
    return table.flatten(1)[:, :dim]  # (T, dim)


def rotary_angles(positions: torch.Tensor, head_dim: int, base: float = 10000.0):
    """``cos`` and ``sin`` of the rotation angles, each ``(T, head_dim/2)``: channel pair ``i`` of a
    token at position ``p`` turns by ``p / base^(2i/head_dim)``."""
    channels = torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32)  # (d/2,): 2i
    frequencies = base ** (-channels / head_dim)
    angles = positions.float()[:, None] * frequencies[None, :]  # (T, d/2)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each channel pair ``(x[2i], x[2i+1])`` of ``x`` (``(B, H, T, d)``) by its angle.

    Rotating a query at position ``i`` and a key at ``j`` makes their dot product depend only on
    ``i - j``: that is how rotary encodes relative position without touching the residual stream.
    """
    pairs = x.float().unflatten(-1, (-1, 2))  # (B, H, T, d/2, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
    return rotated.flatten(-2).to(x.dtype)  # (B, H, T, d)
