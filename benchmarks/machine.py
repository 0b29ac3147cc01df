"""What a benchmark ran on, printed at the top of every benchmark's output."""

import os
import platform

import torch


def _cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo where there is one (Linux), else what platform says."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> str:
    """One line: CPU (and GPU), core count, torch version and threads, Python."""
    device = f"CPU {_cpu_name()} ({platform.machine()})"
    if torch.cuda.is_available():
        device = f"CUDA {torch.cuda.get_device_name(0)}; {device}"
    return (f"{device}; {os.cpu_count()} cores; torch {torch.__version__}; "
            f"{torch.get_num_threads()} threads; Python {platform.python_version()}")
