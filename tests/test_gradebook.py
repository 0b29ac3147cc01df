"""A simulated class through ``tfa grade --gradebook``: six students on a roster and one who is not,
notebooks 01 and 03 handed in through a Canvas zip (LMS file names, a resubmission, a late file whose
metadata is gone), a Moodle zip (a folder per student), a Moodle file name, per-student folders (a
resubmission told apart by file time), and a student who handed in nothing. The CSV is checked cell
by cell, and the feedback files and the progress lines too."""

import csv
import inspect
import io
import json
import os
import sys
import zipfile
from pathlib import Path

import pytest

from tfa_core import cli
from tfa_core.teaching import gradebook
from tfa_core.teaching.exercises import list_exercises

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_exercises import solutions  # noqa: E402

pytestmark = pytest.mark.skipif(not (ROOT / "solutions").is_dir(), reason="needs the reference solutions "
                                "(instructor copy); a student release has none")

CLOSED_FORM = ("def slopes(n_head):\n"
               "    return torch.tensor([2 ** (-8 * (h + 1) / n_head) for h in range(n_head)])\n")
BROKEN = "def slopes(n_head)\n    return 1\n"


def answer(number, function):
    return inspect.getsource(getattr(solutions(number), function))


ALL_03 = {"03.slopes": answer("03", "slopes"), "03.bias": answer("03", "bias_matrix"),
          "03.half_weight_distance": answer("03", "half_weight_distance"),
          "03.cached_bias": answer("03", "cached_bias")}


def notebook(course_notebook, answers, metadata=True, below=None):
    """The text of a learner's copy of a course notebook. ``below``: {exercise id: source} typed into a new
    untagged cell under the exercise's stub."""
    data = json.loads((ROOT / "course" / course_notebook).read_text())
    cells = []
    for cell in data["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        exercise = next((t.split(":", 1)[1] for t in tags if t.startswith("exercise:")), None)
        if exercise in answers:
            cell["source"] = answers[exercise].splitlines(keepends=True)
        cells.append(cell)
        if below and exercise in below:
            cells.append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                          "source": below[exercise].splitlines(keepends=True)})
    data["cells"] = cells
    if not metadata:
        data["metadata"] = {}
    return json.dumps(data)


def write(path, text, mtime=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class")
    with zipfile.ZipFile(folder / "canvas.zip", "w") as canvas:
        canvas.writestr("smithalice_10001_555001_03_alibi.ipynb",
                        notebook("03_alibi.ipynb", {"03.slopes": CLOSED_FORM}))
        canvas.writestr("smithalice_10001_555002_03_alibi.ipynb", notebook("03_alibi.ipynb", ALL_03))
        # late, and its metadata gone: the notebook is told by the original name under Canvas's prefix
        canvas.writestr("brownbob_LATE_10002_555003_03_alibi.ipynb", notebook(
            "03_alibi.ipynb", {"03.slopes": CLOSED_FORM, "03.bias": ALL_03["03.bias"]}, metadata=False))
    with zipfile.ZipFile(folder / "moodle.zip", "w") as moodle:
        moodle.writestr("Carol Jones_12345_assignsubmission_file_/03_alibi.ipynb",
                        notebook("03_alibi.ipynb", ALL_03))
        moodle.writestr("Carol Jones_12345_assignsubmission_file_/01_tokens_and_text.ipynb",
                        notebook("01_tokens_and_text.ipynb", {"01.build_vocab": answer("01", "build_vocab")}))
        moodle.writestr("__MACOSX/._junk.ipynb", "not a notebook")
    # Moodle's flat name; the answer typed into a new cell below the stub
    dave = write(folder / "Dave Lee_12346_assignsubmission_file_03_alibi.ipynb",
                 notebook("03_alibi.ipynb", {}, below={"03.slopes": answer("03", "slopes")}))
    # a folder per student: erin handed in twice, the newer file (by time) counts
    write(folder / "folders" / "erin" / "first" / "03_alibi.ipynb", notebook("03_alibi.ipynb", ALL_03),
          mtime=1_700_000_000)
    write(folder / "folders" / "erin" / "03_alibi.ipynb",
          notebook("03_alibi.ipynb", {"03.slopes": ALL_03["03.slopes"]}), mtime=1_700_000_100)
    write(folder / "folders" / "mallory" / "03_alibi.ipynb",
          notebook("03_alibi.ipynb", {"03.slopes": BROKEN}))
    roster = write(folder / "roster.csv",
                   "id,name,aliases\nalice,Alice Smith,\nbob,Bob Brown,\ncarol,Carol Jones,\n"
                   "dave,Dave Lee,12346\nerin,Erin Wu,\nfrank,Frank Ode,\n")
    points = write(folder / "points.csv", "exercise,points,partial\n03.slopes,4,yes\n03,2,no\n01,1,\n")
    out = folder / "out"
    argv = ["grade", str(folder / "canvas.zip"), str(folder / "moodle.zip"), str(dave),
            str(folder / "folders"), "--roster", str(roster), "--points", str(points),
            "--late-penalty", "0.5", "--gradebook", str(out), "--timeout", "60", "--jobs", "2"]
    return dict(code=cli.main(argv), out=out, folder=folder)


@pytest.fixture(scope="module")
def table(graded):
    with open(graded["out"] / "grades.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {row["ID"]: row for row in rows}, rows


def test_one_row_per_student_roster_first(table):
    by_id, rows = table
    assert [row["ID"] for row in rows] == ["alice", "bob", "carol", "dave", "erin", "frank", "mallory"]
    assert [row["Student"] for row in rows] == ["Alice Smith", "Bob Brown", "Carol Jones", "Dave Lee",
                                                "Erin Wu", "Frank Ode", ""]


def test_the_columns(table):
    _, rows = table
    assert list(rows[0]) == ["Student", "ID", *list_exercises("01"), *list_exercises("03"), "Notebook 01",
                             "Notebook 03", "Total", "Possible", "Late", "Notes", "Flags"]


EXPECTED = {  # id: scores of 01's four exercises, 03's four (in its cells' order), notebook 01, 03, total
    "alice": ["0"] * 4 + ["4", "2", "2", "2"] + ["0", "10", "10"],  # the newer of two Canvas files
    # 4 of 8 slopes cases: half of 4; late: half off
    "bob": ["0"] * 4 + ["2", "2", "0", "0"] + ["0", "2", "2"],
    "carol": ["1", "0", "0", "0"] + ["4", "2", "2", "2"] + ["1", "10", "11"],
    "dave": ["0"] * 4 + ["4", "0", "0", "0"] + ["0", "4", "4"],  # the answer in a cell below the stub
    "erin": ["0"] * 4 + ["4", "0", "0", "0"] + ["0", "4", "4"],  # the newer file by time
    "frank": ["0"] * 11,  # nothing handed in
    "mallory": ["0"] * 11,  # a syntax error
}


@pytest.mark.parametrize("student", list(EXPECTED))
def test_every_score_cell(table, student):
    row = table[0][student]
    exercises = [*list_exercises("01"), *list_exercises("03")]
    got = [row[c] for c in exercises] + [row["Notebook 01"], row["Notebook 03"], row["Total"]]
    assert got == EXPECTED[student], dict(zip(exercises + ["01", "03", "total"], got))
    assert row["Possible"] == "14"  # 4 x 1 for 01, 4 + 3 x 2 for 03


def test_notes_late_and_flags(table):
    by_id, _ = table
    assert by_id["bob"]["Late"] == "03" and all(by_id[s]["Late"] == "" for s in EXPECTED if s != "bob")
    assert "03: 2 files, graded the newest (smithalice_10001_555002_03_alibi.ipynb, by the LMS's " \
           "numbering); not graded: smithalice_10001_555001_03_alibi.ipynb" in by_id["alice"]["Notes"]
    erin = by_id["erin"]["Notes"]
    assert "03: 2 files, graded the newest" in erin and "erin/03_alibi.ipynb, by file time" in erin
    assert "not graded: " in erin and "erin/first/03_alibi.ipynb" in erin
    assert by_id["frank"]["Notes"] == "01: nothing handed in; 03: nothing handed in"
    assert by_id["mallory"]["Notes"].startswith("not on the roster")
    assert "01: nothing handed in" in by_id["alice"]["Notes"] and "01" not in by_id["carol"]["Notes"]
    # pasted from solutions/: the grader says so; alice's and carol's slopes are the same code
    assert "03.slopes: runs the reference solution" in by_id["alice"]["Flags"]
    assert "03.slopes: the same code as carol" in by_id["alice"]["Flags"]
    assert "the same code as alice" in by_id["carol"]["Flags"]
    assert by_id["frank"]["Flags"] == ""


def test_feedback_for_each_student(graded):
    feedback = graded["out"] / "feedback"
    assert sorted(p.name for p in feedback.iterdir()) == sorted(f"{s}.md" for s in EXPECTED)
    bob = (feedback / "bob.md").read_text()
    assert bob.startswith("# Feedback for Bob Brown (bob)\n\nTotal: 2 of 14 points.")
    assert "Handed in late (50% off)." in bob
    assert "- **03.slopes** (ALiBi slopes by the authors' algorithm): incorrect, 2 of 4 points." in bob
    assert "closed form" in bob  # the check's hint, handed back
    assert "**03.half_weight_distance**" in bob and "not attempted, 0 of 2 points" in bob
    assert "Nothing was handed in for this notebook." in (feedback / "frank.md").read_text()
    assert "flag" not in (feedback / "alice.md").read_text().lower()  # flags are for the instructor


def test_the_run_succeeds_and_keeps_every_row(graded):
    assert graded["code"] == 0
    rows = json.loads((graded["out"] / "rows.json").read_text())
    assert len(rows) == 6 * 4 + 4  # six notebook 03s graded (the older versions not), one 01
    assert any(r["notebook"].endswith("canvas.zip:brownbob_LATE_10002_555003_03_alibi.ipynb") for r in rows)


def test_progress_is_printed_as_each_notebook_finishes(tmp_path, capsys):
    path = tmp_path / "smithalice_10001_555001_03_alibi.ipynb"
    path.write_text(notebook("03_alibi.ipynb", {}, metadata=False))  # an LMS name, no metadata
    assert cli.main(["grade", str(path), "--gradebook", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert f"[1/1] {path}: 0 of 4 correct" in captured.err
    assert "smithalice" in captured.out and "0 of 4" in captured.out


# -- the pieces, without grading ----------------------------------------------------------------------

def test_lms_file_names_are_understood():
    parse = gradebook._parse
    assert parse(("smithalice_LATE_10001_555002_03_alibi-1.ipynb",), 0) == dict(
        student="smithalice", original="03_alibi.ipynb", lms_ids=("10001",), late=True, sequence=(555002, 1),
        mtime=0)
    moodle = parse(("Alice Smith_12_assignsubmission_file_", "03_alibi.ipynb"), 0)
    assert ((moodle["student"], moodle["lms_ids"], moodle["original"])
            == ("Alice Smith", ("12",), "03_alibi.ipynb"))
    assert parse(("alice_03_alibi.ipynb",), 0)["student"] == "alice"
    assert parse(("alice_03_alibi.ipynb",), 0)["original"] == "03_alibi.ipynb"
    assert parse(("alice", "sub", "mine.ipynb"), 0)["student"] == "alice"


def test_roster_and_points_errors_name_the_fix(tmp_path):
    bad = tmp_path / "roster.csv"
    bad.write_text("student,name\nalice,Alice\n")
    with pytest.raises(ValueError, match="needs a column called id"):
        gradebook.read_roster(bad)
    points = tmp_path / "points.csv"
    points.write_text("exercise,points\n03.nope,2\n")
    with pytest.raises(ValueError, match="unknown exercise '03.nope'"):
        gradebook.read_points(points)
    points.write_text("exercise,points\n03.slopes,two\n")
    with pytest.raises(ValueError, match="points must be a number"):
        gradebook.read_points(points)


def test_a_formula_in_a_name_is_not_run_by_a_spreadsheet():
    row = gradebook.Row("=HYPERLINK(1)", name="+cmd")
    text = gradebook.gradebook_csv([row], [], gradebook.Points())
    assert list(csv.reader(io.StringIO(text)))[1][:2] == ["'+cmd", "'=HYPERLINK(1)"]
