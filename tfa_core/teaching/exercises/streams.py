"""Exercises of notebook 02, the token-factored stream: start the two streams, factored attention
(queries and keys from ``xt + xe``, values from ``xt``), one block, and the logits."""

from __future__ import annotations

import math

import torch

from tfa_core.model.alibi import alibi_bias, alibi_slopes
from tfa_core.model.common import merge_heads, split_heads
from tfa_core.model.config import GPTConfigALiBi
from tfa_core.model.factored import FactoredBlock, FactoredCausalSelfAttention, FactoredTransformerModelALiBi
from .checking import Case, Exercise, Mistake, register
from .comparing import close_tensor, tuple_of

STREAM_DIMS = ("batch", "position", "channel")


def _config(n_head: int, n_embd: int, vocab_size: int = 11, use_v: bool = False) -> GPTConfigALiBi:
    return GPTConfigALiBi(n_layer=1, n_head=n_head, n_embd=n_embd, block_size=8, vocab_size=vocab_size,
                          dropout=0.0, use_v=use_v)


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _seeded(seed: int, build):
    """Build a module with its own seed, without touching the notebook's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build().eval()


# -- 02.start_streams ----------------------------------------------------------------------------------


def reference_start_streams(input_ids: torch.Tensor, wte: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(xt, xe)`` as tfa_core's model starts them: the token embeddings, and zeros."""
    model = FactoredTransformerModelALiBi(_config(1, wte.shape[1], wte.shape[0])).eval()
    model.transformer.wte.weight.copy_(wte)
    xt, xe = model(input_ids, return_streams=True)["streams"][0]
    return xt, xe


register(Exercise(
    id="02.start_streams",
    function="start_streams",
    title="the two streams before the first block",
    reference=reference_start_streams,
    cases=lambda: [
        Case("input_ids = [[3, 1, 4]], wte of shape (11, 6)",
             (torch.tensor([[3, 1, 4]]), _randn(11, 6, seed=1))),
        Case("a batch of two: input_ids = [[0, 10, 2, 2], [5, 5, 9, 7]]",
             (torch.tensor([[0, 10, 2, 2], [5, 5, 9, 7]]), _randn(11, 6, seed=2)),
             hint="wte[input_ids] looks up every id of every row at once: shape (B, T, C)"),
        Case("one token: input_ids = [[7]]", (torch.tensor([[7]]), _randn(11, 4, seed=3))),
    ],
    compare=tuple_of(("xt", "xe"), (close_tensor(STREAM_DIMS), close_tensor(STREAM_DIMS))),
    mistakes=[
        Mistake(lambda ids, wte: (wte[ids], wte[ids]),
                "xe must start at zero (torch.zeros_like(xt)); only the MLP ever writes to it"),
    ],
))

# -- 02.factored_attention -----------------------------------------------------------------------------


def reference_factored_attention(h, xt, w_qk, n_head, bias):
    """tfa_core's FactoredCausalSelfAttention with these weights and this ``(H, T, T)`` bias."""
    config = _config(n_head, h.shape[-1])
    attention = FactoredCausalSelfAttention(config).eval()
    attention.c_attn.weight.copy_(w_qk)
    return attention(h, xt, bias[None])  # (1, H, T, T): the bias every layer of a model gets


def _attention_variant(values_from: str = "xt", scale: bool = True, use_bias: bool = True):
    def answer(h, xt, w_qk, n_head, bias):
        q, k = (h @ w_qk.T).split(h.shape[-1], dim=-1)
        q, k = split_heads(q, n_head), split_heads(k, n_head)
        v = split_heads(xt if values_from == "xt" else h, n_head)
        scores = q @ k.transpose(-2, -1)
        if scale:
            scores = scores / math.sqrt(q.shape[-1])
        if use_bias:
            scores = scores + bias
        else:
            scores = scores + alibi_bias(torch.zeros(n_head), h.shape[1])  # causal mask only
        return merge_heads(torch.softmax(scores, dim=-1) @ v)

    return answer


def _attention_case(batch, length, n_head, head_dim, seed):
    C = n_head * head_dim
    h, xt = _randn(batch, length, C, seed=seed), _randn(batch, length, C, seed=seed + 1)
    w_qk = _randn(2 * C, C, seed=seed + 2) / math.sqrt(C)
    return h, xt, w_qk, n_head, alibi_bias(alibi_slopes(n_head), length)


register(Exercise(
    id="02.factored_attention",
    function="factored_attention",
    title="attention whose values are xt itself",
    reference=reference_factored_attention,
    cases=lambda: [
        Case("B=1, T=4, 2 heads of 3 channels", _attention_case(1, 4, 2, 3, seed=10)),
        Case("B=2, T=5, 4 heads of 2 channels", _attention_case(2, 5, 4, 2, seed=20),
             hint="split into heads with .view(B, T, H, d).transpose(1, 2), and back the same way"),
        Case("one token: T=1, 3 heads of 2 channels", _attention_case(1, 1, 3, 2, seed=30),
             hint="with one token, each head attends only to itself: the output is xt"),
    ],
    compare=close_tensor(STREAM_DIMS, atol=1e-5),
    mistakes=[
        Mistake(_attention_variant(values_from="h"),
                "your values come from h; in this model the values are xt itself (split into heads), "
                "so attention writes mixtures of token embeddings into xt"),
        Mistake(_attention_variant(scale=False), "the scores are not divided by sqrt(head_dim)"),
        Mistake(_attention_variant(use_bias=False), "the ALiBi bias was left out: add `bias` to the scores "
                "before the softmax (it also holds the causal mask)"),
    ],
))

# -- 02.block_forward ----------------------------------------------------------------------------------


def reference_block(xt, xe, block, bias):
    """tfa_core's FactoredBlock forward."""
    return block(xt, xe, bias)


def _block_case(batch, length, n_head, head_dim, seed, zero_xe=False):
    C = n_head * head_dim
    block = _seeded(seed, lambda: FactoredBlock(_config(n_head, C)))
    # norms that are not the identity, so that feeding the wrong stream to one of them shows
    block.ln_1.weight.copy_(1 + 0.5 * _randn(C, seed=seed + 3))
    block.ln_2.weight.copy_(1 + 0.5 * _randn(C, seed=seed + 4))
    xt = _randn(batch, length, C, seed=seed + 1)
    xe = torch.zeros(batch, length, C) if zero_xe else _randn(batch, length, C, seed=seed + 2)
    return xt, xe, block, alibi_bias(alibi_slopes(n_head), length)[None]  # (1, H, T, T)


def _block_variant(mistake: str):
    def answer(xt, xe, block, bias):
        if mistake == "ln_1 of xt":
            xt_new = xt + block.attn(block.ln_1(xt), xt, bias)
        else:
            xt_new = xt + block.attn(block.ln_1(xt + xe), xt, bias)
        if mistake == "mlp into xt":
            return xt_new + block.mlp(block.ln_2(xt_new + xe)), xe
        if mistake == "old xt in ln_2":
            return xt_new, xe + block.mlp(block.ln_2(xt + xe))
        if mistake == "attention into xe":
            return xt, xe + block.attn(block.ln_1(xt + xe), xt, bias)
        return xt_new, xe + block.mlp(block.ln_2(xt_new + xe))

    return answer


register(Exercise(
    id="02.block_forward",
    function="factored_block",
    title="one factored block",
    reference=reference_block,
    cases=lambda: [
        Case("B=1, T=4, 2 heads of 4 channels, xe not zero", _block_case(1, 4, 2, 4, seed=40)),
        Case("B=2, T=3, 4 heads of 2 channels, xe = 0 (the first block)",
             _block_case(2, 3, 4, 2, seed=50, zero_xe=True)),
        Case("one token: T=1", _block_case(1, 1, 2, 2, seed=60)),
    ],
    compare=tuple_of(("xt", "xe"), (close_tensor(STREAM_DIMS), close_tensor(STREAM_DIMS))),
    mistakes=[
        Mistake(_block_variant("ln_1 of xt"),
                "queries and keys come from ln_1(xt + xe), the sum of both streams"),
        Mistake(_block_variant("mlp into xt"), "the MLP writes to xe, never to xt"),
        Mistake(_block_variant("attention into xe"), "attention writes to xt, never to xe"),
        Mistake(_block_variant("old xt in ln_2"), "the MLP must see xt after attention has updated it: "
                "xe = xe + mlp(ln_2(xt + xe)) with the new xt"),
    ],
))

# -- 02.logits -----------------------------------------------------------------------------------------


def reference_logits(xt, xe, ln_f, wte):
    """tfa_core's output layer: ``ln_f(xt + xe)`` read through the tied embedding."""
    model = FactoredTransformerModelALiBi(_config(1, wte.shape[1], wte.shape[0])).eval()
    model.transformer.wte.weight.copy_(wte)
    model.transformer.ln_f.load_state_dict(ln_f.state_dict())
    return model.lm_head(model.transformer.ln_f(xt + xe))


def _logits_case(batch, length, C, vocab, seed):
    ln_f = torch.nn.LayerNorm(C, bias=False)
    ln_f.weight.data.copy_(1 + 0.3 * _randn(C, seed=seed))
    return (_randn(batch, length, C, seed=seed + 1), _randn(batch, length, C, seed=seed + 2), ln_f,
            _randn(vocab, C, seed=seed + 3))


register(Exercise(
    id="02.logits",
    function="logits",
    title="logits from both streams",
    reference=reference_logits,
    cases=lambda: [
        Case("B=1, T=3, C=8, vocabulary of 11", _logits_case(1, 3, 8, 11, seed=70)),
        Case("B=2, T=2, C=4, vocabulary of 5", _logits_case(2, 2, 4, 5, seed=80),
             hint="wte has shape (vocab, C): multiply by its transpose, wte.T"),
    ],
    compare=close_tensor(("batch", "position", "token")),
    mistakes=[
        Mistake(lambda xt, xe, ln_f, wte: ln_f(xt) @ wte.T, "the logits read both streams: ln_f(xt + xe)"),
        Mistake(lambda xt, xe, ln_f, wte: (xt + xe) @ wte.T, "ln_f was left out: ln_f(xt + xe) @ wte.T"),
    ],
))
