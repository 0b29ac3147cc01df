"""ALiBi biases built once and shared: by every layer of a forward pass, and by every decoding step.

Every layer of a model asks for the same ``(H, T, T)`` bias when its slopes are the same (they are,
unless a user overwrote one layer's buffer), so a forward pass builds it once per distinct set of
slopes and hands the same tensor to each layer. In cached decoding the single new query sits at the
end of the keys and its bias against key ``j`` is ``-m * (t_k - 1 - j)``: the last ``t_k`` entries of
one ramp ``-m * (capacity - 1), ..., -m, 0`` that the key/value cache keeps for its whole life. A
decoding step therefore takes a view of that ramp and builds nothing.

Slopes are told apart by value, but their values are read (``tolist``, a device synchronisation on a
GPU) only when a slopes buffer is new or has been written to since -- tensors count their in-place
writes in ``_version`` -- so the steady state never waits for the device.
"""

from __future__ import annotations

import torch

from tfa_core.model.alibi import alibi_bias

__all__ = ["SlopeSignatures", "SharedBiases"]


class SlopeSignatures:
    """The values of each slopes tensor as a hashable tuple, read again only after a change.

    A model owns one of these for its whole life; the tensors it has seen are held, so an ``id`` is
    never reused by another tensor while its entry exists.
    """

    def __init__(self):
        self._seen: dict[int, tuple[torch.Tensor, int, tuple[float, ...]]] = {}

    def of(self, slopes: torch.Tensor) -> tuple[float, ...]:
        if slopes.is_inference():
            # made under torch.inference_mode(): such a tensor keeps no version counter, so its
            # values are read every time (still one bias for every layer with the same slopes)
            return tuple(slopes.tolist())
        entry = self._seen.get(id(slopes))
        if entry is None or entry[0] is not slopes or entry[1] != slopes._version:
            entry = (slopes, slopes._version, tuple(slopes.tolist()))
            self._seen[id(slopes)] = entry
        return entry[2]


class SharedBiases:
    """The ALiBi biases of one forward pass, built once per distinct slopes, length and dtype.

    ``ramps`` (a dict that a :class:`~tfa_core.KVCache` keeps) and ``capacity`` (the cache's) make
    one-query steps take a view of a ramp built once per cache instead of a new bias.
    """

    def __init__(self, signatures: SlopeSignatures, ramps: dict | None = None, capacity: int | None = None):
        self.signatures = signatures
        self.ramps = ramps
        self.capacity = capacity
        self._built: dict = {}
        self.builds = 0  # how many biases (or ramps) this forward pass has built, for tests and curiosity

    def alibi(self, slopes: torch.Tensor, t_q: int, t_k: int, dtype: torch.dtype) -> torch.Tensor:
        """``alibi_bias(slopes, t_q, t_k)`` as a ``(1, H, t_q, t_k)`` tensor of ``dtype``, shared."""
        if slopes.requires_grad or torch.compiler.is_compiling():
            # learned slopes change every step; a compiled graph computes the bias in its own kernel
            return alibi_bias(slopes.to(dtype=dtype), t_q, t_k)[None]
        key = (self.signatures.of(slopes), dtype, slopes.device)
        if t_q == 1 and self.ramps is not None and t_k <= self.capacity:
            ramp = self.ramps.get(key)
            if ramp is None:  # the bias of one query at the end of a full cache: the ramp itself
                ramp = self.ramps[key] = alibi_bias(slopes.to(dtype=dtype), 1, self.capacity)[None]
                self.builds += 1
            return ramp[..., self.capacity - t_k:]  # (1, H, 1, t_k): the newest key gets 0
        key = (*key, t_q, t_k)
        bias = self._built.get(key)
        if bias is None:
            bias = self._built[key] = alibi_bias(slopes.to(dtype=dtype), t_q, t_k)[None]
            self.builds += 1
        return bias
