"""The model registry: the names users type (``get_model("FactoredALiBi", config)``).

Each name is an architecture and a way of encoding positions. The factored model and the standard
block both come with every scheme of the extrapolation study -- ``Factored...`` and ``Vanilla...``
(``Vanilla`` itself is GPT-2, with a learned table) -- so that the study can tell the two ideas apart.
"""

from __future__ import annotations

from tfa_core.model.baselines import SASPTransformer, VanillaGPT, VanillaGPTALiBi
from tfa_core.model.factored import FactoredTransformerModel, FactoredTransformerModelALiBi

__all__ = ["MODEL_REGISTRY", "get_model", "list_available_models", "position_scheme_of"]

# name -> (class, position scheme)
MODEL_REGISTRY = {
    "FactoredALiBi": (FactoredTransformerModelALiBi, "alibi"),
    "Factored": (FactoredTransformerModel, "learned"),
    "FactoredSinusoidal": (FactoredTransformerModelALiBi, "sinusoidal"),
    "FactoredRotary": (FactoredTransformerModelALiBi, "rotary"),
    "FactoredNoPE": (FactoredTransformerModelALiBi, "none"),
    "Vanilla": (VanillaGPT, "learned"),
    "VanillaALiBi": (VanillaGPTALiBi, "alibi"),
    "VanillaSinusoidal": (VanillaGPT, "sinusoidal"),
    "VanillaRotary": (VanillaGPT, "rotary"),
    "VanillaNoPE": (VanillaGPT, "none"),
    "SASP": (SASPTransformer, "learned"),
}


def list_available_models() -> list[str]:
    """Names accepted by :func:`get_model`."""
    return list(MODEL_REGISTRY)


def position_scheme_of(model_type: str) -> str:
    """How the model called ``model_type`` encodes positions (see ``tfa_core.model.positions``)."""
    if model_type not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {model_type!r}; available models are {list_available_models()}")
    return MODEL_REGISTRY[model_type][1]


def get_model(model_type: str, config):
    """Build the model called ``model_type`` from ``config`` (a :class:`GPTConfigALiBi`).

    The name decides the architecture and the position scheme. The model keeps a copy of ``config``
    with ``model_type`` and ``position_scheme`` set to match (``model.config``), so that a saved config
    says what it built; the config passed in is left as it was.
    """
    from tfa_core.model.config import GPTConfigALiBi

    if not isinstance(model_type, str):
        raise TypeError(f"model_type must be a registry name (a str), got {model_type!r}; "
                        f"available models are {list_available_models()}")
    if not isinstance(config, GPTConfigALiBi):
        raise TypeError(f"config must be a GPTConfigALiBi, got {type(config).__name__}; "
                        "make one with tfa_core.load_alibi_config_preset or GPTConfigALiBi(...)")
    config = config.copy(model_type=model_type, position_scheme=position_scheme_of(model_type))
    model_class, _ = MODEL_REGISTRY[model_type]
    return model_class(config)
