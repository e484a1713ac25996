"""Inference engines: a predictor maps a float32 batch (N, C, H, W) to class probabilities.

`torch` imports torch (lazily, in engine_torch); `onnx` needs only onnxruntime.
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np

from farmseg.bundle import ModelBundle
from farmseg.errors import ModelError, UsageError

ENGINES = ("auto", "torch", "onnx")
DEVICES = ("auto", "cpu", "cuda")


class Predictor(Protocol):
    name: str

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 network input -> (N, K, H, W) float32 probabilities."""


def cpu_threads() -> int:
    """Threads for compute libraries: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


class OnnxPredictor:
    """ONNX Runtime on the CPU, threads set to the available cores."""

    def __init__(self, bundle: ModelBundle) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(bundle.onnx_path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(bundle.onnx_path, f"cannot load ONNX model ({exc})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.name = "onnx/cpu"

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
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def make_predictor(bundle: ModelBundle, engine: str = "auto", device: str = "auto") -> Predictor:
    """Pick and build an engine: auto = ONNX Runtime on CPU when possible, torch on CUDA."""
    if engine not in ENGINES:
        raise UsageError(None, f"unknown engine '{engine}' (choose from {', '.join(ENGINES)})")
    if device not in DEVICES:
        raise UsageError(None, f"unknown device '{device}' (choose from {', '.join(DEVICES)})")
    if engine == "onnx" and device == "cuda":
        raise UsageError(None, "--engine onnx runs on the CPU; use --engine torch for CUDA")
    if engine == "auto":
        wants_cuda = device == "cuda" or (device == "auto" and torch_cuda_available())
        if not wants_cuda and bundle.has_onnx and onnxruntime_available():
            engine = "onnx"
        else:
            engine = "torch"
    if engine == "onnx":
        if not bundle.has_onnx:
            raise ModelError(bundle.path, "has no model.onnx; run `farmseg export-onnx` on it "
                             "or use --engine torch")
        return OnnxPredictor(bundle)
    try:
        from farmseg.engine_torch import TorchPredictor
    except ImportError as exc:
        raise ModelError(bundle.path, f"the torch engine needs PyTorch, which is not "
                         f"installed ({exc}); use --engine onnx") from None
    return TorchPredictor(bundle, device)
