"""The grader on crafted learner notebooks: correct, wrong, looping, raising, broken syntax, deleted
cells and a dying process each give their own row, and the exit code follows --strict."""

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tfa_core import cli
from tfa_core.teaching import grading
from tfa_core.teaching.grading import Grade, format_table, read_exercise_cells

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_exercises import solutions  # noqa: E402  (the same loader as the exercise tests)


def learner_notebook(tmp_path, name, course_notebook, answers):
    """A copy of a course notebook with some exercise cells replaced (or deleted, for None)."""
    notebook = json.loads((ROOT / "course" / course_notebook).read_text())
    kept = []
    for cell in notebook["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        exercise = next((t.split(":", 1)[1] for t in tags if t.startswith("exercise:")), None)
        if exercise in answers:
            if answers[exercise] is None:
                continue  # the learner deleted the cell
            cell["source"] = answers[exercise].splitlines(keepends=True)  # as Jupyter saves it: a list
        kept.append(cell)
    notebook["cells"] = kept
    path = tmp_path / name
    path.write_text(json.dumps(notebook))
    return path


def source(number, function):
    return inspect.getsource(getattr(solutions(number), function))


def rows(output):
    """{exercise id: status} parsed from the printed table."""
    found = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1][:2].isdigit() and "." in parts[1]:
            found[parts[1]] = " ".join(parts[2:4]) if parts[2] in ("not", "syntax") else parts[2]
    return found


def test_every_kind_of_failure_gets_its_own_row_and_strict_fails(tmp_path, capsys):
    alice = learner_notebook(tmp_path, "alice_03_alibi.ipynb", "03_alibi.ipynb", {
        "03.slopes": source("03", "slopes"),
        "03.bias": "def bias_matrix(slopes, T):\n"
                   "    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]\n"
                   "    return (slopes[:, None, None] * (i - j)).masked_fill(j > i, float('-inf'))\n",
        "03.cached_bias": "def cached_bias(slopes, t_q, t_k):\n    while True:\n        pass\n",
        "03.half_weight_distance": "def half_weight_distance(slopes)\n    return math.log(2) / slopes\n",
    })
    bob = learner_notebook(tmp_path, "bob_04.ipynb", "04_channel_mixing.ipynb", {
        "04.kronecker_lift": source("04", "lift") + "\nraise RuntimeError('left over from testing')\n",
        "04.channel_mix": None,
        "04.values": "import os\nos._exit(3)\n",
        # 04.nearest_tokens: the stub, untouched
    })
    code = grading.main([str(alice), str(bob), "--timeout", "2", "--strict", "--jobs", "2"])
    out = capsys.readouterr().out
    assert code == 1
    assert rows(out) == {
        "03.slopes": "correct",
        "03.bias": "incorrect",
        "03.cached_bias": "timeout",
        "03.half_weight_distance": "syntax error",
        "04.kronecker_lift": "error",
        "04.channel_mix": "missing",
        "04.values": "crashed",
        "04.nearest_tokens": "not attempted",
    }
    assert "the sign is wrong" in out  # the check's hint reaches the table
    assert "still running after 2 s" in out
    assert "expected ':'" in out
    assert "RuntimeError: left over from testing" in out
    assert "no cell tagged exercise:04.channel_mix" in out
    assert f"{alice}: 1 of 4 correct" in out and f"{bob}: 0 of 4 correct" in out
    assert "runs the reference solution (solutions/03_alibi.py: slopes)" in out  # pasted from solutions/
    assert out.rstrip().endswith("total: 1 of 8 correct (1 flagged)")


def test_all_correct_passes_strict_through_the_tfa_command(tmp_path, capsys):
    answers = {f"03.{name}": source("03", function) for name, function in
               [("slopes", "slopes"), ("bias", "bias_matrix"), ("cached_bias", "cached_bias"),
                ("half_weight_distance", "half_weight_distance")]}
    # magics too
    answers["03.slopes"] = "%time 1 + 1\nprint('learners print things')\n" + answers["03.slopes"]
    path = learner_notebook(tmp_path, "carol.ipynb", "03_alibi.ipynb", answers)
    assert cli.main(["grade", str(path), "--timeout", "20", "--strict"]) == 0
    out = capsys.readouterr().out
    assert set(rows(out).values()) == {"correct"}
    assert "total: 4 of 4 correct" in out


def test_a_file_that_is_not_a_notebook_is_a_row_not_a_crash(tmp_path, capsys):
    broken = tmp_path / "01_broken.ipynb"
    broken.write_text("{ this is not json")
    missing = tmp_path / "02_never_handed_in.ipynb"
    stranger = tmp_path / "notes.ipynb"
    stranger.write_text(json.dumps({"cells": [], "metadata": {}}))
    welcome = ROOT / "course" / "00_welcome.ipynb"  # no exercises: no rows
    code = grading.main([str(broken), str(missing), str(stranger), str(welcome)])
    out = capsys.readouterr().out
    assert code == 0  # without --strict the grader reports and succeeds
    assert out.count("unreadable") == 3
    assert "cannot tell which course notebook this is" in out
    assert "00_welcome" not in out
    assert "total: 0 of 3 correct" in out


def test_a_folder_stands_for_the_notebooks_under_it(tmp_path):
    for name in ("b/01_x.ipynb", "a/03_y.ipynb", "a/.ipynb_checkpoints/03_y-checkpoint.ipynb", "a/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("not json")
    grades = grading.grade_notebooks([tmp_path])
    assert ([Path(g.notebook).relative_to(tmp_path).as_posix() for g in grades]
            == ["a/03_y.ipynb", "b/01_x.ipynb"])


def test_json_output(tmp_path, capsys):
    broken = tmp_path / "01_broken.ipynb"
    broken.write_text("[]")
    assert grading.main([str(broken), "--json", "--strict"]) == 1
    (row,) = json.loads(capsys.readouterr().out)
    assert row["status"] == "unreadable" and row["notebook"] == str(broken)


def test_bad_options_are_reported(capsys):
    with pytest.raises(SystemExit) as stop:
        grading.main(["x.ipynb", "--timeout", "0"])
    assert stop.value.code == 2
    assert "--timeout must be a positive number" in capsys.readouterr().err


def test_exercise_cells_are_found_by_tag_and_numbered_by_metadata_or_file_name(tmp_path):
    cell = {"cell_type": "code", "metadata": {"tags": ["exercise", "exercise:03.slopes"]},
            "source": ["def slopes(n):\n", "    return 1\n"]}
    later = dict(cell, source="def slopes(n):\n    return 2\n")
    path = tmp_path / "whatever.ipynb"
    path.write_text(json.dumps({"cells": [cell, later], "metadata": {"tfa_course": {"notebook": "03"}}}))
    assert read_exercise_cells(path) == ("03", {"03.slopes": "def slopes(n):\n    return 2\n"})
    named = tmp_path / "03_mine.ipynb"
    named.write_text(json.dumps({"cells": [cell], "metadata": {}}))
    assert read_exercise_cells(named) == ("03", {"03.slopes": "def slopes(n):\n    return 1\n"})


def test_the_table_lists_rows_then_totals():
    grades = [Grade("a.ipynb", "03.slopes", "correct", "all 8 cases agree"),
              Grade("a.ipynb", "03.bias", "incorrect", "entry [head 0] differs"),
              Grade("b.ipynb", "03.slopes", "timeout", "still running")]
    lines = format_table(grades).splitlines()
    assert lines[0].split() == ["notebook", "exercise", "status", "message"]
    assert lines[2].split()[:3] == ["a.ipynb", "03.slopes", "correct"]
    assert lines[-3:] == ["a.ipynb: 1 of 2 correct", "b.ipynb: 0 of 1 correct", "total: 1 of 3 correct"]


def test_python_dash_m_runs_the_grader(tmp_path):
    broken = tmp_path / "03_broken.ipynb"
    broken.write_text("nope")
    done = subprocess.run([sys.executable, "-m", "tfa_core.teaching.grading", str(broken), "--strict"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "unreadable" in done.stdout and "total: 0 of 1 correct" in done.stdout
