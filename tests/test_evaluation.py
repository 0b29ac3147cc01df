import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import tfa_core.model.fast_attention as attention_module
from tfa_core import GPTConfigALiBi, get_model
from tfa_core.experiments.evaluation import (
    DEFAULT_TOKENS_SCORED,
    evaluate_length,
    evaluation_budget,
    scored_windows,
    test_length_extrapolation,
    token_losses,
    window_stride,
)


@pytest.fixture
def tokens():
    return torch.randint(0, 40, (1000,), generator=torch.Generator().manual_seed(0))


def model_for(name="FactoredALiBi", block_size=16):
    torch.manual_seed(0)
    config = GPTConfigALiBi(n_layer=2, n_head=4, n_embd=32, block_size=block_size, vocab_size=40, dropout=0.0)
    return get_model(name, config).eval()


def test_token_losses_match_the_model_loss(tokens):
    model = model_for()
    windows = tokens[:2 * 17].view(2, 17)
    losses = token_losses(model, windows)
    assert losses.shape == (2, 16)
    # the model's own loss on the 17 tokens covers the same 16 predictions
    torch.testing.assert_close(losses.mean(), model(windows, labels=windows)["loss"], atol=1e-5, rtol=0)


def test_non_overlapping_windows_score_every_token_once(tokens):
    model = model_for()
    result = evaluate_length(model, tokens, 32, "non_overlapping", batch_size=5)
    # by default every target of the 1,000 tokens: 31 full windows, and one for the last 7 targets
    assert result.tokens_scored == 999 and result.stride == 32 and len(result.loss_by_position) == 32
    # by hand: the last window is short (a causal model's padding after it changes nothing)
    full = token_losses(model, torch.stack([tokens[s:s + 33] for s in range(0, 992, 32)]))
    tail = token_losses(model, tokens[None, 992:])
    assert tail.shape == (1, 7)
    by_hand = torch.cat([full.flatten(), tail.flatten()]).double().mean().item()
    torch.testing.assert_close(result.loss, by_hand, atol=1e-6, rtol=0)


def test_sliding_windows_give_every_scored_token_long_context(tokens):
    model = model_for()
    result = evaluate_length(model, tokens, 32, "sliding", stride=8, tokens_scored=200)
    assert result.tokens_scored == 200  # 32 in the first window, then 21 windows of 8 new targets
    assert len(scored_windows(200, 32, 8)) == 22
    # later windows score only their last 8 positions: position 0 is scored by the first window only
    first = token_losses(model, tokens[None, :33])[0]
    assert result.loss_by_position[0] == pytest.approx(first[0].item(), abs=1e-6)
    same = evaluate_length(model, tokens, 32, "sliding", stride=32)
    assert same.loss == pytest.approx(evaluate_length(model, tokens, 32, "non_overlapping").loss, abs=1e-9)


@pytest.mark.parametrize("tokens_scored, length, stride", [
    (n, length, stride) for n in (1, 7, 64, 100, 999)
    for length, stride in ((1, 1), (7, 7), (16, 16), (16, 8), (16, 5), (16, 1), (64, 48))
    if length <= n])  # evaluate_length refuses a budget shorter than a window
def test_the_windows_score_each_target_of_the_budget_exactly_once(tokens_scored, length, stride):
    windows = scored_windows(tokens_scored, length, stride)
    targets = [start + p + 1 for start, first, end in windows for p in range(first, end)]
    assert targets == list(range(1, tokens_scored + 1))  # in order: none skipped, none twice
    assert [start for start, _, _ in windows] == list(range(0, stride * len(windows), stride))
    assert all(first == (0 if start == 0 else length - stride) for start, first, _ in windows)
    assert all(end == length for _, _, end in windows[:-1])  # only the last may stop at the budget


class NoContext(nn.Module):
    """A stand-in causal model that ignores the context: the logits after token ``x`` are row ``x`` of
    a fixed table. The loss of the target at text index ``t`` depends on tokens ``t - 1`` and ``t``
    alone, so it is the same at every length and in every window."""

    learned_positions = False
    max_sequence_length = 10_000

    def __init__(self, vocab):
        super().__init__()
        self.table = nn.Parameter(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0)))

    def forward(self, ids):
        return {"logits": self.table[ids]}


def test_every_length_and_mode_scores_the_same_tokens(tokens):
    model = NoContext(40)
    n = 300  # not a multiple of 64, 100 or 128: those lengths need a last window that stops at the budget
    expected = F.cross_entropy(model.table[tokens[:n]], tokens[1:n + 1]).item()  # targets 1 .. 300
    results = [evaluate_length(model, tokens, length, mode, tokens_scored=n, batch_size=3)
               for length in (16, 64, 100, 128, 300) for mode in ("non_overlapping", "sliding")]
    assert {r.tokens_scored for r in results} == {300}
    for r in results:
        assert r.loss == pytest.approx(expected, abs=1e-6), (r.length, r.mode)
        assert r.loss == pytest.approx(results[0].loss, rel=1e-12), (r.length, r.mode)


def test_one_input_shape_per_length_whatever_the_batch_size(tokens):
    model = model_for()
    shapes = []
    model.register_forward_pre_hook(lambda module, args: shapes.append(tuple(args[0].shape)))
    losses = {}
    for batch_size in (1, 5, 7, 100):
        for mode in ("non_overlapping", "sliding"):
            shapes.clear()
            result = evaluate_length(model, tokens, 32, mode, batch_size=batch_size)
            n_windows = len(scored_windows(999, 32, result.stride))  # 32 non-overlapping, 62 sliding
            rows = min(batch_size, n_windows)
            assert set(shapes) == {(rows, 32)} and len(shapes) == math.ceil(n_windows / rows)
            losses.setdefault(mode, []).append(result.loss)
    for mode, values in losses.items():  # the padding rows are scored nowhere
        assert values == pytest.approx([values[0]] * 4, abs=1e-6), mode


def test_the_default_budget_is_capped_by_the_text():
    assert evaluation_budget(None, 100_000) == DEFAULT_TOKENS_SCORED == 32_768
    assert evaluation_budget(None, 1000) == 999  # the first token is no target
    assert evaluation_budget(320, 1000) == 320 and evaluation_budget(5000, 1000) == 999
    assert [window_stride(32, "non_overlapping"), window_stride(32, "sliding"),
            window_stride(32, "sliding", 8), window_stride(2, "sliding")] == [32, 16, 8, 1]


def test_budget_mistakes_are_named(tokens):
    model = model_for()
    with pytest.raises(ValueError, match="tokens_scored is 1,000 but the text has only 999 targets"):
        evaluate_length(model, tokens, 16, tokens_scored=1000)
    with pytest.raises(ValueError, match="needs at least 16 scored targets, but tokens_scored is 15"):
        evaluate_length(model, tokens, 16, tokens_scored=15)
    with pytest.raises(TypeError, match="tokens_scored must be an int"):
        evaluate_length(model, tokens, 16, tokens_scored=100.0)
    with pytest.raises(ValueError, match="distributed=True needs a process group"):
        evaluate_length(model, tokens, 16, distributed=True)
    with pytest.raises(ValueError, match="needs at least 16 scored targets, but tokens_scored is 9"):
        evaluate_length(model, tokens[:10], 16)  # the default budget is all the text has


def test_long_windows_use_query_blocks_and_match_the_dense_numbers(tokens, monkeypatch):
    model = model_for()
    dense = evaluate_length(model, tokens, 60, "non_overlapping")
    monkeypatch.setattr(attention_module, "QUERY_BLOCK", 16)
    blocked = evaluate_length(model, tokens, 60, "non_overlapping")
    assert blocked.loss == pytest.approx(dense.loss, abs=1e-5)
    assert blocked.loss_by_position == pytest.approx(dense.loss_by_position, abs=1e-5)


def test_learned_positions_past_their_table_are_reported_not_crashed(tokens):
    result = evaluate_length(model_for("Vanilla"), tokens, 32)
    assert math.isnan(result.loss) and "learned position table ends at 16" in result.note
    with pytest.raises(ValueError, match="mode"):
        evaluate_length(model_for(), tokens, 16, "strided")


def test_the_tutorial_extrapolation_check(capsys):
    from tfa_core import create_tokenizer

    tokenizer = create_tokenizer("character", text="The evolution of technology has been fast.")
    config = GPTConfigALiBi(n_layer=1, n_head=2, n_embd=16, block_size=16, vocab_size=tokenizer.vocab_size)
    model = get_model("FactoredALiBi", config)
    results = test_length_extrapolation(model, tokenizer, "cpu", config, factors=(1, 4))
    assert [r["length"] for r in results] == [16, 64] and all(r["ok"] for r in results)
    assert [r["tokens"] for r in results] == [16, 64]
    assert "64 tokens (4x block_size): ok" in capsys.readouterr().out
