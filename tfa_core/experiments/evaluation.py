"""Evaluation by length: how good is a model's next-token prediction with L tokens of context?

Every evaluation scores a fixed budget of targets: the first ``tokens_scored`` tokens of the text that
have a token before them (text indices ``1 .. tokens_scored``; by default 32,768, or all of the text
when it is shorter). Every length and both ways of cutting windows score exactly those targets, each
once, so the numbers at different lengths differ only in the context the model had, never in the text.

Two ways to cut the text into windows of ``L`` tokens (the ALiBi paper, section 4, discusses both):

- **non-overlapping**: windows side by side. The first tokens of each window have almost no context --
  so a longer ``L`` lowers perplexity partly just because fewer tokens sit near a window start (the
  "early token" effect), not because the model uses far context.
- **sliding** (``stride`` S < L): windows S apart; each scores only its last S targets (the first
  window scores all of them), so every scored token has at least ``L - S`` tokens of context.

When the budget does not end where a window ends, the last window reaches past it and scores only the
targets up to the budget; its positions past the budget are padding. The models are causal, so a
scored position never sees what comes after it, padding included.

Windows go through the model in batches of one shape, ``(rows, L)``: the last batch is padded with rows
that are scored nowhere, so a compiled model compiles once per length. Under ``torchrun``
(``distributed=True``) each process scores every N-th window and the sums are added up across
processes: any number of processes gives the number one process gives.

``loss_by_position`` (the mean loss at each position inside the window) shows where the difference
between the two ways comes from. Long windows go through the model's query blocks
(``fast_attention.py``), so 16k tokens fit in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
import torch.nn.functional as F

from tfa_core.model.checks import require_int

__all__ = ["DEFAULT_TOKENS_SCORED", "LengthResult", "evaluation_budget", "window_stride", "token_losses",
           "scored_windows", "evaluate_length", "evaluate_lengths", "test_length_extrapolation"]

DEFAULT_TOKENS_SCORED = 32_768
"""Targets scored when the caller names no budget (or all the text has, if fewer): the count the
study's CPU recipe uses, seconds on a CPU for the course's models, and a multiple of every power-of-two
length up to 32,768, so that at those lengths no window has to reach past the budget."""


def evaluation_budget(requested: int | None, available_tokens: int) -> int:
    """The targets an evaluation scores when the caller does not insist on a number: ``requested``
    (``None``: :data:`DEFAULT_TOKENS_SCORED`), or all that a text of ``available_tokens`` tokens has
    when that is fewer (``available_tokens - 1``: the first token has nothing before it to predict it)."""
    return min(DEFAULT_TOKENS_SCORED if requested is None else requested, available_tokens - 1)


def window_stride(length: int, mode: str, stride: int | None = None) -> int:
    """How far apart windows of ``length`` start: ``length`` for ``"non_overlapping"`` windows,
    ``stride`` (default half the length) for ``"sliding"`` ones."""
    return length if mode == "non_overlapping" else (stride or max(1, length // 2))


@dataclass
class LengthResult:
    """The result of evaluating one model at one window length."""

    length: int
    mode: str
    loss: float  # mean next-token loss in nats
    tokens_scored: int
    loss_by_position: list[float] = field(default_factory=list, repr=False)
    note: str = ""
    stride: int | None = None  # the windows' spacing: length for non-overlapping windows

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if math.isfinite(self.loss) else float("nan")


@torch.no_grad()
def token_losses(model, windows: torch.Tensor) -> torch.Tensor:
    """Per-token next-token losses: ``windows`` is ``(B, L + 1)``; returns ``(B, L)`` where entry
    ``t`` is the loss of predicting token ``t + 1`` from tokens ``0..t``."""
    logits = model(windows[:, :-1])["logits"]  # (B, L, V)
    return F.cross_entropy(logits.float().transpose(1, 2), windows[:, 1:], reduction="none")


def scored_windows(tokens_scored: int, length: int, stride: int) -> list[tuple[int, int, int]]:
    """The windows that score the targets ``1 .. tokens_scored`` (text indices), each exactly once.

    Each window is ``(start, first, end)``: it holds the text tokens ``start .. start + length`` and
    scores its positions ``first .. end - 1``, whose targets are the text indices
    ``start + first + 1 .. start + end``. Windows start ``stride`` apart; the first scores all its
    positions, each later one the targets the window before did not reach (its last ``stride``
    positions), and the last stops at the budget (``end < length`` when the budget ends inside it).
    ``stride == length`` gives the non-overlapping windows.
    """
    windows, start, reached = [], 0, 0  # reached: the last target scored so far
    while reached < tokens_scored:
        end = min(length, tokens_scored - start)
        windows.append((start, reached - start, end))
        reached, start = start + end, start + stride
    return windows


def _window_batch(text: torch.Tensor, windows, rows: int, length: int):
    """``rows`` windows of ``length + 1`` tokens and the mask of what they score, ``(rows, length)``.
    Rows past ``len(windows)``, and tokens past the end of ``text``, are padding (token 0), scored
    nowhere."""
    inputs = torch.zeros(rows, length + 1, dtype=torch.long)
    scored = torch.zeros(rows, length, dtype=torch.bool)
    for row, (start, first, end) in enumerate(windows):
        piece = text[start:start + length + 1]
        inputs[row, :len(piece)] = piece
        scored[row, first:end] = True
    return inputs, scored


def _check_budget(tokens: torch.Tensor, length: int, tokens_scored: int | None) -> int:
    """The number of targets to score: ``tokens_scored``, or the default budget capped by the text."""
    available = len(tokens) - 1  # the first token has nothing before it to predict it from
    if tokens_scored is None:
        tokens_scored = evaluation_budget(None, len(tokens))
    require_int("tokens_scored", tokens_scored, minimum=1)
    if tokens_scored > available:
        raise ValueError(f"tokens_scored is {tokens_scored:,} but the text has only {available:,} targets "
                         f"({len(tokens):,} tokens); lower tokens_scored or use more text")
    if tokens_scored < length:
        raise ValueError(f"a window of {length} needs at least {length} scored targets, but tokens_scored is "
                         f"{tokens_scored:,}; use more text, a larger tokens_scored or a shorter length")
    return tokens_scored


def _process_share(distributed: bool) -> tuple[int, int]:
    """(rank, world_size): which share of the windows this process scores."""
    if not distributed:
        return 0, 1
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError("distributed=True needs a process group (torch.distributed.init_process_group, "
                         "which torchrun's processes call); leave it False in a single process")
    return dist.get_rank(), dist.get_world_size()


def _score(model, text: torch.Tensor, windows, rows: int, length: int, device):
    """The sum of the scored losses and the number of scored targets at each window position, both
    ``(length,)`` float64, over ``windows`` of ``text`` in batches of ``rows``."""
    by_position = torch.zeros(length, dtype=torch.float64)
    position_count = torch.zeros(length, dtype=torch.float64)
    for i in range(0, len(windows), rows):
        inputs, scored = _window_batch(text, windows[i:i + rows], rows, length)
        losses = token_losses(model, inputs.to(device)).double().cpu()  # (rows, L)
        by_position += torch.where(scored, losses, 0.0).sum(0)  # padding counts nowhere
        position_count += scored.sum(0)
    return by_position, position_count


@torch.no_grad()
def evaluate_length(model, tokens: torch.Tensor, length: int, mode: str = "non_overlapping",
                    stride: int | None = None, batch_size: int = 8, tokens_scored: int | None = None,
                    device=None, distributed: bool = False) -> LengthResult:
    """Mean loss of ``model`` on the first ``tokens_scored`` targets of ``tokens`` (1-D ids), read in
    windows of ``length`` tokens.

    ``mode``: ``"non_overlapping"`` or ``"sliding"`` (``stride`` defaults to ``length // 2``).
    ``tokens_scored`` defaults to :data:`DEFAULT_TOKENS_SCORED` or all the text has, whichever is
    smaller; the same budget gives the same scored tokens at every length, in both modes. It must be
    at least ``length``. ``distributed=True`` (inside ``torchrun``): each process scores a share of
    the windows and the sums are all-reduced, so every process returns the whole result. A model that
    cannot take ``length`` tokens (a learned position table ends at ``block_size``) gets a NaN loss and
    a note saying why.
    """
    if mode not in ("non_overlapping", "sliding"):
        raise ValueError(f"mode must be 'non_overlapping' or 'sliding', got {mode!r}")
    require_int("batch_size", batch_size, minimum=1)
    stride = window_stride(length, mode, stride)
    if not 0 < stride <= length:
        raise ValueError(f"stride must be between 1 and the length {length}, got {stride}")
    limit = model.max_sequence_length
    if length > limit:
        why = (f"its learned position table ends at {limit}" if model.learned_positions
               else f"max_position_embeddings is {limit}")
        return LengthResult(length, mode, float("nan"), 0, note=f"cannot run {length} tokens: {why}",
                            stride=stride)
    tokens_scored = _check_budget(tokens, length, tokens_scored)
    windows = scored_windows(tokens_scored, length, stride)
    rank, world_size = _process_share(distributed)
    rows = min(batch_size, math.ceil(len(windows) / world_size))  # one shape, (rows, length), everywhere
    device = device or next(model.parameters()).device
    text = tokens[:tokens_scored + 1]  # all the evaluation ever reads
    was_training = model.training
    model.eval()
    by_position, position_count = _score(model, text, windows[rank::world_size], rows, length, device)
    model.train(was_training)
    if distributed:  # add up every process's sums
        sums = torch.cat([by_position, position_count]).to(device)
        dist.all_reduce(sums)
        by_position, position_count = sums.cpu().split(length)
    count = int(position_count.sum())
    if count != tokens_scored:  # every target exactly once: anything else is a bug in the window plan
        raise RuntimeError(f"scored {count} targets instead of {tokens_scored}; please report this")
    mean_by_position = (by_position / position_count.clamp(min=1)).tolist()
    return LengthResult(length, mode, by_position.sum().item() / count, count, mean_by_position,
                        stride=stride)


def evaluate_lengths(model, tokens, lengths, modes=("non_overlapping", "sliding"),
                     **kwargs) -> list[LengthResult]:
    """:func:`evaluate_length` for every length and mode."""
    return [evaluate_length(model, tokens, length, mode, **kwargs) for length in lengths for mode in modes]


def test_length_extrapolation(model, tokenizer, device, config, prompt: str = "The evolution of",
                              factors=(0.5, 1, 2, 4), temperature: float = 0.7, seed: int = 0) -> list[dict]:
    """The tutorial's check: generate up to ``factor x block_size`` tokens for each factor and report
    whether it worked, with the end of the text. Models with a learned position table slide their
    window past ``block_size``; ALiBi models see the whole context up to ``max_position_embeddings``.
    """
    model.to(device).eval()
    prompt_ids = torch.tensor([tokenizer.encode(prompt)], device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    results = []
    for factor in factors:
        length = int(factor * config.block_size)
        entry = {"length": length, "ok": False, "tokens": 0, "text": "", "error": ""}
        try:
            out = model.generate(prompt_ids, max(0, length - prompt_ids.shape[1]), temperature=temperature,
                                 top_k=40, generator=generator)
            entry.update(ok=True, tokens=out.shape[1],
                         text=tokenizer.decode(out[0], skip_special_tokens=True))
        except ValueError as error:
            entry["error"] = str(error)
        print(f"--- {length} tokens ({factor}x block_size): "
              + (f"ok ... {entry['text'][-80:]!r}" if entry["ok"] else f"failed: {entry['error']}"))
        results.append(entry)
    return results


test_length_extrapolation.__test__ = False  # a tutorial function, not a pytest test
