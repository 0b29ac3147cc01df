"""The course's exercises: every reference solution passes its check, every known mistake fails it with
its own message, every untouched stub in the notebooks reports "not attempted", and check() never
raises whatever the learner's function does."""

import importlib.util
import inspect
import sys
from pathlib import Path

import pytest
import torch

from tfa_core.teaching.exercises import (
    CORRECT,
    ERROR,
    INCORRECT,
    NOT_ATTEMPTED,
    check,
    get_exercise,
    list_exercises,
)
from tfa_core.teaching.grading import PREAMBLE, read_exercise_cells

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = list_exercises()


def notebook_path(number):
    (path,) = sorted((ROOT / "course").glob(f"{number}_*.ipynb"))
    return path


def solutions(number):
    """The module solutions/<number>_*.py, loaded from its file."""
    (path,) = sorted((ROOT / "solutions").glob(f"{number}_*.py"))
    spec = importlib.util.spec_from_file_location(f"solutions_{number}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # inspect.getsource of a class (05's whole model) looks it up there
    spec.loader.exec_module(module)
    return module


def run_cell(source):
    """What the grader does with an exercise cell: the notebook's imports, then the cell."""
    namespace = {}
    exec(PREAMBLE + source, namespace)
    return namespace


def test_part_one_has_three_exercises_a_notebook_and_part_two_two():
    counts = {number: len(list_exercises(number))
              for number in ("01", "02", "03", "04", "05", "06", "07", "08")}
    assert all(counts[n] >= 3 for n in ("01", "02", "03", "04")), counts
    assert all(counts[n] >= 2 for n in ("05", "06", "07", "08")), counts
    assert sum(counts.values()) == len(EXERCISES) >= 28  # 00 and 09 have none


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_the_reference_solution_passes(exercise_id):
    exercise = get_exercise(exercise_id)
    result = check(exercise_id, getattr(solutions(exercise.notebook), exercise.function))
    assert result.status == CORRECT, str(result)
    assert result.passed == result.total >= 2  # several inputs, edge cases among them


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_every_known_mistake_fails_with_its_own_message(exercise_id):
    exercise = get_exercise(exercise_id)
    assert exercise.mistakes, f"{exercise_id} has no plausible wrong answer to recognise"
    for mistake in exercise.mistakes:
        result = check(exercise_id, mistake.answer)
        assert result.status == INCORRECT, str(result)
        assert result.hint == mistake.message, str(result)
        assert result.case and result.expected and result.got  # which input, what was expected, what came
        assert result.passed < result.total


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_the_untouched_stub_in_the_notebook_is_not_attempted(exercise_id):
    exercise = get_exercise(exercise_id)
    number, cells = read_exercise_cells(notebook_path(exercise.notebook))
    assert number == exercise.notebook
    stub = cells[exercise_id]
    assert "raise NotImplementedError" in stub and "YOUR CODE HERE" in stub
    result = check(exercise_id, run_cell(stub)[exercise.function])
    assert result.status == NOT_ATTEMPTED, str(result)
    assert exercise.function in result.message


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_the_solution_source_runs_as_an_exercise_cell(exercise_id):
    """What the notebook test and the grader do: the solution's source alone, after the preamble."""
    exercise = get_exercise(exercise_id)
    source = inspect.getsource(getattr(solutions(exercise.notebook), exercise.function))
    assert check(exercise_id, run_cell(source)[exercise.function]).status == CORRECT


# -- specific failures, in plain words ------------------------------------------------------------------

def test_closed_form_slopes_fail_at_six_heads_with_the_expected_and_received_values():
    result = check("03.slopes", lambda n: torch.tensor([2 ** (-8 * (h + 1) / n) for h in range(n)]))
    assert result.status == INCORRECT
    assert "n_head = 6" in result.case
    assert "0.25, 0.0625, 0.01562, 0.003906, 0.5, 0.125" in result.expected
    assert "closed form" in result.hint
    assert result.passed == 4  # 4, 8, 1 and 2 heads are powers of two: the closed form is right there


def test_slopes_for_powers_of_two_only_fail_on_the_first_other_head_count():
    def powers_of_two_only(n):
        if n & (n - 1):
            raise ValueError("only powers of two")
        return torch.tensor([2.0 ** (-8 * k / n) for k in range(1, n + 1)])

    result = check("03.slopes", powers_of_two_only)
    assert result.status == ERROR
    assert "ValueError" in result.message and "case 5 of 8" in result.message
    assert "only powers of two" in result.got and "line" in result.got  # where, in the learner's code
    assert "n_head = 6" in result.case and "power of two" in result.hint


def test_a_wrong_shape_is_named():
    result = check("03.bias", lambda slopes, T: torch.zeros(T, T))
    assert result.status == INCORRECT
    assert "expected shape (1, 4, 4) (head, query, key), got (4, 4)" in result.message


def test_masked_entries_must_be_minus_infinity():
    result = check("03.bias",
                   lambda s, T: -s[:, None, None] * (torch.arange(T)[:, None] - torch.arange(T)).abs())
    assert result.status == INCORRECT
    assert "entry [head 0, query 0, key 1]" in result.message and "-inf" in result.message


def test_a_missing_return_is_pointed_out():
    result = check("01.encode", lambda text, stoi: None)
    assert result.status == INCORRECT
    assert "returned None" in result.message and "return" in result.hint


def test_a_function_that_returns_ellipsis_is_not_attempted():
    assert check("01.decode", lambda ids, itos: ...).status == NOT_ATTEMPTED


def test_not_implemented_after_the_first_case_is_a_failure_not_a_stub():
    def half_done(n_head):
        if n_head != 4:
            raise NotImplementedError("later")
        return torch.tensor([0.25, 0.0625, 0.015625, 0.00390625])

    result = check("03.slopes", half_done)
    assert result.status == INCORRECT and "case 2 of 8" in result.message


def test_check_never_raises():
    def exits(*args):
        raise SystemExit(3)

    assert check("01.encode", exits).status == ERROR
    assert check("02.logits", lambda *a: 1 / 0).status == ERROR
    assert check("01.encode", "not a function").status == ERROR
    assert "check needs the function itself" in check("01.encode", [1, 2]).message
    unknown = check("99.nothing", lambda: 0)
    assert unknown.status == ERROR and "unknown exercise" in unknown.message
    assert check("01.encode", lambda text, stoi: "a string").status == INCORRECT
    assert check("03.bias", lambda s, T: [[1, 2]]).status == INCORRECT


def test_inputs_changed_in_place_do_not_spoil_the_next_case():
    def mixes_then_scribbles(x, mix):
        out = torch.einsum("hg,bgtd->bhtd", mix, x)
        x.zero_()
        mix.fill_(7.0)
        return out

    assert check("04.channel_mix", mixes_then_scribbles).status == CORRECT


def test_lists_and_tensors_of_numbers_are_both_accepted_where_the_exercise_allows_both():
    # 01.encode asks for a list and says so when a tensor comes back (tests/test_hints.py)
    assert check("03.slopes", lambda n: solutions("03").slopes(n).tolist()).status == CORRECT


def test_the_result_renders_in_a_terminal_and_a_notebook():
    result = check("03.bias", positive_bias)
    text, page = str(result), result._repr_html_()
    assert text.startswith("✘ 03.bias: incorrect")
    for label in ("input:", "expected:", "got:", "hint:"):
        assert label in text
    assert "<div" in page and "03.bias" in page and "incorrect" in page
    assert repr(result) == text
    assert result.to_dict()["status"] == INCORRECT
    correct = check("03.bias", solutions("03").bias_matrix)
    assert "✔" in str(correct) and "#2e7d32" in correct._repr_html_()


def positive_bias(slopes, T):
    """A bias with the wrong sign: a reward for distance instead of a penalty."""
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    return (slopes[:, None, None] * (i - j)).masked_fill(j > i, float("-inf"))


def test_check_leaves_the_notebooks_random_state_alone():
    torch.manual_seed(5)
    untouched = torch.rand(3)
    torch.manual_seed(5)
    for exercise_id in ("02.start_streams", "02.block_forward"):  # their cases build seeded modules
        exercise = get_exercise(exercise_id)
        assert check(exercise_id, getattr(solutions("02"), exercise.function)).status == CORRECT
    assert torch.equal(torch.rand(3), untouched)
