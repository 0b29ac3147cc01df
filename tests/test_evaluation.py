import math

import pytest
import torch

import tfa_core.model.fast_attention as attention_module
from tfa_core import GPTConfigALiBi, get_model
from tfa_core.experiments.evaluation import evaluate_length, test_length_extrapolation, token_losses


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
    n_windows = len(range(0, 1000 - 32, 32))
    assert result.tokens_scored == n_windows * 32 and len(result.loss_by_position) == 32
    # by hand
    windows = torch.stack([tokens[s:s + 33] for s in range(0, 1000 - 32, 32)])
    torch.testing.assert_close(result.loss, token_losses(model, windows).double().mean().item(),
                               atol=1e-6, rtol=0)


def test_sliding_windows_give_every_scored_token_long_context(tokens):
    model = model_for()
    result = evaluate_length(model, tokens, 32, "sliding", stride=8, max_tokens=200)
    starts = list(range(0, 200 - 32, 8))
    assert result.tokens_scored == 32 + (len(starts) - 1) * 8
    # later windows score only their last 8 positions: position 0 is scored by the first window only
    first = token_losses(model, tokens[None, :33])[0]
    assert result.loss_by_position[0] == pytest.approx(first[0].item(), abs=1e-6)
    same = evaluate_length(model, tokens, 32, "sliding", stride=32)
    assert same.loss == pytest.approx(evaluate_length(model, tokens, 32, "non_overlapping").loss, abs=1e-9)


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
