"""The Token-Factored Transformer with ALiBi, top to bottom.

Two residual streams of width ``C`` run through the blocks:

- ``xt``, token-like: starts as the token embedding, nothing positional is ever added to it, and only
  attention writes to it. Attention's values are ``xt`` itself (or whole head-blocks of it mixed by
  an ``H x H`` matrix), so ``xt`` stays a mixture of token embeddings;
- ``xe``, embedding-like: starts at zero and only the MLP writes to it.

Each block: ``xt = xt + attn(ln_1(xt + xe), xt)``, then ``xe = xe + mlp(ln_2(xt + xe))``.
Positions enter only as the ALiBi bias on attention scores. Logits are ``ln_f(xt + xe) @ W_emb^T``.

For decoding, a key/value cache keeps each layer's keys (from ``ln_1(xt + xe)``) and values (head
blocks of ``xt``, channel-mixed) so that a new token attends to them without recomputing them.

Shapes: ``B`` batch, ``T`` length, ``H`` heads, ``d`` head size, ``C = H * d``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from tfa_core.model.alibi import alibi_slopes
from tfa_core.model.attention import causal_attention, channel_mix, merge_heads, split_heads
from tfa_core.model.common import CausalLanguageModel, causal_lm_loss
from tfa_core.model.positions import apply_rotary, rotary_angles, sinusoidal_embeddings

__all__ = [
    "FactoredCausalSelfAttention",
    "MLP",
    "FactoredBlock",
    "FactoredTransformerModelALiBi",
    "FactoredTransformerModel",
]


class FactoredCausalSelfAttention(nn.Module):
    """Queries and keys from the normalised sum of both streams; values from ``xt`` alone.

    ``use_v`` adds a learned ``H x H`` value mix ``V`` (the map ``V ⊗ I_d`` on ``xt``), ``use_proj``
    an ``H x H`` output mix of the same form; both start as the identity. ALiBi slopes are a buffer,
    ``alibi_slopes``, that a user may overwrite; ``None`` for models that take positions elsewhere.
    With ``rotary`` positions, queries and keys (never the values) are rotated by position.
    """

    def __init__(self, config, position_scheme: str = "alibi"):
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.rotary = position_scheme == "rotary"
        self.c_attn = nn.Linear(config.n_embd, 2 * config.n_embd, bias=config.bias)  # Q and K only
        self.v_mix = nn.Parameter(torch.eye(config.n_head)) if config.use_v else None
        self.proj_mix = nn.Parameter(torch.eye(config.n_head)) if config.use_proj else None
        self.resid_dropout = nn.Dropout(config.dropout)
        slopes = alibi_slopes(config.n_head, config.alibi_max_bias) if position_scheme == "alibi" else None
        self.register_buffer("alibi_slopes", slopes)

    def forward(self, h: torch.Tensor, xt: torch.Tensor, attention_mask=None, cache=None,
                positions=None, shared=None) -> torch.Tensor:
        """``h``: ``(B, T, C)`` normalised ``xt + xe``; ``xt``: ``(B, T, C)``. Returns ``(B, T, C)``.

        With ``cache`` (this layer's :class:`~tfa_core.model.kv_cache.LayerCache`) the ``T`` new tokens are
        the last of the sequence: their keys and values join the cache and they attend to all of it.
        ``positions`` (``(T,)``) are only needed for rotary queries and keys; ``shared`` is the
        forward pass's :class:`~tfa_core.model.shared_bias.SharedBiases`, so that the layers share one bias.
        """
        q, k = self.c_attn(h).split(h.shape[-1], dim=2)  # (B, T, C) each
        q, k = split_heads(q, self.n_head), split_heads(k, self.n_head)  # (B, H, T, d)
        if self.rotary:
            cos, sin = rotary_angles(positions, q.shape[-1])
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        v = split_heads(xt, self.n_head)  # (B, H, T, d): the tokens themselves
        if self.v_mix is not None:
            v = channel_mix(v, self.v_mix)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, T_past + T, d): every token so far
        # the queries sit at the end of the keys: the newest key gets ALiBi bias 0
        y = causal_attention(q, k, v, self.alibi_slopes, attention_mask, self.dropout if self.training else 0.0,
                             shared=shared)
        if self.proj_mix is not None:
            y = channel_mix(y, self.proj_mix)
        return self.resid_dropout(merge_heads(y))  # (B, T, C)


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

    def __init__(self, config, position_scheme: str = "alibi"):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = FactoredCausalSelfAttention(config, position_scheme)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, xt, xe, attention_mask=None, cache=None, positions=None, shared=None):
        xt = xt + self.attn(self.ln_1(xt + xe), xt, attention_mask, cache, positions, shared)
        xe = xe + self.mlp(self.ln_2(xt + xe))
        return xt, xe


class FactoredTransformerModelALiBi(CausalLanguageModel):
    """The token-factored transformer with ALiBi (registry name ``FactoredALiBi``).

    ``forward(input_ids, attention_mask=None, labels=None)`` returns ``{"loss", "logits"}``;
    ``return_streams=True`` adds ``"streams"``, the ``(xt, xe)`` pair before the first block and
    after every block, for looking inside. ``use_cache=True`` (or a ``past_key_values`` cache to
    continue) adds ``"past_key_values"``, the :class:`~tfa_core.KVCache` now holding these tokens too.
    """

    #: how positions enter; ``None`` means "as config.position_scheme says" (ALiBi by default)
    position_scheme: str | None = None

    def __init__(self, config):
        super().__init__(config)
        scheme = self.position_scheme or config.position_scheme or "alibi"
        if scheme == "rotary" and config.head_dim % 2:
            raise ValueError(f"rotary positions rotate channel pairs: head_dim (n_embd / n_head = "
                             f"{config.head_dim}) must be even; change n_embd or n_head")
        self.position_scheme = scheme
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([FactoredBlock(config, scheme) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        if scheme == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: logits read the streams as tokens
        self.init_weights()

    @property
    def learned_positions(self) -> bool:
        return self.position_scheme == "learned"

    def embed(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The starting ``xt``: token embeddings only -- except for the ``learned`` and
        ``sinusoidal`` schemes, which add a position vector (the pollution ALiBi avoids)."""
        xt = self.transformer.wte(input_ids)  # (B, T, C)
        if self.position_scheme == "learned":
            xt = xt + self.transformer.wpe(positions)
        elif self.position_scheme == "sinusoidal":
            xt = xt + sinusoidal_embeddings(positions, xt.shape[-1]).to(xt.dtype)
        return xt

    def forward(self, input_ids, attention_mask=None, labels=None, return_streams=False,
                past_key_values=None, use_cache=False):
        self.check_inputs(input_ids, attention_mask, labels)
        cache = self.prepare_cache(input_ids, attention_mask, past_key_values, use_cache)
        positions = self.positions(input_ids, cache)  # (T,), after the cached tokens
        shared = self.shared_biases(cache)  # one ALiBi bias for every layer
        xt = self.transformer.drop(self.embed(input_ids, positions))  # (B, T, C) token-like stream
        xe = torch.zeros_like(xt)  # (B, T, C) embedding-like stream
        streams = [(xt, xe)]
        for block, layer_cache in zip(self.transformer.h, self.layer_caches(cache)):
            xt, xe = self.run_block(block, xt, xe, attention_mask, layer_cache, positions, shared)
            streams.append((xt, xe))
        logits = self.lm_head(self.transformer.ln_f(xt + xe))  # (B, T, vocab)
        out = {"loss": causal_lm_loss(logits, labels) if labels is not None else None, "logits": logits}
        if return_streams:
            out["streams"] = streams
        if cache is not None:
            out["past_key_values"] = cache
        return out


class FactoredTransformerModel(FactoredTransformerModelALiBi):
    """The token-factored transformer with a learned position table added to ``xt`` (registry name
    ``Factored``): the design ALiBi replaces. Adding positions pollutes the token-like stream and
    stops the model at ``block_size``."""

    position_scheme = "learned"
