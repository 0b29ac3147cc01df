"""Exercise 05.whole_model: the learner writes the whole token-factored model as an ``nn.Module``.

The answer is a class, ``TokenFactoredModel(config)``. The check builds it for several configs, loads
the parameters of a seeded ``tfa_core`` model into it (the same parameter names: ``transformer.wte.weight``,
``transformer.h.{i}.ln_1.weight``, ``.attn.c_attn.weight``, ``.attn.v_mix``, ``.attn.proj_mix``,
``.ln_2.weight``, ``.mlp.c_fc.weight``, ``.mlp.c_proj.weight``, ``transformer.ln_f.weight``; the head
tied to ``wte``) and compares the logits to 1e-5, at the training length and well past it. Only
parameters are loaded, never buffers: the learner's slopes and masks are their own.

A model cannot cross to the grader's checking process, so :func:`observe_model` does the loading and
runs the model where it was built, and hands on plain data: the logits at each length (or what the
model raised past ``block_size``), or a ``problem`` when the parameter names or shapes are not the
reference's. :func:`compare_models` compares those. The reference and each known mistake (a
deliberately wrong :class:`SketchModel`) are observed the same way, so a learner whose model computes
the same wrong function, or has the same wrong parameters, is told which mistake it is.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from tfa_core.model.config import GPTConfigALiBi
from tfa_core.model.registry import get_model
from .checking import Case, Exercise, Mistake, describe_value, register
from .comparing import close_tensor

SEED = 5
LOGIT_DIMS = ("row", "position", "token")


def whole_model_config(n_head: int, use_v: bool = False, use_proj: bool = False, n_layer: int = 2,
                       head_dim: int = 8, vocab_size: int = 37, block_size: int = 12) -> GPTConfigALiBi:
    """A tiny FactoredALiBi config for the check: ``head_dim`` channels per head, no dropout."""
    return GPTConfigALiBi(n_layer=n_layer, n_head=n_head, n_embd=n_head * head_dim, vocab_size=vocab_size,
                          block_size=block_size, dropout=0.0, use_v=use_v, use_proj=use_proj,
                          model_type="FactoredALiBi")


def scramble(model: nn.Module, seed: int = SEED) -> nn.Module:
    """Give every parameter random values of a useful size, so that every piece of the model moves
    the logits (the mixes start as the identity and the norms as 1 otherwise)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=generator)
            if name.endswith("wte.weight"):
                p.copy_(0.3 * noise)  # logits of a few units
            elif p.dim() == 2:
                p.copy_(noise / math.sqrt(p.shape[1]))  # linear layers and H x H mixes
            elif name.endswith(".weight"):
                p.copy_(1.0 + 0.2 * noise)  # layer-norm gains
            else:
                p.copy_(0.1 * noise)  # biases
    return model


def reference_whole_model(config: GPTConfigALiBi) -> nn.Module:
    """``tfa_core``'s FactoredALiBi for ``config``, with seeded random weights, in eval mode."""
    return scramble(get_model("FactoredALiBi", config)).eval()


def seeded_parameters(config: GPTConfigALiBi) -> dict[str, torch.Tensor]:
    """The parameters every model is loaded with before its logits are read: the reference's, by name.

    (:func:`observe_model` calls this rather than :func:`reference_whole_model` itself: the note on
    copying looks at the tfa_core functions that an answer's process calls directly, and the check's
    own loading must not count as the learner's.)"""
    return {name: p.detach() for name, p in reference_whole_model(config).named_parameters()}


# -- a model written out, and its known mistakes ----------------------------------------------------


def authors_slopes(n_head: int) -> torch.Tensor:
    """The ALiBi slopes by the authors' algorithm (Press et al.; see ``tfa_core.model.alibi``)."""
    def powers(n):
        return [2.0 ** (-8.0 * k / n) for k in range(1, n + 1)]

    p = 2 ** int(math.floor(math.log2(n_head)))
    return torch.tensor(powers(p) + powers(2 * p)[0::2][: n_head - p])


MISTAKES = ("learned positions", "sinusoidal positions", "mlp writes xt", "values from both streams",
            "untied head", "closed-form slopes", "no causal mask", "positive bias", "post-norm",
            "dense value matrix")


class SketchModel(nn.Module):
    """The token-factored model written out in one class, with ``mistake`` (one of :data:`MISTAKES`)
    switching in one wrong piece. ``mistake=None`` is right and equals ``tfa_core``'s model."""

    def __init__(self, config: GPTConfigALiBi, mistake: str | None = None):
        super().__init__()
        if mistake not in (None, *MISTAKES):
            raise ValueError(f"unknown mistake {mistake!r}; known: {MISTAKES}")
        self.config, self.mistake = config, mistake
        C, H = config.n_embd, config.n_head
        blocks = []
        for _ in range(config.n_layer):
            attn = nn.Module()
            attn.c_attn = nn.Linear(C, 2 * C, bias=config.bias)
            if config.use_v:
                attn.v_mix = nn.Parameter(torch.eye(C if mistake == "dense value matrix" else H))
            if config.use_proj:
                attn.proj_mix = nn.Parameter(torch.eye(H))
            mlp = nn.ModuleDict(dict(c_fc=nn.Linear(C, 4 * C, bias=config.bias),
                                     c_proj=nn.Linear(4 * C, C, bias=config.bias)))
            blocks.append(nn.ModuleDict(dict(ln_1=nn.LayerNorm(C, bias=config.bias), attn=attn,
                                             ln_2=nn.LayerNorm(C, bias=config.bias), mlp=mlp)))
        self.transformer = nn.ModuleDict(dict(wte=nn.Embedding(config.vocab_size, C), h=nn.ModuleList(blocks),
                                              ln_f=nn.LayerNorm(C, bias=config.bias)))
        if mistake == "learned positions":
            self.transformer["wpe"] = nn.Embedding(config.block_size, C)
        self.lm_head = nn.Linear(C, config.vocab_size, bias=False)
        if mistake != "untied head":
            self.lm_head.weight = self.transformer.wte.weight
        if mistake == "closed-form slopes":
            slopes = torch.tensor([2.0 ** (-8.0 * (h + 1) / H) for h in range(H)])
        else:
            slopes = authors_slopes(H)
        self.register_buffer("slopes", slopes, persistent=False)

    def attention(self, attn: nn.Module, h: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        B, T, C = h.shape
        H = self.config.n_head
        d = C // H
        q, k = attn.c_attn(h).split(C, dim=2)
        q = q.view(B, T, H, d).transpose(1, 2)  # (B, H, T, d)
        k = k.view(B, T, H, d).transpose(1, 2)
        if getattr(attn, "v_mix", None) is not None and self.mistake == "dense value matrix":
            values = values @ attn.v_mix.T  # a C x C map
        v = values.view(B, T, H, d).transpose(1, 2)
        if getattr(attn, "v_mix", None) is not None and self.mistake != "dense value matrix":
            v = torch.einsum("hg,bgtd->bhtd", attn.v_mix, v)
        position = torch.arange(T, device=h.device)
        distance = position[:, None] - position[None, :]  # (T, T): query minus key
        sign = 1.0 if self.mistake == "positive bias" else -1.0
        bias = sign * self.slopes[:, None, None] * distance  # (H, T, T)
        if self.mistake != "no causal mask":
            bias = bias.masked_fill(distance < 0, float("-inf"))
        y = ((q @ k.transpose(-2, -1)) / math.sqrt(d) + bias).softmax(dim=-1) @ v  # (B, H, T, d)
        if getattr(attn, "proj_mix", None) is not None:
            y = torch.einsum("hg,bgtd->bhtd", attn.proj_mix, y)
        return y.transpose(1, 2).reshape(B, T, C)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, T, vocab_size)`` for ids ``(B, T)``."""
        xt = self.transformer.wte(idx)  # (B, T, C)
        T, C = idx.shape[1], xt.shape[-1]
        if self.mistake == "learned positions":
            xt = xt + self.transformer.wpe(torch.arange(T, device=idx.device))
        if self.mistake == "sinusoidal positions":
            position = torch.arange(T, dtype=torch.float32)[:, None]
            frequency = torch.exp(torch.arange(0, C, 2).float() * (-math.log(10000.0) / C))
            table = torch.zeros(T, C)
            table[:, 0::2], table[:, 1::2] = torch.sin(position * frequency), torch.cos(position * frequency)
            xt = xt + table
        xe = torch.zeros_like(xt)
        for block in self.transformer.h:
            if self.mistake == "post-norm":
                xt = block.ln_1(xt + self.attention(block.attn, xt + xe, xt))
                xe = block.ln_2(xe + block.mlp.c_proj(nn.functional.gelu(block.mlp.c_fc(xt + xe))))
                continue
            values = xt + xe if self.mistake == "values from both streams" else xt
            xt = xt + self.attention(block.attn, block.ln_1(xt + xe), values)
            update = block.mlp.c_proj(nn.functional.gelu(block.mlp.c_fc(block.ln_2(xt + xe))))
            if self.mistake == "mlp writes xt":
                xt = xt + update
            else:
                xe = xe + update
        return self.lm_head(self.transformer.ln_f(xt + xe))


def wrong_model(mistake: str):
    """A class-like factory: ``wrong_model("mlp writes xt")(config)`` is that wrong model."""

    def build(config):
        return SketchModel(config, mistake)

    build.__name__ = f"wrong_model_{mistake.replace(' ', '_').replace('-', '_')}"
    return build


# -- the comparison ---------------------------------------------------------------------------------


def check_lengths(config) -> list[int]:
    """The lengths the logits are compared at: the training length, and well past it."""
    return [config.block_size, 2 * config.block_size + 5]


def _logits_of(output):
    """The logits in what a model's forward returned: a tensor, ``{"logits": ...}`` or ``(logits, ...)``."""
    if isinstance(output, dict):
        return output.get("logits")
    if isinstance(output, (tuple, list)) and output:
        return output[0]
    return output


def _names_difference(want: dict, have: dict) -> str | None:
    missing = [n for n in want if n not in have]
    extra = [n for n in have if n not in want]
    if "lm_head.weight" in extra:
        return ("lm_head.weight is a parameter of its own; the head is tied: set "
                "self.lm_head.weight = self.transformer.wte.weight")
    position_tables = [n for n in extra if "wpe" in n or "pos" in n]
    if position_tables:
        return (f"your model has a position table ({position_tables[0]}); this model has none: ALiBi puts "
                "positions in the attention scores only")
    if missing or extra:
        return (f"the parameter names differ from tfa_core's: missing {missing[:4]}, unexpected {extra[:4]} "
                f"(expected {list(want)[:6]}...)")
    for name, p in want.items():
        if tuple(have[name].shape) != tuple(p.shape):
            return f"{name} has shape {tuple(have[name].shape)}, expected {tuple(p.shape)}"
    return None


class ObservedModel(dict):
    """What :func:`observe_model` reads from a model: ``{"block_size": ..., "logits": {T: logits}}``,
    printed in one line per length. (It crosses to the grader as a plain dict.)"""

    def __repr__(self) -> str:
        return "; ".join(f"logits on {length} tokens: {describe_value(value)}"
                         for length, value in self["logits"].items())


def observe_model(model, config: GPTConfigALiBi) -> dict:
    """``observe``: the model that ``TokenFactoredModel(config)`` built, as data.

    Loads :func:`seeded_parameters` into it and runs it on two rows of seeded random ids at each of
    :func:`check_lengths`: ``{"block_size": ..., "logits": {T: (2, T, vocab_size) logits}}``. Past
    ``block_size``, what the model raises is noted (``{"raised": ..., "error": ...}``) instead of its
    logits; at ``block_size`` it propagates, as any error of the learner's. ``{"problem": ...}`` when
    there is no module, or its parameter names or shapes are not the reference's.

    The learner's model is called here directly (not through a helper), so that the tfa_core code it
    runs is seen by the note on copying.
    """
    if isinstance(model, type) or not isinstance(model, nn.Module):
        return {"problem": f"TokenFactoredModel(config) should give an nn.Module (a subclass instance), got "
                           f"{type(model).__name__}"}
    want = seeded_parameters(config)
    have = dict(model.named_parameters())
    problem = _names_difference(want, have)
    if problem is not None:
        return {"problem": problem}
    with torch.no_grad():
        for name, p in have.items():
            p.copy_(want[name])
    model.eval()
    logits = {}
    for number, length in enumerate(check_lengths(config)):
        ids = torch.randint(0, config.vocab_size, (2, length),
                            generator=torch.Generator().manual_seed(number))
        try:
            output = model(ids)
        except Exception as error:
            if length <= config.block_size:
                raise
            logits[length] = {"raised": type(error).__name__, "error": str(error)[:300]}
            continue
        logits[length] = _logits_of(output)
    return ObservedModel(block_size=config.block_size, logits=logits)


def compare_models(expected: dict, got) -> str | None:
    """Compare two observed models (see :func:`observe_model`): the same ``problem``, or logits that
    agree to 1e-5 at every length. ``None`` when they agree, else what differs, in words."""
    if not isinstance(got, dict):
        return f"expected the logits of your model, got {type(got).__name__}"
    if "problem" in expected or "problem" in got:
        if expected.get("problem") == got.get("problem"):
            return None
        return got.get("problem") or f"expected a model with this problem: {expected['problem']}"
    block_size, have_logits = expected["block_size"], got.get("logits")
    if not isinstance(have_logits, dict):
        return f"expected the logits of your model, got {type(have_logits).__name__}"
    compare = close_tensor(LOGIT_DIMS, atol=1e-5, rtol=1e-5)
    for length, want in expected["logits"].items():
        where = f"on {length} tokens" + (f" (longer than block_size = {block_size})"
                                         if length > block_size else "")
        have = have_logits.get(length)
        if isinstance(want, dict) or isinstance(have, dict):  # a model raised past block_size
            if isinstance(want, dict) and isinstance(have, dict) and want.get("raised") == have.get("raised"):
                continue
            if isinstance(have, dict):
                return (f"your model raised {have.get('raised')} {where}: {have.get('error')}; ALiBi has no "
                        "length limit, so build the mask and the bias for the actual length T in forward")
            return f"logits {where}: expected the model to raise {want.get('raised')}"
        difference = compare(want, have)
        if difference is not None:
            return f"logits {where}: {difference}"
    return None


def _case(n_head, use_v=False, use_proj=False, n_layer=2, hint=""):
    config = whole_model_config(n_head, use_v, use_proj, n_layer)
    mixes = ", ".join(name for name, on in (("use_v", use_v), ("use_proj", use_proj)) if on) or "no mixes"
    lengths = " and ".join(str(t) for t in check_lengths(config))
    label = (f"{n_layer} layers, {n_head} heads x 8 (C = {config.n_embd}), {mixes}; logits on {lengths} "
             f"tokens (block_size {config.block_size})")
    return Case(label, (config,), hint=hint)


register(Exercise(
    id="05.whole_model",
    function="TokenFactoredModel",
    title="the whole token-factored model as an nn.Module",
    reference=reference_whole_model,
    cases=lambda: [
        _case(4, hint="xt = wte(idx), xe = 0; per block xt += attn(ln_1(xt + xe), values from xt), "
                      "xe += mlp(ln_2(xt + xe)); logits = lm_head(ln_f(xt + xe)), lm_head tied to wte"),
        _case(6, hint="six heads: the slopes are [2^-2, 2^-4, 2^-6, 2^-8, 2^-1, 2^-3] "
                      "(the authors' algorithm)"),
        _case(6, use_v=True, hint="use_v: an H x H parameter attn.v_mix mixing whole heads of xt: "
                                  "torch.einsum('hg,bgtd->bhtd', v_mix, v)"),
        _case(6, use_proj=True, hint="use_proj: an H x H parameter attn.proj_mix applied to the attention "
                                     "output, per head, before the heads are merged"),
        _case(6, use_v=True, use_proj=True, n_layer=3),
    ],
    compare=compare_models,
    observe=observe_model,
    mistakes=[
        Mistake(wrong_model("learned positions"),
                "positions are added to xt: a position table pollutes the token-like stream and stops the "
                "model at block_size. ALiBi needs none; positions enter only as the bias on the scores"),
        Mistake(wrong_model("sinusoidal positions"),
                "positions are added to xt (sinusoids): nothing positional may enter xt; ALiBi puts "
                "positions only in the attention scores"),
        Mistake(wrong_model("mlp writes xt"),
                "the two streams have become one: either the MLP writes to xt (it must write only to xe: "
                "xe = xe + mlp(ln_2(xt + xe))) or the values are taken from xt + xe (they come from xt "
                "alone) -- the two mistakes compute the same function"),
        Mistake(wrong_model("untied head"),
                "the head is not tied: lm_head.weight must be transformer.wte.weight itself, not a copy "
                "or a second matrix"),
        Mistake(wrong_model("closed-form slopes"),
                "these are the closed-form slopes 2^(-8(h+1)/H), right only when H is a power of two; for "
                "six heads the authors' algorithm gives [2^-2, 2^-4, 2^-6, 2^-8, 2^-1, 2^-3]"),
        Mistake(wrong_model("no causal mask"),
                "there is no causal mask: keys after the query must get -inf before the softmax"),
        Mistake(wrong_model("positive bias"),
                "the ALiBi bias has the wrong sign: it is -m * (i - j), a penalty that grows with distance"),
        Mistake(wrong_model("post-norm"),
                "the layer norms are in the wrong place: each sub-block reads a normalised copy, "
                "ln_1(xt + xe) and ln_2(xt + xe), and the streams themselves are never normalised "
                "(pre-norm); here the sums after the sub-blocks are normalised (post-norm)"),
        Mistake(wrong_model("dense value matrix"),
                "the value mix is a C x C matrix; it is H x H (V ⊗ I_d): each head's value is a weighted sum "
                "of whole heads of xt, applied with an einsum over heads"),
    ],
))
