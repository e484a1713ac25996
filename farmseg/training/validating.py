"""Validation images predicted the way `segment` predicts: each held-out sample is written
once, on its own grid, to a GeoTIFF in a temporary folder and run through the pipeline's
tiled inference (no torch here: the caller brings the predictor)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from farmseg.geoio.raster import PROB_SCALE, Grid, RasterSource, raster_profile_for
from farmseg.jobs import drain
from farmseg.models.bundle import ModelBundle
from farmseg.models.engines import Predictor
from farmseg.pipeline.inference import TileSettings, infer_job
from farmseg.training.samples import Sample


def inference_bundle(meta: dict[str, Any], folder: Path) -> ModelBundle:
    """The model as inference sees it, reading the samples' GeoTIFFs: bands 1..n (written in
    the model's order), resampled to the model's pixel size as `segment` resamples them."""
    n_bands = len(meta["input"]["bands"])
    return ModelBundle(path=folder, meta={**meta, "input": {
        **meta["input"], "bands": list(range(1, n_bands + 1))}})


def write_sample(sample: Sample, path: Path) -> Path:
    """The sample's pixels (in its dtype) with its grid and, where some are not, validity."""
    h, w = sample.shape
    profile = raster_profile_for(Grid(w, h, sample.transform, sample.crs),
                                 sample.image.shape[0], sample.dtype)
    with rasterio.open(path, "w", **profile) as out:
        out.write(sample.image.astype(sample.dtype, copy=False))
        if not sample.valid.all():
            out.write_mask(sample.valid.astype(np.uint8) * 255)
    return path


class ValidationImages:
    """The validation samples as GeoTIFFs in `folder` (which the caller removes)."""

    def __init__(self, samples: list[Sample], folder: Path) -> None:
        self.folder = folder
        self.paths = [write_sample(s, folder / f"val_{i}.tif") for i, s in enumerate(samples)]
        self._warned: set[str] = set()

    def warn_once(self, text: str) -> None:
        """An inference warning about the validation tiles (temporary files the user never
        sees), said once per run instead of once per tile and epoch."""
        problem = text.split(": ", 1)[-1]
        if problem not in self._warned:
            self._warned.add(problem)
            sys.stderr.write(f"farmseg: warning: validation tiles: {problem}\n")

    def probabilities(self, meta: dict[str, Any], predictor: Predictor) -> list[np.ndarray]:
        """Class probabilities (C, h, w) of each sample, from the model that `meta` describes
        (its tile, overlap, scaling and normalization) run by `predictor`."""
        bundle = inference_bundle(meta, self.folder)
        settings = TileSettings(bundle.tile, bundle.overlap,
                                predictor.suggested_batch(bundle.tile))
        probs = []
        for path in self.paths:
            prob_path = path.with_name(f"{path.stem}_prob.tif")
            with RasterSource(path) as source:
                drain(infer_job(source, bundle, predictor, settings, prob_path,
                                warn=self.warn_once))
            with rasterio.open(prob_path) as src:
                probs.append(src.read().astype(np.float32) / PROB_SCALE)
        return probs
