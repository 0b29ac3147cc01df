"""Will it fit? Sizes checked against free memory before anything is allocated.

A model of ``n_embd`` 10^6 or a batch of 10^7 windows should be refused with one line that says how
much memory it needs and how much there is, not end in an allocator's traceback after minutes of
loading data. The figures here are lower bounds (parameters, gradients, AdamW's two moments, the
logits and a few tensors per layer); ``tfa_core.experiments.memory`` has the full estimate. So a
refusal is certain, and a pass is no promise.
"""

from __future__ import annotations

import os
import time

import torch

__all__ = ["count_parameters", "flops_per_token", "matmul_flops_per_second", "available_memory",
           "training_bytes", "inference_bytes", "require_memory", "format_bytes"]

FP32 = 4


def count_parameters(model_type: str, config) -> int:
    """The exact number of parameters of ``get_model(model_type, config)``, counted on PyTorch's
    ``meta`` device, so nothing is allocated however large the config."""
    from tfa_core.model.registry import get_model

    with torch.device("meta"):
        model = get_model(model_type, config)
    return sum(p.numel() for p in model.parameters())


def flops_per_token(model_type: str, config, length: int | None = None) -> float:
    """Training FLOPs (forward and backward) per token of ``get_model(model_type, config)`` on windows
    of ``length`` tokens (default ``block_size``), as the PaLM paper's appendix B counts them: 6 for
    every weight a token meets (all but the position tables; the tied embedding once, as the output
    layer) and ``12 x layers x width x length`` for the attention scores and their weighted sum. A
    forward pass alone is a third of it. The causal mask's saving is not subtracted, as usual for MFU."""
    from tfa_core.model.registry import get_model

    with torch.device("meta"):
        model = get_model(model_type, config)
    weights = model.get_num_params(non_embedding=True) + config.vocab_size * config.n_embd
    return 6 * weights + 12 * config.n_layer * config.n_embd * (length or config.block_size)


def matmul_flops_per_second(device: str = "cpu", size: int = 1024, seconds: float = 0.3) -> float:
    """FLOP/s of ``size x size`` fp32 matrix products on ``device``, timed for about ``seconds``: what
    the device reaches at best, so a time estimated from it is a lower bound."""
    a, b = (torch.randn(size, size, device=device) for _ in range(2))
    a @ b  # the first product pays for thread start-up
    products, started = 0, time.perf_counter()
    while products == 0 or time.perf_counter() - started < seconds:
        a @ b
        products += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return 2 * size**3 * products / (time.perf_counter() - started)


def available_memory(device: str) -> int | None:
    """Bytes free on ``device`` ("cpu", "cuda", "cuda:1", "mps"), or None when it cannot be told."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.mem_get_info(torch.device(device))[0]
    try:  # Linux: what can be allocated without swapping
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def inference_bytes(n_params: int, config, batch_size: int, length: int) -> int:
    """A lower bound on the memory of a forward pass without gradients: the weights, and the fp32
    logits and one residual stream per layer for ``batch_size`` windows of ``length`` tokens."""
    tokens = batch_size * length
    return FP32 * (n_params + tokens * (config.vocab_size or 1) + tokens * config.n_embd * 2)


def training_bytes(n_params: int, config, batch_size: int, length: int) -> int:
    """A lower bound on the memory of one AdamW step: weights, gradients and two moments (16 bytes a
    parameter), the logits and their gradient, and a few ``n_embd``-wide tensors per layer and token."""
    tokens = batch_size * length
    return (4 * FP32 * n_params + 2 * FP32 * tokens * (config.vocab_size or 1)
            + 4 * FP32 * tokens * config.n_embd * config.n_layer)


def format_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def require_memory(needed: int, device: str, what: str, fix: str) -> None:
    """Raise ``ValueError`` when ``needed`` bytes are more than ``device`` has free; ``what`` says
    what needs them and ``fix`` what to change."""
    free = available_memory(device)
    if free is not None and needed > free:
        raise ValueError(f"{what} needs at least {format_bytes(needed)} on {device}, which has "
                         f"{format_bytes(free)} free; {fix}")
