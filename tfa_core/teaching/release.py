"""Copies of the course to hand out: one for students, without the answers, and one for instructors.

    tfa release --students OUT      # notebooks, package, tests, docs; no solutions/, no history
    tfa release --instructor OUT    # the same plus solutions/

Both copy the files git tracks (no history, no ``.git``, nothing untracked) into a new folder ``OUT``.

The student copy leaves out ``solutions/`` and replaces every exercise's
reference code that lives in ``tfa_core/teaching/exercises/`` (the ``reference_*`` functions and the
``reference=`` of each exercise) by its answers, recorded on the exercise's own cases when the release
is built (``recorded_answers.json``). ``check`` and ``tfa grade`` judge against those recordings and
print the same messages. Its tests skip what needs ``solutions/`` (``tests/conftest.py``), so the
README's test command passes in it as written.

What a determined student can still read, and why: the installed ``tfa_core`` itself implements the
model, and several exercises are checked against it directly (``alibi_slopes``, ``alibi_bias``,
``kronecker_lift``, ``channel_mix``, ``causal_lm_loss``, ``top_k_filter``, ``top_p_filter``): the
course compares what the learner builds with that code, so it cannot be hidden. The recorded answers
are values, not code, and a failed check prints the expected value anyway. The known mistakes of each
exercise stay readable (a wrong answer is often one sign away from the right one). A graded notebook
whose answer calls tfa_core's own implementation is flagged by ``tfa grade`` (run it on the
instructor copy, which knows the references), as are answers identical across students.
"""

from __future__ import annotations

import argparse
import ast
import json
import shutil
import subprocess
from pathlib import Path

__all__ = ["build_release", "add_release_command", "STUDENT_LEAVES_OUT"]

ROOT = Path(__file__).resolve().parents[2]
STUDENT_LEAVES_OUT = ("solutions/",)
EXERCISES = Path("tfa_core/teaching/exercises")
MACHINERY = {"__init__.py", "checking.py", "comparing.py", "transport.py"}


def _tracked(root: Path) -> list[str]:
    """The files git tracks under ``root`` (POSIX paths); ValueError outside a git checkout."""
    try:
        done = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise ValueError(f"{root} is not a git checkout (git ls-files failed: {error}); "
                         "release from a clone") from None
    return [name for name in done.stdout.decode("utf-8").split("\0") if name and (root / name).is_file()]


def _strip_references(source: str) -> tuple[str, list[str]]:
    """An exercise module with ``reference=...`` set to ``not_shipped`` and the ``reference_*`` functions
    removed (those nothing else in the module uses). Comments go too (the module is re-written from its
    syntax tree). Returns the new source and the names of the functions kept because something uses them."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Exercise":
            for keyword in node.keywords:
                if keyword.arg == "reference":
                    keyword.value = ast.Name("_not_shipped", ast.Load())
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    kept = []
    body = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("reference_"):
            if node.name in used:
                kept.append(node.name)
            else:
                continue
        body.append(node)
    position = next((i for i, node in enumerate(body) if isinstance(node, (ast.Import, ast.ImportFrom))
                     and getattr(node, "module", None) != "__future__"), len(body))
    body.insert(position, ast.parse("from .checking import not_shipped as _not_shipped").body[0])
    tree.body = body
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n", kept


def _record_answers() -> dict:
    """Each exercise's reference answer on each of its cases, as plain data (what the Judge computes)."""
    from .exercises import get_exercise, list_exercises
    from .exercises.checking import Judge
    from .exercises.transport import from_plain, to_plain

    recorded = {}
    for exercise_id in list_exercises():
        exercise = get_exercise(exercise_id)
        judge = Judge(exercise)
        answers = []
        for number, case in enumerate(judge.cases, 1):
            value = judge._call(exercise.reference, case, number)
            plain = json.loads(json.dumps(to_plain(value)))
            # too large to carry, or not plain data
            if exercise.differs(value, from_plain(plain)) is not None:
                raise ValueError(f"{exercise_id}, case {number}: the answer cannot be recorded as data")
            answers.append([case.label, plain])
        recorded[exercise_id] = answers
    return recorded


def build_release(out, students: bool, root: Path = ROOT) -> list[str]:
    """Write the student (``students=True``) or instructor copy into the new folder ``out``; returns notes
    on what was left out or kept."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} exists and is not empty; name a new folder")
    files = _tracked(root)
    notes = []
    for name in files:
        if students and name.startswith(STUDENT_LEAVES_OUT):
            continue
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, target)
    if students:
        notes.append(f"left out: {', '.join(STUDENT_LEAVES_OUT)}")
        recorded = _record_answers()
        (out / EXERCISES / "recorded_answers.json").write_text(json.dumps(recorded), encoding="utf-8")
        for module in sorted((out / EXERCISES).glob("*.py")):
            if module.name in MACHINERY:
                continue
            text, kept = _strip_references(module.read_text(encoding="utf-8"))
            module.write_text(text, encoding="utf-8")
            if kept:
                notes.append(f"{module.name}: kept {', '.join(kept)} (a mistake or case uses it)")
        notes.append(f"recorded the answers of {len(recorded)} exercises in "
                     f"{EXERCISES / 'recorded_answers.json'}")
    (out / "RELEASE.md").write_text(_release_note(students), encoding="utf-8")
    return notes


def _release_note(students: bool) -> str:
    if students:
        return ("# Student copy\n\nThis copy of the course has no reference solutions: exercises are checked "
                "against answers recorded when it was made "
                "(`tfa_core/teaching/exercises/recorded_answers.json`). "
                "Set up with `docs/SETUP.md`; the tests run with `TFA_QUICK=1 python -m pytest` "
                "(those that need the solutions are skipped). Check your own notebook as the grader will: "
                "`tfa grade course/03_alibi.ipynb`.\n")
    return ("# Instructor copy\n\nThe course with its reference solutions (`solutions/`); adding exercises: "
            "`docs/AUTHORING.md`. Make the students' copy with `tfa release --students OUT`; grade with "
            "`tfa grade ... --gradebook OUT` (see `tfa_core/teaching/gradebook.py`).\n")


def command_release(args: argparse.Namespace) -> int:
    students = args.students is not None
    out = args.students if students else args.instructor
    for note in build_release(out, students=students):
        print(note)
    print(f"wrote the {'student' if students else 'instructor'} copy to {out}")
    return 0


def add_release_command(commands) -> argparse.ArgumentParser:
    """Add ``release`` to the ``tfa`` command's subcommands."""
    release = commands.add_parser("release", help="write the course for students (no answers) or instructors",
                                  description=__doc__.split("\n\n")[0])
    which = release.add_mutually_exclusive_group(required=True)
    which.add_argument("--students", metavar="OUT", help="a new folder for the students' copy")
    which.add_argument("--instructor", metavar="OUT", help="a new folder for the instructors' copy")
    release.set_defaults(run_command=command_release)
    return release


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfa_core.teaching.release",
                                     description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_release_command(commands)
    args = parser.parse_args(["release", *(argv if argv is not None else __import__("sys").argv[1:])])
    try:
        return args.run_command(args)
    except ValueError as error:
        parser.error(str(error))
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
