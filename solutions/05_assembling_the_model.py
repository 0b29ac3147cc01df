"""Reference answers to the exercises of course/05_assembling_the_model.ipynb."""

import math

import torch
import torch.nn as nn
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


class TokenFactoredModel(nn.Module):
    """The token-factored transformer with ALiBi, top to bottom, with tfa_core's parameter names.

    xt starts as the token embedding (nothing positional is added) and only attention writes to it;
    xe starts at zero and only the MLP writes to it. Logits are ln_f(xt + xe) @ wte^T (tied head).
    """

    class Attention(nn.Module):
        """Queries and keys from h = ln_1(xt + xe), values from xt; the ALiBi bias on the scores."""

        def __init__(self, config):
            super().__init__()
            self.n_head = config.n_head
            self.c_attn = nn.Linear(config.n_embd, 2 * config.n_embd, bias=config.bias)  # Q and K only
            self.v_mix = nn.Parameter(torch.eye(config.n_head)) if config.use_v else None  # H x H
            self.proj_mix = nn.Parameter(torch.eye(config.n_head)) if config.use_proj else None
            self.register_buffer("slopes", self.alibi_slopes(config.n_head), persistent=False)

        @staticmethod
        def alibi_slopes(n):
            """The authors' slopes: 2^(-8k/p) for the largest power of two p <= n, then every other
            slope of 2p heads for the rest."""
            p = 2 ** int(math.floor(math.log2(n)))
            powers = [2.0 ** (-8.0 * k / p) for k in range(1, p + 1)]
            between = [2.0 ** (-8.0 * k / (2 * p)) for k in range(1, 2 * p + 1)][0::2]
            return torch.tensor(powers + between[: n - p])

        def forward(self, h, xt):
            B, T, C = h.shape
            H, d = self.n_head, C // self.n_head
            q, k = self.c_attn(h).split(C, dim=2)  # (B, T, C) each
            q = q.view(B, T, H, d).transpose(1, 2)  # (B, H, T, d)
            k = k.view(B, T, H, d).transpose(1, 2)
            v = xt.view(B, T, H, d).transpose(1, 2)  # the tokens themselves
            if self.v_mix is not None:
                v = torch.einsum("hg,bgtd->bhtd", self.v_mix, v)  # V ⊗ I_d, never a C x C matrix
            position = torch.arange(T, device=h.device)
            distance = position[:, None] - position[None, :]  # (T, T): query minus key
            bias = -self.slopes[:, None, None] * distance  # (H, T, T): 0 on the diagonal
            bias = bias.masked_fill(distance < 0, float("-inf"))  # no looking ahead
            scores = q @ k.transpose(-2, -1) / math.sqrt(d) + bias  # (B, H, T, T)
            y = scores.softmax(dim=-1) @ v  # (B, H, T, d)
            if self.proj_mix is not None:
                y = torch.einsum("hg,bgtd->bhtd", self.proj_mix, y)
            return y.transpose(1, 2).reshape(B, T, C)

    class Block(nn.Module):
        def __init__(self, config):
            super().__init__()
            C = config.n_embd
            self.ln_1 = nn.LayerNorm(C, bias=config.bias)
            self.attn = TokenFactoredModel.Attention(config)
            self.ln_2 = nn.LayerNorm(C, bias=config.bias)
            self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(C, 4 * C, bias=config.bias),
                                          c_proj=nn.Linear(4 * C, C, bias=config.bias)))

        def forward(self, xt, xe):
            xt = xt + self.attn(self.ln_1(xt + xe), xt)  # attention writes only xt
            xe = xe + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(xt + xe))))  # the MLP only xe
            return xt, xe

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            h=nn.ModuleList([self.Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied

    def forward(self, idx):
        """Logits (B, T, vocab_size) for ids (B, T), at any length T."""
        xt = self.transformer.wte(idx)  # (B, T, C): tokens only
        xe = torch.zeros_like(xt)
        for block in self.transformer.h:
            xt, xe = block(xt, xe)
        return self.lm_head(self.transformer.ln_f(xt + xe))
