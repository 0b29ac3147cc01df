"""The key/value cache that makes decoding O(n) per token instead of O(n^2).

A causal model never changes what it computed for an earlier token when a later one arrives, so the
keys and values of every layer can be kept and only the newest token run through the model. Each
layer gets one buffer of keys and one of values, ``(B, H, capacity, d)``, allocated once and written in
place at the current length; attention reads a view of the filled part. Appending a token therefore
costs its own keys and values, never a copy of the whole cache.

Shapes: ``B`` batch, ``H`` heads, ``t`` new tokens, ``d`` head size.
"""

from __future__ import annotations

import torch
from tfa_core.model.checks import require_positive_int

__all__ = ["LayerCache", "KVCache"]


class LayerCache:
    """Keys and values of one attention layer, in preallocated ``(B, H, capacity, d)`` buffers.

    The buffers are allocated at the first :meth:`append`, when the batch size, heads, head size,
    dtype and device of the keys are known, and are then only written into.
    """

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.length = 0  # positions 0 .. length-1 of the buffers hold real keys and values
        self.keys: torch.Tensor | None = None  # (B, H, capacity, d) once allocated
        self.values: torch.Tensor | None = None  # (B, H, capacity, d) once allocated

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the keys and values of ``t`` new tokens, ``(B, H, t, d)`` each, after those already
        held, and return views of everything held so far, ``(B, H, length + t, d)`` each."""
        if self.keys is None:
            B, H, _, d = k.shape
            self.keys = k.new_empty(B, H, self.capacity, d)
            self.values = v.new_empty(B, H, self.capacity, v.shape[-1])
        self._check_fits(k, v)
        start, end = self.length, self.length + k.shape[2]
        self.keys[:, :, start:end] = k  # written in place: the buffer is never reallocated
        self.values[:, :, start:end] = v
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]  # (B, H, end, d) views

    def _check_fits(self, k: torch.Tensor, v: torch.Tensor) -> None:
        for name, new, buffer in (("keys", k, self.keys), ("values", v, self.values)):
            if new.shape[:2] != buffer.shape[:2] or new.shape[3] != buffer.shape[3]:
                raise ValueError(
                    f"new {name} of shape {tuple(new.shape)} do not fit a cache of shape "
                    f"{tuple(buffer.shape)} (batch, heads, capacity, head size); start a new cache "
                    "for a different batch"
                )
        if self.length + k.shape[2] > self.capacity:
            raise ValueError(
                f"the cache is full: it holds {self.length} of {self.capacity} tokens and "
                f"{k.shape[2]} more do not fit; start a new cache from the latest tokens"
            )


class KVCache:
    """The cache of a whole model: one :class:`LayerCache` per layer, ``cache[i]`` for layer ``i``.

    Make one with ``model.new_kv_cache()`` (capacity: the model's ``max_sequence_length``) or let
    ``model(ids, use_cache=True)`` make it, then pass it back as ``past_key_values`` with the next
    tokens: the model appends to it in place. It is for inference (under ``torch.no_grad()``);
    ``reset()`` empties it and keeps its buffers.
    """

    def __init__(self, n_layer: int, capacity: int):
        require_positive_int("n_layer", n_layer)
        require_positive_int("capacity", capacity)
        self.layers = [LayerCache(capacity) for _ in range(n_layer)]
        # ALiBi ramps -m * (capacity - 1), ..., -m, 0, one per distinct slopes: a decoding step's bias
        # is a view of their last entries (see fast_attention.py), built once for the cache's life
        self.alibi_ramps: dict = {}

    def __getitem__(self, layer: int) -> LayerCache:
        return self.layers[layer]

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def capacity(self) -> int:
        """The most tokens the cache can hold."""
        return self.layers[0].capacity

    @property
    def length(self) -> int:
        """Tokens held (every layer holds the same number after a forward pass)."""
        return self.layers[0].length

    @property
    def batch_size(self) -> int | None:
        """Rows of the batch the cache holds; ``None`` before the first forward pass."""
        keys = self.layers[0].keys
        return None if keys is None else keys.shape[0]

    def reset(self) -> None:
        """Forget every token but keep the buffers, so refilling allocates nothing."""
        for layer in self.layers:
            layer.length = 0

    def __repr__(self) -> str:
        return f"KVCache(n_layer={len(self)}, length={self.length}, capacity={self.capacity})"
