"""The validation block of a fine-tuning run: part of the labelled area, apart from the
training pixels (no torch here).

Tiles that touch (same CRS, north-up grids whose bounds meet) form one labelled area. The
last `fraction` of each area along its longer side (east for a wide area, south for a tall
one) is validation and the rest trains: one block per area, so every place the user
labelled is validated, instead of one or two whole tiles from somewhere. A sample of
corrections is already cut to its reviewed areas' extent (samples.load_sample) and its
pixels outside them are not valid: they are never scored, and a tile whose block would
hold fewer than `MIN_BLOCK_PIXELS` valid pixels trains whole.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from rasterio.transform import Affine

from farmseg.training.samples import Sample, sub_sample

Bounds = tuple[float, float, float, float]  # west, south, east, north
PIXEL_SPACE = Affine(1, 0, 0, 0, -1, 0)  # cuts a sample on a grid that is not north-up
MIN_BLOCK_PIXELS = 16 * 16  # fewer valid pixels in a tile's block: the tile trains whole


def _bounds(sample: Sample) -> Bounds | None:
    """World bounds of a north-up sample (None for rotated or flipped grids)."""
    t = sample.transform
    if t.b != 0 or t.d != 0 or t.a <= 0 or t.e >= 0:
        return None
    h, w = sample.shape
    return (t.c, t.f + t.e * h, t.c + t.a * w, t.f)


def _touch(a: Bounds, b: Bounds, tolerance: float) -> bool:
    return (a[0] <= b[2] + tolerance and b[0] <= a[2] + tolerance
            and a[1] <= b[3] + tolerance and b[1] <= a[3] + tolerance)


def labelled_areas(samples: list[Sample]) -> list[list[int]]:
    """Indices of the samples grouped into areas of touching tiles (a tile on a grid that is
    not north-up is an area of its own)."""
    group = list(range(len(samples)))

    def root(i: int) -> int:
        while group[i] != i:
            group[i] = group[group[i]]
            i = group[i]
        return i

    bounds = [_bounds(s) for s in samples]
    for i, j in itertools.combinations(range(len(samples)), 2):
        a, b = bounds[i], bounds[j]
        if (a is not None and b is not None and samples[i].crs == samples[j].crs
                and _touch(a, b, samples[i].transform.a / 2)):
            group[root(i)] = root(j)
    areas: dict[int, list[int]] = {}
    for i in range(len(samples)):
        areas.setdefault(root(i), []).append(i)
    return list(areas.values())


def _cut(shape: tuple[int, int], t: Affine, area: Bounds, fraction: float
         ) -> tuple[tuple[slice, slice], ...]:
    """(training window, validation window) of a sample of `shape` on grid `t` in `area`."""
    west, south, east, north = area
    h, w = shape
    if east - west >= north - south:  # a block off the east side
        x = east - fraction * (east - west)
        col = int(np.clip(math.floor((x - t.c) / t.a + 1e-6), 0, w))
        return np.s_[:, :col], np.s_[:, col:]
    y = south + fraction * (north - south)  # a block off the south side
    row = int(np.clip(math.floor((t.f - y) / -t.e + 1e-6), 0, h))
    return np.s_[:row, :], np.s_[row:, :]


def split_blocks(samples: list[Sample], fraction: float) -> tuple[list[Sample], list[Sample]]:
    """(training parts, validation parts): a block of `fraction` of each labelled area is
    validation; no pixel is in both."""
    if fraction <= 0:
        return samples, []
    train: list[Sample] = []
    val: list[Sample] = []
    for members in labelled_areas(samples):
        boxes = [_bounds(samples[i]) for i in members]
        if None in boxes:  # one sample on a grid that is not north-up: its own pixel space
            h, w = samples[members[0]].shape
            boxes = [(0.0, -float(h), float(w), 0.0)]
        area = (min(b[0] for b in boxes if b), min(b[1] for b in boxes if b),
                max(b[2] for b in boxes if b), max(b[3] for b in boxes if b))
        for i in members:
            sample = samples[i]
            grid = sample.transform if _bounds(sample) else PIXEL_SPACE
            windows = _cut(sample.shape, grid, area, fraction)
            if np.count_nonzero(sample.valid[windows[1]]) < MIN_BLOCK_PIXELS:
                train.append(sub_sample(sample, np.s_[:, :], "train"))
                continue
            for target, window, tag in zip((train, val), windows, ("train", "val")):
                if sample.mask[window].size:
                    target.append(sub_sample(sample, window, tag))
    return train, val
