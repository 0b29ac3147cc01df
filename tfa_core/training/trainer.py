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
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from tqdm.auto import tqdm

from tfa_core.training.checkpoint import latest_checkpoint, load_checkpoint, restore_rng, save_checkpoint
from tfa_core.data.corpus import random_batch
from tfa_core.training.distributed import DistributedInfo, pick_device
from tfa_core.experiments.evaluation import evaluate_length

__all__ = [
    "TrainingConfig",
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
    ``batch_size x grad_accum_steps x processes`` windows of ``block_size`` tokens."""

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
    eval_batches: int = 20
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
        for name in ("max_steps", "batch_size", "warmup_steps", "grad_accum_steps", "eval_interval",
                     "eval_batches", "log_interval", "keep_checkpoints"):
            value = getattr(self, name)
            minimum = 0 if name == "warmup_steps" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if self.block_size is not None and (not isinstance(self.block_size, int) or self.block_size < 2):
            raise ValueError(f"block_size must be an int >= 2 (or None for the model's), got {self.block_size!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if self.min_learning_rate is None:
            self.min_learning_rate = self.learning_rate / 10
        if not 0 <= self.min_learning_rate <= self.learning_rate:
            raise ValueError(f"min_learning_rate must be in [0, learning_rate], got {self.min_learning_rate}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("weight_decay and grad_clip must be >= 0")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {self.precision!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainingConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


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
                  max_batches: int | None = None, device=None) -> float:
    """Mean next-token loss over non-overlapping windows of ``block_size`` from the start of
    ``tokens`` (1-D ids): :func:`~tfa_core.experiments.evaluation.evaluate_length` at the training length.
    Deterministic, so runs can be compared; ``max_batches`` caps the work."""
    max_tokens = max_batches * batch_size * block_size + 1 if max_batches is not None else None
    return evaluate_length(model, tokens, block_size, "non_overlapping", batch_size=batch_size,
                           max_tokens=max_tokens, device=device).loss


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
    """Train ``model`` on random windows of ``train_tokens`` (1-D ids), validating on
    ``val_tokens``.

    ``callbacks`` are called with each history record (a dict with ``kind`` ``"train"`` or
    ``"eval"``), for instance to redraw a loss plot in a notebook. With ``resume=True`` and a run
    folder that has a checkpoint, training continues from it exactly where it stopped.
    """

    def __init__(self, model, train_tokens: torch.Tensor, val_tokens: torch.Tensor | None = None,
                 config: TrainingConfig | None = None, *, tokenizer=None,
                 callbacks: list[Callable[[dict], None]] = (), extra: dict | None = None,
                 resume: bool = False, dist_info: DistributedInfo | None = None):
        self.config = config or TrainingConfig()
        self.dist = dist_info or DistributedInfo(device=pick_device(self.config.device))
        self.model = model
        self.tokenizer = tokenizer
        self.callbacks = list(callbacks)
        self.extra = extra or {}
        self.block_size = self.config.block_size or model.config.block_size
        if self.block_size > model.max_sequence_length:
            raise ValueError(f"block_size {self.block_size} is longer than the model accepts "
                             f"({model.max_sequence_length})")
        self.train_tokens = train_tokens
        self.val_tokens = val_tokens
        self.out_dir = Path(self.config.out_dir) if self.config.out_dir else None
        self.history: list[dict] = []
        self.step = 0
        self.last_checkpoint: Path | None = None

        torch.manual_seed(self.config.seed)
        self.data_generator = torch.Generator().manual_seed(self.config.seed)
        device = self.dist.device
        if device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.model.to(device)
        self.optimizer = configure_optimizer(self.model, self.config)
        if resume:
            self._resume()
        self.forward = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.forward = DistributedDataParallel(
                self.model, device_ids=[self.dist.local_rank] if device.startswith("cuda") else None)
        if self.config.compile:
            self.forward = torch.compile(self.forward)

    # -- state -----------------------------------------------------------------------------
    @property
    def device_type(self) -> str:
        return self.dist.device.split(":")[0]

    @property
    def uses_bf16(self) -> bool:
        if self.config.precision == "auto":
            return self.device_type == "cuda" and torch.cuda.is_bf16_supported()
        return self.config.precision == "bf16"

    def _resume(self) -> None:
        path = latest_checkpoint(self.out_dir) if self.out_dir else None
        if path is None:
            return  # nothing to resume: start fresh
        checkpoint = load_checkpoint(path, config=self.model.config, tokenizer=self.tokenizer)
        self.model.load_state_dict(checkpoint.model.state_dict())
        if checkpoint.optimizer_state is not None:
            self.optimizer.load_state_dict(checkpoint.optimizer_state)
        restore_rng(checkpoint.rng_state, self.data_generator)
        self.step = checkpoint.step
        self.last_checkpoint = path
        self.history = [r for r in self._read_history() if r["step"] <= self.step]
        self._rewrite_history()

    def _history_path(self) -> Path | None:
        return self.out_dir / "history.jsonl" if self.out_dir else None

    def _read_history(self) -> list[dict]:
        path = self._history_path()
        if path is None or not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def _rewrite_history(self) -> None:
        path = self._history_path()
        if path is not None and self.dist.is_main:
            path.write_text("".join(json.dumps(r) + "\n" for r in self.history))

    def _record(self, record: dict) -> None:
        self.history.append(record)
        path = self._history_path()
        if path is not None and self.dist.is_main:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
        for callback in self.callbacks:
            callback(record)

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (main process only)."""
        if self.out_dir is None or not self.dist.is_main:
            return None
        self.last_checkpoint = save_checkpoint(
            self.out_dir, self.model, self.step, optimizer=self.optimizer, tokenizer=self.tokenizer,
            data_generator=self.data_generator, keep=self.config.keep_checkpoints,
            extra={"training": asdict(self.config), **self.extra})
        return self.last_checkpoint

    # -- one step ----------------------------------------------------------------------------
    def next_batch(self) -> torch.Tensor:
        """This process's share of the next global batch. Every process draws the same global
        batch from the same generator and keeps its own slice, so N processes see exactly the
        windows one process with N times the batch would."""
        rows = self.config.batch_size
        batch = random_batch(self.train_tokens, self.block_size, rows * self.dist.world_size,
                             generator=self.data_generator)["input_ids"]
        mine = batch[self.dist.rank * rows:(self.dist.rank + 1) * rows]
        return mine.to(self.dist.device, non_blocking=True)

    def train_step(self) -> tuple[float, float]:
        """One optimizer step (with gradient accumulation). Returns (loss, gradient norm)."""
        lr = learning_rate_at(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        accum = self.config.grad_accum_steps
        total = 0.0
        for micro in range(accum):
            input_ids = self.next_batch()
            last = micro == accum - 1
            # DDP averages gradients across processes only on the last micro-step
            no_sync = self.forward.no_sync() if self.dist.enabled and not last else contextlib.nullcontext()
            with no_sync:
                with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.uses_bf16):
                    loss = self.forward(input_ids, labels=input_ids)["loss"] / accum
                loss.backward()
            total += loss.item()
        max_norm = self.config.grad_clip if self.config.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        if not (math.isfinite(total) and torch.isfinite(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            where = (f"the last good checkpoint is {self.last_checkpoint} (step {self._checkpoint_step()})"
                     if self.last_checkpoint else "no checkpoint was written yet")
            raise TrainingDiverged(
                f"training stopped at step {self.step}: the loss is {total} and the gradient norm "
                f"{norm.item()}, not finite numbers; {where}. Lower the learning rate (now {lr:.3g}) "
                "or lengthen the warmup, then resume.")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total, norm.item()

    def _checkpoint_step(self) -> int | None:
        return int(self.last_checkpoint.name.split("-")[1]) if self.last_checkpoint else None

    def evaluate(self) -> float | None:
        """Validation loss on up to ``eval_batches`` batches of the validation tokens."""
        if self.val_tokens is None:
            return None
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.uses_bf16):
            return estimate_loss(self.model, self.val_tokens, self.block_size, self.config.batch_size,
                                 self.config.eval_batches, device=self.dist.device)

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, until_step: int | None = None) -> list[dict]:
        """Train to ``max_steps`` (or stop early at ``until_step``, writing a checkpoint there).
        Returns the history records."""
        cfg = self.config
        end = min(cfg.max_steps, until_step) if until_step is not None else cfg.max_steps
        checkpoint_every = cfg.checkpoint_interval or cfg.eval_interval
        tokens_per_step = cfg.batch_size * self.block_size * cfg.grad_accum_steps * self.dist.world_size
        self.model.train()
        bar = tqdm(total=cfg.max_steps, initial=self.step, desc="training", unit="step",
                   disable=not (cfg.progress and self.dist.is_main), dynamic_ncols=True)
        started, window_time, window_steps = time.perf_counter(), 0.0, 0
        while self.step < end:
            step_start = time.perf_counter()
            loss, norm = self.train_step()
            window_time += time.perf_counter() - step_start  # training time only, not evaluation
            window_steps += 1
            bar.update(1)
            if self.step % cfg.log_interval == 0 or self.step == end:
                self._record({"kind": "train", "step": self.step, "loss": loss, "grad_norm": norm,
                              "lr": learning_rate_at(self.step - 1, cfg),
                              "tokens_per_s": tokens_per_step * window_steps / window_time,
                              "elapsed_s": time.perf_counter() - started})
                bar.set_postfix(loss=f"{loss:.4f}")
                window_time, window_steps = 0.0, 0
            if self.step % cfg.eval_interval == 0 or self.step == cfg.max_steps:
                val_loss = self.evaluate()
                if val_loss is not None:
                    self._record({"kind": "eval", "step": self.step, "val_loss": val_loss,
                                  "elapsed_s": time.perf_counter() - started})
                    bar.set_postfix(loss=f"{loss:.4f}", val=f"{val_loss:.4f}")
            if self.step % checkpoint_every == 0 or self.step == end:
                self.save()
        bar.close()
        return self.history
