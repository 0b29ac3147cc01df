"""One verdict: ``check`` in a notebook and ``tfa grade`` agree on answers that lean on other cells and
on answers typed below the stub. The notebook side runs in a real IPython shell (in a subprocess, so
that this test process keeps its own stdout); the grader side grades a notebook with the same cells."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tfa_core.teaching import grading
from tfa_core.teaching.exercises.checking import SELF_CONTAINED

ROOT = Path(__file__).resolve().parents[1]

SLOPES = ("def slopes(n_head):\n"
          "    p = 2 ** math.floor(math.log2(n_head))\n"
          "    result = [2.0 ** (-8 * k / p) for k in range(1, p + 1)]\n"
          "    extra = [2.0 ** (-8 * k / (2 * p)) for k in range(1, 2 * p + 1)][0::2]\n"
          "    return torch.tensor(result + extra[: n_head - p])\n")
HELPER = "def power_of_two(n):\n    return [2.0 ** (-8 * k / n) for k in range(1, n + 1)]\n"
USES_HELPER = ("def slopes(n_head):\n"
               "    p = 2 ** math.floor(math.log2(n_head))\n"
               "    return torch.tensor(power_of_two(p) + power_of_two(2 * p)[0::2][: n_head - p])\n")
STUB = "def slopes(n_head):\n    # YOUR CODE HERE\n    raise NotImplementedError\n"

# Each case: the cells before the exercise, the exercise cell, the cells between it and its check.
CASES = {
    "helper_in_another_cell": ([HELPER], USES_HELPER, []),
    "helper_in_the_same_cell": ([], HELPER + USES_HELPER, []),
    "answer_below_the_stub": ([], STUB, [SLOPES]),
    "answer_below_with_a_helper_above": ([HELPER], STUB, [USES_HELPER]),
    "uses_a_notebook_variable": (["N_EXTRA = 0\n"], SLOPES.replace("return", "return N_EXTRA +"), []),
    "check_in_the_same_cell": ([], SLOPES + '\ncheck("03.slopes", slopes)\n', []),
    "a_magic_in_the_cell": ([], "%time 1 + 1\n" + SLOPES, []),
    "a_helper_defined_after_the_answer": ([], STUB, [USES_HELPER, HELPER]),
}
EXPECTED = {  # the same status from both
    "helper_in_another_cell": "error",
    "helper_in_the_same_cell": "correct",
    "answer_below_the_stub": "correct",
    "answer_below_with_a_helper_above": "error",
    "uses_a_notebook_variable": "error",
    "check_in_the_same_cell": "correct",
    "a_magic_in_the_cell": "correct",
    "a_helper_defined_after_the_answer": "error",
}

IN_IPYTHON = textwrap.dedent('''
    import json, sys
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    cases = json.loads(sys.stdin.read())
    verdicts = {}
    for name, (before, exercise, after) in cases.items():
        shell.run_cell("import math\\nimport torch\\nimport torch.nn as nn\\n"
                       "import torch.nn.functional as F\\n"
                       "from tfa_core.teaching.exercises import check\\n")
        for cell in [*before, exercise, *after]:
            assert shell.run_cell(cell).success, cell
        result = shell.run_cell('check("03.slopes", slopes)').result
        verdicts[name] = dict(status=result.status, message=result.message, hint=result.hint)
        shell.reset()
    print(json.dumps(verdicts))
''')


@pytest.fixture(scope="module")
def in_notebook():
    done = subprocess.run([sys.executable, "-c", IN_IPYTHON], input=json.dumps(CASES), capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def in_grader(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verdict")
    template = json.loads((ROOT / "course" / "03_alibi.ipynb").read_text())
    paths = []
    for name, (before, exercise, after) in CASES.items():
        cells = []
        for cell in template["cells"]:
            tags = cell.get("metadata", {}).get("tags", [])
            if "exercise:03.slopes" in tags:
                cells += [dict(cell_type="code", metadata={}, source=s, outputs=[], execution_count=None)
                          for s in before]
                cells.append(dict(cell, source=exercise))
                cells += [dict(cell_type="code", metadata={}, source=s, outputs=[], execution_count=None)
                          for s in after]
            else:
                cells.append(cell)
        path = folder / f"03_{name}.ipynb"
        path.write_text(json.dumps(dict(template, cells=cells)))
        paths.append(path)
    grades = grading.grade_notebooks(paths, timeout=60, jobs=2)
    return {Path(g.notebook).stem[3:]: g for g in grades if g.exercise == "03.slopes"}


@pytest.mark.parametrize("case", list(CASES))
def test_the_notebook_and_the_grader_agree(in_notebook, in_grader, case):
    notebook, graded = in_notebook[case], in_grader[case]
    assert notebook["status"] == graded.status == EXPECTED[case], (notebook, graded)
    if EXPECTED[case] == "error":  # refused in both, with the same words
        assert SELF_CONTAINED in notebook["message"] + notebook["hint"]
        assert SELF_CONTAINED in graded.message
        assert "NameError" in notebook["message"] and "NameError" in graded.message
