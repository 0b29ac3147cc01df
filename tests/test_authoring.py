"""The authoring guide's worked example works as written: the exercise file from docs/AUTHORING.md
registers, its integer answer is compared exactly without naming a comparison, its mistake is named,
and ``tfa grade --exercises`` grades a notebook that uses it. Run in a subprocess, so the example's
exercise does not join this process's registry."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tfa_core.teaching.exercises import Case, Exercise
from tfa_core.teaching.exercises.checking import Judge, register, run_case

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "AUTHORING.md"


def example_file(tmp_path):
    (code,) = [block for block in re.findall(r"```python\n(.*?)```", GUIDE.read_text(), re.S)
               if "register(" in block]
    path = tmp_path / "alibi_extras.py"
    path.write_text(code)
    return path


@pytest.mark.skipif(not GUIDE.is_file(),
                    reason="the authoring guide is for instructors; a student copy has none")
def test_the_worked_example_checks_and_grades(tmp_path):
    exercises = example_file(tmp_path)
    script = textwrap.dedent('''
        import torch
        from tfa_core.teaching.exercises import check
        print(check("10.attended_keys", lambda T: torch.arange(1, T + 1)).status)
        print(check("10.attended_keys", lambda T: list(range(1, T + 1))).status)
        wrong = check("10.attended_keys", lambda T: torch.arange(T))
        print(wrong.status, "|", wrong.hint)
    ''')
    env = dict(__import__("os").environ, TFA_EXERCISES=str(exercises))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["correct", "correct",
                                        "incorrect | off by one: query i sees keys 0..i, that is i + 1 keys"]

    cells = [
        {"cell_type": "code", "metadata": {"tags": ["exercise", "exercise:10.attended_keys"]}, "outputs": [],
         "execution_count": None, "source": "def attended_keys(T):\n    raise NotImplementedError\n"},
        # the answer, below the stub
        {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "def attended_keys(T):\n    return torch.arange(T) + 1\n"},
        {"cell_type": "code", "metadata": {"tags": ["check", "check:10.attended_keys"]}, "outputs": [],
         "execution_count": None, "source": 'check("10.attended_keys", attended_keys)'},
    ]
    notebook = tmp_path / "10_alibi_extras.ipynb"
    notebook.write_text(json.dumps({"cells": cells, "metadata": {"tfa_course": {"notebook": "10"}},
                                    "nbformat": 4, "nbformat_minor": 5}))
    done = subprocess.run([sys.executable, "-m", "tfa_core.teaching.grading", str(notebook), "--exercises",
                           str(exercises), "--strict", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert "10.attended_keys  correct" in done.stdout


def test_an_integer_answer_needs_no_comparison_and_close_tensor_is_exact_for_one():
    from tfa_core.teaching.exercises.comparing import close_tensor

    exercise = Exercise(id="98.counts", function="counts", title="counts",
                        reference=lambda n: torch.arange(n), cases=lambda: [Case("n = 3", (3,))])
    judge = Judge(exercise)

    def verdict(answer):
        return judge.judge(1, json.loads(json.dumps(run_case(exercise, answer, judge.cases[0], 1))))

    assert verdict(lambda n: torch.arange(n)) is None
    assert verdict(lambda n: [0, 1, 2]) is None
    assert "entry [2] is 3, expected 2" in verdict(lambda n: torch.tensor([0, 1, 3])).message
    assert close_tensor()(torch.arange(3), torch.arange(3)) is None  # once "could not compare"
    assert close_tensor()(torch.arange(3), torch.tensor([0, 1, 5])) == "entry [2] is 5, expected 2"


@pytest.mark.parametrize("bad, words", [
    (dict(id="slopes"), "the notebook's two digits, a dot and a name"),
    (dict(id="03.x", function="my slopes"), "must be the Python name"),
])
def test_register_names_the_fix(bad, words):
    fields = dict(id="97.x", function="f", title="t", reference=lambda: 0, cases=lambda: [])
    with pytest.raises(ValueError, match=words):
        register(Exercise(**{**fields, **bad}))
