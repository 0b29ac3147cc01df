"""Argument checks that name the field and the fix, shared by every module that takes user input."""

from __future__ import annotations

import math
import numbers

__all__ = ["is_int", "is_number", "require_positive_int", "require_number", "require_finite"]


def is_int(value) -> bool:
    """True for a Python or NumPy integer, False for ``bool`` (which Python counts as an int)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """True for a Python or NumPy int or float, False for ``bool``."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def require_positive_int(name: str, value) -> None:
    """Raise ``TypeError`` unless ``value`` is an int, ``ValueError`` unless it is at least 1."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")


def require_number(name: str, value) -> None:
    """Raise ``TypeError`` unless ``value`` is an int or a float (not a bool)."""
    if not is_number(value):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")


def require_finite(name: str, value) -> None:
    """Raise unless ``value`` is a finite number (NaN and infinity are refused)."""
    require_number(name, value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
