"""Export a torch network to ONNX and check it against torch (imports torch)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from farmseg.errors import ModelError
from farmseg.models.bundle import ONNX_NAME

MAX_ABS_DIFF = 1e-3


def export_bundle_onnx(name_or_path: str) -> tuple[Path, float]:
    """Rebuild a bundle's network from its safetensors and (re)write its model.onnx."""
    from farmseg.geoio.atomic import atomic_file
    from farmseg.models.bundle import load_bundle
    from farmseg.models.nets import network_from_bundle

    bundle = load_bundle(name_or_path)
    model = network_from_bundle(bundle.meta, bundle.weights_path)
    with atomic_file(bundle.onnx_path) as tmp:
        diff = export_onnx(model, tmp.parent, len(bundle.bands), path=tmp)
    return bundle.onnx_path, diff


def export_onnx(model: torch.nn.Module, folder: Path, n_bands: int, size: int = 256,
                path: Path | None = None) -> float:
    """Write folder/model.onnx (dynamic batch and size); return max |torch - ORT| on probs."""
    model = model.eval().cpu()
    example = torch.rand(1, n_bands, size, size) * 2 - 1
    path = path or Path(folder) / ONNX_NAME
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), input_names=["image"],
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                        "logits": {0: "batch", 2: "height", 3: "width"}})
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    check = torch.rand(2, n_bands, size, size) * 2 - 1
    with torch.no_grad():
        expected = torch.softmax(model(check), 1).numpy()
    got = session.run(None, {"image": check.numpy()})[0]
    got = np.exp(got - got.max(1, keepdims=True))
    got /= got.sum(1, keepdims=True)
    diff = float(np.abs(expected - got).max())
    if diff > MAX_ABS_DIFF:
        raise ModelError(path, f"ONNX export differs from torch by {diff:.2e}")
    return diff
