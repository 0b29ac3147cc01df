"""Grade the exercises in a class's course notebooks and print a score table.

    tfa grade alice/03_alibi.ipynb bob/03_alibi.ipynb --timeout 30 --strict
    python -m tfa_core.teaching.grading submissions/ --json

Each exercise cell is found by its tag (``exercise:03.slopes``) and run on its own, in a separate
worker process, after the imports every notebook makes (``math``, ``torch``, ``torch.nn as nn``,
``torch.nn.functional as F``); then the same ``check`` as in the notebook runs on the function it
defines. Each exercise has its own time limit. An endless loop (``timeout``), an exception
(``error``), a syntax error, a cell the learner deleted (``missing``) or a worker that dies
(``crashed``) becomes a row of the table; none of them stops the grading. A notebook's exercises share
one worker (torch is imported once per notebook); after a timeout or a crash a fresh worker carries on
with the rest.

Grading runs the learner's code with your permissions: it is not a sandbox.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["Grade", "read_exercise_cells", "grade_notebook", "grade_notebooks", "format_table",
           "add_grade_command", "main"]

PREAMBLE = "import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
"""What the grader runs before each exercise cell: the imports at the top of every notebook."""

EXERCISE_TAG = "exercise:"
STARTUP_SECONDS = 120.0  # importing torch on a slow, busy machine
TIMEOUT = "timeout"
SYNTAX_ERROR = "syntax error"
MISSING = "missing"
CRASHED = "crashed"
UNREADABLE = "unreadable"


@dataclass
class Grade:
    """One row of the score table."""

    notebook: str
    exercise: str
    status: str
    message: str

    @property
    def correct(self) -> bool:
        return self.status == "correct"


# -- reading notebooks -----------------------------------------------------------------------------

def read_exercise_cells(path: str | os.PathLike) -> tuple[str | None, dict[str, str]]:
    """The notebook's number (``"03"``) and the source of each tagged exercise cell.

    The number comes from the notebook's metadata (``tfa_course.notebook``), or else from the two
    digits that start the file name. When a learner has copied an exercise cell, the last copy counts.
    Raises ``ValueError`` for a file that is not a notebook.
    """
    path = Path(path)
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {path} as a notebook: {error}") from None
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise ValueError(f"{path} is not a Jupyter notebook (no list of cells)")
    number = (notebook.get("metadata") or {}).get("tfa_course", {}).get("notebook")
    if number is None:
        match = re.match(r"(\d\d)", path.name)
        number = match.group(1) if match else None
    sources: dict[str, str] = {}
    for cell in notebook["cells"]:
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        tags = (cell.get("metadata") or {}).get("tags") or []
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        for tag in tags:
            if isinstance(tag, str) and tag.startswith(EXERCISE_TAG):
                sources[tag[len(EXERCISE_TAG):]] = source
    return number, sources


# -- the worker: runs one notebook's exercise cells, one after the other ------------------------------

def _as_python(source: str) -> str:
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


def _run_exercise(exercise_id: str, source: str) -> dict:
    """Run one exercise cell and its check; a dict with ``status`` and ``message``."""
    from tfa_core.teaching.exercises import check, get_exercise

    exercise = get_exercise(exercise_id)
    try:
        code = compile(_as_python(source), f"<exercise cell {exercise_id}>", "exec")
    except SyntaxError as error:
        where = f"line {error.lineno}: {(error.text or '').strip()}" if error.lineno else ""
        return dict(status=SYNTAX_ERROR, message=f"{error.msg} ({where})" if where else error.msg)
    namespace: dict = {"__name__": "__exercise__"}
    try:
        exec(PREAMBLE, namespace)
        exec(code, namespace)
    except BaseException as error:  # noqa: BLE001 -- whatever the cell does, report it
        hint = ""
        if isinstance(error, NameError):
            hint = ("; the grader runs the exercise cell on its own, so everything the function "
                    "needs must be defined in that cell")
        return dict(status="error", message=f"the cell raised {type(error).__name__}: {error}{hint}")
    function = namespace.get(exercise.function)
    if function is None:
        return dict(status=MISSING, message=f"the exercise cell does not define `{exercise.function}`")
    result = check(exercise_id, function)
    message = result.message
    if not result.correct:
        for name, value in result.details():
            if name in ("input", "hint") or (name == "got" and result.status == "error"):
                message += f"; {name}: {' '.join(value.split())}"
    return dict(status=result.status, message=message)


def worker_main() -> None:
    """Entry point of a worker process: read jobs as JSON on stdin, report on stdout."""
    jobs = json.loads(sys.stdin.read())
    # The learner's prints (and C-level output) go nowhere; the report keeps its own channel.
    report = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    sys.stdout = open(os.devnull, "w", encoding="utf-8")

    def send(**message) -> None:
        report.write(json.dumps(message) + "\n")
        report.flush()

    import tfa_core.teaching.exercises  # noqa: F401  -- torch and the registry, before any clock starts

    send(event="ready")
    for job in jobs:
        send(event="start", id=job["id"])
        try:
            outcome = _run_exercise(job["id"], job["source"])
        except BaseException as error:  # noqa: BLE001
            outcome = dict(status="error", message=f"the grader could not run it: {error!r}")
        send(event="done", id=job["id"], **outcome)
    os._exit(0)  # do not wait for threads the learner's code may have started


def _start_worker(jobs: list[dict]) -> tuple[subprocess.Popen, queue.Queue]:
    command = [sys.executable, "-c", "from tfa_core.teaching.grading import worker_main; worker_main()"]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, encoding="utf-8",
                               start_new_session=(os.name == "posix"))
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)  # end of output: the worker has exited

    threading.Thread(target=read, daemon=True).start()
    process.stdin.write(json.dumps(jobs))
    process.stdin.close()
    return process, lines


def _stop_worker(process: subprocess.Popen) -> None:
    """Kill the worker and anything it started."""
    if process.poll() is None:
        try:
            if os.name == "posix":
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        except ProcessLookupError:
            pass
    process.wait()


def _next_message(lines: queue.Queue, seconds: float) -> dict | None:
    """The worker's next message; ``None`` when it exited; ``queue.Empty`` when time ran out."""
    while True:
        line = lines.get(timeout=seconds)
        if line is None:
            return None
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue  # not ours


def _run_jobs(jobs: list[dict], timeout: float) -> dict[str, dict]:
    """Run jobs in workers, one at a time, each within ``timeout`` seconds; outcome per id."""
    outcomes: dict[str, dict] = {}
    pending = list(jobs)
    while pending:
        process, lines = _start_worker(pending)
        try:
            try:
                ready = _next_message(lines, STARTUP_SECONDS)
            except queue.Empty:
                ready = None
            if ready is None or ready.get("event") != "ready":
                for job in pending:
                    outcomes[job["id"]] = dict(status=CRASHED, message="the grading worker did not start "
                                               "(can this Python import tfa_core?)")
                return outcomes
            while pending:
                current = pending[0]["id"]
                try:
                    message = _next_message(lines, timeout)
                    while message is not None and message.get("event") == "start":
                        message = _next_message(lines, timeout)
                except queue.Empty:
                    outcomes[current] = dict(status=TIMEOUT, message=f"still running after {timeout:g} s "
                                             "(an endless loop?); stopped")
                    pending.pop(0)
                    break  # a fresh worker for the rest
                if message is None:
                    outcomes[current] = dict(status=CRASHED, message="the Python process running this "
                                             "exercise died (os._exit, a crash, or out of memory)")
                    pending.pop(0)
                    break
                outcomes[message["id"]] = dict(status=message["status"], message=message["message"])
                pending = [job for job in pending if job["id"] != message["id"]]
        finally:
            _stop_worker(process)
    return outcomes


# -- grading ---------------------------------------------------------------------------------------

def grade_notebook(path: str | os.PathLike, timeout: float = 30.0) -> list[Grade]:
    """One row per exercise of this notebook, in course order (none for a notebook without exercises,
    such as 00)."""
    from tfa_core.teaching.exercises import list_exercises

    name = str(path)
    try:
        number, sources = read_exercise_cells(path)
    except ValueError as error:
        return [Grade(name, "-", UNREADABLE, str(error))]
    if number is None:
        return [Grade(name, "-", UNREADABLE, "cannot tell which course notebook this is: neither its "
                      "metadata (tfa_course.notebook) nor its file name (01_...) says")]
    exercise_ids = list_exercises(number)
    jobs = [dict(id=i, source=sources[i]) for i in exercise_ids if i in sources]
    outcomes = _run_jobs(jobs, timeout) if jobs else {}
    rows = []
    for exercise_id in exercise_ids:
        if exercise_id in outcomes:
            rows.append(Grade(name, exercise_id, outcomes[exercise_id]["status"], outcomes[exercise_id]["message"]))
        else:
            rows.append(Grade(name, exercise_id, MISSING, f"no cell tagged {EXERCISE_TAG}{exercise_id} "
                              "(was the exercise cell deleted?)"))
    return rows


def grade_notebooks(paths, timeout: float = 30.0, jobs: int = 1) -> list[Grade]:
    """Rows for every notebook; a folder stands for the ``*.ipynb`` files under it."""
    notebooks: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            notebooks.extend(p for p in sorted(path.rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts)
        else:
            notebooks.append(path)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        per_notebook = list(pool.map(lambda p: grade_notebook(p, timeout), notebooks))
    return [row for rows in per_notebook for row in rows]


def format_table(grades: list[Grade]) -> str:
    """The score table: one row per exercise, then each notebook's score and the total."""
    header = Grade("notebook", "exercise", "status", "message")
    widths = [max(len(getattr(g, field)) for g in [header, *grades])
              for field in ("notebook", "exercise", "status")]
    lines = []
    for i, grade in enumerate([header, *grades]):
        lines.append("  ".join(value.ljust(width) for value, width in
                               zip((grade.notebook, grade.exercise, grade.status), widths)) + "  " + grade.message)
        if i == 0:
            lines.append("  ".join("-" * width for width in widths) + "  " + "-" * 7)
    lines.append("")
    notebooks = list(dict.fromkeys(g.notebook for g in grades))
    for notebook in notebooks:
        rows = [g for g in grades if g.notebook == notebook]
        lines.append(f"{notebook}: {sum(g.correct for g in rows)} of {len(rows)} correct")
    lines.append(f"total: {sum(g.correct for g in grades)} of {len(grades)} correct")
    return "\n".join(lines)


# -- command line ----------------------------------------------------------------------------------

def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebooks", nargs="+", help="learners' notebooks (.ipynb), or folders of them")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds each exercise may run before it is stopped (default 30)")
    parser.add_argument("--strict", action="store_true",
                        help="exit with status 1 unless every exercise is correct")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at the same time (default 1)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")


def command_grade(args: argparse.Namespace) -> int:
    """Grade, print, and return the exit code (1 under ``--strict`` when anything is not correct)."""
    if not args.timeout > 0:
        raise ValueError(f"--timeout must be a positive number of seconds, got {args.timeout}")
    if args.jobs < 1:
        raise ValueError(f"--jobs must be at least 1, got {args.jobs}")
    grades = grade_notebooks(args.notebooks, timeout=args.timeout, jobs=args.jobs)
    if args.json:
        print(json.dumps([asdict(g) for g in grades], indent=1))
    else:
        print(format_table(grades))
    return 1 if args.strict and not all(g.correct for g in grades) else 0


def add_grade_command(commands) -> argparse.ArgumentParser:
    """Add ``grade`` to the ``tfa`` command's subcommands."""
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
