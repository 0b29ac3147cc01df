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
        (dict(learning_rate=float("nan")), ValueError, "learning_rate must be a finite number"),
        (dict(dropout=float("nan")), ValueError, "dropout must be a finite number"),
        (dict(alibi_max_bias=float("inf")), ValueError, "alibi_max_bias must be a finite number"),
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
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; known presets are "
                                         r"\['small', 'medium', 'large', 'character'\]"):
        load_alibi_config_preset("huge")


class FakeTokenizer:
    name = "character"
    vocab_size = 66
    eos_token_id = 65
    pad_token_id = 65


def test_update_from_tokenizer():
    config = load_alibi_config_preset("character").update_from_tokenizer(FakeTokenizer())
    assert ((config.vocab_size, config.eos_token_id, config.pad_token_id, config.tokenizer_name)
            == (66, 65, 65, "character"))
    with pytest.raises(TypeError, match="create_tokenizer"):
        config.update_from_tokenizer(object())


def test_round_trip_through_a_dict():
    config = GPTConfigALiBi(n_layer=3, use_v=True)
    assert GPTConfigALiBi.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown config field"):
        GPTConfigALiBi.from_dict({**config.to_dict(), "n_layers": 3})


def test_retired_fields_load_with_one_warning_and_are_gone():
    old = {**GPTConfigALiBi(n_layer=3).to_dict(), "weight_decay": 0.01, "num_epochs": 3, "temperature": 0.8,
           "top_k": 50}
    with pytest.warns(UserWarning, match=r"ignored config field\(s\) \['num_epochs', 'temperature', 'top_k', "
                      r"'weight_decay'\]") as caught:
        config = GPTConfigALiBi.from_dict(old)
    assert len(caught) == 1 and config.n_layer == 3
    for name in ("weight_decay", "num_epochs", "temperature", "top_k"):
        assert not hasattr(config, name) and name not in format_config(config)
        with pytest.raises(TypeError):
            GPTConfigALiBi(**{name: 1})


def test_one_default_per_setting():
    """The trainer's settings live in TrainingConfig; the CLI's defaults are read from it."""
    from tfa_core.cli import build_parser
    from tfa_core.training.trainer import TRAINING_DEFAULTS

    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert f"default {TRAINING_DEFAULTS['weight_decay']}" in help_text
    assert TRAINING_DEFAULTS["weight_decay"] == 0.1
    assert f"default {TRAINING_DEFAULTS['warmup_steps']}" in help_text


@pytest.mark.parametrize(
    "check, args, error, words",
    [
        ("require_int", ("steps", True), TypeError, "steps must be an int, got True (bool)"),
        ("require_int", ("steps", 2.0), TypeError, "steps must be an int"),
        ("require_int", ("steps", -1, 0), ValueError, "steps must be an int >= 0, got -1"),
        ("require_int", ("steps", 9, 0, 8), ValueError, "steps must be an int <= 8"),
        ("require_positive_int", ("n_head", 0), ValueError, "n_head must be a positive int"),
        ("require_number", ("lr", "1e-3"), TypeError, "lr must be a number"),
        ("require_finite", ("lr", float("nan")), ValueError, "lr must be a finite number, got nan"),
        ("require_finite", ("lr", float("inf")), ValueError, "lr must be a finite number, got inf"),
        ("require_finite", ("wd", -1.0, 0), ValueError, "wd must be >= 0"),
    ],
)
def test_the_shared_argument_checks(check, args, error, words):
    import tfa_core.model.checks as config_module

    with pytest.raises(error) as info:
        getattr(config_module, check)(*args)
    assert words in str(info.value)
    assert config_module.require_int("steps", 3, 1) == 3
    assert config_module.is_int(3) and not config_module.is_int(True)


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
