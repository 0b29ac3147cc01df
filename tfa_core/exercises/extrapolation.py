"""Exercises of notebook 07, length extrapolation: perplexity from token losses, sliding-window evaluation."""

from __future__ import annotations

from .checking import Case, Exercise, Mistake, register  # noqa: F401
