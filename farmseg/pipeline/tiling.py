"""Tile layout, the smooth blending window for overlapping tiles and their blended sum."""

from __future__ import annotations

from typing import Literal

import numpy as np

from farmseg.geoio.raster import PROB_SCALE


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering [0, length): stride tile-overlap, last tile flush with the end.

    A raster shorter than a tile gets one tile at 0 (padded by the caller).
    """
    if length <= tile:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def blend_profile(tile: int, overlap: int) -> np.ndarray:
    """1-D weights: a Hann (raised cosine) ramp over the overlap at each end, 1 inside.

    Weights never reach zero, so pixels covered by a single tile (raster edges) keep
    their prediction after normalization.
    """
    weights = np.ones(tile, dtype=np.float32)
    ramp = min(overlap, tile // 2)
    if ramp > 0:
        i = np.arange(ramp, dtype=np.float32)
        rise = 0.5 - 0.5 * np.cos(np.pi * (i + 0.5) / ramp)
        weights[:ramp] = rise
        weights[tile - ramp:] = rise[::-1]
    return np.maximum(weights, 1e-3)


def blend_window(tile: int, overlap: int) -> np.ndarray:
    """2-D separable blending weights (tile, tile)."""
    profile = blend_profile(tile, overlap)
    return np.outer(profile, profile)


def pad_to_tile(data: np.ndarray, tile: int) -> np.ndarray:
    """Pad (..., h, w) up to (..., tile, tile): mirrored, or the edge repeated for 1-px sides."""
    h, w = data.shape[-2:]
    ph, pw = tile - h, tile - w
    if ph == 0 and pw == 0:
        return data
    pad = [(0, 0)] * (data.ndim - 2) + [(0, ph), (0, pw)]
    mode: Literal["reflect", "edge"] = "reflect" if h > 1 and w > 1 else "edge"
    return np.pad(data, pad, mode=mode)


class RowAccumulator:
    """Blended probabilities over one band of raster rows, one tile high: tiles are added
    weighted, the band's top rows leave finished and the band moves down the raster."""

    def __init__(self, classes: int, height: int, width: int) -> None:
        self.sums = np.zeros((classes, height, width), dtype=np.float32)
        self.weights = np.zeros((height, width), dtype=np.float32)

    def add(self, probs: np.ndarray, x0: int, weights: np.ndarray) -> None:
        """Add a tile's (classes, h, w) probabilities at column `x0` of the band's top rows,
        weighted by `weights[:h, :w]`."""
        h, w = probs.shape[1:]
        weight = weights[:h, :w]
        self.sums[:, :h, x0:x0 + w] += probs * weight
        self.weights[:h, x0:x0 + w] += weight

    def finish(self, rows: int, valid: np.ndarray) -> np.ndarray:
        """The band's top `rows` rows as uint8 probabilities (0..PROB_SCALE); pixels not
        `valid` or covered by no tile become certain background (class 0). Works in place
        (wide rasters need no float copies): shift by `rows` before adding again."""
        sums, weights = self.sums[:, :rows], self.weights[:rows]
        covered = valid[:rows] & (weights > 0)
        sums /= np.maximum(weights, 1e-12)
        sums[:, ~covered] = 0.0
        sums[0, ~covered] = 1.0
        sums *= PROB_SCALE
        np.rint(sums, out=sums)
        return sums.astype(np.uint8)

    def shift(self, rows: int) -> None:
        """Move the band `rows` rows down the raster: empty rows come in at its bottom."""
        height = self.weights.shape[0]
        self.sums[:, : height - rows] = self.sums[:, rows:]
        self.sums[:, height - rows:] = 0.0
        self.weights[: height - rows] = self.weights[rows:]
        self.weights[height - rows:] = 0.0
