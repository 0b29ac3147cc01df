"""Training on several processes with PyTorch DistributedDataParallel.

``torchrun --nproc_per_node=N -m tfa_core.cli train ...`` starts N copies of the same program and
sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` for each. Every copy holds the whole model, works on
its own slice of each batch, and DDP averages the gradients, so N processes with batch ``B`` take the
same step as one process with batch ``N x B``. NCCL talks between GPUs; gloo between CPU processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistributedInfo", "setup_distributed", "cleanup_distributed", "pick_device"]


@dataclass(frozen=True)
class DistributedInfo:
    """Where this process stands: ``rank`` among ``world_size`` processes, and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and draws progress bars."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def pick_device(device: str = "auto") -> str:
    """``"auto"``: the device ``TFA_DEVICE`` names, else CUDA when present, else CPU (Apple's MPS only
    when named: see ``tfa_core.teaching.environment``); otherwise the device named, which must be
    ``cpu``, ``cuda``, ``cuda:<index>`` or ``mps`` and present on this machine (a ``ValueError`` says
    which are)."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a str such as 'cpu' or 'cuda', got {device!r}")
    if device == "auto":
        from tfa_core.teaching.environment import device_override

        device = device_override() or "auto"
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    present = ["cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
                         if torch.cuda.is_available() else []) + (["mps"] if _mps_available() else [])
    if device not in present:
        known = device == "mps" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())
        why = "is not available on this machine" if known else "is not a device name"
        raise ValueError(f"device {device!r} {why}; use one of {['auto'] + present}")
    return device


def setup_distributed(device: str = "auto") -> DistributedInfo:
    """Join the process group when started by ``torchrun``; a single process otherwise."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return DistributedInfo(device=pick_device(device))
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = pick_device(device)
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    """Leave the process group (if this process joined one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
