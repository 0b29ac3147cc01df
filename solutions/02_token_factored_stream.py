"""Reference answers to the exercises of course/02_token_factored_stream.ipynb."""

import math

import torch


def start_streams(input_ids, wte):
    """xt: the token embeddings (nothing positional added); xe: zeros of the same shape."""
    xt = wte[input_ids]  # (B, T, C)
    xe = torch.zeros_like(xt)  # (B, T, C)
    return xt, xe


def factored_attention(h, xt, w_qk, n_head, bias):
    """Queries and keys from h, values from xt itself; the bias is added to the scores."""
    B, T, C = h.shape
    d = C // n_head
    q, k = (h @ w_qk.T).split(C, dim=-1)  # (B, T, C) each
    q = q.view(B, T, n_head, d).transpose(1, 2)  # (B, H, T, d)
    k = k.view(B, T, n_head, d).transpose(1, 2)
    v = xt.view(B, T, n_head, d).transpose(1, 2)  # the tokens themselves
    scores = q @ k.transpose(-2, -1) / math.sqrt(d) + bias  # (B, H, T, T)
    y = torch.softmax(scores, dim=-1) @ v  # (B, H, T, d)
    return y.transpose(1, 2).reshape(B, T, C)


def factored_block(xt, xe, block, bias):
    """Attention writes xt, then the MLP writes xe; both read the sum of the streams."""
    xt = xt + block.attn(block.ln_1(xt + xe), xt, bias)
    xe = xe + block.mlp(block.ln_2(xt + xe))
    return xt, xe


def logits(xt, xe, ln_f, wte):
    """Both streams, normalised, read through the (tied) embedding matrix."""
    return ln_f(xt + xe) @ wte.T
