"""Comparisons that explain themselves: each returns ``None`` when the learner's answer agrees with
the reference, and otherwise one sentence saying where and how it differs."""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

import torch

__all__ = ["same_ids", "same_text", "close_tensor", "same_tensor", "tuple_of", "same_vocabulary",
           "same_count", "close_number", "same_value"]

Compare = Callable[[Any, Any], "str | None"]


def _as_id_list(value) -> list[int] | None:
    """A list of ints from a list, tuple or 1-D integer tensor; None if it is none of those."""
    if isinstance(value, torch.Tensor):
        if value.dim() != 1 or value.dtype.is_floating_point:
            return None
        return [int(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool)
                                                 for v in value):
        return list(value)
    return None


def same_ids(expected: list[int], got) -> str | None:
    """Token ids: a list of ints (a tuple or a 1-D integer tensor is accepted too)."""
    ids = _as_id_list(got)
    if ids is None:
        return f"expected a list of ints, got {type(got).__name__}"
    if len(ids) != len(expected):
        return f"expected {len(expected)} ids, got {len(ids)}"
    for position, (want, have) in enumerate(zip(expected, ids)):
        if want != have:
            return f"id at position {position} is {have}, expected {want}"
    return None


def same_text(expected: str, got) -> str | None:
    """A string, character for character."""
    if not isinstance(got, str):
        return f"expected a str, got {type(got).__name__}"
    for position, (want, have) in enumerate(zip(expected, got)):
        if want != have:
            return f"character {position} is {have!r}, expected {want!r}"
    if len(got) != len(expected):
        return f"expected {len(expected)} characters, got {len(got)}"
    return None


def _index_words(index: Sequence[int], dims: Sequence[str] | None) -> str:
    if dims and len(dims) == len(index):
        return "[" + ", ".join(f"{name} {i}" for name, i in zip(dims, index)) + "]"
    return str(list(index))


def close_tensor(dims: Sequence[str] | None = None, atol: float = 1e-5, rtol: float = 1e-4,
                 accept_lists: bool = False) -> Compare:
    """A float tensor of the reference's shape whose entries agree to ``atol + rtol * |expected|``.

    ``dims`` names the axes for messages (``("head", "query", "key")``). ``-inf`` must match
    ``-inf`` exactly (masked attention scores). ``accept_lists``: a list of numbers is fine too.
    When the reference is an integer (or bool) tensor, the answer must equal it exactly, as with
    :func:`same_tensor`.
    """

    def compare(expected: torch.Tensor, got) -> str | None:
        if accept_lists and isinstance(got, (list, tuple)):
            try:
                got = torch.tensor(got, dtype=expected.dtype)
            except (TypeError, ValueError, RuntimeError):
                return "expected a list of numbers or a tensor"
        if not isinstance(got, torch.Tensor):
            return f"expected a torch.Tensor, got {type(got).__name__}"
        if tuple(got.shape) != tuple(expected.shape):
            shape = f"{tuple(expected.shape)}" + (f" ({', '.join(dims)})" if dims else "")
            return f"expected shape {shape}, got {tuple(got.shape)}"
        if not (expected.dtype.is_floating_point or expected.dtype.is_complex):  # an integer answer: exact
            return same_tensor(dims)(expected, got)
        if not (got.dtype.is_floating_point or got.dtype.is_complex):
            got = got.to(expected.dtype)
        got = got.detach().to(device=expected.device, dtype=expected.dtype)
        masked_expected, masked_got = torch.isneginf(expected), torch.isneginf(got)
        if not torch.equal(masked_expected, masked_got):
            index = torch.nonzero(masked_expected != masked_got)[0].tolist()
            want, have = float(expected[tuple(index)]), float(got[tuple(index)])
            return f"entry {_index_words(index, dims)} is {have:.4g}, expected {want:.4g}"
        keep = ~masked_expected
        difference = torch.zeros_like(expected)
        difference[keep] = (got[keep] - expected[keep]).abs() - rtol * expected[keep].abs()
        if torch.isnan(got[keep]).any():
            index = torch.nonzero(torch.isnan(got) & keep)[0].tolist()
            return f"entry {_index_words(index, dims)} is nan"
        if (difference > atol).any():
            index = torch.nonzero(difference == difference.max())[0].tolist()
            want, have = float(expected[tuple(index)]), float(got[tuple(index)])
            return f"entry {_index_words(index, dims)} is {have:.6g}, expected {want:.6g}"
        return None

    return compare


def same_tensor(dims: Sequence[str] | None = None) -> Compare:
    """An integer tensor equal to the reference, entry for entry."""

    def compare(expected: torch.Tensor, got) -> str | None:
        if not isinstance(got, torch.Tensor):
            return f"expected a torch.Tensor, got {type(got).__name__}"
        if tuple(got.shape) != tuple(expected.shape):
            return f"expected shape {tuple(expected.shape)}, got {tuple(got.shape)}"
        if got.dtype.is_floating_point and not expected.dtype.is_floating_point:
            return (f"expected an integer tensor ({str(expected.dtype).replace('torch.', '')}), "
                    f"got dtype {got.dtype}")
        differ = got.to(expected.device) != expected
        if differ.any():
            index = torch.nonzero(differ)[0].tolist()
            return (f"entry {_index_words(index, dims)} is {int(got[tuple(index)])}, "
                    f"expected {int(expected[tuple(index)])}")
        return None

    return compare


def tuple_of(names: Sequence[str], compares: Sequence[Compare]) -> Compare:
    """A tuple like ``(xt, xe)``: each part compared with its own comparison, named in messages."""

    def compare(expected: tuple, got) -> str | None:
        if not isinstance(got, (tuple, list)) or len(got) != len(names):
            return f"expected a tuple of {len(names)} ({', '.join(names)}), got {type(got).__name__}" + (
                f" of length {len(got)}" if isinstance(got, (tuple, list)) else "")
        for name, part_compare, want, have in zip(names, compares, expected, got):
            difference = part_compare(want, have)
            if difference is not None:
                return f"{name}: {difference}"
        return None

    return compare


def same_vocabulary(expected: tuple[dict, list], got) -> str | None:
    """``(stoi, itos)``: a dict from character to id and a list (or dict) from id to character."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return "expected a pair (stoi, itos)"
    stoi, itos = got
    want_stoi, want_itos = expected
    if not isinstance(stoi, dict):
        return f"stoi must be a dict from character to id, got {type(stoi).__name__}"
    if set(stoi) != set(want_stoi):
        missing = sorted(set(want_stoi) - set(stoi))
        extra = sorted(set(stoi) - set(want_stoi))
        return f"stoi has the wrong characters (missing {missing}, extra {extra})"
    for character in want_itos:
        if stoi[character] != want_stoi[character]:
            return f"stoi[{character!r}] is {stoi[character]!r}, expected {want_stoi[character]}"
    if isinstance(itos, dict):
        itos = [itos.get(i) for i in range(len(itos))]
    if not isinstance(itos, (list, tuple, str)):
        return f"itos must be a list from id to character, got {type(itos).__name__}"
    if len(itos) != len(want_itos):
        return f"itos has {len(itos)} entries, expected {len(want_itos)}"
    for i, (want, have) in enumerate(zip(want_itos, itos)):
        if want != have:
            return f"itos[{i}] is {have!r}, expected {want!r}"
    return None


# -- comparisons for single numbers ---------------------------------------------------------------------


def _as_number(value) -> float | None:
    """A Python number from an int, a float or a one-element tensor; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.detach().cpu().reshape(()))
    return None


def same_count(expected: int, got) -> str | None:
    """A whole number (an int, or a float or one-element tensor holding one), equal to the reference."""
    number = _as_number(got)
    if number is None:
        return f"expected a whole number (an int), got {type(got).__name__}"
    if not math.isfinite(number) or number != round(number):
        return f"expected a whole number, got {number}"
    count = int(round(number))
    if count != expected:
        difference = count - expected
        more_or_fewer = "too many" if difference > 0 else "too few"
        return f"the count is {count:,}, expected {expected:,} ({abs(difference):,} {more_or_fewer})"
    return None


def close_number(what: str, atol: float = 1e-6, rtol: float = 1e-5, shape_hint: str = ""):
    """A real number (a float, an int or a one-element tensor) within ``atol + rtol * |expected|`` of
    the reference; ``what`` names it in messages (``"the loss"``), ``shape_hint`` says how to get one
    number when a larger tensor comes back."""

    def compare(expected, got) -> str | None:
        want = _as_number(expected)
        have = _as_number(got)
        if have is None:
            kind = (f"a tensor of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor)
                    else type(got).__name__)
            return (f"expected one number (a float or a 0-d tensor), got {kind}"
                    + (f"; {shape_hint}" if shape_hint else ""))
        if have == want:  # equal, infinities included
            return None
        if math.isnan(have):
            return f"{what} is nan, expected {want:.6g}"
        if not abs(have - want) <= atol + rtol * abs(want):
            return f"{what} is {have:.6g}, expected {want:.6g}"
        return None

    return compare


# -- the comparison that picks itself ----------------------------------------------------------------------


def same_value(expected, got) -> str | None:
    """The comparison an exercise gets when it names none, chosen by what the reference returned:
    an integer or bool tensor must be equal entry for entry; a float tensor close (``close_tensor``,
    lists of numbers accepted); an int an equal whole number; a float a close number; a string equal
    text; a tuple or list part by part; a dict key by key; anything else ``==``."""
    if isinstance(expected, torch.Tensor):
        if expected.dtype.is_floating_point or expected.dtype.is_complex:
            return close_tensor(accept_lists=True)(expected, got)
        if isinstance(got, (list, tuple)):
            try:
                got = torch.tensor(got, dtype=expected.dtype)
            except (TypeError, ValueError, RuntimeError, OverflowError):
                return "expected a list of whole numbers or an integer tensor"
        return same_tensor()(expected, got)
    if isinstance(expected, bool):
        return None if got is expected or (isinstance(got, torch.Tensor) and got.numel() == 1
                                           and bool(got) is expected) else f"expected {expected}, got {got!r}"
    if isinstance(expected, numbers.Integral):
        return same_count(int(expected), got)
    if isinstance(expected, numbers.Real):
        return close_number("the number")(expected, got)
    if isinstance(expected, str):
        return same_text(expected, got)
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            kind = (f"{type(got).__name__} of length {len(got)}" if isinstance(got, (tuple, list))
                    else type(got).__name__)
            return f"expected a {type(expected).__name__} of {len(expected)}, got {kind}"
        for index, (want, have) in enumerate(zip(expected, got)):
            difference = same_value(want, have)
            if difference is not None:
                return f"item {index}: {difference}"
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"expected a dict, got {type(got).__name__}"
        if set(got) != set(expected):
            return f"expected the keys {sorted(map(repr, expected))}, got {sorted(map(repr, got))}"
        for key, want in expected.items():
            difference = same_value(want, got[key])
            if difference is not None:
                return f"[{key!r}]: {difference}"
        return None
    return None if got == expected else f"expected {expected!r}, got {got!r}"
