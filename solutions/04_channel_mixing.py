"""Reference answers to the exercises of course/04_channel_mixing.ipynb."""

import torch
import torch.nn.functional as F


def lift(mix, head_dim):
    """The dense C x C matrix V ⊗ I_d: block (h, g) is mix[h, g] times the d x d identity."""
    return torch.kron(mix, torch.eye(head_dim))


def mix_heads(x, mix):
    """(B, H, T, d): new head h is the sum over g of mix[h, g] times head g."""
    return torch.einsum("hg,bgtd->bhtd", mix, x)


def values(xt, mix, n_head):
    """Split xt (B, T, C) into heads (B, H, T, d), then mix the heads."""
    B, T, C = xt.shape
    heads = xt.view(B, T, n_head, C // n_head).transpose(1, 2)
    return torch.einsum("hg,bgtd->bhtd", mix, heads)


def nearest_tokens(x, wte):
    """(T,): for each row of x, the token whose embedding has the highest cosine similarity."""
    similarity = F.normalize(x, dim=-1) @ F.normalize(wte, dim=-1).T  # (T, vocab)
    return similarity.argmax(dim=-1)
