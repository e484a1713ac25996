"""Streamed tiled inference: overlapping tiles, Hann blending, results written by row bands.

A reader thread prefetches the next row of tiles and a writer thread writes finished rows,
so reading, inference and writing overlap. Memory holds one row of tiles (tile x raster
width) plus one prefetched and one finished row, whatever the raster height.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
from rasterio.windows import Window

from farmseg.errors import ModelError
from farmseg.geoio.raster import RasterSource, close_pixel_sizes, raster_profile_for, resize_bands
from farmseg.jobs import Job, Progress
from farmseg.models.bundle import IMAGENET_MEAN, IMAGENET_STD, ModelBundle
from farmseg.models.engines import Predictor
from farmseg.models.scaling import apply_scaling, stretch_to_reference
from farmseg.pipeline.background import WriteBehind, prefetched
from farmseg.pipeline.tiling import RowAccumulator, blend_window, pad_to_tile, tile_starts

_RawTile = tuple[np.ndarray, np.ndarray]  # (bands, h, w) pixels as read, (h, w) validity


@dataclass
class TileSettings:
    tile: int = 512
    overlap: int = 64
    batch: int = 4

    def checked(self) -> TileSettings:
        from farmseg.errors import UsageError

        if self.tile < 32 or self.tile % 32:
            raise UsageError(None, f"--tile {self.tile}: must be a multiple of 32, at least 32")
        if not 0 <= self.overlap < self.tile // 2 + 1:
            raise UsageError(None, f"--overlap {self.overlap}: must be between 0 and tile/2")
        if self.batch < 1:
            raise UsageError(None, f"--batch {self.batch}: must be at least 1")
        return self


def model_bands(source: RasterSource, bundle: ModelBundle, bands: list[int] | None) -> list[int]:
    """The raster bands to feed the model: `bands`, else those whose descriptions name the
    model's bands (e.g. "red (B04)"), else the model's own; a clear error when the raster
    lacks them."""
    use = bands or source.named_bands(bundle.band_names) or bundle.bands
    if len(use) != len(bundle.bands):
        raise ModelError(source.path, f"--bands gives {len(use)} bands, model '{bundle.name}' "
                         f"needs {len(bundle.bands)} ({', '.join(bundle.band_names)})")
    if max(use) > source.count or min(use) < 1:
        raise ModelError(source.path, f"has {source.count} band(s); model '{bundle.name}' needs "
                         f"{len(bundle.bands)} bands ({', '.join(bundle.band_names)}) read from "
                         f"bands {use}; choose others with --bands")
    return use


def band_note(source: RasterSource, bundle: ModelBundle, bands: list[int] | None) -> str | None:
    """One line of guidance when the model's bands are guessed: no --bands and no band
    descriptions naming them, on a raster unlike the model's input (more bands or another
    dtype, e.g. a Sentinel-2 stack)."""
    if bands or source.named_bands(bundle.band_names):
        return None
    if source.count <= len(bundle.bands) and source.dtype == bundle.dtype:
        return None
    names = ", ".join(bundle.band_names)
    return (f"{source.path}: {source.count} {source.dtype} bands without descriptions naming "
            f"{names}; reading bands {','.join(map(str, bundle.bands))} as {names}; give "
            "--bands in that order otherwise (e.g. --bands 3,2,1 for a Sentinel-2 stack "
            "B02,B03,B04,B08)")


def input_scaling(source: RasterSource, bundle: ModelBundle, bands: list[int]) -> dict[str, Any]:
    """The bundle's scaling for its own dtype; else a stretch that maps the raster's 2/98 %
    percentiles (sampled over windows) onto those of the model's training data."""
    if source.dtype == bundle.dtype:
        return bundle.scaling
    samples, valids = [], []
    for window in source.sample_windows():
        data, valid = source.read(window, bands)
        samples.append(data.reshape(len(bands), -1).astype(np.float64))
        valids.append(valid.reshape(-1))
    return stretch_to_reference(np.concatenate(samples, axis=1), np.concatenate(valids),
                                bundle.scaling.get("reference"))


def model_scale(source: RasterSource, bundle: ModelBundle) -> float:
    """Raster pixels per model pixel: rasters whose pixel size differs from the model's by
    more than 10 % are resampled to it for the network (1.0: read as they are, also when
    either size in metres is unknown)."""
    expected = bundle.pixel_size_m
    actual = source.grid.pixel_size_m()
    if not expected or not actual or close_pixel_sizes(expected, actual):
        return 1.0
    return expected / actual


def resampling_note(source: RasterSource, bundle: ModelBundle, scale: float) -> str | None:
    """What the user should know about resampling (None when there is none)."""
    if scale == 1.0:
        return None
    note = (f"{source.path}: {source.grid.pixel_size_m():.2f} m pixels, model "
            f"'{bundle.name}' was trained on {bundle.pixel_size_m:g} m; its input is resampled")
    if not large_resampling(scale):
        return note
    return note + " (a large factor: results may be poor)"


def large_resampling(scale: float) -> bool:
    """More than a factor of 2 either way: worth a warning, not just a note."""
    return not 0.5 <= scale <= 2.0


class _Prepared:
    """Reads rows of tiles (in the prefetch thread) and turns tiles into network input (in
    the inference thread, batch by batch). A prefetched row stays in the raster's dtype and
    on its grid (a tile spans `tile * scale` raster pixels), so its memory does not grow
    with the resampling factor; each tile is resampled to at most `tile` model pixels as it
    goes to the network, by the same resize as the training tiles (resize_bands)."""

    def __init__(self, source: RasterSource, bands: list[int], scaling: dict[str, Any],
                 bundle: ModelBundle, tile: int, scale: float) -> None:
        self.source, self.bands, self.scaling, self.tile = source, bands, scaling, tile
        self.scale = scale
        self.raster_tile = raster_tile(tile, scale)
        norm = bundle.meta.get("normalize", {})
        self.mean = norm.get("mean", IMAGENET_MEAN[: len(bands)])
        self.std = norm.get("std", IMAGENET_STD[: len(bands)])

    def model_shape(self, h: int, w: int) -> tuple[int, int]:
        """The network size of a (h, w) raster window."""
        if self.scale == 1.0:
            return h, w
        return (min(self.tile, max(1, round(h / self.scale))),
                min(self.tile, max(1, round(w / self.scale))))

    def window(self, y0: int, x0: int) -> Window:
        """The raster window of the tile at (y0, x0), cut at the raster's edges."""
        return Window(x0, y0, min(self.raster_tile, self.source.width - x0),
                      min(self.raster_tile, self.source.height - y0))

    def row(self, y0: int, xs: list[int]) -> tuple[list[_RawTile | None], np.ndarray]:
        """Raw tiles (None for all-nodata tiles) and validity of the band's rows."""
        tiles: list[_RawTile | None] = []
        valid_row = np.zeros((self.window(y0, 0).height, self.source.width), dtype=bool)
        for x0 in xs:
            window = self.window(y0, x0)
            data, valid = self.source.read(window, self.bands)
            valid_row[:, x0:x0 + window.width] = valid
            tiles.append((data, valid) if valid.any() else None)
        return tiles, valid_row

    def network_input(self, raw: _RawTile) -> np.ndarray:
        """Resampled to model pixels, scaled, normalized, nodata zeroed, padded to the tile
        size."""
        data, valid = raw
        shape = self.model_shape(*valid.shape)
        if shape != valid.shape:
            data = resize_bands(data, *shape)
            valid = cv2.resize(valid.view(np.uint8), shape[::-1],
                               interpolation=cv2.INTER_NEAREST).view(bool)
        net = apply_scaling(data, self.scaling, self.mean, self.std)
        net[:, ~valid] = 0.0
        return pad_to_tile(net, self.tile)

    def raster_probabilities(self, probs: np.ndarray, window: Window) -> np.ndarray:
        """A tile's network output cut to its model pixels and sized to its raster window."""
        hm, wm = self.model_shape(window.height, window.width)
        return to_raster_size(probs[:, :hm, :wm], window.height, window.width)


MAX_RASTER_TILE = 2048  # raster pixels a tile may span: memory holds a row of tiles


def tile_for_scale(settings: TileSettings, scale: float) -> TileSettings:
    """Smaller network tiles where resampling would make a tile span more than
    MAX_RASTER_TILE raster pixels (e.g. 10 cm drone imagery for a 1 m model)."""
    if settings.tile * scale <= MAX_RASTER_TILE:
        return settings
    tile = max(64, int(MAX_RASTER_TILE / scale) // 32 * 32)
    return replace(settings, tile=tile, overlap=min(settings.overlap, tile // 4))


def raster_tile(tile: int, scale: float) -> int:
    """Raster pixels covered by a tile of `tile` model pixels."""
    return max(1, round(tile * scale))


BOUNDARY_CLASS = 2  # index of the field-boundary class in the bundles' classes


def to_raster_size(probs: np.ndarray, h: int, w: int) -> np.ndarray:
    """(classes, hm, wm) probabilities in model pixels resized to (classes, h, w): bilinear
    when enlarging; when shrinking, averaged over each raster pixel except the boundary
    class, which takes its largest value there, so that a boundary line a few model pixels
    wide still separates the fields on a coarser raster grid."""
    if probs.shape[1:] == (h, w):
        return probs
    hm, wm = probs.shape[1:]
    shrinking = h * w < hm * wm
    resized = cv2.resize(np.ascontiguousarray(probs.transpose(1, 2, 0)), (w, h),
                         interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    resized = resized.reshape(h, w, -1).transpose(2, 0, 1)
    if shrinking and probs.shape[0] > BOUNDARY_CLASS:
        resized[BOUNDARY_CLASS] = footprint_max(probs[BOUNDARY_CLASS], h, w)
    return resized


def footprint_max(values: np.ndarray, h: int, w: int) -> np.ndarray:
    """(hm, wm) values shrunk to (h, w), each output pixel the largest value of the input
    pixels it covers (a dilation by the footprint, sampled at the output pixels' centres)."""
    hm, wm = values.shape
    fy, fx = hm / h, wm / w
    kernel = np.ones((max(1, math.ceil(fy)), max(1, math.ceil(fx))), np.uint8)
    dilated = cv2.dilate(np.ascontiguousarray(values), kernel)
    rows = np.minimum(((np.arange(h) + 0.5) * fy).astype(int), hm - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * fx).astype(int), wm - 1)
    return dilated[np.ix_(rows, cols)]


def infer_job(source: RasterSource, bundle: ModelBundle, predictor: Predictor,
              settings: TileSettings, prob_path: Path, bands: list[int] | None = None,
              warn=lambda text: sys.stderr.write(f"farmseg: warning: {text}\n")) -> Job[Path]:
    """Write class probabilities (uint8, one band per class, 0..255) to `prob_path`."""
    use_bands = model_bands(source, bundle, bands)
    scale = model_scale(source, bundle)
    settings = tile_for_scale(settings.checked(), scale)
    if large_resampling(scale):  # `farmseg info` tells of any resampling
        warn(resampling_note(source, bundle, scale))
    if source.dtype != bundle.dtype:
        warn(f"{source.path}: {source.dtype} data for a model trained on {bundle.dtype}; "
             "using a per-band percentile stretch matched to the model's training data")
    scaling = input_scaling(source, bundle, use_bands)
    width, height = source.width, source.height
    prepared = _Prepared(source, use_bands, scaling, bundle, settings.tile, scale)
    # tiles are laid out and blended in raster pixels, whatever the model's pixel size
    tile, overlap = prepared.raster_tile, raster_tile(settings.overlap, scale)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    weights = blend_window(tile, overlap)
    band = RowAccumulator(len(bundle.classes), tile, width)
    total = len(ys) * len(xs)
    # a temporary file read once: the fastest deflate level leaves more CPU to the network
    profile = {**raster_profile_for(source.grid, len(bundle.classes), "uint8"), "zlevel": 1}
    done = 0
    with rasterio.open(prob_path, "w", **profile) as out, \
            prefetched(lambda y0: prepared.row(y0, xs), ys) as rows, WriteBehind() as writer:
        for y0, next_y, (tiles, valid_row) in zip(ys, ys[1:] + [height], rows):
            todo = [(x0, raw) for x0, raw in zip(xs, tiles) if raw is not None]
            for start in range(0, len(todo), settings.batch):
                chunk = todo[start:start + settings.batch]
                batch = np.stack([prepared.network_input(raw) for _, raw in chunk])
                probs = predict_with_retry(predictor, batch, warn)
                for (x0, _), p in zip(chunk, probs):
                    window = prepared.window(y0, x0)
                    band.add(prepared.raster_probabilities(p, window), x0, weights)
                done += len(chunk)
                yield Progress("segment", done, total, f"{done}/{total} tiles")
            done += len(tiles) - len(todo)
            writer.wait()  # one row in flight: order kept, memory bounded
            # finished rows leave as uint8 (a quarter of the float rows' memory)
            writer.write(out.write, band.finish(next_y - y0, valid_row),
                         window=Window(0, y0, width, next_y - y0))
            band.shift(next_y - y0)
            yield Progress("segment", done, total, f"{done}/{total} tiles")
    return prob_path


def _out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def predict_with_retry(predictor: Predictor, batch: np.ndarray, warn) -> np.ndarray:
    """Predict; when memory runs out, retry in halves down to one tile, then explain."""
    try:
        return predictor.predict(batch)
    except Exception as exc:  # engines raise RuntimeError (torch, ORT) or MemoryError
        if not _out_of_memory(exc):
            raise
        if len(batch) == 1:
            raise ModelError(None, f"out of memory predicting one {batch.shape[-1]} px tile; "
                             "use a smaller --tile") from None
    _release_cuda_memory()
    half = len(batch) // 2
    warn(f"out of memory with a batch of {len(batch)} tiles; retrying with {half}")
    return np.concatenate([predict_with_retry(predictor, batch[:half], warn),
                           predict_with_retry(predictor, batch[half:], warn)])


def _release_cuda_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()

