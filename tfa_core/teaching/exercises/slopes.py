"""Exercises of notebook 03, ALiBi: the slopes by the authors' algorithm, the bias matrix with its
causal mask, how far back each head looks, and the bias in cached decoding."""

from __future__ import annotations

import math

import torch

from tfa_core.model.alibi import alibi_bias, alibi_slopes
from .checking import Case, Exercise, Mistake, register
from .comparing import close_tensor

BIAS_DIMS = ("head", "query", "key")

# -- 03.slopes -----------------------------------------------------------------------------------------


def _closed_form(n_head: int) -> torch.Tensor:
    return torch.tensor([2.0 ** (-8 * (h + 1) / n_head) for h in range(n_head)])


_NOT_POWER_OF_TWO = ("{n} is not a power of two: take the slopes for p = {p} heads, then the first "
                     "{rest} of the slopes for {two_p} heads at even positions (the 1st, 3rd, ...)")


def _slopes_case(n_head: int) -> Case:
    p = 2 ** int(math.floor(math.log2(n_head)))
    hint = "" if p == n_head else _NOT_POWER_OF_TWO.format(n=n_head, p=p, rest=n_head - p, two_p=2 * p)
    kind = "a power of two" if p == n_head else "not a power of two"
    return Case(f"n_head = {n_head} ({kind})", (n_head,), hint=hint)


register(Exercise(
    id="03.slopes",
    function="slopes",
    title="ALiBi slopes by the authors' algorithm",
    reference=alibi_slopes,
    cases=lambda: [_slopes_case(n) for n in (4, 8, 1, 2, 6, 3, 12, 5)],
    compare=close_tensor(("head",), atol=1e-7, rtol=1e-5, accept_lists=True),
    mistakes=[
        Mistake(_closed_form, "that is the closed form 2^(-8(h+1)/n), right only when n is a power of "
                "two; for other n take the power-of-two slopes, then every other slope of twice as many "
                "heads"),
        Mistake(lambda n: alibi_slopes(n).sort(descending=True).values,
                "right numbers, wrong order: the extra slopes go after the first p, unsorted"),
        Mistake(lambda n: torch.tensor([2.0 ** (-8 * h / n) for h in range(n)]),
                "off by one: the first head's slope is 2^(-8/n), not 2^0 = 1 (k runs from 1 to n)"),
    ],
))

# -- 03.bias -------------------------------------------------------------------------------------------


def _distance(t_q: int, t_k: int, queries_at_end: bool = True) -> torch.Tensor:
    first = t_k - t_q if queries_at_end else 0
    return torch.arange(first, first + t_q)[:, None] - torch.arange(t_k)[None, :]  # (t_q, t_k)


def _bias_from(slopes, distance, sign=-1.0, mask=True):
    bias = sign * slopes[:, None, None] * distance.abs().to(slopes.dtype)
    if mask:
        bias = bias.masked_fill(distance < 0, float("-inf"))
    return bias


register(Exercise(
    id="03.bias",
    function="bias_matrix",
    title="the ALiBi bias with its causal mask",
    reference=lambda slopes, T: alibi_bias(slopes, T),
    cases=lambda: [
        Case("slopes = [0.5], T = 4", (torch.tensor([0.5]), 4)),
        Case("slopes for 4 heads, T = 5", (alibi_slopes(4), 5),
             hint="broadcast: slopes[:, None, None] (H, 1, 1) times distances (1, T, T) gives (H, T, T)"),
        Case("slopes for 6 heads, T = 3", (alibi_slopes(6), 3)),
        Case("one token: slopes for 2 heads, T = 1", (alibi_slopes(2), 1),
             hint="one query, one key, at distance 0: the bias is 0"),
    ],
    compare=close_tensor(BIAS_DIMS, atol=1e-6),
    mistakes=[
        Mistake(lambda slopes, T: _bias_from(slopes, _distance(T, T), sign=+1.0),
                "the sign is wrong: the bias is -m (i - j), a penalty that grows with distance"),
        Mistake(lambda slopes, T: _bias_from(slopes, _distance(T, T), mask=False),
                "keys after the query are not masked: set entries with j > i to float('-inf')"),
        Mistake(lambda slopes, T: _bias_from(slopes, _distance(T, T), mask=False).masked_fill(
                    _distance(T, T) < 0, -1e9),
                "masked entries must be float('-inf'), not a large negative number"),
        Mistake(lambda slopes, T: _bias_from(slopes, _distance(T, T).T),
                "query and key are swapped: entry [h, i, j] is for query i (row) and key j (column)"),
    ],
))

# -- 03.half_weight_distance ---------------------------------------------------------------------------


def reference_half_weight_distance(slopes: torch.Tensor) -> torch.Tensor:
    """How many tokens back ALiBi alone halves a key's attention weight: ``exp(-m d) = 1/2``."""
    return math.log(2) / slopes


register(Exercise(
    id="03.half_weight_distance",
    function="half_weight_distance",
    title="how far back each head looks",
    reference=reference_half_weight_distance,
    cases=lambda: [
        Case("slopes = [0.5]", (torch.tensor([0.5]),)),
        Case("slopes for 8 heads", (alibi_slopes(8),)),
        Case("slopes for 6 heads", (alibi_slopes(6),)),
    ],
    compare=close_tensor(("head",), atol=1e-4, rtol=1e-5, accept_lists=True),
    mistakes=[
        Mistake(lambda slopes: 1 / slopes, "1/m is where the weight falls to 1/e; half is where "
                "exp(-m d) = 1/2, so d = ln(2) / m"),
        Mistake(lambda slopes: 0.5 / slopes, "the weight is exp(-m d); solve exp(-m d) = 1/2 for d"),
        Mistake(lambda slopes: math.log(2) * slopes,
                "you multiplied by the slope: exp(-m d) = 1/2 gives m d = ln 2, so d = ln(2) / m, a "
                "division; a steeper head (larger m) halves sooner, so its distance must be shorter"),
    ],
))

# -- 03.cached_bias ------------------------------------------------------------------------------------


register(Exercise(
    id="03.cached_bias",
    function="cached_bias",
    title="the bias when the queries are the newest tokens",
    reference=alibi_bias,
    cases=lambda: [
        Case("slopes = [0.5], one new query over t_k = 5 keys", (torch.tensor([0.5]), 1, 5),
             hint="the query is the newest token, at position 4: it sees all five keys, the newest with "
                  "bias 0"),
        Case("slopes for 4 heads, t_q = 2 queries over t_k = 6 keys", (alibi_slopes(4), 2, 6),
             hint="query i sits at position t_k - t_q + i"),
        Case("slopes for 3 heads, t_q = t_k = 4 (no cache: the square bias)", (alibi_slopes(3), 4, 4)),
        Case("slopes for 2 heads, t_q = t_k = 1", (alibi_slopes(2), 1, 1)),
    ],
    compare=close_tensor(BIAS_DIMS, atol=1e-6),
    mistakes=[
        Mistake(lambda slopes, t_q, t_k: _bias_from(slopes, _distance(t_q, t_k, queries_at_end=False)),
                "your queries sit at the start of the keys; in cached decoding they are the newest "
                "tokens, the last t_q positions, so the newest key gets bias 0 (a known bug elsewhere)"),
        Mistake(lambda slopes, t_q, t_k: _bias_from(slopes, _distance(t_q, t_k), mask=False),
                "keys after a query are not masked: set them to float('-inf')"),
    ],
))
