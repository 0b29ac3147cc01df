"""Exercises of notebook 04, channel-mixing values: the Kronecker lift ``V ⊗ I_d``, channel mixing
as an einsum over heads, the values taken from ``xt``, and reading a vector through the embedding."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from tfa_core.model.common import split_heads
from tfa_core.model.factored import channel_mix, kronecker_lift
from .checking import Case, Exercise, Mistake, register
from .comparing import close_tensor, same_tensor

HEAD_DIMS = ("batch", "head", "position", "channel")


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- 04.kronecker_lift ---------------------------------------------------------------------------------

_close_matrix = close_tensor(("row", "column"), atol=1e-6)


def _row_text(row: torch.Tensor) -> str:
    return "[" + ", ".join(format(float(x), "g") for x in row) + "]"


def _compare_lift(expected: torch.Tensor, got) -> str | None:
    """``close_tensor`` on the lifted matrix; where a row differs, the message shows that whole row, as
    expected and as it came back, so that the block pattern is visible even when the failure report
    shortens a large matrix to its first numbers."""
    difference = _close_matrix(expected, got)
    if difference is None or not isinstance(got, torch.Tensor) or got.shape != expected.shape:
        return difference
    try:
        wrong = ~torch.isclose(got.detach().cpu().float(), expected.float(), atol=1e-6, rtol=1e-4)
    except (RuntimeError, TypeError):
        return difference
    rows = wrong.any(dim=1).nonzero().flatten().tolist()
    if not rows or expected.shape[1] > 16:
        return difference
    named = re.search(r"\[row (\d+),", difference)  # the row of the entry close_tensor names
    r = int(named.group(1)) if named and int(named.group(1)) in rows else rows[0]
    return (f"{difference}; row {r} is {_row_text(got[r])}, expected {_row_text(expected[r])} "
            f"({len(rows)} of {expected.shape[0]} rows differ)")


register(Exercise(
    id="04.kronecker_lift",
    function="lift",
    title="the C x C matrix V ⊗ I_d",
    reference=kronecker_lift,
    cases=lambda: [
        Case("mix = [[1, 2], [3, 4]], head_dim = 3", (torch.tensor([[1.0, 2.0], [3.0, 4.0]]), 3)),
        Case("a random 3 x 3 mix, head_dim = 2", (_randn(3, 3, seed=1), 2)),
        Case("head_dim = 1: the lift is the mix itself", (_randn(4, 4, seed=2), 1)),
        Case("one head: mix = [[0.5]], head_dim = 4", (torch.tensor([[0.5]]), 4)),
    ],
    compare=_compare_lift,
    mistakes=[
        Mistake(lambda mix, d: torch.kron(torch.eye(d), mix),
                "the factors are swapped: I_d ⊗ V mixes channels inside every head; V ⊗ I_d = "
                "torch.kron(mix, torch.eye(head_dim)) keeps each head-block whole"),
        Mistake(lambda mix, d: torch.kron(mix.T.contiguous(), torch.eye(d)),
                "the mix is transposed: block (h, g) is mix[h, g]"),
        Mistake(lambda mix, d: mix.repeat_interleave(d, 0).repeat_interleave(d, 1),
                "each entry became a full d x d block of that number (a Kronecker product with a matrix of "
                "ones); V ⊗ I_d puts mix[h, g] only on the block's diagonal: "
                "torch.kron(mix, torch.eye(head_dim))"),
    ],
))

# -- 04.channel_mix ------------------------------------------------------------------------------------

register(Exercise(
    id="04.channel_mix",
    function="mix_heads",
    title="channel mixing as an einsum over heads",
    reference=channel_mix,
    cases=lambda: [
        Case("x of shape (1, 2, 3, 4), mix = [[0, 1], [1, 0]] (swap the heads)",
             (_randn(1, 2, 3, 4, seed=3), torch.tensor([[0.0, 1.0], [1.0, 0.0]]))),
        Case("x of shape (2, 3, 4, 2), a random 3 x 3 mix",
             (_randn(2, 3, 4, 2, seed=4), _randn(3, 3, seed=5)),
             hint="new head h = sum over g of mix[h, g] * x[:, g]: torch.einsum('hg,bgtd->bhtd', mix, x)"),
        Case("x of shape (1, 4, 2, 3), the identity mix", (_randn(1, 4, 2, 3, seed=6), torch.eye(4))),
    ],
    compare=close_tensor(HEAD_DIMS, atol=1e-5),
    mistakes=[
        Mistake(lambda x, mix: torch.einsum("gh,bgtd->bhtd", mix, x),
                "the mix is transposed: new head h takes mix[h, g] of head g (einsum 'hg,bgtd->bhtd')"),
    ],
))

# -- 04.values -----------------------------------------------------------------------------------------


def reference_values(xt: torch.Tensor, mix: torch.Tensor, n_head: int) -> torch.Tensor:
    """The values of tfa_core's factored attention: head-blocks of ``xt``, channel-mixed."""
    return channel_mix(split_heads(xt, n_head), mix)


register(Exercise(
    id="04.values",
    function="values",
    title="values from xt: split into heads, then mix",
    reference=reference_values,
    cases=lambda: [
        Case("xt of shape (1, 3, 6), 2 heads, a random mix",
             (_randn(1, 3, 6, seed=7), _randn(2, 2, seed=8), 2)),
        Case("xt of shape (2, 5, 8), 4 heads, the identity mix", (_randn(2, 5, 8, seed=9), torch.eye(4), 4),
             hint="with the identity mix the values are just xt split into heads: shape (B, H, T, d)"),
        Case("xt of shape (1, 1, 6), 3 heads, a random mix",
             (_randn(1, 1, 6, seed=10), _randn(3, 3, seed=11), 3)),
    ],
    compare=close_tensor(HEAD_DIMS, atol=1e-5),
    mistakes=[
        Mistake(lambda xt, mix, H: channel_mix(xt.reshape(xt.shape[0], H, xt.shape[1], -1), mix),
                "you reshaped (B, T, C) straight to (B, H, T, d), which scrambles positions and heads; "
                "view it as (B, T, H, d) first, then .transpose(1, 2)"),
        Mistake(lambda xt, mix, H: split_heads(xt, H),
                "the heads are split but not mixed: apply the mix over the head axis"),
    ],
))

# -- 04.nearest_tokens ---------------------------------------------------------------------------------


def reference_nearest_tokens(x: torch.Tensor, wte: torch.Tensor) -> torch.Tensor:
    """For each row of ``x`` ``(T, C)``, the token whose embedding row of ``wte`` ``(V, C)`` points
    the most the same way (highest cosine similarity). Returns ``(T,)`` int64 ids."""
    similarity = F.normalize(x, dim=-1) @ F.normalize(wte, dim=-1).T  # (T, V)
    return similarity.argmax(dim=-1)


def _nearest_case_with_big_norm():
    wte = _randn(6, 8, seed=12)
    wte[5] = 10.0 * F.normalize(wte[5] + wte[0] * 0.5, dim=0)  # long embedding: dot product favours it
    x = torch.stack([wte[0], wte[2] * 3.0, 0.8 * wte[3] + 0.2 * wte[1]])
    return x, wte


register(Exercise(
    id="04.nearest_tokens",
    function="nearest_tokens",
    title="reading a vector through the embedding matrix",
    reference=reference_nearest_tokens,
    cases=lambda: [
        Case("x is the embeddings of tokens 2, 0, 4",
             (_randn(7, 8, seed=13)[[2, 0, 4]], _randn(7, 8, seed=13))),
        Case("x is the embeddings of tokens 1 and 3 scaled by 5 and 0.1",
             (torch.stack([5 * _randn(5, 6, seed=14)[1], 0.1 * _randn(5, 6, seed=14)[3]]),
              _randn(5, 6, seed=14)),
             hint="cosine similarity ignores length: normalise both x and the embedding rows"),
        Case("one embedding is ten times longer than the others", _nearest_case_with_big_norm(),
             hint="a plain dot product favours long embeddings; cosine similarity does not"),
    ],
    compare=same_tensor(("position",)),
    mistakes=[
        Mistake(lambda x, wte: (x @ wte.T).argmax(dim=-1),
                "that is the largest dot product, which favours long embeddings; use cosine similarity "
                "(F.normalize both sides, then x @ wte.T)"),
        Mistake(lambda x, wte: (F.normalize(x, dim=-1) @ F.normalize(wte, dim=-1).T).argmin(dim=-1),
                "argmin finds the least similar token; you want argmax"),
    ],
))
