"""What the course notebooks share: quick mode, the device, and the versions they ran with.

Quick mode shrinks step counts and sizes so that every notebook runs in seconds on two CPU cores;
it is how the test suite and CI run the notebooks. Learners leave it off and get the real lesson::

    TFA_QUICK=1 jupyter lab course/      # quick mode on
    jupyter lab course/                  # the real lesson

CI sets ``CI=true``; there quick mode is on unless ``TFA_QUICK`` says otherwise, so a notebook run
by CI can never fall back to the full-size lesson by accident.

The device. Every notebook asks ``pick_device("auto")``: CUDA when there is a GPU, else the CPU.
``TFA_DEVICE`` forces one for every notebook (and ``tfa`` commands left at ``--device auto``)::

    TFA_DEVICE=cpu jupyter lab course/       # the CPU even on a GPU machine
    TFA_DEVICE=cuda:1 jupyter lab course/    # the second GPU (or CUDA_VISIBLE_DEVICES=1)
    TFA_DEVICE=mps jupyter lab course/       # Apple's GPU: opt in, see below

Apple's MPS is never chosen by itself: nothing in the course has been run on it (its kernels miss some
operations and it has no float64), so a Mac computes on the CPU, which runs every notebook, unless
``TFA_DEVICE=mps`` asks for it (then ``PYTORCH_ENABLE_MPS_FALLBACK=1`` lets missing operations fall
back to the CPU).
"""

from __future__ import annotations

import os
import platform
import re
import sys

__all__ = ["QUICK_ENV", "DEVICE_ENV", "quick_mode", "device_override", "environment_report"]

QUICK_ENV = "TFA_QUICK"
"""The environment variable that turns quick mode on (``1``, ``true``, ``yes``, ``on``) or off
(``0``, ``false``, ``no``, ``off``, empty)."""

_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off", "")


def quick_mode() -> bool:
    """True when the notebooks should shrink their work to run in seconds.

    ``TFA_QUICK`` decides when it is set; otherwise quick mode is on exactly when ``CI`` is
    ``"true"`` (what CI services, and ``.ci/run``, set).
    """
    value = os.environ.get(QUICK_ENV)
    if value is None:
        return os.environ.get("CI", "").strip().lower() == "true"
    value = value.strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    raise ValueError(
        f"{QUICK_ENV}={os.environ[QUICK_ENV]!r} is not understood; set it to 1 (quick mode on) "
        f"or 0 (off), or leave it unset"
    )


DEVICE_ENV = "TFA_DEVICE"
"""The environment variable that forces the device of every notebook: ``cpu``, ``cuda``, ``cuda:N``
or ``mps``; ``auto`` or unset lets ``pick_device`` choose (CUDA, else CPU)."""


def device_override() -> str | None:
    """The device ``TFA_DEVICE`` asks for, checked against what this machine has; ``None`` when it is
    unset or ``auto``. Raises ``ValueError`` naming the variable and the fix."""
    raw = os.environ.get(DEVICE_ENV, "")
    value = raw.strip().lower()
    if value in ("", "auto"):
        return None
    if not (value in ("cpu", "mps") or re.fullmatch(r"cuda(:\d+)?", value)):
        raise ValueError(f"{DEVICE_ENV}={raw!r} is not understood; set it to cpu, cuda, cuda:N, mps or auto")
    import torch

    if value.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"{DEVICE_ENV}={raw!r} asks for CUDA, but this torch sees no GPU; "
                             f"set {DEVICE_ENV}=cpu or unset it")
        index = int(value.split(":")[1]) if ":" in value else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"{DEVICE_ENV}={raw!r}: this process sees {torch.cuda.device_count()} GPU(s) "
                             "(CUDA_VISIBLE_DEVICES renumbers them from 0)")
    if value == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ValueError(f"{DEVICE_ENV}=mps asks for Apple's GPU, which this machine or torch does not "
                             f"offer; set {DEVICE_ENV}=cpu or unset it")
    return value


def environment_report(device: str | None = None) -> str:
    """The lines a notebook prints at the top: Python, torch and tfa_core versions, the machine,
    the device the notebook computes on (``TFA_DEVICE`` when set, else CUDA, else CPU) and whether
    quick mode is on."""
    import torch

    from tfa_core import __version__
    from tfa_core.training.distributed import pick_device

    device = pick_device("auto") if device is None else device
    if device.startswith("cuda"):
        where = f"{device} ({torch.cuda.get_device_name(0)})"
    elif device == "mps":
        where = "mps (Apple GPU, not tested by this course)"
    else:
        where = f"cpu ({os.cpu_count()} cores)"
    if device_override() is not None:
        where += f", forced by {DEVICE_ENV}"
    quick = f"on ({QUICK_ENV}=1): small sizes, few steps" if quick_mode() else "off: the full lesson"
    lines = [
        f"python    {sys.version.split()[0]}",
        f"torch     {torch.__version__}",
        f"tfa_core  {__version__}",
        f"machine   {platform.system()} {platform.machine()}",
        f"device    {where}",
        f"quick     {quick}",
    ]
    return "\n".join(lines)
