"""What every model in the registry shares: input checks, the shifted loss, generation, parameter
counts, weight initialisation and gradient checkpointing.

Each model file (``model.py``, ``baselines.py``) only has to say how logits come from token ids.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .sampling import check_sampling_args, sample_next_token

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

    Subclasses set ``self.config`` and define ``forward(input_ids, attention_mask=None, labels=None)``
    returning ``{"loss", "logits"}``; they call :meth:`check_inputs` first and :func:`causal_lm_loss`
    last.
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
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= self.config.vocab_size):
            raise ValueError(
                f"token ids must be in [0, {self.config.vocab_size}), got ids from "
                f"{int(input_ids.min())} to {int(input_ids.max())}; does config.vocab_size match the "
                "tokenizer? (config.update_from_tokenizer(tokenizer))"
            )
        for name, other in (("attention_mask", attention_mask), ("labels", labels)):
            if other is not None and tuple(other.shape) != tuple(input_ids.shape):
                raise ValueError(f"{name} must have the shape of input_ids {tuple(input_ids.shape)}, "
                                 f"got {tuple(other.shape)}")

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
    ) -> torch.Tensor:
        """Extend ``idx`` (``(B, T)`` token ids) by ``max_new_tokens`` sampled tokens.

        ``temperature=0`` is greedy decoding. Each step runs the model on the whole context (the
        last ``max_sequence_length`` tokens): simple and exact, O(n^2) work per token. The model is
        put in eval mode while sampling (no dropout) and its mode is restored afterwards.

        Returns ``(B, T + max_new_tokens)`` ids.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        check_sampling_args(temperature, top_k, top_p)
        self.check_inputs(idx[:, -self.max_sequence_length:] if idx.dim() == 2 else idx)
        was_training = self.training
        self.eval()
        try:
            for _ in range(max_new_tokens):
                context = idx[:, -self.max_sequence_length:]
                logits = self(context)["logits"][:, -1, :]  # (B, V)
                next_id = sample_next_token(logits, temperature, top_k, top_p, generator)
                idx = torch.cat([idx, next_id], dim=1)
        finally:
            self.train(was_training)
        return idx
