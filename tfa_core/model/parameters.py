"""Exact parameter counts from a config, without building the model.

The tutorial's ``estimate_model_parameters`` counted a full ``Q, K, V`` and an output projection
(``12 C^2`` per block), which is the standard block, not this one. The factored block has only
``Q`` and ``K`` (``2 C^2``) and the MLP (``8 C^2``), plus its norms, plus ``H^2`` for each enabled
``H x H`` value or output mix. The test suite checks every formula here against
``sum(p.numel() for p in model.parameters())``.
"""

from __future__ import annotations

__all__ = ["estimate_model_parameters", "parameter_breakdown"]


def parameter_breakdown(config, model_type: str | None = None) -> dict[str, int]:
    """Parameter count by part: ``embedding``, ``positions``, ``attention``, ``mlp``, ``norms``,
    ``mixing`` (the scalars and ``H x H`` maps), summed over all blocks."""
    from tfa_core.model.registry import USER_MODELS, position_scheme_of

    model_type = model_type or config.model_type
    scheme = position_scheme_of(model_type)  # also rejects an unknown name
    if model_type in USER_MODELS:
        raise ValueError(f"{model_type!r} is a model of your own (register_model): there is no formula for "
                         "its parts; estimate_model_parameters counts its total on the built model")
    if config.vocab_size is None:
        raise ValueError("config.vocab_size is not set; call config.update_from_tokenizer(tokenizer) first")
    C, H, L, b = config.n_embd, config.n_head, config.n_layer, int(config.bias)

    def linear(n_in, n_out):
        return n_in * n_out + b * n_out

    norm = C + b * C
    mlp = linear(C, 4 * C) + linear(4 * C, C)
    parts = dict(embedding=config.vocab_size * C, positions=0, attention=0, mlp=L * mlp,
                 norms=norm, mixing=0)  # norms starts with ln_f
    if model_type.startswith("Factored"):
        parts["attention"] = L * linear(C, 2 * C)  # Q and K; values are xt itself
        parts["mixing"] = L * H * H * (int(config.use_v) + int(config.use_proj))
        parts["norms"] += L * 2 * norm
    elif model_type.startswith("Vanilla"):
        parts["attention"] = L * (linear(C, 3 * C) + linear(C, C))
        parts["norms"] += L * 2 * norm
    elif model_type == "SASP":
        projections = int(config.use_v) + int(config.use_proj)
        parts["attention"] = L * (2 + projections) * linear(C, C)
        parts["mixing"] = L * (3 * H + 2)  # a, b, g per head and the two branch scalars
        parts["norms"] += L * norm  # one norm feeds both parallel branches
    if scheme == "learned":  # ALiBi, sinusoidal, rotary and none have no parameters
        parts["positions"] = config.block_size * C
    return parts


def estimate_model_parameters(config, model_type: str | None = None) -> int:
    """The exact number of parameters of ``get_model(model_type, config)`` (``model_type`` defaults
    to ``config.model_type``). Tied embeddings are counted once; ALiBi slopes are not parameters.
    A model added with ``register_model`` is counted on the model built on PyTorch's ``meta`` device
    (nothing allocated): a formula cannot know what its class adds."""
    from tfa_core.model.registry import USER_MODELS

    if (model_type or config.model_type) in USER_MODELS:
        from tfa_core.training.resources import count_parameters

        return count_parameters(model_type or config.model_type, config)
    return sum(parameter_breakdown(config, model_type).values())
