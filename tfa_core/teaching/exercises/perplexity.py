"""Exercises of notebook 07, length extrapolation: perplexity from per-token losses, and the windows of
a sliding-window evaluation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from tfa_core.experiments.evaluation import LengthResult
from .checking import Case, Exercise, Mistake, register
from .comparing import close_number, same_tensor

IGNORE_INDEX = -100
"""The target id that ``F.cross_entropy`` (and ``tfa_core``'s loss) skips: padding, masked tokens."""


# -- 07.perplexity -------------------------------------------------------------------------------------


def reference_perplexity(losses: torch.Tensor, targets: torch.Tensor) -> float:
    """What ``evaluate_length`` reports: the exponential of the mean loss over the scored tokens."""
    scored = targets != IGNORE_INDEX
    mean_loss = losses[scored].double().mean().item()
    return LengthResult(length=losses.shape[-1], mode="non_overlapping", loss=mean_loss,
                        tokens_scored=int(scored.sum())).perplexity


def _cross_entropy_case(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token losses as ``F.cross_entropy(..., reduction="none")`` gives them: 0 where ignored."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 6, 10, generator=generator) * 2
    targets = torch.randint(0, 10, (2, 6), generator=generator)
    targets[0, :2] = IGNORE_INDEX  # e.g. the start of a window already scored by the previous one
    targets[1, 4:] = IGNORE_INDEX  # e.g. padding at the end
    losses = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none", ignore_index=IGNORE_INDEX)
    return losses, targets


def _perplexity_cases() -> list[Case]:
    losses, targets = _cross_entropy_case(seed=7)
    return [
        Case("one row of four scored tokens, losses [2.0, 1.0, 3.0, 0.5]",
             (torch.tensor([[2.0, 1.0, 3.0, 0.5]]), torch.tensor([[5, 2, 7, 1]]))),
        Case("two rows, three of eight targets are -100 (their loss is 0)",
             (torch.tensor([[0.0, 0.0, 1.5, 2.5], [1.0, 3.0, 2.0, 0.0]]),
              torch.tensor([[-100, -100, 4, 9], [3, 3, 8, -100]])),
             hint="only targets that are not -100 count: average over those tokens alone"),
        Case("losses from F.cross_entropy(..., reduction='none', ignore_index=-100) on random logits",
             (losses, targets)),
        Case("one scored token among three",
             (torch.tensor([[0.0, 0.0, 2.3]]), torch.tensor([[-100, -100, 4]]))),
        Case("every loss 0: a model that is always sure and right",
             (torch.zeros(2, 3), torch.ones(2, 3, dtype=torch.long)),
             hint="a perfect model has perplexity 1"),
    ]


register(Exercise(
    id="07.perplexity",
    function="perplexity",
    title="perplexity from per-token losses, ignored tokens left out",
    reference=reference_perplexity,
    cases=_perplexity_cases,
    compare=close_number("the perplexity", atol=0.0, rtol=1e-4,
                         shape_hint="average over every scored token of every row"),
    mistakes=[
        Mistake(lambda losses, targets: losses[targets != IGNORE_INDEX].exp().mean().item(),
                "that is the mean of exp(loss); perplexity is exp of the mean loss. exp and mean do not "
                "commute: the mean of exp is larger, pulled up by the worst tokens"),
        Mistake(lambda losses, targets: math.exp(losses.mean().item()),
                "the ignored tokens (target -100) were counted: their loss is 0, so averaging over every "
                "entry lowers the mean; divide by the number of scored tokens"),
        Mistake(lambda losses, targets: 2 ** losses[targets != IGNORE_INDEX].mean().item(),
                "the losses are in nats (cross-entropy uses the natural log): perplexity is exp(mean), "
                "not 2**mean"),
    ],
))

# -- 07.sliding_windows --------------------------------------------------------------------------------


def _window_starts(n_tokens: int, length: int, stride: int) -> list[int]:
    return list(range(0, n_tokens - length, stride))  # each window needs length + 1 tokens


def reference_sliding_windows(n_tokens: int, length: int, stride: int) -> torch.Tensor:
    """The targets each window of ``evaluate_length(..., mode="sliding", stride=stride)`` scores, when
    its budget ``tokens_scored`` ends where a window ends (otherwise ``evaluate_length`` adds one more
    window for the tail that this exercise leaves unscored).

    Window ``w`` starts at ``starts[w]`` and holds ``length + 1`` tokens: inputs
    ``starts[w] .. starts[w] + length - 1`` and targets one further. Entry ``[w, t]`` is the index of
    the token that position ``t`` predicts, ``starts[w] + t + 1``, when this window scores it, and
    ``-100`` when an earlier window already did. Returns ``(n_windows, length)`` long.
    """
    starts = torch.tensor(_window_starts(n_tokens, length, stride))
    targets = starts[:, None] + torch.arange(1, length + 1)[None, :]  # (n_windows, length)
    first = (starts == 0)[:, None]
    scored = first | (torch.arange(length) >= length - stride)[None, :]  # later windows: the last `stride`
    return targets.masked_fill(~scored, IGNORE_INDEX)


def _windows(starts, length: int, stride: int, score: str = "last", first_scores_all: bool = True):
    """A variant of the answer, for the known mistakes."""
    starts = torch.tensor(list(starts), dtype=torch.long)
    targets = starts[:, None] + torch.arange(1, length + 1)[None, :]
    position = torch.arange(length)[None, :]
    if score == "all":
        scored = torch.ones_like(targets, dtype=torch.bool)
    else:
        scored = position >= length - stride if score == "last" else position < stride
        if first_scores_all:
            scored = scored | (starts == 0)[:, None]
    return targets.masked_fill(~scored, IGNORE_INDEX)


def _windows_case(n_tokens: int, length: int, stride: int, note: str = "", hint: str = "") -> Case:
    label = f"n_tokens={n_tokens}, length={length}, stride={stride}" + (f" ({note})" if note else "")
    return Case(label, (n_tokens, length, stride), hint=hint)


register(Exercise(
    id="07.sliding_windows",
    function="sliding_windows",
    title="which targets each sliding window scores",
    reference=reference_sliding_windows,
    cases=lambda: [
        _windows_case(13, 4, 2, hint="starts 0, 2, 4, ...: each window needs length + 1 tokens, so the last "
                                     "start is at most n_tokens - length - 1"),
        _windows_case(14, 4, 4, "stride = length: non-overlapping windows, every target scored"),
        _windows_case(18, 6, 4, "the last three tokens fit no further window: they stay unscored",
                      hint="a window that would run past the end is not made: tokens after the last "
                           "window stay unscored (fewer than stride of them)"),
        _windows_case(9, 8, 4, "exactly one window"),
        _windows_case(10, 3, 1, "stride 1: every later window scores one new token"),
    ],
    compare=same_tensor(("window", "position")),
    mistakes=[
        Mistake(lambda n, L, S: _windows(range(0, n - L, S), L, S, score="all"),
                "every window scores all its targets, so with stride < length the overlapping tokens "
                "are scored twice; a later window scores only its last `stride` targets (-100 elsewhere)"),
        Mistake(lambda n, L, S: _windows(range(0, (n - L) // S * S, S), L, S),
                "the tail is dropped: a last window that still fits was left out. Starts run over "
                "range(0, n_tokens - length, stride), ceil((n_tokens - length) / stride) windows"),
        Mistake(lambda n, L, S: _windows(range(0, n - L, S), L, S, score="first"),
                "later windows must score their *last* `stride` targets, the ones with the most context "
                "and not yet scored; their first targets were scored by the window before"),
        Mistake(lambda n, L, S: _windows(range(0, n - L, S), L, S, first_scores_all=False),
                "the first window has no window before it: it scores all its targets"),
        Mistake(lambda n, L, S: _windows(range(0, n - L + 1, S), L, S),
                "a window of `length` inputs needs length + 1 tokens (the targets go one further): "
                "the last possible start is n_tokens - length - 1"),
    ],
))
