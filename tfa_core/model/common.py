"""What every model in the registry shares: the skeleton (token embedding, an optional learned position
table, the blocks, the final norm, the tied output layer), input checks, the attention bias of one
forward pass, the shifted loss, the output dictionary, weight initialisation, gradient checkpointing,
the key/value cache and generation.

Each model file (``factored.py``, ``baselines.py``) says what its blocks are and writes its
``forward``: how logits come from token ids.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from tfa_core.decoding.generate import generate_tokens
from tfa_core.model import fast_attention
from tfa_core.model.alibi import alibi_slopes, dense_bias
from tfa_core.model.kv_cache import KVCache
from tfa_core.model.positions import POSITION_SCHEMES, sinusoidal_embeddings

__all__ = ["CausalLanguageModel", "causal_lm_loss", "split_heads", "merge_heads", "INIT_STD"]

#: GPT-2's initial weight scale: every embedding and linear weight starts as normal(0, INIT_STD)
INIT_STD = 0.02


def split_heads(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """``(B, T, C)`` -> ``(B, H, T, d)``: head ``h`` owns channels ``h*d .. (h+1)*d - 1``."""
    B, T, C = x.shape
    return x.view(B, T, n_head, C // n_head).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, T, d)`` -> ``(B, T, C)``, the inverse of :func:`split_heads`."""
    B, H, T, d = x.shape
    return x.transpose(1, 2).contiguous().view(B, T, H * d)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: position ``t`` predicts ``labels[:, t + 1]``; ``-100`` is ignored.

    ``logits``: ``(B, T, V)``; ``labels``: ``(B, T)``, usually the input ids themselves.
    """
    shifted_logits = logits[:, :-1, :]  # (B, T-1, V)
    shifted_labels = labels[:, 1:]  # (B, T-1)
    return F.cross_entropy(
        shifted_logits.reshape(-1, shifted_logits.size(-1)).float(),
        shifted_labels.reshape(-1),
        ignore_index=-100,
    )


class CausalLanguageModel(nn.Module):
    """Base class: a causal language model built from a :class:`~tfa_core.GPTConfigALiBi`.

    ``make_block(config, position_scheme)`` makes one block. The position scheme is the class's
    ``fixed_position_scheme`` if it has one, else ``config.position_scheme``, else the class's
    ``default_position_scheme``; a scheme that is not built in is a class's own, whose attention bias
    comes from its :meth:`position_bias`. ALiBi models keep their slopes in one buffer, ``alibi_slopes``
    (``(H,)``, saved with the weights, yours to overwrite); a layer's ``attn.alibi_slopes``, ``None``
    unless you set it, overrides them for that layer. ``fast_attention`` (on by default) lets long
    inputs, CUDA and cached decoding take the speed room's paths (``fast_attention.py``); off, every
    input takes the plain dense path, with the same numbers.
    """

    fixed_position_scheme: str | None = None
    default_position_scheme: str = "learned"

    def __init__(self, config, make_block):
        super().__init__()
        config.validate()
        if config.vocab_size is None:
            raise ValueError(
                "config.vocab_size is not set; call config.update_from_tokenizer(tokenizer) first"
            )
        scheme = self.fixed_position_scheme or config.position_scheme or self.default_position_scheme
        if scheme not in POSITION_SCHEMES and type(self).position_bias is CausalLanguageModel.position_bias:
            raise ValueError(f"unknown position scheme {scheme!r}; choose one of {list(POSITION_SCHEMES)}, "
                             "or define position_bias in a model class of your own (docs/EXTENDING.md)")
        if scheme == "rotary" and config.head_dim % 2:
            raise ValueError(f"rotary positions rotate channel pairs: head_dim (n_embd / n_head = "
                             f"{config.head_dim}) must be even; change n_embd or n_head")
        self.config = config
        self.position_scheme = scheme
        self.learned_positions = scheme == "learned"
        #: the longest input: a learned table stops at block_size, everything else goes further
        self.max_sequence_length = (config.block_size if self.learned_positions
                                    else config.max_position_embeddings)
        self.gradient_checkpointing = False
        self.fast_attention = True
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([make_block(config, scheme) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        if self.learned_positions:
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied: logits read the final state as tokens
        slopes = alibi_slopes(config.n_head, config.alibi_max_bias) if scheme == "alibi" else None
        self.register_buffer("alibi_slopes", slopes)  # (H,), or None without ALiBi
        self.init_weights()

    # -- one forward pass, in the order forward() calls them -----------------------------------
    def check_inputs(self, input_ids, attention_mask=None, labels=None) -> None:
        """Raise a clear error for inputs the model cannot take, before torch does, obscurely."""
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a torch.Tensor of token ids, got {type(input_ids).__name__}")
        if input_ids.dtype not in (torch.long, torch.int):
            raise TypeError(f"input_ids must hold integer token ids as torch.long (or torch.int), got "
                            f"{input_ids.dtype}; use input_ids.long()")
        if input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must have shape (batch, length), got {tuple(input_ids.shape)}; "
                "for one sequence use input_ids[None]"
            )
        length = input_ids.shape[1]
        if length == 0 or input_ids.shape[0] == 0:
            raise ValueError(f"input_ids is empty (shape {tuple(input_ids.shape)}): give at least one token")
        if length > self.max_sequence_length:
            if self.learned_positions:
                why = (f"its learned position table covers only block_size={self.config.block_size} "
                       "positions; use an ALiBi model to go longer")
            else:
                why = ("raise config.max_position_embeddings (ALiBi has no position table, "
                       "so any length works) and rebuild the model")
            raise ValueError(f"sequence length {length} is longer than this model accepts "
                             f"({self.max_sequence_length}): {why}")
        for name, other in (("attention_mask", attention_mask), ("labels", labels)):
            if other is None:
                continue
            if not isinstance(other, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(other).__name__}")
            if tuple(other.shape) != tuple(input_ids.shape):
                raise ValueError(f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, "
                                 f"got {tuple(other.shape)}")
        if labels is not None and labels.dtype not in (torch.long, torch.int):
            raise TypeError(f"labels must hold integer token ids (torch.long), got {labels.dtype}")
        # reading values is a device sync and, under torch.compile, a graph break in every step; a
        # compiled model leaves them to the embedding's and the loss's own checks
        if torch.compiler.is_compiling():
            return
        if input_ids.min() < 0 or input_ids.max() >= self.config.vocab_size:
            raise ValueError(
                f"token ids must be in [0, {self.config.vocab_size}), got ids from "
                f"{int(input_ids.min())} to {int(input_ids.max())}; does config.vocab_size match the "
                "tokenizer? (config.update_from_tokenizer(tokenizer))"
            )
        if attention_mask is not None and attention_mask.dtype != torch.bool and (
                (attention_mask != 0) & (attention_mask != 1)).any():
            other = attention_mask[(attention_mask != 0) & (attention_mask != 1)][0].item()
            raise ValueError("attention_mask must hold only 1 (keep) and 0 (padding), or be bool; got "
                             f"other values, e.g. {other}; "
                             "an additive 0/-inf mask must be turned into attention_mask = (mask == 0)")
        if labels is not None:
            bad = (labels != -100) & ((labels < 0) | (labels >= self.config.vocab_size))
            if bad.any():
                raise ValueError(f"labels must be token ids in [0, {self.config.vocab_size}) or -100 "
                                 f"(ignored), got {int(labels[bad][0])}")

    def embed(self, input_ids: torch.Tensor, start: int = 0) -> torch.Tensor:
        """The token embeddings of ``input_ids`` (``(B, T)``, at positions ``start, start + 1, ...``),
        ``(B, T, C)`` -- plus a position vector for the ``learned`` and ``sinusoidal`` schemes, the
        positional pollution ALiBi avoids.

        Sinusoids are added at ``config.sinusoid_scale`` (0.02, ``INIT_STD``) times their unit
        amplitude: the ratio of the two that "Attention Is All You Need" (section 3.4) starts from --
        embeddings of std ``1/sqrt(C)`` multiplied by ``sqrt(C)``, so std 1 per channel, plus sinusoids
        of RMS ``1/sqrt(2)`` -- at the scale our embeddings start at. A sinusoid is then about 0.7x a
        token embedding's norm, not 35x (128 channels), and the stream starts as small as with a
        learned table.
        ``benchmarks/sinusoid_scale.py`` measures this against the paper's formula taken literally.
        """
        x = self.transformer.wte(input_ids)  # (B, T, C)
        if self.position_scheme in ("learned", "sinusoidal"):
            positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)  # (T,)
            if self.learned_positions:
                x = x + self.transformer.wpe(positions)
            else:
                x = x + self.config.sinusoid_scale * sinusoidal_embeddings(positions, x.shape[-1]).to(x.dtype)
        return x

    def attention_bias(self, slopes, t_q: int, t_k: int, attention_mask, like: torch.Tensor, cache=None):
        """What every layer adds to its attention scores in this forward pass, built once.

        ``None`` for a plain square causal mask (the fused kernel applies it itself, ``is_causal``);
        else the dense ``(1 or B, H, t_q, t_k)`` tensor of :func:`~tfa_core.model.alibi.dense_bias`:
        causal, ALiBi from ``slopes`` (``(H,)`` or ``None``), ``-inf`` on padded keys. The queries are
        the last ``t_q`` of the ``t_k`` keys. ``like`` (the embedded input) gives the device and,
        outside autocast, the dtype. With ``self.fast_attention``, long inputs, CUDA and cached
        decoding get an equivalent from ``fast_attention.py`` that never builds the ``T x T`` tensor.
        A position scheme of your own adds :meth:`position_bias` to the causal (and padding) mask,
        always as a dense tensor.
        """
        dtype = torch.get_autocast_dtype(like.device.type) if torch.is_autocast_enabled(like.device.type) \
            else like.dtype
        if self.position_scheme not in POSITION_SCHEMES:  # a scheme of your own: its bias, held dense
            bias = self.position_bias(t_q, t_k, like.device).to(dtype)  # (H, t_q, t_k)
            return dense_bias(None, t_q, t_k, attention_mask, dtype=dtype, device=like.device) + bias
        if self.fast_attention and (t_q > fast_attention.QUERY_BLOCK or like.is_cuda or cache is not None):
            fast = fast_attention.fast_bias(slopes, t_q, t_k, attention_mask, dtype, like.device, cache)
            if fast is not None:
                return fast
        if slopes is None and attention_mask is None and t_q == t_k:
            return None
        return dense_bias(slopes, t_q, t_k, attention_mask, dtype=dtype, device=like.device)

    def position_bias(self, t_q: int, t_k: int, device) -> torch.Tensor:
        """The hook for a position scheme of your own (``docs/EXTENDING.md``): the ``(H, t_q, t_k)``
        (or ``(1, t_q, t_k)``) additive bias of query ``i`` (at position ``t_k - t_q + i``: queries are
        the last ``t_q`` keys) and key ``j``. :meth:`attention_bias` adds the causal and padding mask
        to it, so entries after the query may hold anything finite. Built-in schemes never call it."""
        raise NotImplementedError(f"{type(self).__name__} has the position scheme {self.position_scheme!r}, "
                                  "not a built-in one, and must define position_bias(t_q, t_k, device)")

    def run_block(self, block: nn.Module, *args):
        """Call ``block(*args)``, through activation checkpointing when it is enabled."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def output(self, logits, labels=None, cache=None, streams=None) -> dict:
        """The dictionary every forward pass returns: ``"loss"`` (``None`` without labels) and
        ``"logits"``; ``"past_key_values"`` with a cache, ``"streams"`` when asked for."""
        out = {"loss": causal_lm_loss(logits, labels) if labels is not None else None, "logits": logits}
        if streams is not None:
            out["streams"] = streams
        if cache is not None:
            out["past_key_values"] = cache
        return out

    # -- key/value cache ---------------------------------------------------------------------
    def new_kv_cache(self, capacity: int | None = None) -> KVCache:
        """An empty :class:`~tfa_core.KVCache` for this model, holding up to ``capacity`` tokens
        (default and most: ``max_sequence_length``). Its buffers are allocated at the first forward
        pass, ``(B, H, capacity, d)`` per layer for keys and again for values."""
        capacity = self.max_sequence_length if capacity is None else capacity
        if capacity > self.max_sequence_length:
            raise ValueError(f"capacity {capacity} is more than this model accepts "
                             f"(max_sequence_length={self.max_sequence_length}); leave it None")
        return KVCache(self.config.n_layer, capacity)

    def prepare_cache(self, input_ids, attention_mask=None, past_key_values=None, use_cache=False):
        """The cache this forward pass reads and extends: ``past_key_values``, or a new one when only
        ``use_cache`` is set (forward calls this only then). Raises a clear error when the new tokens
        cannot follow the cached ones."""
        if attention_mask is not None:
            raise ValueError(
                "attention_mask cannot be combined with a key/value cache (past_key_values or "
                "use_cache=True): padded batches are not supported while decoding with a cache; "
                "decode unpadded sequences, or run without the cache"
            )
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            raise ValueError("a key/value cache is for inference: call model.eval() or use "
                             "torch.no_grad() (gradient checkpointing would fill the cache twice)")
        cache = self.new_kv_cache() if past_key_values is None else past_key_values
        if not isinstance(cache, KVCache):
            raise TypeError(f"past_key_values must be a KVCache (from model.new_kv_cache() or the "
                            f"output of a forward pass with use_cache=True), got {type(cache).__name__}")
        if len(cache) != self.config.n_layer:
            raise ValueError(f"past_key_values has {len(cache)} layers but the model has "
                             f"n_layer={self.config.n_layer}; make it with model.new_kv_cache()")
        if cache.batch_size not in (None, input_ids.shape[0]):
            raise ValueError(f"past_key_values holds a batch of {cache.batch_size} but input_ids has "
                             f"{input_ids.shape[0]} rows; use one cache per batch")
        self.check_cache_room(cache, input_ids.shape[1])
        return cache

    def check_cache_room(self, cache: KVCache, new_tokens: int) -> None:
        """Raise a clear error when ``new_tokens`` more tokens cannot follow the cached ones."""
        total = cache.length + new_tokens
        if total > self.max_sequence_length:
            if self.learned_positions:
                why = (f"positions cannot go past block_size={self.config.block_size}, the size of "
                       "the learned position table; start a new cache from the latest tokens "
                       "(generate does this), or use an ALiBi model, which can go further (up to "
                       "config.max_position_embeddings)")
            else:
                why = ("raise config.max_position_embeddings and rebuild the model, or start a new "
                       "cache from the latest tokens (generate does this)")
            raise ValueError(f"the cache holds {cache.length} tokens and {new_tokens} more make "
                             f"{total}, longer than this model accepts ({self.max_sequence_length}): {why}")
        if total > cache.capacity:
            raise ValueError(f"the cache is full: it holds {cache.length} of {cache.capacity} tokens "
                             f"and {new_tokens} more do not fit; make a larger one with "
                             "model.new_kv_cache(), or start again from the latest tokens")

    # -- weights ------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """GPT-2's initialisation: normal(0, 0.02), with residual output layers (named ``c_proj``)
        scaled by ``1/sqrt(2 n_layer)`` so the residual streams do not grow with depth."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=INIT_STD)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=INIT_STD / math.sqrt(2 * self.config.n_layer))

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters. With ``non_embedding=True`` (the default) the token embedding
        (shared with the output layer) and any learned position table are left out, so what remains
        is what the transformer blocks and norms cost."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Embedding))
        return total

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, plus two things about ALiBi slopes: a layer's own slopes in
        ``state_dict`` (``transformer.h.<i>.attn.alibi_slopes``) are given a buffer before loading,
        and a checkpoint from before the model-level ``alibi_slopes`` (every layer had a copy) loads
        too: layer 0's slopes become the model's, and a layer whose slopes differ keeps its own."""
        state_dict = dict(state_dict)
        layer_keys = [f"transformer.h.{i}.attn.alibi_slopes" for i in range(len(self.transformer.h))]
        if "alibi_slopes" not in state_dict and self.alibi_slopes is not None and layer_keys[0] in state_dict:
            state_dict["alibi_slopes"] = state_dict[layer_keys[0]]
            for key in layer_keys:
                if key in state_dict and torch.equal(state_dict[key], state_dict["alibi_slopes"]):
                    del state_dict[key]
        for block, key in zip(self.transformer.h, layer_keys):
            if key in state_dict and block.attn.alibi_slopes is None:
                block.attn.alibi_slopes = torch.empty_like(state_dict[key],
                                                           device=self.transformer.wte.weight.device)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # -- memory ------------------------------------------------------------------------------
    def gradient_checkpointing_enable(self) -> None:
        """Recompute each block's activations in the backward pass instead of storing them:
        less memory for long sequences, about a third more compute. Active only in training mode."""
        self.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        """Store activations again (the default)."""
        self.gradient_checkpointing = False

    # -- generation ---------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Extend ``idx`` (``(B, T)`` token ids) by ``max_new_tokens`` sampled tokens.

        ``temperature=0`` is greedy decoding. The model sees at most the last ``max_sequence_length``
        tokens. With ``use_cache`` (the default) the prompt is run once to fill a key/value cache and
        each new token then costs one token's forward pass: O(n) work instead of O(n^2). Once the
        context is ``max_sequence_length`` long, the window slides by one token per step and every
        cached key changes, so the cache is refilled from the window at each step: from there on a
        token costs a full forward pass, as without the cache, and the tokens are the same.
        ``use_cache=False`` runs the whole window at every step: simple and exact.

        The model is put in eval mode while sampling (no dropout) and its mode is restored afterwards.
        Returns ``(B, T + max_new_tokens)`` ids.
        """
        was_training = self.training
        self.eval()
        try:
            new_ids = [next_id for next_id, _ in generate_tokens(
                self, idx, max_new_tokens, temperature, top_k, top_p, generator, use_cache)]
        finally:
            self.train(was_training)
        return torch.cat([idx, *new_ids], dim=1)  # (B, T + max_new_tokens)
