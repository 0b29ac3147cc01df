"""The exercises of notebooks 05 (assembling the model) and 06 (training): specific failures, in plain
words, and the comparisons they use. (tests/test_exercises.py checks every exercise's solution, known
mistakes and stub in general.)"""

import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tfa_core import GPTConfigALiBi, TrainingConfig, estimate_model_parameters, top_p_filter
from tfa_core.teaching.exercises import CORRECT, ERROR, INCORRECT, check
from tfa_core.teaching.exercises.comparing import close_number, same_count
from tfa_core.training.trainer import learning_rate_at

sys.path.insert(0, str(Path(__file__).parent))
from test_exercises import solutions  # noqa: E402

# -- 05.parameter_count ---------------------------------------------------------------------------------


def tutorial_count(config):
    """The original tutorial's estimate: every block counted as a GPT-2 block, 12C² + 2C."""
    V, L, C = config.vocab_size, config.n_layer, config.n_embd
    return V * C + L * (12 * C * C + 2 * C) + C


def test_the_tutorial_count_fails_on_the_character_preset_with_numbers_and_the_reason():
    result = check("05.parameter_count", tutorial_count)
    assert result.status == INCORRECT and result.passed == 0
    assert "character preset" in result.case
    assert "the count is 797,952, expected 666,880 (131,072 too many)" in result.message  # 2 L C² = 131,072
    assert "12C²" in result.hint and "only Q and K" in result.hint
    assert result.expected == "666880"


def test_a_count_without_the_mixes_passes_until_use_v_appears():
    def without_mixes(config):
        C, L = config.n_embd, config.n_layer
        return config.vocab_size * C + L * (10 * C * C + 2 * C) + C

    result = check("05.parameter_count", without_mixes)
    assert result.status == INCORRECT and result.passed == 1
    assert "use_v=True" in result.case and "72 too few" in result.message  # 2 layers x 6² heads
    assert "H x H" in result.hint


def test_a_count_from_the_built_model_is_correct_and_a_float_count_is_accepted():
    from tfa_core import get_model

    def by_building(config):
        return float(sum(p.numel() for p in get_model("FactoredALiBi", config).parameters()))

    assert check("05.parameter_count", by_building).status == CORRECT


def test_same_count_names_the_difference_and_refuses_non_numbers():
    assert same_count(100, 100) is None and same_count(100, torch.tensor(100)) is None
    assert same_count(100, 101) == "the count is 101, expected 100 (1 too many)"
    assert same_count(1000, 10) == "the count is 10, expected 1,000 (990 too few)"
    assert same_count(100, 99.5) == "expected a whole number, got 99.5"
    assert "expected a whole number (an int), got str" == same_count(100, "100")
    assert "got bool" in same_count(1, True)


# -- 05.next_token_loss ---------------------------------------------------------------------------------


def test_a_loss_without_the_shift_fails_on_the_first_case_with_the_fix():
    def unshifted(logits, labels):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))

    result = check("05.next_token_loss", unshifted)
    assert result.status == INCORRECT and result.passed == 0
    assert "the loss is 1.8769, expected 1.48055" in result.message
    assert "logits[:, :-1] and labels[:, 1:]" in result.hint


def test_counting_the_ignored_targets_fails_only_where_labels_are_minus_100():
    def mean_over_everything(logits, labels):
        total = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                reduction="sum")  # -100 is skipped in the sum...
        return total / labels[:, 1:].numel()  # ...but counted in the mean

    result = check("05.next_token_loss", mean_over_everything)
    assert result.status == INCORRECT and result.passed == 1
    assert "-100" in result.case and "number of real targets" in result.hint


def test_log_of_softmax_underflows_on_confident_logits():
    def log_of_softmax(logits, labels):
        log_probs = torch.log(torch.softmax(logits[:, :-1], dim=-1))
        targets = labels[:, 1:]
        keep = targets != -100
        return -log_probs[keep].gather(-1, targets[keep][:, None]).mean()

    result = check("05.next_token_loss", log_of_softmax)
    assert result.status == INCORRECT and result.passed == 3
    assert "the loss is inf, expected 167.775" in result.message
    assert "log_softmax" in result.hint


def test_a_float_loss_is_accepted_and_a_per_token_loss_is_refused():
    assert check("05.next_token_loss",
                 lambda lg, lb: solutions("05").next_token_loss(lg, lb).item()).status == CORRECT

    def per_token(logits, labels):
        return F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none")

    result = check("05.next_token_loss", per_token)
    assert result.status == INCORRECT
    assert "expected one number (a float or a 0-d tensor), got a tensor of shape (1, 3)" in result.message


def test_close_number_in_words():
    compare = close_number("the loss", atol=1e-4, rtol=0.0)
    assert compare(2.0, torch.tensor(2.00005)) is None
    assert compare(2.0, 2.1) == "the loss is 2.1, expected 2"
    assert compare(2.0, float("nan")) == "the loss is nan, expected 2"
    assert compare(float("inf"), float("inf")) is None  # equal infinities agree (a known mistake's answer)
    assert compare(2.0, [2.0]) == "expected one number (a float or a 0-d tensor), got list"


# -- 06.lr_schedule -------------------------------------------------------------------------------------


def test_the_solution_equals_learning_rate_at_on_every_step_of_a_run():
    lr_schedule = solutions("06").lr_schedule
    for warmup, max_steps in ((10, 100), (0, 30), (1, 2), (50, 50)):
        config = TrainingConfig(max_steps=max_steps, warmup_steps=warmup, learning_rate=2e-3,
                                min_learning_rate=1e-4)
        for step in range(max_steps + 20):
            expected = pytest.approx(learning_rate_at(step, config), abs=1e-15)
            assert lr_schedule(step, warmup, max_steps, 2e-3, 1e-4) == expected


def test_warmup_from_zero_fails_at_step_zero_with_the_off_by_one_hint():
    def from_zero(step, warmup_steps, max_steps, max_lr, min_lr):
        if step < warmup_steps:
            return max_lr * step / warmup_steps
        return solutions("06").lr_schedule(step, warmup_steps, max_steps, max_lr, min_lr)

    result = check("06.lr_schedule", from_zero)
    assert result.status == INCORRECT and result.passed == 0
    assert result.message.startswith("the learning rate is 0, expected 0.0001")
    assert "(step + 1)" in result.hint


def test_a_schedule_that_climbs_again_after_max_steps_fails_past_the_end():
    def unclamped(step, warmup_steps, max_steps, max_lr, min_lr):
        if step < warmup_steps:
            return max_lr * (step + 1) / warmup_steps
        progress = (step - warmup_steps) / (max_steps - warmup_steps)
        return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (max_lr - min_lr)

    result = check("06.lr_schedule", unclamped)
    assert result.status == INCORRECT and result.passed == 7
    assert "past max_steps" in result.case and "clamp progress to 1" in result.hint


def test_a_schedule_that_divides_by_zero_without_warmup_is_an_error_on_the_last_case():
    def divides(step, warmup_steps, max_steps, max_lr, min_lr):
        if step <= warmup_steps - 1 or step / warmup_steps < 1:
            return max_lr * (step + 1) / warmup_steps
        return solutions("06").lr_schedule(step, warmup_steps, max_steps, max_lr, min_lr)

    result = check("06.lr_schedule", divides)
    assert result.status == ERROR
    assert "ZeroDivisionError" in result.message and "case 9 of 9" in result.message
    assert "warmup_steps = 0" in result.hint


# -- 06.top_k_filter and 06.top_p_filter ---------------------------------------------------------------


def test_top_k_with_k_larger_than_the_vocabulary_is_an_error_with_the_fix():
    result = check("06.top_k_filter", lambda logits, k: logits.masked_fill(
        logits < torch.topk(logits, k, dim=-1).values[:, -1:], float("-inf")))
    assert result.status == ERROR and "case 4 of 4" in result.message
    assert "min(k, logits.shape[-1])" in result.hint


def test_top_k_over_the_wrong_dimension_keeps_the_whole_row_and_fails_at_once():
    def over_the_batch(logits, k):
        k = min(k, logits.shape[0])  # a (1, V) row has one entry per column along dim 0: all kept
        return logits.masked_fill(logits < torch.topk(logits, k, dim=0).values[-1:], float("-inf"))

    result = check("06.top_k_filter", over_the_batch)
    assert result.status == INCORRECT and result.passed == 0
    assert "entry [row 0, token 2] is 0.5, expected -inf" in result.message


def test_unsorted_top_p_passes_the_sorted_row_and_fails_the_unsorted_one():
    def unsorted(logits, p):
        probs = torch.softmax(logits, dim=-1)
        return logits.masked_fill(probs.cumsum(dim=-1) - probs >= p, float("-inf"))

    result = check("06.top_p_filter", unsorted)
    assert result.status == INCORRECT and result.passed == 1
    assert "not sorted" in result.case and "sort them, most likely first" in result.hint


def test_top_p_that_drops_the_crossing_token_is_named():
    def strict(logits, p):
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        drop = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1) > p
        return logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))

    result = check("06.top_p_filter", strict)
    assert result.status == INCORRECT and result.passed == 0
    assert "entry [row 0, token 2] is -inf, expected 0.5" in result.message
    assert "crosses p is dropped" in result.hint


def test_the_top_p_cases_keep_what_the_notebook_says():
    """The first case's probabilities are 0.56, 0.21, 0.13, ...: p = 0.8 keeps three tokens."""
    kept = torch.isfinite(top_p_filter(torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]]), 0.8))
    assert kept.tolist() == [[True, True, True, False, False]]
    toy = torch.tensor([[3.0, 2.0, 1.0, 0.5, 0.0, -1.0, -2.0, -3.0]])  # notebook 06's example
    assert int(torch.isfinite(top_p_filter(toy, 0.92)).sum()) == 4


def test_parameter_count_matches_estimate_for_odd_configs():
    count = solutions("05").parameter_count
    for options in (dict(), dict(use_v=True), dict(use_proj=True, bias=True),
                    dict(use_v=True, use_proj=True, bias=True)):
        config = GPTConfigALiBi(n_layer=3, n_head=5, n_embd=40, vocab_size=33, block_size=12, **options)
        assert count(config) == estimate_model_parameters(config, "FactoredALiBi")
