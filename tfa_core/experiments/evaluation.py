"""Evaluation by length: how good is a model's next-token prediction with L tokens of context?

Two ways to cut a long text into windows of ``L`` tokens (the ALiBi paper, section 4, discusses both):

- **non-overlapping**: windows side by side. Every token is scored once, but the first tokens of each
  window have almost no context -- so a longer ``L`` lowers perplexity partly just because fewer
  tokens sit near a window start (the "early token" effect), not because the model uses far context.
- **sliding** (``stride`` S < L): windows S apart; each scores only its last S tokens (the first
  window scores all of them), so every scored token has at least ``L - S`` tokens of context.

``loss_by_position`` (the mean loss at each position inside the window) shows where the difference
comes from. Long windows go through the model's query blocks (``fast_attention.py``), so 16k tokens
fit in memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

__all__ = ["LengthResult", "token_losses", "evaluate_length", "evaluate_lengths", "test_length_extrapolation"]


@dataclass
class LengthResult:
    """The result of evaluating one model at one window length."""

    length: int
    mode: str
    loss: float  # mean next-token loss in nats
    tokens_scored: int
    loss_by_position: list[float] = field(default_factory=list, repr=False)
    note: str = ""

    @property
    def perplexity(self) -> float:
        return math.exp(self.loss) if math.isfinite(self.loss) else float("nan")


@torch.no_grad()
def token_losses(model, windows: torch.Tensor) -> torch.Tensor:
    """Per-token next-token losses: ``windows`` is ``(B, L + 1)``; returns ``(B, L)`` where entry
    ``t`` is the loss of predicting token ``t + 1`` from tokens ``0..t``."""
    logits = model(windows[:, :-1])["logits"]  # (B, L, V)
    return F.cross_entropy(logits.float().transpose(1, 2), windows[:, 1:], reduction="none")


def _window_starts(n_tokens: int, length: int, stride: int) -> list[int]:
    return list(range(0, n_tokens - length, stride))  # each window needs length + 1 tokens


@torch.no_grad()
def evaluate_length(model, tokens: torch.Tensor, length: int, mode: str = "non_overlapping",
                    stride: int | None = None, batch_size: int = 8, max_tokens: int | None = None,
                    device=None) -> LengthResult:
    """Mean loss of ``model`` on ``tokens`` (1-D ids) with windows of ``length`` tokens.

    ``mode``: ``"non_overlapping"`` or ``"sliding"`` (``stride`` defaults to ``length // 2``).
    ``max_tokens`` limits the evaluation to the first ``max_tokens`` tokens, so that every length
    scores the same text. A model that cannot take ``length`` tokens (a learned position table ends
    at ``block_size``) gets a NaN loss and a note saying why.
    """
    if mode not in ("non_overlapping", "sliding"):
        raise ValueError(f"mode must be 'non_overlapping' or 'sliding', got {mode!r}")
    limit = model.max_sequence_length
    if length > limit:
        why = (f"its learned position table ends at {limit}" if model.learned_positions
               else f"max_position_embeddings is {limit}")
        return LengthResult(length, mode, float("nan"), 0, note=f"cannot run {length} tokens: {why}")
    tokens = tokens[:max_tokens] if max_tokens else tokens
    stride = length if mode == "non_overlapping" else (stride or max(1, length // 2))
    if not 0 < stride <= length:
        raise ValueError(f"stride must be between 1 and the length {length}, got {stride}")
    starts = _window_starts(len(tokens), length, stride)
    if not starts:
        raise ValueError(f"{len(tokens)} tokens are fewer than one window of {length} + 1; "
                         "use more evaluation text or a shorter length")
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    by_position = torch.zeros(length, dtype=torch.float64)
    position_count = torch.zeros(length, dtype=torch.float64)
    for i in range(0, len(starts), batch_size):
        batch_starts = starts[i:i + batch_size]
        windows = torch.stack([tokens[s:s + length + 1] for s in batch_starts]).to(device)
        losses = token_losses(model, windows).double().cpu()  # (B, L)
        scored = torch.ones_like(losses, dtype=torch.bool)
        if mode == "sliding":  # a later window scores only the tokens the previous one did not
            first = torch.tensor([s == 0 for s in batch_starts])[:, None]
            scored = first | (torch.arange(length) >= length - stride)[None, :]
        total += losses[scored].sum().item()
        count += int(scored.sum())
        by_position += (losses * scored).sum(0)
        position_count += scored.sum(0)
    model.train(was_training)
    mean_by_position = (by_position / position_count.clamp(min=1)).tolist()
    return LengthResult(length, mode, total / count, count, mean_by_position)


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
