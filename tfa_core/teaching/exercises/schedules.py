"""Exercises of notebook 06, training: the learning-rate schedule (linear warmup, then cosine decay to
a floor), and the two filters that shape sampling, top-k and top-p (nucleus)."""

from __future__ import annotations

import math

import torch

from tfa_core.decoding.sampling import top_k_filter, top_p_filter
from tfa_core.training.trainer import TrainingConfig, learning_rate_at
from .comparing import close_number
from .checking import Case, Exercise, Mistake, register
from .comparing import close_tensor

LOGIT_DIMS = ("row", "token")

# -- 06.lr_schedule -----------------------------------------------------------------------------------


def reference_lr_schedule(step: int, warmup_steps: int, max_steps: int, max_lr: float,
                          min_lr: float) -> float:
    """tfa_core's ``learning_rate_at`` with these settings."""
    config = TrainingConfig(max_steps=max_steps, warmup_steps=warmup_steps, learning_rate=max_lr,
                            min_learning_rate=min_lr)
    return learning_rate_at(step, config)


def _schedule_variant(mistake: str):
    def answer(step, warmup_steps, max_steps, max_lr, min_lr):
        if mistake == "no warmup":
            warmup_steps = 0
        if mistake == "decay to zero":
            min_lr = 0.0
        if mistake == "warmup from zero" and step < warmup_steps:
            return max_lr * step / warmup_steps
        if mistake == "warmup one step too long" and step <= warmup_steps:
            return max_lr * (step + 1) / warmup_steps
        if step < warmup_steps:
            return max_lr * (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
        if mistake != "no clamp":
            progress = min(1.0, progress)
        if mistake == "linear decay":
            return max_lr - progress * (max_lr - min_lr)
        return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)

    return answer


def _schedule_case(step, warmup_steps=10, max_steps=100, max_lr=1e-3, min_lr=1e-4, note="", hint=""):
    label = (f"step {step}, warmup_steps={warmup_steps}, max_steps={max_steps}, max_lr={max_lr:g}, "
             f"min_lr={min_lr:g}")
    return Case(label + (f" ({note})" if note else ""), (step, warmup_steps, max_steps, max_lr, min_lr),
                hint=hint)


register(Exercise(
    id="06.lr_schedule",
    function="lr_schedule",
    title="linear warmup, then cosine decay to min_lr",
    reference=reference_lr_schedule,
    cases=lambda: [
        _schedule_case(0, note="the first warmup step",
                       hint="warmup: max_lr * (step + 1) / warmup_steps, so the very first step already "
                            "learns"),
        _schedule_case(4, note="during warmup"),
        _schedule_case(9, note="the last warmup step reaches max_lr"),
        _schedule_case(10, note="the cosine starts at max_lr",
                       hint="from step warmup_steps on: "
                            "progress = (step - warmup_steps) / (max_steps - warmup_steps)"),
        _schedule_case(30, note="on the way down",
                       hint="min_lr + 0.5 * (1 + cos(pi * progress)) * (max_lr - min_lr)"),
        _schedule_case(55, note="halfway down"),
        _schedule_case(100, note="the end: min_lr"),
        _schedule_case(150, note="past max_steps", hint="after max_steps the rate stays at min_lr"),
        _schedule_case(0, warmup_steps=0, max_steps=50, max_lr=3e-3, min_lr=3e-4, note="no warmup at all",
                       hint="with warmup_steps = 0 the cosine starts at step 0, at max_lr"),
    ],
    compare=close_number("the learning rate", atol=1e-12, rtol=1e-6),
    mistakes=[
        Mistake(_schedule_variant("no warmup"),
                "there is no warmup: the first warmup_steps steps must climb linearly to max_lr"),
        Mistake(_schedule_variant("warmup from zero"),
                "off by one at the start: step 0 must already get max_lr / warmup_steps, so use (step + 1)"),
        Mistake(_schedule_variant("warmup one step too long"),
                "off by one at the warmup edge: warmup covers steps 0 .. warmup_steps - 1 "
                "(step < warmup_steps); the cosine starts at step warmup_steps"),
        Mistake(_schedule_variant("decay to zero"),
                "the cosine decays to 0; it must end at min_lr: "
                "min_lr + 0.5 * (1 + cos(pi * progress)) * (max_lr - min_lr)"),
        Mistake(_schedule_variant("linear decay"), "the decay is linear; it follows half a cosine"),
        Mistake(_schedule_variant("no clamp"),
                "past max_steps the cosine climbs again: clamp progress to 1 so the rate stays at min_lr"),
    ],
))

# -- 06.top_k_filter ----------------------------------------------------------------------------------


def _rows(*rows) -> torch.Tensor:
    return torch.tensor(rows)


def _top_k_variant(mistake: str):
    def answer(logits, k):
        k = min(k, logits.shape[-1])
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        if mistake == "zero":
            return logits.masked_fill(logits < kth, 0.0)
        if mistake == "drops the kth":
            return logits.masked_fill(logits <= kth, float("-inf"))
        raise ValueError(mistake)

    return answer


register(Exercise(
    id="06.top_k_filter",
    function="top_k_filter",
    title="keep the k most likely tokens",
    reference=top_k_filter,
    cases=lambda: [
        Case("one row of 5 logits, k = 2", (_rows([2.0, 1.0, 0.5, 0.0, -1.0]), 2)),
        Case("two rows of 6 logits, k = 3",
             (_rows([0.0, 2.5, -1.0, 1.5, 0.5, 1.0], [1.0, 3.0, 0.2, 2.0, -0.5, 0.0]), 3),
             hint="each row keeps its own k largest: torch.topk(logits, k, dim=-1)"),
        Case("k = 1: only the most likely token", (_rows([0.3, -0.2, 1.1, 0.8, -1.5, 0.0]), 1)),
        Case("k = 10, more than the 6 tokens there are: keep them all",
             (_rows([0.3, -0.2, 1.1, 0.8, -1.5, 0.0]), 10),
             hint="torch.topk refuses k > vocabulary size: use min(k, logits.shape[-1])"),
    ],
    compare=close_tensor(LOGIT_DIMS, atol=1e-6),
    mistakes=[
        Mistake(_top_k_variant("zero"),
                "dropped tokens must get -inf, not 0: a logit of 0 still has probability after the softmax"),
        Mistake(_top_k_variant("drops the kth"),
                "the k-th largest is dropped too: drop only the logits strictly smaller than it"),
    ],
))

# -- 06.top_p_filter ----------------------------------------------------------------------------------


def _top_p_variant(mistake: str):
    def answer(logits, p):
        if mistake == "unsorted":
            probs = torch.softmax(logits, dim=-1)
            return logits.masked_fill(probs.cumsum(dim=-1) - probs >= p, float("-inf"))
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits, dim=-1)
        if mistake == "drops the crossing token":
            drop_sorted = probs.cumsum(dim=-1) > p
        elif mistake == "zero":
            drop_sorted = probs.cumsum(dim=-1) - probs >= p
        else:
            raise ValueError(mistake)
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        return logits.masked_fill(drop, 0.0 if mistake == "zero" else float("-inf"))

    return answer


register(Exercise(
    id="06.top_p_filter",
    function="top_p_filter",
    title="nucleus (top-p) filtering",
    reference=top_p_filter,
    cases=lambda: [
        Case("one row, already sorted, p = 0.8 (probabilities 0.56, 0.21, 0.13, 0.08, 0.03)",
             (_rows([2.0, 1.0, 0.5, 0.0, -1.0]), 0.8),
             hint="keep tokens, most likely first, until their probabilities add up to p; the token that "
                  "crosses p is kept (0.56 + 0.21 < 0.8, so the third token is needed)"),
        Case("one row, not sorted, p = 0.6", (_rows([0.0, 2.5, -1.0, 1.5, 0.5, 1.0]), 0.6),
             hint="sort the probabilities (descending) before adding them up, then put the decision back "
                  "in the original order"),
        Case("two rows, p = 0.9",
             (_rows([1.0, 3.0, 0.2, 2.0, -0.5, 0.0], [0.3, -0.2, 1.1, 0.8, -1.5, 0.0]), 0.9)),
        Case("p = 0.05: only the most likely token of each row",
             (_rows([0.3, -0.2, 1.1, 0.8, -1.5, 0.0]), 0.05),
             hint="the most likely token is always kept, however small p is"),
        Case("a peaked row: the top token alone has 0.90 > p = 0.5",
             (_rows([4.0, 0.0, -1.0, 0.5, 1.0, -2.0]), 0.5)),
        Case("p = 1: keep every token", (_rows([1.0, 3.0, 0.2, 2.0, -0.5, 0.0]), 1.0)),
    ],
    compare=close_tensor(LOGIT_DIMS, atol=1e-6),
    mistakes=[
        Mistake(_top_p_variant("drops the crossing token"),
                "the token that crosses p is dropped: keep it (drop a token only when the tokens ranked "
                "above it already reach p)"),
        Mistake(_top_p_variant("unsorted"),
                "the probabilities are added up in vocabulary order; sort them, most likely first"),
        Mistake(_top_p_variant("zero"),
                "dropped tokens must get -inf, not 0: a logit of 0 still has probability after the softmax"),
    ],
))
