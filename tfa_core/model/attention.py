"""Attention pieces shared by every model: heads, the additive mask, the two attention paths, and
channel mixing.

Shapes: ``B`` batch, ``T`` sequence length, ``H`` heads, ``d`` head size, ``C = H * d`` model width.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tfa_core.model import flex
from tfa_core.model.alibi import alibi_bias, causal_mask
from tfa_core.model.shared_bias import SharedBiases

__all__ = [
    "split_heads",
    "merge_heads",
    "attention_bias",
    "scaled_dot_product_attention",
    "causal_attention",
    "QUERY_BLOCK",
    "BLOCK_BIAS_BYTES",
    "query_block_rows",
    "query_blocks",
    "uses_query_blocks",
    "reference_attention",
    "channel_mix",
    "kronecker_lift",
]


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """``(B, T, C)`` -> ``(B, H, T, d)``: head ``h`` owns channels ``h*d .. (h+1)*d - 1``."""
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, T, d)`` -> ``(B, T, C)``, the inverse of :func:`split_heads`."""
    B, H, T, d = x.shape
    return x.transpose(1, 2).contiguous().view(B, T, H * d)


def attention_bias(
    t_q: int,
    t_k: int,
    slopes: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
    shared: SharedBiases | None = None,
) -> torch.Tensor | None:
    """The additive mask every attention path adds to ``QK^T / sqrt(d)``.

    Causal always; plus ALiBi when ``slopes`` is given; plus ``-inf`` on padded keys when
    ``attention_mask`` (``(B, t_k)``, 1 = real token, 0 = padding) is given. A query always sees its
    own key, so a padded query still has one finite score and never produces NaN.

    The queries are the last ``t_q`` of the ``t_k`` keys (``t_q < t_k`` in cached decoding).
    With ``shared`` (the forward pass's :class:`~tfa_core.model.shared_bias.SharedBiases`) the ALiBi part
    is built once and reused by every layer, and in decoding by every step.

    Returns ``None`` when the mask is purely causal and square (the fused ``is_causal`` path is then
    used), otherwise a 4-D tensor broadcastable to ``(B, H, t_q, t_k)``. With fewer queries than keys the
    mask is always built here: PyTorch's ``is_causal`` would align the queries with the *first* keys.
    """
    if slopes is None and attention_mask is None and t_q == t_k:
        return None
    # Always 4-D: PyTorch's CPU flash kernel takes a (1, H, t_q, t_k) mask, while a 3-D one sends
    # attention down the slow "math" path (measured: about twice the time, forward and backward).
    if slopes is not None:
        if shared is not None:
            bias = shared.alibi(slopes, t_q, t_k, dtype)  # (1, H, t_q, t_k)
        else:
            bias = alibi_bias(slopes.to(dtype=dtype), t_q, t_k)[None]  # (1, H, t_q, t_k)
        device = bias.device
    else:
        allowed = causal_mask(t_q, t_k, device=device)
        bias = torch.zeros(t_q, t_k, dtype=dtype, device=device).masked_fill(~allowed, float("-inf"))
        bias = bias[None, None]  # (1, 1, t_q, t_k)
    if attention_mask is not None:
        keep = attention_mask[:, None, None, :].to(device=device, dtype=torch.bool)  # (B, 1, 1, t_k)
        own_key = torch.arange(t_k, device=device) == torch.arange(t_k - t_q, t_k, device=device)[:, None]
        keep = keep | own_key  # (B, 1, t_q, t_k)
        bias = bias.masked_fill(~keep, float("-inf"))  # (B, H, t_q, t_k)
    return bias


def scaled_dot_product_attention(q, k, v, bias=None, dropout_p: float = 0.0) -> torch.Tensor:
    """Attention through PyTorch's fused kernel: ``softmax(QK^T/sqrt(d) + bias) V``.

    ``q`` is ``(B, H, t_q, d)``, ``k`` and ``v`` are ``(B, H, t_k, d)``. With ``bias=None`` the
    causal mask is applied by the kernel itself (``is_causal``), the fastest path; that needs as
    many queries as keys, because the kernel puts the queries at the start of the keys, not the end.
    """
    if bias is None:
        if q.shape[-2] != k.shape[-2]:
            raise ValueError(
                f"bias=None means a square causal mask, but there are {q.shape[-2]} queries and "
                f"{k.shape[-2]} keys; pass bias=attention_bias(t_q, t_k, ...) for cached decoding"
            )
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)


QUERY_BLOCK = 256
"""Longer runs of biased queries are attended in blocks of at most this many (see
:func:`causal_attention`). Short blocks skip most of the masked upper triangle, which a dense bias
makes the fused kernel compute: measured at 2,048 tokens, batch 1, 4 heads of 32, 16 ms a layer in
blocks of 256 against 24 ms in blocks of 1,024 and 34 ms in one call; a training step at 1,024 tokens
(character preset, batch 4) went from 0.84x Vanilla's speed in one call to 0.98-1.00x."""

BLOCK_BIAS_BYTES = 64 * 2**20
"""The most memory one query block's bias may take: past 16k keys (4 heads, fp32) the blocks get
shorter than ``QUERY_BLOCK`` so that the bias stays this size however long the input."""


def query_block_rows(t_k: int, planes: int, itemsize: int, query_block: int) -> int:
    """How many queries one block takes: ``query_block``, or fewer when a ``(planes, rows, t_k)``
    bias of that many rows would be more than ``BLOCK_BIAS_BYTES`` (never fewer than 64)."""
    return max(min(64, query_block), min(query_block, BLOCK_BIAS_BYTES // (planes * t_k * itemsize)))


def query_blocks(t_q: int, t_k: int, rows: int) -> list[tuple[int, int, int]]:
    """The blocks ``(start, end, seen)`` of ``t_q`` queries at the end of ``t_k`` keys: queries
    ``start .. end - 1`` attend to keys ``0 .. seen - 1``, the keys up to their last query."""
    blocks = []
    for start in range(0, t_q, rows):
        end = min(start + rows, t_q)
        blocks.append((start, end, t_k - t_q + end))
    return blocks


def uses_query_blocks(t_q: int, t_k: int, biased: bool, query_block: int | None = None) -> bool:
    """Whether :func:`causal_attention` splits the queries: only with a bias (ALiBi or padding) and
    more than ``query_block`` queries; a plain square causal mask runs whole in the fused
    ``is_causal`` kernel at any length, with no bias at all."""
    return (biased or t_q != t_k) and t_q > (query_block or QUERY_BLOCK)


def causal_attention(q, k, v, slopes=None, attention_mask=None, dropout_p: float = 0.0,
                     query_block: int | None = None, shared: SharedBiases | None = None) -> torch.Tensor:
    """Causal attention with optional ALiBi ``slopes`` and padding, the path chosen by length.

    On CUDA, full causal ALiBi attention (no padding, no dropout) goes through FlexAttention (see
    ``flex.py``). Otherwise, up to ``query_block`` queries (default ``QUERY_BLOCK``): one fused call
    with the whole ``(H, t_q, t_k)`` bias, taken from ``shared`` when given (built once for all
    layers). More: the queries go in blocks, each against only the keys it can see, with a bias of
    just ``(H, block, keys seen)`` -- memory grows with ``block x t_k`` instead of ``t_k x t_k``, which
    at 16k tokens is the difference between megabytes and gigabytes, and the masked triangle above
    the blocks is never computed. Past 16k keys the blocks shorten so that a block's bias stays under
    ``BLOCK_BIAS_BYTES``. In training the layers share the blocks' biases (autograd keeps them for the
    backward pass in any case); without gradients each is built when its block needs it and dropped
    after. Every path gives the same numbers.

    ``q``: ``(B, H, t_q, d)``; ``k``, ``v``: ``(B, H, t_k, d)`` with the queries the last ``t_q`` keys.
    """
    t_q, t_k = q.shape[-2], k.shape[-2]
    if slopes is not None and attention_mask is None and dropout_p == 0.0 and t_q == t_k and flex.takes(q):
        return flex.flex_alibi_attention(q, k, v, slopes)  # fused kernel, no T x T bias at all
    biased = slopes is not None or attention_mask is not None
    if not uses_query_blocks(t_q, t_k, biased, query_block):
        bias = attention_bias(t_q, t_k, slopes, attention_mask, dtype=q.dtype, device=q.device, shared=shared)
        return scaled_dot_product_attention(q, k, v, bias, dropout_p)
    if torch.is_autocast_enabled(q.device.type):
        # cast once, not once per block: each block's call would cast (and keep) the keys it reads
        q, k, v = (t.to(torch.get_autocast_dtype(q.device.type)) for t in (q, k, v))
    planes = (q.shape[1] if slopes is not None else 1) * (q.shape[0] if attention_mask is not None else 1)
    rows = query_block_rows(t_k, planes, q.element_size(), query_block or QUERY_BLOCK)
    # In training autograd keeps every block's bias for the backward pass anyway, so the layers share
    # them; without gradients each is dropped after its block (sharing would hold the whole triangle).
    keep = shared if torch.is_grad_enabled() else None
    blocks = []
    for start, end, seen in query_blocks(t_q, t_k, rows):
        mask = attention_mask[:, :seen] if attention_mask is not None else None
        bias = attention_bias(end - start, seen, slopes, mask, dtype=q.dtype, device=q.device, shared=keep)
        blocks.append(scaled_dot_product_attention(q[:, :, start:end], k[:, :, :seen], v[:, :, :seen],
                                                   bias, dropout_p))
    return torch.cat(blocks, dim=2)  # (B, H, t_q, d)


def reference_attention(q, k, v, bias=None) -> torch.Tensor:
    """The same attention written out in full, for tests and for the course to read.

    ``softmax(Q K^T / sqrt(d) + bias) V`` with a causal mask when ``bias`` is None.
    """
    t_q, t_k = q.shape[-2], k.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, t_q, t_k)
    if bias is None:
        bias = torch.zeros(t_q, t_k, dtype=q.dtype, device=q.device)
        bias = bias.masked_fill(~causal_mask(t_q, t_k, device=q.device), float("-inf"))
    weights = torch.softmax(scores + bias, dim=-1)
    return weights @ v  # (B, H, t_q, d)


def channel_mix(x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Apply ``mix ⊗ I_d`` to a tensor split into heads: head ``h`` becomes ``sum_g mix[h, g] * x_g``.

    Each head-block of ``d`` channels is carried whole; channels inside a block are never mixed,
    so a vector that reads as a token embedding still reads as one. ``x`` is ``(B, H, T, d)``,
    ``mix`` is ``(H, H)``; the cost is ``H^2`` multiply-adds per channel, never a ``C x C`` matrix.
    """
    return torch.einsum("hg,bgtd->bhtd", mix, x)


def kronecker_lift(mix: torch.Tensor, head_dim: int) -> torch.Tensor:
    """The dense ``C x C`` matrix ``mix ⊗ I_d`` -- for teaching and tests only.

    ``merge_heads(channel_mix(split_heads(x), mix))`` equals ``x @ kronecker_lift(mix, d).T``; the
    model never builds this matrix.
    """
    return torch.kron(mix, torch.eye(head_dim, dtype=mix.dtype, device=mix.device))
