"""Exercises of notebook 08, inside the streams: the logit lens on xt and xe, attention maps by head."""

from __future__ import annotations

from .checking import Case, Exercise, Mistake, register  # noqa: F401
