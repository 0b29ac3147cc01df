"""Argument checks that name the field and the fix, shared by every module that takes user input."""

from __future__ import annotations

import math
import numbers

__all__ = ["is_int", "is_number", "require_int", "require_positive_int", "require_number", "require_finite"]


def is_int(value) -> bool:
    """True for a Python or NumPy integer, False for ``bool`` (which Python counts as an int)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """True for a Python or NumPy int or float, False for ``bool``."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def require_int(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int in ``[minimum, maximum]``; otherwise raise ``TypeError`` (not
    an int, or a bool) or ``ValueError`` (out of range), naming ``name``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be an int <= {maximum}, got {value}")
    return int(value)


def require_positive_int(name: str, value) -> int:
    """Return ``value`` if it is an int >= 1; otherwise raise ``TypeError``/``ValueError``."""
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def require_number(name: str, value) -> float:
    """Return ``value`` if it is an int or a float (not a bool); otherwise raise ``TypeError``."""
    if not is_number(value):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    return value


def require_finite(name: str, value, minimum: float | None = None, maximum: float | None = None) -> float:
    """Return ``value`` if it is a finite number in ``[minimum, maximum]``; NaN and infinity are
    refused with a ``ValueError``, a non-number with a ``TypeError``."""
    require_number(name, value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value
