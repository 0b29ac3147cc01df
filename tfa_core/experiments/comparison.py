"""The model comparison the tutorial promises: parameters, peak memory and forward time by length.

``run_comprehensive_comparison()`` builds ``FactoredALiBi``, ``Factored``, ``Vanilla`` and ``SASP``
at the same size, and for each sequence length measures one forward pass (inference, batch 1):
time (median of a few runs) and peak memory. On CUDA, peak memory is the allocator's own record; on
a CPU it is the growth of the process's peak resident memory, measured in a fresh subprocess for
each model and length so that one measurement cannot hide another.

Learned position tables are sized to the longest length here: this compares cost, not extrapolation.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

__all__ = ["COMPARED_MODELS", "measure_forward", "run_comprehensive_comparison", "plot_comparison"]

COMPARED_MODELS = ["FactoredALiBi", "Factored", "Vanilla", "SASP"]


def _build(name: str, preset: str, max_length: int, vocab_size: int):
    from tfa_core.model.config import load_alibi_config_preset
    from tfa_core.model.registry import get_model

    config = load_alibi_config_preset(preset, vocab_size=vocab_size, block_size=max_length,
                                      max_position_embeddings=max_length, dropout=0.0)
    torch.manual_seed(0)
    return get_model(name, config).eval()


def measure_forward(name: str, length: int, preset: str = "small", max_length: int = 2048,
                    vocab_size: int = 50257, repeats: int = 3, device: str = "cpu") -> dict:
    """Time and peak memory of one forward pass of ``name`` on ``length`` tokens (in this process).

    ``peak_mb`` is what the pass added to the peak (GPU: allocated bytes; CPU: resident memory, which
    includes what the allocator keeps after freeing); ``process_peak_mb`` (CPU only) is the whole
    process's peak resident memory, torch and the model included."""
    import resource

    model = _build(name, preset, max_length, vocab_size).to(device)
    ids = torch.randint(0, vocab_size, (1, length), device=device)
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            model(ids)
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    after = (torch.cuda.max_memory_allocated() if cuda
             else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"model": name, "length": length, "params": sum(p.numel() for p in model.parameters()),
            "forward_ms": 1000 * statistics.median(times), "peak_mb": max(0, after - before) / 2**20,
            "process_peak_mb": None if cuda else after / 2**20}


def run_comprehensive_comparison(lengths=(128, 256, 512, 1024, 2048), models=COMPARED_MODELS,
                                 preset: str = "small", vocab_size: int = 50257, device: str = "auto",
                                 out_dir=None) -> list[dict]:
    """Measure every model at every length, print a table and (with ``out_dir``) save
    ``comparison.png`` (a 2 x 2 figure) and ``comparison.json``. Returns the rows."""
    from tfa_core.training.distributed import pick_device

    device = pick_device(device)
    rows = []
    for name in models:
        for length in lengths:
            args = dict(name=name, length=length, preset=preset, max_length=max(lengths),
                        vocab_size=vocab_size, device=device)
            if device == "cpu":  # a fresh process per point: ru_maxrss only ever grows
                code = ("import json, sys; from tfa_core.experiments.comparison import measure_forward; "
                        "print(json.dumps(measure_forward(**json.loads(sys.argv[1]))))")
                done = subprocess.run([sys.executable, "-c", code, json.dumps(args)], capture_output=True,
                                      text=True, check=True)
                rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            else:
                rows.append(measure_forward(**args))
            row = rows[-1]
            print(f"{name:<14} {length:>6} tokens  {row['params']:>12,} params  "
                  f"{row['forward_ms']:>9.1f} ms  {row['peak_mb']:>8.1f} MB peak", flush=True)
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "comparison.json").write_text(json.dumps(rows, indent=1))
        plot_comparison(rows, out_dir / "comparison.png")
    return rows


def plot_comparison(rows: list[dict], path) -> None:
    """2 x 2 figure: parameters, forward time, peak memory, and time relative to Vanilla."""
    from matplotlib.figure import Figure

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig = Figure(figsize=(10, 7))
    ax_params, ax_time, ax_memory, ax_ratio = (fig.add_subplot(2, 2, i) for i in range(1, 5))
    ax_params.bar(models, [next(r["params"] for r in rows if r["model"] == m) / 1e6 for m in models])
    ax_params.set_ylabel("parameters (millions)")
    ax_params.set_title("parameters")
    vanilla = {r["length"]: r["forward_ms"] for r in rows if r["model"] == "Vanilla"}
    for m in models:
        points = [(r["length"], r["forward_ms"], r["peak_mb"]) for r in rows if r["model"] == m]
        lengths, ms, mb = zip(*points)
        ax_time.plot(lengths, ms, marker="o", label=m)
        ax_memory.plot(lengths, mb, marker="o", label=m)
        if vanilla:
            ax_ratio.plot(lengths, [t / vanilla[n] for n, t in zip(lengths, ms)], marker="o", label=m)
    for ax, title, unit in ((ax_time, "forward time", "ms"), (ax_memory, "peak memory", "MB"),
                            (ax_ratio, "forward time / Vanilla's", "ratio")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length (tokens)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        if ax.get_lines():
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
