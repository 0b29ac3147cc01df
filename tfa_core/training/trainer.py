"""Training: the tutorial's simple loop, and a fuller trainer for real runs.

``train_model`` is the tutorial's epoch loop over a DataLoader, kept for learners. ``Trainer`` is
what the command line and the course use: AdamW without weight decay on norms, biases and
embeddings, linear warmup then cosine decay, gradient clipping and accumulation, periodic
validation, a JSONL history written as it goes, progress bars, hooks for live plots, safe
checkpoints with exact resume, bf16 autocast / TF32 / ``torch.compile`` on CUDA, and several
processes under ``torchrun``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed
import torch.nn as nn
from tqdm.auto import tqdm

from tfa_core.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    clean_leftovers,
    find_resumable,
    holds_run,
    list_checkpoints,
    load_checkpoint,
    read_history,
    restore_rng,
    save_checkpoint,
    write_history,
)
from tfa_core.data.corpus import random_batch
from tfa_core.model.checks import require_finite, require_int
from tfa_core.training.distributed import DistributedInfo, pick_device
from tfa_core.experiments.evaluation import DEFAULT_TOKENS_SCORED, evaluate_length, evaluation_budget

__all__ = [
    "TrainingConfig",
    "TRAINING_DEFAULTS",
    "TrainingDiverged",
    "Trainer",
    "configure_optimizer",
    "learning_rate_at",
    "estimate_loss",
    "train_model",
]


@dataclass
class TrainingConfig:
    """How to train. ``batch_size`` is per process and per micro-step: one optimizer step sees
    ``batch_size x grad_accum_steps x processes`` windows of ``block_size`` tokens.

    Validation scores the first ``eval_tokens`` targets of the validation split (all of it when
    shorter) in non-overlapping windows of ``block_size``: the same tokens whatever the batch size and
    the number of processes. ``eval_batches`` is the old, batch-dependent budget; it is no longer used
    (a warning says so) and stays only so that older code and checkpoints load."""

    max_steps: int = 600
    batch_size: int = 32
    block_size: int | None = None  # None: the model's block_size
    learning_rate: float = 1e-3
    min_learning_rate: float | None = None  # None: learning_rate / 10
    warmup_steps: int = 50
    weight_decay: float = 0.1
    decay_all: bool = False  # also decay norms, biases and embeddings
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 turns clipping off
    grad_accum_steps: int = 1
    eval_interval: int = 100
    eval_tokens: int = DEFAULT_TOKENS_SCORED  # validation targets scored (all of the split when shorter)
    eval_batches: int | None = None  # deprecated: ignored, see eval_tokens
    log_interval: int = 10
    checkpoint_interval: int | None = None  # None: every eval_interval
    keep_checkpoints: int = 2
    out_dir: str | None = None
    seed: int = 1337
    device: str = "auto"
    precision: str = "auto"  # "auto" (bf16 on CUDA, fp32 elsewhere), "bf16" or "fp32"
    compile: bool = False
    progress: bool = True

    def __post_init__(self):
        """Check every field: a ``ValueError``/``TypeError`` names the field; NaN and infinity are
        refused everywhere."""
        for name in ("max_steps", "batch_size", "warmup_steps", "grad_accum_steps", "eval_interval",
                     "eval_tokens", "log_interval", "keep_checkpoints"):
            require_int(name, getattr(self, name), minimum=0 if name == "warmup_steps" else 1)
        if self.checkpoint_interval is not None:
            require_int("checkpoint_interval", self.checkpoint_interval, minimum=1)
        if self.eval_batches is not None:
            require_int("eval_batches", self.eval_batches, minimum=1)
            warnings.warn(f"eval_batches={self.eval_batches} is no longer used: validation now scores a "
                          f"fixed number of tokens, eval_tokens (now {self.eval_tokens:,}), whatever the "
                          "batch size; pass eval_tokens instead", DeprecationWarning, stacklevel=3)
        if self.block_size is not None:
            try:
                require_int("block_size", self.block_size, minimum=2)
            except (TypeError, ValueError) as error:
                raise type(error)(f"{error} (or None for the model's): a window of 1 token has nothing "
                                  "to predict") from None
        require_int("seed", self.seed, minimum=0)
        require_finite("learning_rate", self.learning_rate)
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.min_learning_rate is None:
            self.min_learning_rate = self.learning_rate / 10
        require_finite("min_learning_rate", self.min_learning_rate)
        if not 0 <= self.min_learning_rate <= self.learning_rate:
            raise ValueError(f"min_learning_rate must be in [0, learning_rate], got {self.min_learning_rate}")
        require_finite("weight_decay", self.weight_decay, minimum=0)
        require_finite("grad_clip", self.grad_clip, minimum=0)
        for name in ("beta1", "beta2"):
            require_finite(name, getattr(self, name), minimum=0)
            if not getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")

    def to_dict(self) -> dict:
        """What a checkpoint records: every field but the retired ``eval_batches``."""
        values = asdict(self)
        del values["eval_batches"]
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingConfig":
        """A config from :meth:`to_dict`'s output; keys it does not know are skipped, and so is
        ``eval_batches``, which older checkpoints hold and nothing uses any more."""
        if not isinstance(values, dict):
            raise TypeError(f"a training config must be a dict, got {type(values).__name__}")
        known = {f.name for f in fields(cls)} - {"eval_batches"}
        return cls(**{k: v for k, v in values.items() if k in known})


TRAINING_DEFAULTS = {f.name: f.default for f in fields(TrainingConfig)}  # the CLI's defaults come from here


def has_cpp_compiler() -> bool:
    """Whether a C++ compiler is on the PATH (``$CXX``, ``g++``, ``c++`` or ``clang++``): on a CPU,
    ``torch.compile`` (Inductor) builds its kernels with one."""
    return any(shutil.which(name) for name in (os.environ.get("CXX"), "g++", "c++", "clang++") if name)


def compiled(forward, device_type: str):
    """``torch.compile(forward)``; on a CPU without a C++ compiler, ``forward`` itself and a warning
    that says why, rather than a failure deep inside Inductor at the first step. On a CPU it pays
    little (``benchmarks/compile_speed.py``: about 1.02x for the character preset on two cores): most
    of a step is matrix products and the attention kernel, which Inductor calls as they are."""
    if device_type == "cpu" and not has_cpp_compiler():
        warnings.warn("torch.compile on a CPU needs a C++ compiler (g++ or clang++; set CXX to choose one) "
                      "and none was found: training runs uncompiled", RuntimeWarning, stacklevel=3)
        return forward
    return torch.compile(forward)


class TrainingDiverged(RuntimeError):
    """The loss or the gradients stopped being finite numbers."""


# -- the pieces ------------------------------------------------------------------------------

def configure_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on the weight matrices of linear layers only.

    Norm weights, biases, embeddings (the token embedding is also the output layer) and the small
    ``H x H`` mixing matrices are not decayed -- decay would pull the mixes away from the identity
    and the embeddings towards zero -- unless ``config.decay_all``.
    """
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    matrix_ids = {id(m.weight) for m in model.modules()
                  if isinstance(m, nn.Linear) and id(m.weight) not in embedding_ids}
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if config.decay_all or id(param) in matrix_ids else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    fused = any(p.is_cuda for p in model.parameters())
    return torch.optim.AdamW(groups, lr=config.learning_rate, betas=(config.beta1, config.beta2),
                             fused=fused or None)


def learning_rate_at(step: int, config: TrainingConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``min_learning_rate`` at
    ``max_steps``."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    span = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    cosine = 0.5 * (1 + math.cos(math.pi * progress))
    return config.min_learning_rate + cosine * (config.learning_rate - config.min_learning_rate)


def estimate_loss(model: nn.Module, tokens: torch.Tensor, block_size: int, batch_size: int = 32,
                  tokens_scored: int | None = None, device=None, distributed: bool = False) -> float:
    """Mean next-token loss on the first ``tokens_scored`` targets of ``tokens`` (1-D ids; default
    32,768 or all of them, whichever is fewer) in non-overlapping windows of ``block_size``:
    :func:`~tfa_core.experiments.evaluation.evaluate_length` at the training length, the validation
    loss :class:`Trainer` reports. Deterministic, and the same for any ``batch_size``, so runs can be
    compared."""
    return evaluate_length(model, tokens, block_size, "non_overlapping", batch_size=batch_size,
                           tokens_scored=tokens_scored, device=device, distributed=distributed).loss


def train_model(model, dataloader, optimizer, device, num_epochs: int = 1, log_interval: int = 100,
                grad_clip: float = 1.0) -> list[float]:
    """The tutorial's training loop: ``num_epochs`` passes over ``dataloader`` (batches of
    ``{"input_ids", "labels"}``), clipping gradients at ``grad_clip``. Returns the mean loss of each
    epoch."""
    model.to(device).train()
    epoch_losses = []
    for epoch in range(num_epochs):
        total, bar = 0.0, tqdm(dataloader, desc=f"epoch {epoch + 1}/{num_epochs}")
        for i, batch in enumerate(bar):
            input_ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
            loss = model(input_ids=input_ids, labels=labels)["loss"]
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss is {loss.item()} at epoch {epoch + 1}, batch {i}; "
                                       "lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            total += loss.item()
            if i % log_interval == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        epoch_losses.append(total / max(1, len(dataloader)))
    return epoch_losses


# -- the trainer -----------------------------------------------------------------------------

class Trainer:
    """Train ``model`` on ``train_tokens``, validating on ``val_tokens`` (1-D ids).

    ``train_tokens`` is either one long 1-D tensor of token ids, from which the trainer draws random
    windows of ``block_size`` (seeded, and resumed exactly), or your own batches: any iterable of
    ``(B, T)`` integer tensors (each window is its own labels: the model shifts them) or of dicts with
    ``"input_ids"`` and ``"labels"`` (``-100`` labels are ignored), such as a ``DataLoader`` over
    ``TokenWindowDataset``. The trainer takes one batch per micro-step and starts the iterable again
    when it runs out (a generator, which cannot start again, is an error then); ``batch_size`` and
    ``block_size`` are then yours, and under DDP each process iterates its own ``train_tokens``, so
    give each process its shard (``DistributedSampler``). A resumed run restores the weights, the
    optimizer and the schedule, but the iterable starts again from its beginning: the batch order
    differs from an uninterrupted run's (a warning says so).

    ``callbacks`` are called with each history record (a dict with ``kind`` ``"train"`` or
    ``"eval"``), for instance to redraw a loss plot in a notebook or to write a ``CSVLogger`` file.
    Under DDP they run on rank 0 only, and a record's ``loss`` is the mean over every process. A
    callback with an ``on_start(step)`` method has it called once, as the Trainer is made, with the step
    training starts from (0, or the step it resumes from): so a ``CSVLogger`` knows whether to continue
    its file (a resumed run) or refuse one that holds rows (a fresh run).

    ``resume=True`` continues the run in ``config.out_dir`` exactly where its newest intact checkpoint
    stopped (``resume`` may also be a :class:`Checkpoint` already loaded, or its path). A folder that
    holds a run but no intact checkpoint is refused, never started over; an empty one starts fresh.
    Old checkpoints are pruned only among those this trainer wrote: the one a resume started from,
    and anything else already in the folder, stays.
    """

    def __init__(self, model, train_tokens: torch.Tensor, val_tokens: torch.Tensor | None = None,
                 config: TrainingConfig | None = None, *, tokenizer=None,
                 callbacks: list[Callable[[dict], None]] = (), extra: dict | None = None,
                 resume=False, dist_info: DistributedInfo | None = None):
        self.config = config or TrainingConfig()
        self.dist = dist_info or DistributedInfo(device=pick_device(self.config.device))
        self.model = model
        self.tokenizer = tokenizer
        self.callbacks = list(callbacks)
        self.extra = extra or {}
        self.block_size = self.config.block_size or model.config.block_size
        if self.block_size < 2:
            raise ValueError(f"block_size is {self.block_size}: a window of 1 token has nothing to predict; "
                             "train with block_size >= 2")
        if self.block_size > model.max_sequence_length:
            raise ValueError(f"block_size {self.block_size} is longer than the model accepts "
                             f"({model.max_sequence_length})")
        if isinstance(train_tokens, np.ndarray) or (isinstance(train_tokens, (list, tuple)) and train_tokens
                                                     and isinstance(train_tokens[0], int)):
            train_tokens = torch.as_tensor(train_tokens)  # token ids as a list or an array: one stream
        self.train_batches = None if isinstance(train_tokens, torch.Tensor) else train_tokens
        self._batches = None  # the iterator over train_batches, started at the first batch
        if self.train_batches is not None and not hasattr(train_tokens, "__iter__"):
            raise TypeError(f"train_tokens must be a 1-D tensor of token ids or an iterable of batches "
                            f"(a DataLoader), got {type(train_tokens).__name__}")
        if self.train_batches is None and train_tokens.dim() != 1:
            raise ValueError(f"train_tokens must be 1-D (one stream of token ids), got shape "
                             f"{tuple(train_tokens.shape)}; for batches of your own pass an iterable of "
                             "them (a list or a DataLoader)")
        streams = [("val_tokens", val_tokens, self.block_size + 1)]
        if self.train_batches is None:  # batches of your own are sized by you
            streams.insert(0, ("train_tokens", train_tokens, self.block_size))
        for name, part, need in streams:
            if part is not None and len(part) < need:
                raise ValueError(f"{name} holds {len(part)} tokens, fewer than one window of {need}; "
                                 "use more text, a smaller block_size or (for validation) a larger share "
                                 "of it")
        self.train_tokens = train_tokens
        self.val_tokens = val_tokens
        # validation's budget: eval_tokens targets, or all the split has
        self.eval_tokens = 0 if val_tokens is None else evaluation_budget(self.config.eval_tokens,
                                                                          len(val_tokens))
        if val_tokens is not None and self.eval_tokens < self.block_size:
            raise ValueError(f"eval_tokens is {self.config.eval_tokens}, fewer than one window of block_size "
                             f"{self.block_size}; set eval_tokens >= {self.block_size}")
        self.out_dir = Path(self.config.out_dir) if self.config.out_dir else None
        self.history: list[dict] = []
        self.step = 0
        self.step_tokens = 0  # tokens the last optimizer step trained on, every process's together
        self.last_checkpoint: Path | None = None
        self.notes: list[str] = []  # what a resume passed over or repaired, one line each
        self._written: list[str] = []  # the checkpoints this trainer wrote: the only ones it may prune
        if self.out_dir is not None and self.dist.is_main:
            clean_leftovers(self.out_dir)

        torch.manual_seed(self.config.seed)
        self.data_generator = torch.Generator().manual_seed(self.config.seed)
        device = self.dist.device
        if device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.model.to(device)
        self.optimizer = configure_optimizer(self.model, self.config)
        if resume is not False:
            self._resume(resume)
        if self.dist.is_main:  # where this run starts, for callbacks that keep a file of their own
            for callback in self.callbacks:
                if hasattr(callback, "on_start"):
                    callback.on_start(self.step)
        self.forward = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.forward = DistributedDataParallel(
                self.model, device_ids=[self.dist.local_rank] if device.startswith("cuda") else None)
        if self.config.compile:
            self.forward = compiled(self.forward, self.device_type)

    # -- state -----------------------------------------------------------------------------
    @property
    def device_type(self) -> str:
        return self.dist.device.split(":")[0]

    @property
    def uses_bf16(self) -> bool:
        if self.config.precision == "auto":
            return self.device_type == "cuda" and torch.cuda.is_bf16_supported()
        return self.config.precision == "bf16"

    def _resume(self, resume) -> None:
        if isinstance(resume, Checkpoint):
            checkpoint = resume
        elif resume is True:
            if self.out_dir is None:
                raise ValueError("resume=True needs config.out_dir, the run folder to resume")
            checkpoint, self.notes = find_resumable(self.out_dir)
            if checkpoint is None:
                if holds_run(self.out_dir):
                    raise CheckpointError(f"{self.out_dir} holds a run but no intact checkpoint to resume"
                                          + (f" ({self.notes[-1]})" if self.notes else ""))
                return  # an empty folder: start fresh
        else:
            checkpoint = load_checkpoint(resume)
        differences = [f"{name}: checkpoint has {getattr(checkpoint.config, name)!r}, the model has "
                       f"{getattr(self.model.config, name)!r}"
                       for name in ("model_type", "n_layer", "n_head", "n_embd", "vocab_size", "bias",
                                    "use_v", "use_proj", "block_size", "max_position_embeddings",
                                    "alibi_max_bias")
                       if getattr(checkpoint.config, name) != getattr(self.model.config, name)]
        if differences:
            raise CheckpointError(f"checkpoint {checkpoint.path} does not fit this model: "
                                  + "; ".join(differences))
        if (self.tokenizer is not None and checkpoint.tokenizer is not None
                and self.tokenizer != checkpoint.tokenizer):
            raise CheckpointError(f"checkpoint {checkpoint.path} was trained with another tokenizer")
        if checkpoint.model is not self.model:
            self.model.load_state_dict(checkpoint.model.state_dict())
        if checkpoint.optimizer_state is not None:
            self._load_optimizer(checkpoint)
        restore_rng(checkpoint.rng_state, self.data_generator)
        self.step = checkpoint.step
        if self.train_batches is not None:
            self.notes.append("the training batches are an iterable of your own: it starts again from its "
                              "beginning, so this run's batch order differs from an uninterrupted one's")
            warnings.warn(self.notes[-1], UserWarning, stacklevel=3)
        self.last_checkpoint = checkpoint.path
        if self.dist.is_main:
            self._set_aside_newer(checkpoint)
        records, problems = read_history(self._history_path())
        self.history = [r for r in records if r["step"] <= self.step]
        if self.dist.is_main and problems:  # keep the file as it was before dropping anything from it
            damaged = self._history_path().with_name("history.jsonl.damaged")
            shutil.copyfile(self._history_path(), damaged)
            self.notes += problems + [f"the history as it was is kept in {damaged}"]
        self._rewrite_history()

    def _load_optimizer(self, checkpoint: Checkpoint) -> None:
        where = f"{checkpoint.path / 'optimizer.safetensors'} (with state.json)"
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        saved = checkpoint.optimizer_state
        try:
            for index, slots in saved["state"].items():
                for name, value in slots.items():
                    if (isinstance(value, torch.Tensor) and value.dim() > 0
                            and value.shape != params[index].shape):
                        raise ValueError(f"{name} of parameter {index} has shape {list(value.shape)}, "
                                         f"the parameter {list(params[index].shape)}")
            self.optimizer.load_state_dict(saved)
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise CheckpointError(f"{where} does not fit this model's optimizer: {error}") from None

    def _set_aside_newer(self, checkpoint: Checkpoint) -> None:
        """Checkpoints newer than the one resumed from (passed over as damaged, or skipped on purpose)
        would be overwritten as training reaches their steps: rename them out of the way
        (``step-<n>.set-aside``) instead, so nothing is deleted that this trainer did not write."""
        for path in list_checkpoints(self.out_dir):
            if int(path.name.split("-")[1]) > checkpoint.step:
                aside, n = path.with_name(path.name + ".set-aside"), 1
                while aside.exists():
                    aside, n = path.with_name(f"{path.name}.set-aside-{n}"), n + 1
                os.replace(path, aside)
                self.notes.append(f"{path.name} is newer than the checkpoint resumed from; moved aside to "
                                  f"{aside.name} (delete it when you no longer need it)")

    def _history_path(self) -> Path | None:
        return self.out_dir / "history.jsonl" if self.out_dir else None

    def _rewrite_history(self) -> None:
        path = self._history_path()
        if path is not None and self.dist.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_history(path, self.history)

    def _record(self, record: dict) -> None:
        self.history.append(record)
        path = self._history_path()
        if path is not None and self.dist.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
        if self.dist.is_main:  # one process logs: the others' records say the same
            for callback in self.callbacks:
                callback(record)

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (main process only)."""
        if self.out_dir is None or not self.dist.is_main:
            return None
        bad = next((name for name, p in self.model.named_parameters() if not torch.isfinite(p).all()), None)
        if bad is not None:
            raise TrainingDiverged(f"training stopped at step {self.step}: the weight {bad} holds NaN or "
                                   f"infinity, so no checkpoint was written; {self._where()}. Lower the "
                                   "learning rate or check --weight-decay and --grad-clip, then resume.")
        self.last_checkpoint = save_checkpoint(
            self.out_dir, self.model, self.step, optimizer=self.optimizer, tokenizer=self.tokenizer,
            data_generator=self.data_generator, keep=self.config.keep_checkpoints,
            extra={"training": self.config.to_dict(), **self.extra}, prunable=self._written)
        self._written.append(self.last_checkpoint.name)
        return self.last_checkpoint

    def _where(self) -> str:
        if self.last_checkpoint is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint is {self.last_checkpoint} (step {self._checkpoint_step()})"

    # -- one step ----------------------------------------------------------------------------
    def next_batch(self) -> torch.Tensor | dict:
        """This process's share of the next global batch. Every process draws the same global
        batch from the same generator and keeps its own slice, so N processes see exactly the
        windows one process with N times the batch would. With batches of your own: the next one,
        as given (a ``(B, T)`` tensor or a dict with ``input_ids`` and ``labels``)."""
        if self.train_batches is not None:
            return self._next_given_batch()
        rows = self.config.batch_size
        batch = random_batch(self.train_tokens, self.block_size, rows * self.dist.world_size,
                             generator=self.data_generator)["input_ids"]
        mine = batch[self.dist.rank * rows:(self.dist.rank + 1) * rows]
        return mine.to(self.dist.device, non_blocking=True)

    def _next_given_batch(self):
        """The next batch of the iterable, starting it again when it runs out."""
        if self._batches is None:
            self._batches = iter(self.train_batches)
        try:
            return next(self._batches)
        except StopIteration:
            if isinstance(self.train_batches, Iterator):  # a generator: its batches are spent
                raise ValueError("train_tokens ran out of batches: a generator or iterator cannot start "
                                 "again; pass a list or a DataLoader, which can") from None
            self._batches = iter(self.train_batches)
        try:
            return next(self._batches)
        except StopIteration:
            raise ValueError("train_tokens yields no batches: it is empty") from None

    def _ids_and_labels(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, labels)`` of a batch on this process's device; a tensor is its own labels."""
        if isinstance(batch, dict) and "input_ids" in batch:
            input_ids, labels = batch["input_ids"], batch.get("labels", batch["input_ids"])
        elif isinstance(batch, torch.Tensor):
            input_ids = labels = batch
        else:
            raise TypeError(f"a training batch must be a (B, T) tensor of token ids or a dict with "
                            f"'input_ids' (and 'labels'), got {type(batch).__name__}")
        device = self.dist.device
        return input_ids.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    def _mean_over_processes(self, value: float) -> float:
        """``value`` averaged over every process (itself when there is one)."""
        if not self.dist.enabled:
            return value
        total = torch.tensor([value], dtype=torch.float64, device=self.dist.device)
        torch.distributed.all_reduce(total)
        return total.item() / self.dist.world_size

    def train_step(self) -> tuple[float, float]:
        """One optimizer step (with gradient accumulation). Returns (loss, gradient norm)."""
        lr = learning_rate_at(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        accum = self.config.grad_accum_steps
        total, self.step_tokens = 0.0, 0
        for micro in range(accum):
            input_ids, labels = self._ids_and_labels(self.next_batch())
            last = micro == accum - 1
            # DDP averages gradients across processes only on the last micro-step
            no_sync = self.forward.no_sync() if self.dist.enabled and not last else contextlib.nullcontext()
            with no_sync:
                with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.uses_bf16):
                    loss = self.forward(input_ids, labels=labels)["loss"] / accum
                loss.backward()
            total += loss.item()
            self.step_tokens += input_ids.numel() * self.dist.world_size  # every process's batch alike
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if not (math.isfinite(total) and torch.isfinite(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingDiverged(
                f"training stopped at step {self.step}: the loss is {total} and the gradient norm "
                f"{norm.item()}, not finite numbers; {self._where()}. Lower the learning rate (now {lr:.3g}) "
                "or lengthen the warmup, then resume.")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total, norm.item()

    def _checkpoint_step(self) -> int | None:
        return int(self.last_checkpoint.name.split("-")[1]) if self.last_checkpoint else None

    def evaluate(self) -> float | None:
        """Validation loss: the mean loss on the first ``eval_tokens`` targets of the validation split
        in non-overlapping windows of ``block_size`` (:func:`estimate_loss`). Under DDP each process
        scores a share of the windows and the sums are added up, so the number does not depend on the
        number of processes, nor on the batch size."""
        if self.val_tokens is None:
            return None
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.uses_bf16):
            return estimate_loss(self.model, self.val_tokens, self.block_size, self.config.batch_size,
                                 self.eval_tokens, device=self.dist.device, distributed=self.dist.enabled)

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, until_step: int | None = None) -> list[dict]:
        """Train to ``max_steps`` (or stop early at ``until_step``, writing a checkpoint there).
        Returns the history records."""
        cfg = self.config
        end = min(cfg.max_steps, until_step) if until_step is not None else cfg.max_steps
        checkpoint_every = cfg.checkpoint_interval or cfg.eval_interval
        self.model.train()
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="training", unit="step",
                   disable=not (cfg.progress and self.dist.is_main), dynamic_ncols=True)
        started, window_time, window_tokens = time.perf_counter(), 0.0, 0
        while self.step < end:
            step_start = time.perf_counter()
            loss, norm = self.train_step()
            window_time += time.perf_counter() - step_start  # training time only, not evaluation
            window_tokens += self.step_tokens
            bar.update(1)
            if self.step % cfg.log_interval == 0 or self.step == end:
                loss = self._mean_over_processes(loss)  # each process saw only its share of the batch
                self._record({"kind": "train", "step": self.step, "loss": loss, "grad_norm": norm,
                              "lr": learning_rate_at(self.step - 1, cfg),
                              "tokens_per_s": window_tokens / window_time,
                              "elapsed_s": time.perf_counter() - started})
                bar.set_postfix(loss=f"{loss:.4f}")
                window_time, window_tokens = 0.0, 0
            if self.step % cfg.eval_interval == 0 or self.step == cfg.max_steps:
                val_loss = self.evaluate()
                if val_loss is not None and not math.isfinite(val_loss):
                    raise TrainingDiverged(f"training stopped at step {self.step}: the validation loss is "
                                           f"{val_loss}, not a finite number; {self._where()}. Lower the "
                                           "learning rate, then resume.")
                if val_loss is not None:
                    self._record({"kind": "eval", "step": self.step, "val_loss": val_loss,
                                  "elapsed_s": time.perf_counter() - started})
                    bar.set_postfix(loss=f"{loss:.4f}", val=f"{val_loss:.4f}")
            if self.step % checkpoint_every == 0 or self.step == end:
                self.save()
        bar.close()
        return self.history
