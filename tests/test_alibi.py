import math

import pytest
import torch

from tfa_core import alibi_bias, alibi_slopes, causal_mask


def exponents(n):
    return [math.log2(s) for s in alibi_slopes(n).tolist()]


@pytest.mark.parametrize(
    "n_head, expected",
    [
        (1, [-8]),
        (2, [-4, -8]),
        (3, [-4, -8, -2]),
        (4, [-2, -4, -6, -8]),
        (6, [-2, -4, -6, -8, -1, -3]),
        (8, [-1, -2, -3, -4, -5, -6, -7, -8]),
        (12, [-1, -2, -3, -4, -5, -6, -7, -8, -0.5, -1.5, -2.5, -3.5]),
        (16, [-0.5 * k for k in range(1, 17)]),
    ],
)
def test_slopes_follow_the_authors_algorithm(n_head, expected):
    assert exponents(n_head) == pytest.approx(expected, abs=1e-6)


def test_closed_form_is_wrong_for_six_heads():
    closed_form = [2 ** (-8 * (h + 1) / 6) for h in range(6)]
    assert not torch.allclose(alibi_slopes(6), torch.tensor(closed_form))


def test_slopes_reject_bad_head_counts():
    with pytest.raises(ValueError, match="n_head"):
        alibi_slopes(0)
    with pytest.raises(TypeError, match="n_head"):
        alibi_slopes(4.0)


def test_max_bias_scales_the_exponents():
    assert [math.log2(s) for s in alibi_slopes(4, max_bias=4.0).tolist()] == pytest.approx([-1, -2, -3, -4])


def test_bias_values_and_causal_mask():
    slopes = torch.tensor([0.5, 0.25])
    bias = alibi_bias(slopes, 3)
    inf = float("-inf")
    expected_head0 = torch.tensor([[0.0, inf, inf], [-0.5, 0.0, inf], [-1.0, -0.5, 0.0]])
    assert torch.equal(bias[0], expected_head0)
    assert torch.equal(bias[1], expected_head0 / 2)


def test_bias_for_queries_at_the_end_of_the_keys():
    """Cached decoding: one new query over 5 keys sees all of them, the newest with bias 0."""
    slopes = torch.tensor([0.5])
    last_row = alibi_bias(slopes, 1, 5)
    assert torch.equal(last_row[0, 0], torch.tensor([-2.0, -1.5, -1.0, -0.5, 0.0]))
    # and it equals the last row of the full square bias
    assert torch.equal(alibi_bias(slopes, 5)[:, -2:], alibi_bias(slopes, 2, 5))


def test_causal_mask_shape_and_errors():
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]
    with pytest.raises(ValueError, match="queries"):
        causal_mask(5, 3)
