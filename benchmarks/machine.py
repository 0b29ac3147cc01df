"""What a benchmark ran on, printed at the top of every benchmark's output."""

import os
import platform

import torch


def describe_machine() -> str:
    """One line: CPU/GPU, core count, torch version and threads."""
    if torch.cuda.is_available():
        device = f"CUDA {torch.cuda.get_device_name(0)}"
    else:
        device = f"CPU {platform.processor() or platform.machine()}"
    return (f"{device}; {os.cpu_count()} cores; torch {torch.__version__}; "
            f"{torch.get_num_threads()} threads; Python {platform.python_version()}")
