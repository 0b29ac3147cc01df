"""The model registry: the names users type (``get_model("FactoredALiBi", config)``).

Each name is an architecture and a way of encoding positions. The factored model and the standard
block both come with every scheme of the extrapolation study -- ``Factored...`` and ``Vanilla...``
(``Vanilla`` itself is GPT-2, with a learned table) -- so that the study can tell the two ideas apart.

:func:`register_model` adds a model of your own: a :class:`~tfa_core.model.common.CausalLanguageModel`
subclass under a new name, with a built-in position scheme or one of its own (``docs/EXTENDING.md``).
"""

from __future__ import annotations

from tfa_core.model.ablations import FactoredALiBiMixedValues, FactoredALiBiOneStream
from tfa_core.model.baselines import SASPTransformer, VanillaGPT, VanillaGPTALiBi
from tfa_core.model.factored import FactoredTransformerModel, FactoredTransformerModelALiBi

__all__ = ["MODEL_REGISTRY", "get_model", "list_available_models", "position_scheme_of", "register_model",
           "known_position_schemes"]

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
    # ablations of the factored block (ablations.py): one of its choices undone
    "FactoredALiBiMixedValues": (FactoredALiBiMixedValues, "alibi"),
    "FactoredALiBiOneStream": (FactoredALiBiOneStream, "alibi"),
}


# the names register_model added (their parameters are counted on the built model, not by formula)
USER_MODELS: set[str] = set()


def register_model(name: str, model_class=None, position_scheme: str | None = None, *, replace: bool = False):
    """Add ``model_class`` to the registry as ``name``, so that ``get_model(name, config)``, the
    ``Trainer``, checkpoints and ``tfa --import`` know it.

    ``model_class``: a subclass of :class:`~tfa_core.CausalLanguageModel` built from a config alone.
    ``position_scheme``: one of ``POSITION_SCHEMES``, or a name of your own (``"kerple"``) for a class
    that defines ``position_bias`` (the hook the model's attention bias calls for such a scheme);
    ``None`` takes the class's ``fixed_position_scheme`` or ``default_position_scheme``. A name already
    taken is refused unless ``replace=True``. Without ``model_class`` it is a class decorator::

        @register_model("MyModel", position_scheme="kerple")
        class MyModel(FactoredTransformer): ...

    Returns ``model_class``. Registration lasts for this process: a script (or ``tfa --import``)
    imports the module that registers it before building or loading such a model.
    """
    if model_class is None:
        return lambda cls: register_model(name, cls, position_scheme, replace=replace)
    from tfa_core.model.common import CausalLanguageModel
    from tfa_core.model.positions import POSITION_SCHEMES

    if not isinstance(name, str) or not name.strip() or any(c.isspace() or c == "," for c in name):
        raise ValueError(f"a model name must be a non-empty str without spaces or commas (the command "
                         f"line takes lists of them), got {name!r}")
    if name in MODEL_REGISTRY and not replace:
        taken_by = MODEL_REGISTRY[name][0].__name__
        raise ValueError(f"the model name {name!r} is already taken (by {taken_by}); choose another name, "
                         "or pass replace=True to replace it")
    if not (isinstance(model_class, type) and issubclass(model_class, CausalLanguageModel)):
        raise TypeError(f"model_class must be a subclass of tfa_core.CausalLanguageModel, "
                        f"got {model_class!r}")
    own_scheme = model_class.fixed_position_scheme
    scheme = position_scheme or own_scheme or model_class.default_position_scheme
    if not isinstance(scheme, str) or not scheme.isidentifier():
        raise ValueError(f"position_scheme must be a name such as 'alibi' or 'kerple', got {scheme!r}")
    if own_scheme is not None and scheme != own_scheme:
        raise ValueError(f"{model_class.__name__} fixes its position scheme to {own_scheme!r}, "
                         f"not {scheme!r}; leave position_scheme out")
    has_own_bias = model_class.position_bias is not CausalLanguageModel.position_bias
    if scheme not in POSITION_SCHEMES and not has_own_bias:
        raise ValueError(f"the position scheme {scheme!r} is not built in ({list(POSITION_SCHEMES)}), so "
                         f"{model_class.__name__} must define position_bias(t_q, t_k, device), the "
                         "attention bias of its scheme (docs/EXTENDING.md)")
    if scheme in POSITION_SCHEMES and has_own_bias:
        raise ValueError(f"{model_class.__name__} defines position_bias, which only a scheme of its own "
                         f"uses, but registers the built-in scheme {scheme!r}; pass "
                         "position_scheme='<your scheme name>'")
    MODEL_REGISTRY[name] = (model_class, scheme)
    USER_MODELS.add(name)
    return model_class


def known_position_schemes() -> list[str]:
    """The built-in position schemes, then those of models added with :func:`register_model`."""
    from tfa_core.model.positions import POSITION_SCHEMES

    own = [scheme for _, scheme in MODEL_REGISTRY.values() if scheme not in POSITION_SCHEMES]
    return list(POSITION_SCHEMES) + sorted(set(own))


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
