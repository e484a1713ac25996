"""Reduced-precision variants of a bundle, kept only where field F1 holds.

int8: ONNX Runtime static QDQ quantization (per-channel weights, activations calibrated on
training tiles), with the high-resolution front of the encoder and the segmentation head kept in
fp32. bf16: torch's frozen graph with bf16 weights (engine_torch). Each is scored on the
bundle's validation images against fp32 and marked accepted when |F1 - F1_fp32| <= 0.01.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from farmseg.fields.clean import CleanSettings
from farmseg.jobs import Job, Progress
from farmseg.models.bundle import ModelBundle, write_meta
from farmseg.models.scaling import apply_scaling
from farmseg.scoring.validation import (
    bundle_vectorize_settings,
    predict_all,
    score_probabilities,
    validation_pairs,
)

F1_TOLERANCE = 0.01
CALIBRATION_TILES = 16
# Kept in fp32 (names from the smp U-Net / timm EfficientNet export). Quantizing the stem and
# stages 0-2 (strides 2-8) costs the most output SQNR on training tiles (26 -> 37 dB without
# them); they carry little of the compute, which sits in the decoder.
FP32_NODE_PREFIXES = ("/encoder/model/conv_stem/", "/encoder/model/blocks.0/",
                      "/encoder/model/blocks.1/", "/encoder/model/blocks.2/",
                      "/segmentation_head/")


def calibration_tiles(bundle: ModelBundle, tile: int = 512) -> list[np.ndarray]:
    """Network inputs from the bundle's training images (never its validation images)."""
    val = set(bundle.validation_images)
    images = [Path(f) for f in bundle.meta.get("training", {}).get("files", []) if "/images/" in f
              and Path(f).stem not in val and Path(f).is_file()]
    norm = bundle.meta["normalize"]
    tiles = []
    for index, path in enumerate(images[:CALIBRATION_TILES]):
        with rasterio.open(path) as src:
            size = min(tile, src.width, src.height)
            x = (index * 197) % max(1, src.width - size + 1)
            data = src.read(bundle.bands, window=Window(x, 0, size, size))
        tiles.append(apply_scaling(data, bundle.scaling, norm["mean"], norm["std"])[None])
    return tiles


def fp32_nodes(model_path: Path) -> list[str]:
    """Names of the nodes in `model_path` that int8 quantization leaves in fp32."""
    import onnx

    graph = onnx.load(str(model_path)).graph
    return [node.name for node in graph.node if node.name.startswith(FP32_NODE_PREFIXES)]


def build_int8(bundle: ModelBundle) -> Path:
    """Write model.int8.onnx next to model.onnx."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    tiles = calibration_tiles(bundle)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(tiles)

        def get_next(self):
            item = next(self.items, None)
            return None if item is None else {"image": item}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(bundle.onnx_path), str(prepared))
        quantize_static(str(prepared), str(bundle.int8_path), Reader(),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.Percentile,
                        nodes_to_exclude=fp32_nodes(prepared),
                        extra_options={"CalibPercentile": 99.99})
    return bundle.int8_path


def precision_job(bundle: ModelBundle, data_dir: Path, variants: tuple[str, ...] = ("int8",)
                  ) -> Job[dict[str, dict]]:
    """Build and score reduced-precision variants; record the verdicts in the bundle."""
    if "int8" in variants:
        yield Progress("quantize", 0, 1, "int8 calibration")
        build_int8(bundle)
    pairs = validation_pairs(bundle, data_dir)
    settings = bundle_vectorize_settings(bundle, pairs[0][0], CleanSettings().min_area_ha)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="farmseg-precision-") as tmp:
        work = Path(tmp)
        scores = {}
        for precision in ("fp32", *variants):
            engine = "onnx" if precision in ("fp32", "int8") else "torch"
            probs = yield from predict_all(bundle, pairs, work, engine, precision)
            scores[precision] = score_probabilities(probs, pairs, settings,
                                                    CleanSettings())
    meta = dict(bundle.meta)
    meta.setdefault("precision", {})
    for precision in variants:
        delta = scores[precision].f1 - scores["fp32"].f1
        results[precision] = {"val_field_f1": round(scores[precision].f1, 4),
                              "fp32_val_field_f1": round(scores["fp32"].f1, 4),
                              "accepted": bool(abs(delta) <= F1_TOLERANCE)}
        meta["precision"][precision] = results[precision]
        if precision == "int8" and not results[precision]["accepted"]:
            bundle.int8_path.unlink(missing_ok=True)  # never shipped, never picked
    write_meta(bundle.path, meta)
    return results
