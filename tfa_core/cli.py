"""The ``tfa`` command line: train, generate, evaluate and inspect runs.

    tfa train --preset character --data shakespeare --steps 600 --out runs/char
    tfa generate runs/char --prompt "ROMEO:" --max-new-tokens 200
    tfa evaluate runs/char
    tfa info runs/char
    tfa extrapolate --recipe cpu --out runs/study

``tfa --import mymodels.py train --model MyModel ...`` (or ``TFA_MODELS=mymodels.py``) first imports a
module that registers models of your own (``docs/EXTENDING.md``), so that every command knows them.
``torchrun --nproc_per_node=N -m tfa_core.cli train ...`` trains on N processes (DDP). Mistakes (a
missing file, a bad value, a run without checkpoints) end with one line on stderr and exit code 2;
set ``TFA_DEBUG=1`` to see the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import math
import os
import sys
import types
from pathlib import Path

import torch

__all__ = ["main", "main_exit", "build_parser", "import_models", "MODELS_ENV"]

MODELS_ENV = "TFA_MODELS"
"""Modules to import before every command, separated like PYTHONPATH (``:``, on Windows ``;``)."""


class CommandError(Exception):
    """A mistake in how the command was used: reported in one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad flag ends in one line on stderr (and exit code 2), like every other mistake."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# -- models of your own: imported before the flags are parsed ----------------------------------

def import_models(module: str):
    """Import ``module``, which registers models with ``tfa_core.register_model``: a path to a ``.py``
    file or a module name on the Python path (``mypackage.models``). Returns the module.

    A file is imported under a name of its own, ``tfa_user_models.<file name>`` (once however often it
    is named), so that a file named like a module of the standard library or of an installed package
    (``statistics.py``) never takes that module's place."""
    path = Path(module)
    if module.endswith(".py") or path.is_file():
        if not path.is_file():
            raise CommandError(f"--import {module}: no such file")
        return _import_file(path)
    return importlib.import_module(module)


USER_MODULES = "tfa_user_models"
"""The package that the ``.py`` files of ``--import`` are imported into."""


def _import_file(path: Path):
    """Import the file ``path`` as ``tfa_user_models.<stem>`` (``<stem>_2``, ... for another file of the
    same name), or return it if it was imported already."""
    if USER_MODULES not in sys.modules:
        package = types.ModuleType(USER_MODULES, "The .py files that tfa --import imported.")
        package.__path__ = []  # a package, so that tfa_user_models.<stem> is an importable name
        sys.modules[USER_MODULES] = package
    name, n = f"{USER_MODULES}.{path.stem}", 1
    while name in sys.modules:
        if Path(sys.modules[name].__file__).resolve() == path.resolve():
            return sys.modules[name]
        n += 1
        name = f"{USER_MODULES}.{path.stem}_{n}"
    spec = importlib.util.spec_from_file_location(name, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded  # before it runs, as an import does: dataclasses and pickle look it up
    try:
        spec.loader.exec_module(loaded)
    except BaseException:
        del sys.modules[name]
        raise
    return loaded


def _modules_to_import(argv: list[str]) -> list[str]:
    """The modules that ``TFA_MODELS`` names, then those of each ``--import`` before the command."""
    modules = [m for m in os.environ.get(MODELS_ENV, "").split(os.pathsep) if m.strip()]
    index = 0
    while index < len(argv) and argv[index].startswith("-"):  # the options before the command
        if argv[index] == "--import" and index + 1 < len(argv):
            modules.append(argv[index + 1])
            index += 1
        elif argv[index].startswith("--import="):
            modules.append(argv[index].split("=", 1)[1])
        index += 1
    return modules


# -- flag types: each value is checked as it is parsed, before any work ------------------------

def whole_number(minimum: int = 1):
    """An argparse type: an int >= ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value
    return parse


def finite_number(minimum: float | None = None, maximum: float | None = None, *, above: float | None = None,
                  below: float | None = None):
    """An argparse type: a finite float in the given bounds (``above``/``below`` exclude the bound)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        for bound, ok, words in ((minimum, lambda b: value >= b, "or more"),
                                 (maximum, lambda b: value <= b, "or less"),
                                 (above, lambda b: value > b, "more than"),
                                 (below, lambda b: value < b, "less than")):
            if bound is not None and not ok(bound):
                rule = f"{bound:g} {words}" if words.startswith("or") else f"{words} {bound:g}"
                raise argparse.ArgumentTypeError(f"must be {rule}, got {value:g}")
        return value
    return parse


def model_name(text: str) -> str:
    """An argparse type: a registry name."""
    from tfa_core.model.registry import list_available_models

    if text not in list_available_models():
        raise argparse.ArgumentTypeError(f"unknown model {text!r}; choose one of {list_available_models()}, "
                                         "or import the module that registers yours: tfa --import "
                                         "mymodels.py ...")
    return text


def device_name(text: str) -> str:
    """An argparse type: a device present on this machine (or auto)."""
    from tfa_core.training.distributed import pick_device

    try:
        pick_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def _comma_separated(text: str, parse, example: str) -> list:
    """``text`` split at commas and each piece parsed, or the argparse error every list flag gives."""
    try:
        return [parse(x) for x in text.split(",")]
    except ValueError:
        kind = "whole numbers" if parse is int else "numbers"
        raise argparse.ArgumentTypeError(
            f"expected comma-separated {kind} such as {example}, got {text!r}") from None


def length_list(text: str) -> list[int]:
    """An argparse type: comma-separated window lengths, each >= 2."""
    lengths = _comma_separated(text, int, "128,512")
    if any(n < 2 for n in lengths):
        raise argparse.ArgumentTypeError(f"every length must be 2 or more, got {text}")
    return lengths


def whole_list(text: str) -> list[int]:
    """An argparse type: comma-separated whole numbers (seeds), all different."""
    values = _comma_separated(text, int, "1337,1338,1339")
    if any(v < 0 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"seeds must be different whole numbers, 0 or more, got {text}")
    return values


def rate_list(text: str) -> list[float]:
    """An argparse type: comma-separated learning rates, each above 0 and finite."""
    values = _comma_separated(text, float, "1e-3,2e-3,4e-3")
    if not all(math.isfinite(v) and 0 < v < 1 for v in values) or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(
            f"learning rates must be different numbers between 0 and 1, got {text}")
    return values


def run_folder(text: str) -> str:
    """An argparse type: a folder path that is not empty and not an existing file."""
    if not text.strip():
        raise argparse.ArgumentTypeError("needs a folder name, got an empty string")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder; choose another --out")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text} cannot be created: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text} cannot be written: no permission to write in {parent}")
    return text


def output_file(text: str) -> str:
    """An argparse type: a file to write, in a folder that exists (checked before any work)."""
    path = Path(text)
    if not text.strip() or path.is_dir():
        raise argparse.ArgumentTypeError(f"needs a file name, got {text!r}")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text} cannot be written: the folder {path.parent} does not exist")
    return text


# -- train -----------------------------------------------------------------------------------

# Flags that describe the model, the data or the training: given with --resume they must agree with
# the run (a resumed run keeps its settings). flag -> where the run keeps it.
_MODEL_FLAGS = {"model": "model_type", "n_layer": "n_layer", "n_head": "n_head", "n_embd": "n_embd",
                "dropout": "dropout", "block_size": "block_size",
                "max_position_embeddings": "max_position_embeddings", "use_v": "use_v",
                "use_proj": "use_proj"}
# (--data is checked by the SHA-256 of its text, in _recorded_corpus; --strip/--keep-markdown in _resumed_run)
_DATA_FLAGS = {"tokenizer": "tokenizer", "val_fraction": "val_fraction"}
_TRAINING_FLAGS = {"batch_size": "batch_size", "lr": "learning_rate", "min_lr": "min_learning_rate",
                   "warmup_steps": "warmup_steps", "weight_decay": "weight_decay", "grad_clip": "grad_clip",
                   "grad_accum": "grad_accum_steps", "eval_interval": "eval_interval",
                   "eval_tokens": "eval_tokens", "log_interval": "log_interval", "seed": "seed",
                   "precision": "precision"}
DEFAULT_STEPS = 600


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    from tfa_core.model.config import list_presets
    from tfa_core.training.trainer import TRAINING_DEFAULTS as D

    model = p.add_argument_group("model")
    model.add_argument("--preset", choices=list_presets(), help="default: character")
    model.add_argument("--model", type=model_name, help="registry name (default FactoredALiBi)")
    model.add_argument("--n-layer", type=whole_number(1))
    model.add_argument("--n-head", type=whole_number(1))
    model.add_argument("--n-embd", type=whole_number(1))
    model.add_argument("--dropout", type=finite_number(0, below=1))
    model.add_argument("--block-size", "--block_size", type=whole_number(2), help="training length")
    model.add_argument("--max-position-embeddings", "--max_position_embeddings", type=whole_number(2),
                       help="longest input the model accepts (default 4 x block size)")
    model.add_argument("--use-v", action="store_true", default=None, help="learned H x H value mix")
    model.add_argument("--use-proj", action="store_true", default=None, help="learned H x H output mix")
    data = p.add_argument_group("data")
    data.add_argument("--data", help="'shakespeare' (default), a text file of any suffix, or a folder "
                      "(every text file under it; binary and hidden files are left out)")
    _add_markdown_flags(data)
    data.add_argument("--tokenizer", choices=["character", "gpt2"],
                      help="default: character for the character preset, gpt2 otherwise")
    data.add_argument("--val-fraction", type=finite_number(above=0, below=1), help="default 0.1")
    run = p.add_argument_group("training (defaults: TrainingConfig's)")
    run.add_argument("--steps", type=whole_number(1), help=f"optimizer steps (default {DEFAULT_STEPS}); "
                     "with --resume, a new total: the cosine schedule is stretched to end there")
    run.add_argument("--epochs", "--num_epochs", "--num-epochs", type=finite_number(above=0),
                     help="train for this many passes over the training tokens instead of --steps")
    run.add_argument("--batch-size", "--batch_size", type=whole_number(1),
                     help="windows per process per micro-step (default: the preset's)")
    run.add_argument("--grad-accum", type=whole_number(1),
                     help=f"micro-steps per optimizer step (default {D['grad_accum_steps']})")
    run.add_argument("--lr", "--learning-rate", type=finite_number(above=0),
                     help="peak learning rate (default: the preset's)")
    run.add_argument("--min-lr", type=finite_number(0), help="end of the cosine (default lr / 10)")
    run.add_argument("--warmup-steps", type=whole_number(0),
                     help=f"default {D['warmup_steps']} (at most --steps)")
    run.add_argument("--weight-decay", type=finite_number(0), help=f"default {D['weight_decay']}")
    run.add_argument("--grad-clip", type=finite_number(0),
                     help=f"default {D['grad_clip']}; 0 turns clipping off")
    run.add_argument("--eval-interval", type=whole_number(1), help=f"default {D['eval_interval']}")
    run.add_argument("--eval-tokens", type=whole_number(2),
                     help=f"validation targets scored, the same for any batch size "
                     f"(default {D['eval_tokens']:,}, or all of the split when shorter)")
    run.add_argument("--log-interval", type=whole_number(1), help=f"default {D['log_interval']}")
    run.add_argument("--seed", type=whole_number(0), help=f"default {D['seed']}")
    run.add_argument("--device", type=device_name, default="auto",
                     help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    run.add_argument("--precision", choices=["auto", "bf16", "fp32"], help=f"default {D['precision']}")
    run.add_argument("--compile", action="store_true",
                     help="torch.compile the model: pays on CUDA; on a CPU about 1.02x, and it needs a C++ "
                     "compiler there")
    run.add_argument("--out", "--output", required=True, type=run_folder,
                     help="run folder for checkpoints and history")
    run.add_argument("--resume", action="store_true",
                     help="continue the run in --out from its newest intact checkpoint")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--test-generation", "--test_generation", action="store_true",
                     help="print a sample at 1x and 4x the training length after training")


def _add_markdown_flags(group) -> None:
    """--strip-markdown / --keep-markdown (``args.strip_markdown``: True, False, or None for the
    source's default)."""
    markdown = group.add_mutually_exclusive_group()
    markdown.add_argument("--strip-markdown", dest="strip_markdown", action="store_true", default=None,
                          help="remove Markdown markup (**bold**, _italic_, # headings) before training; "
                          "the default for 'shakespeare' only")
    markdown.add_argument("--keep-markdown", dest="strip_markdown", action="store_false", default=None,
                          help="train on the text exactly as it is; the default for your own files")


# -- data: read, record, read again ----------------------------------------------------------

def _require_data(source: str) -> None:
    if source != "shakespeare" and not Path(source).expanduser().exists():
        raise CommandError(f"data {source!r} not found: give 'shakespeare', a text file or a folder")


def _read_data(source: str, strip_markdown: bool | None, say):
    """The ``Corpus`` of ``source``, Markdown stripped when asked (None: only for 'shakespeare');
    what reading did (files read and skipped, characters stripped) is said in a line or two."""
    from tfa_core.data.corpus import markdown_stripped_by_default, read_corpus

    _require_data(source)
    if strip_markdown is None:
        strip_markdown = markdown_stripped_by_default(source)
    corpus = read_corpus(source, strip_markdown=strip_markdown)
    for line in corpus.notes():
        say(line)
    return corpus


def _data_spec(corpus, tokenizer: str, val_fraction: float) -> dict:
    """What a run records about its data: enough to read the same text again from any directory
    (the absolute path) and to know that it is the same (the SHA-256 of the text trained on, after
    any Markdown stripping)."""
    return {"source": corpus.source, "strip_markdown": corpus.stripped, "tokenizer": tokenizer,
            "val_fraction": val_fraction, "sha256": corpus.sha256}


def _recorded_corpus(spec: dict, data: str | None, say):
    """The text a run was trained on, read again: from ``data`` when given (``--data``), else from
    the path the run recorded; either way it must hash to the SHA-256 the run recorded. Runs from
    before the hash was recorded are read with a note that they cannot be checked."""
    recorded = spec.get("sha256")
    if data is None and spec["source"] != "shakespeare" and not Path(spec["source"]).exists():
        raise CommandError(f"the run's data {spec['source']} is gone; give --data with a copy of it"
                           + (f" (SHA-256 {recorded})" if recorded else ""))
    corpus = _read_data(data or spec["source"], spec["strip_markdown"], say)
    if recorded is None:
        say(f"note: this run recorded no SHA-256 of its text (it predates them), so {corpus.source} "
            "cannot be checked against what it was trained on")
    elif corpus.sha256 != recorded:
        raise CommandError(
            f"{corpus.source} is not the text this run was trained on: its SHA-256 is {corpus.sha256}, "
            f"the run recorded {recorded}; give --data with the original text (the run read it from "
            f"{spec['source']}), or start a new run with another --out to train on this one")
    elif corpus.source != spec["source"]:
        say(f"the run's text (same SHA-256) is now read from {corpus.source}")
    return corpus


def _encode(text: str, tokenizer, source: str) -> torch.Tensor:
    """Token ids of ``text`` as an int64 tensor; characters a character tokenizer never saw are a
    CommandError that names them (a BPE tokenizer covers any text)."""
    characters = getattr(tokenizer, "characters", None)
    if characters is not None and getattr(tokenizer, "unk_token_id", None) is None:
        unseen = sorted(set(text) - set(characters))
        if unseen:
            shown = ", ".join(repr(c) for c in unseen[:5]) + (", ..." if len(unseen) > 5 else "")
            raise CommandError(
                f"{source} has {len(unseen)} character(s) the run's character tokenizer never saw "
                f"({shown}); use text made of the characters it was trained on, or train a run on "
                "text that holds them")
    return torch.tensor(tokenizer.encode(text), dtype=torch.long)


def _check_windows(train, val, block_size: int, source: str) -> None:
    """Both splits must hold a window of the training length, or training fails at its first
    evaluation: say so now."""
    if len(train) < block_size:
        raise CommandError(f"the training split of {source!r} has {len(train)} tokens, fewer than one window "
                           f"of {block_size}; use more text or a smaller --block-size")
    if len(val) < block_size + 1:
        raise CommandError(f"the validation split of {source!r} has {len(val)} tokens, fewer than one window "
                           f"of {block_size} + 1; raise --val-fraction, use more text or a smaller "
                           "--block-size")


def _check_training_memory(config, batch_size: int, device: str, what: str) -> None:
    from tfa_core.training.resources import count_parameters, require_memory, training_bytes

    n_params = count_parameters(config.model_type, config)
    needed = training_bytes(n_params, config, batch_size, config.block_size)
    require_memory(needed, device, f"training {what} ({n_params:,} parameters, batch {batch_size} x "
                   f"{config.block_size})", "lower --n-embd, --n-layer, --batch-size or --block-size "
                   "(--grad-accum keeps the effective batch)")


def _new_run(args, dist_info, say):
    """Model, data and training settings of a new run, every flag checked before the data is read."""
    from tfa_core.data.corpus import train_val_split
    from tfa_core.data.tokenizers import create_tokenizer
    from tfa_core.model.config import load_alibi_config_preset
    from tfa_core.training.checkpoint import holds_run
    from tfa_core.training.trainer import TRAINING_DEFAULTS, TrainingConfig

    if holds_run(args.out):
        raise CommandError(f"{args.out} already holds a run; add --resume to continue it, or choose "
                           "another --out for a new one")
    if args.steps is not None and args.epochs is not None:
        raise CommandError("give --steps or --epochs, not both")
    preset = args.preset or "character"
    overrides = {field: getattr(args, flag) for flag, field in _MODEL_FLAGS.items()
                 if getattr(args, flag) is not None}
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size
    if args.block_size and not args.max_position_embeddings:
        overrides["max_position_embeddings"] = 4 * args.block_size
    config = load_alibi_config_preset(preset, **overrides)
    source = args.data or "shakespeare"
    tokenizer_name = args.tokenizer or ("character" if preset == "character" else "gpt2")
    val_fraction = args.val_fraction if args.val_fraction is not None else 0.1
    learning_rate = args.lr if args.lr is not None else config.learning_rate
    if args.min_lr is not None and args.min_lr > learning_rate:
        raise CommandError(f"--min-lr {args.min_lr:g} is above the peak learning rate {learning_rate:g}")
    if args.warmup_steps is not None and args.steps is not None and args.warmup_steps > args.steps:
        raise CommandError(f"--warmup-steps {args.warmup_steps} is longer than --steps {args.steps}")
    _require_data(source)
    # the smallest this model can be (one-token vocabulary): refuse now what cannot fit whatever the data
    _check_training_memory(config.copy(vocab_size=config.vocab_size or 1), config.batch_size,
                           dist_info.device, f"{config.model_type}")

    corpus = _read_data(source, args.strip_markdown, say)
    spec = _data_spec(corpus, tokenizer_name, val_fraction)
    tokenizer = (create_tokenizer("gpt2") if tokenizer_name == "gpt2"
                 else create_tokenizer("character", text=corpus.text))
    train, val = train_val_split(_encode(corpus.text, tokenizer, corpus.source), val_fraction)
    config.update_from_tokenizer(tokenizer)
    _check_windows(train, val, config.block_size, spec["source"])
    _check_training_memory(config, config.batch_size, dist_info.device, config.model_type)
    steps = args.steps or DEFAULT_STEPS
    if args.epochs is not None:
        per_step = config.batch_size * config.block_size * (args.grad_accum or 1) * dist_info.world_size
        steps = max(1, math.ceil(args.epochs * len(train) / per_step))
        if steps > 10 ** 9:
            raise CommandError(f"--epochs {args.epochs:g} means {steps:,} steps; give fewer epochs")
    given = {field: getattr(args, flag) for flag, field in _TRAINING_FLAGS.items()
             if getattr(args, flag) is not None}
    if args.warmup_steps is not None and args.warmup_steps > steps:
        raise CommandError(f"--warmup-steps {args.warmup_steps} is longer than the {steps} steps of this run")
    given.setdefault("warmup_steps", min(TRAINING_DEFAULTS["warmup_steps"], steps))
    training = TrainingConfig(**{**given, "max_steps": steps, "batch_size": config.batch_size,
                                 "learning_rate": learning_rate, "out_dir": args.out, "device": args.device,
                                 "compile": args.compile, "progress": not args.no_progress})
    return config, spec, tokenizer, train, val, training, None, {"preset": preset}


def _resumed_run(args, dist_info, say):
    """Model, data and training settings of the run in --out, from its newest intact checkpoint."""
    from tfa_core.data.corpus import train_val_split
    from tfa_core.training.checkpoint import CheckpointError, find_resumable, holds_run
    from tfa_core.training.trainer import TrainingConfig, learning_rate_at

    saved, skipped = find_resumable(args.out)
    if saved is None:
        if not holds_run(args.out):
            raise CommandError(f"nothing to resume: {args.out} holds no run; leave out --resume to start one")
        raise CommandError(f"nothing to resume in {args.out}: no intact checkpoint"
                           + (f" ({skipped[-1]})" if skipped else "")
                           + "; it is left as it is (start a new run with another --out)")
    for line in skipped:
        say(f"passed over: {line}")
    state_file = saved.path / "state.json"
    spec, training_dict = saved.extra.get("data"), saved.extra.get("training")
    if not (isinstance(spec, dict) and {"source", "strip_markdown", "tokenizer", "val_fraction"} <= set(spec)
            and isinstance(training_dict, dict)):
        raise CheckpointError(f"{state_file} was not written by 'tfa train' (it has no data and training "
                              "settings under 'extra'); resume it with tfa_core.Trainer(resume=True)")
    try:
        saved_training = TrainingConfig.from_dict(training_dict)
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"{state_file} is damaged: its training settings are invalid ({error})") from None
    if saved.tokenizer is None:
        raise CheckpointError(f"{state_file} has no tokenizer description; it was not written by 'tfa train'")

    conflicts = []

    def compare(flag, given, recorded):
        if given is not None and given != recorded:
            conflicts.append(f"{_flag(flag)} {given} (the run has {recorded})")

    for flag, field in _MODEL_FLAGS.items():
        compare(flag, getattr(args, flag), getattr(saved.config, field))
    for flag, key in _DATA_FLAGS.items():
        compare(flag, getattr(args, flag), spec.get(key))
    if args.strip_markdown is not None and args.strip_markdown != spec["strip_markdown"]:
        conflicts.append("--strip-markdown (the run keeps Markdown)" if args.strip_markdown
                         else "--keep-markdown (the run strips Markdown)")
    compare("preset", args.preset, saved.extra.get("preset", args.preset))
    for flag, field in _TRAINING_FLAGS.items():
        compare(flag, getattr(args, flag), getattr(saved_training, field))
    if args.epochs is not None:
        conflicts.append("--epochs (give --steps with the new total number of steps instead)")
    if conflicts:
        raise CommandError(f"a resumed run keeps its settings, but you gave {', '.join(conflicts)}; leave "
                           "them out, or start a new run with another --out")

    steps = args.steps or saved_training.max_steps
    if saved.step >= steps:
        if args.steps is None:
            raise CommandError(f"{args.out} already finished its {steps} steps; to train on, pass --steps "
                               "with a larger total (the cosine schedule is then stretched to end there)")
        raise CommandError(f"--steps {steps} is not past the checkpoint's step {saved.step}; "
                           "give a larger total")
    training = TrainingConfig.from_dict({**training_dict, "max_steps": steps, "out_dir": args.out,
                                         "device": args.device, "compile": args.compile,
                                         "progress": not args.no_progress})
    say(f"resuming {args.out} from {saved.path.name}")
    if steps != saved_training.max_steps:
        before, after = learning_rate_at(saved.step, saved_training), learning_rate_at(saved.step, training)
        say(f"the schedule changes from {saved_training.max_steps} to {steps} steps: the learning rate at "
            f"step {saved.step} goes from {before:.3g} to {after:.3g}, then decays by cosine to "
            f"{training.min_learning_rate:.3g} at step {steps}")
    corpus = _recorded_corpus(spec, args.data, say)
    train, val = train_val_split(_encode(corpus.text, saved.tokenizer, corpus.source), spec["val_fraction"])
    tokenizer, spec = saved.tokenizer, {**spec, "source": corpus.source, "sha256": corpus.sha256}
    _check_windows(train, val, saved.config.block_size, spec["source"])
    _check_training_memory(saved.config, training.batch_size, dist_info.device, saved.config.model_type)
    extra = {key: value for key, value in saved.extra.items() if key not in ("data", "training")}
    return saved.config, spec, tokenizer, train, val, training, saved, extra


def command_train(args) -> int:
    from tfa_core.training.distributed import cleanup_distributed, setup_distributed
    from tfa_core.model.registry import get_model
    from tfa_core.training.trainer import Trainer

    dist_info = setup_distributed(args.device)
    say = print if dist_info.is_main else (lambda *a, **k: None)
    try:
        config, spec, tokenizer, train, val, training, saved, extra = (
            _resumed_run if args.resume else _new_run)(args, dist_info, say)
        if saved is not None:
            model = saved.model
        else:
            torch.manual_seed(training.seed)  # the same initial weights for the same seed, on every process
            model = get_model(config.model_type, config)
        say(f"{config.model_type}: {model.get_num_params(non_embedding=False):,} parameters, "
            f"{len(train):,} training tokens, {training.max_steps} steps on {dist_info.device}"
            + (f" x {dist_info.world_size} processes" if dist_info.enabled else ""))
        trainer = Trainer(model, train, val, training, tokenizer=tokenizer, extra={"data": spec, **extra},
                          resume=saved if saved is not None else False, dist_info=dist_info)
        for line in trainer.notes:
            say(line)
        history = trainer.fit()
        evals = [r for r in history if r["kind"] == "eval"]
        if evals:
            say(f"step {evals[-1]['step']}: validation loss {evals[-1]['val_loss']:.4f}")
        say(f"saved {trainer.last_checkpoint}")
        if args.test_generation and dist_info.is_main:
            from tfa_core.experiments.evaluation import test_length_extrapolation

            test_length_extrapolation(model, tokenizer, dist_info.device, model.config, prompt="\n",
                                      factors=(1, 4))
    finally:
        cleanup_distributed()
    return 0


# -- generate, evaluate, info ----------------------------------------------------------------

def _load_run(run: str, device: str = "cpu"):
    """The model of a run (or checkpoint folder), without the optimizer file, which sampling and
    evaluation do not need."""
    from tfa_core.training.checkpoint import load_checkpoint
    from tfa_core.training.distributed import pick_device

    if not Path(run).exists():
        raise CommandError(f"run {run!r} not found: give a folder written by 'tfa train --out'")
    saved = load_checkpoint(run, device=pick_device(device), training_state=False)
    if saved.tokenizer is None:
        raise CommandError(f"{saved.path} has no tokenizer description; it was not written by 'tfa train'")
    saved.model.eval()
    return saved


def command_generate(args) -> int:
    from tfa_core.decoding.generate import stream_generate

    saved = _load_run(args.run, args.device)
    prompt = args.prompt or "\n"
    temperature = 0.0 if args.greedy else args.temperature
    print(prompt, end="", flush=True)
    with torch.no_grad():
        for piece in stream_generate(saved.model, saved.tokenizer, prompt, args.max_new_tokens,
                                     temperature=temperature, top_k=args.top_k, top_p=args.top_p,
                                     seed=args.seed, use_cache=not args.no_cache):
            print(piece, end="", flush=True)  # text appears token by token
    print()
    return 0


def _recorded_spec(saved) -> dict | None:
    """The data description 'tfa train' records in a run, or None (a run trained through the API)."""
    spec = saved.extra.get("data")
    if isinstance(spec, dict) and {"source", "strip_markdown", "val_fraction"} <= set(spec):
        return spec
    return None


def _same_source(data: str, spec: dict | None) -> bool:
    """Whether ``data`` (as typed) names the text a run recorded (its path may have been relative)."""
    if spec is None:
        return False
    if "shakespeare" in (data, spec["source"]):
        return data == spec["source"]
    return Path(data).expanduser().resolve() == Path(spec["source"]).resolve()


def _evaluation_tokens(saved, args) -> torch.Tensor:
    """The tokens ``tfa evaluate`` scores. With --data: all of that text (a different text by
    intent, so no hash check; read as the run read its own text when it is the same source, else
    as it is, Markdown stripped only for 'shakespeare'). Without: the validation split of the run's
    own text, read again from the absolute path it recorded and checked against its SHA-256."""
    from tfa_core.data.corpus import train_val_split

    def note(line):  # notes go to stderr: stdout holds only the results
        print(line, file=sys.stderr)

    spec = _recorded_spec(saved)
    if args.data:
        strip = spec["strip_markdown"] if _same_source(args.data, spec) else None
        corpus = _read_data(args.data, strip, note)
        return _encode(corpus.text, saved.tokenizer, corpus.source)
    if spec is None:
        raise CommandError(f"{saved.path} records no training data: this run was trained through the API; "
                           "give --data FILE to evaluate it on a text")
    corpus = _recorded_corpus(spec, None, note)
    _, val = train_val_split(_encode(corpus.text, saved.tokenizer, corpus.source), spec["val_fraction"])
    return val


def command_evaluate(args) -> int:
    from tfa_core.training.distributed import pick_device
    from tfa_core.training.resources import inference_bytes, require_memory

    saved = _load_run(args.run, args.device)
    lengths = args.lengths or [saved.config.block_size]
    modes = ["non_overlapping", "sliding"] if args.mode == "both" else [args.mode]
    n_params = sum(p.numel() for p in saved.model.parameters())
    for length in lengths:
        require_memory(inference_bytes(n_params, saved.config, args.batch_size, length),
                       pick_device(args.device), f"evaluating batch {args.batch_size} x {length}",
                       "lower --batch-size")
    val = _evaluation_tokens(saved, args)
    budget = _evaluation_budget(args.tokens, saved.extra.get("training"), val)
    what = "the text of --data" if args.data else "the validation split"
    print(f"scoring the same {budget:,} tokens at every length: the first of {what} ({len(val):,} tokens)")
    print(f"{'length':>8}  {'mode':<16} {'loss':>8} {'perplexity':>11} {'tokens scored':>14}")
    rows = []
    for length in lengths:
        for mode in modes:
            rows.append(_evaluation_row(saved.model, val, length, mode, budget, args.batch_size))
            print(_evaluation_line(rows[-1]))
    recorded = saved.extra.get("data")
    source = args.data or (recorded.get("source") if isinstance(recorded, dict) else None)
    _write_evaluation(args, rows, saved, budget, str(source))
    return 0


def _describe_data(spec: dict | None) -> str:
    if spec is None:
        return "not recorded: trained through the API (tfa evaluate needs --data FILE)"
    markdown = "Markdown stripped" if spec["strip_markdown"] else "as it is"
    digest = f"SHA-256 {spec['sha256']}" if spec.get("sha256") else "no SHA-256 recorded"
    return f"{spec['source']} ({markdown}, validation fraction {spec['val_fraction']:g}, {digest})"

def _evaluation_budget(tokens: int | None, training: dict | None, val) -> int:
    """The targets ``tfa evaluate`` scores: ``--tokens``, else the run's ``eval_tokens`` (so that at the
    block size it reproduces the run's validation loss), capped by the text when that is shorter."""
    from tfa_core.experiments.evaluation import evaluation_budget

    if tokens is None:
        saved = training.get("eval_tokens") if isinstance(training, dict) else None
        return evaluation_budget(saved if isinstance(saved, int) and saved >= 2 else None, len(val))
    if tokens > len(val) - 1:
        raise CommandError(f"--tokens {tokens:,} is more than the {len(val) - 1:,} the text holds; "
                           "lower --tokens")
    return tokens


def _evaluation_row(model, val, length: int, mode: str, budget: int, batch_size: int) -> dict:
    """One row of ``tfa evaluate``'s table; a length that cannot run has no loss and a note why."""
    from tfa_core.experiments.evaluation import evaluate_length, window_stride

    if model.max_sequence_length >= length > budget:
        return {"length": length, "mode": mode, "stride": window_stride(length, mode), "loss": None,
                "perplexity": None, "tokens_scored": 0,
                "note": f"longer than the {budget:,} tokens scored; raise --tokens"}
    result = evaluate_length(model, val, length, mode, batch_size=batch_size, tokens_scored=budget)
    ran = not result.note  # a note: past the model's limit, so no loss
    return {"length": length, "mode": mode, "stride": result.stride, "loss": result.loss if ran else None,
            "perplexity": result.perplexity if ran else None, "tokens_scored": result.tokens_scored,
            "note": result.note}


def _evaluation_line(row: dict) -> str:
    if row["loss"] is None:
        return f"{row['length']:>8}  {row['mode']:<16} {'-':>8} {'-':>11} {'-':>14}   ({row['note']})"
    return (f"{row['length']:>8}  {row['mode']:<16} {row['loss']:>8.4f} {row['perplexity']:>11.3f} "
            f"{row['tokens_scored']:>14,}")


def _write_evaluation(args, rows: list[dict], saved, budget: int, source: str) -> None:
    """``--json`` (the setup and every row; a length that could not run has ``null`` loss) and
    ``--csv`` (one line per row)."""
    import csv
    import json

    if args.json:
        report = {"run": str(args.run), "checkpoint": str(saved.path), "step": saved.step, "data": source,
                  "tokens_scored": budget, "results": rows}
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}")


def command_info(args) -> int:
    from tfa_core.model.config import format_config
    from tfa_core.training.checkpoint import read_history

    saved = _load_run(args.run)
    print(f"checkpoint  {saved.path} (step {saved.step})")
    print(f"tokenizer   {saved.tokenizer!r}")
    print(f"data        {_describe_data(_recorded_spec(saved))}")
    print(format_config(saved.config))
    history = Path(saved.path).parents[1] / "history.jsonl"
    records, problems = read_history(history)
    for kind, key in (("train", "loss"), ("eval", "val_loss")):
        last = [r for r in records if r["kind"] == kind and isinstance(r.get(key), (int, float))]
        if last:
            print(f"last {kind:<6} step {last[-1]['step']}: {key} {last[-1][key]:.4f}")
    for line in problems:
        print(f"note: {line}")
    return 0


def command_extrapolate(args) -> int:
    from tfa_core.experiments.study import run_extrapolation_study

    rows = run_extrapolation_study(
        args.out, recipe=args.recipe, models=args.models.split(",") if args.models else None,
        ablations=not args.no_ablations, seeds=args.seeds, learning_rates=args.lrs, steps=args.steps,
        lengths=args.lengths, eval_tokens=args.eval_tokens, data=args.data,
        strip_markdown=args.strip_markdown, device=args.device, progress=not args.no_progress)
    print((Path(args.out) / "report.md").read_text())
    runs = {(row["variant"], row["learning_rate"], row["seed"]) for row in rows}
    print(f"{len(runs)} runs in {Path(args.out) / 'runs'}; wrote report.md, results.csv, summary.csv, "
          "sweep.csv, chosen.json, perplexity.png and loss_by_position.png")
    return 0


# -- entry point -----------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tfa", description="Token-Factored Transformer with ALiBi")
    parser.add_argument("--import", dest="imports", action="append", metavar="MODULE",
                        help="import this module first (a .py file or a module name): it registers "
                             f"models of your own with tfa_core.register_model; repeatable; also "
                             f"{MODELS_ENV}=MODULE")
    # subcommands parse with OneLineParser too
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model")
    _add_train_arguments(train)
    train.set_defaults(run_command=command_train)

    generate = commands.add_parser("generate", help="sample text from a trained run")
    generate.add_argument("run")
    generate.add_argument("--prompt", default="", help="text to continue (default: a new line)")
    generate.add_argument("--max-new-tokens", type=whole_number(0), default=200)
    generate.add_argument("--temperature", type=finite_number(0), default=0.8,
                          help="0 is greedy (default 0.8)")
    generate.add_argument("--top-k", type=whole_number(1))
    generate.add_argument("--top-p", type=finite_number(above=0, maximum=1))
    generate.add_argument("--greedy", action="store_true", help="always take the most likely token")
    generate.add_argument("--seed", type=whole_number(0))
    generate.add_argument("--no-cache", action="store_true",
                          help="recompute the whole context for every token")
    generate.add_argument("--device", type=device_name, default="cpu")
    generate.set_defaults(run_command=command_generate)

    evaluate = commands.add_parser(
        "evaluate", help="loss and perplexity of a trained run, at one or more lengths",
        description="Every length scores the same tokens: the first --tokens targets of the validation "
                    "split (or of --data).")
    evaluate.add_argument("run")
    evaluate.add_argument("--data", help="evaluate on this text (a file or folder, or 'shakespeare') instead "
                          "of the validation split of the run's own text: its first --tokens targets")
    evaluate.add_argument("--lengths", type=length_list,
                          help="comma-separated window lengths, e.g. 128,256,512 "
                               "(default: the run's block size)")
    evaluate.add_argument("--mode", choices=["non_overlapping", "sliding", "both"], default="non_overlapping",
                          help="non_overlapping windows (default, as in training's validation), sliding "
                               "windows (stride: half the length), or both")
    evaluate.add_argument("--tokens", type=whole_number(2),
                          help="targets scored at every length (default: the run's eval_tokens, "
                               "32,768 unless it was set, or all of the text when shorter)")
    evaluate.add_argument("--batch-size", type=whole_number(1), default=16,
                          help="windows per forward pass (does not change the result)")
    evaluate.add_argument("--json", metavar="FILE", type=output_file, help="also write the results as JSON")
    evaluate.add_argument("--csv", metavar="FILE", type=output_file,
                          help="also write the results as CSV (with --json: both)")
    evaluate.add_argument("--device", type=device_name, default="cpu")
    evaluate.set_defaults(run_command=command_evaluate)

    study = commands.add_parser(
        "extrapolate", help="the length-extrapolation study: train short, test long (resumes in --out)")
    study.add_argument("--recipe", default="cpu", choices=["cpu", "cuda"])
    study.add_argument("--out", required=True, type=run_folder,
                       help="folder for results.csv, report.md and the plots")
    study.add_argument("--models", help="comma-separated registry names (default: every position scheme)")
    study.add_argument("--steps", type=whole_number(1),
                       help="training steps per model (default: the recipe's)")
    study.add_argument("--lengths", type=length_list,
                       help="comma-separated evaluation lengths (default: the recipe's)")
    study.add_argument("--seeds", "--seed", type=whole_list,
                       help="comma-separated seeds, the first also for the rate sweep "
                       "(default: the recipe's 3)")
    study.add_argument("--lrs", "--learning-rates", type=rate_list,
                       help="comma-separated learning-rate grid (default: the recipe's; one rate: no sweep)")
    study.add_argument("--no-ablations", action="store_true", help="leave out the factored block's ablations")
    study.add_argument("--eval-tokens", type=whole_number(2),
                       help="targets scored at every length (default: the recipe's); each half of the "
                       "held-out text must hold them")
    study.add_argument("--data", default="shakespeare",
                       help="'shakespeare' (default), a text file of any suffix, or a folder")
    _add_markdown_flags(study)
    study.add_argument("--device", type=device_name, default="auto")
    study.add_argument("--no-progress", action="store_true")
    study.set_defaults(run_command=command_extrapolate)

    info = commands.add_parser("info", help="what a run is and how far it got")
    info.add_argument("run")
    info.set_defaults(run_command=command_info)

    # tfa grade NOTEBOOK...: the course's exercise grader
    from tfa_core.teaching.grading import add_grade_command

    add_grade_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``tfa`` command; returns the exit code. Every mistake, in a flag or in a file,
    ends in one line on stderr and exit code 2."""
    from tfa_core.training.trainer import TrainingDiverged

    argv = sys.argv[1:] if argv is None else list(argv)
    for module in _modules_to_import(argv):  # before parsing: --model must know the names they add
        try:
            import_models(module)
        except Exception as error:
            if os.environ.get("TFA_DEBUG"):
                raise
            why = error if isinstance(error, CommandError) else f"importing {module} failed: " \
                f"{type(error).__name__}: {error}"
            print(f"tfa: error: {' '.join(str(why).split())}", file=sys.stderr)
            return 2
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # a bad flag (the parser printed its one line), or --help
        return stop.code if isinstance(stop.code, int) else 2
    try:
        return args.run_command(args)
    except (CommandError, ValueError, TypeError, FileNotFoundError, ModuleNotFoundError, OSError,
            TrainingDiverged, torch.OutOfMemoryError) as error:
        if os.environ.get("TFA_DEBUG"):  # the full traceback, for bug reports
            raise
        message = " ".join(str(error).split())  # one line, whatever the message held
        if isinstance(error, torch.OutOfMemoryError):
            message = f"out of memory ({message[:200]}); lower --batch-size or the model's size"
        elif isinstance(error, OSError) and not isinstance(error, FileNotFoundError) and error.filename:
            message = f"{error.strerror or error}: {error.filename}"
        print(f"tfa {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tfa {args.command}: interrupted", file=sys.stderr)
        return 130


def main_exit() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    main_exit()
