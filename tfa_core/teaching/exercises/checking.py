"""The machinery behind ``check(...)``: exercises, their test cases, and the result a learner sees.

An :class:`Exercise` is a function the learner writes in a notebook, a reference answer built from
``tfa_core``, and a list of :class:`Case` inputs, edge cases included. :func:`check` calls both on
every case and stops at the first disagreement, so the learner sees one precise failure: which input,
what was expected, what came back, and a hint. Known mistakes (values taken from the wrong stream, a
bias with the wrong sign, the closed-form slopes) are recognised by name.

One verdict. The grader runs the cell that defines the answer on its own, after the imports every
notebook makes (:data:`PREAMBLE`), and ``check`` in a notebook does the same: when the function comes
from a notebook cell, ``check`` runs that cell again, alone, and checks what it defines. So an answer
that uses a helper from another cell fails in both places with the same message
(:data:`SELF_CONTAINED`), and an answer written in a new cell below the stub passes in both (the
grader takes the last cell, from the exercise cell up to the next exercise, that defines the function).

``check`` never raises into the notebook: an unfinished stub, an exception in the learner's code or a
wrong type all come back as a :class:`CheckResult`, which prints as text in a terminal and as a
coloured box in a notebook.

A check has two halves, so that the grader can keep them in two processes: :func:`run_case` calls the
learner's function on one case and describes what happened as plain data (what it returned, through
:mod:`.transport`, or what it raised); :class:`Judge` builds the same case itself, computes the
reference and compares. ``check`` runs both halves here; ``tfa grade`` runs ``run_case`` in a worker
process next to the learner's code and the :class:`Judge` in its own, where the learner's code never
runs. The messages are the same either way.

While the learner's function runs, :func:`run_case` also notes (best effort) whether it calls
tfa_core's own implementation of the answer or code from ``solutions/``: the result then carries a
``flag``. Checking cannot stop copying, but it can say so.
"""

from __future__ import annotations

import ast
import copy
import dis
import functools
import html
import linecache
import re
import sys
import sysconfig
import threading
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = [
    "CORRECT",
    "NOT_ATTEMPTED",
    "INCORRECT",
    "ERROR",
    "Case",
    "Mistake",
    "Exercise",
    "CheckResult",
    "register",
    "get_exercise",
    "list_exercises",
    "check",
    "describe_value",
    "run_case",
    "Judge",
    "build_cases",
    "PREAMBLE",
    "SELF_CONTAINED",
    "as_python",
    "defines",
    "run_exercise_cell",
]

CORRECT = "correct"
NOT_ATTEMPTED = "not attempted"
INCORRECT = "incorrect"
ERROR = "error"

PREAMBLE = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
"""What runs before an answer's cell, in the grader and in ``check``: the imports of every notebook."""

SELF_CONTAINED = ("the answer's cell is run on its own, after the notebook's imports (math, torch, nn, F), "
                  "by the grader and by check alike: define everything your function needs (helpers, "
                  "constants, imports) in that same cell")
"""The hint for a ``NameError``: the same words in a notebook and in the grader's table."""


@dataclass
class Case:
    """One input to try. ``label`` says it in words (``"n_head = 6"``), ``args`` are passed to both
    the learner's function and the reference, ``hint`` is shown when this case fails."""

    label: str
    args: tuple
    hint: str = ""


@dataclass
class Mistake:
    """A wrong answer people often give: when the learner's output equals ``answer(*args)``, the
    message says what went wrong instead of only that the numbers differ."""

    answer: Callable[..., Any]
    message: str


@dataclass
class Exercise:
    """A function the learner writes, checked against ``tfa_core``.

    ``id`` is ``"<notebook number>.<name>"`` (``"03.slopes"``); ``function`` is the name the learner
    defines in the exercise cell; ``cases`` builds the inputs (lazily, so importing is cheap);
    ``compare(expected, got)`` returns ``None`` when they agree and otherwise what differs, in words.
    Left out (``None``), the comparison picks itself from the reference's answer
    (:func:`.comparing.same_value`): exact for integers, ids and text, within tolerance for floats.

    ``observe(answer, *args)``, optional, turns what the learner's function returned into plain data
    (tensors, numbers, strings, lists, tuples, dicts) before ``compare`` sees it: for answers that are
    objects, such as an ``nn.Module`` class the learner writes (``function`` is then the class, called
    with the case's ``args``), ``observe`` might run the module on fixed inputs and return its outputs.
    It receives the ``args`` the function was called with, after the call, so it can also read what a
    function changed in place. It runs in the process that ran the learner's code, on the learner's
    answer and, in the checking process, on the reference's; anything else that reaches ``compare``
    arrives as a stand-in that keeps only its type's name (see :mod:`.transport`).
    Cases must build the same inputs every time (seed any randomness): the grader builds them in two
    processes. The learner's function, the reference and ``observe`` run under ``torch.no_grad()``,
    unless ``needs_grad`` (a training loop, which must call ``backward``).
    """

    id: str
    function: str
    title: str
    reference: Callable[..., Any]
    cases: Callable[[], list[Case]]
    compare: Callable[[Any, Any], str | None] | None = None
    mistakes: list[Mistake] = field(default_factory=list)
    observe: Callable[..., Any] | None = None
    needs_grad: bool = False

    @property
    def notebook(self) -> str:
        """The notebook number this exercise belongs to: ``"03"`` for ``"03.slopes"``."""
        return self.id.split(".", 1)[0]

    def differs(self, expected, got) -> str | None:
        """``compare(expected, got)``, or the comparison that picks itself when ``compare`` is ``None``."""
        if self.compare is None:
            from .comparing import same_value

            return same_value(expected, got)
        return self.compare(expected, got)


_REGISTRY: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    """Add an exercise to the registry that :func:`check` and the grader read."""
    if not isinstance(exercise.id, str) or not re.fullmatch(r"\d\d\.[A-Za-z_][A-Za-z0-9_]*", exercise.id):
        raise ValueError(f"exercise id {exercise.id!r} must be the notebook's two digits, a dot and a name, "
                         "such as \"03.slopes\"")
    if not isinstance(exercise.function, str) or not exercise.function.isidentifier():
        raise ValueError(f"exercise {exercise.id}: function {exercise.function!r} must be the Python name "
                         "the exercise cell defines, such as \"slopes\"")
    if exercise.id in _REGISTRY:
        raise ValueError(f"exercise id {exercise.id!r} is registered twice; ids must be unique")
    _REGISTRY[exercise.id] = exercise
    return exercise


def get_exercise(exercise_id: str) -> Exercise:
    """The exercise called ``exercise_id``; a ValueError lists the known ids otherwise."""
    if exercise_id not in _REGISTRY:
        raise ValueError(f"unknown exercise {exercise_id!r}; known exercises are {list_exercises()}")
    return _REGISTRY[exercise_id]


def list_exercises(notebook: str | None = None) -> list[str]:
    """Exercise ids in course order, all of them or those of one notebook (``"03"``)."""
    ids = [i for i in _REGISTRY if notebook is None or i.split(".", 1)[0] == notebook]
    return sorted(ids, key=lambda i: (i.split(".", 1)[0], list(_REGISTRY).index(i)))


# -- the result ---------------------------------------------------------------------------------

_SYMBOLS = {CORRECT: "✔", NOT_ATTEMPTED: "…", INCORRECT: "✘", ERROR: "✘"}
_COLOURS = {CORRECT: "#2e7d32", NOT_ATTEMPTED: "#757575", INCORRECT: "#c62828", ERROR: "#c62828"}


@dataclass
class CheckResult:
    """What :func:`check` found. ``status`` is one of ``"correct"``, ``"not attempted"``,
    ``"incorrect"`` or ``"error"`` (the code raised); ``message`` says it in one line; ``case``,
    ``expected``, ``got`` and ``hint`` locate a failure; ``flag`` is set when the answer seems to use
    tfa_core's own implementation or the solutions (a note, not a failure)."""

    exercise: str
    status: str
    message: str
    case: str = ""
    expected: str = ""
    got: str = ""
    hint: str = ""
    passed: int = 0
    total: int = 0
    flag: str = ""

    @property
    def correct(self) -> bool:
        return self.status == CORRECT

    def details(self) -> list[tuple[str, str]]:
        """The labelled lines under the headline, in order."""
        rows = [("input", self.case), ("expected", self.expected), ("got", self.got), ("hint", self.hint),
                ("note", self.flag)]
        return [(name, value) for name, value in rows if value]

    def to_dict(self) -> dict:
        """A JSON-ready dict (what the grader's worker sends back)."""
        return dict(exercise=self.exercise, status=self.status, message=self.message, case=self.case,
                    expected=self.expected, got=self.got, hint=self.hint, passed=self.passed,
                    total=self.total, flag=self.flag)

    def __str__(self) -> str:
        lines = [f"{_SYMBOLS.get(self.status, '?')} {self.exercise}: {self.status} — {self.message}"]
        for name, value in self.details():
            first, *rest = value.splitlines() or [""]
            lines.append(f"    {name + ':':<9} {first}")
            lines.extend(f"    {'':<9} {line}" for line in rest)
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour = _COLOURS.get(self.status, "#c62828")
        rows = "".join(
            f"<tr><td style='padding:1px 8px 1px 0;vertical-align:top;color:#555'>{name}</td>"
            f"<td style='padding:1px 0;text-align:left'><pre style='margin:0;white-space:pre-wrap'>"
            f"{html.escape(value)}</pre></td></tr>"
            for name, value in self.details()
        )
        table = f"<table style='margin-top:4px;border:none'>{rows}</table>" if rows else ""
        return (
            f"<div style='border-left:4px solid {colour};padding:4px 10px;margin:2px 0'>"
            f"<b style='color:{colour}'>{_SYMBOLS.get(self.status, '?')} {html.escape(self.exercise)}: "
            f"{html.escape(self.status)}</b> — {html.escape(self.message)}{table}</div>"
        )


# -- showing values in words ----------------------------------------------------------------------

def _format_number(x: float) -> str:
    if x == float("-inf"):
        return "-inf"
    if x == float("inf"):
        return "inf"
    return f"{x:.4g}"


def describe_value(value: Any, limit: int = 32) -> str:
    """A short, readable rendering of a value for a failure message: tensors show their shape and,
    when small enough, their numbers."""
    if isinstance(value, torch.Tensor):
        kind = f"tensor of shape {tuple(value.shape)}, dtype {str(value.dtype).replace('torch.', '')}"
        if value.is_meta:  # what the transport sends for a tensor too large to carry
            return f"{kind} (too large to show)"
        value = value.detach().cpu()
        if value.numel() > limit:
            flat = value.flatten()[:8]
            numbers = ", ".join(_format_number(float(x)) for x in flat)
            return f"{kind}: [{numbers}, ...]"
        if value.dtype.is_floating_point:
            return f"{kind}:\n{_nested(value.tolist())}"
        return f"{kind}: {value.tolist()}"
    if isinstance(value, tuple):
        return "(" + ", ".join(describe_value(v, limit) for v in value) + ")"
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."


def _nested(values) -> str:
    if isinstance(values, list) and values and isinstance(values[0], list):
        return "[" + ",\n ".join(_nested(v) for v in values) + "]"
    if isinstance(values, list):
        return "[" + ", ".join(_format_number(v) for v in values) + "]"
    return _format_number(values)


# -- noticing copies (best effort) ---------------------------------------------------------------------

_PACKAGE = Path(__file__).resolve().parents[2]  # tfa_core/
_SOLUTIONS = _PACKAGE.parent / "solutions"
_MACHINERY = {
    _PACKAGE / "teaching" / "exercises" / name for name in ("checking.py", "comparing.py", "transport.py")
} | {
    _PACKAGE / "teaching" / "grading.py",
    _PACKAGE / "model" / "config.py",  # configs are inputs: reading their fields is not copying
}


@functools.lru_cache(maxsize=8192)
def _origin(filename: str) -> str | None:
    """``"tfa_core/model/alibi.py"`` for tfa_core's own code, ``"solutions/03_alibi.py"`` for the
    reference solutions, ``None`` for anything else (the learner's code, torch, the checking machinery)."""
    if not filename or filename.startswith("<"):
        return None
    try:
        path = Path(filename).resolve()
    except (OSError, ValueError, RuntimeError):
        return None
    if path in _MACHINERY:
        return None
    for root in (_PACKAGE, _SOLUTIONS):
        if path.is_relative_to(root):
            return f"{root.name}/{path.relative_to(root).as_posix()}"
    return None


_SAME_OP = {"LOAD_METHOD": "LOAD_ATTR"}  # the compiler picks one or the other from the module's imports
_NOT_COUNTED = {"CACHE", "PRECALL", "PUSH_NULL", "RESUME", "NOP", "EXTENDED_ARG", "KW_NAMES"}
_JUMPS = set(dis.hasjrel) | set(dis.hasjabs)


def _fingerprint(code: types.CodeType) -> tuple:
    """What a function's code does, without where it was written: equal for the same source pasted
    into another file or exec'd (names, constants and docstring included, jump offsets and the
    compiler's choices that depend on the surrounding module left out)."""
    operations = tuple(
        (_SAME_OP.get(op.opname, op.opname),
         None if op.opcode in _JUMPS else _fingerprint(op.argval) if isinstance(op.argval, types.CodeType)
         else repr(op.argval))
        for op in dis.get_instructions(code) if op.opname not in _NOT_COUNTED)
    strings = tuple(c for c in code.co_consts if isinstance(c, str))
    return (operations, strings, code.co_varnames, code.co_argcount)


@functools.lru_cache(maxsize=1)
def _solution_fingerprints() -> dict[tuple, str]:
    """The fingerprint of every function in ``solutions/*.py`` (none when the folder is not there)."""
    found: dict[tuple, str] = {}

    def walk(code: types.CodeType, where: str) -> None:
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                found[_fingerprint(const)] = f"{where}: {const.co_qualname}"
                walk(const, where)

    for path in sorted(_SOLUTIONS.glob("*.py")) if _SOLUTIONS.is_dir() else []:
        try:
            walk(compile(path.read_text(encoding="utf-8"), str(path), "exec"), f"solutions/{path.name}")
        except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
            continue
    return found


class _CallWatch:
    """While active (``with``), notes the tfa_core functions entered from code outside tfa_core, and
    any code of the solutions that runs. ``depth=1`` also notes the tfa_core functions that those call
    directly (used on a reference that is a small wrapper, to see what it wraps)."""

    def __init__(self, depth: int = 0, transparent: tuple = ()):
        self.depth = depth
        self.transparent = set(transparent)  # code objects not counted as tfa_core frames (observe)
        self.tfa_core: set[str] = set()
        self.solutions: set[str] = set()
        self._fingerprints: dict[types.CodeType, str | None] = {}

    def __enter__(self) -> "_CallWatch":
        _solution_fingerprints()  # compile the solutions before anything is timed or watched
        self._previous = sys.getprofile()
        sys.setprofile(self._profile)
        return self

    def __exit__(self, *exc) -> None:
        sys.setprofile(self._previous)

    def _profile(self, frame, event, arg) -> None:
        if event != "call":
            return
        code = frame.f_code
        origin = _origin(code.co_filename)
        if origin is None:
            if code.co_filename.startswith("<"):  # exec'd or pasted code: is it a solution's?
                if code not in self._fingerprints and len(self._fingerprints) < 4096:
                    self._fingerprints[code] = _solution_fingerprints().get(_fingerprint(code))
                if self._fingerprints.get(code) and "<locals>" not in self._fingerprints[code]:
                    self.solutions.add(self._fingerprints[code])
            return
        if origin.startswith("solutions/"):
            if "<locals>" not in code.co_qualname and code.co_name != "<module>":
                self.solutions.add(f"{origin}: {code.co_qualname}")
            return
        above, caller = 0, frame.f_back
        while caller is not None and above <= self.depth:
            if caller.f_code not in self.transparent and _origin(caller.f_code.co_filename) is not None:
                above += 1
            caller = caller.f_back
        if above <= self.depth:
            self.tfa_core.add(f"{origin}:{code.co_qualname}:{code.co_firstlineno}")


def _describe_call(call: str) -> str:
    """``"tfa_core/model/alibi.py:alibi_slopes:12"``
    -> ``"tfa_core's alibi_slopes (tfa_core/model/alibi.py)"``."""
    where, name, _ = (call.rsplit(":", 2) + ["", ""])[:3]
    return f"tfa_core's {name} ({where})"


# -- one case, in the process that runs the learner's code -----------------------------------------------

_TEXT_LIMIT = 1000


def _short(text: str) -> str:
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 3] + "..."


def build_cases(exercise: Exercise) -> list[Case]:
    """The exercise's cases, built with torch's random state seeded and then restored, so that every
    process that builds them gets the same inputs."""
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)
        return list(exercise.cases())


def run_case(exercise: Exercise, function: Callable[..., Any], case: Case, number: int) -> dict:
    """Call the learner's ``function`` on ``case`` (number ``number``, from 1) and say what happened, as
    plain data: ``value`` (what it returned, after ``exercise.observe``, through :func:`.transport.to_plain`),
    ``stub`` (it returned ``...``), or ``raised`` / ``error`` / ``where`` / ``not_implemented``; and
    ``calls`` / ``solutions``, the tfa_core functions and solution code it ran (best effort). Never
    raises, except ``KeyboardInterrupt``."""
    from .transport import to_plain

    attempt = dict(value=None, stub=False, raised="", error="", where="", not_implemented=False,
                   calls=[], solutions=[])
    observe = exercise.observe
    watch = _CallWatch(transparent=(getattr(observe, "__code__", None),))
    with torch.random.fork_rng(devices=[]), torch.set_grad_enabled(exercise.needs_grad):
        torch.manual_seed(number)
        try:
            args = copy.deepcopy(case.args)
            with watch:
                answer = function(*args)
                attempt["stub"] = answer is Ellipsis
                value = observe(answer, *args) if observe is not None and answer is not Ellipsis else answer
            attempt["value"] = to_plain(value)
        except (Exception, SystemExit) as error:
            attempt.update(raised=_short(type(error).__name__), error=_short(_text_of(error)),
                           where=_short(_where_it_failed(error)),
                           not_implemented=isinstance(error, NotImplementedError), value=None)
    attempt["calls"] = sorted(watch.tfa_core)
    attempt["solutions"] = sorted(watch.solutions)
    return attempt


def _text_of(error: BaseException) -> str:
    try:
        return str(error)
    except BaseException:  # noqa: BLE001 -- a learner's exception whose __str__ fails
        return "<an exception that cannot be shown>"


# -- judging, in the process that checks -----------------------------------------------------------------

def _read_attempt(data) -> dict:
    """An attempt from :func:`run_case`, checked field by field (it may have crossed a pipe from a
    process the learner's code ran in). Raises ``ValueError`` for anything else."""
    from .transport import from_plain

    fields = dict(stub=bool, raised=str, error=str, where=str, not_implemented=bool, calls=list,
                  solutions=list)
    if type(data) is not dict or any(type(data.get(name)) is not kind for name, kind in fields.items()):
        raise ValueError("not an attempt")
    attempt = {name: data[name] for name in fields}
    for name in ("raised", "error", "where"):
        attempt[name] = _short(attempt[name])
    for name in ("calls", "solutions"):
        if not all(type(item) is str and len(item) < 500 for item in attempt[name][:100]):
            raise ValueError(f"bad {name}")
        attempt[name] = attempt[name][:100]
    attempt["value"] = from_plain(data.get("value")) if not attempt["raised"] else None
    return attempt


_RANDOM_STATE = threading.RLock()  # the grader judges several notebooks at once, in threads

RECORDED_ANSWERS = Path(__file__).with_name("recorded_answers.json")
"""In a student release (``tfa release --students``): each exercise's reference answer on each case,
as plain data, written when the release was built; the reference code itself is not shipped."""


@functools.lru_cache(maxsize=1)
def _recorded() -> dict:
    if not RECORDED_ANSWERS.is_file():
        return {}
    import json

    return json.loads(RECORDED_ANSWERS.read_text(encoding="utf-8"))


def not_shipped(*args, **kwargs):
    """The reference of an exercise in a student release: its answers are recorded, not its code."""
    raise RuntimeError("this exercise's reference answer is not shipped in the student release; its answers "
                       f"are recorded in {RECORDED_ANSWERS.name}")


class Judge:
    """The checking half of a check: it builds the exercise's cases itself, computes the reference
    answer for each, and compares it with an attempt that :func:`run_case` described. It never calls
    the learner's code, so it can live in a process that the learner's code cannot reach.

    ``judge(number, attempt)`` gives ``None`` while the cases agree, else the :class:`CheckResult`;
    ``correct()`` the result once every case has agreed. Raises what ``exercise.cases()`` raises."""

    def __init__(self, exercise: Exercise):
        self.exercise = exercise
        with _RANDOM_STATE:
            self.cases = build_cases(exercise)
        self.total = len(self.cases)
        reference_file = getattr(getattr(exercise.reference, "__code__", None), "co_filename", "")
        wrapper = (_origin(reference_file) or "").startswith("tfa_core/teaching/exercises/")
        self._reference_depth = 1 if wrapper else 0  # a wrapper: what it wraps is the answer too
        self._reference_calls: set[str] = set()
        self._learner_calls: set[str] = set()
        self._solutions: set[str] = set()

    def _call(self, function, case: Case, number: int, watch: _CallWatch | None = None):
        args = copy.deepcopy(case.args)
        with torch.random.fork_rng(devices=[]), torch.set_grad_enabled(self.exercise.needs_grad):
            torch.manual_seed(number)
            if watch is None:
                answer = function(*args)
            else:
                with watch:
                    answer = function(*args)
            if self.exercise.observe is not None:
                answer = self.exercise.observe(answer, *args)
        return answer

    def flag(self) -> str:
        """What the answers so far suggest was copied, in words; ``""`` when nothing."""
        notes = []
        copied = sorted(self._learner_calls & self._reference_calls)
        if copied:
            notes.append("calls " + ", ".join(map(_describe_call, copied))
                         + ", which the check takes as the answer")
        if self._solutions:
            notes.append("runs the reference solution (" + ", ".join(sorted(self._solutions)) + ")")
        return "; ".join(notes)

    def correct(self) -> CheckResult:
        return CheckResult(self.exercise.id, CORRECT, f"all {self.total} cases agree with tfa_core",
                           passed=self.total, total=self.total, flag=self.flag())

    def judge(self, number: int, data) -> CheckResult | None:
        """``None`` when the attempt at case ``number`` (from 1) agrees with the reference, else what
        went wrong."""
        with _RANDOM_STATE:
            return self._judge(number, data)

    def _judge(self, number: int, data) -> CheckResult | None:
        exercise, case, total = self.exercise, self.cases[number - 1], self.total
        where = f"case {number} of {total}"
        failed = dict(case=case.label, hint=case.hint, passed=number - 1, total=total)
        try:
            recorded = _recorded().get(exercise.id)
            if recorded is not None and exercise.reference is not_shipped:
                from .transport import from_plain

                label, plain = recorded[number - 1]
                if label != case.label:
                    raise ValueError("the recorded answers are for other cases "
                                     f"({label!r}, not {case.label!r})")
                expected = from_plain(plain)
            else:
                watch = _CallWatch(depth=self._reference_depth)
                expected = self._call(exercise.reference, case, number, watch)
                self._reference_calls |= watch.tfa_core
        except Exception as error:  # a bug on our side
            return CheckResult(exercise.id, ERROR, f"the reference answer failed ({where}): {error!r}",
                               **failed)
        try:
            attempt = _read_attempt(data)
        except (ValueError, RecursionError):
            return CheckResult(exercise.id, ERROR, f"what your function returned could not be read ({where})",
                               **failed, flag=self.flag())
        self._learner_calls |= set(attempt["calls"])
        self._solutions |= set(attempt["solutions"])
        failed["flag"] = self.flag()
        if attempt["raised"]:
            if attempt["not_implemented"]:
                if number == 1:
                    return CheckResult(exercise.id, NOT_ATTEMPTED,
                                       f"write `{exercise.function}` in the exercise cell above (replace "
                                       "`raise NotImplementedError`), run it, then run this cell again",
                                       total=total, flag=failed["flag"])
                return CheckResult(exercise.id, INCORRECT,
                                   f"your function raised NotImplementedError ({where})",
                                   got=f"NotImplementedError({attempt['error']})", **failed)
            line = attempt["where"]
            if attempt["raised"] == "NameError":
                failed["hint"] = SELF_CONTAINED
            return CheckResult(exercise.id, ERROR, f"your function raised {attempt['raised']} ({where})",
                               got=f"{attempt['raised']}: {attempt['error']}"
                               + (f"\n(at {line})" if line else ""),
                               **failed)
        if attempt["stub"] and number == 1:
            return CheckResult(exercise.id, NOT_ATTEMPTED,
                               f"`{exercise.function}` still returns `...`; write it in the exercise cell "
                               "above, run it, then run this cell again", total=total, flag=failed["flag"])
        got = attempt["value"]
        if got is None:
            failed["hint"] = "did you forget to `return` the result?"
            return CheckResult(exercise.id, INCORRECT, f"your function returned None ({where})",
                               expected=describe_value(expected), got="None", **failed)
        try:
            difference = exercise.differs(expected, got)
        except Exception as error:
            difference = f"could not compare what came back with the answer ({type(error).__name__}: {error})"
        if difference is None:
            return None
        for mistake in exercise.mistakes:  # name the mistake, when it is a known one
            try:
                wrong = self._call(mistake.answer, case, number)
            except Exception:
                continue
            if _agrees(exercise, wrong, got):
                failed["hint"] = mistake.message
                break
        return CheckResult(exercise.id, INCORRECT, f"{difference} ({where})",
                           expected=describe_value(expected), got=_describe_safely(got), **failed)


def _describe_safely(value) -> str:
    try:
        return describe_value(value)
    except Exception as error:  # noqa: BLE001
        return f"{type(value).__name__} ({type(error).__name__} when shown)"


def _agrees(exercise: Exercise, expected, got) -> bool:
    try:
        return exercise.differs(expected, got) is None
    except Exception:
        return False


_LIBRARY_FOLDERS = tuple(
    str(Path(folder).resolve()) for folder in
    {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
     str(Path(__file__).resolve().parents[1])}
)


def _where_it_failed(error: BaseException) -> str:
    """The innermost line of the learner's own code in a traceback (not torch's, not ours)."""
    frames = traceback.extract_tb(error.__traceback__)
    own = [f for f in frames if not str(Path(f.filename).resolve()).startswith(_LIBRARY_FOLDERS)]
    if not own:
        return ""
    frame = own[-1]
    code = f": {frame.line.strip()}" if frame.line else ""
    return f"line {frame.lineno} of the exercise cell{code}"


# -- the answer's cell, run on its own (the grader's worker and check alike) -------------------------------

def as_python(source: str) -> str:
    """Cell source as plain Python: IPython's ``%magic``, ``%%cell magic`` and ``!shell`` lines are
    skipped (an exercise function never needs them), keeping their indentation and line numbers."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            indent = line[: len(line) - len(stripped)]
            line = f"{indent}pass  # skipped by the grader: {stripped}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def defines(source: str, name: str) -> bool:
    """Whether the cell's top level defines ``name`` with ``def`` or ``class`` (read, never run)."""
    try:
        tree = ast.parse(as_python(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        pattern = rf"^(?:async[ \t]+)?(?:def|class)[ \t]+{re.escape(name)}\b"
        return re.search(pattern, source, re.MULTILINE) is not None
    return any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name
               for node in tree.body)


def _no_check(*args, **kwargs) -> None:
    """``check`` inside an answer's cell run on its own: does nothing (the cell is being checked)."""
    return None


def run_exercise_cell(exercise: Exercise, source: str, filename: str | None = None) -> tuple[Any, dict]:
    """Run the answer's cell alone, after :data:`PREAMBLE`, and take what it defines as
    ``exercise.function``. Returns ``(function, {})``, or ``(None, failure)`` where ``failure`` has a
    ``cell`` status (``"syntax error"``, ``"error"``, ``"missing"``) and a ``message``. A ``check(...)``
    call in the cell does nothing there."""
    try:
        code = compile(as_python(source), filename or f"<exercise cell {exercise.id}>", "exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as error:
        if not isinstance(error, SyntaxError):
            return None, dict(cell="syntax error",
                              message=f"the cell cannot be compiled ({type(error).__name__})")
        where = f"line {error.lineno}: {(error.text or '').strip()}" if error.lineno else ""
        return None, dict(cell="syntax error",
                          message=_short(f"{error.msg} ({where})" if where else error.msg))
    namespace: dict = {"__name__": "__exercise__"}
    try:
        exec(PREAMBLE, namespace)
        namespace["check"] = _no_check
        exec(code, namespace)
    except BaseException as error:  # noqa: BLE001 -- whatever the cell does, report it
        if isinstance(error, KeyboardInterrupt):
            raise
        hint = f"; {SELF_CONTAINED}" if isinstance(error, NameError) else ""
        return None, dict(cell="error",
                          message=_short(f"the cell raised {type(error).__name__}: {_text_of(error)}") + hint)
    function = namespace.get(exercise.function)
    if function is None:
        return None, dict(cell="missing",
                          message=f"the cell does not define `{exercise.function}` (the grader "
                          "grades the function of that name, defined in the exercise cell or a cell "
                          "below it)")
    return function, {}


def _code_of(function) -> types.CodeType | None:
    """The code object of a Python function, or of the first method of a class."""
    code = getattr(function, "__code__", None)
    if isinstance(code, types.CodeType):
        return code
    if isinstance(function, type):
        for member in vars(function).values():
            member = getattr(member, "__func__", member)
            code = getattr(member, "__code__", None)
            if isinstance(code, types.CodeType):
                return code
    return None


def notebook_cell_source(function) -> tuple[str, str] | None:
    """``(source, filename)`` of the notebook cell that defined ``function``, as the learner typed it
    (magics included, as the grader reads it), when it comes from a cell run in IPython; else ``None``.
    IPython keeps each cell's text in ``linecache`` under a name that is not a file on disk."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython is not None else None
    code = _code_of(function)
    if shell is None or code is None:
        return None
    entry = linecache.cache.get(code.co_filename)
    if not entry or len(entry) < 3 or entry[1] is not None:  # not a cell: a file (it has a modification time)
        return None
    source = "".join(entry[2])  # what IPython ran: magics already turned into Python
    number = getattr(getattr(shell, "compile", None), "_filename_map", {}).get(code.co_filename)
    raw = getattr(getattr(shell, "history_manager", None), "input_hist_raw", [])
    if isinstance(number, int) and 0 < number < len(raw) and isinstance(raw[number], str):
        source = raw[number]  # what the learner typed, as the notebook file (and so the grader) has it
    return source, code.co_filename


_INSIDE_CHECK = threading.local()


# -- check -----------------------------------------------------------------------------------------

def check(exercise_id: str, function: Callable[..., Any]) -> CheckResult:
    """Check the learner's ``function`` against the reference for exercise ``exercise_id``.

    When ``function`` was defined in a notebook cell, that cell is run again on its own (as the grader
    runs it) and its definition is checked: an answer that leans on another cell fails here as it
    would in the grader. Every case is run with fresh copies of its inputs (so a function that changes its
    arguments in place cannot spoil the next case), and the notebook's random state is left as it was. Never
    raises: the outcome, good or bad, is the returned :class:`CheckResult`, which a notebook shows as
    a coloured box.
    """
    try:
        exercise = get_exercise(exercise_id)
    except ValueError as error:
        return CheckResult(str(exercise_id), ERROR, str(error))
    if not callable(function):
        return not_callable(exercise, describe_value(function), type(function).__name__)
    if getattr(_INSIDE_CHECK, "active", False):  # the answer's cell, run again below, calls check itself
        return CheckResult(exercise.id, ERROR, "check was called from inside the cell it is checking")
    cell = notebook_cell_source(function)
    if cell is not None:  # what the grader will see: the cell on its own
        _INSIDE_CHECK.active = True
        try:
            function, failure = run_exercise_cell(exercise, *cell)
        finally:
            _INSIDE_CHECK.active = False
        if function is None:
            return CheckResult(exercise.id, ERROR, failure["message"])
    try:
        judge = Judge(exercise)
    except Exception as error:  # a bug on our side: say so rather than blame the learner
        return CheckResult(exercise.id, ERROR, f"the check itself failed to build its inputs: {error!r}")
    for number, case in enumerate(judge.cases, 1):
        failure = judge.judge(number, run_case(exercise, function, case, number))
        if failure is not None:
            return failure
    return judge.correct()


def not_callable(exercise: Exercise, shown: str, kind: str) -> CheckResult:
    """The result for a ``function`` that cannot be called (shown as ``shown``, of type ``kind``)."""
    return CheckResult(
        exercise.id, ERROR,
        f"check needs the function itself, e.g. check({exercise.id!r}, {exercise.function}), "
        f"but it was given {shown} ({kind})",
    )
