"""Reference answers to the exercises of course/03_alibi.ipynb."""

import math

import torch


def slopes(n_head):
    """ALiBi slopes by the authors' algorithm (powers of two, then interleaved extras)."""

    def power_of_two(n):
        return [2.0 ** (-8 * k / n) for k in range(1, n + 1)]

    p = 2 ** math.floor(math.log2(n_head))
    result = power_of_two(p)
    if p < n_head:
        result += power_of_two(2 * p)[0::2][: n_head - p]
    return torch.tensor(result)


def bias_matrix(slopes, T):
    """(H, T, T): -m (i - j) for keys at or before the query, -inf after it."""
    i = torch.arange(T)[:, None]  # queries, (T, 1)
    j = torch.arange(T)[None, :]  # keys, (1, T)
    bias = -slopes[:, None, None] * (i - j)  # (H, T, T)
    return bias.masked_fill(j > i, float("-inf"))


def cached_bias(slopes, t_q, t_k):
    """(H, t_q, t_k): the queries are the last t_q of the t_k positions."""
    i = torch.arange(t_k - t_q, t_k)[:, None]  # absolute positions of the queries
    j = torch.arange(t_k)[None, :]
    bias = -slopes[:, None, None] * (i - j)
    return bias.masked_fill(j > i, float("-inf"))


def half_weight_distance(slopes):
    """exp(-m d) = 1/2  =>  d = ln(2) / m."""
    return math.log(2) / slopes
