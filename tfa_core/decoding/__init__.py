"""Turning a model's logits into text.

- ``sampling.py`` temperature, top-k and top-p
- ``generate.py`` token-by-token generation with the key/value cache, and streaming text
"""
