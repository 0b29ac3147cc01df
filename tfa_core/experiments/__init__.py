"""Measuring models.

- ``evaluation.py`` loss and perplexity at any length (non-overlapping or sliding windows)
- ``study.py``      the length-extrapolation study (``tfa extrapolate``): a rate per variant, seeds,
                    ablations, resumable runs
- ``study_report.py`` its tables (mean ± sd over seeds), report and plots
- ``comparison.py`` the model comparison table
- ``inspection.py`` the logit lens and attention maps
- ``memory.py``     training memory, computed exactly
"""
