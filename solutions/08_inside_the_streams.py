"""Reference answers for course/08_inside_the_streams.ipynb."""

import math

import torch
import torch.nn.functional as F


def lens(stream, norm_weight, wte):
    """The logit lens: the final LayerNorm (with its weights, no bias), then the tied embedding."""
    mean = stream.mean(dim=-1, keepdim=True)
    variance = stream.var(dim=-1, unbiased=False, keepdim=True)
    normalised = (stream - mean) / torch.sqrt(variance + 1e-5) * norm_weight
    return normalised @ wte.T  # (..., C) @ (C, V) -> (..., V)


def attention_probabilities(h, w_qk, slopes):
    """softmax(q k^T / sqrt(d) + ALiBi bias with the causal mask), (B, H, T, T)."""
    B, T, C = h.shape
    H = slopes.shape[0]
    d = C // H
    q, k = (h @ w_qk.T).split(C, dim=-1)  # (B, T, C) each
    q = q.view(B, T, H, d).transpose(1, 2)  # (B, H, T, d)
    k = k.view(B, T, H, d).transpose(1, 2)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (B, H, T, T)
    distance = torch.arange(T)[:, None] - torch.arange(T)[None, :]  # i - j
    bias = -slopes[:, None, None] * distance  # (H, T, T)
    bias = bias.masked_fill(distance < 0, float("-inf"))  # keys after the query
    return F.softmax(scores + bias, dim=-1)
