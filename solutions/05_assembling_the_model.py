"""Reference answers to the exercises of course/05_assembling_the_model.ipynb."""

import torch
import torch.nn.functional as F


def parameter_count(config):
    """Every parameter of a FactoredALiBi model, from its config; the tied embedding counted once."""
    V, C, H, L = config.vocab_size, config.n_embd, config.n_head, config.n_layer
    b = 1 if config.bias else 0

    def linear(n_in, n_out):
        return n_in * n_out + b * n_out

    norm = C + b * C  # LayerNorm weight (and bias)
    attention = linear(C, 2 * C)  # Q and K only: the values are xt itself
    mlp = linear(C, 4 * C) + linear(4 * C, C)
    mixes = H * H * (int(config.use_v) + int(config.use_proj))  # H x H, not C x C
    block = attention + mlp + 2 * norm + mixes
    return V * C + L * block + norm  # embedding (= output layer), blocks, ln_f


def next_token_loss(logits, labels):
    """Mean cross-entropy of logits[:, t] against labels[:, t + 1]; -100 targets left out."""
    logits = logits[:, :-1, :]  # (B, T-1, V): the last position has no next token
    targets = labels[:, 1:]  # (B, T-1)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           ignore_index=-100)
