"""Reference answers to the exercises of course/06_training.ipynb."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def lr_schedule(step, warmup_steps, max_steps, max_lr, min_lr):
    """Linear warmup over warmup_steps, then half a cosine from max_lr down to min_lr at max_steps."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)


def top_k_filter(logits, k):
    """(B, V): logits below each row's k-th largest become -inf."""
    k = min(k, logits.shape[-1])
    kth_largest = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits, p):
    """(B, V): keep the most likely tokens until their probability reaches p (the crossing one too)."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # what the tokens ranked above each one hold
    drop_sorted = mass_before >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def train_steps(model, batches, config):
    """One AdamW step on each batch of ids (B, T), as tfa_core's Trainer takes it; returns the model.

    Decay only the weights of nn.Linear layers (not norms, biases, the embedding -- which is also the
    output layer -- or the H x H mixes); the learning rate warms up linearly, then follows half a cosine
    to min_learning_rate; the gradient norm is clipped at grad_clip before each step.
    """
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    matrices = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)} - embeddings
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(
        [{"params": [p for p in params if id(p) in matrices], "weight_decay": config.weight_decay},
         {"params": [p for p in params if id(p) not in matrices], "weight_decay": 0.0}],
        lr=config.learning_rate, betas=(config.beta1, config.beta2))

    def learning_rate(step):
        if step < config.warmup_steps:
            return config.learning_rate * (step + 1) / config.warmup_steps
        progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return config.min_learning_rate + cosine * (config.learning_rate - config.min_learning_rate)

    model.train()
    for step, input_ids in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step)
        loss = model(input_ids, labels=input_ids)["loss"]  # the model shifts the labels itself
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
    return model


def cached_greedy(model, prompt_ids, n_new):
    """Greedy decoding with a key/value cache written by hand, from the model's modules and weights.

    prompt_ids: (B, T0) ids. Returns (B, T0 + n_new) ids, the prompt then the n_new tokens.
    """
    config = model.config
    H, C = config.n_head, config.n_embd
    d = C // H
    p = 2 ** int(math.floor(math.log2(H)))  # the authors' slopes (notebook 03)
    slopes = torch.tensor([2.0 ** (-8.0 * k / p) for k in range(1, p + 1)]
                          + [2.0 ** (-8.0 * k / (2 * p)) for k in range(1, 2 * p + 1, 2)][: H - p],
                          device=prompt_ids.device)
    blocks = model.transformer.h
    keys, values = [None] * len(blocks), [None] * len(blocks)  # per layer: (B, H, T_k, d)

    def run(ids):
        """Logits (B, T, V) for the T newest tokens; their keys and values join the cache."""
        xt = model.transformer.wte(ids)  # (B, T, C)
        xe = torch.zeros_like(xt)
        B, T, _ = xt.shape
        for layer, block in enumerate(blocks):
            q, k = block.attn.c_attn(block.ln_1(xt + xe)).split(C, dim=2)
            q = q.view(B, T, H, d).transpose(1, 2)  # (B, H, T, d)
            k = k.view(B, T, H, d).transpose(1, 2)
            v = xt.view(B, T, H, d).transpose(1, 2)
            if getattr(block.attn, "v_mix", None) is not None:
                v = torch.einsum("hg,bgtd->bhtd", block.attn.v_mix, v)
            if keys[layer] is not None:  # append: every token so far
                k = torch.cat([keys[layer], k], dim=2)
                v = torch.cat([values[layer], v], dim=2)
            keys[layer], values[layer] = k, v
            T_k = k.shape[2]
            query = torch.arange(T_k - T, T_k, device=ids.device)  # the new tokens: at the end of the keys
            distance = query[:, None] - torch.arange(T_k, device=ids.device)[None, :]  # (T, T_k): newest at 0
            bias = (-slopes[:, None, None] * distance).masked_fill(distance < 0, float("-inf"))
            y = (q @ k.transpose(-2, -1) / math.sqrt(d) + bias).softmax(dim=-1) @ v  # (B, H, T, d)
            if getattr(block.attn, "proj_mix", None) is not None:
                y = torch.einsum("hg,bgtd->bhtd", block.attn.proj_mix, y)
            xt = xt + y.transpose(1, 2).reshape(B, T, C)
            xe = xe + block.mlp.c_proj(F.gelu(block.mlp.c_fc(block.ln_2(xt + xe))))
        return model.lm_head(model.transformer.ln_f(xt + xe))

    with torch.no_grad():
        ids = prompt_ids
        logits = run(prompt_ids)  # prefill: the whole prompt at once
        for step in range(n_new):
            next_id = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
            ids = torch.cat([ids, next_id], dim=1)
            if step < n_new - 1:
                logits = run(next_id)  # one token: one query row
    return ids
