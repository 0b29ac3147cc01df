"""The length-extrapolation study: train short, test long, for every way of encoding positions --
with a learning rate chosen per model, several seeds, and ablations of the factored block.

What one study does, for every *variant* (a registry model, or ``FactoredALiBi`` with one of its
choices undone, ``ablations.py``):

1. **A learning rate per variant.** Train once (the first seed) at every rate of the recipe's grid and
   score each run on the *tuning* half of the held-out text, at the training length. The lowest loss
   wins; when it sits at an end of the grid, the grid grows past that end (x2 or /2, at most
   ``max_extensions`` times), so that a range chosen with one variant in mind does not hold another
   back; the report marks a choice still at an end of the rates tried. The same rule for every variant.
2. **Several seeds** at the chosen rate (the run of step 1 is the first of them): every run is scored
   on the *report* half of the held-out text -- text the choice of rate never saw -- at 1x to 16x the
   training length, with non-overlapping and with sliding windows.
3. **How token-like ``xt`` stays** (the logit-lens measure of notebooks 02 and 08), for every run.

Each finished run is written at once to ``runs/<variant>/lr<rate>-seed<seed>.json``; a study started
again with the same ``out_dir`` and settings reads those back and runs only what is missing, so it can
span sessions. The first seed's models are kept as checkpoints, ``models/<variant>/lr<rate>-seed<seed>``
(:func:`chosen_checkpoint` finds the one at the chosen rate). ``study_report.py`` turns the runs into
tables (mean ± standard deviation over seeds), a report and plots.

    tfa extrapolate --recipe cpu --out runs/study        # every variant, 3 rates, 3 seeds: hours on a CPU
    tfa extrapolate --recipe cpu --out runs/quick --models FactoredALiBi,Vanilla --seeds 1 --lrs 1e-3 \
        --no-ablations                                   # two runs: one rate, one seed, no ablations
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tfa_core.data.corpus import markdown_stripped_by_default, read_corpus, train_val_split
from tfa_core.data.tokenizers import create_tokenizer
from tfa_core.experiments.evaluation import evaluate_length
from tfa_core.experiments.inspection import reads_as_context
from tfa_core.model.config import load_alibi_config_preset
from tfa_core.model.factored import FactoredTransformer
from tfa_core.model.registry import get_model, position_scheme_of
from tfa_core.training.distributed import pick_device
from tfa_core.training.resources import flops_per_token, matmul_flops_per_second
from tfa_core.training.trainer import TRAINING_DEFAULTS, Trainer, TrainingConfig, TrainingDiverged

__all__ = ["RECIPES", "STUDY_MODELS", "ABLATIONS", "Variant", "study_variants", "choose_learning_rate",
           "run_extrapolation_study", "chosen_checkpoint", "recipe_cost"]

STUDY_MODELS = ["FactoredALiBi", "Factored", "FactoredSinusoidal", "FactoredRotary", "FactoredNoPE",
                "Vanilla", "VanillaALiBi", "VanillaSinusoidal", "VanillaRotary", "VanillaNoPE"]

RECIPES = {
    # character level, 4L-4H-128D, trained at 128 for 600 steps: about two minutes a run on two CPU cores
    "cpu": dict(tokenizer="character", preset="character", block_size=128, steps=600, batch_size=32,
                learning_rates=[1e-3, 2e-3, 4e-3], seeds=[1337, 1338, 1339], warmup_steps=50,
                lengths=[128, 256, 512, 1024, 2048], eval_tokens=32768),
    # GPT-2 BPE, 4L-4H-256D, trained at 256, evaluated up to 16x: one GPU. Shakespeare's training split
    # is 1,350,185 GPT-2 tokens, so 600 steps of 32 x 256 tokens pass over it 3.6 times. Repeated data
    # is worth about as much as new data up to about 4 passes and much less after (Muennighoff et al.,
    # "Scaling Data-Constrained Language Models", 2023); 5,000 steps made 30 passes with dropout 0, which
    # notebook 09 warns will overfit a 15 M-parameter model. Dropout 0.1 (the `small` preset's own) is
    # the regulariser that acts within 600 steps; weight decay 0.1 (AdamW, the Trainer's default)
    # shrinks the weights by only about 3% in so few steps. Training with dropout runs attention on SDPA
    # with a bias (256 tokens: small); evaluation has no dropout and takes FlexAttention.
    "cuda": dict(tokenizer="gpt2", preset="small", block_size=256, steps=600, batch_size=32,
                 learning_rates=[3e-4, 6e-4, 1.2e-3], seeds=[1337, 1338, 1339], warmup_steps=60,
                 dropout=0.1, weight_decay=0.1, lengths=[256, 512, 1024, 2048, 4096],
                 eval_tokens=65536),  # each half of the 150,020 held-out GPT-2 tokens holds 75,010
}

DEFAULT_WEIGHT_DECAY = TRAINING_DEFAULTS["weight_decay"]


@dataclass(frozen=True)
class Variant:
    """One line of the study: a registry model, with config overrides for an ablation."""

    label: str
    model: str
    overrides: dict = field(default_factory=dict, hash=False)
    ablation: bool = False

    @property
    def slug(self) -> str:
        """The variant's folder name under ``runs/``."""
        return "".join(c if c.isalnum() else "-" for c in self.label).strip("-")


ABLATIONS = [
    # values from xt + xe: the same function as "the MLP writes xt" (ablations.py; a test shows it)
    Variant("FactoredALiBi, values from xt + xe", "FactoredALiBiMixedValues", ablation=True),
    Variant("FactoredALiBi + V", "FactoredALiBi", {"use_v": True}, ablation=True),
    Variant("FactoredALiBi + P", "FactoredALiBi", {"use_proj": True}, ablation=True),
    Variant("FactoredALiBi + V + P", "FactoredALiBi", {"use_v": True, "use_proj": True}, ablation=True),
]


def study_variants(models=None, ablations: bool = True) -> list[Variant]:
    """The variants a study runs: ``models`` (default :data:`STUDY_MODELS`), then :data:`ABLATIONS`."""
    variants = [Variant(name, name) for name in (models or STUDY_MODELS)]
    for variant in variants:
        position_scheme_of(variant.model)  # an unknown name fails now, not after an hour of training
    return variants + (list(ABLATIONS) if ablations else [])


def choose_learning_rate(tune_losses: dict[float, float], max_rate: float = 0.1,
                         min_rate: float = 1e-5) -> tuple[float, float | None]:
    """The rate with the lowest tuning loss, and the next rate to try (``None``: the choice stands).

    When the best rate is the highest (lowest) tried, the next to try is twice (half) it -- unless
    that leaves ``[min_rate, max_rate]``. A run that diverged counts as an infinite loss.
    """
    if not tune_losses:
        raise ValueError("no learning rate was tried")
    rates = sorted(tune_losses)
    best = min(rates, key=lambda rate: (tune_losses[rate], rate))
    if len(rates) > 1 and best == rates[-1] and best * 2 <= max_rate:
        return best, best * 2
    if len(rates) > 1 and best == rates[0] and best / 2 >= min_rate:
        return best, best / 2
    return best, None


def _fingerprint(settings: dict, text: str) -> dict:
    """What must match for a saved run to count in this study: the recipe's settings and the text."""
    keys = ("tokenizer", "preset", "block_size", "steps", "batch_size", "warmup_steps", "lengths",
            "eval_tokens", "dropout", "weight_decay", "config_overrides")
    settings = {"dropout": 0.0, "weight_decay": DEFAULT_WEIGHT_DECAY, "config_overrides": {}, **settings}
    return {**{k: settings[k] for k in keys}, "data_sha256": hashlib.sha256(text.encode()).hexdigest()}


def _rate_name(rate: float) -> str:
    return f"{rate:.3g}"


def _write_json(path: Path, value) -> None:
    """Write atomically: a study stopped mid-write leaves the previous file or none, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(value))
    os.replace(partial, path)


class _Study:
    """The data, settings and saved runs of one study folder."""

    def __init__(self, out_dir: Path, settings: dict, data: str, strip_markdown: bool, device: str):
        self.out_dir, self.settings, self.device = out_dir, settings, device
        text, self.tokenizer, self.train, held_out = _study_data(settings, data, strip_markdown)
        half = len(held_out) // 2
        self.tune, self.report = held_out[:half], held_out[half:]  # choose rates on one, report the other
        check_study_settings(settings, len(self.tune), len(self.report))
        self.fingerprint = _fingerprint(settings, text)
        windows = self.report[: self.windows * settings["block_size"] + 1]
        self.next_in_context = _next_in_context(windows[:-1].view(self.windows, -1),
                                                windows[1:].view(self.windows, -1))

    @property
    def windows(self) -> int:
        """How many windows of the training length ``reads_as_context`` reads (8, or fewer when the
        report text is short)."""
        return min(8, (len(self.report) - 1) // self.settings["block_size"])

    def path(self, variant: Variant, rate: float, seed: int) -> Path:
        return self.out_dir / "runs" / variant.slug / f"lr{_rate_name(rate)}-seed{seed}.json"

    def model_dir(self, variant: Variant, rate: float, seed: int) -> Path:
        return self.out_dir / "models" / variant.slug / f"lr{_rate_name(rate)}-seed{seed}"

    def saved(self, variant: Variant, rate: float, seed: int) -> dict | None:
        """A finished run of this study, or ``None``; a run made with other settings is an error."""
        path = self.path(variant, rate, seed)
        if not path.exists():
            return None
        record = json.loads(path.read_text())
        if (record.get("learning_rate"), record.get("seed")) != (rate, seed):
            raise ValueError(f"{path} holds the run at rate {record.get('learning_rate')} and seed "
                             f"{record.get('seed')}, not {rate} and {seed}: rates that round to the same "
                             "3 significant digits share a file; give rates that differ in those digits")
        if record.get("fingerprint") != self.fingerprint:
            raise ValueError(f"{path} was made with other settings or data than this study "
                             f"({record.get('fingerprint')} vs {self.fingerprint}); use another --out, "
                             "or delete its runs/ folder to start this study again")
        return record

    def run(self, variant: Variant, rate: float, seed: int, keep_model: bool = False) -> dict:
        """Train one variant at one rate and seed, evaluate it, save the record and return it
        (``keep_model``: also save the trained model as a checkpoint under ``models/``)."""
        record = self.saved(variant, rate, seed)
        if record is not None:
            return record
        s = self.settings
        config = load_alibi_config_preset(s["preset"], block_size=s["block_size"],
                                          max_position_embeddings=max(s["lengths"]),
                                          dropout=s.get("dropout", 0.0),
                                          **{**s.get("config_overrides", {}), **variant.overrides})
        config.update_from_tokenizer(self.tokenizer)
        torch.manual_seed(seed)
        model = get_model(variant.model, config)
        if keep_model and self.model_dir(variant, rate, seed).exists():
            shutil.rmtree(self.model_dir(variant, rate, seed))  # a run stopped before its record: start clean
        training = TrainingConfig(max_steps=s["steps"], batch_size=s["batch_size"], learning_rate=rate,
                                  warmup_steps=min(s["warmup_steps"], s["steps"]), eval_interval=s["steps"],
                                  weight_decay=s.get("weight_decay", DEFAULT_WEIGHT_DECAY),
                                  seed=seed, device=self.device, progress=False,
                                  out_dir=str(self.model_dir(variant, rate, seed)) if keep_model else None)
        started = time.perf_counter()
        try:
            history = Trainer(model, self.train, None, training, tokenizer=self.tokenizer).fit()
            diverged = False
        except TrainingDiverged:
            history, diverged = [], True
        record = {"label": variant.label, "model": variant.model, "overrides": variant.overrides,
                  "ablation": variant.ablation, "positions": position_scheme_of(variant.model),
                  "architecture": "factored" if isinstance(model, FactoredTransformer) else "standard",
                  "learning_rate": rate, "seed": seed, "diverged": diverged,
                  "train_seconds": round(time.perf_counter() - started, 1),
                  "final_train_loss": next((r["loss"] for r in reversed(history) if r.get("kind") == "train"),
                                           None),
                  "fingerprint": self.fingerprint}
        record.update(self._evaluate(model) if not diverged else
                      {"tune_loss": math.inf, "evaluations": [], "reads_as_context": {}})
        _write_json(self.path(variant, rate, seed), record)
        return record

    def _evaluate(self, model) -> dict:
        s, device = self.settings, self.device
        tune = evaluate_length(model, self.tune, s["block_size"], "non_overlapping",
                               tokens_scored=s["eval_tokens"], device=device)
        evaluations = []
        for length in s["lengths"]:
            for mode in ("non_overlapping", "sliding"):
                result = evaluate_length(model, self.report, length, mode, tokens_scored=s["eval_tokens"],
                                         device=device)
                evaluations.append({"length": length, "mode": mode, "loss": result.loss,
                                    "tokens_scored": result.tokens_scored, "note": result.note,
                                    "loss_by_position": result.loss_by_position})
        windows = self.report[: self.windows * s["block_size"]].view(self.windows, -1).to(device)
        streams = ("xt", "xt+xe") if isinstance(model, FactoredTransformer) else ("x",)
        return {"tune_loss": tune.loss, "evaluations": evaluations,
                "reads_as_context": {name: reads_as_context(model, windows, name) for name in streams}}


def run_extrapolation_study(out_dir, recipe: str = "cpu", models=None, ablations: bool = True,
                            seeds=None, learning_rates=None, max_extensions: int = 2,
                            steps: int | None = None,
                            lengths=None, data: str = "shakespeare", strip_markdown: bool | None = None,
                            device: str = "auto", eval_tokens: int | None = None,
                            progress: bool = True) -> list[dict]:
    """Run (or finish) the study in ``out_dir`` and write its report; returns the rows of
    ``results.csv`` (one per run, length and mode, with its ``loss_by_position``).

    ``models``: registry names (default :data:`STUDY_MODELS`); ``ablations``: add :data:`ABLATIONS`.
    ``seeds`` and ``learning_rates`` (the grid) default to the recipe's; one rate means no sweep.
    ``learning_rates`` may also map a variant's label to its own grid, for example the rates an earlier
    study chose, ``{label: [rate] for label, rate in chosen.items()}`` (a variant it does not name gets
    the recipe's grid).
    ``strip_markdown``: ``None`` strips the bundled Shakespeare's markdown and leaves other text as
    it is. Writes ``report.md``, ``results.csv``, ``summary.csv``, ``sweep.csv`` and the plots
    (``study_report.py``).
    """
    from tfa_core.experiments.study_report import write_study_outputs

    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {list(RECIPES)}")
    settings = dict(RECIPES[recipe])
    settings.update({k: v for k, v in dict(steps=steps, lengths=lengths, eval_tokens=eval_tokens).items()
                     if v is not None})
    settings["lengths"] = sorted(settings["lengths"])
    seeds = list(seeds or settings["seeds"])
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be different from each other, got {seeds}")
    variants = study_variants(models, ablations)
    grids = _grids(learning_rates, settings["learning_rates"], variants)
    asked_device, device = device, pick_device(device)
    if recipe == "cuda" and not device.startswith("cuda"):
        _refuse_cuda_recipe_without_cuda(asked_device, device, models, ablations, seeds, learning_rates,
                                         steps, data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if strip_markdown is None:
        strip_markdown = markdown_stripped_by_default(data)
    study = _Study(out_dir, settings, data, strip_markdown, device)

    planned = sum(len(rates) + len(seeds) - 1 for rates in grids.values())
    bar = tqdm(total=planned, desc="study", unit="run", disable=not progress)
    records, chosen = [], {}
    for variant in variants:
        tried = {}
        next_rate = None
        for rate in grids[variant.label]:
            bar.set_postfix(variant=variant.label, lr=_rate_name(rate))
            records.append(study.run(variant, rate, seeds[0], keep_model=True))
            tried[rate] = records[-1]["tune_loss"]
            bar.update(1)
        best, next_rate = choose_learning_rate(tried) if len(tried) > 1 else (next(iter(tried)), None)
        for _ in range(max_extensions):
            if next_rate is None:
                break
            bar.total += 1
            records.append(study.run(variant, next_rate, seeds[0], keep_model=True))
            tried[next_rate] = records[-1]["tune_loss"]
            bar.update(1)
            best, next_rate = choose_learning_rate(tried)
        chosen[variant.label] = best
        for seed in seeds[1:]:
            bar.set_postfix(variant=variant.label, lr=_rate_name(best), seed=seed)
            records.append(study.run(variant, best, seed))
            bar.update(1)
    bar.close()
    context = dict(recipe=recipe, steps=settings["steps"], train_length=settings["block_size"],
                   batch_size=settings["batch_size"], eval_tokens=settings["eval_tokens"],
                   learning_rate_grid=_grid_names(grids), max_extensions=max_extensions,
                   seeds=seeds, device=study.device, next_token_in_context=round(study.next_in_context, 3),
                   data=data, strip_markdown=strip_markdown,
                   tuning_tokens=len(study.tune), report_tokens=len(study.report))
    _save_choices(out_dir, seeds[0], chosen, variants)
    return write_study_outputs(out_dir, records, chosen, context)


def _grids(learning_rates, recipe_grid, variants) -> dict[str, list[float]]:
    """The sorted rates each variant sweeps, by label: one grid for every variant, or a mapping of
    labels to grids (or single rates). A variant the mapping does not name gets the recipe's grid; a
    label that is not one of ``variants`` is refused by name."""
    if not isinstance(learning_rates, dict):
        return {v.label: sorted(learning_rates or recipe_grid) for v in variants}
    unknown = sorted(set(learning_rates) - {v.label for v in variants})
    if unknown:
        raise ValueError(f"learning_rates names {unknown}, which this study does not run; the "
                         f"variants are {[v.label for v in variants]}")
    grids = {}
    for v in variants:
        rates = learning_rates.get(v.label, recipe_grid)
        grids[v.label] = sorted([rates] if isinstance(rates, (int, float)) else rates)
        if not grids[v.label]:
            raise ValueError(f"learning_rates[{v.label!r}] is empty; give at least one rate")
    return grids


def _grid_names(grids: dict[str, list[float]]) -> list[str] | dict[str, list[str]]:
    """The grid for the report's setup line: one list, or one per variant where they differ."""
    names = {label: [_rate_name(r) for r in rates] for label, rates in grids.items()}
    if len({tuple(n) for n in names.values()}) <= 1:
        return next(iter(names.values()), [])
    return names


def _save_choices(out_dir: Path, first_seed: int, chosen: dict[str, float], variants) -> None:
    """``chosen.json``: each variant's chosen rate and folder. A study run again for fewer variants
    adds to what an earlier run chose rather than forgetting it."""
    path = out_dir / "chosen.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    if saved.get("seed", first_seed) != first_seed:
        saved = {}  # another first seed: other runs, other choices
    _write_json(path, {"seed": first_seed,
                       "learning_rates": {**saved.get("learning_rates", {}), **chosen},
                       "models": {**saved.get("models", {}), **{v.label: v.slug for v in variants}}})


def check_study_settings(settings: dict, tune_tokens: int, report_tokens: int) -> None:
    """Refuse, before any training, settings the evaluation could not honour: the lengths must
    include the training length (the tables compare at it), and each half of the held-out text must
    hold ``eval_tokens`` targets, at least one window of the longest length."""
    lengths, budget = settings["lengths"], settings["eval_tokens"]
    if settings["block_size"] not in lengths:
        raise ValueError(f"lengths {lengths} must include the training length {settings['block_size']} "
                         "(the study's tables compare the variants there); add it to --lengths")
    if budget < max(lengths):
        raise ValueError(f"eval_tokens {budget:,} is less than one window of the longest length "
                         f"{max(lengths):,}; raise --eval-tokens or lower --lengths")
    if budget > min(tune_tokens, report_tokens) - 1:
        raise ValueError(f"eval_tokens {budget:,} is more than each half of the held-out text holds "
                         f"({min(tune_tokens, report_tokens) - 1:,} targets); lower --eval-tokens or use "
                         "more text")


def _next_in_context(inputs: torch.Tensor, targets: torch.Tensor) -> float:
    """The share of positions whose next token already appears in the context (the current token or
    an earlier one): what ``reads_as_context`` would give for a stream that predicted the next token
    perfectly. It is the base rate to read that measure against."""
    seen = (targets[:, :, None] == inputs[:, None, :]).tril()  # (B, T target, T context): context j <= t
    return seen.any(-1).float().mean().item()


def chosen_checkpoint(out_dir, variant: str) -> Path:
    """The checkpoint of ``variant`` (a study label such as ``"FactoredALiBi"``) at its chosen rate,
    first seed, in the study folder ``out_dir``."""
    chosen = json.loads((Path(out_dir) / "chosen.json").read_text())
    if variant not in chosen["learning_rates"]:
        raise ValueError(f"the study in {out_dir} has no variant {variant!r}; it has "
                         f"{list(chosen['learning_rates'])}")
    rate = _rate_name(chosen["learning_rates"][variant])
    return Path(out_dir) / "models" / chosen["models"][variant] / f"lr{rate}-seed{chosen['seed']}"


def _study_data(settings: dict, data: str, strip_markdown: bool):
    """The text, the recipe's tokenizer, and the token ids split 90 / 10 into training and held-out."""
    corpus = read_corpus(data, strip_markdown=strip_markdown)
    for line in corpus.notes():
        print(line)
    tokenizer = (create_tokenizer("gpt2") if settings["tokenizer"] == "gpt2"
                 else create_tokenizer("character", text=corpus.text))
    train, held_out = train_val_split(torch.tensor(tokenizer.encode(corpus.text)), 0.1)
    return corpus.text, tokenizer, train, held_out


def recipe_cost(recipe: str = "cuda", models=None, ablations: bool = True, seeds=None, learning_rates=None,
                steps: int | None = None, data: str = "shakespeare") -> dict:
    """What a recipe's study costs, before it runs (no model is built: parameters are counted on the
    ``meta`` device). Returns a dict:

    - ``variants`` and ``runs``: every variant trains once at each rate of its grid and once more for
      each further seed (a grid that grows past an end adds runs: this is the least);
    - ``tokens``: tokens each run trains on, ``steps x batch_size x block_size``;
    - ``train_tokens`` and ``passes``: the training split's size, and how often ``tokens`` cover it;
    - ``train_flops``: :func:`~tfa_core.training.resources.flops_per_token` times ``tokens``, summed
      over the runs;
    - ``eval_flops``: each run's evaluation forward passes: at each length, about ``eval_tokens``
      tokens in non-overlapping windows and twice that in sliding ones, plus ``eval_tokens`` at the
      training length on the tuning text (models that stop at their training length are counted too:
      an upper bound);
    - ``flops``: the sum.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {list(RECIPES)}")
    settings = RECIPES[recipe]
    variants = study_variants(models, ablations)
    grids = _grids(learning_rates, settings["learning_rates"], variants)
    runs = {label: len(rates) + len(seeds or settings["seeds"]) - 1 for label, rates in grids.items()}
    steps = steps or settings["steps"]
    _, tokenizer, train, held_out = _study_data(settings, data, markdown_stripped_by_default(data))
    config = load_alibi_config_preset(settings["preset"], block_size=settings["block_size"],
                                      max_position_embeddings=max(settings["lengths"]),
                                      dropout=settings.get("dropout", 0.0))
    config.update_from_tokenizer(tokenizer)
    tokens = steps * settings["batch_size"] * settings["block_size"]
    train_flops = sum(runs[v.label] * flops_per_token(v.model, config) for v in variants) * tokens
    evaluated = 3 * settings["eval_tokens"]  # each length: non-overlapping once, sliding windows twice
    eval_flops = sum(runs[v.label] * flops_per_token(v.model, config, length) / 3 * evaluated  # forward: 1/3
                     for v in variants for length in settings["lengths"])
    eval_flops += sum(runs[v.label] * flops_per_token(v.model, config, settings["block_size"]) / 3  # tuning
                      * settings["eval_tokens"] for v in variants)
    return dict(recipe=recipe, variants=len(variants), runs=sum(runs.values()), steps=steps,
                tokens=tokens, train_tokens=len(train), held_out_tokens=len(held_out),
                passes=tokens / len(train), train_flops=train_flops, eval_flops=eval_flops,
                flops=train_flops + eval_flops)


def _refuse_cuda_recipe_without_cuda(asked_device: str, device: str, models, ablations, seeds,
                                     learning_rates, steps, data) -> None:
    """The cuda recipe on a machine without CUDA: a ``ValueError`` when the device was left to
    ``"auto"``, a warning when the caller named it. Either says how long it would take here."""
    cost = recipe_cost("cuda", models, ablations, seeds, learning_rates, steps, data)
    rate = matmul_flops_per_second(device)
    hours = cost["flops"] / rate / 3600
    why = (f"the cuda recipe needs a GPU: {cost['runs']} runs x {cost['tokens']:,} training tokens, "
           f"{cost['flops']:.2g} FLOPs, at least {hours:,.0f} hours on this {device} "
           f"({rate / 1e9:.0f} GFLOP/s at best, measured on matrix products)")
    if asked_device == "auto":
        raise ValueError(f"{why}; pass --device cpu (in Python: device='cpu') to run it anyway, "
                         "or use --recipe cpu")
    warnings.warn(f"{why}; running it on {device} because you asked for it", RuntimeWarning, stacklevel=3)
