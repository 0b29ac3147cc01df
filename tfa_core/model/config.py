"""The model configuration, its presets, and a printed summary.

``GPTConfigALiBi`` keeps the tutorial's field names. Every field is checked when the config is made
and again when a model is built from it (fields are often changed after loading a preset), and a bad
value raises a ``ValueError``/``TypeError`` that names the field and says how to fix it.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import asdict, dataclass, fields

from tfa_core.model.alibi import DEFAULT_MAX_BIAS
from tfa_core.model.checks import is_int, require_finite, require_positive_int

__all__ = [
    "GPTConfigALiBi",
    "PRESETS",
    "load_alibi_config_preset",
    "list_presets",
    "print_config_alibi",
    "format_config",
]

# Fields that older versions kept on the config although nothing read them (training and sampling
# settings live in TrainingConfig and in the generate call). A saved config that still has them loads,
# with one warning that names them.
RETIRED_FIELDS = ("weight_decay", "num_epochs", "temperature", "top_k")

@dataclass
class GPTConfigALiBi:
    """Everything needed to build one model.

    ``block_size`` is the training length. ``max_position_embeddings`` is the longest sequence an
    ALiBi model accepts (4 x ``block_size`` unless set); models with a learned position table stop
    at ``block_size``. ``vocab_size`` may be left ``None`` in a preset and filled in by
    :meth:`update_from_tokenizer`.
    """

    # architecture
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    block_size: int = 128
    max_position_embeddings: int | None = None
    vocab_size: int | None = 50257
    dropout: float = 0.1
    bias: bool = False  # biases in Linear and LayerNorm layers (GPT-2 has them; we count without)
    model_type: str = "FactoredALiBi"
    # alibi, learned, sinusoidal, rotary, none, or a registered model's own; None: the model type's
    # own (get_model sets it)
    position_scheme: str | None = None
    # ALiBi: slopes are 2^(-alibi_max_bias * k / n_head)
    alibi_max_bias: float | None = DEFAULT_MAX_BIAS
    # sinusoidal positions: the amplitude of the sinusoids added to xt (CausalLanguageModel.embed); 0.02
    # keeps the ratio to the token embeddings of "Attention Is All You Need"; checkpoints saved before
    # it was a field used 1.0 and load with 1.0
    sinusoid_scale: float = 0.02
    # channel mixing in the factored model: values V ⊗ I_d, output projection P ⊗ I_d
    use_v: bool = False
    use_proj: bool = False
    # the batch size and peak learning rate this model size is usually trained with: a preset's
    # suggestion, which `tfa train` and the course take when no other is given (the memory estimate
    # reads batch_size too); every other training setting lives in TrainingConfig
    batch_size: int = 32
    learning_rate: float = 2.5e-4
    # set by update_from_tokenizer
    tokenizer_name: str | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None

    def __post_init__(self):
        if self.max_position_embeddings is None and is_int(self.block_size):
            self.max_position_embeddings = 4 * self.block_size
        if self.alibi_max_bias is None:
            self.alibi_max_bias = DEFAULT_MAX_BIAS
        self.validate()

    # -- derived sizes -------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        """Channels per head, ``n_embd // n_head``."""
        return self.n_embd // self.n_head

    # -- checks --------------------------------------------------------------------------------
    def validate(self) -> "GPTConfigALiBi":
        """Check every field; raise a ``ValueError``/``TypeError`` naming the field and the fix."""
        for name in ("n_layer", "n_head", "n_embd", "block_size", "max_position_embeddings", "batch_size"):
            require_positive_int(name, getattr(self, name))
        if self.vocab_size is not None:
            require_positive_int("vocab_size", self.vocab_size)
        if self.n_embd % self.n_head != 0:
            nearest = self.n_head * max(1, round(self.n_embd / self.n_head))
            raise ValueError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}) so that every "
                f"head gets the same number of channels; try n_embd={nearest}"
            )
        if self.max_position_embeddings < self.block_size:
            raise ValueError(
                f"max_position_embeddings ({self.max_position_embeddings}) must be at least "
                f"block_size ({self.block_size}), the training length; leave it None for 4 x block_size"
            )
        require_finite("dropout", self.dropout)
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}; 0.0 turns it off")
        for name in ("bias", "use_v", "use_proj"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        require_finite("sinusoid_scale", self.sinusoid_scale)
        if not self.sinusoid_scale > 0:
            raise ValueError(f"sinusoid_scale must be positive (0.02 keeps the paper's ratio to the token "
                             f"embeddings), got {self.sinusoid_scale}")
        require_finite("alibi_max_bias", self.alibi_max_bias)
        if not self.alibi_max_bias > 0:
            raise ValueError(f"alibi_max_bias must be positive (the ALiBi paper uses 8), "
                             f"got {self.alibi_max_bias}")
        require_finite("learning_rate", self.learning_rate)
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        # late import: the registry imports the models
        from tfa_core.model.registry import known_position_schemes, list_available_models

        if self.position_scheme is not None and self.position_scheme not in known_position_schemes():
            raise ValueError(f"unknown position_scheme {self.position_scheme!r}; choose one of "
                             f"{known_position_schemes()} (or None for the model type's own); a scheme "
                             "of your own is known once its model is registered (tfa_core.register_model)")
        if self.model_type not in list_available_models():
            raise ValueError(
                f"unknown model_type {self.model_type!r}; choose one of {list_available_models()}, or "
                "register a model of your own first (tfa_core.register_model; tfa --import)"
            )
        return self

    # -- tokenizer ---------------------------------------------------------------------------
    def update_from_tokenizer(self, tokenizer) -> "GPTConfigALiBi":
        """Take ``vocab_size`` and the special token ids from a tokenizer (see ``create_tokenizer``)."""
        for attr in ("vocab_size", "eos_token_id"):
            if not hasattr(tokenizer, attr):
                raise TypeError(
                    f"tokenizer has no {attr!r}; pass a tokenizer made by tfa_core.create_tokenizer"
                )
        self.vocab_size = int(tokenizer.vocab_size)
        self.eos_token_id = tokenizer.eos_token_id
        self.pad_token_id = getattr(tokenizer, "pad_token_id", tokenizer.eos_token_id)
        self.tokenizer_name = getattr(tokenizer, "name", None)
        self.validate()
        return self

    # -- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "GPTConfigALiBi":
        """Rebuild a config from :meth:`to_dict`'s output; unknown keys are an error.

        Keys of fields that older versions had (``weight_decay``, ``num_epochs``, ``temperature``,
        ``top_k``) are dropped with one warning, so that old checkpoints still load."""
        if not isinstance(values, dict):
            raise TypeError(f"a config must be a dict of fields, got {type(values).__name__}")
        known = {f.name for f in fields(cls)}
        retired = sorted(set(values) & set(RETIRED_FIELDS))
        unknown = sorted(set(values) - known - set(RETIRED_FIELDS))
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; known fields are {sorted(known)}")
        if retired:
            warnings.warn(f"ignored config field(s) {retired}: the model config no longer holds training "
                          "or sampling settings (see TrainingConfig and generate)", UserWarning, stacklevel=2)
        values = {k: v for k, v in values.items() if k in known}
        if "sinusoid_scale" not in values and values.get("position_scheme") == "sinusoidal":
            values["sinusoid_scale"] = 1.0  # saved before the field: its sinusoids were added at full size
            warnings.warn("this config was saved before sinusoid_scale existed: its model adds sinusoids at "
                          "amplitude 1.0, as it was trained (new models use 0.02)", UserWarning, stacklevel=2)
        return cls(**values)

    def copy(self, **changes) -> "GPTConfigALiBi":
        """A validated copy with some fields changed: ``config.copy(n_layer=2)``."""
        new = copy.deepcopy(self)
        for name, value in changes.items():
            if not hasattr(new, name):
                raise ValueError(f"GPTConfigALiBi has no field {name!r}")
            setattr(new, name, value)
        return new.validate()


# -- argument checks, shared by every module that takes user input ------------------------------

PRESETS: dict[str, dict] = {
    # 4L-4H-256D: the tutorial's quick-start model, for GPT-2 BPE on one GPU
    "small": dict(n_layer=4, n_head=4, n_embd=256, block_size=256, dropout=0.1,
                  batch_size=32, learning_rate=6e-4),
    # 8L-8H-512D
    "medium": dict(n_layer=8, n_head=8, n_embd=512, block_size=512, dropout=0.1,
                   batch_size=16, learning_rate=3e-4),
    # 12L-12H-768D: GPT-2 small's shape
    "large": dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, dropout=0.1,
                  batch_size=8, learning_rate=2.5e-4),
    # 4L-4H-128D at 128 characters: trains in minutes on two CPU cores (nanoGPT's CPU recipe size).
    # vocab_size comes from the character tokenizer: call update_from_tokenizer.
    "character": dict(n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.0, vocab_size=None,
                      batch_size=32, learning_rate=1e-3),
}


def list_presets() -> list[str]:
    """Names accepted by :func:`load_alibi_config_preset`."""
    return list(PRESETS)


def load_alibi_config_preset(preset_name: str, **overrides) -> GPTConfigALiBi:
    """A fresh config for a named preset (``small``, ``medium``, ``large``, ``character``).

    Keyword arguments override preset fields: ``load_alibi_config_preset("small", n_layer=2)``.
    """
    if preset_name not in PRESETS:
        raise ValueError(f"unknown preset {preset_name!r}; known presets are {list_presets()}")
    return GPTConfigALiBi(**{**PRESETS[preset_name], **overrides})


def format_config(config: GPTConfigALiBi, **extra) -> str:
    """The text that :func:`print_config_alibi` prints."""
    from tfa_core.model.parameters import estimate_model_parameters

    lines = ["GPTConfigALiBi"]
    groups = {
        "model": ["model_type", "n_layer", "n_head", "n_embd", "head_dim", "vocab_size", "bias", "dropout"],
        "positions": ["position_scheme", "block_size", "max_position_embeddings", "alibi_max_bias"]
        + (["sinusoid_scale"] if config.position_scheme == "sinusoidal" else []),
        "channel mixing": ["use_v", "use_proj"],
        "training": ["batch_size", "learning_rate"],
        "tokenizer": ["tokenizer_name", "eos_token_id", "pad_token_id"],
    }
    for title, names in groups.items():
        lines.append(f"  {title}:")
        lines.extend(f"    {name:<24} {getattr(config, name)}" for name in names)
    if config.vocab_size is not None:
        lines.append(f"  parameters:               {estimate_model_parameters(config):,}")
    if extra:
        lines.append("  run:")
        lines.extend(f"    {key:<24} {value}" for key, value in extra.items())
    return "\n".join(lines)


def print_config_alibi(config: GPTConfigALiBi, **extra) -> None:
    """Print the config grouped by purpose, its exact parameter count, and any ``extra`` run info
    (``print_config_alibi(config, dataset_name="shakespeare")``)."""
    print(format_config(config, **extra))
