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
"""

from . import assembly, lens, mixing, perplexity, schedules, slopes, streams, tokens  # noqa: F401  (each registers its exercises)
from . import whole_model, training_loop, kv_decoding  # noqa: F401,E402  (05 and 06: the whole model, its loop, its cache)
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
]
