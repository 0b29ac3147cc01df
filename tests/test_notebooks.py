"""The course notebooks as shipped, quick mode, and every notebook run again with the reference solutions
in place of the stubs (every check must then say "correct"). nbval runs the shipped notebooks
themselves (see pyproject.toml)."""

import inspect
import os
import re
import sys
from pathlib import Path

import nbformat
import pytest

import tfa_core
from tfa_core.teaching.exercises import list_exercises, get_exercise

sys.path.insert(0, str(Path(__file__).parent))
from test_exercises import solutions  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "course").glob("[0-9][0-9]_*.ipynb"))
WITH_EXERCISES = [path for path in NOTEBOOKS if list_exercises(path.name[:2])]  # 01-08
CHECK_MARK = "# NBVAL_CHECK_OUTPUT"


def tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def text_of(outputs):
    pieces = []
    for output in outputs:
        pieces.append(output.get("text", "") or output.get("data", {}).get("text/plain", ""))
    return "".join(pieces)


# -- quick mode ----------------------------------------------------------------------------------------

def test_quick_mode_is_on_in_ci():
    """CI (``.ci/run``) sets CI=true and runs ``make test``, whose target sets TFA_QUICK=1."""
    if os.environ.get("CI") == "true":
        assert tfa_core.quick_mode()
    makefile = (ROOT / "Makefile").read_text()
    test_target = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "TFA_QUICK=1" in test_target
    ci = (ROOT / ".ci" / "run").read_text()
    assert "export CI=true" in ci and "make test" in ci


@pytest.mark.parametrize("environment, quick", [
    ({"CI": "true"}, True),
    ({}, False),
    ({"TFA_QUICK": "1"}, True),
    ({"TFA_QUICK": "0", "CI": "true"}, False),
    ({"TFA_QUICK": "yes"}, True),
    ({"CI": "false"}, False),
])
def test_quick_mode_follows_the_environment(monkeypatch, environment, quick):
    monkeypatch.delenv("TFA_QUICK", raising=False)
    monkeypatch.delenv("CI", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert tfa_core.quick_mode() is quick


def test_a_misspelt_quick_setting_is_an_error(monkeypatch):
    monkeypatch.setenv("TFA_QUICK", "maybe")
    with pytest.raises(ValueError, match="TFA_QUICK"):
        tfa_core.quick_mode()


def test_the_environment_report_names_versions_and_device():
    report = tfa_core.environment_report("cpu")
    for expected in ("python", "torch", tfa_core.__version__, "device    cpu", "quick"):
        assert expected in report


# -- the notebooks as shipped --------------------------------------------------------------------------

def test_the_ten_notebooks_are_there_in_order():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{n:02d}" for n in range(10)]
    assert [p.name[:2] for p in WITH_EXERCISES] == [f"{n:02d}" for n in range(1, 9)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_shipped_notebook_is_saved_run_without_errors(path):
    notebook = nbformat.read(path, as_version=4)
    assert notebook.metadata["tfa_course"]["notebook"] == path.name[:2]
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code), "save the notebook after running it"
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    setup = code[0]
    assert "setup" in tags(setup) and "environment_report" in setup.source and "pick_device" in setup.source
    assert "torch" in text_of(setup.outputs) and CHECK_MARK not in setup.source  # versions vary
    marked = [cell for cell in code if cell.source.startswith(CHECK_MARK)]
    assert len(marked) >= 3 and all(cell.outputs for cell in marked)
    for cell in marked:  # a quick-mode-dependent cell must not be compared
        assert "QUICK" not in cell.source and "quick_mode" not in cell.source


@pytest.mark.parametrize("path", NOTEBOOKS[1:], ids=lambda p: p.stem)
def test_every_exercise_has_a_stub_and_a_check_that_says_not_attempted(path):
    notebook = nbformat.read(path, as_version=4)
    number = path.name[:2]
    stubs = [t.split(":", 1)[1] for cell in notebook.cells for t in tags(cell) if t.startswith("exercise:")]
    assert sorted(stubs) == sorted(list_exercises(number)), (
        "the notebook's exercise cells and the registry differ")
    for exercise_id in stubs:
        (check_cell,) = [c for c in notebook.cells if f"check:{exercise_id}" in tags(c)]
        exercise = get_exercise(exercise_id)
        assert check_cell.source == f'check("{exercise_id}", {exercise.function})'
        assert text_of(check_cell.outputs).startswith(f"… {exercise_id}: not attempted")


# -- the notebooks with the reference solutions filled in ----------------------------------------------

def with_solutions(path):
    """The notebook with each exercise cell replaced by the reference solution's source."""
    notebook = nbformat.read(path, as_version=4)
    answers = solutions(path.name[:2])
    for cell in notebook.cells:
        for tag in tags(cell):
            if tag.startswith("exercise:"):
                cell.source = inspect.getsource(getattr(answers, get_exercise(tag.split(":", 1)[1]).function))
    return notebook


@pytest.mark.notebooks
@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_the_notebook_runs_with_the_solutions_and_every_check_is_correct(path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("TFA_QUICK", "1")  # the kernel inherits the environment
    notebook = with_solutions(path)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    verdicts = {}
    for cell in notebook.cells:
        for tag in tags(cell):
            if tag.startswith("check:"):
                verdicts[tag.split(":", 1)[1]] = text_of(cell.outputs)
    assert sorted(verdicts) == sorted(list_exercises(path.name[:2]))  # every exercise, in any order
    for exercise_id, verdict in verdicts.items():
        assert re.match(rf"✔ {re.escape(exercise_id)}: correct", verdict), verdict
