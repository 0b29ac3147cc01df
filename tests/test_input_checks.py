"""Model, sampling and vocabulary inputs that used to end in tracebacks or silent garbage (#15 group 8)."""

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


# -- model inputs (issue #15, group 8): refused before torch sees them, with the fix named ----------------

def _tiny_model():
    from tfa_core import GPTConfigALiBi, get_model

    config = GPTConfigALiBi(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=20, dropout=0.0)
    return get_model("FactoredALiBi", config).eval()


@pytest.mark.parametrize("dtype", [torch.int16, torch.uint8, torch.float32, torch.bool])
def test_token_ids_of_a_small_or_float_dtype_are_refused(dtype):
    ids = torch.ones(1, 4, dtype=dtype)
    refusal = r"input_ids must hold integer token ids as torch.long .*input_ids.long\(\)"
    with pytest.raises(TypeError, match=refusal):
        _tiny_model()(ids)


def test_int32_ids_give_the_same_logits_as_int64():
    model, ids = _tiny_model(), torch.tensor([[1, 2, 3, 4]])
    torch.testing.assert_close(model(ids.int())["logits"], model(ids)["logits"], atol=0, rtol=0)


def test_labels_of_the_wrong_dtype_or_out_of_range_are_refused():
    model, ids = _tiny_model(), torch.tensor([[1, 2, 3, 4]])
    with pytest.raises(TypeError, match="labels must hold integer token ids"):
        model(ids, labels=ids.float())
    out_of_range = r"labels must be token ids in \[0, 20\) or -100 \(ignored\), got 20"
    with pytest.raises(ValueError, match=out_of_range):
        model(ids, labels=torch.tensor([[1, 2, 20, 4]]))
    with pytest.raises(ValueError, match="got -5"):
        model(ids, labels=torch.tensor([[1, -5, 3, 4]]))
    assert torch.isfinite(model(ids, labels=torch.tensor([[1, -100, 3, 4]]))["loss"])  # -100 is ignored


@pytest.mark.parametrize("value", [0.5, 2.0, float("-inf")])
def test_a_mask_that_is_not_keep_or_pad_is_refused(value):
    """0.5 and 2 used to mean "keep" silently, and an additive 0/-inf mask was silently inverted."""
    model, ids = _tiny_model(), torch.tensor([[1, 2, 3, 4]])
    mask = torch.ones(1, 4)
    mask[0, 0] = value
    refusal = r"attention_mask must hold only 1 \(keep\) and 0 \(padding\).*mask == 0"
    with pytest.raises(ValueError, match=refusal):
        model(ids, attention_mask=mask)


def test_masks_of_ones_and_zeros_in_any_dtype_agree():
    model, ids = _tiny_model(), torch.tensor([[1, 2, 3, 4]])
    keep = torch.tensor([[0, 1, 1, 1]])
    reference = model(ids, attention_mask=keep.bool())["logits"]
    for mask in (keep, keep.float(), keep.int()):
        torch.testing.assert_close(model(ids, attention_mask=mask)["logits"], reference, atol=0, rtol=0)
