"""Checkpoints that are safe to write and safe to read.

A run folder holds numbered checkpoints and a pointer to the newest complete one::

    run/checkpoints/step-00000100/model.safetensors      weights (and ALiBi slopes)
                                  optimizer.safetensors  optimizer tensors and RNG states
                                  state.json             config, tokenizer, step, the rest
    run/checkpoints/latest                               "step-00000100"

Every checkpoint is written into a temporary folder and renamed into place, and ``latest`` is
replaced atomically afterwards, so a crash mid-save leaves the previous checkpoint as it was.
Nothing here unpickles: weights and tensors are safetensors, everything else is JSON, so loading a
checkpoint never runs code from the file.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from tfa_core.model.config import GPTConfigALiBi
from tfa_core.model.registry import get_model
from tfa_core.data.tokenizers import tokenizer_from_description

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "latest_checkpoint", "checkpoint_dir", "restore_rng"]

FORMAT_VERSION = 1
_ARCHITECTURE_FIELDS = ("model_type", "n_layer", "n_head", "n_embd", "vocab_size", "bias", "use_v",
                        "use_proj", "block_size", "max_position_embeddings", "alibi_max_bias")


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns: a ready model and what is needed to resume."""

    path: Path
    model: torch.nn.Module
    config: GPTConfigALiBi
    tokenizer: object | None
    step: int
    optimizer_state: dict | None = None
    rng_state: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def checkpoint_dir(run_dir) -> Path:
    """The folder that holds a run's checkpoints."""
    return Path(run_dir) / "checkpoints"


def latest_checkpoint(run_dir) -> Path | None:
    """The newest complete checkpoint of a run, or None if it has none yet."""
    folder = checkpoint_dir(run_dir)
    pointer = folder / "latest"
    if not pointer.is_file():
        return None
    path = folder / pointer.read_text().strip()
    return path if (path / "state.json").is_file() else None


# -- writing ---------------------------------------------------------------------------------

def _flatten_optimizer(state_dict: dict) -> tuple[dict, dict]:
    """Split an optimizer state dict into tensors (for safetensors) and plain values (for JSON)."""
    tensors, plain = {}, {}
    for index, slots in state_dict["state"].items():
        for name, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.state.{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain[f"{index}.{name}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "plain_state": plain}


def _capture_rng(data_generator: torch.Generator | None) -> tuple[dict, dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    if data_generator is not None:
        tensors["rng.data"] = data_generator.get_state()
    version, internal, gauss = random.getstate()
    return tensors, {"python": [version, list(internal), gauss]}


def save_checkpoint(
    run_dir,
    model: torch.nn.Module,
    step: int,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    tokenizer=None,
    data_generator: torch.Generator | None = None,
    extra: dict | None = None,
    keep: int = 2,
) -> Path:
    """Write a checkpoint of ``model`` (and optionally the optimizer, the tokenizer, the data
    sampler's generator and any JSON-ready ``extra``) as ``run_dir/checkpoints/step-<step>``.

    Keeps the newest ``keep`` checkpoints and deletes older ones. Returns the checkpoint's path.
    """
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder))
    try:
        save_model(model, str(tmp / "model.safetensors"))
        tensors, rng_plain = _capture_rng(data_generator)
        optimizer_plain = None
        if optimizer is not None:
            optimizer_tensors, optimizer_plain = _flatten_optimizer(optimizer.state_dict())
            tensors.update(optimizer_tensors)
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        state = {
            "format_version": FORMAT_VERSION,
            "step": step,
            "config": model.config.to_dict(),
            "tokenizer": tokenizer.describe() if tokenizer is not None else None,
            "optimizer": optimizer_plain,
            "rng": rng_plain,
            "extra": extra or {},
        }
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
        for file in tmp.iterdir():  # on disk before the rename makes the checkpoint visible
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        final = folder / name
        if final.exists():  # saving the same step again: move the old one aside first
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_atomically(folder / "latest", name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(folder, keep, protect=name)
    return final


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _prune(folder: Path, keep: int, protect: str) -> None:
    steps = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step-"))
    for old in steps[:-keep] if keep > 0 else []:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)


# -- reading ---------------------------------------------------------------------------------

def _resolve(path) -> Path:
    """A checkpoint folder from a checkpoint path or a run folder."""
    path = Path(path)
    if (path / "state.json").is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is not None:
        return latest
    raise FileNotFoundError(f"no checkpoint at {path}: expected a run folder with checkpoints/latest "
                            "or a checkpoint folder with state.json")


def _config_differences(saved: GPTConfigALiBi, expected: GPTConfigALiBi) -> list[str]:
    return [f"{name}: checkpoint has {getattr(saved, name)!r}, you asked for {getattr(expected, name)!r}"
            for name in _ARCHITECTURE_FIELDS if getattr(saved, name) != getattr(expected, name)]


def load_checkpoint(path, *, config: GPTConfigALiBi | None = None, tokenizer=None,
                    device="cpu") -> Checkpoint:
    """Load a checkpoint (or a run folder's newest one) into a new model on ``device``.

    If ``config`` or ``tokenizer`` is given, the checkpoint must match it: a model of another shape
    or a different vocabulary is refused with a message that lists the differences.
    """
    path = _resolve(path)
    try:
        state = json.loads((path / "state.json").read_text())
    except ValueError as error:
        raise ValueError(f"checkpoint {path} is damaged: state.json is not valid JSON ({error})") from None
    if state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"checkpoint {path} has format {state.get('format_version')!r}; "
                         f"this tfa_core reads format {FORMAT_VERSION}")
    saved_config = GPTConfigALiBi.from_dict(state["config"])
    if config is not None:
        differences = _config_differences(saved_config, config)
        if differences:
            raise ValueError(f"checkpoint {path} does not match the requested config: " + "; ".join(differences))
    saved_tokenizer = tokenizer_from_description(state["tokenizer"]) if state["tokenizer"] else None
    if tokenizer is not None and saved_tokenizer is not None and tokenizer != saved_tokenizer:
        raise ValueError(f"checkpoint {path} was trained with another tokenizer "
                         f"({saved_tokenizer!r}, you gave {tokenizer!r}); use the run's own tokenizer")
    model = get_model(saved_config.model_type, saved_config)
    missing, unexpected = load_model(model, str(path / "model.safetensors"), strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {path} does not fit a {saved_config.model_type} model: "
                         f"missing {sorted(missing)}, unexpected {sorted(unexpected)}")
    model.to(device)
    tensors = load_file(str(path / "optimizer.safetensors"))
    optimizer_state = None
    if state["optimizer"] is not None:
        groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g
                  for g in state["optimizer"]["param_groups"]]  # JSON turned the tuple into a list
        optimizer_state = {"state": {}, "param_groups": groups}
        for key, value in tensors.items():
            if key.startswith("optimizer.state."):
                index, name = key[len("optimizer.state."):].split(".", 1)
                optimizer_state["state"].setdefault(int(index), {})[name] = value
        for key, value in state["optimizer"]["plain_state"].items():
            index, name = key.split(".", 1)
            optimizer_state["state"].setdefault(int(index), {})[name] = value
    rng = {key: value for key, value in tensors.items() if key.startswith("rng.")}
    rng["python"] = state["rng"]["python"]
    return Checkpoint(path=path, model=model, config=saved_config, tokenizer=saved_tokenizer,
                      step=state["step"], optimizer_state=optimizer_state, rng_state=rng,
                      extra=state["extra"])


def restore_rng(rng_state: dict, data_generator: torch.Generator | None = None) -> None:
    """Put back the random number generators saved with a checkpoint, so a resumed run draws the
    same batches and dropout masks as an uninterrupted one."""
    torch.set_rng_state(rng_state["rng.torch"])
    cuda_states = [rng_state[k] for k in sorted(rng_state) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states)
    if data_generator is not None and "rng.data" in rng_state:
        data_generator.set_state(rng_state["rng.data"])
    version, internal, gauss = rng_state["python"]
    random.setstate((version, tuple(internal), gauss))
