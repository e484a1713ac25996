"""The one-tile-high accumulator of blended tile probabilities, alone."""

from __future__ import annotations

import numpy as np

from farmseg.geoio.raster import PROB_SCALE
from farmseg.pipeline.tiling import RowAccumulator, blend_window, tile_starts


def _constant(probs: tuple[float, ...], h: int, w: int) -> np.ndarray:
    return np.broadcast_to(np.float32(probs)[:, None, None], (len(probs), h, w)).copy()


def test_two_overlapping_constant_tiles_blend_to_the_constant():
    tile, overlap, width = 16, 6, 26
    band = RowAccumulator(3, tile, width)
    weights = blend_window(tile, overlap)
    for x0 in tile_starts(width, tile, overlap):
        band.add(_constant((0.2, 0.6, 0.2), tile, tile), x0, weights)
    rows = band.finish(tile, np.ones((tile, width), bool))
    assert rows.dtype == np.uint8 and rows.shape == (3, tile, width)
    expected = np.rint(np.float32([0.2, 0.6, 0.2]) * PROB_SCALE).astype(np.uint8)
    assert np.array_equal(rows, np.broadcast_to(expected[:, None, None], rows.shape))


def test_pixels_invalid_or_not_covered_are_certain_background():
    band = RowAccumulator(3, 4, 10)
    band.add(_constant((0.2, 0.6, 0.2), 4, 6), 0, np.ones((4, 6), np.float32))
    valid = np.ones((4, 10), bool)
    valid[0, 0] = False
    rows = band.finish(4, valid)
    background = np.uint8([PROB_SCALE, 0, 0])
    assert np.array_equal(rows[:, 0, 0], background)
    assert np.array_equal(rows[:, :, 6:], np.broadcast_to(background[:, None, None], (3, 4, 4)))
    assert rows[1, 1, 1] == round(0.6 * PROB_SCALE)


def _whole_image_blend(tiles: dict[tuple[int, int], np.ndarray], weights: np.ndarray,
                       valid: np.ndarray) -> np.ndarray:
    """The reference: every tile summed at once over the whole image, then normalized."""
    sums = np.zeros((3, *valid.shape), np.float32)
    wsum = np.zeros(valid.shape, np.float32)
    for (y0, x0), probs in tiles.items():
        h, w = probs.shape[1:]
        sums[:, y0:y0 + h, x0:x0 + w] += probs * weights[:h, :w]
        wsum[y0:y0 + h, x0:x0 + w] += weights[:h, :w]
    blended = sums / wsum
    blended[:, ~valid] = np.float32([1, 0, 0])[:, None]
    return np.rint(blended * PROB_SCALE).astype(np.uint8)


def test_rows_finished_band_by_band_equal_a_whole_image_blend():
    height, width, tile, overlap = 45, 53, 16, 5
    rng = np.random.default_rng(0)
    ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    tiles = {(y0, x0): rng.dirichlet(np.ones(3), (min(tile, height - y0), min(tile, width - x0)))
             .astype(np.float32).transpose(2, 0, 1) for y0 in ys for x0 in xs}
    valid = rng.random((height, width)) > 0.05
    weights = blend_window(tile, overlap)
    band = RowAccumulator(3, tile, width)
    out = np.zeros((3, height, width), np.uint8)
    for y0, next_y in zip(ys, ys[1:] + [height]):
        for x0 in xs:
            band.add(tiles[y0, x0], x0, weights)
        out[:, y0:next_y] = band.finish(next_y - y0, valid[y0:y0 + tile])
        band.shift(next_y - y0)
    assert np.array_equal(out, _whole_image_blend(tiles, weights, valid))
