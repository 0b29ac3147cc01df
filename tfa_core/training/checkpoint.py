"""Checkpoints that are safe to write and safe to read.

A run folder holds numbered checkpoints and a pointer to the newest complete one::

    run/checkpoints/step-00000100/model.safetensors      weights (and ALiBi slopes)
                                  optimizer.safetensors  optimizer tensors and RNG states
                                  state.json             config, tokenizer, step, the rest
                                  SHA256SUMS             a SHA-256 of each of the three
    run/checkpoints/latest                               "step-00000100"

Writing: every checkpoint goes into a temporary folder, is flushed to disk and renamed into place,
and ``latest`` is replaced atomically afterwards, so a crash mid-save leaves the previous checkpoint
as it was; the temporary folders of saves that were killed are removed by the next save. Old
checkpoints are deleted only from the list of those the caller wrote itself (``prunable``).

Reading: nothing here unpickles (weights and tensors are safetensors, everything else is JSON), so
loading a checkpoint never runs code from the file. Every file is checked against its SHA-256, every
safetensors header against the file's size, ``state.json`` against the shape it must have, the
weights' names and shapes against the model that the config describes (on PyTorch's ``meta``
device, before anything is allocated) and the weights against NaN and infinity. A problem is a
:class:`CheckpointError` that names the file and what is wrong with it. ``latest`` only ever names a
checkpoint of its own run. ``load_checkpoint(..., training_state=False)`` reads only what a model
needs (``generate``, ``evaluate``, ``info``), so a damaged optimizer file does not stop them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shutil
import stat
import struct
import secrets
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, load_model, save_file, save_model

from tfa_core.data.tokenizers import tokenizer_from_description
from tfa_core.model.checks import is_int
from tfa_core.model.config import GPTConfigALiBi
from tfa_core.model.registry import get_model
from tfa_core.training.resources import format_bytes, require_memory

__all__ = ["Checkpoint", "CheckpointError", "UnregisteredModelError", "save_checkpoint", "load_checkpoint",
           "latest_checkpoint", "list_checkpoints", "find_resumable", "holds_run", "clean_leftovers",
           "checkpoint_dir", "restore_rng", "read_history", "write_history"]

FORMAT_VERSION = 2  # 2: SHA256SUMS; format 1 (no checksums) still loads
FILES = ("model.safetensors", "optimizer.safetensors", "state.json")
CHECKSUMS = "SHA256SUMS"
_STEP_NAME = re.compile(r"step-(\d{8,})")
_MAX_HEADER = 100 * 2 ** 20  # a safetensors header is JSON text; ours are a few KiB
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
_ARCHITECTURE_FIELDS = ("model_type", "n_layer", "n_head", "n_embd", "vocab_size", "bias", "use_v",
                        "use_proj", "block_size", "max_position_embeddings", "alibi_max_bias")


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged or does not fit: the message names the file."""


class UnregisteredModelError(CheckpointError):
    """The checkpoint holds a model added with ``register_model`` whose module this process has not
    imported: nothing is wrong with the files."""


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


# -- where things are ------------------------------------------------------------------------

def checkpoint_dir(run_dir) -> Path:
    """The folder that holds a run's checkpoints."""
    return Path(run_dir) / "checkpoints"


def _step_of(name: str) -> int | None:
    match = _STEP_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


def list_checkpoints(run_dir) -> list[Path]:
    """The run's checkpoint folders (``step-<n>``, complete or not), oldest first."""
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir()
             if p.is_dir() and not p.is_symlink() and _step_of(p.name) is not None]
    return sorted(found, key=lambda p: _step_of(p.name))


def _read_latest(run_dir) -> Path:
    """The checkpoint that ``latest`` names; a CheckpointError if it is missing, damaged, or names
    anything but a checkpoint folder of this run."""
    folder = checkpoint_dir(run_dir)
    pointer = folder / "latest"
    try:
        name = pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise CheckpointError(f"{pointer} is missing") from None
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{pointer} cannot be read ({error})") from None
    if _step_of(name) is None:  # "../other-run/...", "/etc", "" or garbage
        raise CheckpointError(f"{pointer} is damaged: it holds {name[:60]!r}, not the name of a "
                              "checkpoint folder of this run (step-<number>)")
    path = folder / name
    if path.is_symlink() or not path.is_dir() or path.resolve().parent != folder.resolve():
        raise CheckpointError(f"{pointer} names {name}, which is not a checkpoint folder in {folder}")
    return path


def latest_checkpoint(run_dir) -> Path | None:
    """The checkpoint that the run's ``latest`` pointer names, or None if the run has no usable
    pointer. Use :func:`find_resumable` to also fall back to an older, intact checkpoint."""
    try:
        path = _read_latest(run_dir)
    except CheckpointError:
        return None
    return path if (path / "state.json").is_file() else None


def holds_run(run_dir) -> bool:
    """Whether ``run_dir`` already holds (part of) a training run: checkpoints or a history."""
    run_dir = Path(run_dir)
    folder = checkpoint_dir(run_dir)
    return ((run_dir / "history.jsonl").exists() or (folder / "latest").exists()
            or bool(list_checkpoints(run_dir)))


def clean_leftovers(run_dir) -> list[Path]:
    """Remove what interrupted saves left behind (``checkpoints/.step-*`` folders and
    ``.latest.tmp``); returns what was removed. Only one process may write a run at a time."""
    folder = checkpoint_dir(run_dir)
    removed = []
    if folder.is_dir():
        for path in folder.iterdir():
            if path.name.startswith(".step-") and path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            elif path.name == ".latest.tmp":
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2 ** 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _non_finite(tensors) -> str | None:
    """The name of the first floating tensor that holds NaN or infinity, or None."""
    for name, tensor in tensors:
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return name
    return None


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
    prunable=(),
) -> Path:
    """Write a checkpoint of ``model`` (and optionally the optimizer, the tokenizer, the data
    sampler's generator and any JSON-ready ``extra``) as ``run_dir/checkpoints/step-<step>``, with a
    SHA-256 of each file in ``SHA256SUMS``. Returns the checkpoint's path.

    Weights that hold NaN or infinity are refused (a ``ValueError``): a checkpoint is always a good
    one. Of the checkpoint folders named in ``prunable`` (the ones the caller wrote itself, as
    ``Trainer`` passes), all but the newest ``keep``, counting this one, are deleted; nothing else is.
    """
    if not is_int(step) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    bad = _non_finite(model.state_dict().items())
    if bad is not None:
        raise ValueError(f"not saving step {step}: the weight {bad} holds NaN or infinity")
    folder = checkpoint_dir(run_dir)
    folder.mkdir(parents=True, exist_ok=True)
    clean_leftovers(run_dir)
    name = f"step-{step:08d}"
    # os.mkdir honours the user's umask (tempfile.mkdtemp would make it 0700 whatever the umask), so a
    # group that shares the storage can read the run; the random part keeps two saves apart
    tmp = folder / f".{name}-{secrets.token_hex(4)}"
    tmp.mkdir()
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
        (tmp / CHECKSUMS).write_text("".join(f"{_sha256(tmp / f)}  {f}\n" for f in FILES))
        readable = stat.S_IMODE(tmp.stat().st_mode) & 0o666  # the umask's file mode (safetensors writes 0600)
        for file in tmp.iterdir():  # on disk before the rename makes the checkpoint visible
            file.chmod(readable)
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        final = folder / name
        if final.exists():  # saving the same step again: the new one replaces it
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_atomically(folder / "latest", name)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(folder, keep, protect=name, prunable=prunable)
    return final


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _prune(folder: Path, keep: int, protect: str, prunable) -> None:
    mine = {Path(p).name for p in prunable} | {protect}
    steps = sorted((p for p in folder.iterdir() if p.name in mine and _step_of(p.name) is not None),
                   key=lambda p: _step_of(p.name))
    for old in steps[:-keep] if keep > 0 else []:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)


# -- the history -----------------------------------------------------------------------------

def read_history(path) -> tuple[list[dict], list[str]]:
    """The records of a ``history.jsonl`` and a list of the problems met (one line each).

    A last line without its newline is what a crash in the middle of an append leaves: it is
    dropped. So is any line that is not a JSON object with a ``kind`` and an integer ``step``."""
    path = Path(path)
    if not path.exists():
        return [], []
    text = path.read_text(encoding="utf-8", errors="replace")
    records, problems = [], []
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        torn = number == len(lines)  # the text did not end with a newline
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("kind"), str) and is_int(record.get("step")):
            records.append(record)
        else:
            problems.append(f"{path.name} line {number}: " + ("a torn last line (a crash mid-write), dropped"
                                                              if torn else "not a history record, dropped"))
    return records, problems


def write_history(path, records: list[dict]) -> None:
    """Replace ``history.jsonl`` with ``records`` atomically: a crash leaves the old file or the new
    one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in records))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


# -- reading ---------------------------------------------------------------------------------

def _resolve(path) -> Path:
    """A checkpoint folder from a checkpoint path or a run folder."""
    path = Path(path)
    if (path / "state.json").is_file() or (path / CHECKSUMS).is_file():
        return path
    if not (checkpoint_dir(path) / "latest").exists():
        others = [p.name for p in list_checkpoints(path)]
        if others:
            raise CheckpointError(f"{checkpoint_dir(path) / 'latest'} is missing; give a checkpoint folder "
                                  f"instead, e.g. {checkpoint_dir(path) / others[-1]}")
        raise FileNotFoundError(f"no checkpoint at {path}: expected a run folder with checkpoints/latest "
                                "or a checkpoint folder with state.json")
    try:
        return _read_latest(path)
    except CheckpointError as error:
        others = [p.name for p in list_checkpoints(path)]
        hint = (f"; give a checkpoint folder instead, e.g. {checkpoint_dir(path) / others[-1]}" if others
                else "")
        raise CheckpointError(f"{error}{hint}") from None


def _read_checksums(path: Path) -> dict[str, str] | None:
    file = path / CHECKSUMS
    if not file.exists():
        return None
    sums = {}
    try:
        for line in file.read_text(encoding="utf-8").splitlines():
            digest, name = line.split("  ", 1)
            if not re.fullmatch(r"[0-9a-f]{64}", digest) or name not in FILES:
                raise ValueError
            sums[name] = digest
    except ValueError:
        raise CheckpointError(f"{file} is damaged: each line must be '<sha256>  <file name>'") from None
    missing = [name for name in FILES if name not in sums]
    if missing:
        raise CheckpointError(f"{file} is damaged: it has no SHA-256 for {', '.join(missing)}")
    return sums


def _verify(path: Path, name: str, sums: dict | None) -> Path:
    file = path / name
    if not file.is_file():
        raise CheckpointError(f"{file} is missing")
    if sums is not None:
        actual = _sha256(file)
        if actual != sums[name]:
            raise CheckpointError(f"{file} is damaged: its SHA-256 is {actual[:16]}..., {CHECKSUMS} recorded "
                                  f"{sums[name][:16]}... at save "
                                  "(the file was changed, truncated or swapped)")
    return file


def _safetensors_header(file: Path) -> dict[str, tuple[str, list[int]]]:
    """Check a safetensors file's header against its size; return ``{name: (dtype, shape)}``."""
    size = file.stat().st_size
    with open(file, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{file} is damaged: {size} bytes, too short for a safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, _MAX_HEADER):
            raise CheckpointError(f"{file} is damaged: its header claims {length:,} bytes but the file has "
                                  f"{size:,} (truncated or not a safetensors file)")
        raw = handle.read(length)
    try:
        header = json.loads(raw)
        if not isinstance(header, dict):
            raise ValueError("not a JSON object")
    except ValueError as error:
        raise CheckpointError(f"{file} is damaged: its header is not valid JSON ({error})") from None
    data_bytes = size - 8 - length
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            if dtype not in _DTYPE_BYTES or not all(is_int(n) and n >= 0 for n in shape) \
                    or not (is_int(start) and is_int(end)):
                raise ValueError
        except (TypeError, ValueError, KeyError):
            raise CheckpointError(f"{file} is damaged: the header entry for {name!r} is malformed") from None
        if not 0 <= start <= end <= data_bytes or end - start != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise CheckpointError(f"{file} is damaged: {name!r} lies at bytes {start}..{end} but the data "
                                  f"holds {data_bytes:,} bytes (truncated, or offsets past the end)")
        tensors[name] = (dtype, list(shape))
    return tensors


def _read_state(path: Path) -> dict:
    file = path / "state.json"
    try:
        state = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{file} is damaged: not valid JSON ({error})") from None

    def wrong(what):
        return CheckpointError(f"{file} is damaged: {what}")

    if not isinstance(state, dict):
        raise wrong(f"expected a JSON object, found a {type(state).__name__}")
    version = state.get("format_version")
    if version not in (1, FORMAT_VERSION):
        raise CheckpointError(f"{file} has format {version!r}; "
                              f"this tfa_core reads formats 1 and {FORMAT_VERSION}")
    expected = {"step": int, "config": dict, "tokenizer": (dict, type(None)), "optimizer": (dict, type(None)),
                "rng": dict, "extra": dict}
    for key, kind in expected.items():
        if key not in state:
            raise wrong(f"it has no {key!r}")
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            raise wrong(f"{key!r} has the wrong type ({type(state[key]).__name__})")
    if state["step"] < 0:
        raise wrong(f"step is {state['step']}")
    if _step_of(path.name) is not None and _step_of(path.name) != state["step"]:
        raise wrong(f"it is the state of step {state['step']}, but its folder is {path.name} "
                    "(files swapped?)")
    optimizer = state["optimizer"]
    if optimizer is not None and not (isinstance(optimizer.get("param_groups"), list)
                                      and all(isinstance(g, dict) and isinstance(g.get("params"), list)
                                              for g in optimizer["param_groups"])
                                      and isinstance(optimizer.get("plain_state"), dict)):
        raise wrong("'optimizer' must hold a list of param_groups and a plain_state object")
    try:
        version_, internal, gauss = state["rng"]["python"]
        random.Random().setstate((version_, tuple(internal), gauss))  # a scratch generator: only a check
    except (KeyError, TypeError, ValueError, OverflowError):
        raise wrong("'rng' does not hold a Python random state") from None
    return state


def _config_differences(saved: GPTConfigALiBi, expected: GPTConfigALiBi) -> list[str]:
    return [f"{name}: checkpoint has {getattr(saved, name)!r}, you asked for {getattr(expected, name)!r}"
            for name in _ARCHITECTURE_FIELDS if getattr(saved, name) != getattr(expected, name)]


def _check_weights_fit(file: Path, header: dict, config: GPTConfigALiBi) -> int:
    """Compare the weights' names and shapes with the model ``config`` describes, built on the meta
    device (nothing allocated); returns the model's size in bytes."""
    with torch.device("meta"):
        model = get_model(config.model_type, config)
    tensors = dict(model.named_parameters(remove_duplicate=False))
    tensors.update(model.named_buffers(remove_duplicate=False))
    wanted = {name: t for name, t in tensors.items() if name in model.state_dict()}
    if model.alibi_slopes is not None:  # a layer's own slopes; or, in older checkpoints, every layer's copy
        for i in range(config.n_layer):
            wanted[f"transformer.h.{i}.attn.alibi_slopes"] = model.alibi_slopes
    unexpected = sorted(set(header) - set(wanted))
    if unexpected:
        raise CheckpointError(f"{file} does not match the {config.model_type} model that state.json "
                              f"describes: unexpected weights {unexpected[:5]}")
    for name in header:
        if list(wanted[name].shape) != header[name][1]:
            raise CheckpointError(f"{file} does not match the config in state.json: {name} has shape "
                                  f"{header[name][1]}, the config needs {list(wanted[name].shape)}")
    present = {id(wanted[name]) for name in header}  # tied weights are stored once
    missing = sorted(name for name, t in wanted.items() if name not in header and id(t) not in present)
    if missing:
        raise CheckpointError(f"{file} does not match the {config.model_type} model that state.json "
                              f"describes: missing weights {missing[:5]}")
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def _require_registered(state_file: Path, model_type) -> None:
    """A model of the user's own loads only once the module that registers it is imported: say so,
    rather than calling the config damaged."""
    from tfa_core.model.registry import MODEL_REGISTRY

    if isinstance(model_type, str) and model_type not in MODEL_REGISTRY:
        raise UnregisteredModelError(
            f"{state_file} holds a {model_type!r} model, which is not registered in this process: import "
            "the module that registers it first (in Python, import it before loading; on the command "
            "line, tfa --import path/to/models.py <command> ..., or set TFA_MODELS=path/to/models.py)")


def load_checkpoint(path, *, config: GPTConfigALiBi | None = None, tokenizer=None,
                    device="cpu", training_state: bool = True) -> Checkpoint:
    """Load a checkpoint (or a run folder's newest one) into a new model on ``device``.

    If ``config`` or ``tokenizer`` is given, the checkpoint must match it: a model of another shape
    or a different vocabulary is refused with a message that lists the differences. With
    ``training_state=False`` the optimizer file is neither read nor checked (``optimizer_state`` is
    None and ``rng_state`` empty): what sampling and evaluation need. Every problem with the files is
    a :class:`CheckpointError` (a ``ValueError``) naming the file.
    """
    path = _resolve(path)
    sums = _read_checksums(path)
    state_file = _verify(path, "state.json", sums)
    state = _read_state(path)
    if sums is None and state["format_version"] >= 2:
        raise CheckpointError(f"{path / CHECKSUMS} is missing, so the files cannot be checked")
    _require_registered(state_file, state["config"].get("model_type"))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            saved_config = GPTConfigALiBi.from_dict(state["config"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{state_file} is damaged: its config is invalid ({error})") from None
    for warning in caught:  # old checkpoints: fields the config no longer has
        warnings.warn(f"{state_file}: {warning.message}", UserWarning, stacklevel=2)
    if config is not None:
        differences = _config_differences(saved_config, config)
        if differences:
            raise CheckpointError(f"checkpoint {path} does not match the requested config: "
                                  + "; ".join(differences))
    try:
        saved_tokenizer = tokenizer_from_description(state["tokenizer"]) if state["tokenizer"] else None
    except (TypeError, ValueError, KeyError) as error:
        raise CheckpointError(
            f"{state_file} is damaged: its tokenizer description is invalid ({error})") from None
    if tokenizer is not None and saved_tokenizer is not None and tokenizer != saved_tokenizer:
        raise CheckpointError(f"checkpoint {path} was trained with another tokenizer "
                              f"({saved_tokenizer!r}, you gave {tokenizer!r}); use the run's own tokenizer")

    model_file = _verify(path, "model.safetensors", sums)
    header = _safetensors_header(model_file)
    model_bytes = _check_weights_fit(model_file, header, saved_config)
    require_memory(model_bytes, str(device), f"the model in {model_file} ({format_bytes(model_bytes)})",
                   "load it on a device with more memory")
    model = get_model(saved_config.model_type, saved_config)
    try:
        load_model(model, str(model_file), strict=True)
    except Exception as error:  # safetensors' own errors have no common base class
        raise CheckpointError(f"{model_file} cannot be read ({str(error).splitlines()[0]})") from None
    bad = _non_finite(model.state_dict().items())
    if bad is not None:
        raise CheckpointError(f"{model_file} holds NaN or infinity in {bad}: the run had diverged when "
                              "it was saved; use an earlier checkpoint")
    model.to(device)

    optimizer_state, rng = None, {}
    if training_state:
        optimizer_state, rng = _load_training_state(path, state, sums)
    return Checkpoint(path=path, model=model, config=saved_config, tokenizer=saved_tokenizer,
                      step=state["step"], optimizer_state=optimizer_state, rng_state=rng,
                      extra=state["extra"])


def _load_training_state(path: Path, state: dict, sums: dict | None) -> tuple[dict | None, dict]:
    file = _verify(path, "optimizer.safetensors", sums)
    _safetensors_header(file)
    try:
        tensors = load_file(str(file))
    except Exception as error:
        raise CheckpointError(f"{file} cannot be read ({str(error).splitlines()[0]})") from None
    optimizer_state = None
    if state["optimizer"] is not None:
        groups = [{**g, "betas": tuple(g["betas"])} if isinstance(g.get("betas"), list) else g
                  for g in state["optimizer"]["param_groups"]]  # JSON turned the tuple into a list
        optimizer_state = {"state": {}, "param_groups": groups}
        try:
            for key, value in tensors.items():
                if key.startswith("optimizer.state."):
                    index, name = key[len("optimizer.state."):].split(".", 1)
                    optimizer_state["state"].setdefault(int(index), {})[name] = value
            for key, value in state["optimizer"]["plain_state"].items():
                index, name = key.split(".", 1)
                optimizer_state["state"].setdefault(int(index), {})[name] = value
        except ValueError:
            raise CheckpointError(f"{file} is damaged: optimizer tensor {key!r} is not "
                                  "'optimizer.state.<index>.<name>'") from None
    rng = {key: value for key, value in tensors.items() if key.startswith("rng.")}
    for key in ("rng.torch", "rng.data"):
        if key in rng:
            try:
                torch.Generator().set_state(rng[key])  # a scratch generator: only a check
            except (RuntimeError, TypeError):
                raise CheckpointError(f"{file} is damaged: {key} is not a random generator state") from None
    if "rng.torch" not in rng:
        raise CheckpointError(f"{file} is damaged: it has no rng.torch")
    rng["python"] = state["rng"]["python"]
    return optimizer_state, rng


def find_resumable(run_dir) -> tuple[Checkpoint | None, list[str]]:
    """The newest intact checkpoint of a run, tried in order: the one ``latest`` names, then the
    others from newest to oldest. Returns it (or None) and one line for each checkpoint passed over."""
    skipped = []
    candidates = []
    try:
        candidates.append(_read_latest(run_dir))
    except CheckpointError as error:
        if (checkpoint_dir(run_dir) / "latest").exists() or list_checkpoints(run_dir):
            skipped.append(str(error))
    candidates += [p for p in reversed(list_checkpoints(run_dir)) if p not in candidates]
    for path in candidates:
        try:
            return load_checkpoint(path), skipped
        except UnregisteredModelError:  # the files are fine: passing over them would only mislead
            raise
        except (CheckpointError, FileNotFoundError) as error:
            skipped.append(str(error))
    return None, skipped


def restore_rng(rng_state: dict, data_generator: torch.Generator | None = None) -> None:
    """Put back the random number generators saved with a checkpoint, so a resumed run draws the
    same batches and dropout masks as an uninterrupted one."""
    torch.set_rng_state(rng_state["rng.torch"])
    cuda_states = [rng_state[k] for k in sorted(rng_state) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[:torch.cuda.device_count()])
    if data_generator is not None and "rng.data" in rng_state:
        data_generator.set_state(rng_state["rng.data"])
    version, internal, gauss = rng_state["python"]
    random.setstate((version, tuple(internal), gauss))
