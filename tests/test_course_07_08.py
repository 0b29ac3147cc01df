"""Notebooks 07 and 08's exercises: what a learner sees for specific wrong answers, and that the
references agree with what tfa_core's evaluation and inspection really do."""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tfa_core import GPTConfigALiBi, get_model
from tfa_core.experiments.evaluation import evaluate_length, token_losses
from tfa_core.teaching.exercises import CORRECT, ERROR, INCORRECT, check
from tfa_core.teaching.exercises.perplexity import reference_perplexity, reference_sliding_windows
from tfa_core.teaching.exercises.lens import reference_attention_probabilities, reference_lens
from tfa_core.experiments.inspection import attention_maps, logit_lens

ROOT = Path(__file__).resolve().parents[1]


def solutions(stem):
    spec = importlib.util.spec_from_file_location(stem, ROOT / "solutions" / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- 07: the references are what evaluate_length does --------------------------------------------------

class KnownLosses(nn.Module):
    """A stand-in model for evaluate_length on the text 0, 1, 2, ...: after token x it gives the next
    token, x + 1, the logit 0.01 (x + 1), so the loss of predicting text index t is a known number."""

    learned_positions = False
    max_sequence_length = 10_000

    def __init__(self, vocab):
        super().__init__()
        self.vocab = vocab
        self.unused = nn.Parameter(torch.zeros(1))  # evaluate_length asks for the device

    def forward(self, ids):
        target = (ids + 1).clamp(max=self.vocab - 1)
        logits = torch.zeros(*ids.shape, self.vocab)
        return {"logits": logits.scatter(-1, target[..., None], 0.01 * target[..., None].float())}

    def loss_of(self, index):
        """The loss of predicting text index ``index``: -log softmax at the right token."""
        w = 0.01 * index.double()
        return torch.log(self.vocab - 1 + torch.exp(w)) - w


@pytest.mark.parametrize("n_tokens, length, stride",
                         [(13, 4, 2), (18, 6, 4), (40, 8, 3), (9, 8, 4), (30, 5, 5)])
def test_the_sliding_windows_reference_scores_what_evaluate_length_scores(n_tokens, length, stride):
    model = KnownLosses(n_tokens)
    targets = reference_sliding_windows(n_tokens, length, stride)
    scored = targets[targets != -100]
    assert len(set(scored.tolist())) == len(scored)  # every token at most once
    assert scored.tolist() == list(range(1, len(scored) + 1))  # from the first target on, none skipped
    assert n_tokens - 1 - len(scored) < stride  # what is left at the end is shorter than a stride
    mode = "non_overlapping" if stride == length else "sliding"
    # the exercise leaves the tail unscored; evaluate_length scores what its budget names
    result = evaluate_length(model, torch.arange(n_tokens), length, mode, stride=stride, batch_size=3,
                             tokens_scored=len(scored))
    assert result.tokens_scored == len(scored)
    assert result.loss == pytest.approx(model.loss_of(scored).mean().item(), rel=1e-6)
    by_position = [model.loss_of(targets[:, t][targets[:, t] != -100]).mean().item() for t in range(length)]
    assert result.loss_by_position == pytest.approx(by_position, rel=1e-6)


def test_perplexity_of_the_sliding_windows_is_evaluate_lengths():
    config = GPTConfigALiBi(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=11, dropout=0.0)
    torch.manual_seed(0)
    model = get_model("FactoredALiBi", config).eval()
    tokens = torch.randint(0, 11, (50,), generator=torch.Generator().manual_seed(1))
    targets = reference_sliding_windows(50, 8, 3)
    starts = targets[:, -1] - 8  # the last target of window w is start + 8
    windows = torch.stack([tokens[s:s + 9] for s in starts.tolist()])
    losses = token_losses(model, windows)  # (windows, 8)
    expected = evaluate_length(model, tokens, 8, "sliding", stride=3,
                               tokens_scored=int((targets != -100).sum())).perplexity
    assert reference_perplexity(losses, targets) == pytest.approx(expected, rel=1e-9)
    answers = solutions("07_length_extrapolation")
    assert answers.perplexity(losses, targets) == pytest.approx(expected, rel=1e-9)
    assert torch.equal(answers.sliding_windows(50, 8, 3), targets)


# -- 07: specific failures ---------------------------------------------------------------------------

def test_the_mean_of_exp_fails_on_the_first_case_with_both_numbers():
    result = check("07.perplexity", lambda losses, targets: losses[targets != -100].exp().mean())
    assert result.status == INCORRECT and result.passed == 0
    # mean(e^2, e^1, e^3, e^0.5) against e^1.625
    assert "the perplexity is 7.9604, expected 5.07842" in result.message
    assert "exp and mean do not commute" in result.hint


def test_counting_ignored_tokens_passes_until_a_target_is_ignored():
    result = check("07.perplexity", lambda losses, targets: torch.exp(losses.mean()))
    assert result.status == INCORRECT and result.passed == 1
    assert "-100" in result.case and "target -100" in result.hint
    assert "the perplexity is 3.49034, expected 7.38906" in result.message  # e^(10/8) against e^(10/5)


def test_a_perplexity_per_row_is_not_one_number():
    result = check("07.perplexity", lambda losses, targets: losses.mean(dim=1).exp())
    assert result.status == INCORRECT and result.passed == 1  # one row: one number, right by luck
    assert "expected one number (a float or a 0-d tensor), got a tensor of shape (2,)" in result.message
    assert "average over every scored token of every row" in result.message


def test_windows_without_the_masking_score_tokens_twice():
    def every_target(n_tokens, length, stride):
        starts = torch.arange(0, n_tokens - length, stride)
        return starts[:, None] + torch.arange(1, length + 1)

    result = check("07.sliding_windows", every_target)
    assert result.status == INCORRECT
    assert "entry [window 1, position 0] is 3, expected -100" in result.message
    assert "scored twice" in result.hint


def test_windows_as_a_list_or_floats_are_named():
    result = check("07.sliding_windows", lambda n, L, S: [[1, 2, 3, 4]])
    assert result.status == INCORRECT and "expected a torch.Tensor, got list" in result.message
    answer = solutions("07_length_extrapolation").sliding_windows
    result = check("07.sliding_windows", lambda n, L, S: answer(n, L, S).float())
    assert "expected an integer tensor (int64), got dtype torch.float32" in result.message
    assert check("07.sliding_windows", answer).status == CORRECT


# -- 08: the references are the model's own lens and attention --------------------------------------

def test_the_lens_reference_is_the_models_read_out():
    config = GPTConfigALiBi(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=11, dropout=0.0)
    torch.manual_seed(0)
    model = get_model("FactoredALiBi", config).eval()
    with torch.no_grad():
        model.transformer.ln_f.weight.mul_(1.7)
        ids = torch.tensor([[1, 4, 4, 9, 0]])
        xt, xe = model(ids, return_streams=True)["streams"][1]
        by_reference = reference_lens(xt, model.transformer.ln_f.weight, model.transformer.wte.weight)
    assert torch.allclose(by_reference, logit_lens(model, ids)["xt"][1], atol=1e-5)


def test_the_attention_reference_is_the_models_first_layer():
    config = GPTConfigALiBi(n_layer=1, n_head=4, n_embd=16, block_size=8, vocab_size=11, dropout=0.0)
    torch.manual_seed(0)
    model = get_model("FactoredALiBi", config).eval()
    ids = torch.tensor([[1, 4, 4, 9, 0, 3]])
    block = model.transformer.h[0]
    with torch.no_grad():
        h = block.ln_1(model.transformer.wte(ids))  # xe = 0 before the first block
        probabilities = reference_attention_probabilities(h, block.attn.c_attn.weight, model.alibi_slopes)
    assert torch.allclose(probabilities[0], attention_maps(model, ids)[0], atol=1e-6)


# -- 08: specific failures ---------------------------------------------------------------------------

def test_a_lens_without_the_norm_is_named():
    result = check("08.logit_lens", lambda stream, weight, wte: stream @ wte.T)
    assert result.status == INCORRECT and result.passed == 0
    assert "final norm is skipped" in result.hint


def test_a_lens_through_the_untransposed_embedding_is_named_on_the_square_case():
    def untransposed(stream, weight, wte):
        normalised = torch.nn.functional.layer_norm(stream, (stream.shape[-1],), weight)
        return normalised @ wte

    result = check("08.logit_lens", untransposed)
    assert result.status == INCORRECT and result.passed == 0
    assert "vocabulary = width" in result.case and "untransposed" in result.hint


def test_a_shape_error_in_the_lens_points_at_the_learners_line():
    result = check("08.logit_lens", lambda stream, weight, wte: stream @ wte[:5])
    assert result.status == ERROR and "RuntimeError" in result.message
    assert "line" in result.got


def test_attention_without_the_scale_fails_with_the_entry_that_differs():
    answer = solutions("08_inside_the_streams").attention_probabilities

    def unscaled(h, w_qk, slopes):
        d = h.shape[-1] // slopes.shape[0]
        return answer(h * d ** 0.25, w_qk, slopes)  # q k^T grows by sqrt(d): the scale undone

    result = check("08.attention_probabilities", unscaled)
    assert result.status == INCORRECT and result.passed == 0
    assert "[batch 0, head 0, query 4, key 0]" in result.message
    assert "divide q @ k^T by sqrt(d)" in result.hint


def test_the_wrong_sign_of_the_bias_is_named():
    answer = solutions("08_inside_the_streams").attention_probabilities
    result = check("08.attention_probabilities", lambda h, w, slopes: answer(h, w, -slopes))
    assert result.status == INCORRECT and "wrong sign" in result.hint
