"""Callbacks that keep the training history somewhere else too: a CSV file, or TensorBoard.

A ``Trainer`` callback is any callable that takes one history record, a dict with ``kind``
(``"train"`` or ``"eval"``), ``step`` and the numbers of that step (``loss``, ``grad_norm``, ``lr``,
``tokens_per_s``, ``elapsed_s``; ``val_loss`` for ``"eval"``). Under DDP the trainer calls its
callbacks on rank 0 only, with the training loss averaged over every process. A callback may also have
an ``on_start(step)`` method: the Trainer calls it once, when it is made, with the step training starts
from (0, or the step of the checkpoint it resumed)::

    trainer = Trainer(model, train, val, config, callbacks=[CSVLogger("runs/char/log.csv")])
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

__all__ = ["CSVLogger", "TensorBoardLogger"]


class CSVLogger:
    """Write every record as one row of a CSV file: ``kind, step, loss, val_loss, lr, grad_norm,
    tokens_per_s, elapsed_s`` (a record's missing numbers are empty cells, others are left out).

    A resumed run continues its file: rows after the step it resumed from are dropped (a crash after
    the last checkpoint left them, and the resumed run logs those steps again), the file rewritten
    atomically. A fresh run refuses a file that already holds rows, and any run a file of other
    columns: neither is ever overwritten. The Trainer says which run it is (:meth:`on_start`); records
    sent without a Trainer are a fresh run's.
    """

    COLUMNS = ("kind", "step", "loss", "val_loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s")

    def __init__(self, path, columns=COLUMNS):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path must be a str or a Path, got {type(path).__name__}")
        self.path = Path(path)
        self.columns = list(columns)
        if "step" not in self.columns:
            raise ValueError(f"columns must include 'step' (a resumed run trims the file by it), "
                             f"got {columns}")
        if self.path.is_dir():
            raise ValueError(f"{self.path} is a folder; give CSVLogger a file path such as run/log.csv")
        self._started = False

    def on_start(self, step: int) -> None:
        """The Trainer says where its run starts: 0 for a fresh run, the checkpoint's step for a resumed
        one. Opens the file now, so that a mistake shows before any training."""
        self._continue_file(step)
        self._started = True

    def __call__(self, record: dict) -> None:
        if not self._started:
            self._continue_file(0)
            self._started = True
        with open(self.path, "a", newline="") as handle:
            csv.writer(handle).writerow(["" if record.get(name) is None else record[name]
                                         for name in self.columns])

    def _continue_file(self, start_step: int) -> None:
        """Write the header to a new file; in an existing one keep the rows up to ``start_step`` when the
        run resumed from it (``start_step > 0``)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            with open(self.path, "w", newline="") as handle:
                csv.writer(handle).writerow(self.columns)
            return
        with open(self.path, newline="") as handle:
            rows = list(csv.reader(handle))
        if rows[0] != self.columns:
            raise ValueError(f"{self.path} holds other columns ({rows[0]}) than this logger writes "
                             f"({self.columns}); give another path, or move the file away")
        if start_step == 0 and len(rows) > 1:
            raise ValueError(f"{self.path} already holds the log of another run, and this run starts "
                             "afresh (only a resumed run continues a log): give CSVLogger another path, "
                             "or delete the file")
        step = self.columns.index("step")
        kept = [row for row in rows[1:] if len(row) == len(self.columns) and row[step].isdigit()
                and int(row[step]) <= start_step]
        if len(kept) < len(rows) - 1:
            partial = self.path.with_name(self.path.name + ".partial")
            with open(partial, "w", newline="") as handle:
                csv.writer(handle).writerows([self.columns, *kept])
            os.replace(partial, self.path)


class TensorBoardLogger:
    """Write every number of every record as a TensorBoard scalar, ``<kind>/<name>`` at its step
    (``train/loss``, ``eval/val_loss``, ``train/lr``, ...). Needs the ``tensorboard`` package, which
    tfa_core does not install: ``pip install tensorboard``. ``close()`` flushes and closes the file."""

    def __init__(self, log_dir):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises it when the tensorboard package is missing
            raise ImportError("TensorBoardLogger needs the tensorboard package, which tfa_core does not "
                              "install: pip install tensorboard (or pip install 'tfa_core[tensorboard]')"
                              ) from None
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def __call__(self, record: dict) -> None:
        for name, value in record.items():
            if name not in ("kind", "step") and isinstance(value, (int, float)) and math.isfinite(value):
                self.writer.add_scalar(f"{record['kind']}/{name}", value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
