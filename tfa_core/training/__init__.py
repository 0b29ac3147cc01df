"""Training a model and keeping what it learned.

- ``trainer.py``     ``Trainer`` and ``TrainingConfig``: AdamW, warmup then cosine, clipping, validation
- ``checkpoint.py``  safetensors + JSON checkpoints, written atomically, each file checked at load (SHA-256)
                     without running code; the run's history
- ``distributed.py`` devices and DDP under ``torchrun``
- ``live_plot.py``   a loss plot that redraws in a notebook
- ``loggers.py``     callbacks that log to a CSV file or to TensorBoard
- ``resources.py``   sizes checked against free memory before anything is allocated
"""
