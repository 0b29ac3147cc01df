"""The length-extrapolation study: train short, test long, for every way of encoding positions.

Every model is trained with the same seed, data, steps and training length, then evaluated at
1x to 16x that length, with non-overlapping and with sliding windows. The results go to a CSV file,
a Markdown report and two plots (perplexity against length; loss by position in the window).

    tfa extrapolate --recipe cpu --out runs/study        # minutes per model on a laptop CPU
    tfa extrapolate --recipe cuda --out runs/study-gpu   # GPT-2 BPE, small preset, up to 4096
"""

from __future__ import annotations

import csv
import json
import math
import time
import warnings
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tfa_core.model.config import load_alibi_config_preset
from tfa_core.data.corpus import markdown_stripped_by_default, read_corpus, train_val_split
from tfa_core.training.distributed import pick_device
from tfa_core.experiments.evaluation import evaluate_length
from tfa_core.model.registry import get_model, position_scheme_of
from tfa_core.data.tokenizers import create_tokenizer
from tfa_core.training.resources import flops_per_token, matmul_flops_per_second
from tfa_core.training.trainer import TRAINING_DEFAULTS, Trainer, TrainingConfig

__all__ = ["RECIPES", "STUDY_MODELS", "run_extrapolation_study", "recipe_cost", "write_report", "plot_study"]

STUDY_MODELS = ["FactoredALiBi", "Factored", "FactoredSinusoidal", "FactoredRotary", "FactoredNoPE",
                "Vanilla", "VanillaALiBi"]

RECIPES = {
    # character level, 4L-4H-128D, trained at 128: a few minutes per model on two CPU cores
    "cpu": dict(tokenizer="character", preset="character", block_size=128, steps=600, batch_size=32,
                learning_rate=1e-3, warmup_steps=50, lengths=[128, 256, 512, 1024, 2048], eval_tokens=32768),
    # GPT-2 BPE, 4L-4H-256D, trained at 256, evaluated up to 16x: one GPU. Shakespeare's training split
    # is 1,350,185 GPT-2 tokens, so 600 steps of 32 x 256 tokens pass over it 3.6 times. Repeated data
    # is worth about as much as new data up to about 4 passes and much less after (Muennighoff et al.,
    # "Scaling Data-Constrained Language Models", 2023); 5,000 steps made 30 passes with dropout 0, which
    # notebook 09 warns will overfit a 15 M-parameter model. Dropout 0.1 (the `small` preset's own) is
    # the regulariser that acts within 600 steps; weight decay 0.1 (AdamW, the Trainer's default)
    # shrinks the weights by only about 3% in so few steps. Training with dropout runs attention on SDPA
    # with a bias (256 tokens: small); evaluation has no dropout and takes FlexAttention.
    "cuda": dict(tokenizer="gpt2", preset="small", block_size=256, steps=600, batch_size=32,
                 learning_rate=6e-4, warmup_steps=60, dropout=0.1, weight_decay=0.1,
                 lengths=[256, 512, 1024, 2048, 4096], eval_tokens=131072),
}


DEFAULT_WEIGHT_DECAY = TRAINING_DEFAULTS["weight_decay"]


def _architecture(model_type: str) -> str:
    return "factored" if model_type.startswith("Factored") else "standard"


def run_extrapolation_study(out_dir, recipe: str = "cpu", models=None, steps: int | None = None,
                            lengths=None, data: str = "shakespeare", seed: int = 1337, device: str = "auto",
                            eval_tokens: int | None = None, progress: bool = True,
                            strip_markdown: bool | None = None) -> list[dict]:
    """Train and evaluate every model in ``models`` (default: :data:`STUDY_MODELS`) with one recipe.

    ``data``: ``"shakespeare"``, a text file or a folder (see ``read_corpus``). ``strip_markdown``:
    whether to remove Markdown markup first; None means the default for the source (stripped for
    the bundled Shakespeare, your own text left as it is).

    Writes ``results.csv``, ``report.md``, ``perplexity.png`` and ``loss_by_position.png`` into
    ``out_dir`` (and each model's checkpoint under ``out_dir/models``). Returns the result rows.
    The ``"cuda"`` recipe on a machine without CUDA stops with a ``ValueError`` that says how long it
    would take there, unless ``device`` names the device (then it warns and runs).
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {list(RECIPES)}")
    settings = dict(RECIPES[recipe])
    models = list(models or STUDY_MODELS)
    for name in models:
        position_scheme_of(name)  # an unknown name fails now, not after an hour of training
    steps = steps or settings["steps"]
    lengths = list(lengths or settings["lengths"])
    eval_tokens = eval_tokens or settings["eval_tokens"]
    asked_device, device = device, pick_device(device)
    if recipe == "cuda" and not device.startswith("cuda"):
        _refuse_cuda_recipe_without_cuda(asked_device, device, models, steps, data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    if strip_markdown is None:
        strip_markdown = markdown_stripped_by_default(data)
    tokenizer, train, val = _study_data(settings, data, strip_markdown)
    rows = []
    stages = tqdm(total=2 * len(models), desc="study", unit="stage", disable=not progress)
    for name in models:
        config = _study_config(settings, tokenizer, lengths)
        torch.manual_seed(seed)
        model = get_model(name, config)
        stages.set_postfix(model=name, stage="train")
        training = TrainingConfig(max_steps=steps, batch_size=settings["batch_size"],
                                  learning_rate=settings["learning_rate"],
                                  warmup_steps=min(settings["warmup_steps"], steps),
                                  weight_decay=settings.get("weight_decay", DEFAULT_WEIGHT_DECAY),
                                  eval_interval=steps, eval_tokens=eval_tokens, seed=seed, device=device,
                                  out_dir=str(out_dir / "models" / name), progress=False)
        started = time.perf_counter()
        Trainer(model, train, val, training, tokenizer=tokenizer).fit()
        train_seconds = time.perf_counter() - started
        stages.update(1)
        stages.set_postfix(model=name, stage="evaluate")
        for length in lengths:
            for mode in ("non_overlapping", "sliding"):
                result = evaluate_length(model, val, length, mode, tokens_scored=eval_tokens, device=device)
                rows.append({"model": name, "architecture": _architecture(name),
                             "positions": position_scheme_of(name), "mode": mode, "length": length,
                             "loss": result.loss, "perplexity": result.perplexity,
                             "tokens_scored": result.tokens_scored, "note": result.note,
                             "train_seconds": round(train_seconds, 1),
                             "loss_by_position": result.loss_by_position})
        stages.update(1)
    stages.close()
    context = dict(recipe=recipe, steps=steps, train_length=settings["block_size"], eval_tokens=eval_tokens,
                   device=device, seed=seed, data=data, markdown="stripped" if strip_markdown else "kept")
    _write_csv(out_dir / "results.csv", rows)
    (out_dir / "loss_by_position.json").write_text(json.dumps(
        {f"{r['model']}/{r['mode']}/{r['length']}": r["loss_by_position"] for r in rows}))
    (out_dir / "report.md").write_text(write_report(rows, **context))
    plot_study(rows, out_dir, train_length=settings["block_size"])
    return rows


def _study_data(settings: dict, data: str, strip_markdown: bool):
    """The recipe's tokenizer and the data's token ids, split 90 / 10 into training and validation."""
    corpus = read_corpus(data, strip_markdown=strip_markdown)
    for line in corpus.notes():
        print(line)
    text = corpus.text
    tokenizer = (create_tokenizer("gpt2") if settings["tokenizer"] == "gpt2"
                 else create_tokenizer("character", text=text))
    train, val = train_val_split(torch.tensor(tokenizer.encode(text)), 0.1)
    return tokenizer, train, val


def _study_config(settings: dict, tokenizer, lengths):
    config = load_alibi_config_preset(settings["preset"], block_size=settings["block_size"],
                                      max_position_embeddings=max(lengths),
                                      dropout=settings.get("dropout", 0.0),
                                      **settings.get("config_overrides", {}))
    config.update_from_tokenizer(tokenizer)
    return config


def recipe_cost(recipe: str = "cuda", models=None, steps: int | None = None,
                data: str = "shakespeare") -> dict:
    """What a recipe's study costs, before it runs (no model is built: parameters are counted on the
    ``meta`` device). Returns a dict:

    - ``tokens``: tokens each model trains on, ``steps x batch_size x block_size``;
    - ``train_tokens`` and ``passes``: the training split's size, and how often ``tokens`` cover it;
    - ``train_flops``: :func:`~tfa_core.training.resources.flops_per_token` times ``tokens``, summed
      over ``models`` (default: :data:`STUDY_MODELS`);
    - ``eval_flops``: the evaluation's forward passes: at each length, about ``eval_tokens`` tokens in
      non-overlapping windows and twice that in sliding ones (models that stop at their training
      length are counted too: an upper bound);
    - ``flops``: the sum.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {list(RECIPES)}")
    settings = RECIPES[recipe]
    models = list(models or STUDY_MODELS)
    steps = steps or settings["steps"]
    tokenizer, train, _ = _study_data(settings, data, markdown_stripped_by_default(data))
    config = _study_config(settings, tokenizer, settings["lengths"])
    tokens = steps * settings["batch_size"] * settings["block_size"]
    train_flops = sum(flops_per_token(name, config) for name in models) * tokens
    evaluated = 3 * settings["eval_tokens"]  # each length: non-overlapping once, sliding windows twice
    eval_flops = sum(flops_per_token(name, config, length) / 3 * evaluated  # a forward pass: a third
                     for name in models for length in settings["lengths"])
    return dict(recipe=recipe, models=len(models), steps=steps, tokens=tokens, train_tokens=len(train),
                passes=tokens / len(train), train_flops=train_flops, eval_flops=eval_flops,
                flops=train_flops + eval_flops)


def _refuse_cuda_recipe_without_cuda(asked_device: str, device: str, models, steps, data) -> None:
    """The cuda recipe on a machine without CUDA: a ``ValueError`` when the device was left to
    ``"auto"``, a warning when the caller named it. Either says how long it would take here."""
    cost = recipe_cost("cuda", models, steps, data)
    rate = matmul_flops_per_second(device)
    hours = cost["flops"] / rate / 3600
    why = (f"the cuda recipe needs a GPU: {cost['models']} models x {cost['tokens']:,} training tokens, "
           f"{cost['flops']:.2g} FLOPs, at least {hours:,.0f} hours on this {device} "
           f"({rate / 1e9:.0f} GFLOP/s at best, measured on matrix products)")
    if asked_device == "auto":
        raise ValueError(f"{why}; pass --device cpu (in Python: device='cpu') to run it anyway, "
                         "or use --recipe cpu")
    warnings.warn(f"{why}; running it on {device} because you asked for it", RuntimeWarning, stacklevel=3)


def _write_csv(path: Path, rows: list[dict]) -> None:
    columns = [c for c in rows[0] if c != "loss_by_position"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def _cell(value: float) -> str:
    return f"{value:.2f}" if math.isfinite(value) else "—"


def write_report(rows: list[dict], **context) -> str:
    """A Markdown report: perplexity by length for each mode, and the 2 x 2 comparison."""
    lengths = sorted({r["length"] for r in rows})
    models = list(dict.fromkeys(r["model"] for r in rows))
    train_length = context.get("train_length", lengths[0])
    lines = [f"# Length extrapolation ({context.get('recipe', '')} recipe)", "",
             "Setup: " + ", ".join(f"{k} {v}" for k, v in context.items()), ""]
    for mode in ("non_overlapping", "sliding"):
        lines += [f"## Perplexity, {mode.replace('_', '-')} windows", "",
                  "| model | positions | "
                  + " | ".join(f"{n} ({n / train_length:g}x)" for n in lengths) + " |",
                  "|---|---|" + "---:|" * len(lengths)]
        for model in models:
            cells = {r["length"]: r["perplexity"] for r in rows if r["model"] == model and r["mode"] == mode}
            scheme = next(r["positions"] for r in rows if r["model"] == model)
            lines.append(f"| {model} | {scheme} | " + " | ".join(_cell(cells[n]) for n in lengths) + " |")
        lines.append("")
    grid = {(r["architecture"], r["positions"]): r["loss"] for r in rows
            if r["length"] == train_length and r["mode"] == "non_overlapping"}
    grid_cells = {("standard", "learned"), ("standard", "alibi"),
                  ("factored", "learned"), ("factored", "alibi")}
    if grid_cells <= set(grid):
        lines += [f"## Validation loss at the training length ({train_length}): architecture x positions", "",
                  "| | learned positions | ALiBi |", "|---|---:|---:|",
                  f"| standard block | {grid['standard', 'learned']:.3f} | {grid['standard', 'alibi']:.3f} |",
                  f"| factored block | {grid['factored', 'learned']:.3f} | {grid['factored', 'alibi']:.3f} |",
                  ""]
    notes = sorted({f"{r['model']}: {r['note']}" for r in rows if r["note"]})
    if notes:
        lines += ["Lengths a model cannot run are shown as —:", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)


def _log_binned(values: list[float], bins: int = 24) -> tuple[list[float], list[float]]:
    """Mean of ``values`` (indexed by position 1..n) in bins evenly spaced on a log scale: one
    point per bin instead of thousands of noisy ones."""
    n = len(values)
    edges = sorted({1, *(round(n ** (i / bins)) for i in range(bins + 1))})
    xs, ys = [], []
    for lo, hi in zip(edges, edges[1:] + [n + 1]):
        chunk = values[lo - 1:hi - 1]
        if chunk:
            xs.append((lo * (hi - 1)) ** 0.5)
            ys.append(sum(chunk) / len(chunk))
    return xs, ys


def plot_study(rows: list[dict], out_dir, train_length: int) -> None:
    """``perplexity.png``: perplexity against evaluation length, one panel per mode;
    ``loss_by_position.png``: loss at each position of the longest non-overlapping window."""
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig = Figure(figsize=(12.5, 4.2))
    for i, mode in enumerate(("non_overlapping", "sliding")):
        ax = fig.add_subplot(1, 2, i + 1)
        for model in models:
            points = [(r["length"], r["perplexity"]) for r in rows
                      if r["model"] == model and r["mode"] == mode and math.isfinite(r["perplexity"])]
            if points:
                ax.plot(*zip(*points), marker="o", label=model)
        ax.axvline(train_length, color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("evaluation length (tokens)")
        ax.set_ylabel("perplexity")
        ax.set_title(f"{mode.replace('_', '-')} windows (trained at {train_length})")
        ax.grid(alpha=0.3, which="both")
    fig.legend(*fig.axes[0].get_legend_handles_labels(), fontsize=8, loc="center right")
    fig.tight_layout(rect=(0, 0, 0.85, 1))  # room on the right for the legend
    fig.savefig(out_dir / "perplexity.png", dpi=110)

    longest = max(r["length"] for r in rows)
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for model in models:
        row = next((r for r in rows if r["model"] == model and r["length"] == longest
                    and r["mode"] == "non_overlapping" and r["loss_by_position"]), None)
        if row:
            ax.plot(*_log_binned(row["loss_by_position"]), label=model, marker=".")
    ax.axvline(train_length, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("position in the window (tokens of context)")
    ax.set_ylabel("mean loss (nats)")
    ax.set_title(f"loss by position (log-spaced bins), non-overlapping windows of {longest}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "loss_by_position.png", dpi=110)
