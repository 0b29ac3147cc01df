"""Grade the exercises in a class's course notebooks and print a score table.

    tfa grade alice/03_alibi.ipynb bob/03_alibi.ipynb --timeout 30 --strict
    python -m tfa_core.teaching.grading submissions/ --json
    tfa grade canvas.zip --roster roster.csv --points points.csv --gradebook grades/   # see gradebook.py

Each exercise's answer is found by its cell's tag (``exercise:03.slopes``; or a cell below it, up to the
next exercise, that defines the same function) and run on its own, in a separate
worker process, after the imports every notebook makes (``math``, ``torch``, ``torch.nn as nn``,
``torch.nn.functional as F``). Each exercise has its own time limit. An endless loop (``timeout``), an
exception (``error``), a syntax error, a cell the learner deleted (``missing``), a worker that dies
(``crashed``) or a notebook that cannot be read (``unreadable``) becomes a row of the table; none of
them stops the grading, and the run always ends with the table. A notebook's exercises share one
worker (torch is imported once per notebook); after a timeout or a crash a fresh worker carries on
with the rest.

Who decides. The learner's code runs in the worker, so anything in the worker can be changed by it:
the check's functions, torch, the pipe back to the grader. The worker therefore never decides a
verdict. For each case the grader asks it for one thing, what the learner's function returned on that
case's inputs, and the worker sends that back as plain data (JSON: numbers, strings, lists, and
tensors as dtype, shape and raw bytes; never pickle; see ``tfa_core.teaching.exercises.transport``).
The grading process, which never runs the learner's code, builds the same inputs itself, computes the
reference itself and compares, with the same ``Judge`` as ``check`` in a notebook, so the messages
are the same. Each request carries a fresh random nonce and the grader reads one reply per request,
parsed as data only: forged lines, forged "done" events, a flood of output or a patched ``torch.equal``
in the worker change nothing but the values the learner's code produced, and wrong values stay wrong.

What it cannot do: stop copying. A learner's process can always compute the right values by calling
tfa_core (it is installed) or running ``solutions/``. The grader flags that, as a note beside the
status, not a failure: the worker watches which tfa_core functions the learner's code calls (those
that the check's reference is made of) and whether solution code runs, and the grader reads the cell
for imports of tfa_core or the solutions and for reaching into the grader (frames, ``/proc``,
``sys.modules``, ``gc``). The watching happens in the learner's process and can itself be switched
off from there: it is best effort, a pointer for the instructor, not proof either way.

Grading runs the learner's code with your permissions: it is not a sandbox.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from tfa_core.teaching.exercises.checking import PREAMBLE  # noqa: F401  (the preamble, importable from here as before)

__all__ = ["Grade", "read_exercise_cells", "grade_notebook", "grade_notebooks", "format_table", "printable",
           "add_grade_command", "main"]

EXERCISE_TAG = "exercise:"
STARTUP_SECONDS = 120.0  # importing torch on a slow, busy machine
MAX_LINE = 128 * 2**20  # one reply from a worker: what the transport may send, and room to spare
MESSAGE_LIMIT = 1000  # characters of a message kept in a row
TIMEOUT = "timeout"
SYNTAX_ERROR = "syntax error"
MISSING = "missing"
CRASHED = "crashed"
UNREADABLE = "unreadable"


@dataclass
class Grade:
    """One row of the score table. ``flag`` is a note, not a failure: the answer seems to use
    tfa_core's own implementation or the solutions, or the cell reaches into the grader."""

    notebook: str
    exercise: str
    status: str
    message: str
    flag: str = ""
    passed: int = 0  # cases that agreed with the reference before the first that did not
    total: int = 0  # the exercise's cases (0 when the answer never ran)

    @property
    def correct(self) -> bool:
        return self.status == "correct"


# -- reading notebooks -----------------------------------------------------------------------------

def _kind(value) -> str:
    return "null" if value is None else type(value).__name__


def _notebook_number(value) -> str:
    """``tfa_course.notebook`` as two digits: ``"03"``, ``"3"`` and ``3`` all give ``"03"``."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 99:
        return f"{value:02d}"
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}", value):
        return value.zfill(2)
    raise ValueError(f"its metadata tfa_course.notebook is {value!r} ({_kind(value)}); expected the "
                     "course notebook's number, such as \"03\"")


def read_exercise_cells(path: str | os.PathLike,
                        name: str | None = None) -> tuple[str | None, dict[str, str]]:
    """The notebook's number (``"03"``) and, for each exercise, the source of the cell that holds its answer.

    The answer's cell is the last cell, from the cell tagged ``exercise:<id>`` up to the next exercise
    cell, that defines the exercise's function (``def`` or ``class`` at its top level); the tagged cell
    itself when none does. So an answer typed into a new cell below the stub counts, as it does for
    ``check`` in the notebook. When a learner has copied an exercise cell, the last copy counts.
    Exercises appear in the order of their cells.

    The number comes from the notebook's metadata (``tfa_course.notebook``, a string or an int), else
    from the two digits that start the file name (``name``, when given, stands for the file's name:
    the original name under an LMS's prefix), else from the exercise tags inside. Raises
    ``ValueError``, saying what is wrong, for a file that is not a well-formed notebook (not JSON,
    nested too deeply, metadata or tags of the wrong type).
    """
    from tfa_core.teaching.exercises import get_exercise

    path = Path(path)
    try:
        notebook = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"cannot read {path} as a notebook: {error}") from None
    except RecursionError:
        raise ValueError(f"cannot read {path} as a notebook: its JSON is nested too deeply") from None
    except MemoryError:
        raise ValueError(f"cannot read {path} as a notebook: too large") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise ValueError(f"{path} is not a Jupyter notebook (no list of cells)")
    metadata = notebook.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ValueError(f"its metadata is a {_kind(metadata)}, not a JSON object")
    course = metadata.get("tfa_course", {})
    if not isinstance(course, dict):
        raise ValueError(f"its metadata tfa_course is a {_kind(course)}, not a JSON object")
    number = _notebook_number(course["notebook"]) if course.get("notebook") is not None else None
    if number is None:
        match = re.match(r"(\d\d)", name if name is not None else path.name)
        number = match.group(1) if match else None
    sources: dict[str, str] = {}
    current, function = None, None  # the exercise whose answer a cell may hold, and its function's name
    for index, cell in enumerate(notebook["cells"]):
        if not isinstance(cell, dict):
            raise ValueError(f"cell {index} is a {_kind(cell)}, not a JSON object")
        cell_metadata = cell.get("metadata", {})
        if not isinstance(cell_metadata, dict):
            raise ValueError(f"cell {index}'s metadata is a {_kind(cell_metadata)}, not a JSON object")
        tags = cell_metadata.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise ValueError(f"cell {index}'s tags are {_kind(tags)}, not a list of strings")
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)
        if not isinstance(source, str):
            raise ValueError(f"cell {index}'s source is a {_kind(source)}, not text")
        tagged = [tag[len(EXERCISE_TAG):] for tag in tags if tag.startswith(EXERCISE_TAG)]
        for exercise_id in tagged:
            sources.pop(exercise_id, None)  # a copy moves the exercise to where the copy is
            sources[exercise_id] = source
        if tagged:
            current = tagged[-1]
            try:
                function = get_exercise(current).function
            except ValueError:
                function = None
        elif current is not None and function is not None and _defines(source, function):
            sources[current] = source
    if number is None and sources:
        numbers = {exercise_id.split(".", 1)[0] for exercise_id in sources}
        number = numbers.pop() if len(numbers) == 1 else None
    return number, sources


def _defines(source: str, name: str) -> bool:
    from tfa_core.teaching.exercises.checking import defines

    return defines(source, name)


# -- the worker: runs the learner's code, and only reports what it returned ------------------------------

def _short(text: str, limit: int = MESSAGE_LIMIT) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _run_cell(exercise_id: str, source: str, state: dict) -> dict:
    """Run one answer's cell in the worker; keep what it defines in ``state``; say how it went."""
    from tfa_core.teaching.exercises import get_exercise
    from tfa_core.teaching.exercises.checking import build_cases, describe_value, run_exercise_cell

    state.clear()
    exercise = get_exercise(exercise_id)
    function, failure = run_exercise_cell(exercise, source, f"<exercise cell {exercise_id}>")
    if function is None:
        return failure
    if not callable(function):
        return dict(cell="not callable", shown=_short(describe_value(function), 300),
                    kind=_short(type(function).__name__, 100))
    state.update(exercise=exercise, function=function, cases=build_cases(exercise))
    return dict(cell="ok")


def _serve(request: dict, sources: dict, state: dict) -> dict:
    from tfa_core.teaching.exercises.checking import run_case

    if request.get("do") == "cell":
        return _run_cell(request["id"], sources[request["id"]], state)
    if (request.get("do") == "case" and state.get("exercise") is not None
            and state["exercise"].id == request["id"]):
        number = request["number"]
        return dict(attempt=run_case(state["exercise"], state["function"], state["cases"][number - 1],
                                     number))
    return dict(failure=f"the worker did not understand the request {request.get('do')!r}")


def worker_main() -> None:
    """Entry point of a worker process: read the cells and then requests as JSON lines on stdin;
    answer each request with one JSON line on stdout, carrying the request's nonce."""
    control = os.fdopen(os.dup(0), "r", encoding="utf-8")
    report = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    # The learner's prints (and C-level output) go nowhere; the report keeps its own channel.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    sys.stdout = open(os.devnull, "w", encoding="utf-8")
    sys.stdin = open(os.devnull, encoding="utf-8")
    setup = json.loads(control.readline())

    def send(nonce: str, **message) -> None:
        report.write(json.dumps(dict(message, nonce=nonce)) + "\n")
        report.flush()

    import tfa_core.teaching.exercises  # noqa: F401  -- torch and the registry, before any clock starts

    send(setup["nonce"], ready=True)
    state: dict = {}
    for line in control:
        request = json.loads(line)
        try:
            reply = _serve(request, setup["sources"], state)
        except BaseException as error:  # noqa: BLE001
            reply = dict(failure=_short(f"the grader could not run it: {error!r}"))
        send(request["nonce"], **reply)
    os._exit(0)  # do not wait for threads the learner's code may have started


class _TimedOut(Exception):
    pass


class _Died(Exception):
    pass


class _Worker:
    """A worker process and the grader's end of its pipes. :meth:`ask` sends one request and waits for
    the one reply that carries its nonce; every other line the worker writes is dropped unread."""

    def __init__(self, sources: dict[str, str]):
        command = [sys.executable, "-c", "from tfa_core.teaching.grading import worker_main; worker_main()"]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, start_new_session=(os.name == "posix"))
        self._lock = threading.Lock()
        self._replies: queue.Queue = queue.Queue()
        self._expected: str | None = secrets.token_hex(16)
        self.spent = 0.0  # seconds spent waiting for the worker, reset per exercise
        setup = json.dumps(dict(nonce=self._expected, sources=sources)) + "\n"
        threading.Thread(target=self._write, args=(setup,), daemon=True).start()
        threading.Thread(target=self._read, daemon=True).start()

    def _write(self, line: str) -> bool:
        try:
            self.process.stdin.write(line.encode("utf-8"))
            self.process.stdin.flush()
            return True
        except (OSError, ValueError):
            return False

    def _read(self) -> None:
        stream = self.process.stdout
        try:
            while True:
                line = stream.readline(MAX_LINE)
                if not line:
                    break
                if not line.endswith(b"\n") and len(line) >= MAX_LINE:  # too long to be ours: skip it
                    while line and not line.endswith(b"\n"):
                        line = stream.readline(MAX_LINE)
                    continue
                with self._lock:
                    nonce = self._expected
                if nonce is None or nonce.encode("ascii") not in line:
                    continue  # not an answer to the question now asked
                try:
                    message = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if type(message) is not dict or message.get("nonce") != nonce:
                    continue
                with self._lock:
                    if self._expected != nonce:
                        continue
                    self._expected = None  # one reply per request
                self._replies.put(message)
        except (OSError, ValueError):
            pass
        self._replies.put(None)  # end of output: the worker has exited

    def _wait(self, seconds: float) -> dict:
        started = time.monotonic()
        try:
            message = self._replies.get(timeout=max(seconds, 0.001))
        except queue.Empty:
            raise _TimedOut from None
        finally:
            self.spent += time.monotonic() - started
        if message is None:
            raise _Died
        return message

    def ready(self, seconds: float) -> None:
        self._wait(seconds)

    def ask(self, seconds: float, **request) -> dict:
        nonce = secrets.token_hex(16)
        with self._lock:
            self._expected = nonce
        if not self._write(json.dumps(dict(request, nonce=nonce)) + "\n"):
            raise _Died
        return self._wait(seconds)

    def stop(self) -> None:
        """Kill the worker and anything it started."""
        process = self.process
        if process.poll() is None:
            try:
                if os.name == "posix":
                    os.killpg(process.pid, signal.SIGKILL)
                else:
                    process.kill()
            except (ProcessLookupError, PermissionError):
                process.kill()
        process.wait()


# -- grading: the verdict is computed here, from the values the worker sent ------------------------------

_REACHING = re.compile(
    r"^[ \t]*(?:from|import)[ \t]+(?:tfa_core|solutions)\b"  # imports of the answers
    r"|\b(?:sys\._getframe|inspect\.(?:stack|currentframe|getouterframes)|f_back|f_globals|gc\.get_(?:objects|referrers)"
    r"|sys\.modules|/proc/self|__import__|importlib|setprofile|settrace|runpy|solutions/)",
    re.MULTILINE)


def _reaches(source: str) -> str:
    """What in the cell's text imports the answers or reaches into the grader (read, never run here)."""
    found = list(dict.fromkeys(match.group(0).strip() for match in _REACHING.finditer(source[:1_000_000])))
    if not found:
        return ""
    return "the cell uses " + ", ".join(f"`{_short(text, 60)}`" for text in found[:5])


def _outcome(result, source_flag: str = "") -> dict:
    """A row's status, message and flag from a ``CheckResult``."""
    message = result.message
    if not result.correct:
        for name, value in result.details():
            if name in ("input", "hint") or (name == "got" and result.status == "error"):
                message += f"; {name}: {' '.join(value.split())}"
    flag = "; ".join(note for note in (result.flag, source_flag) if note)
    return dict(status=result.status, message=message, flag=flag, passed=result.passed, total=result.total)


def _grade_exercise(worker: _Worker, exercise_id: str, source: str, timeout: float) -> dict:
    """Grade one exercise with this worker; raises ``_TimedOut`` or ``_Died``."""
    from tfa_core.teaching.exercises import CheckResult, get_exercise
    from tfa_core.teaching.exercises.checking import ERROR, Judge, not_callable

    exercise = get_exercise(exercise_id)
    source_flag = _reaches(source)
    worker.spent = 0.0
    worker.progress = (0, 0)
    reply = worker.ask(timeout, do="cell", id=exercise_id)
    cell = reply.get("cell")
    if cell in (SYNTAX_ERROR, "error", MISSING):
        return dict(status=cell, message=_short(reply.get("message")), flag=source_flag)
    if cell == "not callable":
        return _outcome(not_callable(exercise, _short(reply.get("shown"), 300),
                                     _short(reply.get("kind"), 100)),
                        source_flag)
    if cell != "ok":
        return dict(status=ERROR,
                    message=_short(reply.get("failure") or "the worker sent no answer the grader "
                                   "could read"),
                    flag=source_flag)
    try:
        judge = Judge(exercise)
    except Exception as error:  # a bug on our side
        return _outcome(CheckResult(exercise.id, ERROR,
                                    f"the check itself failed to build its inputs: {error!r}"),
                        source_flag)
    for number in range(1, judge.total + 1):
        worker.progress = (number - 1, judge.total)
        reply = worker.ask(timeout - worker.spent, do="case", id=exercise_id, number=number)
        if "attempt" not in reply:  # the worker failed: only ever a failure, whatever the reply claims
            return dict(status=ERROR,
                        message=_short(f"case {number} of {judge.total} could not be run: "
                                       f"{reply.get('failure') or 'no answer'}"),
                        flag=source_flag, passed=number - 1, total=judge.total)
        failure = judge.judge(number, reply["attempt"])
        if failure is not None:
            return _outcome(failure, source_flag)
    return _outcome(judge.correct(), source_flag)


def _run_jobs(jobs: list[dict], timeout: float) -> dict[str, dict]:
    """Grade jobs (``id``, ``source``) in workers, one at a time, each within ``timeout`` seconds of the
    worker's time; outcome per id."""
    outcomes: dict[str, dict] = {}
    pending = list(jobs)
    while pending:
        worker = _Worker({job["id"]: job["source"] for job in pending})
        try:
            try:
                worker.ready(STARTUP_SECONDS)
            except (_TimedOut, _Died):
                for job in pending:
                    outcomes[job["id"]] = dict(status=CRASHED, message="the grading worker did not start "
                                               "(can this Python import tfa_core?)")
                return outcomes
            while pending:
                job = pending.pop(0)
                try:
                    outcomes[job["id"]] = _grade_exercise(worker, job["id"], job["source"], timeout)
                except _TimedOut:
                    passed, total = getattr(worker, "progress", (0, 0))
                    outcomes[job["id"]] = dict(status=TIMEOUT,
                                               message=f"still running after {timeout:g} s "
                                               "(an endless loop?); stopped"
                                               + (f" at case {passed + 1} of {total}" if total else ""),
                                               flag=_reaches(job["source"]), passed=passed, total=total)
                    break  # a fresh worker for the rest
                except _Died:
                    passed, total = getattr(worker, "progress", (0, 0))
                    outcomes[job["id"]] = dict(status=CRASHED, passed=passed, total=total,
                                               message="the Python process running this "
                                               "exercise died (os._exit, a crash, or out of memory)",
                                               flag=_reaches(job["source"]))
                    break
        finally:
            worker.stop()
    return outcomes


def grade_notebook(path: str | os.PathLike, timeout: float = 30.0, name: str | None = None) -> list[Grade]:
    """One row per exercise of this notebook, in the order of its cells (an exercise whose cell was
    deleted last; none for a notebook without exercises, such as 00); one ``unreadable`` row for a file
    that is not a well-formed course notebook. ``name`` stands for the file's name when telling which
    course notebook it is (the original name under an LMS's prefix)."""
    try:
        return _grade_notebook(path, timeout, name)
    except Exception as error:  # noqa: BLE001 -- one odd notebook must not stop the class's table
        return [Grade(str(path), "-", UNREADABLE, _short(f"the grader failed on this notebook: {error!r}"))]


def _grade_notebook(path, timeout: float, original: str | None = None) -> list[Grade]:
    from tfa_core.teaching.exercises import list_exercises

    name = str(path)
    try:
        number, sources = (read_exercise_cells(path) if original is None
                           else read_exercise_cells(path, original))
    except ValueError as error:
        return [Grade(name, "-", UNREADABLE, _short(str(error)))]
    if number is None:
        return [Grade(name, "-", UNREADABLE, "cannot tell which course notebook this is: neither its "
                      "metadata (tfa_course.notebook), nor its file name (01_...), nor its exercise "
                      "cells say")]
    registered = list_exercises(number)
    exercise_ids = [i for i in sources if i in registered] + [i for i in registered if i not in sources]
    jobs = [dict(id=i, source=sources[i]) for i in exercise_ids if i in sources]
    outcomes = _run_jobs(jobs, timeout) if jobs else {}
    rows = []
    for exercise_id in exercise_ids:
        if exercise_id in outcomes:
            outcome = outcomes[exercise_id]
            rows.append(Grade(name, exercise_id, outcome["status"], _short(outcome["message"]),
                              _short(outcome.get("flag", "")), outcome.get("passed", 0),
                              outcome.get("total", 0)))
        else:
            rows.append(Grade(name, exercise_id, MISSING, f"no cell tagged {EXERCISE_TAG}{exercise_id} "
                              "(was the exercise cell deleted?)"))
    return rows


def grade_notebooks(paths, timeout: float = 30.0, jobs: int = 1, progress=None) -> list[Grade]:
    """Rows for every notebook; a folder stands for the ``*.ipynb`` files under it, and a ``.zip`` file
    for the notebooks inside it (unpacked into a temporary folder; rows name them ``file.zip:member``).
    LMS file names (``smithalice_10001_555002_03_alibi.ipynb``) are understood. ``progress(done, total,
    name, rows)``, when given, is called as each notebook is finished."""
    import tempfile

    from .gradebook import collect

    with tempfile.TemporaryDirectory(prefix="tfa-grade-") as workdir:
        notes: list[str] = []
        submissions = collect(paths, workdir, notes)
        for note in notes:
            print(f"note: {printable(note)}", file=sys.stderr)
        total = len(submissions)

        def grade(position_submission):
            position, submission = position_submission
            rows = grade_notebook(submission.path, timeout, submission.renamed)
            for row in rows:
                row.notebook = submission.shown
            if progress is not None:
                progress(position, total, submission.shown, rows)
            return rows

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            per_notebook = list(pool.map(grade, enumerate(submissions, start=1)))
    return [row for rows in per_notebook for row in rows]


def progress_printer(stream=None):
    """A ``progress`` for :func:`grade_notebooks` that writes one line to ``stream`` (stderr) as each
    notebook is finished: ``[ 3/19] alice/03_alibi.ipynb: 3 of 4 correct (41 s)``."""
    started = time.monotonic()
    lock = threading.Lock()

    def progress(done: int, total: int, name: str, rows: list[Grade]) -> None:
        width = len(str(total))
        correct = sum(row.correct for row in rows)
        with lock:
            print(f"[{done:>{width}}/{total}] {printable(name)}: {correct} of {len(rows)} correct "
                  f"({time.monotonic() - started:.0f} s)", file=stream or sys.stderr, flush=True)

    return progress


_SHOWN_AS_SPACE = "\n\t\v\f"


def printable(text: str) -> str:
    """``text`` safe for a terminal: line breaks and tabs become spaces, and every other control or
    format character (``\\r``, ANSI escapes, bidirectional overrides, lone surrogates) is written as
    its escape, so a message can neither forge nor hide rows."""
    out = []
    for character in str(text):
        if character in _SHOWN_AS_SPACE:
            out.append(" ")
        elif unicodedata.category(character) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            out.append(character.encode("unicode_escape", "backslashreplace").decode("ascii"))
        else:
            out.append(character)
    return "".join(out)


def format_table(grades: list[Grade]) -> str:
    """The score table: one row per exercise, then each notebook's score and the total. A flagged row's
    message starts with ``[flagged: ...]``."""
    header = Grade("notebook", "exercise", "status", "message")
    shown = [[printable(g.notebook), printable(g.exercise), printable(g.status),
              printable(f"[flagged: {g.flag}] {g.message}" if g.flag else g.message)]
             for g in [header, *grades]]
    widths = [max(len(row[i]) for row in shown) for i in range(3)]
    lines = []
    for i, row in enumerate(shown):
        lines.append("  ".join(value.ljust(width) for value, width in zip(row[:3], widths)) + "  " + row[3])
        if i == 0:
            lines.append("  ".join("-" * width for width in widths) + "  " + "-" * 7)
    lines.append("")
    notebooks = list(dict.fromkeys(g.notebook for g in grades))
    for notebook in notebooks:
        rows = [g for g in grades if g.notebook == notebook]
        flagged = sum(bool(g.flag) for g in rows)
        lines.append(f"{printable(notebook)}: {sum(g.correct for g in rows)} of {len(rows)} correct"
                     + (f" ({flagged} flagged)" if flagged else ""))
    flagged = sum(bool(g.flag) for g in grades)
    lines.append(f"total: {sum(g.correct for g in grades)} of {len(grades)} correct"
                 + (f" ({flagged} flagged)" if flagged else ""))
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------------------

def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="+", help="learners' notebooks (.ipynb), folders of them, or .zip "
                        "files (per-student folders and Canvas or Moodle file names are understood)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds each exercise may run before it is stopped (default 30)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 unless every exercise is correct")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at the same time (default 1)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument("--exercises", action="append", default=[], metavar="FILE",
                        help="an instructor's own exercise file (it calls register); may be repeated; "
                             "the same as listing it in TFA_EXERCISES")
    book = parser.add_argument_group("gradebook", "one row per student, a CSV for the LMS and feedback files "
                                     "(see tfa_core/teaching/gradebook.py)")
    book.add_argument("--gradebook", metavar="FOLDER",
                      help="write FOLDER/grades.csv, FOLDER/feedback/<student>.md and FOLDER/rows.json")
    book.add_argument("--roster", metavar="CSV",
                      help="the class list: a column id, optionally name and aliases; "
                      "everyone on it gets a row, handed in or not")
    book.add_argument("--points", metavar="CSV", help="columns exercise (an id, a notebook such as 03, or *) "
                      "and points, optionally partial (yes/no); its notebooks are the gradebook's")
    book.add_argument("--partial-credit", action="store_true",
                      help="an exercise that is not correct earns points x cases passed / cases")
    book.add_argument("--deadline", metavar="WHEN",
                      help="files modified after this (2025-03-14T23:59) are late")
    book.add_argument("--late-penalty", type=float, default=0.0, metavar="FRACTION",
                      help="taken off a late notebook's score (default 0: late is noted only)")


def command_grade(args: argparse.Namespace) -> int:
    """Grade, print, and return the exit code (1 under ``--strict`` when anything is not correct)."""
    if not args.timeout > 0:
        raise ValueError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
    if args.exercises:  # here, and in every worker (they inherit the environment)
        from tfa_core.teaching.exercises import EXERCISES_ENV, load_exercises

        for file in args.exercises:
            load_exercises(file)
        known = [f for f in os.environ.get(EXERCISES_ENV, "").split(os.pathsep) if f]
        os.environ[EXERCISES_ENV] = os.pathsep.join(known + [str(Path(f).resolve()) for f in args.exercises])
    progress = None if args.quiet else progress_printer()
    if args.gradebook:
        from .gradebook import run_gradebook

        return run_gradebook(args, progress or (lambda *a: None))
    for option in ("roster", "points", "deadline"):
        if getattr(args, option):
            raise ValueError(f"--{option} is for the gradebook: add --gradebook FOLDER")
    grades = grade_notebooks(args.notebooks, timeout=args.timeout, jobs=args.jobs, progress=progress)
    if args.json:
        print(json.dumps([asdict(g) for g in grades], indent=1))
    else:
        print(format_table(grades))
    return 1 if args.strict and not all(g.correct for g in grades) else 0


def add_grade_command(commands) -> argparse.ArgumentParser:
    """Add ``grade`` to the ``tfa`` command's subcommands, and ``release`` beside it (the course's
    student and instructor copies, :mod:`tfa_core.teaching.release`), so that ``tfa_core/cli.py`` wires
    the teaching commands with one call."""
    from .release import add_release_command

    add_release_command(commands)
    grade = commands.add_parser("grade", help="grade the exercises in course notebooks",
                                description=__doc__.split("\n\n")[0])
    _add_arguments(grade)
    grade.set_defaults(run_command=command_grade)
    return grade


def main(argv: list[str] | None = None) -> int:
    """``python -m tfa_core.teaching.grading NOTEBOOK... [--timeout S] [--strict] [--jobs N] [--json]``."""
    parser = argparse.ArgumentParser(prog="python -m tfa_core.teaching.grading",
                                     description=__doc__.split("\n\n")[0])
    _add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return command_grade(args)
    except ValueError as error:
        parser.error(str(error))
        return 2


if __name__ == "__main__":
    sys.exit(main())
