"""The course's exercises and ``check``, which compares a learner's function with ``tfa_core``.

In a notebook::

    from tfa_core.teaching.exercises import check

    def slopes(n_head):
        ...                      # the learner's code
    check("03.slopes", slopes)   # correct / not attempted / what went wrong, on which input

One module per notebook holds its exercises (``tokens`` for 01, ``streams`` for 02, ``slopes`` for 03,
``mixing`` for 04, ``assembly`` for 05, ``schedules`` for 06, ``perplexity`` for 07, ``lens`` for 08), and
one module per "build it yourself" exercise: ``whole_model`` (05, the whole model as a class),
``training_loop`` (06, the loop that must match ``Trainer``) and ``kv_decoding`` (06, a key/value cache
by hand). ``checking`` is the machinery and ``comparing`` the comparisons that explain themselves.
``tfa grade`` (``tfa_core.teaching.grading``) runs the same checks on a class's notebooks.

An instructor's own exercises can live outside the package: a Python file that calls ``register``,
named in the environment variable ``TFA_EXERCISES`` (several separated by ``os.pathsep``), is loaded
here, in a notebook's kernel and in the grader's processes alike (``tfa grade --exercises FILE`` sets
it). ``docs/AUTHORING.md`` walks through adding one.
"""

import importlib.util as _importlib_util
import os as _os
from pathlib import Path as _Path

from . import assembly, lens, mixing, perplexity, schedules, slopes, streams, tokens  # noqa: F401  (each registers its exercises)
from . import kv_decoding, training_loop, whole_model  # noqa: F401  (05 and 06: the whole model, its loop, its cache)
from .checking import (
    CORRECT,
    ERROR,
    INCORRECT,
    NOT_ATTEMPTED,
    Case,
    CheckResult,
    Exercise,
    Mistake,
    check,
    get_exercise,
    list_exercises,
    register,
)

__all__ = [
    "check",
    "CheckResult",
    "Exercise",
    "Case",
    "Mistake",
    "get_exercise",
    "list_exercises",
    "CORRECT",
    "NOT_ATTEMPTED",
    "INCORRECT",
    "ERROR",
    "register",
    "load_exercises",
    "EXERCISES_ENV",
]

EXERCISES_ENV = "TFA_EXERCISES"
"""Python files of an instructor's own exercises, loaded on import (separated by ``os.pathsep``)."""

_LOADED: set = set()


def load_exercises(path) -> None:
    """Run an instructor's exercise file (which calls ``register``); once per file. A ValueError names
    a file that is not there."""
    path = _Path(path).expanduser().resolve()
    if path in _LOADED:
        return
    if not path.is_file():
        raise ValueError(f"{EXERCISES_ENV} names {path}, which is not a file; name the .py file that "
                         "registers your exercises")
    spec = _importlib_util.spec_from_file_location(f"tfa_exercises_{len(_LOADED)}_{path.stem}", path)
    module = _importlib_util.module_from_spec(spec)
    _LOADED.add(path)
    spec.loader.exec_module(module)


for _file in filter(None, _os.environ.get(EXERCISES_ENV, "").split(_os.pathsep)):
    load_exercises(_file)
