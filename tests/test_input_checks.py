"""Sampling and vocabulary inputs that used to end in tracebacks (#15 group 8)."""

import pytest
import torch

from tfa_core import create_tokenizer, sample_next_token
from tfa_core.data.tokenizers import CharacterTokenizer


@pytest.mark.parametrize("temperature", [float("nan"), float("inf"), -0.5])
def test_temperature_must_be_a_finite_number(temperature):
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        sample_next_token(torch.zeros(1, 4), temperature=temperature)


def test_top_p_nan_is_refused():
    with pytest.raises(ValueError, match="top_p must be in"):
        sample_next_token(torch.zeros(1, 4), top_p=float("nan"))


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_nan_logits_are_named(temperature):
    logits = torch.tensor([[0.0, float("nan"), 1.0]])
    with pytest.raises(ValueError, match="the logits hold NaN"):
        sample_next_token(logits, temperature=temperature)


def test_a_row_with_nothing_to_choose_is_named():
    with pytest.raises(ValueError, match="probability 0"):
        sample_next_token(torch.full((1, 3), float("-inf")), temperature=1.0)


def test_a_vocabulary_path_that_is_a_folder(tmp_path):
    with pytest.raises(ValueError, match="is a folder; give the JSON file"):
        CharacterTokenizer.load(tmp_path)
    with pytest.raises(ValueError, match="is a folder"):
        create_tokenizer("character", vocab_file=tmp_path)
    with pytest.raises(ValueError, match="cannot save to .*: it is a folder"):
        create_tokenizer("character", text="abc").save(tmp_path)
