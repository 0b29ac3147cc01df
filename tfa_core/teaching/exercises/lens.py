"""Exercises of notebook 08, inside the streams: the logit lens (a stream read through the final norm
and the tied embedding), and one layer's attention probabilities with the ALiBi bias."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from tfa_core.model.alibi import alibi_slopes
from tfa_core.model.config import GPTConfigALiBi
from tfa_core.experiments.inspection import layer_attention, lens_logits
from tfa_core.model.factored import FactoredCausalSelfAttention
from .checking import Case, Exercise, Mistake, register
from .comparing import close_tensor

EPS = 1e-5  # nn.LayerNorm's default, and the model's


def _randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- 08.logit_lens -------------------------------------------------------------------------------------


def reference_lens(stream: torch.Tensor, norm_weight: torch.Tensor, wte: torch.Tensor) -> torch.Tensor:
    """``tfa_core.experiments.inspection.lens_logits`` with a final norm that has these weights (and, like the
    course's models, no bias)."""
    ln_f = nn.LayerNorm(stream.shape[-1], eps=EPS, bias=False)
    with torch.no_grad():
        ln_f.weight.copy_(norm_weight)
        return lens_logits(stream, ln_f, wte)


def _lens_case(label: str, stream_shape: tuple, vocab: int, seed: int, scale: float = 1.0,
               hint: str = "") -> Case:
    C = stream_shape[-1]
    norm_weight = 1 + _randn(C, seed=seed + 1, scale=0.5)  # a trained norm: weights away from 1
    return Case(label,
                (_randn(*stream_shape, seed=seed, scale=scale), norm_weight, _randn(vocab, C, seed=seed + 2)),
                hint=hint)


def _unbiased_norm(stream, norm_weight, wte):
    centred = stream - stream.mean(-1, keepdim=True)
    return centred / torch.sqrt(stream.var(-1, keepdim=True) + EPS) * norm_weight @ wte.T


register(Exercise(
    id="08.logit_lens",
    function="lens",
    title="a stream read through the final norm and the tied embedding",
    reference=reference_lens,
    cases=lambda: [
        _lens_case("stream (2, 3, 6), wte (6, 6): a square embedding, vocabulary = width", (2, 3, 6), 6,
                   seed=1,
                   hint="logits = layer_norm(stream) * norm_weight @ wte.T: (..., C) @ (C, V) -> (..., V)"),
        _lens_case("stream (1, 8), wte (12, 8)", (1, 8), 12, seed=2),
        _lens_case("a large stream (2, 5, 8) (norm 30x the embedding's), wte (20, 8)", (2, 5, 8), 20, seed=3,
                   scale=30.0, hint="the norm rescales each vector: the lens does not depend on its size"),
        _lens_case("every layer at once: stream (3, 1, 4, 8), wte (10, 8)", (3, 1, 4, 8), 10, seed=4,
                   hint="normalise over the last dimension only; the leading ones are layers, batch, "
                        "positions"),
    ],
    compare=close_tensor(None, atol=1e-4, rtol=1e-4),
    mistakes=[
        Mistake(lambda stream, w, wte: stream @ wte.T,
                "the final norm is skipped: the model reads its streams through ln_f first, so the lens must "
                "too (subtract the mean, divide by the standard deviation, multiply by norm_weight)"),
        Mistake(lambda stream, w, wte: F.layer_norm(stream, (stream.shape[-1],), w, eps=EPS) @ wte,
                "the embedding is used untransposed: wte is (vocab, C), so the logits are x @ wte.T "
                "(row v of wte is token v's vector)"),
        Mistake(lambda stream, w, wte: F.layer_norm(stream, (stream.shape[-1],), eps=EPS) @ wte.T,
                "the norm's weights are missing: after normalising, multiply by norm_weight, the trained "
                "gain of the final norm"),
        Mistake(lambda stream, w, wte: torch.softmax(reference_lens(stream, w, wte), dim=-1),
                "those are probabilities: the lens returns the logits, before any softmax"),
        Mistake(_unbiased_norm,
                "the variance is the unbiased one (torch.var divides by C - 1): LayerNorm divides by C, "
                "use x.var(-1, unbiased=False, keepdim=True)"),
    ],
))

# -- 08.attention_probabilities ------------------------------------------------------------------------


def reference_attention_probabilities(h: torch.Tensor, w_qk: torch.Tensor,
                                      slopes: torch.Tensor) -> torch.Tensor:
    """``tfa_core.experiments.inspection.layer_attention`` of a factored attention layer with these
    weights."""
    C, H = h.shape[-1], slopes.shape[0]
    config = GPTConfigALiBi(n_layer=1, n_head=H, n_embd=C, block_size=8, vocab_size=2, dropout=0.0)
    attention = FactoredCausalSelfAttention(config).eval()
    with torch.no_grad():
        attention.c_attn.weight.copy_(w_qk)
        return layer_attention(attention, h, slopes)


def _variant(h, w_qk, slopes, scale: str = "head", sign: float = -1.0, mask: bool = True, axis: int = -1,
             swap: bool = False, future: str = "signed"):
    """A version of the answer, for the known mistakes."""
    B, T, C = h.shape
    H = slopes.shape[0]
    q, k = (h @ w_qk.T).split(C, dim=-1)
    if swap:
        q, k = k, q
    q, k = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k))  # (B, H, T, d)
    scores = q @ k.transpose(-2, -1)
    if scale == "head":
        scores = scores / math.sqrt(C // H)
    elif scale == "width":
        scores = scores / math.sqrt(C)
    distance = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # (T, T), i - j
    # how an unmasked answer treats keys after the query: -m (i - j) (a reward), no penalty, or -m |i - j|
    far = {"signed": distance, "zero": distance.clamp(min=0), "absolute": distance.abs(),
           "none": torch.zeros_like(distance)}[future]
    bias = sign * slopes[:, None, None] * far
    if mask:
        bias = bias.masked_fill(distance < 0, float("-inf"))
    return torch.softmax(scores + bias, dim=axis)


def _attention_case(label: str, B: int, T: int, C: int, slopes: torch.Tensor, seed: int,
                    hint: str = "") -> Case:
    h = F.layer_norm(_randn(B, T, C, seed=seed), (C,))  # what ln_1 gives: unit-size rows
    w_qk = _randn(2 * C, C, seed=seed + 1, scale=0.6)
    return Case(label, (h, w_qk, slopes), hint=hint)


register(Exercise(
    id="08.attention_probabilities",
    function="attention_probabilities",
    title="one layer's attention probabilities with ALiBi",
    reference=reference_attention_probabilities,
    cases=lambda: [
        _attention_case("B=1, T=5, C=8, 2 heads, slopes [0.5, 0.125]", 1, 5, 8,
                        torch.tensor([0.5, 0.125]), seed=1,
                        hint="q, k = (h @ w_qk.T).split(C, -1); split into heads (B, H, T, d); "
                             "softmax(q @ k^T / sqrt(d) + bias, dim=-1)"),
        _attention_case("B=2, T=6, C=12, 3 heads (slopes of the authors' algorithm)", 2, 6, 12,
                        alibi_slopes(3), seed=3),
        _attention_case("one token: it can only attend to itself", 1, 1, 8, alibi_slopes(2), seed=5,
                        hint="a single query has a single key: its probability is 1"),
        _attention_case("B=1, T=8, C=16, 4 heads, steep slopes [1, 0.5, 0.25, 0.125]", 1, 8, 16,
                        torch.tensor([1.0, 0.5, 0.25, 0.125]), seed=7),
        _attention_case("slopes all 0: plain causal attention", 1, 4, 8, torch.zeros(2), seed=9),
    ],
    compare=close_tensor(("batch", "head", "query", "key"), atol=1e-5),
    mistakes=[
        Mistake(lambda h, w, s: _variant(h, w, s, scale="none"),
                "the scores are not scaled: divide q @ k^T by sqrt(d), d the head size, before adding the "
                "bias"),
        Mistake(lambda h, w, s: _variant(h, w, s, scale="width"),
                "the scale is sqrt(C), the model width; it is sqrt(d), the size of one head (C / H)"),
        Mistake(lambda h, w, s: _variant(h, w, s, sign=+1.0),
                "the bias has the wrong sign: it is -m (i - j), a penalty that grows with distance, so "
                "far keys lose weight"),
        Mistake(lambda h, w, s: _variant(h, w, s, mask=False),
                "keys after the query are not masked: add -inf where j > i before the softmax"),
        Mistake(lambda h, w, s: _variant(h, w, s, mask=False, future="zero"),
                "the causal mask is missing: with (i - j).clamp(min=0) the keys after the query get bias 0, "
                "so every query also reads the future; set them to -inf, "
                "bias.masked_fill(j > i, float('-inf')), before the softmax"),
        Mistake(lambda h, w, s: _variant(h, w, s, mask=False, future="absolute"),
                "the causal mask is missing: -m |i - j| only penalises the keys after the query, it does not "
                "hide them; set them to -inf, bias.masked_fill(j > i, float('-inf')), before the softmax"),
        Mistake(lambda h, w, s: _variant(h, w, s, mask=False, future="none"),
                "neither the ALiBi bias nor the causal mask is there: add -m (i - j) for keys j <= i and "
                "-inf for keys j > i to the scores, before the softmax"),
        Mistake(lambda h, w, s: _variant(h, w, s, future="none"),
                "the causal mask is right but the ALiBi bias is missing: add -m (i - j), each head's slope "
                "times the distance back, to the scores before the softmax"),
        Mistake(lambda h, w, s: _variant(h, w, s, axis=-2),
                "the softmax runs over the queries; it must run over the keys (dim=-1), so each query's "
                "row sums to 1"),
        Mistake(lambda h, w, s: _variant(h, w, s, swap=True),
                "queries and keys are swapped: q is the first C outputs of h @ w_qk.T, and "
                "scores[i, j] = q_i · k_j"),
    ],
))
