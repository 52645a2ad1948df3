"""What a job costs while it runs: peak memory."""

from __future__ import annotations

import resource
import sys
from typing import Any


def peak_memory_mb(device: Any = None) -> float:
    """Peak memory of this process in MiB.

    On a CUDA device (a torch.device or its name): the CUDA allocator's peak since the last
    `torch.cuda.reset_peak_memory_stats`. Otherwise (None, "cpu", "mps", or CUDA unavailable): the
    process's peak resident set size (ru_maxrss: KiB on Linux, bytes on macOS).
    """
    if device is not None and str(device).startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10
