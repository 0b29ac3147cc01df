"""What every model in the registry shares: input checks, the shifted loss, generation, parameter
counts, weight initialisation and gradient checkpointing.

Each model file (``model.py``, ``baselines.py``) only has to say how logits come from token ids,
and how its attention reads and extends a key/value cache (``kv_cache.py``).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from tfa_core.decoding.generate import generate_tokens
from tfa_core.model.kv_cache import KVCache, LayerCache
from tfa_core.model.shared_bias import SharedBiases, SlopeSignatures

__all__ = ["CausalLanguageModel", "causal_lm_loss"]


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

    Subclasses set ``self.config`` and define ``forward(input_ids, attention_mask=None, labels=None,
    past_key_values=None, use_cache=False)`` returning ``{"loss", "logits"}`` (plus
    ``"past_key_values"`` when a cache is used); they call :meth:`check_inputs` and
    :meth:`prepare_cache` first and :func:`causal_lm_loss` last.
    """

    #: True when position information is a table indexed by position (stops at ``block_size``)
    learned_positions: bool = False

    def __init__(self, config):
        super().__init__()
        config.validate()
        if config.vocab_size is None:
            raise ValueError(
                "config.vocab_size is not set; call config.update_from_tokenizer(tokenizer) first"
            )
        self.config = config
        self.gradient_checkpointing = False
        self._slope_signatures = SlopeSignatures()  # lets layers with equal ALiBi slopes share a bias

    # -- limits and checks ------------------------------------------------------------------
    @property
    def max_sequence_length(self) -> int:
        """The longest input this model accepts: ``block_size`` for a learned position table,
        ``max_position_embeddings`` otherwise."""
        if self.learned_positions:
            return self.config.block_size
        return self.config.max_position_embeddings

    def check_inputs(self, input_ids, attention_mask=None, labels=None) -> None:
        """Raise a clear error for inputs the model cannot take, before torch does, obscurely."""
        if not isinstance(input_ids, torch.Tensor):
            raise TypeError(f"input_ids must be a torch.Tensor of token ids, got {type(input_ids).__name__}")
        if input_ids.dtype not in (torch.long, torch.int, torch.int16, torch.uint8):
            raise TypeError(f"input_ids must hold integer token ids (torch.long), got {input_ids.dtype}")
        if input_ids.dim() != 2:
            raise ValueError(
                f"input_ids must have shape (batch, length), got {tuple(input_ids.shape)}; "
                "for one sequence use input_ids[None]"
            )
        length = input_ids.shape[1]
        if length == 0:
            raise ValueError("input_ids is empty: give at least one token")
        if length > self.max_sequence_length:
            if self.learned_positions:
                why = (f"its learned position table covers only block_size={self.config.block_size} "
                       "positions; use an ALiBi model to go longer")
            else:
                why = ("raise config.max_position_embeddings (ALiBi has no position table, "
                       "so any length works) and rebuild the model")
            raise ValueError(f"sequence length {length} is longer than this model accepts "
                             f"({self.max_sequence_length}): {why}")
        # reading the ids' range is a device sync and, under torch.compile, a graph break in every
        # step; a compiled model leaves out-of-range ids to the embedding's own index check
        if (not torch.compiler.is_compiling() and input_ids.numel()
                and (input_ids.min() < 0 or input_ids.max() >= self.config.vocab_size)):
            raise ValueError(
                f"token ids must be in [0, {self.config.vocab_size}), got ids from "
                f"{int(input_ids.min())} to {int(input_ids.max())}; does config.vocab_size match the "
                "tokenizer? (config.update_from_tokenizer(tokenizer))"
            )
        for name, other in (("attention_mask", attention_mask), ("labels", labels)):
            if other is not None and tuple(other.shape) != tuple(input_ids.shape):
                raise ValueError(f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, "
                                 f"got {tuple(other.shape)}")

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
        """The cache this forward pass reads and extends: ``past_key_values``, a new one when only
        ``use_cache`` is set, or ``None`` for no cache. Raises a clear error when the new tokens
        cannot follow the cached ones."""
        if past_key_values is None and not use_cache:
            return None
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

    def layer_caches(self, cache: KVCache | None) -> list[LayerCache | None]:
        """One entry per block: that layer's cache, or ``None`` when there is no cache."""
        return [None] * self.config.n_layer if cache is None else cache.layers

    def shared_biases(self, cache: KVCache | None = None) -> SharedBiases:
        """The ALiBi biases one forward pass shares between its layers; with a cache, also the
        decoding ramp that every later step slices (see ``shared_bias.py``)."""
        if cache is None:
            return SharedBiases(self._slope_signatures)
        return SharedBiases(self._slope_signatures, cache.alibi_ramps, cache.capacity)

    @staticmethod
    def positions(input_ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Absolute positions ``(T,)`` of ``input_ids``: they follow the tokens already cached."""
        start = 0 if cache is None else cache.length
        return torch.arange(start, start + input_ids.shape[1], device=input_ids.device)

    # -- weights ------------------------------------------------------------------------------
    def init_weights(self) -> None:
        """GPT-2's initialisation: normal(0, 0.02), with residual output layers (named ``c_proj``)
        scaled by ``1/sqrt(2 n_layer)`` so the residual streams do not grow with depth."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, mean=0.0, std=0.02 / math.sqrt(2 * self.config.n_layer))

    def get_num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters. With ``non_embedding=True`` (the default) the token embedding
        (shared with the output layer) and any learned position table are left out, so what remains
        is what the transformer blocks and norms cost."""
        total = sum(p.numel() for p in self.parameters())
        if non_embedding:
            total -= sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Embedding))
        return total

    # -- memory ------------------------------------------------------------------------------
    def gradient_checkpointing_enable(self) -> None:
        """Recompute each block's activations in the backward pass instead of storing them:
        less memory for long sequences, about a third more compute. Active only in training mode."""
        self.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        """Store activations again (the default)."""
        self.gradient_checkpointing = False

    def run_block(self, block: nn.Module, *args):
        """Call ``block(*args)``, through activation checkpointing when it is enabled."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

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
