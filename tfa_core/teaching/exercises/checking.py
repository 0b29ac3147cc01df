"""The machinery behind ``check(...)``: exercises, their test cases, and the result a learner sees.

An :class:`Exercise` is a function the learner writes in a notebook, a reference answer built from
``tfa_core``, and a list of :class:`Case` inputs, edge cases included. :func:`check` calls both on
every case and stops at the first disagreement, so the learner sees one precise failure: which input,
what was expected, what came back, and a hint. Known mistakes (values taken from the wrong stream, a
bias with the wrong sign, the closed-form slopes) are recognised by name.

``check`` never raises into the notebook: an unfinished stub, an exception in the learner's code or a
wrong type all come back as a :class:`CheckResult`, which prints as text in a terminal and as a
coloured box in a notebook.
"""

from __future__ import annotations

import copy
import html
import sysconfig
import traceback
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
]

CORRECT = "correct"
NOT_ATTEMPTED = "not attempted"
INCORRECT = "incorrect"
ERROR = "error"


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
    """

    id: str
    function: str
    title: str
    reference: Callable[..., Any]
    cases: Callable[[], list[Case]]
    compare: Callable[[Any, Any], str | None]
    mistakes: list[Mistake] = field(default_factory=list)

    @property
    def notebook(self) -> str:
        """The notebook number this exercise belongs to: ``"03"`` for ``"03.slopes"``."""
        return self.id.split(".", 1)[0]


_REGISTRY: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    """Add an exercise to the registry that :func:`check` and the grader read."""
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
    ``expected``, ``got`` and ``hint`` locate a failure."""

    exercise: str
    status: str
    message: str
    case: str = ""
    expected: str = ""
    got: str = ""
    hint: str = ""
    passed: int = 0
    total: int = 0

    @property
    def correct(self) -> bool:
        return self.status == CORRECT

    def details(self) -> list[tuple[str, str]]:
        """The labelled lines under the headline, in order."""
        rows = [("input", self.case), ("expected", self.expected), ("got", self.got), ("hint", self.hint)]
        return [(name, value) for name, value in rows if value]

    def to_dict(self) -> dict:
        """A JSON-ready dict (what the grader's worker sends back)."""
        return dict(exercise=self.exercise, status=self.status, message=self.message, case=self.case,
                    expected=self.expected, got=self.got, hint=self.hint, passed=self.passed,
                    total=self.total)

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
        value = value.detach().cpu()
        kind = f"tensor of shape {tuple(value.shape)}, dtype {str(value.dtype).replace('torch.', '')}"
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


# -- check -----------------------------------------------------------------------------------------

def _agrees(exercise: Exercise, expected, got) -> bool:
    try:
        return exercise.compare(expected, got) is None
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


def check(exercise_id: str, function: Callable[..., Any]) -> CheckResult:
    """Check the learner's ``function`` against the reference for exercise ``exercise_id``.

    Every case is run with fresh copies of its inputs (so a function that changes its arguments in
    place cannot spoil the next case), and the notebook's random state is left as it was. Never
    raises: the outcome, good or bad, is the returned :class:`CheckResult`, which a notebook shows as
    a coloured box.
    """
    try:
        exercise = get_exercise(exercise_id)
    except ValueError as error:
        return CheckResult(str(exercise_id), ERROR, str(error))
    if not callable(function):
        return CheckResult(
            exercise.id, ERROR,
            f"check needs the function itself, e.g. check({exercise.id!r}, {exercise.function}), "
            f"but it was given {describe_value(function)} ({type(function).__name__})",
        )
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        try:
            cases = exercise.cases()
        except Exception as error:  # a bug on our side: say so rather than blame the learner
            return CheckResult(exercise.id, ERROR, f"the check itself failed to build its inputs: {error!r}")
        for number, case in enumerate(cases, 1):
            failure = _check_case(exercise, function, case, number, len(cases))
            if failure is not None:
                return failure
    return CheckResult(exercise.id, CORRECT, f"all {len(cases)} cases agree with tfa_core",
                       passed=len(cases), total=len(cases))


def _check_case(exercise: Exercise, function, case: Case, number: int, total: int) -> CheckResult | None:
    """``None`` when the learner's answer on this case agrees with the reference, else what went wrong."""
    where = f"case {number} of {total}"
    failed = dict(case=case.label, hint=case.hint, passed=number - 1, total=total)
    try:
        expected = exercise.reference(*copy.deepcopy(case.args))
    except Exception as error:  # a bug on our side
        return CheckResult(exercise.id, ERROR, f"the reference answer failed ({where}): {error!r}", **failed)
    try:
        got = function(*copy.deepcopy(case.args))
    except NotImplementedError as error:
        if number == 1:
            return CheckResult(exercise.id, NOT_ATTEMPTED,
                               f"write `{exercise.function}` in the exercise cell above (replace "
                               "`raise NotImplementedError`), run it, then run this cell again", total=total)
        return CheckResult(exercise.id, INCORRECT, f"your function raised NotImplementedError ({where})",
                           got=f"NotImplementedError({error})", **failed)
    except (Exception, SystemExit) as error:
        line = _where_it_failed(error)
        return CheckResult(exercise.id, ERROR, f"your function raised {type(error).__name__} ({where})",
                           got=f"{type(error).__name__}: {error}" + (f"\n(at {line})" if line else ""),
                           **failed)
    if got is Ellipsis and number == 1:
        return CheckResult(exercise.id, NOT_ATTEMPTED,
                           f"`{exercise.function}` still returns `...`; write it in the exercise cell "
                           "above, run it, then run this cell again", total=total)
    if got is None:
        failed["hint"] = "did you forget to `return` the result?"
        return CheckResult(exercise.id, INCORRECT, f"your function returned None ({where})",
                           expected=describe_value(expected), got="None", **failed)
    try:
        difference = exercise.compare(expected, got)
    except Exception as error:
        difference = f"could not compare what came back with the answer ({type(error).__name__}: {error})"
    if difference is None:
        return None
    for mistake in exercise.mistakes:  # name the mistake, when it is a known one
        try:
            wrong = mistake.answer(*copy.deepcopy(case.args))
        except Exception:
            continue
        if _agrees(exercise, wrong, got):
            failed["hint"] = mistake.message
            break
    return CheckResult(exercise.id, INCORRECT, f"{difference} ({where})", expected=describe_value(expected),
                       got=describe_value(got), **failed)
