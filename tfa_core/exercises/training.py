"""Exercises of notebook 06, training: the learning-rate schedule, top-k and top-p filtering, sampling with temperature."""

from __future__ import annotations

from .checking import Case, Exercise, Mistake, register  # noqa: F401
