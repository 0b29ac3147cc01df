"""What a learner's function returned, as plain data: JSON that can be read without running any code.

The grader runs the learner's code in a worker process and compares in its own process, so the values
must cross a pipe. :func:`to_plain` turns a value into JSON-ready data (numbers, strings, lists, and
tensors as dtype, shape and their raw bytes in base64); :func:`from_plain` rebuilds it. Reading never
calls anything the data names (no pickle): a type it does not know comes back as a stand-in that keeps
only the type's name and ``repr``, enough for "expected a torch.Tensor, got ndarray".

``check`` in a notebook sends every value through the same round trip, so a notebook and the grader
judge exactly the same data and print the same messages.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import torch

__all__ = ["to_plain", "from_plain", "Foreign", "MAX_BYTES"]

MAX_BYTES = 16 * 2**20
"""Raw bytes of tensors one value may carry; a larger tensor arrives as its shape and dtype only."""
MAX_ITEMS = 2**20
"""Numbers, strings and containers one value may hold."""
MAX_DEPTH = 24
"""Containers inside containers."""
_REPR_LIMIT = 300

_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)}
_NUMPY_KINDS = "biufc"  # bool, int, unsigned, float, complex: arrays of plain numbers only


class Foreign:
    """Stands for a value of a type the transport does not carry (a module, a numpy object array, a
    learner's own class): the type's name and the value's ``repr``, nothing that could run."""

    def __init__(self, text: str):
        self._text = text

    def __repr__(self) -> str:
        return self._text


class _Budget:
    def __init__(self):
        self.items = 0
        self.bytes = 0


def _safe_repr(value) -> str:
    try:
        text = repr(value)
    except BaseException:  # noqa: BLE001 -- the learner's __repr__ may do anything
        text = f"<{type(value).__name__}>"
    if not isinstance(text, str):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def _foreign(value, note: str = "") -> dict:
    return {"$": "foreign", "type": type(value).__name__, "repr": note or _safe_repr(value)}


def to_plain(value: Any) -> Any:
    """``value`` as JSON-ready data that :func:`from_plain` rebuilds. Never raises."""
    try:
        return _to_plain(value, _Budget(), 0)
    except BaseException:  # noqa: BLE001 -- a learner's object may fail in any way
        return {"$": "foreign", "type": "object", "repr": "<a value the grader could not read>"}


def _to_plain(value, budget: _Budget, depth: int):
    budget.items += 1
    if budget.items > MAX_ITEMS or depth > MAX_DEPTH:
        return _foreign(value, f"<a {type(value).__name__} too large or too deeply nested to grade>")
    if isinstance(value, str):
        budget.bytes += len(value)
        if budget.bytes > MAX_BYTES:
            return _foreign(value, f"<a str of {len(value):,} characters, too long to grade>")
        return str(value)
    if value is None or type(value) is bool:
        return value
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        number = int(value)
        return number if abs(number) < 2**63 else {"$": "int", "hex": hex(number)}
    if isinstance(value, float):
        number = float(value)
        return number if math.isfinite(number) else {"$": "float", "value": repr(number)}
    if value is Ellipsis:
        return {"$": "ellipsis"}
    if isinstance(value, torch.Tensor):
        return _tensor_to_plain(value, budget)
    if isinstance(value, (list, tuple, set, frozenset)):
        kind = next(k for k in (list, tuple, set, frozenset) if isinstance(value, k)).__name__
        return {"$": kind, "items": [_to_plain(v, budget, depth + 1) for v in list(value)]}
    if isinstance(value, dict):
        return {"$": "dict", "items": [[_to_plain(k, budget, depth + 1), _to_plain(v, budget, depth + 1)]
                                       for k, v in list(value.items())]}
    if type(value).__module__ == "numpy":
        return _numpy_to_plain(value, budget)
    return _foreign(value)


def _tensor_to_plain(tensor: torch.Tensor, budget: _Budget) -> dict:
    dtype = str(tensor.dtype).removeprefix("torch.")
    if dtype not in _DTYPES or tensor.layout != torch.strided:
        return _foreign(tensor, f"<a {dtype} tensor the grader cannot read>")
    shape = list(tensor.shape)
    size = tensor.numel() * tensor.element_size()
    if tensor.is_meta or budget.bytes + size > MAX_BYTES:
        return {"$": "tensor", "dtype": dtype, "shape": shape, "data": None}
    budget.bytes += size
    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return {"$": "tensor", "dtype": dtype, "shape": shape, "data": base64.b64encode(raw).decode("ascii")}


def _numpy_to_plain(value, budget: _Budget):
    import numpy

    if isinstance(value, (numpy.ndarray, numpy.generic)) and value.dtype.kind in _NUMPY_KINDS:
        array = numpy.ascontiguousarray(value)
        if budget.bytes + array.nbytes > MAX_BYTES:
            return _foreign(value, f"<a numpy {type(value).__name__} too large to grade>")
        budget.bytes += array.nbytes
        return {"$": "numpy", "scalar": isinstance(value, numpy.generic), "dtype": array.dtype.str,
                "shape": list(array.shape), "data": base64.b64encode(array.tobytes()).decode("ascii")}
    return _foreign(value)


# -- reading -----------------------------------------------------------------------------------------

def from_plain(data: Any) -> Any:
    """The value :func:`to_plain` described. Raises ``ValueError`` for data it did not write."""
    try:
        return _from_plain(data, 0)
    except ValueError:
        raise
    except (TypeError, KeyError, IndexError, RuntimeError, OverflowError, RecursionError,
            MemoryError) as error:
        raise ValueError(f"not a value the transport wrote ({type(error).__name__})") from None


def _from_plain(data, depth: int):
    if depth > MAX_DEPTH + 2:
        raise ValueError("nested too deeply")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if type(data) is not dict or not isinstance(data.get("$"), str):
        raise ValueError(f"unexpected {type(data).__name__}")
    kind = data["$"]
    if kind == "float":
        if data["value"] not in ("inf", "-inf", "nan"):
            raise ValueError("bad float")
        return float(data["value"])
    if kind == "int":
        if not isinstance(data["hex"], str) or len(data["hex"]) > 4096:
            raise ValueError("bad int")
        return int(data["hex"], 16)
    if kind == "ellipsis":
        return Ellipsis
    if kind in ("list", "tuple", "set", "frozenset"):
        items = [_from_plain(v, depth + 1) for v in _a_list(data["items"])]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](items)
    if kind == "dict":
        pairs = _a_list(data["items"])
        if not all(type(pair) is list and len(pair) == 2 for pair in pairs):
            raise ValueError("bad dict")
        return {_from_plain(k, depth + 1): _from_plain(v, depth + 1) for k, v in pairs}
    if kind == "tensor":
        return _tensor_from_plain(data)
    if kind == "numpy":
        return _numpy_from_plain(data)
    if kind == "foreign":
        name, text = data["type"], data["repr"]
        if not (isinstance(name, str) and isinstance(text, str)) or len(name) > 200 or len(text) > 400:
            raise ValueError("bad stand-in")
        return type(name or "object", (Foreign,), {"__module__": "learner"})(text)
    raise ValueError(f"unknown kind {kind!r}")


def _a_list(items) -> list:
    if type(items) is not list:
        raise ValueError("expected a list")
    return items


def _shape(shape) -> list[int]:
    shape = _a_list(shape)
    if len(shape) > 64 or not all(type(n) is int and 0 <= n < 2**40 for n in shape):
        raise ValueError("bad shape")
    return shape


def _tensor_from_plain(data: dict) -> torch.Tensor:
    dtype = _DTYPES.get(data["dtype"]) if isinstance(data["dtype"], str) else None
    if dtype is None:
        raise ValueError("bad dtype")
    shape = _shape(data["shape"])
    if data["data"] is None:  # too large to send: shape and dtype only
        return torch.empty(shape, dtype=dtype, device="meta")
    raw = base64.b64decode(data["data"], validate=True)
    numel = math.prod(shape)
    if len(raw) != numel * torch.empty((), dtype=dtype).element_size():
        raise ValueError("the bytes do not fill the shape")
    if not numel:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape)


def _numpy_from_plain(data: dict):
    import numpy

    dtype = numpy.dtype(data["dtype"]) if isinstance(data["dtype"], str) and len(data["dtype"]) <= 8 else None
    if dtype is None or dtype.kind not in _NUMPY_KINDS or dtype.hasobject:
        raise ValueError("bad numpy dtype")
    shape = _shape(data["shape"])
    raw = base64.b64decode(data["data"], validate=True)
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise ValueError("the bytes do not fill the shape")
    array = numpy.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    return array[()] if data["scalar"] is True else array
