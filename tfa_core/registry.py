"""The model registry: the names users type (``get_model("FactoredALiBi", config)``)."""

from __future__ import annotations

from .baselines import SASPTransformer, VanillaGPT
from .model import FactoredTransformerModel, FactoredTransformerModelALiBi

__all__ = ["MODEL_REGISTRY", "get_model", "list_available_models"]

MODEL_REGISTRY = {
    "FactoredALiBi": FactoredTransformerModelALiBi,
    "Factored": FactoredTransformerModel,
    "Vanilla": VanillaGPT,
    "SASP": SASPTransformer,
}


def list_available_models() -> list[str]:
    """Names accepted by :func:`get_model`."""
    return list(MODEL_REGISTRY)


def get_model(model_type: str, config):
    """Build the model called ``model_type`` from ``config`` (a :class:`GPTConfigALiBi`).

    The config's ``model_type`` is set to the name, so that a saved config says what it built.
    """
    if model_type not in MODEL_REGISTRY:
        raise ValueError(f"unknown model {model_type!r}; available models are {list_available_models()}")
    config.model_type = model_type
    return MODEL_REGISTRY[model_type](config)
