"""Field-level scores of in-memory predictions on labeled samples (no torch here)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

from farmseg.fields.clean import CleanSettings, clean_fields
from farmseg.fields.vectorize import FOUR_CONNECTED, settings_for, vectorize_job
from farmseg.geoio.raster import PROB_SCALE, Grid, raster_profile_for
from farmseg.jobs import drain
from farmseg.scoring.evaluate import Score, rasterize_instances, score_instances
from farmseg.training.samples import Sample


def reference_instances(mask: np.ndarray) -> np.ndarray:
    """Field instances from a 3-class mask: interiors, each grown over its boundary band."""
    interiors, _ = ndimage.label(mask == 1, structure=FOUR_CONNECTED)
    if interiors.max() == 0:
        return interiors
    _, (iy, ix) = ndimage.distance_transform_edt(interiors == 0, return_indices=True)
    grown = interiors[iy, ix]
    grown[mask == 0] = 0
    return grown


def write_probabilities(probs: np.ndarray, sample: Sample, path: Path) -> Path:
    """Probabilities (C, h, w) on the sample's grid as `segment` stores them (uint8), with
    pixels that are not valid marked background."""
    h, w = sample.shape
    quantized = np.round(probs * PROB_SCALE).astype(np.uint8)
    quantized[:, ~sample.valid] = 0
    quantized[0, ~sample.valid] = int(PROB_SCALE)
    with rasterio.open(path, "w", **raster_profile_for(Grid(w, h, sample.transform, sample.crs),
                                                        probs.shape[0], "uint8")) as out:
        out.write(quantized)
    return path


def predicted_fields(prob_path: Path, sample: Sample, postprocess: dict[str, float],
                     min_area_ha: float = 0.1) -> np.ndarray:
    """The fields `segment` would make of stored probabilities (same thresholds and size
    filters), as instances on the sample's grid."""
    h, w = sample.shape
    grid = Grid(w, h, sample.transform, sample.crs)
    settings = settings_for(postprocess, min_area_ha, (grid.pixel_size_m() or 1.0) ** 2)
    raw = drain(vectorize_job(prob_path, settings))
    layer = clean_fields(raw, CleanSettings(min_area_ha=min_area_ha))
    return rasterize_instances(layer.geoms, grid)


def sample_reference(sample: Sample) -> np.ndarray:
    """The sample's reference fields: its instances, else those its mask implies."""
    return sample.instances if sample.instances is not None else reference_instances(sample.mask)


def score_samples(probabilities: list[np.ndarray], samples: list[Sample],
                  postprocess: dict[str, float], min_area_ha: float = 0.1) -> Score:
    """Vectorize each sample's probabilities like `segment` does (same thresholds and size
    filters) and score the fields."""
    total = Score()
    with tempfile.TemporaryDirectory(prefix="farmseg-score-") as tmp:
        for probs, sample in zip(probabilities, samples):
            path = write_probabilities(probs, sample, Path(tmp) / "probs.tif")
            predicted = predicted_fields(path, sample, postprocess, min_area_ha)
            total = total + score_instances(predicted, sample_reference(sample), sample.valid)
    return total


def field_iou(probabilities: list[np.ndarray], samples: list[Sample]) -> float:
    """Pixel IoU of 'field or boundary' (the most likely class) predicted vs labelled, over
    all samples."""
    inter = union = 0
    for probs, sample in zip(probabilities, samples):
        pred = (probs.argmax(0) > 0) & sample.valid
        ref = (sample.mask > 0) & sample.valid
        inter += int(np.count_nonzero(pred & ref))
        union += int(np.count_nonzero(pred | ref))
    return inter / union if union else 1.0


def selection_score(val_f1: float | None, val_iou: float | None, loss: float) -> float:
    """Which epoch to keep: field F1 on validation (pixel IoU breaks ties); without
    validation, the lowest training loss. Not an IoU: recorded as `val_selection_score`."""
    if val_f1 is None or val_iou is None:
        return -loss
    return val_f1 + 0.01 * val_iou
