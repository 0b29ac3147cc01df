import itertools

import pytest

from tfa_core import (GPTConfigALiBi, estimate_model_parameters, get_model, list_available_models,
                      parameter_breakdown)


def test_registry_names():
    assert list_available_models() == ["FactoredALiBi", "Factored", "FactoredSinusoidal", "FactoredRotary",
                                       "FactoredNoPE", "Vanilla", "VanillaALiBi", "VanillaSinusoidal",
                                       "VanillaRotary", "VanillaNoPE", "SASP", "FactoredALiBiMixedValues",
                                       "FactoredALiBiOneStream"]


@pytest.mark.parametrize(
    "model_type, use_v, use_proj, bias",
    list(itertools.product(list_available_models(), [False, True], [False, True], [False, True])),
)
def test_estimate_equals_the_built_model(model_type, use_v, use_proj, bias):
    config = GPTConfigALiBi(n_layer=3, n_head=6, n_embd=48, block_size=20, vocab_size=77,
                            use_v=use_v, use_proj=use_proj, bias=bias)
    model = get_model(model_type, config)
    assert estimate_model_parameters(config, model_type) == sum(p.numel() for p in model.parameters())


def test_factored_formula_in_closed_form():
    """V*C + L*(2C^2 + 8C^2 + 2C + H^2 per mix) + C: no V, no output projection, no position table."""
    V, L, H, C = 50257, 6, 6, 384
    config = GPTConfigALiBi(n_layer=L, n_head=H, n_embd=C, vocab_size=V, block_size=256)
    assert estimate_model_parameters(config, "FactoredALiBi") == V * C + L * (10 * C * C + 2 * C) + C
    with_mixing = config.copy(use_v=True, use_proj=True)
    assert estimate_model_parameters(with_mixing, "FactoredALiBi") == (
        V * C + L * (10 * C * C + 2 * C + 2 * H * H) + C)
    # the standard block pays 12 C^2 and a position table
    assert estimate_model_parameters(config, "Vanilla") == V * C + 256 * C + L * (12 * C * C + 2 * C) + C
    assert estimate_model_parameters(config, "VanillaALiBi") == V * C + L * (12 * C * C + 2 * C) + C
    # sinusoidal, rotary and no positions cost nothing, in either block; a learned table costs block_size x C
    for name in ("FactoredSinusoidal", "FactoredRotary", "FactoredNoPE"):
        assert estimate_model_parameters(config, name) == estimate_model_parameters(config, "FactoredALiBi")
    for name in ("VanillaSinusoidal", "VanillaRotary", "VanillaNoPE"):
        assert estimate_model_parameters(config, name) == V * C + L * (12 * C * C + 2 * C) + C
    assert (estimate_model_parameters(config, "Factored") - estimate_model_parameters(config, "FactoredALiBi")
            == 256 * C)


def test_tutorial_estimate_was_wrong():
    """The tutorial counted a full QKV and output projection for the factored model: 2 L C^2 too many."""
    config = GPTConfigALiBi(n_layer=6, n_head=6, n_embd=384, vocab_size=50257, block_size=256)
    exact = estimate_model_parameters(config, "FactoredALiBi")
    tutorial_style = estimate_model_parameters(config, "Vanilla") - 256 * 384  # 12 C^2 blocks, no table
    assert tutorial_style - exact == 6 * 2 * 384 * 384


def test_breakdown_sums_and_non_embedding_count(tiny_config):
    parts = parameter_breakdown(tiny_config, "Factored")
    model = get_model("Factored", tiny_config)
    assert sum(parts.values()) == sum(p.numel() for p in model.parameters())
    assert model.get_num_params(non_embedding=True) == (
        sum(parts.values()) - parts["embedding"] - parts["positions"])
    assert model.get_num_params(non_embedding=False) == sum(parts.values())


def test_estimate_needs_a_vocabulary_and_a_known_model():
    config = GPTConfigALiBi(vocab_size=None)
    with pytest.raises(ValueError, match="update_from_tokenizer"):
        estimate_model_parameters(config)
    with pytest.raises(ValueError, match="available models"):
        estimate_model_parameters(GPTConfigALiBi(), "GPT5")
