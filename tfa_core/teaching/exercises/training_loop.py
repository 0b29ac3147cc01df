"""Exercise 06.train_steps: the learner writes the training loop -- AdamW with the course's decay
groups, warmup then cosine, gradient clipping -- and, from the same weights and the same batches, must
end with the same weights as ``tfa_core``'s ``Trainer`` (to 1e-5).

A loop needs gradients, so the exercise sets ``needs_grad``: the check calls it with gradients on.
What is compared is plain data: :func:`trained_weights` reads the returned model's parameters, in the
process that ran the loop, and the check compares them with the reference's.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from tfa_core.model.config import GPTConfigALiBi
from tfa_core.model.registry import get_model
from tfa_core.training.trainer import Trainer, TrainingConfig, configure_optimizer, learning_rate_at
from .checking import Case, Exercise, Mistake, register
from .comparing import close_tensor

WEIGHT_TOLERANCE = 1e-5


def loop_model(use_v: bool = False, seed: int = 0) -> nn.Module:
    """A tiny FactoredALiBi (2 layers, 4 heads, C = 32, 29 tokens, block_size 16) with seeded weights."""
    config = GPTConfigALiBi(n_layer=2, n_head=4, n_embd=32, vocab_size=29, block_size=16, dropout=0.0,
                            use_v=use_v, use_proj=use_v, model_type="FactoredALiBi")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_model("FactoredALiBi", config)


def loop_batches(n_steps: int, batch_size: int = 4, length: int = 16, vocab_size: int = 29, seed: int = 1):
    """``n_steps`` batches of random ids ``(batch_size, length)``: a list, one per step."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab_size, (batch_size, length), generator=generator) for _ in range(n_steps)]


def loop_config(max_steps=10, warmup_steps=2, learning_rate=1e-2, grad_clip=0.1, weight_decay=0.1):
    """The training settings of a case (the learner reads learning_rate, min_learning_rate,
    warmup_steps, max_steps, weight_decay, beta1, beta2 and grad_clip)."""
    return TrainingConfig(max_steps=max_steps, warmup_steps=warmup_steps, learning_rate=learning_rate,
                          min_learning_rate=learning_rate / 10, weight_decay=weight_decay,
                          grad_clip=grad_clip, batch_size=4, device="cpu", progress=False)


def reference_train_steps(model: nn.Module, batches: list, config: TrainingConfig) -> dict:
    """The weights after ``tfa_core.Trainer`` takes one step on each of ``batches`` (in order)."""
    with torch.enable_grad():
        trainer = Trainer(model, batches[0].flatten(), config=config)
        queue = iter(batches)
        trainer.next_batch = lambda: next(queue)
        model.train()
        for _ in batches:
            trainer.train_step()
    return {name: p.detach().clone() for name, p in model.named_parameters()}


# -- the known mistakes ------------------------------------------------------------------------------


def _loop_variant(mistake: str):
    """A plain loop with one known mistake; returns the trained model."""

    def train_steps(model, batches, config):
        with torch.enable_grad():
            if mistake == "decay everything":
                groups = [{"params": list(model.parameters()), "weight_decay": config.weight_decay}]
            elif mistake == "decay every matrix":  # nanoGPT's rule: every parameter with 2 or more dims
                params = list(model.parameters())
                groups = [{"params": [p for p in params if p.dim() >= 2],
                           "weight_decay": config.weight_decay},
                          {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
            else:
                groups = [{"params": g["params"], "weight_decay": g["weight_decay"]}
                          for g in configure_optimizer(model, config).param_groups]
            optimizer = torch.optim.AdamW(groups, lr=config.learning_rate, betas=(config.beta1, config.beta2))
            model.train()
            for step, input_ids in enumerate(batches):
                lr = learning_rate_at(step + 1 if mistake == "schedule one step late" else step, config)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = model(input_ids, labels=input_ids)["loss"]
                if mistake != "no zero_grad":
                    optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if mistake != "clip after the step":
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                if mistake == "clip after the step":
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        return model

    train_steps.__name__ = f"train_steps_{mistake.replace(' ', '_')}"
    return train_steps


# -- the comparison ---------------------------------------------------------------------------------


def trained_weights(answer, model, batches, config):
    """``observe``: what ``train_steps`` returned, as data -- the returned model's parameters by name
    (a dict of them is taken as it is); anything else, ``None`` included, unchanged."""
    if isinstance(answer, nn.Module):
        return {name: p.detach().clone() for name, p in answer.named_parameters()}
    return answer


def same_weights(expected: dict, got) -> str | None:
    """The trained weights (``{name: tensor}``, see :func:`trained_weights`) are the reference's to 1e-5."""
    if not isinstance(got, dict) or not all(isinstance(v, torch.Tensor) for v in got.values()):
        return f"expected the trained model (return model), got {type(got).__name__}"
    want, have = expected, got
    compare = close_tensor(atol=WEIGHT_TOLERANCE, rtol=0.0)
    for name, weight in want.items():
        if name not in have:
            return f"the returned model has no parameter {name}: return the model you were given, trained"
        difference = compare(weight, have[name])
        if difference is not None:
            return f"after the last step, {name}: {difference}"
    return None


class TrainedWeights(dict):
    """The reference's weights, printed in one line."""

    def __repr__(self) -> str:
        return f"the weights after tfa_core.Trainer's steps ({len(self)} parameter tensors)"


def _case(label, n_steps, use_v=False, hint="", **settings):
    return Case(label, (loop_model(use_v), loop_batches(n_steps), loop_config(**settings)), hint=hint)


register(Exercise(
    id="06.train_steps",
    function="train_steps",
    title="the training loop: AdamW with decay groups, warmup then cosine, clipping",
    reference=lambda model, batches, config: TrainedWeights(reference_train_steps(model, batches, config)),
    cases=lambda: [
        _case("5 steps, warmup_steps=2 of max_steps=10, learning_rate 1e-2, weight_decay 0.1, grad_clip 0.1",
              5, hint="per step: set the scheduled lr on every param group, "
                      "loss = model(x, labels=x)['loss'], zero_grad, backward, "
                      "clip_grad_norm_(model.parameters(), grad_clip), step"),
        _case("4 steps of a model with use_v and use_proj (H x H mixes, not decayed)", 4, use_v=True,
              hint="only nn.Linear weights are decayed: not norms, not the embedding (= the head), "
                   "not the mixes"),
        _case("6 steps without warmup, past max_steps=4 (the rate stays at min_learning_rate)", 6,
              max_steps=4, warmup_steps=0, learning_rate=5e-3),
    ],
    compare=same_weights,
    observe=trained_weights,
    needs_grad=True,
    mistakes=[
        Mistake(_loop_variant("decay everything"),
                "every parameter is decayed: norms, biases, the embedding (also the output layer) and the "
                "H x H mixes must be in a group with weight_decay 0; decay only the nn.Linear weight "
                "matrices"),
        Mistake(_loop_variant("decay every matrix"),
                "the embedding (also the output layer) is decayed: the rule `p.dim() >= 2` catches it and "
                "the H x H mixes; decay only the weights of nn.Linear layers (not lm_head, which is the "
                "embedding)"),
        Mistake(_loop_variant("schedule one step late"),
                "the schedule is off by one step: step 0 (the first) uses learning_rate_at(0), "
                "i.e. learning_rate / warmup_steps"),
        Mistake(_loop_variant("clip after the step"),
                "the gradients are not clipped before the step: clip_grad_norm_ after optimizer.step() (or "
                "not at all) changes nothing; clip between loss.backward() and optimizer.step()"),
        Mistake(_loop_variant("no zero_grad"),
                "the gradients pile up from step to step: call optimizer.zero_grad() before each backward()"),
    ],
))
