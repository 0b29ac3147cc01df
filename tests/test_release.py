"""tfa release: the student copy has no solutions/, no history and no reference code in the exercise
modules, its checks judge against recorded answers with the same verdicts, and a subset of its own test
command passes in a fresh copy; the instructor copy keeps the solutions."""

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tfa_core import cli

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not (ROOT / ".git").exists(), reason="a release is made from a git checkout")


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "students"
    assert cli.main(["release", "--students", str(out)]) == 0
    return out


def run_in(copy, code, **env):
    """Python in the copy, importing the copy's own tfa_core."""
    environment = dict(os.environ, PYTHONPATH=str(copy), TFA_QUICK="1", **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=copy, env=environment,
                          capture_output=True, text=True, timeout=600)


def test_the_student_copy_leaves_out_the_answers_and_the_history(student):
    assert not (student / "solutions").exists() and not (student / ".git").exists()
    links = {}  # every relative link in the copy's Markdown resolves there
    for page in student.rglob("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+)\)|`(\.\./[^`\s]+|docs/[A-Za-z_]+\.(?:md|py))`",
                                 page.read_text()):
            target = next(t for t in target if t)
            if ("://" not in target and not (page.parent / target).exists()
                    and not (student / target).exists()):
                links[str(page.relative_to(student))] = target
    assert not links, links
    assert (student / "course" / "03_alibi.ipynb").is_file() and (student / "README.md").is_file()
    for module in (student / "tfa_core" / "teaching" / "exercises").glob("*.py"):
        tree = ast.parse(module.read_text())
        for node in tree.body:  # a reference function stays only where a case or a mistake is built from it
            if isinstance(node, ast.FunctionDef) and node.name.startswith("reference_"):
                uses = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == node.name]
                assert uses, f"{module.name}: {node.name} is shipped but nothing uses it"
        for call in ast.walk(tree):
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Exercise":
                (reference,) = [k.value for k in call.keywords if k.arg == "reference"]
                assert getattr(reference, "id", None) == "_not_shipped", module.name
    slopes_source = (student / "tfa_core/teaching/exercises/slopes.py").read_text()
    assert "reference_half_weight_distance" not in slopes_source
    recorded = json.loads((student / "tfa_core/teaching/exercises/recorded_answers.json").read_text())
    assert "03.half_weight_distance" in recorded and "RELEASE.md" in os.listdir(student)


def test_checks_in_the_student_copy_judge_against_the_recorded_answers(student):
    done = run_in(student, '''
        import math, torch
        from tfa_core.teaching.exercises import check, list_exercises
        print(len(list_exercises()))
        print(check("03.half_weight_distance", lambda s: math.log(2) / s).status)
        wrong = check("03.half_weight_distance", lambda s: 1 / s)
        print(wrong.status, "|", wrong.hint)
        print(check("01.encode", lambda text, stoi: [stoi[c] for c in text]).status)
        print(check("05.parameter_count", lambda config: 7).status)
    ''')
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert int(lines[0]) >= 25
    assert lines[1:] == ["correct",
                         "incorrect | 1/m is where the weight falls to 1/e; half is where exp(-m d) = 1/2, "
                         "so d = ln(2) / m",
                         "correct", "incorrect"]


def test_the_student_copys_own_tests_pass(student):
    """A subset of the README's test command, in the copy: collection of the whole suite (what needs
    solutions/ is not collected), and the tests of the environment, the one verdict and authoring."""
    env = dict(os.environ, PYTHONPATH=str(student), TFA_QUICK="1")
    collected = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                                "-p", "no:cacheprovider", "tests"],
                               cwd=student, env=env, capture_output=True, text=True, timeout=600)
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    assert "test_exercises.py" not in collected.stdout and "test_environment.py" in collected.stdout
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-m", "not notebooks", "tests/test_environment.py",
                           "tests/test_one_verdict.py", "tests/test_authoring.py"],
                          cwd=student, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and "failed" not in done.stdout


def test_the_instructor_copy_keeps_the_solutions(tmp_path):
    out = tmp_path / "instructor"
    assert cli.main(["release", "--instructor", str(out)]) == 0
    assert (out / "solutions" / "03_alibi.py").is_file() and (out / "docs" / "AUTHORING.md").is_file()
    assert "Instructor copy" in (out / "RELEASE.md").read_text()
    assert "def reference_half_weight_distance" in (out / "tfa_core/teaching/exercises/slopes.py").read_text()
    assert cli.main(["release", "--instructor", str(out)]) == 2  # not into a folder that has files
