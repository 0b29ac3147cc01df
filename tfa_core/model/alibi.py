"""ALiBi: attention with linear biases (Press, Smith & Lewis, ICLR 2022).

Instead of adding position vectors to the tokens, ALiBi adds ``-m * (i - j)`` to the attention score
of query ``i`` and key ``j``. Each head has its own slope ``m``: steep heads look at the last few
tokens, shallow heads look far back. Nothing is learned and nothing touches the residual stream,
which is why the token-factored model can keep ``xt`` free of positional information.
"""

from __future__ import annotations

import math

import torch

from tfa_core.model.checks import require_positive_int

__all__ = ["alibi_slopes", "alibi_bias", "dense_bias", "causal_mask", "DEFAULT_MAX_BIAS"]

DEFAULT_MAX_BIAS = 8.0
"""The paper's choice: the slopes form a geometric sequence from ``2^(-8/n)`` down to ``2^-8``."""


def _power_of_two_slopes(n: int, max_bias: float) -> list[float]:
    # m_k = 2^(-max_bias * k / n) for k = 1..n
    return [2.0 ** (-max_bias * k / n) for k in range(1, n + 1)]


def alibi_slopes(n_head: int, max_bias: float = DEFAULT_MAX_BIAS) -> torch.Tensor:
    """The ALiBi slope of every head, by the authors' algorithm.

    For a power of two ``n``: ``m_k = 2^(-8k/n)``, k = 1..n. Otherwise, with ``p`` the largest
    power of two below ``n``: the ``p`` slopes for ``p`` heads, followed by the first ``n - p`` of the
    even-indexed slopes computed for ``2p`` heads (which interleave between them). So six heads
    give ``[2^-2, 2^-4, 2^-6, 2^-8, 2^-1, 2^-3]`` -- not sorted, and not the closed form
    ``2^(-8(h+1)/n)`` that is only right when ``n`` is a power of two.

    Args:
        n_head: number of attention heads (a positive int).
        max_bias: the exponent scale (8 in the paper).

    Returns:
        float32 tensor of shape ``(n_head,)``.
    """
    require_positive_int("n_head", n_head)
    if not max_bias > 0:
        raise ValueError(f"max_bias must be positive (the paper uses 8), got {max_bias}")
    p = 2 ** int(math.floor(math.log2(n_head)))
    slopes = _power_of_two_slopes(p, max_bias)
    if p < n_head:
        slopes += _power_of_two_slopes(2 * p, max_bias)[0::2][: n_head - p]
    return torch.tensor(slopes, dtype=torch.float32)


def causal_mask(t_q: int, t_k: int | None = None, device=None) -> torch.Tensor:
    """Boolean ``(t_q, t_k)`` mask, True where query ``i`` may see key ``j``.

    The queries are the *last* ``t_q`` positions of the ``t_k`` keys (as in cached decoding, where
    one new query attends to every key so far): query ``i`` sits at absolute position
    ``t_k - t_q + i`` and sees every key at or before it.
    """
    t_k = t_q if t_k is None else t_k
    if t_q > t_k:
        raise ValueError(f"there cannot be more queries ({t_q}) than keys ({t_k})")
    q_pos = torch.arange(t_k - t_q, t_k, device=device)[:, None]  # (t_q, 1)
    k_pos = torch.arange(t_k, device=device)[None, :]  # (1, t_k)
    return k_pos <= q_pos


def alibi_bias(slopes: torch.Tensor, t_q: int, t_k: int | None = None) -> torch.Tensor:
    """The additive ALiBi attention bias, causal mask included.

    Entry ``[h, i, j]`` is ``-slopes[h] * (pos(i) - j)`` for a key at or before the query and
    ``-inf`` for a key after it, where ``pos(i) = t_k - t_q + i`` (queries at the end of the keys).
    The newest key always gets bias 0 -- in cached decoding too.

    Args:
        slopes: ``(H,)`` tensor of slopes.
        t_q: number of queries; ``t_k``: number of keys (defaults to ``t_q``).

    Returns:
        ``(H, t_q, t_k)`` tensor, same dtype and device as ``slopes``.
    """
    t_k = t_q if t_k is None else t_k
    if t_q > t_k:
        raise ValueError(f"there cannot be more queries ({t_q}) than keys ({t_k})")
    # int32 positions and one float (t_q, t_k) distance: at 16k keys a bias block is built without
    # int64 temporaries several times its own size
    q_pos = torch.arange(t_k - t_q, t_k, device=slopes.device, dtype=torch.int32)[:, None]
    k_pos = torch.arange(t_k, device=slopes.device, dtype=torch.int32)[None, :]
    distance = (q_pos - k_pos).to(slopes.dtype)  # (t_q, t_k): 0 on the diagonal, < 0 after the query
    bias = -slopes[:, None, None] * distance  # (H, t_q, t_k)
    return bias.masked_fill_(distance < 0, float("-inf"))


def dense_bias(slopes: torch.Tensor | None, t_q: int, t_k: int | None = None, attention_mask=None,
               dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """The whole additive bias one attention call adds to ``q k^T / sqrt(d)``, as a 4-D tensor.

    Causal always; plus ALiBi when ``slopes`` is given (``(1, H, t_q, t_k)``, else ``(1, 1, t_q,
    t_k)``); plus ``-inf`` on padded keys when ``attention_mask`` (``(B, t_k)``, True or 1 = a real
    token) is given (``(B, H, t_q, t_k)``). A query always sees its own key, so a padded query still
    has one finite score and never produces NaN. It is 4-D because PyTorch's CPU flash kernel takes a
    4-D mask, while a 3-D one sends attention down the slow "math" path.
    """
    t_k = t_q if t_k is None else t_k
    if slopes is not None:
        bias = alibi_bias(slopes.to(dtype=dtype), t_q, t_k)[None]  # (1, H, t_q, t_k)
        device = bias.device
    else:
        bias = torch.zeros(t_q, t_k, dtype=dtype, device=device)
        bias = bias.masked_fill(~causal_mask(t_q, t_k, device=device), float("-inf"))[None, None]
    if attention_mask is not None:
        keep = attention_mask[:, None, None, :].to(device=device, dtype=torch.bool)  # (B, 1, 1, t_k)
        own_key = torch.arange(t_k, device=device) == torch.arange(t_k - t_q, t_k, device=device)[:, None]
        bias = bias.masked_fill(~(keep | own_key), float("-inf"))  # (B, H, t_q, t_k)
    return bias
