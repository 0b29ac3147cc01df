"""Measuring models.

- ``evaluation.py`` loss and perplexity at any length (non-overlapping or sliding windows)
- ``study.py``      the length-extrapolation study (``tfa extrapolate``)
- ``comparison.py`` the model comparison table
- ``inspection.py`` the logit lens and attention maps
- ``memory.py``     training memory, computed exactly
"""
