"""Exercise 06.cached_greedy: greedy decoding with a key/value cache written by hand.

The learner's ``cached_greedy(model, prompt_ids, n_new)`` runs the prompt once (prefill), keeping each
layer's keys and values, then one token at a time: the new token's query attends to every cached key
plus its own, with the ALiBi bias of the *last* query row (the newest key at bias 0). Its tokens must
equal ``model.generate(prompt_ids, n_new, temperature=0)``, past ``block_size``.

The model handed to the learner is ``tfa_core``'s, with three guards (forward hooks that the reference
switches off):

- ``model(...)``, a block or a block's ``attn`` cannot be called: the point is to write attention and
  the cache by hand from the model's modules and weights (``wte``, ``ln_1``, ``attn.c_attn``,
  ``attn.v_mix``, ``attn.proj_mix``, ``ln_2``, ``mlp.c_fc``, ``mlp.c_proj``, ``ln_f``, ``lm_head``);
- ``wte`` and each ``attn.c_attn`` accept ``len(prompt) + n_new`` positions in all, what a cache
  needs: a loop that recomputes the whole sequence at every step runs past that budget, after which
  those modules give zeros, and the tokens go wrong in a way the check recognises and names.

The guards are hooks and attributes of the modules, so they travel with the deep copy of the case's
model that every call gets; each copy starts with its full budget. What the check compares is the
returned tokens, which are plain data already.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from tfa_core.model.config import GPTConfigALiBi
from tfa_core.model.registry import get_model
from .checking import Case, Exercise, Mistake, register
from .comparing import same_tensor
from .whole_model import authors_slopes, scramble


class CallNotAllowed(RuntimeError):
    """The learner called a module that the exercise asks them to write by hand."""


def _refuse(module, args):
    if getattr(module, "_check_armed", False):
        raise CallNotAllowed(
            f"{type(module).__name__}.forward is switched off in this check: write the attention and the "
            "cache yourself from the model's modules (transformer.wte, each block's ln_1, attn.c_attn, "
            "attn.v_mix, attn.proj_mix, ln_2, mlp.c_fc, mlp.c_proj, then transformer.ln_f and lm_head)")


def _count(module, args, output):
    """Forward hook: count the positions this module has run; past its budget, give zeros."""
    if not getattr(module, "_check_armed", False):
        return None
    module._check_seen += args[0].shape[1]  # (B, T) ids or (B, T, C) activations
    if module._check_seen > module._check_budget:
        return torch.zeros_like(output)
    return None


def decoding_model(n_head=6, use_v=False, use_proj=False, seed=3) -> nn.Module:
    """A tiny FactoredALiBi (2 layers, ``n_head`` heads of 8, 41 tokens, block_size 12, up to 48
    positions) with seeded random weights, in eval mode, its guards not yet armed."""
    config = GPTConfigALiBi(n_layer=2, n_head=n_head, n_embd=8 * n_head, vocab_size=41, block_size=12,
                            dropout=0.0, use_v=use_v, use_proj=use_proj, model_type="FactoredALiBi")
    model = scramble(get_model("FactoredALiBi", config), seed).eval()
    with torch.no_grad():  # louder MLPs and sharper attention: greedy tokens that follow the context
        for name, p in model.named_parameters():  # (a random model otherwise repeats one token)
            p.mul_(4.0 if ".mlp." in name else 3.0 if "c_attn" in name else 1.0)
    model.register_forward_pre_hook(_refuse)
    for block in model.transformer.h:
        block.register_forward_pre_hook(_refuse)
        block.attn.register_forward_pre_hook(_refuse)
    return model


def _guarded(model: nn.Module) -> list[nn.Module]:
    return [model, *model.transformer.h, *(block.attn for block in model.transformer.h)]


def _counted(model: nn.Module) -> list[nn.Module]:
    return [model.transformer.wte, *(block.attn.c_attn for block in model.transformer.h)]


def arm(model: nn.Module, budget: int) -> nn.Module:
    """Switch the guards on: no ``model(...)``, and ``budget`` positions per counted module."""
    for module in _guarded(model):
        module._check_armed = True
    for module in _counted(model):
        module._check_armed, module._check_seen, module._check_budget = True, 0, budget
        if not getattr(module, "_check_hooked", False):
            module.register_forward_hook(_count)
            module._check_hooked = True
    return model


def disarm(model: nn.Module) -> nn.Module:
    for module in _guarded(model) + _counted(model):
        module._check_armed = False
    return model


def reference_cached_greedy(model: nn.Module, prompt_ids: torch.Tensor, n_new: int) -> torch.Tensor:
    """``model.generate(prompt_ids, n_new, temperature=0)``: ``(B, T0 + n_new)`` ids."""
    disarm(model)
    return model.generate(prompt_ids, max_new_tokens=n_new, temperature=0)


# -- the known mistakes ------------------------------------------------------------------------------


def _decode_variant(mistake: str):
    """Greedy decoding from the model's modules with one known mistake."""

    def cached_greedy(model, prompt_ids, n_new):
        config = model.config
        H, C = config.n_head, config.n_embd
        d = C // H
        slopes = authors_slopes(H).to(prompt_ids.device)
        blocks = model.transformer.h
        keys, values = [None] * len(blocks), [None] * len(blocks)
        prompt_length = prompt_ids.shape[1]

        def run(ids, first_position):
            xt = model.transformer.wte(ids)
            xe = torch.zeros_like(xt)
            B, T, _ = xt.shape
            for layer, block in enumerate(blocks):
                q, k = block.attn.c_attn(block.ln_1(xt + xe)).split(C, dim=2)
                q, k = q.view(B, T, H, d).transpose(1, 2), k.view(B, T, H, d).transpose(1, 2)
                v = xt.view(B, T, H, d).transpose(1, 2)
                if getattr(block.attn, "v_mix", None) is not None:
                    v = torch.einsum("hg,bgtd->bhtd", block.attn.v_mix, v)
                if keys[layer] is not None and mistake != "cache overwritten":
                    k, v = torch.cat([keys[layer], k], dim=2), torch.cat([values[layer], v], dim=2)
                keys[layer], values[layer] = k, v
                T_k = k.shape[2]
                query = torch.arange(T_k - T, T_k, device=ids.device)
                if T == 1 and first_position > 0:  # a decoding step
                    if mistake == "newest key masked":
                        query = query - 1  # the row of the previous position: its own key is "ahead"
                    if mistake == "positions restart":
                        query = query - prompt_length  # counted from 0 again after the prompt
                distance = query[:, None] - torch.arange(T_k, device=ids.device)[None, :]
                bias = (-slopes[:, None, None] * distance).masked_fill(distance < 0, float("-inf"))
                y = ((q @ k.transpose(-2, -1)) / math.sqrt(d) + bias).softmax(dim=-1) @ v
                if getattr(block.attn, "proj_mix", None) is not None:
                    y = torch.einsum("hg,bgtd->bhtd", block.attn.proj_mix, y)
                xt = xt + y.transpose(1, 2).reshape(B, T, C)
                xe = xe + block.mlp.c_proj(nn.functional.gelu(block.mlp.c_fc(block.ln_2(xt + xe))))
            return model.lm_head(model.transformer.ln_f(xt + xe))

        ids = prompt_ids
        logits = run(ids, 0)
        for step in range(n_new):
            next_id = logits[:, -1].argmax(dim=-1, keepdim=True)
            ids = torch.cat([ids, next_id], dim=1)
            if step == n_new - 1:
                break
            if mistake == "recomputing":
                keys[:], values[:] = [None] * len(blocks), [None] * len(blocks)
                logits = run(ids, 0)
            else:
                logits = run(next_id, ids.shape[1] - 1)
        return ids

    cached_greedy.__name__ = f"cached_greedy_{mistake.replace(' ', '_')}"
    return cached_greedy


MISTAKES = ("newest key masked", "positions restart", "cache overwritten", "recomputing")


def decoding_case(label, prompt_length, n_new, batch=1, hint="", **model_options) -> Case:
    prompt = torch.randint(0, 41, (batch, prompt_length),
                           generator=torch.Generator().manual_seed(prompt_length))
    model = arm(decoding_model(**model_options), prompt_length + n_new)
    budget = f"; the layers accept {prompt_length + n_new} positions each, what a cache needs"
    return Case(label + budget, (model, prompt, n_new), hint=hint)


register(Exercise(
    id="06.cached_greedy",
    function="cached_greedy",
    title="greedy decoding with a key/value cache written by hand",
    reference=reference_cached_greedy,
    cases=lambda: [
        decoding_case("a prompt of 5 tokens and 4 new ones (inside block_size 12), 6 heads", 5, 4,
                      hint="prefill: run the prompt once, keeping each layer's keys and values; then each "
                           "new token alone, its key and value appended, its query attending to all of them"),
        decoding_case("a prompt of 8 tokens and 20 new ones: past block_size 12, use_v=True", 8, 20,
                      use_v=True,
                      hint="the new query sits at the end of the keys, at position T_k - 1: its bias row is "
                           "-m * (T_k - 1 - j), so the newest key gets 0"),
        decoding_case("two prompts of 6 tokens (B = 2) and 24 new tokens, use_v and use_proj, 4 heads", 6, 24,
                      batch=2, n_head=4, use_v=True, use_proj=True),
    ],
    compare=same_tensor(("row", "position")),
    mistakes=[
        Mistake(_decode_variant("newest key masked"),
                "the newest key is not at bias 0: the new token's query sits at the end of the keys "
                "(position T_k - 1, after appending its own key), so use the last row of the bias; here it "
                "gets the row of the position before and cannot see its own key"),
        Mistake(_decode_variant("positions restart"),
                "the positions restart after the prompt: the token decoded at step s sits at position "
                "len(prompt) + s, after every cached key, not at s"),
        Mistake(_decode_variant("cache overwritten"),
                "the cache is overwritten: append each new key and value to the layer's cache "
                "(torch.cat along the length) instead of replacing it"),
        Mistake(_decode_variant("recomputing"),
                "the whole sequence is recomputed at every step instead of appending one token to the cache: "
                "that is O(n^2) work; the layers here accept each position once "
                "(len(prompt) + n_new in all), so past that budget they return zeros"),
    ],
))
