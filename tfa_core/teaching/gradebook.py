"""A class's gradebook from what an LMS hands back: one row per student, a CSV, and feedback to return.

    tfa grade submissions.zip --roster roster.csv --points points.csv --gradebook out/

``tfa grade`` grades notebooks; with ``--gradebook OUT`` it also works out whose they are and writes
``OUT/grades.csv`` (one row per student: a score per exercise and per notebook, the total, what was
late, notes), ``OUT/feedback/<student>.md`` (each exercise's message, to hand back) and
``OUT/rows.json`` (every graded row, for scripts).

What it reads. Files and folders of notebooks, and ``.zip`` files of them (unpacked into a temporary
folder, never beside them). Whose a notebook is comes from, in order:

- Canvas's file names, ``smithalice_10001_555002_03_alibi.ipynb`` (``name[_LATE]_userid_fileid_original``;
  a resubmitted file's original name may end in ``-1``, ``-2``);
- Moodle's, ``Alice Smith_12345_assignsubmission_file_03_alibi.ipynb``, or its folder per student
  ``Alice Smith_12345_assignsubmission_file_/03_alibi.ipynb``;
- a folder per student, ``alice/03_alibi.ipynb`` (the first folder under what you named);
- else the file name before the notebook's two digits, ``alice_03_alibi.ipynb``, or the whole stem.

Which course notebook a file is comes from its metadata, else its original file name (under the LMS's
prefix), else the exercise tags in its cells, so a notebook whose metadata is gone still counts.

The roster (optional, CSV): a column ``id`` (what the LMS matches grades on when you import them: a
Canvas SIS id or user id, a Moodle username or email), optionally ``name`` and ``aliases`` (other names
the LMS's files use, separated by ``;``: ``smithalice;10001``). A file is matched to the row whose id,
name (either order, spaces and case ignored) or aliases equal its student name or one of the numbers
the LMS put in its name. Everyone on the roster gets a row, with zeros and a note when nothing came in;
files that match no one get their own rows, noted "not on the roster".

The points file (optional, CSV): columns ``exercise`` and ``points``, and optionally ``partial``
(``yes``/``no``). ``exercise`` is an id (``03.slopes``), a notebook (``03``: each of its exercises) or
``*`` (every exercise). When it names notebooks, those are the notebooks of the gradebook; otherwise
every notebook someone handed in. Without a points file each exercise is worth 1. Partial credit
(``partial`` or ``--partial-credit``) gives an exercise that is not correct ``points * passed / cases``:
the cases that agreed with the reference before the first that did not (a timeout keeps the cases done).

Resubmissions: of several files of one notebook from one student, the newest counts (by the number the
LMS gave the file when every version has one, else by the file's time); the others are named in the
notes. Late: Canvas marks a late file ``LATE``; ``--deadline`` marks files modified after it;
``--late-penalty 0.1`` takes that fraction off a late notebook's score (default: noted, no penalty).

Flags for the instructor (never in the feedback): answers that call tfa_core's own implementation or
run the solutions (from the grader), and answers whose code is the same as another student's
(comments and layout ignored).
"""

from __future__ import annotations

import ast
import csv
import datetime as _datetime
import io
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

__all__ = ["Submission", "Student", "Points", "Row", "collect", "read_roster", "read_points", "assign",
           "build_gradebook", "gradebook_csv", "write_gradebook"]

MAX_MEMBER_BYTES = 64 * 2**20  # one notebook inside a zip
MAX_ZIP_BYTES = 4 * 2**30  # everything unpacked from one zip

_CANVAS = re.compile(r"^(?P<name>[^_/]+?)(?P<late>_LATE)?_(?P<user>\d+)_(?P<file>\d+)_(?P<original>.+)$")
_MOODLE_FILE = re.compile(r"^(?P<name>.+?)_(?P<user>\d+)_assignsubmission_file_(?P<original>.+)$")
_MOODLE_FOLDER = re.compile(r"^(?P<name>.+?)_(?P<user>\d+)_assignsubmission_(?:file|onlinetext)_?$")
_RESUBMITTED = re.compile(r"^(?P<stem>.+?)-(?P<n>\d+)(?P<suffix>\.ipynb)$")


@dataclass
class Submission:
    """One notebook file handed in. ``student`` is the name the LMS (or the folder) gives the student,
    ``lms_ids`` the numbers in its file name (Canvas user id, Moodle participant id); ``original`` the
    file name the student uploaded; ``sequence`` the LMS's own order of files (newer is larger), when
    known; ``shown`` names the file in messages (``class.zip:alice/03_alibi.ipynb`` for a zip's member)."""

    path: Path
    shown: str
    student: str
    original: str
    lms_ids: tuple[str, ...] = ()
    late: bool = False
    sequence: tuple[int, ...] | None = None
    mtime: float = 0.0
    number: str | None = None
    problem: str = ""  # why the file cannot be graded, when it cannot

    @property
    def label(self) -> str:
        """The file's own name, as the LMS wrote it (without the zip or folders it sits in)."""
        return self.shown.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".zip:", 1)[-1]

    @property
    def renamed(self) -> str | None:
        """The original name when the LMS changed it (what tells which notebook it is), else None."""
        return None if self.original == self.path.name else self.original


def _parse(parts: tuple[str, ...], mtime: float) -> dict:
    """Student, original name, LMS numbers and lateness from a path's parts under what was named."""
    name = parts[-1]
    folders = parts[:-1]
    info = dict(student="", original=name, lms_ids=(), late=False, sequence=None, mtime=mtime)
    match = _CANVAS.match(name)
    if match:
        info.update(student=match["name"], original=match["original"], lms_ids=(match["user"],),
                    late=bool(match["late"]), sequence=(int(match["file"]),))
    else:
        match = _MOODLE_FILE.match(name)
        folder = next((m for m in map(_MOODLE_FOLDER.match, reversed(folders)) if m), None)
        if match:
            info.update(student=match["name"], original=match["original"], lms_ids=(match["user"],))
        elif folder:
            info.update(student=folder["name"], lms_ids=(folder["user"],))
        elif folders:
            info.update(student=folders[0])
        else:
            before = re.match(r"^(?P<student>.+?)[_\- .]+(?=\d\d[_\- .])", name)
            info.update(student=before["student"] if before else Path(name).stem)
            if before:
                info["original"] = name[before.end():]
    again = _RESUBMITTED.match(info["original"])
    if again:
        info["original"] = again["stem"] + again["suffix"]
        info["sequence"] = (*(info["sequence"] or (0,)), int(again["n"]))
    elif info["sequence"] is not None:
        info["sequence"] = (*info["sequence"], 0)
    return info


def _unpack(archive: Path, into: Path, notes: list[str]) -> list[tuple[Path, tuple[str, ...], float]]:
    """The notebooks in a zip, unpacked under ``into``: (file, parts of its name in the zip, time)."""
    found = []
    spent = 0
    try:
        with zipfile.ZipFile(archive) as package:
            for index, member in enumerate(package.infolist()):
                parts = tuple(p for p in PurePosixPath(member.filename.replace("\\", "/")).parts
                              if p not in ("", ".", ".."))
                if (member.is_dir() or not parts or not parts[-1].endswith(".ipynb") or "__MACOSX" in parts
                        or ".ipynb_checkpoints" in parts or parts[-1].startswith("._")):
                    continue
                if member.file_size > MAX_MEMBER_BYTES or spent + member.file_size > MAX_ZIP_BYTES:
                    notes.append(f"{archive}:{member.filename}: skipped, too large "
                                 f"({member.file_size:,} bytes)")
                    continue
                spent += member.file_size
                target = into / f"{index:05d}" / parts[-1]
                target.parent.mkdir(parents=True)
                with package.open(member) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out, 2**20)
                try:
                    mtime = _datetime.datetime(*member.date_time).timestamp()
                except (ValueError, OverflowError):
                    mtime = 0.0
                found.append((target, parts, mtime))
    except (OSError, zipfile.BadZipFile, ValueError, RuntimeError, NotImplementedError) as error:
        notes.append(f"{archive}: cannot unpack this zip file ({error})")
    return found


def collect(paths, workdir: str | os.PathLike, notes: list[str] | None = None) -> list[Submission]:
    """Every notebook under ``paths`` (files, folders, ``.zip`` files, unpacked into ``workdir``), as a
    :class:`Submission` with its student and course notebook worked out. What cannot be read is noted
    in ``notes`` (a zip that will not open) or kept as a submission with a ``problem``."""
    from .grading import read_exercise_cells

    notes = [] if notes is None else notes
    found: list[tuple[Path, str, tuple[str, ...], float]] = []  # file, shown, parts, time
    for count, path in enumerate(map(Path, paths)):
        try:
            is_dir, is_zip = path.is_dir(), path.suffix.lower() == ".zip" and path.is_file()
        except OSError:
            is_dir = is_zip = False
        if is_dir:
            for file in sorted(path.rglob("*")):
                relative = file.relative_to(path).parts
                if ".ipynb_checkpoints" in relative or not file.is_file():
                    continue
                if file.suffix.lower() == ".zip":
                    for member, parts, mtime in _unpack(file, Path(workdir) / f"{count}-{len(found)}", notes):
                        found.append((member, f"{file}:{'/'.join(parts)}", relative[:-1] + parts, mtime))
                elif file.suffix == ".ipynb":
                    found.append((file, str(file), relative, file.stat().st_mtime))
        elif is_zip:
            for member, parts, mtime in _unpack(path, Path(workdir) / str(count), notes):
                found.append((member, f"{path}:{'/'.join(parts)}", parts, mtime))
        else:
            try:
                mtime = path.stat().st_mtime
            except OSError:
                mtime = 0.0
            found.append((path, str(path), (path.name,), mtime))
    submissions = []
    for file, shown, parts, mtime in found:
        info = _parse(parts, mtime)
        submission = Submission(path=file, shown=shown, **info)
        try:
            name = None if submission.original == file.name else submission.original
            submission.number, _ = (read_exercise_cells(file) if name is None
                                    else read_exercise_cells(file, name))
        except Exception as error:  # noqa: BLE001 -- one odd file must not stop the class's gradebook
            submission.problem = (str(error) if isinstance(error, ValueError)
                                  else f"the grader failed on it: {error!r}")
            digits = re.match(r"(\d\d)", submission.original)
            submission.number = digits.group(1) if digits else None
        if submission.number is None and not submission.problem:
            submission.problem = ("cannot tell which course notebook this is: neither its metadata "
                                  "(tfa_course.notebook), nor its file name (01_...), nor its exercise "
                                  "cells say")
        submissions.append(submission)
    return submissions


# -- roster and points ------------------------------------------------------------------------------------

def _key(text: str) -> str:
    return re.sub(r"[\W_]+", "", str(text).casefold())


@dataclass
class Student:
    id: str
    name: str = ""
    keys: set[str] = field(default_factory=set)


def read_roster(path: str | os.PathLike) -> list[Student]:
    """The roster's students, in its order (see the module's docstring for the columns)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = {(name or "").strip().casefold(): name for name in reader.fieldnames or []}
        if "id" not in columns:
            raise ValueError(f"the roster {path} needs a column called id "
                             f"(found: {', '.join(reader.fieldnames or [])}); "
                             "add one holding what your LMS matches grades on (a username, an email, "
                             "an SIS id)")
        students, seen = [], set()
        for line, row in enumerate(reader, start=2):
            student_id = (row.get(columns["id"]) or "").strip()
            if not student_id:
                continue
            if student_id in seen:
                raise ValueError(f"the roster {path} lists the id {student_id!r} twice (line {line})")
            seen.add(student_id)
            name = (row.get(columns.get("name", ""), "") or "").strip()
            aliases = [a.strip() for a in (row.get(columns.get("aliases", ""), "") or "").split(";")
                       if a.strip()]
            words = name.split()
            keys = {_key(student_id), *map(_key, aliases)}
            if words:
                # "Alice Smith" and Canvas's "smithalice"
                keys |= {_key(name), _key(" ".join(words[1:] + words[:1]))}
                if "," in name:  # "Smith, Alice"
                    last, first = name.split(",", 1)
                    keys |= {_key(first + last), _key(last + first)}
            students.append(Student(student_id, name, keys - {""}))
    return students


@dataclass
class Points:
    """Points per exercise and whether it earns partial credit; ``notebooks`` those the points file names."""

    default: float = 1.0
    partial: bool = False
    per_exercise: dict[str, tuple[float, bool]] = field(default_factory=dict)
    per_notebook: dict[str, tuple[float, bool]] = field(default_factory=dict)
    every: tuple[float, bool] | None = None

    def of(self, exercise_id: str) -> tuple[float, bool]:
        if exercise_id in self.per_exercise:
            return self.per_exercise[exercise_id]
        notebook = exercise_id.split(".", 1)[0]
        if notebook in self.per_notebook:
            return self.per_notebook[notebook]
        return self.every or (self.default, self.partial)

    @property
    def notebooks(self) -> list[str] | None:
        """The notebooks the file names, or None when it covers everything (``*``, or no file)."""
        if self.every is not None or not (self.per_exercise or self.per_notebook):
            return None
        return sorted({*self.per_notebook, *(i.split(".", 1)[0] for i in self.per_exercise)})


_YES = {"yes", "y", "true", "1", "partial"}
_NO = {"no", "n", "false", "0", ""}


def read_points(path: str | os.PathLike | None, partial: bool = False) -> Points:
    """The points file (see the module's docstring), or 1 point an exercise without one."""
    from tfa_core.teaching.exercises import list_exercises

    points = Points(partial=partial)
    if path is None:
        return points
    known = set(list_exercises())
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = {(name or "").strip().casefold(): name for name in reader.fieldnames or []}
        for needed in ("exercise", "points"):
            if needed not in columns:
                raise ValueError(f"the points file {path} needs the columns exercise and points "
                                 f"(found: {', '.join(reader.fieldnames or [])})")
        for line, row in enumerate(reader, start=2):
            target = (row.get(columns["exercise"]) or "").strip()
            if not target:
                continue
            try:
                value = float(row.get(columns["points"]) or "")
            except ValueError:
                raise ValueError(f"{path}, line {line}: points must be a number, got "
                                 f"{row.get(columns['points'])!r}") from None
            if value < 0:
                raise ValueError(f"{path}, line {line}: points must not be negative, got {value}")
            flag = (row.get(columns.get("partial", ""), "") or "").strip().casefold()
            if flag not in _YES | _NO:
                raise ValueError(f"{path}, line {line}: partial must be yes or no, got {flag!r}")
            rule = (value, flag in _YES or (flag == "" and partial))
            if target == "*":
                points.every = rule
            elif re.fullmatch(r"\d\d?", target):
                if not list_exercises(target.zfill(2)):
                    raise ValueError(f"{path}, line {line}: notebook {target} has no exercises")
                points.per_notebook[target.zfill(2)] = rule
            elif target in known:
                points.per_exercise[target] = rule
            else:
                raise ValueError(f"{path}, line {line}: unknown exercise {target!r}; "
                                 f"known: {', '.join(sorted(known))}")
    return points


# -- the gradebook ----------------------------------------------------------------------------------------

def _number(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


SAME_CODE_NODES = 40
"""Answers shorter than this many syntax-tree nodes are not compared across students: a one-line
answer such as ``return math.log(2) / slopes`` is the same for everyone who gets it right."""


def _fingerprint(source: str) -> str | None:
    """The answer's code with comments and layout left out; None when it does not parse or is too
    short to tell a copy from a coincidence."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if sum(1 for _ in ast.walk(tree)) < SAME_CODE_NODES:
        return None
    for node in ast.walk(tree):  # docstrings are the stub's, the same for everyone
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and node.body \
                and isinstance(node.body[0], ast.Expr) \
                and isinstance(getattr(node.body[0], "value", None), ast.Constant):
            node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


@dataclass
class Row:
    """One student's line of the gradebook."""

    id: str
    name: str = ""
    on_roster: bool = True
    scores: dict[str, float] = field(default_factory=dict)  # per exercise
    notebooks: dict[str, float] = field(default_factory=dict)  # per notebook, after any late penalty
    late: list[str] = field(default_factory=list)  # notebooks handed in late
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)  # Markdown lines

    @property
    def total(self) -> float:
        return sum(self.notebooks.values())


def assign(submissions: list[Submission],
           roster: list[Student] | None) -> tuple[dict[str, Row], dict[tuple[str, str], int]]:
    """Whose each file is, and which file counts: the rows (roster first), with notes on matching,
    unidentified files and resubmissions, and for each (student id, notebook) the index of the newest file."""
    rows: dict[str, Row] = {}
    if roster is not None:
        for student in roster:
            rows[student.id] = Row(student.id, student.name)
    owner: dict[int, str] = {}
    for index, submission in enumerate(submissions):
        keys = {_key(submission.student), *map(_key, submission.lms_ids)} - {""}
        matches = [s for s in roster or [] if s.keys & keys]
        if len(matches) == 1:
            owner[index] = matches[0].id
            continue
        student_id = submission.student or Path(submission.original).stem
        row = rows.setdefault(student_id, Row(student_id, on_roster=roster is None))
        if roster is not None and not row.notes:
            row.notes.append("not on the roster" if not matches else
                             "matches several roster rows: " + ", ".join(s.id for s in matches))
        owner[index] = student_id
    chosen: dict[tuple[str, str], int] = {}
    by_student_notebook: dict[tuple[str, str], list[int]] = {}
    for index, submission in enumerate(submissions):
        if submission.number:
            by_student_notebook.setdefault((owner[index], submission.number), []).append(index)
        else:
            rows[owner[index]].notes.append(f"{submission.label}: {submission.problem}")
    for (student_id, number), indices in by_student_notebook.items():
        if all(submissions[i].sequence is not None for i in indices):
            newest = max(indices, key=lambda i: (submissions[i].sequence, submissions[i].mtime,
                                                 submissions[i].shown))
            how = "the LMS's numbering"
        else:
            newest = max(indices, key=lambda i: (submissions[i].mtime, submissions[i].shown))
            how = "file time"
        chosen[(student_id, number)] = newest
        if len(indices) > 1:
            labels = {i: submissions[i].label for i in indices}
            if len(set(labels.values())) < len(labels):  # the same name in two folders: say where
                labels = {i: submissions[i].shown for i in indices}
            older = [labels[i] for i in indices if i != newest]
            rows[student_id].notes.append(f"{number}: {len(indices)} files, graded the newest "
                                          f"({labels[newest]}, by {how}); "
                                          f"not graded: {', '.join(older)}")
    return rows, chosen


def build_gradebook(submissions: list[Submission], grades: dict[int, list], roster: list[Student] | None,
                    points: Points, late_penalty: float = 0.0,
                    deadline: float | None = None) -> tuple[list[Row], list[str]]:
    """The rows (roster order, then the students not on it) and the columns (exercise ids, in notebook
    order). ``grades[i]`` are the rows :func:`.grading.grade_notebook` gave ``submissions[i]`` (only the
    newest file of each student and notebook is looked at)."""
    from tfa_core.teaching.exercises import get_exercise, list_exercises

    rows, chosen = assign(submissions, roster)
    notebooks = points.notebooks or sorted({s.number for s in submissions
                                            if s.number and list_exercises(s.number)})
    columns = [i for n in notebooks for i in list_exercises(n)]
    possible = {n: sum(points.of(i)[0] for i in list_exercises(n)) for n in notebooks}

    # answers identical across students (comments and layout ignored)
    answers: dict[tuple[str, str], dict[str, str]] = {}
    for (student_id, number), index in chosen.items():
        for grade in grades.get(index, []):
            if grade.exercise in columns and grade.status not in ("not attempted", "missing", "unreadable"):
                source = grade_sources(submissions[index]).get(grade.exercise)
                fingerprint = _fingerprint(source) if source else None
                if fingerprint:
                    same_answer = answers.setdefault((grade.exercise, fingerprint), {})
                    same_answer[student_id] = submissions[index].label

    for student_id, row in rows.items():
        for number in notebooks:
            index = chosen.get((student_id, number))
            title = f"Notebook {number}"
            if index is None:
                for exercise_id in list_exercises(number):
                    row.scores[exercise_id] = 0.0
                row.notebooks[number] = 0.0
                row.notes.append(f"{number}: nothing handed in")
                row.feedback += [f"## {title}", "", "Nothing was handed in for this notebook.", ""]
                continue
            submission = submissions[index]
            late = submission.late or (deadline is not None and submission.mtime > deadline)
            row.feedback += [f"## {title}: {submission.original}", ""]
            if late:
                row.late.append(number)
                row.feedback.append(f"Handed in late{f' ({late_penalty:.0%} off)' if late_penalty else ''}.")
                row.feedback.append("")
            by_id = {g.exercise: g for g in grades.get(index, [])}
            unreadable = [g for g in grades.get(index, []) if g.status == "unreadable"]
            if unreadable or submission.problem:
                reason = unreadable[0].message if unreadable else submission.problem
                row.notes.append(f"{number}: unreadable ({reason})")
                row.feedback += [f"The file could not be graded: {reason}", ""]
            score = 0.0
            for exercise_id in list_exercises(number):
                worth, partial = points.of(exercise_id)
                grade = by_id.get(exercise_id)
                if grade is None:
                    earned, status, message = 0.0, "not graded", "the file could not be read"
                else:
                    status, message = grade.status, grade.message
                    if grade.correct:
                        earned = worth
                    elif partial and grade.total:
                        earned = worth * grade.passed / grade.total
                    else:
                        earned = 0.0
                    if grade.flag:
                        row.flags.append(f"{exercise_id}: {grade.flag}")
                    same = _identical(answers, exercise_id, submissions[index], student_id)
                    if same:
                        row.flags.append(f"{exercise_id}: the same code as {', '.join(same)}")
                row.scores[exercise_id] = earned
                score += earned
                title_of = get_exercise(exercise_id).title
                row.feedback.append(f"- **{exercise_id}** ({title_of}): {status}, {_number(earned)} of "
                                    f"{_number(worth)} points. {message}")
            if late and late_penalty:
                score *= 1 - late_penalty
            row.notebooks[number] = score
            row.feedback += ["",
                             f"Notebook {number}: {_number(score)} of {_number(possible[number])} points.",
                             ""]
    return list(rows.values()), columns


def _identical(answers, exercise_id, submission, student_id) -> list[str]:
    source = grade_sources(submission).get(exercise_id)
    fingerprint = _fingerprint(source) if source else None
    others = answers.get((exercise_id, fingerprint), {}) if fingerprint else {}
    return sorted(other for other in others if other != student_id)


_SOURCES: dict[str, dict[str, str]] = {}


def grade_sources(submission: Submission) -> dict[str, str]:
    """The answer cells of a submission (read once)."""
    from .grading import read_exercise_cells

    key = str(submission.path)
    if key not in _SOURCES:
        try:
            _SOURCES[key] = read_exercise_cells(submission.path, submission.original)[1]
        except (ValueError, OSError):
            _SOURCES[key] = {}
    return _SOURCES[key]


def gradebook_csv(rows: list[Row], columns: list[str], points: Points) -> str:
    """The CSV: ``Student``, ``ID``, one column per exercise and per notebook, ``Total``, ``Possible``,
    ``Late``, ``Notes``, ``Flags``. Scores are plain numbers (two decimals at most)."""
    notebooks = list(dict.fromkeys(c.split(".", 1)[0] for c in columns))
    possible = sum(points.of(c)[0] for c in columns)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["Student", "ID", *columns, *(f"Notebook {n}" for n in notebooks), "Total", "Possible",
                     "Late", "Notes", "Flags"])
    for row in rows:
        writer.writerow([_cell(row.name), _cell(row.id), *(_number(row.scores.get(c, 0.0)) for c in columns),
                         *(_number(row.notebooks.get(n, 0.0)) for n in notebooks), _number(row.total),
                         _number(possible), " ".join(row.late), _cell("; ".join(row.notes)),
                         _cell("; ".join(row.flags))])
    return out.getvalue()


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    text = str(text)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_gradebook(folder: str | os.PathLike, rows: list[Row], columns: list[str], points: Points,
                    graded: list[dict]) -> Path:
    """``grades.csv``, ``feedback/<id>.md`` and ``rows.json`` under ``folder``; returns the CSV's path."""
    folder = Path(folder)
    (folder / "feedback").mkdir(parents=True, exist_ok=True)
    target = folder / "grades.csv"
    target.write_text(gradebook_csv(rows, columns, points), encoding="utf-8")
    possible = sum(points.of(c)[0] for c in columns)
    used = set()
    for row in rows:
        stem = re.sub(r"[^\w.@-]+", "_", row.id).strip("._") or "student"
        while stem.casefold() in used:
            stem += "_"
        used.add(stem.casefold())
        heading = f"# Feedback for {row.name or row.id}" + (f" ({row.id})" if row.name else "")
        text = [heading, "", f"Total: {_number(row.total)} of {_number(possible)} points.", "", *row.feedback]
        (folder / "feedback" / f"{stem}.md").write_text("\n".join(text).rstrip() + "\n", encoding="utf-8")
    (folder / "rows.json").write_text(json.dumps(graded, indent=1), encoding="utf-8")
    return target


def run_gradebook(args, progress) -> int:
    """``tfa grade ... --gradebook OUT``: collect, grade, write, print a one-line summary per student."""
    from .grading import grade_notebook, printable
    from concurrent.futures import ThreadPoolExecutor

    roster = read_roster(args.roster) if args.roster else None
    points = read_points(args.points, partial=args.partial_credit)
    deadline = None
    if args.deadline:
        try:
            deadline = _datetime.datetime.fromisoformat(args.deadline).timestamp()
        except ValueError:
            raise ValueError(f"--deadline must be a date and time such as 2025-03-14T23:59, "
                             f"got {args.deadline!r}") from None
    if not 0 <= args.late_penalty <= 1:
        raise ValueError(f"--late-penalty must be a fraction from 0 to 1, got {args.late_penalty}")
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tfa-grade-") as workdir:
        submissions = collect(args.notebooks, workdir, notes)
        for note in notes:
            print(f"note: {printable(note)}", file=sys.stderr)
        wanted = set(points.notebooks or [s.number for s in submissions if s.number])
        _, chosen = assign(submissions, roster)  # grade only the file that counts: the newest
        todo = [i for i in sorted(chosen.values())
                if submissions[i].number in wanted and not submissions[i].problem]
        grades: dict[int, list] = {}
        total = len(todo)

        def grade(position_index):
            position, index = position_index
            submission = submissions[index]
            rows = grade_notebook(submission.path, args.timeout, submission.renamed)
            for row in rows:
                row.notebook = submission.shown
            progress(position, total, submission.shown, rows)
            return index, rows

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            for index, rows in pool.map(grade, enumerate(todo, start=1)):
                grades[index] = rows
        rows, columns = build_gradebook(submissions, grades, roster, points, args.late_penalty, deadline)
        graded = [asdict(g) for index in todo for g in grades[index]]
        target = write_gradebook(args.gradebook, rows, columns, points, graded)
        _SOURCES.clear()
    possible = sum(points.of(c)[0] for c in columns)
    width = max([len(printable(r.id)) for r in rows] + [7])
    print(f"{'student':<{width}}  {'score':>12}  notes")
    for row in rows:
        print(f"{printable(row.id):<{width}}  {_number(row.total):>5} of {_number(possible):<4}  "
              f"{printable('; '.join(row.notes + [f'flagged {f}' for f in row.flags]))}")
    print(f"\nwrote {target}, {Path(args.gradebook) / 'feedback'}/ ({len(rows)} files) and "
          f"{Path(args.gradebook) / 'rows.json'}")
    return 1 if args.strict and any(row.total < possible for row in rows) else 0
