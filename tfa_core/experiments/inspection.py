"""Looking inside a trained model: the logit lens on the streams, and attention maps by head.

**Logit lens.** The model reads its final state as tokens with ``ln_f(xt + xe) @ W_emb^T``. The lens
applies that same read-out -- the final LayerNorm, then the tied embedding matrix -- to the streams
*between* blocks: to ``xt``, to ``xe`` and to their sum, at the input of every block and after the
last one. It asks "which tokens does this vector look like?". In the token-factored model ``xt`` is
made of token embeddings, so its lens should keep naming the input tokens; ``xe`` holds what the MLPs
computed. At the last point the lens of ``xt + xe`` *is* the model's output.

**Attention maps.** The fused attention kernel never materialises the probabilities, so
:func:`attention_maps` switches every layer to its written-out branch (``attn.keep_weights``) for one
forward pass and reads what each layer kept: the model's own probabilities, whatever its bias.
Multiplied with the values (head-blocks of ``xt``, channel-mixed) they give exactly what the model's
attention adds to ``xt``. :func:`layer_attention` computes one layer's from its weights and given
slopes, the way the course builds it by hand.

Shapes: ``L`` layers, ``B`` batch, ``T`` length, ``H`` heads, ``d`` head size, ``C = H d``, ``V``
vocabulary.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from tfa_core.model.alibi import dense_bias
from tfa_core.model.common import split_heads
from tfa_core.model.factored import FactoredCausalSelfAttention, FactoredTransformerModelALiBi
from tfa_core.model.positions import apply_rotary, rotary_angles

__all__ = ["lens_logits", "logit_lens", "token_ranks", "reads_as_context", "layer_attention",
           "attention_maps"]


def lens_logits(stream: torch.Tensor, ln_f: nn.Module, wte: torch.Tensor) -> torch.Tensor:
    """Read a stream as tokens the way the model reads its final state: ``ln_f(stream) @ wte^T``.

    ``stream``: ``(..., C)``; ``ln_f``: the model's final LayerNorm (its weights are used, as trained);
    ``wte``: the ``(V, C)`` token embedding, which is also the output layer (tied). Returns
    ``(..., V)`` logits. The norm matters: it rescales each vector to the size the embedding
    read-out was trained on, so a small ``xe`` early on is not read as "no opinion".
    """
    if stream.shape[-1] != wte.shape[-1]:
        raise ValueError(f"stream has {stream.shape[-1]} channels but wte is {tuple(wte.shape)}: "
                         "the last dimension of the stream must be the model width C")
    return ln_f(stream) @ wte.T


def _one_batch(model, input_ids) -> torch.Tensor:
    """``input_ids`` as a ``(B, T)`` long tensor on the model's device."""
    if not isinstance(input_ids, torch.Tensor):
        raise TypeError(f"input_ids must be a torch.Tensor of token ids, got {type(input_ids).__name__}")
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (T,) or (B, T), got {tuple(input_ids.shape)}")
    return input_ids.to(next(model.parameters()).device)


def _streams_of(model, input_ids: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """The streams at the input of every block and after the last: factored models give ``xt``,
    ``xe`` and ``xt+xe``; single-stream models (``Vanilla``, ``VanillaALiBi``, ``SASP``) give ``x``,
    read with forward hooks on their blocks."""
    if isinstance(model, FactoredTransformerModelALiBi):
        pairs = model(input_ids, return_streams=True)["streams"]
        return {"xt": [xt for xt, _ in pairs], "xe": [xe for _, xe in pairs],
                "xt+xe": [xt + xe for xt, xe in pairs]}
    blocks = getattr(getattr(model, "transformer", None), "h", None)
    if blocks is None or not len(blocks):
        raise TypeError(f"logit_lens needs a model from tfa_core's registry (with transformer.h blocks), "
                        f"got {type(model).__name__}")
    xs: list[torch.Tensor] = []
    handles = [blocks[0].register_forward_pre_hook(lambda module, args: xs.append(args[0]))]
    handles += [block.register_forward_hook(lambda module, args, output: xs.append(output))
                for block in blocks]
    try:
        model(input_ids)
    finally:
        for handle in handles:
            handle.remove()
    return {"x": xs}


@torch.no_grad()
def logit_lens(model, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """The logit lens at every layer: each stream read through ``ln_f`` and the tied embedding.

    ``model``: any model from the registry; ``input_ids``: ``(T,)`` or ``(B, T)`` token ids.

    Returns a dict of float32 CPU tensors of shape ``(n_layer + 1, B, T, V)``: entry ``l`` is the
    stream at the input of block ``l`` (``l = 0``: the embedding), entry ``n_layer`` the stream after
    the last block. Factored models give ``"xt"``, ``"xe"`` and ``"xt+xe"`` (whose last entry equals
    the model's logits); single-stream models give ``"x"``. ``xe`` is zero at ``l = 0``, so its lens
    there is all zeros (a uniform distribution). The model runs once, in eval mode, and its mode is
    restored. Memory: ``(n_layer + 1) B T V`` floats per stream.
    """
    ids = _one_batch(model, input_ids)
    was_training = model.training
    model.eval()
    try:
        streams = _streams_of(model, ids)
        ln_f, wte = model.transformer.ln_f, model.transformer.wte.weight
        return {name: torch.stack([lens_logits(x, ln_f, wte).float().cpu() for x in xs])
                for name, xs in streams.items()}
    finally:
        model.train(was_training)


def token_ranks(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """Where ``token_ids`` stand in ``logits``: 0 when it has the highest logit, 1 when one token is
    above it, and so on (ties count in its favour).

    ``logits``: ``(..., V)``; ``token_ids``: integer ids broadcastable to ``logits.shape[:-1]``
    (``(B, T)`` ids against a lens of ``(L + 1, B, T, V)``). Returns a long tensor of
    ``logits.shape[:-1]``.
    """
    if token_ids.dtype.is_floating_point:
        raise TypeError(f"token_ids must be integer ids, got dtype {token_ids.dtype}")
    ids = token_ids.to(logits.device).expand(logits.shape[:-1])
    own = logits.gather(-1, ids[..., None])  # (..., 1)
    return (logits > own).sum(dim=-1)


@torch.no_grad()
def reads_as_context(model, input_ids: torch.Tensor, stream: str | None = None) -> float:
    """How token-like a stream stays: the fraction of positions where the logit lens of ``stream``
    after the last block names, as its first choice, a token of the context (the current input token
    or an earlier one). The measure notebooks 02 and 08 use, as one number for the study's ablations.

    ``stream``: ``"xt"`` (the default for factored models), ``"xe"``, ``"xt+xe"``, or ``"x"`` (the
    default, and the only stream, for single-stream models). ``input_ids``: ``(T,)`` or ``(B, T)``.
    A mixture of context embeddings reads as one of them nearly always; a stream the MLPs write reads
    as the next token or as nothing in the context far more often.
    """
    lens = logit_lens(model, input_ids)
    stream = stream or ("xt" if "xt" in lens else "x")
    if stream not in lens:
        raise ValueError(f"this model has no stream {stream!r}; it has {list(lens)}")
    ids = _one_batch(model, input_ids).cpu()  # (B, T)
    first = lens[stream][-1].argmax(-1)  # (B, T): the lens's first choice after the last block
    in_context = (first[:, :, None] == ids[:, None, :]).tril()  # (B, T query, T context): j <= t
    return in_context.any(-1).float().mean().item()


def layer_attention(attn: FactoredCausalSelfAttention, h: torch.Tensor, slopes: torch.Tensor | None = None,
                    positions: torch.Tensor | None = None) -> torch.Tensor:
    """One factored attention layer's probabilities, from its weights.

    ``attn``: a layer (``model.transformer.h[l].attn``); ``h``: its input ``ln_1(xt + xe)``,
    ``(B, T, C)``; ``slopes``: the ALiBi slopes (``(H,)``; ``None``: just the causal mask);
    ``positions``: ``(T,)`` absolute positions (only rotary layers use them; default ``0 .. T-1``).
    Returns ``(B, H, T, T)``: ``softmax(q k^T / sqrt(d) + bias)``; each row sums to 1.
    """
    if not isinstance(attn, FactoredCausalSelfAttention):
        raise TypeError(f"attn must be a factored attention layer (model.transformer.h[l].attn), "
                        f"got {type(attn).__name__}")
    B, T, C = h.shape
    q, k = attn.c_attn(h).split(C, dim=-1)  # (B, T, C) each
    q, k = split_heads(q, attn.n_head), split_heads(k, attn.n_head)  # (B, H, T, d)
    if attn.rotary:
        positions = torch.arange(T, device=h.device) if positions is None else positions
        cos, sin = rotary_angles(positions, q.shape[-1])
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
    scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(q.shape[-1])  # (B, H, T, T)
    bias = dense_bias(None if slopes is None else slopes.float(), T, device=h.device)  # (1, H or 1, T, T)
    return torch.softmax(scores + bias, dim=-1)


@torch.no_grad()
def attention_maps(model, input_ids: torch.Tensor) -> torch.Tensor:
    """Every layer's attention probabilities for one sequence: ``(n_layer, H, T, T)``, float32 on CPU.

    ``model``: a model whose attention layers keep their probabilities when asked
    (``attn.keep_weights``): the token-factored model with any position scheme, a registered subclass
    with a bias of its own included. ``input_ids``: ``(T,)`` or ``(1, T)``. Entry ``[l, h, i, j]`` is
    how much query ``i`` of head ``h`` in block ``l`` takes from key ``j`` (0 for ``j > i``). Read from
    the model's own attention (each layer's written-out branch for this one pass), so
    ``maps[l] @ values`` is what block ``l``'s attention adds to ``xt``, whatever bias or slopes the
    layers use. A layer that cannot keep its probabilities is a ``TypeError`` naming it.
    """
    layers = [block.attn for block in getattr(getattr(model, "transformer", None), "h", [])
              if hasattr(block, "attn")]
    if not layers:
        raise TypeError(f"attention_maps needs a token-factored model (get_model('FactoredALiBi', config)) "
                        f"or a subclass, with blocks in model.transformer.h; got {type(model).__name__}")
    for index, attn in enumerate(layers):
        if not hasattr(attn, "keep_weights"):
            raise TypeError(f"attention_maps reads layers that keep their probabilities (attn.keep_weights, "
                            f"as the token-factored model's do); layer {index} of {type(model).__name__} is "
                            f"a {type(attn).__name__}, which cannot: use a token-factored model")
    ids = _one_batch(model, input_ids)
    if ids.shape[0] != 1:
        raise ValueError(f"attention_maps reads one sequence, got a batch of {ids.shape[0]}; "
                         "pass input_ids[i] for the sequence you want")
    was_training, was_fast = model.training, model.fast_attention
    model.eval()
    model.fast_attention = False  # every length through the written-out branch
    try:
        for attn in layers:
            attn.keep_weights, attn.weights = True, None
        model(ids)
        missing = [index for index, attn in enumerate(layers) if getattr(attn, "weights", None) is None]
        if missing:
            raise ValueError(f"layers {missing} of {type(model).__name__} kept no probabilities in this "
                             "forward pass (their forward does not take the written-out branch)")
        return torch.stack([attn.weights[0].float() for attn in layers]).cpu()  # (n_layer, H, T, T)
    finally:
        for attn in layers:
            attn.keep_weights, attn.weights = False, None
        model.train(was_training)
        model.fast_attention = was_fast
