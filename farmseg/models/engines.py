"""Inference engines: a predictor maps a float32 batch (N, C, H, W) to class probabilities.

The engines are registered by name and imported on use, so choosing `onnx` never imports
torch; engine_choice decides which one runs.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from farmseg.errors import ModelError
from farmseg.models.bundle import ModelBundle
from farmseg.models.engine_choice import BundleVerdicts, EngineRequest, choose_engine
from farmseg.models.machine import ThisMachine


class Predictor(Protocol):
    name: str

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 network input -> (N, K, H, W) float32 probabilities."""

    def suggested_batch(self, tile: int) -> int:
        """Tiles per batch that use the device well without wasting memory."""


class EngineClass(Protocol):
    def __call__(self, bundle: ModelBundle, device: str, precision: str) -> Predictor: ...


# engine name -> "module:Class", imported when that engine runs
ENGINE_CLASSES = {
    "onnx": "farmseg.models.engine_onnx:OnnxPredictor",
    "torch": "farmseg.models.engine_torch:TorchPredictor",
}


def load_engine(name: str) -> EngineClass:
    """The predictor class of a registered engine (imports its module)."""
    module, _, cls = ENGINE_CLASSES[name].partition(":")
    engine_class: EngineClass = getattr(importlib.import_module(module), cls)
    return engine_class


def bundle_verdicts(bundle: ModelBundle) -> BundleVerdicts:
    """What the engine choice needs to know of a bundle."""
    bf16 = bundle.meta.get("precision", {}).get("bf16", {}).get("accepted")
    return BundleVerdicts(has_onnx=bundle.has_onnx, int8_accepted=bundle.int8_accepted,
                          bf16_accepted=bool(bf16))


def make_predictor(bundle: ModelBundle, engine: str = "auto", device: str = "auto",
                   precision: str = "auto", pixels: int | None = None) -> Predictor:
    """Build the engine that engine_choice.choose_engine picks for this machine, the bundle
    and `pixels` (the area to segment)."""
    choice = choose_engine(EngineRequest(engine, device, precision), ThisMachine(),
                           bundle_verdicts(bundle), pixels)
    try:
        engine_class = load_engine(choice.engine)
    except ImportError as exc:
        if choice.engine != "torch":
            raise
        raise ModelError(bundle.path, f"the torch engine needs PyTorch, which is not "
                         f"installed ({exc}); use --engine onnx") from None
    return engine_class(bundle, choice.device, choice.precision)
