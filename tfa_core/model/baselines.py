"""Baselines to compare the factored model against.

- ``VanillaGPT`` (``Vanilla``): a GPT-2 style transformer, one residual stream, dense ``C x C`` value
  and output maps, learned positions added to the stream. The same class runs every other position
  scheme of the study (``VanillaALiBi``, ``VanillaSinusoidal``, ``VanillaRotary``, ``VanillaNoPE``),
  so each scheme can be compared on both blocks.
- ``SASPTransformer`` (``SASP``): the simplified attention sub-block with projections of He & Hofmann
  (2023), "Simplifying Transformer Blocks": a parallel block ``x + b_SA * A(LN(x)) + b_FF * MLP(LN(x))``
  with "shaped" attention ``A = a I + b softmax(QK^T/sqrt(d) + causal) - g U``, ``U`` the uniform
  average over the past; values are the normalised input unless ``use_v``.

Both read and extend a key/value cache when decoding (see ``kv_cache.py``); SASP's ``U v`` for a new
token is the mean of every cached value up to and including its own.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tfa_core.model.common import CausalLanguageModel, merge_heads, split_heads
from tfa_core.model.factored import MLP
from tfa_core.model.positions import apply_rotary, rotary_angles

__all__ = ["VanillaGPT", "VanillaGPTALiBi", "SASPTransformer"]


def attend(q, k, v, bias, dropout_p: float) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d) + bias) v`` as ``factored.py`` writes it out: the fused kernel for a
    dense bias (or ``None``, plain causal), the speed room's ``attend`` for a long input."""
    if bias is not None and not isinstance(bias, torch.Tensor):
        return bias.attend(q, k, v, dropout_p)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p,
                                          is_causal=bias is None)


class CausalSelfAttention(nn.Module):
    """GPT-2 attention: dense Q, K, V from the stream and a dense output projection. The ALiBi bias,
    for ``VanillaALiBi``, comes from the model; ``alibi_slopes`` overrides its slopes in this layer.
    With ``rotary`` positions the queries and keys (never the values) are rotated by position, as in
    the factored attention; with a cache the new tokens' positions start after the cached ones."""

    def __init__(self, config, rotary: bool = False):
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.rotary = rotary
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.register_buffer("alibi_slopes", None)

    def forward(self, x, bias, cache=None):
        q, k, v = (split_heads(t, self.n_head) for t in self.c_attn(x).split(x.shape[-1], dim=2))
        # q, k, v: (B, H, T, d)
        if self.rotary:
            start = 0 if cache is None else cache.length
            cos, sin = rotary_angles(torch.arange(start, start + x.shape[1], device=x.device), q.shape[-1])
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, T_past + T, d): every token so far
        y = attend(q, k, v, bias, self.dropout if self.training else 0.0)
        return self.resid_dropout(self.c_proj(merge_heads(y)))


class VanillaBlock(nn.Module):
    """The standard pre-norm block: ``x = x + attn(ln_1(x))``, then ``x = x + mlp(ln_2(x))``."""

    def __init__(self, config, rotary: bool = False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, rotary)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, bias, cache=None, attention_mask=None):
        x = x + self.attn(self.ln_1(x), bias, cache)
        return x + self.mlp(self.ln_2(x))


class SingleStreamModel(CausalLanguageModel):
    """One residual stream: positions from a learned table added to it (``Vanilla``, ``SASP``), the
    ALiBi bias (``VanillaALiBi``), or another scheme of ``positions.py`` (``VanillaSinusoidal``,
    ``VanillaRotary``, ``VanillaNoPE``)."""

    def forward(self, input_ids, attention_mask=None, labels=None, past_key_values=None, use_cache=False):
        self.check_inputs(input_ids, attention_mask, labels)
        cache = None
        if past_key_values is not None or use_cache:
            cache = self.prepare_cache(input_ids, attention_mask, past_key_values, use_cache)
        start = 0 if cache is None else cache.length
        x = self.transformer.drop(self.embed(input_ids, start))  # (B, T, C)
        T = input_ids.shape[1]
        bias = self.attention_bias(self.alibi_slopes, T, start + T, attention_mask, x, cache)
        for i, block in enumerate(self.transformer.h):
            layer_bias = bias if block.attn.alibi_slopes is None else self.attention_bias(
                block.attn.alibi_slopes, T, start + T, attention_mask, x, cache)
            # (SASP's uniform part needs the padding mask itself; VanillaBlock ignores it)
            x = self.run_block(block, x, layer_bias, None if cache is None else cache[i], attention_mask)
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab)
        return self.output(logits, labels, cache)


class VanillaGPT(SingleStreamModel):
    """GPT-2 style transformer (registry name ``Vanilla``; with another position scheme,
    ``VanillaSinusoidal``, ``VanillaRotary`` and ``VanillaNoPE``)."""

    def __init__(self, config):
        super().__init__(config, lambda config, scheme: VanillaBlock(config, rotary=scheme == "rotary"))


class VanillaGPTALiBi(VanillaGPT):
    """The GPT-2 style block with ALiBi instead of a position table (registry name
    ``VanillaALiBi``): it separates "ALiBi" from "factored streams" in the comparison."""

    fixed_position_scheme = "alibi"


class ShapedAttention(nn.Module):
    """``A = a I + b softmax(QK^T/sqrt(d) + causal) - g U`` per head, applied to the values.

    ``a, b, g`` are learnable per head (1.0, 0.1, 0.1 at start) and the key weights start at zero,
    so the softmax starts uniform, equal to ``U``, and ``A`` starts as the identity.
    """

    def __init__(self, config):
        super().__init__()
        C, H = config.n_embd, config.n_head
        self.n_head = H
        self.dropout = config.dropout
        self.q = nn.Linear(C, C, bias=config.bias)
        self.k = nn.Linear(C, C, bias=config.bias)
        self.v = nn.Linear(C, C, bias=config.bias) if config.use_v else None
        self.c_proj = nn.Linear(C, C, bias=config.bias) if config.use_proj else None
        self.alpha = nn.Parameter(torch.ones(H))
        self.beta = nn.Parameter(torch.full((H,), 0.1))
        self.gamma = nn.Parameter(torch.full((H,), 0.1))
        self.alibi_slopes = None  # SASP has learned positions, never ALiBi

    def forward(self, h, bias, cache=None, attention_mask=None):
        T = h.shape[1]
        q, k = split_heads(self.q(h), self.n_head), split_heads(self.k(h), self.n_head)  # (B, H, T, d)
        v = split_heads(self.v(h) if self.v is not None else h, self.n_head)  # (B, H, T, d)
        keys, values = cache.append(k, v) if cache is not None else (k, v)  # (B, H, T_past + T, d)
        dropout_p = self.dropout if self.training else 0.0
        softmax_part = attend(q, keys, values, bias, dropout_p)
        # U v: the mean of the values up to each new token, cached ones included
        uniform_part = causal_mean(values, attention_mask)[:, :, -T:]  # (B, H, T, d)
        a, b, g = (p.view(1, -1, 1, 1) for p in (self.alpha, self.beta, self.gamma))
        y = merge_heads(a * v + b * softmax_part - g * uniform_part)
        return self.c_proj(y) if self.c_proj is not None else y


def causal_mean(v: torch.Tensor, attention_mask=None) -> torch.Tensor:
    """``U v``: at each position the mean of the values at or before it (over real tokens only when
    ``attention_mask`` is given). ``v``: ``(B, H, T, d)``. O(T), no ``T x T`` matrix."""
    if attention_mask is None:
        counts = torch.arange(1, v.shape[2] + 1, device=v.device, dtype=v.dtype).view(1, 1, -1, 1)
        return v.cumsum(dim=2) / counts
    keep = attention_mask.to(v.dtype)[:, None, :, None]  # (B, 1, T, 1)
    return (v * keep).cumsum(dim=2) / keep.cumsum(dim=2).clamp(min=1)


class SASPBlock(nn.Module):
    """Parallel block: ``x + b_SA * A(LN(x)) + b_FF * MLP(LN(x))``, ``b_SA=1``, ``b_FF=0.2`` at start."""

    def __init__(self, config):
        super().__init__()
        self.ln = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = ShapedAttention(config)
        self.mlp = MLP(config)
        self.beta_sa = nn.Parameter(torch.tensor(1.0))
        self.beta_ff = nn.Parameter(torch.tensor(0.2))

    def forward(self, x, bias, cache=None, attention_mask=None):
        h = self.ln(x)
        return x + self.beta_sa * self.attn(h, bias, cache, attention_mask) + self.beta_ff * self.mlp(h)


class SASPTransformer(SingleStreamModel):
    """Simplified attention sub-block with projections (registry name ``SASP``)."""

    fixed_position_scheme = "learned"

    def __init__(self, config):
        super().__init__(config, lambda config, scheme: SASPBlock(config))
        for block in self.transformer.h:
            nn.init.zeros_(block.attn.k.weight)  # softmax starts uniform: A starts as the identity
