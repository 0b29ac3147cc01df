"""The architecture: what a reader reads first.

- ``factored.py``   the token-factored transformer, top to bottom (attention, MLP, block, model)
- ``alibi.py``      ALiBi slopes and the causal bias
- ``common.py``     what every model shares: the skeleton (embedding, blocks, final norm, tied head),
                    input checks, the shifted loss, weight init, generation
- ``baselines.py``  the standard block: Vanilla (GPT-2) and with every other position scheme, and SASP
- ``positions.py``  the other position schemes: sinusoidal, rotary
- ``ablations.py``  the factored block with one of its choices undone, for the study
- ``config.py``     ``GPTConfigALiBi`` and its presets
- ``registry.py``   the names users type: ``get_model``, ``list_available_models``; ``register_model``
                    adds your own (``docs/EXTENDING.md``)
- ``parameters.py`` exact parameter counts
- ``kv_cache.py``   the key/value cache for decoding
- ``fast_attention.py`` the speed room: query blocks for long inputs, FlexAttention on CUDA, the decoding
                    ramp -- skip it on a first reading
"""
