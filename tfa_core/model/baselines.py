"""Baselines to compare the factored model against.

- ``VanillaGPT`` (``Vanilla``): a GPT-2 style transformer, one residual stream, dense ``C x C`` value
  and output maps, learned positions added to the stream.
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

from tfa_core.model.alibi import alibi_slopes
from tfa_core.model.attention import causal_attention, merge_heads, split_heads
from tfa_core.model.common import CausalLanguageModel, causal_lm_loss
from tfa_core.model.factored import MLP

__all__ = ["VanillaGPT", "VanillaGPTALiBi", "SASPTransformer"]


class CausalSelfAttention(nn.Module):
    """GPT-2 attention: dense Q, K, V from the stream and a dense output projection; with
    ``use_alibi`` the ALiBi bias is added to the scores (``VanillaALiBi``)."""

    def __init__(self, config, use_alibi: bool = False):
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.register_buffer("alibi_slopes", alibi_slopes(config.n_head, config.alibi_max_bias) if use_alibi else None)

    def forward(self, x, attention_mask=None, cache=None, shared=None):
        q, k, v = (split_heads(t, self.n_head) for t in self.c_attn(x).split(x.shape[-1], dim=2))
        # q, k, v: (B, H, T, d)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, T_past + T, d): every token so far
        y = causal_attention(q, k, v, self.alibi_slopes, attention_mask, self.dropout if self.training else 0.0,
                             shared=shared)
        return self.resid_dropout(self.c_proj(merge_heads(y)))


class VanillaBlock(nn.Module):
    def __init__(self, config, use_alibi: bool = False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, use_alibi)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, attention_mask=None, cache=None, shared=None):
        x = x + self.attn(self.ln_1(x), attention_mask, cache, shared)
        return x + self.mlp(self.ln_2(x))


class _SingleStreamModel(CausalLanguageModel):
    """One residual stream and a tied output layer. Positions: a learned table added to the stream,
    or (``position_scheme = "alibi"``) the ALiBi bias inside attention and nothing added."""

    position_scheme = "learned"

    def __init__(self, config, make_block):
        super().__init__(config)
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([make_block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        if self.learned_positions:
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    @property
    def learned_positions(self) -> bool:
        return self.position_scheme == "learned"

    def forward(self, input_ids, attention_mask=None, labels=None, past_key_values=None, use_cache=False):
        self.check_inputs(input_ids, attention_mask, labels)
        cache = self.prepare_cache(input_ids, attention_mask, past_key_values, use_cache)
        x = self.transformer.wte(input_ids)  # (B, T, C)
        if self.learned_positions:
            x = x + self.transformer.wpe(self.positions(input_ids, cache))  # after the cached tokens
        x = self.transformer.drop(x)
        shared = self.shared_biases(cache)  # one ALiBi bias for every layer (VanillaALiBi)
        for block, layer_cache in zip(self.transformer.h, self.layer_caches(cache)):
            x = self.run_block(block, x, attention_mask, layer_cache, shared)
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab)
        out = {"loss": causal_lm_loss(logits, labels) if labels is not None else None, "logits": logits}
        if cache is not None:
            out["past_key_values"] = cache
        return out


class VanillaGPT(_SingleStreamModel):
    """GPT-2 style transformer (registry name ``Vanilla``)."""

    def __init__(self, config):
        super().__init__(config, lambda c: VanillaBlock(c, use_alibi=self.position_scheme == "alibi"))
        self.init_weights()


class VanillaGPTALiBi(VanillaGPT):
    """The GPT-2 style block with ALiBi instead of a position table (registry name
    ``VanillaALiBi``): it separates "ALiBi" from "factored streams" in the comparison."""

    position_scheme = "alibi"


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

    def forward(self, h, attention_mask=None, cache=None):
        T = h.shape[1]
        q, k = split_heads(self.q(h), self.n_head), split_heads(self.k(h), self.n_head)  # (B, H, T, d)
        v = split_heads(self.v(h) if self.v is not None else h, self.n_head)  # (B, H, T, d)
        keys, values = cache.append(k, v) if cache is not None else (k, v)  # (B, H, T_past + T, d)
        dropout_p = self.dropout if self.training else 0.0
        softmax_part = causal_attention(q, keys, values, None, attention_mask, dropout_p)
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

    def forward(self, x, attention_mask=None, cache=None, shared=None):
        # ``shared`` (the ALiBi biases of the forward pass) is taken for a uniform block signature;
        # SASP has learned positions and no ALiBi, so it has nothing to share
        h = self.ln(x)
        return x + self.beta_sa * self.attn(h, attention_mask, cache) + self.beta_ff * self.mlp(h)


class SASPTransformer(_SingleStreamModel):
    """Simplified attention sub-block with projections (registry name ``SASP``)."""

    def __init__(self, config):
        super().__init__(config, SASPBlock)
        self.init_weights()
        for block in self.transformer.h:
            nn.init.zeros_(block.attn.k.weight)  # softmax starts uniform: A starts as the identity
