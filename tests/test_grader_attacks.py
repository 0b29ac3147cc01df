"""The grader against notebooks that try to fool it (issue #15, groups 1 and 6).

Every attack the issue lists is placed in the exercise cells of a copy of notebook 03, once with the
stubs left unsolved and once with wrong answers: replacing the check's internals, patching the
exercise's comparison, reference and cases, patching ``torch.equal`` and ``Tensor.any``, writing forged
"done" lines (and 50 MB of noise) to every file descriptor in ``/proc/self/fd``, and a thread that walks
the worker's stack frames to its ``send`` and answers the grader's requests, with their nonces. Not one
exercise may come out "correct". Copying is not stopped but flagged; malformed notebooks are rows;
a learner's control characters cannot reach the terminal. All the notebooks are graded in one run (a
module fixture), so the whole file costs a few worker start-ups.
"""

import inspect
import json
import sys
from pathlib import Path

import pytest
import torch

from tfa_core.teaching import grading
from tfa_core.teaching.exercises import CORRECT, ERROR, INCORRECT, get_exercise
from tfa_core.teaching.exercises.checking import Judge, run_case
from tfa_core.teaching.exercises.transport import Foreign, from_plain, to_plain
from tfa_core.teaching.grading import Grade, format_table, printable, read_exercise_cells

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_exercises import solutions  # noqa: E402

ALIBI = ROOT / "course" / "03_alibi.ipynb"
IDS_03 = list(read_exercise_cells(ALIBI)[1])  # in the order of their cells

# -- the attacks, as cell code ------------------------------------------------------------------------------

REPLACE_THE_CHECK = '''
import tfa_core.teaching.exercises as _exercises
import tfa_core.teaching.exercises.checking as _checking
import tfa_core.teaching.grading as _grading
from tfa_core.teaching.exercises import CheckResult as _Result, get_exercise as _get, list_exercises as _list

def _correct(*args, **kwargs):
    return _Result("03", "correct", "all cases agree with tfa_core")

_checking._check_case = lambda *args, **kwargs: None          # the old internals, by name
_checking.check = _exercises.check = _correct
_checking.Judge.judge = lambda self, number, data: None
_checking.Judge.correct = lambda self: _correct()
for _id in _list("03"):                                       # the exercise's comparison and reference
    _exercise = _get(_id)
    _exercise.compare = lambda expected, got: None
    _exercise.reference = lambda *args: None
    _exercise.cases = lambda: []
    _exercise.mistakes = []
'''

REPLACE_THE_WORKER = '''
import tfa_core.teaching.exercises.checking as _checking
import tfa_core.teaching.grading as _grading
_checking.run_case = lambda *args, **kwargs: dict(status="correct", correct=True, value=None, stub=False,
                                                    raised="", error="", where="", not_implemented=False,
                                                    calls=[], solutions=[])
_grading._grade_exercise = lambda *args, **kwargs: dict(status="correct", message="forged", flag="")
_grading._run_jobs = lambda *args, **kwargs: {}
_grading._serve = lambda request, sources, state: dict(cell="ok", status="correct", event="done")
'''

PATCH_TORCH = '''
torch.equal = lambda *args, **kwargs: True
torch.allclose = lambda *args, **kwargs: True
torch.isneginf = lambda x: torch.zeros(x.shape, dtype=torch.bool)
torch.Tensor.any = lambda self, *args, **kwargs: torch.tensor(False)
torch.Tensor.__ne__ = lambda self, other: torch.zeros(self.shape, dtype=torch.bool)
'''

FORGE_DONE_LINES = '''
import json as _json, os as _os
_forged = "".join(_json.dumps(dict(event="done", id=_id, status="correct", message="forged", nonce="0" * 32,
                                   ready=True, cell="ok")) + "\\n"
                  for _id in ["03.slopes", "03.bias", "03.half_weight_distance", "03.cached_bias"])
_noise = b"x" * (50 * 2**20)  # 50 MB without a newline, then the forged lines
for _fd in _os.listdir("/proc/self/fd"):
    for _data in (_forged.encode(), _noise, b"\\n" + _forged.encode()):
        try:
            _os.write(int(_fd), _data)
        except OSError:
            pass
print("x" * (50 * 2**20))  # and 50 MB of ordinary output
'''

WALK_THE_FRAMES = '''
import sys as _sys, threading as _threading, time as _time
from tfa_core.teaching.exercises.transport import to_plain as _to_plain

def _forge_from(frame):
    while frame is not None:
        found = frame.f_locals
        if "send" in found and "request" in found:
            nonce = found["request"]["nonce"]
            found["send"](nonce, cell="ok", event="done", status="correct", ready=True,
                          attempt=dict(value=_to_plain(torch.full((4,), 0.25)), stub=False, raised="",
                                       error="", where="", not_implemented=False, calls=[], solutions=[]))
        frame = frame.f_back

def _forger():
    while True:
        for _frame in list(_sys._current_frames().values()):
            try:
                _forge_from(_frame)
            except Exception:
                pass
        _time.sleep(0.005)

_forge_from(_sys._getframe())                  # the cell's own request, answered "ok" at once
_threading.Thread(target=_forger, daemon=True).start()   # and every later request, with its nonce
'''

ATTACKS = {"check": REPLACE_THE_CHECK, "worker": REPLACE_THE_WORKER, "torch": PATCH_TORCH,
           "fds": FORGE_DONE_LINES, "frames": WALK_THE_FRAMES}
ATTACKED = [f"attack_{name}_03.ipynb" for name in ATTACKS]


def marker(path):
    """Cell code that proves the attack before it ran: it appends a line to ``path``."""
    return f"\nopen({str(path)!r}, 'a').write('ran\\n')\n"


WRONG_ANSWERS = {
    "03.slopes": "def slopes(n_head):\n    return torch.zeros(n_head)\n",
    "03.bias": "def bias_matrix(slopes, T):\n    return torch.zeros(len(slopes), T, T)\n",
    "03.half_weight_distance": "def half_weight_distance(slopes):\n    return slopes * 0 + 1\n",
    "03.cached_bias": "def cached_bias(slopes, t_q, t_k):\n    return torch.zeros(len(slopes), t_q, t_k)\n",
}

# A message that would rewrite the terminal: return to the start of the line, clear it, move up.
FORGED_ROW = "\r03.slopes  correct  all 8 cases agree\x1b[2K\x1b[1A\u202e"


def notebook_with(tmp_path, name, course_notebook, cells, metadata=None):
    """A copy of a course notebook whose exercise cells have the given sources."""
    notebook = json.loads((ROOT / "course" / course_notebook).read_text())
    for cell in notebook["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        exercise = next((t.split(":", 1)[1] for t in tags if t.startswith("exercise:")), None)
        if exercise in cells:
            cell["source"] = cells[exercise].splitlines(keepends=True)
    if metadata is not None:
        notebook["metadata"] = metadata
    path = tmp_path / name
    path.write_text(json.dumps(notebook))
    return path


def stubs(course_notebook="03_alibi.ipynb"):
    return read_exercise_cells(ROOT / "course" / course_notebook)[1]


def malformed_notebooks(folder):
    """Each odd shape of the issue, as a file: name -> what its row must say."""
    alibi = json.loads(ALIBI.read_text())

    def write(name, notebook):
        (folder / name).write_text(notebook if isinstance(notebook, str) else json.dumps(notebook))

    write("03_course_is_a_string.ipynb", dict(alibi, metadata={"tfa_course": "03"}))
    write("03_metadata_is_a_string.ipynb", dict(alibi, metadata="hello"))
    cells = json.loads(json.dumps(alibi["cells"]))
    cells[3]["metadata"] = ["exercise:03.slopes"]
    write("03_cell_metadata_is_a_list.ipynb", dict(alibi, cells=cells))
    cells = json.loads(json.dumps(alibi["cells"]))
    cells[3]["metadata"] = {"tags": 3}
    write("03_tags_are_an_int.ipynb", dict(alibi, cells=cells))
    write("03_deeply_nested.ipynb", '{"cells": [], "metadata": ' + "[" * 100_000 + "]" * 100_000 + "}")
    write("03_number_is_a_float.ipynb", dict(alibi, metadata={"tfa_course": {"notebook": 3.5}}))
    write("03_cells_are_lists.ipynb", dict(alibi, cells=[[1, 2]]))
    return {
        "03_course_is_a_string.ipynb": "tfa_course is a str",
        "03_metadata_is_a_string.ipynb": "metadata is a str",
        "03_cell_metadata_is_a_list.ipynb": "metadata is a list",
        "03_tags_are_an_int.ipynb": "tags are int",
        "03_deeply_nested.ipynb": "nested too deeply",
        "03_number_is_a_float.ipynb": "tfa_course.notebook is 3.5",
        "03_cells_are_lists.ipynb": "is a list",
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Grade every crafted notebook in one run; the rows, the table and the JSON."""
    folder = tmp_path_factory.mktemp("class")
    paths = []
    # two stubs left unsolved, two wrong answers, the attack in each cell
    for name, attack in ATTACKS.items():
        attack += marker(folder / f"{name}.ran")
        answers = dict(stubs(), **{i: WRONG_ANSWERS[i]
                                   for i in ("03.half_weight_distance", "03.cached_bias")})
        cells = {i: attack + source for i, source in answers.items()}
        paths.append(notebook_with(folder, f"attack_{name}_03.ipynb", "03_alibi.ipynb", cells))
    mix = solutions("04")
    copier = {
        "04.kronecker_lift": "from tfa_core.model.factored import kronecker_lift\n\n"
                             "def lift(mix, head_dim):\n    return kronecker_lift(mix, head_dim)\n",
        "04.channel_mix": f"exec(open({str(ROOT / 'solutions' / '04_channel_mixing.py')!r}).read())\n",
        "04.values": inspect.getsource(mix.values),  # pasted from the solutions
        # the copy in disguise: the worker's own run_case patched to answer with the reference, and
        # to report no calls; only the cell's text gives it away
        "04.nearest_tokens": "import tfa_core.teaching.exercises.checking as c\n_run = c.run_case\n"
                             "def _copy(exercise, function, case, number):\n"
                             "    attempt = _run(exercise, exercise.reference, case, number)\n"
                             "    return dict(attempt, calls=[], solutions=[])\n"
                             "c.run_case = _copy\n"
                             "def nearest_tokens(x, wte):\n    raise NotImplementedError\n",
    }
    paths += [
        notebook_with(folder, "copier_04.ipynb", "04_channel_mixing.ipynb", copier),
        # tfa_course.notebook an int: accepted as "03", not dropped; and an exception that would forge a row
        notebook_with(folder, "numbered_by_an_int.ipynb", "03_alibi.ipynb",
                      {"03.cached_bias": "def cached_bias(slopes, t_q, t_k):\n"
                                         f"    raise ValueError({FORGED_ROW!r})\n",
                       "03.half_weight_distance": f"raise RuntimeError({FORGED_ROW!r})\n"},
                      metadata={"tfa_course": {"notebook": 3}}),
    ]
    odd = folder / "odd"
    odd.mkdir()
    reasons = malformed_notebooks(odd)
    grades = grading.grade_notebooks([*paths, odd], timeout=30, jobs=2)
    table = format_table(grades)
    return dict(grades=grades, table=table, folder=folder, reasons=reasons,
                rows={(Path(g.notebook).name, g.exercise): g for g in grades})


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_each_attack_ran_to_its_end(graded, attack):
    """In every cell; except that once the worker's loop is replaced, it runs no further cells."""
    assert (graded["folder"] / f"{attack}.ran").read_text().count("ran") == (1 if attack == "worker" else 4)


@pytest.mark.parametrize("notebook", ATTACKED)
@pytest.mark.parametrize("exercise_id", IDS_03)
def test_no_attack_makes_an_exercise_correct(graded, notebook, exercise_id):
    row = graded["rows"][(notebook, exercise_id)]
    assert row.status != CORRECT, row
    assert row.status in ("not attempted", INCORRECT, ERROR), row
    assert "forged" not in row.message


@pytest.mark.parametrize("attack", ["torch", "fds"])  # where the learner's cells still run normally
def test_wrong_answers_stay_wrong_for_the_reason_the_real_comparison_gives(graded, attack):
    rows = graded["rows"]
    stub = rows[(f"attack_{attack}_03.ipynb", "03.slopes")]
    assert stub.status == "not attempted", stub
    wrong = rows[(f"attack_{attack}_03.ipynb", "03.cached_bias")]
    assert wrong.status == INCORRECT, wrong
    assert "entry [head 0, query 0, key 0] is 0, expected" in wrong.message, wrong
    assert "one new query over t_k = 5 keys" in wrong.message  # the input, named by the grader's own cases


def test_the_table_totals_are_honest(graded):
    for name in ATTACKED:
        assert f"{graded['folder'] / name}: 0 of 4 correct" in graded["table"]


def test_copying_is_graded_and_flagged(graded):
    rows = {exercise: graded["rows"][("copier_04.ipynb", exercise)] for exercise in
            ("04.kronecker_lift", "04.channel_mix", "04.values", "04.nearest_tokens")}
    assert all(row.status == CORRECT for row in rows.values()), {
        k: (r.status, r.message, r.flag) for k, r in rows.items()}
    assert "tfa_core's kronecker_lift" in rows["04.kronecker_lift"].flag
    assert "solutions/04_channel_mixing.py: mix_heads" in rows["04.channel_mix"].flag
    assert "solutions/04_channel_mixing.py: values" in rows["04.values"].flag  # pasted: the same code
    assert "import tfa_core" in rows["04.nearest_tokens"].flag  # the disguise, read in the cell's text
    assert "[flagged: " in graded["table"] and "(4 flagged)" in graded["table"]


def test_an_int_notebook_number_is_accepted(graded):
    rows = [g for g in graded["grades"] if Path(g.notebook).name == "numbered_by_an_int.ipynb"]
    assert [g.exercise for g in rows] == IDS_03
    assert [g.status for g in rows] == ["not attempted"] * 2 + [ERROR] * 2


def test_every_malformed_notebook_is_an_unreadable_row(graded):
    for name, reason in graded["reasons"].items():
        (row,) = [g for g in graded["grades"] if Path(g.notebook).name == name]
        assert row.status == grading.UNREADABLE, row
        assert reason in row.message, row


def test_a_learners_control_characters_never_reach_the_terminal(graded):
    cell = graded["rows"][("numbered_by_an_int.ipynb", "03.half_weight_distance")]
    assert FORGED_ROW in cell.message  # the row itself (and so the JSON) is faithful
    function = graded["rows"][("numbered_by_an_int.ipynb", "03.cached_bias")]
    assert "\x1b[2K" in function.message
    table = graded["table"]
    assert "\r" not in table and "\x1b" not in table and "\u202e" not in table
    assert "\\r03.slopes  correct" in table and "\\x1b[2K" in table and "\\u202e" in table
    assert table.rstrip().splitlines()[-1].startswith("total: ")


def test_the_run_ends_with_the_table_even_when_a_notebook_breaks_the_grader(tmp_path, monkeypatch, capsys):
    good = tmp_path / "01_bad.ipynb"
    good.write_text("nope")
    odd = tmp_path / "03_odd.ipynb"
    odd.write_text(json.dumps({"cells": [], "metadata": {}}))
    real = grading.read_exercise_cells

    def breaks_on_odd(path):
        if Path(path).name == "03_odd.ipynb":
            raise RuntimeError("a bug in the grader")
        return real(path)

    monkeypatch.setattr(grading, "read_exercise_cells", breaks_on_odd)
    assert grading.main([str(good), str(odd), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "the grader failed on this notebook: RuntimeError('a bug in the grader')" in out
    assert out.rstrip().endswith("total: 0 of 2 correct")


def test_printable_escapes_what_a_terminal_would_obey():
    assert printable("a\rb\x1b[2Kc\u202ed\ne\tf\x00\ud800") == "a\\rb\\x1b[2Kc\\u202ed e f\\x00\\ud800"
    assert printable("Ωmega ✔ α") == "Ωmega ✔ α"
    lines = format_table([Grade("x\r.ipynb", "03.slopes", "correct", "ok\n\x1b[1Aup",
                                flag="calls\r")]).splitlines()
    assert len(lines) == 6 and all("\r" not in line and "\x1b" not in line for line in lines)


def test_json_output_stays_faithful(tmp_path, capsys):
    path = tmp_path / "03_x.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {"tags": 3}, "source": ""}]}))
    assert grading.main([str(path), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["status"] == "unreadable" and row["flag"] == "" and "tags are int" in row["message"]


# -- the judge and the transport, without a worker ---------------------------------------------------------

def test_the_judge_decides_on_values_whatever_the_attempt_claims():
    judge = Judge(get_exercise("03.slopes"))
    forged = dict(value=to_plain(torch.zeros(4)), stub=False, raised="", error="", where="",
                  not_implemented=False, calls=[], solutions=[], status="correct", correct=True, event="done")
    assert judge.judge(1, forged).status == INCORRECT
    for garbage in (None, "correct", {"status": "correct"},
                    dict(forged, value={"$": "tensor", "dtype": "float32", "shape": [4], "data": "AAAA"})):
        assert judge.judge(1, garbage).status == ERROR
    good = run_case(get_exercise("03.slopes"), solutions("03").slopes, judge.cases[0], 1)
    assert judge.judge(1, json.loads(json.dumps(good))) is None  # what crosses the pipe: JSON


def test_the_transport_round_trips_exact_values():
    values = [None, True, 3, -2**70, 1.5, float("inf"), float("nan"), "Ω\n", ..., (1, [2.0, "x"]),
              {"a": 1, 2: (3,)}, {1, 2}, torch.tensor([0.1, float("-inf")]), torch.arange(6).reshape(2, 3),
              torch.tensor(True), torch.zeros(0, 3, dtype=torch.float16), torch.tensor([1 + 2j]),
              torch.ones(2, dtype=torch.bfloat16)]
    for value in values:
        back = from_plain(json.loads(json.dumps(to_plain(value))))
        if isinstance(value, torch.Tensor):
            assert back.dtype == value.dtype and back.shape == value.shape and torch.equal(back, value)
        elif isinstance(value, float) and value != value:
            assert back != back
        else:
            assert back == value and type(back) is type(value)
    big = from_plain(json.loads(json.dumps(to_plain(torch.zeros(5 * 2**20)))))  # 20 MB: shape and dtype only
    assert big.is_meta and big.shape == (5 * 2**20,)


def test_the_transport_runs_nothing_it_reads():
    class Sneaky:
        def __repr__(self):
            return "Sneaky()"

    back = from_plain(to_plain(Sneaky()))
    assert isinstance(back, Foreign) and type(back).__name__ == "Sneaky" and repr(back) == "Sneaky()"
    assert type(from_plain(to_plain(torch.nn.Linear(2, 2)))).__name__ == "Linear"
    for bad in ({"$": "pickle", "data": "gASV"}, {"$": "tensor", "dtype": "object", "shape": [1], "data": ""},
                {"$": "tensor", "dtype": "float32", "shape": [3], "data": "AAAA"},
                {"$": "numpy", "dtype": "|O", "shape": [1], "data": "", "scalar": False}, [1, 2],
                {"$": "dict", "items": [[{"$": "list", "items": []}, 1]]},
                {"$": "unknown"}, {"$": "float", "value": "1e999"}):
        with pytest.raises(ValueError):
            from_plain(bad)
    deep = 1
    for _ in range(200):
        deep = {"$": "list", "items": [deep]}
    with pytest.raises(ValueError):
        from_plain(deep)


def test_an_answer_that_is_a_module_class_is_judged_through_observe():
    """An exercise whose answer is a class: ``observe`` turns the learner's module into data (here, its
    output on a fixed input) in the process that ran it; the judge compares that."""
    import dataclasses

    from tfa_core.teaching.exercises import Case, Exercise
    from tfa_core.teaching.exercises.comparing import close_tensor

    def scaler(factor):
        class Scale(torch.nn.Module):
            def __init__(self, n):
                super().__init__()
                self.scale = torch.nn.Parameter(torch.full((n,), factor))

            def forward(self, x):
                return x * self.scale

        return Scale

    exercise = Exercise(id="99.scale", function="Scale", title="a module", reference=scaler(2.0),
                        cases=lambda: [Case("n = 3", (3,))], compare=close_tensor(),
                        observe=lambda module, n: module(torch.arange(float(n))))
    judge = Judge(exercise)

    def attempt(answer, on=exercise):
        return json.loads(json.dumps(run_case(on, answer, judge.cases[0], 1)))

    assert judge.judge(1, attempt(scaler(2.0))) is None
    wrong = judge.judge(1, attempt(scaler(3.0)))
    assert wrong.status == INCORRECT and "entry [2] is 6, expected 4" in wrong.message
    plain = Judge(dataclasses.replace(exercise, observe=None))  # without observe: a stand-in, named
    assert "got Scale" in plain.judge(1, attempt(scaler(2.0),
                                                 dataclasses.replace(exercise, observe=None))).message
