"""Tile layout and the smooth blending window for overlapping tiles."""

from __future__ import annotations

import numpy as np


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
    mode = "reflect" if h > 1 and w > 1 else "edge"
    return np.pad(data, pad, mode=mode)
