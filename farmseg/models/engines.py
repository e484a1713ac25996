"""Inference engines: a predictor maps a float32 batch (N, C, H, W) to class probabilities.

`torch` imports torch (lazily, in engine_torch); `onnx` needs only onnxruntime.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Protocol

import numpy as np

from farmseg.cpu import cpu_threads
from farmseg.errors import ModelError, UsageError
from farmseg.models.bundle import ModelBundle

ENGINES = ("auto", "torch", "onnx")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "int8", "bf16", "fp16")


class Predictor(Protocol):
    name: str

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 network input -> (N, K, H, W) float32 probabilities."""

    def suggested_batch(self, tile: int) -> int:
        """Tiles per batch that use the device well without wasting memory."""


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


class OnnxPredictor:
    """ONNX Runtime on the CPU, threads set to the available cores."""

    def __init__(self, bundle: ModelBundle, int8: bool = False) -> None:
        import onnxruntime as ort

        path = bundle.int8_path if int8 else bundle.onnx_path
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(path, f"cannot load ONNX model ({exc})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.name = "onnx/cpu/int8" if int8 else "onnx/cpu/fp32"

    def suggested_batch(self, tile: int) -> int:
        """On 2-4 cores larger batches are no faster (measured) but cost memory."""
        return 2 if tile <= 512 else 1

    def predict(self, batch: np.ndarray) -> np.ndarray:
        logits = self.session.run(None, {self.input_name: np.ascontiguousarray(batch)})[0]
        return softmax(logits.astype(np.float32, copy=False))


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def torch_cuda_available() -> bool:
    """CUDA usable by torch; torch (slow to import, ~0.5 GB) is only imported when an
    NVIDIA driver is present."""
    if sys.platform.startswith("linux") and not Path("/proc/driver/nvidia").exists():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def torch_installed() -> bool:
    """torch can be imported (checked without importing it)."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def bf16_is_fast_and_accepted(bundle: ModelBundle) -> bool:
    """The CPU has native bf16 (AVX-512 BF16 / AMX; emulated bf16 is many times slower)
    and the bundle's bf16 accuracy check passed."""
    from farmseg import cpu

    accepted = bundle.meta.get("precision", {}).get("bf16", {}).get("accepted")
    return bool(accepted) and cpu.has_native_bf16()


BF16_TORCH_MIN_PIXELS = 32_000_000


def bf16_torch_is_fastest(bundle: ModelBundle, pixels: int | None) -> bool:
    """Where bf16 is native, torch's frozen bf16 graph beats ONNX Runtime fp32 at steady
    state (Xeon with AMX, 512 px tiles, 2 threads: 8.6 vs 2.9 MPix/s), but importing torch
    and tracing the graph costs seconds, so only rasters of BF16_TORCH_MIN_PIXELS or more
    gain. An accepted int8 model is preferred: ONNX Runtime int8 (4.0 MPix/s there) has
    no start-up cost, uses ~0.6 GB less memory and lost less F1 on the default model."""
    return ((pixels is None or pixels >= BF16_TORCH_MIN_PIXELS)
            and bf16_is_fast_and_accepted(bundle) and not bundle.int8_accepted
            and torch_installed())


def int8_is_fast() -> bool:
    """ONNX Runtime's int8 kernels beat fp32 with AVX2 (u8s8) or VNNI; not on older CPUs."""
    from farmseg.cpu import cpu_flags, has_vnni

    return "avx2" in cpu_flags() or has_vnni()


def make_predictor(bundle: ModelBundle, engine: str = "auto", device: str = "auto",
                   precision: str = "auto", pixels: int | None = None) -> Predictor:
    """Pick and build an engine: auto = torch on CUDA; on CPU, torch bf16 where the CPU has
    native bf16 and `pixels` (the area to segment) is large (see bf16_torch_is_fastest),
    else ONNX Runtime when possible.

    precision auto: int8 ONNX where the bundle's int8 model passed its accuracy check and
    the CPU has fast int8; bf16 autocast for torch on CPUs with native bf16; else fp32.
    """
    for value, allowed, what in ((engine, ENGINES, "engine"), (device, DEVICES, "device"),
                                 (precision, PRECISIONS, "precision")):
        if value not in allowed:
            raise UsageError(None, f"unknown {what} '{value}' (choose from {', '.join(allowed)})")
    if precision == "int8" and engine == "torch":
        raise UsageError(None, "--precision int8 runs on ONNX Runtime; use --engine onnx")
    if precision in ("bf16", "fp16") and engine == "onnx":
        raise UsageError(None, f"--precision {precision} runs on torch; use --engine torch")
    if engine == "onnx" and device == "cuda":
        raise UsageError(None, "--engine onnx runs on the CPU; use --engine torch for CUDA")
    if engine == "auto":
        wants_cuda = device == "cuda" or (device == "auto" and torch_cuda_available())
        if precision in ("bf16", "fp16") or not wants_cuda and precision == "auto" and bf16_torch_is_fastest(bundle, pixels):
            engine = "torch"
        elif not wants_cuda and bundle.has_onnx and onnxruntime_available():
            engine = "onnx"
        else:
            engine = "torch"
    if engine == "onnx":
        if not bundle.has_onnx:
            raise ModelError(bundle.path, "has no model.onnx; run `farmseg export-onnx` on it "
                             "or use --engine torch")
        if precision == "int8" and not bundle.int8_path.is_file():
            raise ModelError(bundle.path, "has no int8 model; make one with `farmseg quantize`")
        use_int8 = precision == "int8" or (precision == "auto" and bundle.int8_accepted
                                           and int8_is_fast())
        return OnnxPredictor(bundle, int8=use_int8)
    try:
        from farmseg.models.engine_torch import TorchPredictor
    except ImportError as exc:
        raise ModelError(bundle.path, f"the torch engine needs PyTorch, which is not "
                         f"installed ({exc}); use --engine onnx") from None
    return TorchPredictor(bundle, device, precision)
