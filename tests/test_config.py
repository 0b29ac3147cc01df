import pytest

from tfa_core import (
    GPTConfigALiBi,
    estimate_model_parameters,
    format_config,
    list_presets,
    load_alibi_config_preset,
    print_config_alibi,
)


def test_max_position_embeddings_defaults_to_four_block_sizes():
    assert GPTConfigALiBi(block_size=100).max_position_embeddings == 400
    assert GPTConfigALiBi(block_size=100, max_position_embeddings=150).max_position_embeddings == 150


@pytest.mark.parametrize(
    "changes, error, words",
    [
        (dict(n_embd=100, n_head=6), ValueError, "n_embd (100) must be divisible by n_head (6)"),
        (dict(n_layer=0), ValueError, "n_layer must be a positive int"),
        (dict(n_head=-2), ValueError, "n_head must be a positive int"),
        (dict(n_embd=0), ValueError, "n_embd must be a positive int"),
        (dict(block_size=0), ValueError, "block_size must be a positive int"),
        (dict(vocab_size=0), ValueError, "vocab_size must be a positive int"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(n_layer=2.5), TypeError, "n_layer must be an int"),
        (dict(n_head=True), TypeError, "n_head must be an int"),
        (dict(dropout=1.0), ValueError, "dropout must be in [0, 1)"),
        (dict(dropout=-0.1), ValueError, "dropout must be in [0, 1)"),
        (dict(dropout="0.1"), TypeError, "dropout must be a number"),
        (dict(block_size=256, max_position_embeddings=128), ValueError,
         "max_position_embeddings (128) must be at least block_size (256)"),
        (dict(model_type="GPT5"), ValueError, "unknown model_type 'GPT5'; choose one of"),
        (dict(alibi_max_bias=0), ValueError, "alibi_max_bias must be positive"),
        (dict(learning_rate=0), ValueError, "learning_rate must be positive"),
        (dict(weight_decay=-1), ValueError, "weight_decay"),
        (dict(temperature=-1), ValueError, "temperature"),
        (dict(top_k=0), ValueError, "top_k"),
        (dict(use_v=1), TypeError, "use_v must be True or False"),
    ],
)
def test_every_invalid_value_names_the_field(changes, error, words):
    with pytest.raises(error) as info:
        GPTConfigALiBi(**changes)
    assert words in str(info.value)


def test_invalid_change_after_construction_is_caught_on_validate():
    config = GPTConfigALiBi()
    config.n_head = 5
    with pytest.raises(ValueError, match="divisible"):
        config.validate()


def test_presets():
    small = load_alibi_config_preset("small")
    assert (small.n_layer, small.n_head, small.n_embd) == (4, 4, 256)
    medium = load_alibi_config_preset("medium")
    assert (medium.n_layer, medium.n_head, medium.n_embd) == (8, 8, 512)
    large = load_alibi_config_preset("large")
    assert (large.n_layer, large.n_head, large.n_embd) == (12, 12, 768)
    character = load_alibi_config_preset("character")
    assert (character.n_layer, character.n_head, character.n_embd, character.block_size) == (4, 4, 128, 128)
    assert character.vocab_size is None  # comes from the tokenizer
    assert set(list_presets()) == {"small", "medium", "large", "character"}
    # each call is a fresh object
    load_alibi_config_preset("small").n_layer = 99
    assert load_alibi_config_preset("small").n_layer == 4
    assert load_alibi_config_preset("small", n_layer=2).n_layer == 2


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; known presets are \['small', 'medium', 'large', 'character'\]"):
        load_alibi_config_preset("huge")


class FakeTokenizer:
    name = "character"
    vocab_size = 66
    eos_token_id = 65
    pad_token_id = 65


def test_update_from_tokenizer():
    config = load_alibi_config_preset("character").update_from_tokenizer(FakeTokenizer())
    assert (config.vocab_size, config.eos_token_id, config.pad_token_id, config.tokenizer_name) == (66, 65, 65, "character")
    with pytest.raises(TypeError, match="create_tokenizer"):
        config.update_from_tokenizer(object())


def test_round_trip_through_a_dict():
    config = GPTConfigALiBi(n_layer=3, use_v=True)
    assert GPTConfigALiBi.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown config field"):
        GPTConfigALiBi.from_dict({**config.to_dict(), "n_layers": 3})


def test_copy_validates_and_leaves_the_original_alone():
    config = GPTConfigALiBi()
    assert config.copy(n_layer=2).n_layer == 2 and config.n_layer == 6
    with pytest.raises(ValueError, match="no field"):
        config.copy(layers=2)
    with pytest.raises(ValueError, match="divisible"):
        config.copy(n_head=5)


def test_print_config_shows_fields_parameters_and_extras(capsys):
    config = load_alibi_config_preset("small")
    print_config_alibi(config, dataset_name="shakespeare", max_samples=10000)
    text = capsys.readouterr().out
    assert "n_embd                   256" in text
    assert f"{estimate_model_parameters(config):,}" in text
    assert "dataset_name             shakespeare" in text
    assert text.strip() == format_config(config, dataset_name="shakespeare", max_samples=10000)
