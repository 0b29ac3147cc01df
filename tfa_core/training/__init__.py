"""Training a model and keeping what it learned.

- ``trainer.py``     ``Trainer`` and ``TrainingConfig``: AdamW, warmup then cosine, clipping, validation
- ``checkpoint.py``  safetensors + JSON checkpoints, written atomically, loaded without running code
- ``distributed.py`` devices and DDP under ``torchrun``
- ``live_plot.py``   a loss plot that redraws in a notebook
"""
