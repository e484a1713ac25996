"""Which compute devices the run panel offers (Qt-free; torch is imported only if it can help)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def gpu_name() -> str | None:
    """The CUDA GPU's name, or None.

    Importing torch takes seconds, so it is skipped when it cannot find a GPU anyway: torch
    not installed, or a Linux machine without the NVIDIA driver. Call it off the GUI thread.
    """
    if importlib.util.find_spec("torch") is None:
        return None
    if sys.platform.startswith("linux") and not Path("/proc/driver/nvidia").exists():
        return None
    import torch

    return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None


def batch_for(device: str) -> int:
    """Tiles per inference batch: one on the CPU so a cancel is honoured within a tile."""
    return 4 if device == "cuda" else 1
