"""The speed room: attention that never holds a ``T x T`` bias. Skip it on a first reading.

``factored.py`` writes attention as one call, ``softmax(q k^T / sqrt(d) + bias) v``, with a dense
``(1, H, T, T)`` ALiBi bias built once per forward pass. That is exact and fast for the lengths a
model trains at, but the bias grows as ``T²``: at 16k tokens and 4 heads it would take 4 GiB. Three
things here avoid it, and the model reaches all three through one switch, ``model.fast_attention``
(on by default; off, every input takes the plain dense path, which gives the same numbers):

- **query blocks** (:class:`BlockedBias`, on any device): past ``QUERY_BLOCK`` biased queries, the
  queries go in blocks, each against only the keys it can see, with a bias of ``(H, block, keys
  seen)``. Memory grows as ``block x T`` instead of ``T²``, and the masked triangle above the blocks
  is never computed;
- **FlexAttention** (CUDA): the bias becomes a one-line ``score_mod``,
  ``score - slope[h] * (q_idx - kv_idx)``, that a compiled kernel applies tile by tile;
- **the decoding ramp** (:func:`decoding_bias`): one cached query sits at the end of the keys, so its
  bias is the last ``t_k`` entries of one ramp ``-m (capacity - 1), ..., -m, 0`` that the key/value
  cache keeps for its whole life; a decoding step takes a view and builds nothing.

``tests/test_fast_attention.py`` checks each against the plain path.
"""

from __future__ import annotations

import contextlib
import functools
import warnings

import torch
import torch.nn.functional as F

from tfa_core.model.alibi import alibi_bias, dense_bias

__all__ = ["QUERY_BLOCK", "BLOCK_BIAS_BYTES", "USE_FLEX_ON_CUDA", "BlockedBias", "fast_bias",
           "decoding_bias", "query_block_rows", "query_blocks", "uses_query_blocks", "flex_takes",
           "flex_available", "flex_alibi_attention"]

QUERY_BLOCK = 256
"""Longer runs of biased queries are attended in blocks of at most this many. Short blocks skip most
of the masked upper triangle that a dense bias makes the fused kernel compute (the README's
performance section gives the measured times)."""

BLOCK_BIAS_BYTES = 64 * 2**20
"""The most memory one query block's bias may take: past 16k keys (4 heads, fp32) the blocks get
shorter than ``QUERY_BLOCK``, so that the bias stays this size however long the input."""

USE_FLEX_ON_CUDA = True
"""Set to False to send CUDA attention through query blocks and ``scaled_dot_product_attention``."""


def fast_bias(slopes, t_q: int, t_k: int, attention_mask, dtype: torch.dtype, device: torch.device,
              cache=None):
    """What ``CausalLanguageModel.attention_bias`` hands the layers instead of a dense bias, or
    ``None`` when the dense bias is the right thing (short inputs on a CPU)."""
    if cache is not None and t_q == 1 and slopes is not None and attention_mask is None:
        return decoding_bias(cache, slopes, t_k, dtype)
    biased = slopes is not None or attention_mask is not None
    if biased and (t_q > QUERY_BLOCK or device.type == "cuda"):
        return BlockedBias(slopes, t_q, t_k, attention_mask)
    return None


class BlockedBias:
    """An attention bias that is never built whole: its :meth:`attend` runs the attention itself,
    through FlexAttention (CUDA, square, no padding or dropout) or in query blocks.

    One object serves every layer of a forward pass. In training, autograd keeps every block's bias
    for the backward pass anyway, so the layers share them; without gradients each block's bias is
    built when needed and dropped after (sharing would hold the whole triangle).
    """

    def __init__(self, slopes, t_q: int, t_k: int, attention_mask=None):
        self.slopes, self.t_q, self.t_k, self.attention_mask = slopes, t_q, t_k, attention_mask
        self._blocks: dict = {}

    def attend(self, q, k, v, dropout_p: float = 0.0) -> torch.Tensor:
        """Causal attention with this bias; ``q``: ``(B, H, t_q, d)``, ``k``, ``v``: ``(B, H, t_k, d)``
        with the queries the last ``t_q`` keys."""
        if (self.slopes is not None and self.attention_mask is None and dropout_p == 0.0
                and self.t_q == self.t_k and flex_takes(q)):
            return flex_alibi_attention(q, k, v, self.slopes)  # one fused kernel, no T x T bias at all
        return self.attend_in_blocks(q, k, v, dropout_p)

    def attend_in_blocks(self, q, k, v, dropout_p: float = 0.0) -> torch.Tensor:
        """:meth:`attend` in query blocks through ``scaled_dot_product_attention``, on any device."""
        slopes, t_q, t_k = self.slopes, self.t_q, self.t_k
        if torch.is_autocast_enabled(q.device.type):
            # cast once, not once per block: each block's call would cast (and keep) the keys it reads
            q, k, v = (t.to(torch.get_autocast_dtype(q.device.type)) for t in (q, k, v))
        planes = ((q.shape[1] if slopes is not None else 1)
                  * (q.shape[0] if self.attention_mask is not None else 1))
        rows = query_block_rows(t_k, planes, q.element_size(), QUERY_BLOCK)
        outputs = []
        for start, end, seen in query_blocks(t_q, t_k, rows):
            bias = self._block_bias(slopes, end - start, seen, q)
            outputs.append(F.scaled_dot_product_attention(q[:, :, start:end], k[:, :, :seen], v[:, :, :seen],
                                                          attn_mask=bias, dropout_p=dropout_p))
        return torch.cat(outputs, dim=2)  # (B, H, t_q, d)

    def _block_bias(self, slopes, rows: int, seen: int, q: torch.Tensor) -> torch.Tensor:
        mask = self.attention_mask[:, :seen] if self.attention_mask is not None else None
        if not torch.is_grad_enabled():
            return dense_bias(slopes, rows, seen, mask, q.dtype, q.device)
        key = (rows, seen)
        if key not in self._blocks:
            self._blocks[key] = dense_bias(slopes, rows, seen, mask, q.dtype, q.device)
        return self._blocks[key]


def query_block_rows(t_k: int, planes: int, itemsize: int, query_block: int) -> int:
    """How many queries one block takes: ``query_block``, or fewer when a ``(planes, rows, t_k)``
    bias of that many rows would be more than ``BLOCK_BIAS_BYTES`` (never fewer than 64)."""
    return max(min(64, query_block), min(query_block, BLOCK_BIAS_BYTES // (planes * t_k * itemsize)))


def query_blocks(t_q: int, t_k: int, rows: int) -> list[tuple[int, int, int]]:
    """The blocks ``(start, end, seen)`` of ``t_q`` queries at the end of ``t_k`` keys: queries
    ``start .. end - 1`` attend to keys ``0 .. seen - 1``, the keys up to their last query."""
    return [(start, min(start + rows, t_q), t_k - t_q + min(start + rows, t_q))
            for start in range(0, t_q, rows)]


def uses_query_blocks(t_q: int, t_k: int, biased: bool) -> bool:
    """Whether a CPU forward pass attends in query blocks: only with a bias (ALiBi or padding) and
    more than ``QUERY_BLOCK`` queries; a plain square causal mask runs whole in the fused kernel."""
    return biased and t_q > QUERY_BLOCK


# -- the decoding ramp ------------------------------------------------------------------------------

def decoding_bias(cache, slopes: torch.Tensor, t_k: int, dtype: torch.dtype) -> torch.Tensor:
    """The ``(1, H, 1, t_k)`` ALiBi bias of one new query at the end of ``t_k`` keys: a view of the
    last ``t_k`` entries of the cache's ramp for these slopes (the newest key gets 0)."""
    ramps = cache.alibi_ramps  # (slopes as made, dtype, device) -> (slopes, ramp)
    key = (id(slopes), dtype, slopes.device)
    held = ramps.get(key)
    if held is None or not torch.equal(held[0], slopes):  # new slopes, or written to since
        held = ramps[key] = (slopes.clone(), alibi_bias(slopes.to(dtype), 1, cache.capacity)[None])
    return held[1][..., cache.capacity - t_k:]


# -- FlexAttention -------------------------------------------------------------------------------------

def flex_takes(q: torch.Tensor) -> bool:
    """Whether causal ALiBi attention on ``q`` goes through FlexAttention: on CUDA, when this torch
    has it and ``USE_FLEX_ON_CUDA`` is on."""
    return q.is_cuda and USE_FLEX_ON_CUDA and flex_available()


@functools.lru_cache(maxsize=1)
def flex_available() -> bool:
    """Whether this torch has FlexAttention."""
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def _new_causal_block_mask(t: int, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    def causal(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    return create_block_mask(causal, B=None, H=None, Q_LEN=t, KV_LEN=t, device=device)


_causal_block_mask = functools.lru_cache(maxsize=32)(_new_causal_block_mask)
"""The block mask of each length, built once (outside a compiled model)."""


@functools.lru_cache(maxsize=1)
def _compiled_flex_attention():
    """FlexAttention compiled so that any number of shapes costs a few compilations.

    Dynamo keeps at most ``torch._dynamo.config.recompile_limit`` (8) compiled versions of a function;
    past that it runs the function uncompiled, and uncompiled FlexAttention builds the whole ``T x T``
    score matrix, at exactly the long lengths this path is for. Compiled with ``dynamic=False``, every
    (batch, length) was a version of its own, and the cpu recipe's evaluation made 15 of them. Two
    other cures fail: a ``torch.compile`` wrapper per length shares one cache and one limit with every
    other wrapper of ``flex_attention`` (dynamo keeps them on the function's code), and a higher limit
    only moves the cliff. So PyTorch's default, "automatic dynamic": the first shape gets a kernel for
    its sizes, and the first call whose length differs compiles once more with the length symbolic, a
    kernel that then serves every length; a different batch is one more, a batch of one another. So at
    most four per dtype and grad mode, and a study's evaluation compiles two: ``evaluate_length`` pads
    its last batch, so each length is one shape, of one batch size (``tests/test_fast_attention.py``
    counts them).
    """
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=None)


def _raising_at_the_recompile_limit():
    """A context in which dynamo, past its recompile limit, raises ``FailOnRecompileLimitHit``
    instead of running the function uncompiled (torch 2.7 and later; older ones log a warning)."""
    config = torch._dynamo.config
    if hasattr(config, "fail_on_recompile_limit_hit"):
        return config.patch(fail_on_recompile_limit_hit=True)
    return contextlib.nullcontext()


def flex_alibi_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slopes: torch.Tensor,
                         compile: bool = True) -> torch.Tensor:
    """Causal ALiBi attention with FlexAttention: ``q``, ``k``, ``v`` are ``(B, H, T, d)`` (as many
    queries as keys), ``slopes`` is ``(H,)``. ``compile=False`` runs the eager (reference) version,
    which also works on a CPU.

    Should the compiled version ever reach dynamo's recompile limit (many dtypes, devices and grad
    modes in one process), the call warns, naming the shape, and runs in query blocks instead of
    falling back to an uncompiled FlexAttention that would hold every ``T x T`` score."""
    from torch.nn.attention.flex_attention import flex_attention

    slopes = slopes.to(device=q.device, dtype=torch.float32)

    def alibi(score, b, h, q_idx, kv_idx):
        return score - slopes[h] * (q_idx - kv_idx)

    if torch.compiler.is_compiling():
        # inside a compiled model the model's own graph takes FlexAttention and the block mask whole
        block_mask = _new_causal_block_mask(q.shape[-2], str(q.device))
        return flex_attention(q, k, v, score_mod=alibi, block_mask=block_mask)
    block_mask = _causal_block_mask(q.shape[-2], str(q.device))
    if not compile:
        return flex_attention(q, k, v, score_mod=alibi, block_mask=block_mask)
    try:
        with _raising_at_the_recompile_limit():
            return _compiled_flex_attention()(q, k, v, score_mod=alibi, block_mask=block_mask)
    except getattr(torch._dynamo.exc, "FailOnRecompileLimitHit", ()):
        warnings.warn(f"FlexAttention reached torch.compile's recompile limit "
                      f"({torch._dynamo.config.recompile_limit}) at queries of shape {tuple(q.shape)}, "
                      f"{q.dtype}: this call runs in query blocks instead (slower, still no T x T scores); "
                      "torch._dynamo.config.recompile_limit sets the limit", RuntimeWarning, stacklevel=2)
        return BlockedBias(slopes, q.shape[-2], k.shape[-2]).attend_in_blocks(q, k, v)
