"""What the course notebooks share: quick mode, the device, and the versions they ran with.

Quick mode shrinks step counts and sizes so that every notebook runs in seconds on two CPU cores;
it is how the test suite and CI run the notebooks. Learners leave it off and get the real lesson::

    TFA_QUICK=1 jupyter lab course/      # quick mode on
    jupyter lab course/                  # the real lesson

CI sets ``CI=true``; there quick mode is on unless ``TFA_QUICK`` says otherwise, so a notebook run
by CI can never fall back to the full-size lesson by accident.
"""

from __future__ import annotations

import os
import platform
import sys

__all__ = ["QUICK_ENV", "quick_mode", "environment_report"]

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


def environment_report(device: str | None = None) -> str:
    """The lines a notebook prints at the top: Python, torch and tfa_core versions, the machine,
    the device the notebook computes on (CUDA, then MPS, then CPU) and whether quick mode is on."""
    import torch

    from tfa_core import __version__
    from tfa_core.training.distributed import pick_device

    device = pick_device("auto") if device is None else device
    if device.startswith("cuda"):
        where = f"{device} ({torch.cuda.get_device_name(0)})"
    elif device == "mps":
        where = "mps (Apple GPU)"
    else:
        where = f"cpu ({os.cpu_count()} cores)"
    lines = [
        f"python    {sys.version.split()[0]}",
        f"torch     {torch.__version__}",
        f"tfa_core  {__version__}",
        f"machine   {platform.system()} {platform.machine()}",
        f"device    {where}",
        f"quick     {'on (' + QUICK_ENV + '=1): small sizes, few steps' if quick_mode() else 'off: the full lesson'}",
    ]
    return "\n".join(lines)
