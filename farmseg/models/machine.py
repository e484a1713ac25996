"""This computer's facts for the engine choice, each probed on first use.

torch is never imported statically here (the ONNX Runtime path must run without it): the
CUDA probe loads it by name, and only where an NVIDIA driver is present.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from functools import cached_property
from pathlib import Path

from farmseg.models import cpu


def int8_is_fast() -> bool:
    """ONNX Runtime's int8 kernels beat fp32 with AVX2 (u8s8) or VNNI; not on older CPUs."""
    return "avx2" in cpu.cpu_flags() or cpu.has_vnni()


def torch_cuda_available() -> bool:
    """CUDA usable by torch; torch (slow to import, ~0.5 GB) is only imported when an
    NVIDIA driver is present."""
    if sys.platform.startswith("linux") and not Path("/proc/driver/nvidia").exists():
        return False
    try:
        torch = importlib.import_module("torch")
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def torch_installed() -> bool:
    """torch can be imported (checked without importing it)."""
    return importlib.util.find_spec("torch") is not None


class ThisMachine:
    """engine_choice.Machine for the running computer; each fact probed once, when asked."""

    @cached_property
    def native_bf16(self) -> bool:
        return cpu.has_native_bf16()

    @cached_property
    def fast_int8(self) -> bool:
        return int8_is_fast()

    @cached_property
    def cuda(self) -> bool:
        return torch_cuda_available()

    @cached_property
    def onnxruntime(self) -> bool:
        return onnxruntime_available()

    @cached_property
    def torch(self) -> bool:
        return torch_installed()
