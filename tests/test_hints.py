"""The four hints that a learner working through the course found too weak (issue #14): each plausible
wrong answer now gets a hint that names what is wrong, and the failure shows enough to see it."""

import math

import torch

from tfa_core.teaching.exercises import CORRECT, INCORRECT, check


def test_half_weight_distance_multiplied_by_the_slope_is_told_to_divide():
    result = check("03.half_weight_distance", lambda slopes: math.log(2) * slopes)
    assert result.status == INCORRECT
    assert "d = ln(2) / m" in result.hint and "multiplied" in result.hint
    assert result.case == "slopes = [0.5]"  # the first case already shows it: 0.35 instead of 1.39


def _probabilities(h, w_qk, slopes, distance_of, mask):
    B, T, C = h.shape
    H = len(slopes)
    q, k = (h @ w_qk.T).split(C, dim=-1)
    q, k = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k))
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    bias = -slopes[:, None, None] * distance_of(i - j).float()
    if mask:
        bias = bias.masked_fill(j > i, float("-inf"))
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(C // H) + bias, dim=-1)


def test_attention_probabilities_without_the_causal_mask_is_told_so_however_the_distance_is_written():
    for distance_of in (lambda d: d.clamp(min=0), lambda d: d.abs(), lambda d: d, lambda d: 0 * d):
        answer = lambda h, w, s, f=distance_of: _probabilities(h, w, s, f, mask=False)  # noqa: E731
        result = check("08.attention_probabilities", answer)
        assert result.status == INCORRECT
        assert "mask" in result.hint and "-inf" in result.hint, result.hint
        assert "softmax(q @ k^T" not in result.hint  # not the general recipe


def test_attention_probabilities_with_the_mask_but_no_bias_is_told_the_bias_is_missing():
    result = check("08.attention_probabilities",
                   lambda h, w, s: _probabilities(h, w, s, lambda d: 0 * d, mask=True))
    assert result.status == INCORRECT and "ALiBi bias is missing" in result.hint
    correct = check("08.attention_probabilities",
                    lambda h, w, s: _probabilities(h, w, s, lambda d: d, mask=True))
    assert correct.status == CORRECT, str(correct)


def test_encode_must_return_a_list_and_says_so_for_a_tensor_of_any_dtype():
    for dtype in (torch.long, torch.int32, torch.float32):
        result = check("01.encode",
                       lambda text, stoi, dtype=dtype: torch.tensor([stoi[c] for c in text], dtype=dtype))
        assert result.status == INCORRECT
        assert "got a tensor" in result.message and "[stoi[c] for c in text]" in result.message
        assert "empty" not in result.hint  # not the empty-text hint of case 3: it fails on case 1
        assert result.passed == 0
    assert check("01.encode", lambda text, stoi: [stoi[c] for c in text]).status == CORRECT


def test_kronecker_lift_failure_shows_a_whole_row_of_the_matrix():
    result = check("04.kronecker_lift", lambda mix, d: torch.kron(torch.eye(d), mix))
    assert result.status == INCORRECT
    # the 6 x 6 answer of case 1 is shortened to 8 numbers in "got"; the message shows the row in full
    assert "row 1 is [3, 4, 0, 0, 0, 0], expected [0, 1, 0, 0, 2, 0]" in result.message
    assert "I_d ⊗ V" in result.hint
    blocks_of_ones = check("04.kronecker_lift",
                           lambda mix, d: mix.repeat_interleave(d, 0).repeat_interleave(d, 1))
    assert "only on the block's diagonal" in blocks_of_ones.hint
    assert "row 3 is [3, 3, 3, 4, 4, 4], expected [3, 0, 0, 4, 0, 0]" in blocks_of_ones.message
