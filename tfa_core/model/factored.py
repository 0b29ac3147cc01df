"""The Token-Factored Transformer with ALiBi, top to bottom.

Two residual streams of width ``C`` run through the blocks:

- ``xt``, token-like: starts as the token embedding, nothing positional is ever added to it, and only
  attention writes to it. Attention's values are ``xt`` itself (or whole head-blocks of it mixed by
  an ``H x H`` matrix), so each head-block of ``xt`` stays a mixture of token embeddings;
- ``xe``, embedding-like: starts at zero and only the MLP writes to it.

Each block: ``xt = xt + attn(ln_1(xt + xe), xt)``, then ``xe = xe + mlp(ln_2(xt + xe))``.
Positions enter only as the ALiBi bias on attention scores, built once per forward pass from the
model's slopes (``alibi.py``). Logits are ``ln_f(xt + xe) @ W_emb^T``. What every model shares --
the embedding, the final norm, the tied head, input checks, the loss, generation -- is in
``common.py``; the same class also runs the study's other position schemes (``positions.py``).

Shapes: ``B`` batch, ``T`` length (``T_k`` keys, more than ``T`` when decoding with a cache), ``H``
heads, ``d`` head size, ``C = H * d``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from tfa_core.model.common import CausalLanguageModel
from tfa_core.model.positions import apply_rotary, rotary_angles

__all__ = [
    "channel_mix",
    "kronecker_lift",
    "FactoredCausalSelfAttention",
    "MLP",
    "FactoredBlock",
    "FactoredTransformer",
    "FactoredTransformerModelALiBi",
    "FactoredTransformerModel",
]


def channel_mix(x: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Apply ``mix ⊗ I_d`` to a tensor split into heads: head ``h`` becomes ``sum_g mix[h, g] * x_g``.

    Each head-block of ``d`` channels is carried whole; channels inside a block are never mixed, so a
    vector that reads as a token embedding still reads as one. ``x``: ``(B, H, T, d)``; ``mix``:
    ``(H, H)``. The cost is ``H²`` multiply-adds per channel, never a ``C x C`` matrix.
    """
    return torch.einsum("hg,bgtd->bhtd", mix, x)


def kronecker_lift(mix: torch.Tensor, head_dim: int) -> torch.Tensor:
    """The dense ``C x C`` matrix ``mix ⊗ I_d`` that :func:`channel_mix` applies -- for teaching and
    tests only; the model never builds it."""
    return torch.kron(mix, torch.eye(head_dim, dtype=mix.dtype, device=mix.device))


class FactoredCausalSelfAttention(nn.Module):
    """Queries and keys from the normalised sum of both streams; values from ``xt`` alone.

    ``use_v`` adds a learned ``H x H`` value mix ``V`` (the map ``V ⊗ I_d`` on ``xt``), ``use_proj``
    an ``H x H`` output mix of the same form; both start as the identity. There is no ``C x C`` value
    or output matrix. ``alibi_slopes`` is ``None`` (the layer uses the model's slopes) unless you give
    this layer slopes of its own. With ``rotary`` positions the queries and keys (never the values)
    are rotated by position. ``keep_weights = True`` makes the layer take the written-out branch and
    keep its attention probabilities in ``weights`` (``tfa_core.experiments.inspection`` reads them).
    """

    def __init__(self, config, rotary: bool = False):
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.rotary = rotary
        self.c_attn = nn.Linear(config.n_embd, 2 * config.n_embd, bias=config.bias)  # Q and K only
        self.v_mix = nn.Parameter(torch.eye(config.n_head)) if config.use_v else None
        self.proj_mix = nn.Parameter(torch.eye(config.n_head)) if config.use_proj else None
        self.resid_dropout = nn.Dropout(config.dropout)
        self.register_buffer("alibi_slopes", None)  # (H,) to override the model's slopes in this layer
        self.keep_weights = False
        self.weights = None

    def forward(self, h: torch.Tensor, xt: torch.Tensor, bias, cache=None) -> torch.Tensor:
        """``h``: ``(B, T, C)``, the normalised ``xt + xe``; ``xt``: ``(B, T, C)``; ``bias``: what
        the model built for this forward pass -- ``None`` for a plain causal mask, else the additive
        ``(1 or B, H, T, T_k)`` bias (or a ``fast_attention.BlockedBias`` for long inputs). With
        ``cache`` (this layer's ``LayerCache``) the ``T`` new tokens follow the cached ones and attend
        to all of them. Returns ``(B, T, C)``, what attention adds to ``xt``."""
        B, T, C = h.shape
        H, d = self.n_head, C // self.n_head
        q, k = self.c_attn(h).split(C, dim=2)  # (B, T, C) each
        q = q.view(B, T, H, d).transpose(1, 2)  # (B, H, T, d)
        k = k.view(B, T, H, d).transpose(1, 2)  # (B, H, T, d)
        v = xt.view(B, T, H, d).transpose(1, 2)  # (B, H, T, d): the tokens themselves
        if self.rotary:
            start = 0 if cache is None else cache.length
            cos, sin = rotary_angles(torch.arange(start, start + T, device=h.device), d)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if self.v_mix is not None:
            v = channel_mix(v, self.v_mix)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, T_k, d): every token so far; the queries are the last T
        dropout = self.dropout if self.training else 0.0
        if bias is not None and not isinstance(bias, torch.Tensor):  # long input: the speed room runs it
            y = bias.attend(q, k, v, dropout)  # (fast_attention.BlockedBias: no T x T bias in memory)
        elif not self.keep_weights:  # PyTorch's fused kernel, exactly the formula below
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout,
                                               is_causal=bias is None)
        else:  # the formula written out: softmax(q k^T / sqrt(d) + bias) v
            scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, H, T, T_k)
            if bias is None:  # plain causal: the fused kernel's is_causal
                bias = torch.full((T, T), float("-inf"), device=h.device).triu(1)
            weights = torch.softmax(scores + bias, dim=-1)  # (B, H, T, T_k), each row sums to 1
            self.weights = weights.detach()
            y = F.dropout(weights, dropout) @ v  # (B, H, T, d)
        if self.proj_mix is not None:
            y = channel_mix(y, self.proj_mix)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(y)


class MLP(nn.Module):
    """The usual two-layer feed-forward network, ``C -> 4C -> C`` with GELU."""

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class FactoredBlock(nn.Module):
    """One block: attention writes only ``xt``, the MLP writes only ``xe``."""

    def __init__(self, config, rotary: bool = False):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = FactoredCausalSelfAttention(config, rotary)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, xt, xe, bias, cache=None):
        xt = xt + self.attn(self.ln_1(xt + xe), xt, bias, cache)
        xe = xe + self.mlp(self.ln_2(xt + xe))
        return xt, xe


class FactoredTransformer(CausalLanguageModel):
    """The token-factored transformer (registry names ``FactoredALiBi``, and ``Factored``,
    ``FactoredSinusoidal``, ``FactoredRotary``, ``FactoredNoPE`` for the other position schemes).

    ``forward(input_ids, attention_mask=None, labels=None)`` returns ``{"loss", "logits"}``;
    ``return_streams=True`` adds ``"streams"``, the ``(xt, xe)`` pair before the first block and
    after every block. ``use_cache=True`` (or a ``past_key_values`` cache to continue) adds
    ``"past_key_values"``, the ``KVCache`` now holding these tokens too.
    """

    default_position_scheme = "alibi"
    block_class = FactoredBlock  # the study's ablations (``ablations.py``) swap in a variant

    def __init__(self, config):
        super().__init__(config, lambda config, scheme: self.block_class(config, rotary=scheme == "rotary"))

    def forward(self, input_ids, attention_mask=None, labels=None, return_streams=False,
                past_key_values=None, use_cache=False):
        self.check_inputs(input_ids, attention_mask, labels)
        cache = None  # a key/value cache only for decoding
        if past_key_values is not None or use_cache:
            cache = self.prepare_cache(input_ids, attention_mask, past_key_values, use_cache)
        start = 0 if cache is None else cache.length  # the new tokens follow the cached ones
        xt = self.transformer.drop(self.embed(input_ids, start))  # (B, T, C) token-like stream
        xe = torch.zeros_like(xt)  # (B, T, C) embedding-like stream
        T = input_ids.shape[1]
        bias = self.attention_bias(self.alibi_slopes, T, start + T, attention_mask, xt, cache)  # once
        streams = [(xt, xe)]
        for i, block in enumerate(self.transformer.h):
            layer_bias = bias if block.attn.alibi_slopes is None else self.attention_bias(  # own slopes
                block.attn.alibi_slopes, T, start + T, attention_mask, xt, cache)
            xt, xe = self.run_block(block, xt, xe, layer_bias, None if cache is None else cache[i])
            streams.append((xt, xe))
        logits = self.lm_head(self.transformer.ln_f(xt + xe))  # (B, T, vocab): read as tokens
        return self.output(logits, labels, cache, streams if return_streams else None)


FactoredTransformerModelALiBi = FactoredTransformer
"""The tutorial's name for the factored model; it serves every position scheme, ALiBi by default."""


class FactoredTransformerModel(FactoredTransformer):
    """The token-factored transformer with a learned position table added to ``xt`` (registry name
    ``Factored``): the design ALiBi replaces. Adding positions pollutes the token-like stream and
    stops the model at ``block_size``."""

    fixed_position_scheme = "learned"
