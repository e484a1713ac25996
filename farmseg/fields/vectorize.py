"""Probability raster -> field polygons, in row bands with bounded memory.

Each band is read once. Its seed regions get ids unique over the raster, and seeds that
touch across a band edge are linked. Once both neighbours of a band are labelled, the seeds
of the band and of a halo of neighbouring rows grow over the band's field extent, and the
band is polygonized along exact pixel edges (polygonize.py). Bands run on a thread pool
(OpenCV, NumPy, SciPy and GEOS release the GIL) and come back in order. At the end, linked
seeds make one field; pieces along band edges get each other's vertices there, and the
pieces of one field from different bands, which share exact pixel edges, are merged: no
field is cut or duplicated at band edges, and neighbours share edges vertex for vertex.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rasterio
import shapely
from rasterio.transform import Affine
from rasterio.windows import Window
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from farmseg.fields.polygonize import polygonize, ranges
from farmseg.geoio.raster import PROB_SCALE, Grid
from farmseg.jobs import Job, Progress, cpu_threads

FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)
MAX_WORKERS = 4
GROWING_PIXELS = 16_000_000  # most band pixels grown at a time (~40 bytes each in flight)


@dataclass
class VectorizeSettings:
    """How probabilities become fields (defaults come from the model's metadata)."""

    method: str = "seeded"  # "seeded", "watershed" or "threshold" (see _grow)
    field_threshold: float = 0.5  # P(field or boundary) for the field extent
    seed_threshold: float = 0.5  # P(field) for seeds
    boundary_threshold: float = 0.5  # P(boundary) below which a pixel may seed
    band_rows: int | None = None  # rows per band; None: sized for ~4 MPix bands
    halo: int = 64  # rows of each neighbouring band whose seeds grow into a band
    min_seed_px: int = 0  # drop seed regions smaller than this (noise)
    min_field_px: int = 0  # skip fields with fewer pixels (they fail the minimum area)


def settings_for(thresholds: dict[str, float], min_area_ha: float, pixel_area_m2: float,
                 **overrides) -> VectorizeSettings:
    """Settings from a model's thresholds, with size filters from the minimum field area:
    seeds under a quarter of it are noise, fields under half of it in pixels cannot pass
    the area filter. `overrides` (not None) replace any field."""
    known = VectorizeSettings.__dataclass_fields__
    min_px = min_area_ha * 10_000.0 / max(pixel_area_m2, 1e-12)
    values: dict[str, Any] = {k: v for k, v in thresholds.items() if k in known}
    values.update(min_seed_px=int(min_px * 0.25), min_field_px=int(min_px * 0.5))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return VectorizeSettings(**values)


@dataclass
class RawFields:
    """Merged field polygons in the raster CRS with their mean field probability."""

    geoms: np.ndarray
    confidence: np.ndarray
    grid: Grid


@dataclass
class _SeedBand:
    """One band's probabilities and seed regions; seed label `k` has the id `offset + k`."""

    rows: tuple[int, int]
    probs: np.ndarray  # uint8 (3, rows, width)
    extent: np.ndarray  # bool field extent
    labels: np.ndarray  # int32 4-connected seed regions, 0: no seed
    keep: np.ndarray  # per label: False for the background and dropped tiny seeds
    offset: int = 0  # set in band order


@dataclass
class _Pieces:
    """One band's polygons (pixel coordinates) by seed id, and its pixels per seed id."""

    geoms: np.ndarray
    ids: np.ndarray
    on_seam: np.ndarray  # the polygon touches an edge between two bands
    counted: np.ndarray  # seed ids with pixels in the band
    pixels: np.ndarray  # their pixel counts
    field_sum: np.ndarray  # and their summed P(field or boundary), in PROB_SCALE units


def class_masks(probs: np.ndarray, s: VectorizeSettings) -> tuple[np.ndarray, np.ndarray]:
    """(extent, seeds) boolean masks from uint8 probabilities (background, field, boundary)."""
    bg, fld, bnd = probs[0], probs[1], probs[2]
    if s.method == "threshold":
        plain = (fld > bg) & (fld >= bnd)
        return plain, plain
    extent = bg <= (1.0 - s.field_threshold) * PROB_SCALE
    seeds = (fld >= s.seed_threshold * PROB_SCALE) & (bnd < s.boundary_threshold * PROB_SCALE)
    return extent, seeds & extent


def band_rows_for(width: int, block_rows: int = 1, target_pixels: int = 4_000_000) -> int:
    """Rows per band: about `target_pixels` (memory stays flat), in whole blocks of
    `block_rows` rows (no block of the raster is decompressed twice)."""
    rows = min(4096, max(256, target_pixels // max(1, width)))
    return max(block_rows, round(rows / block_rows) * block_rows)


def _bands(height: int, rows: int) -> list[tuple[int, int]]:
    return [(r, min(height, r + rows)) for r in range(0, height, rows)]


def vectorize_job(prob_path: Path, settings: VectorizeSettings) -> Job[RawFields]:
    """Turn a probability raster into merged field polygons; yields Progress per band.
    Nothing is written to disk: bands are kept in memory until their neighbours have grown."""
    with rasterio.open(prob_path) as src:
        grid = Grid(src.width, src.height, src.transform, src.crs)
        block_rows = src.block_shapes[0][0]
    rows = settings.band_rows or band_rows_for(grid.width, block_rows)
    bands = _bands(grid.height, rows)
    workers = min(MAX_WORKERS, cpu_threads())
    growing = max(1, min(workers, GROWING_PIXELS // (rows * grid.width)))
    pieces: list[_Pieces] = []
    links: list[np.ndarray] = []
    pool = ThreadPoolExecutor(workers, thread_name_prefix="farmseg-vectorize")
    try:
        for band in _pieces_by_band(pool, Path(prob_path), bands, settings, links, growing):
            pieces.append(band)
            yield Progress("vectorize", len(pieces), len(bands), "polygonizing")
        geoms, confidence = _merge_fields(pool, pieces, links, [b[0] for b in bands[1:]],
                                          settings.min_field_px)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return RawFields(pixels_to_map(geoms, grid.transform), confidence, grid)


def _pieces_by_band(pool: ThreadPoolExecutor, path: Path, bands: list[tuple[int, int]],
                 settings: VectorizeSettings, links: list[np.ndarray], in_flight: int):
    """Pieces of each band, in band order. Labelling runs two bands ahead of growing, and
    at most `in_flight` bands grow at a time; seed links between bands go to `links`."""
    labelling = deque(pool.submit(_label_band, path, rows, settings) for rows in bands[:2])
    recent: deque[_SeedBand] = deque(maxlen=3)
    growing: deque[Future[_Pieces]] = deque()
    offset = 0
    for index in range(len(bands) + 1):
        if index < len(bands):
            band = labelling.popleft().result()
            if index + 2 < len(bands):
                labelling.append(pool.submit(_label_band, path, bands[index + 2], settings))
            band.offset, offset = offset, offset + len(band.keep)
            if recent:
                links.append(_links(recent[-1], band))
            recent.append(band)
        if index > 0:  # band index - 1 has both neighbours labelled
            while len(growing) >= in_flight:
                yield growing.popleft().result()
            rows = bands[index - 1]
            window = [b for b in recent if b.rows[1] >= rows[0] and b.rows[0] <= rows[1]]
            growing.append(pool.submit(_grow_band, window, rows, bands[-1][1], links[-2:],
                                       settings))
    while growing:
        yield growing.popleft().result()


def _label_band(path: Path, rows: tuple[int, int], settings: VectorizeSettings) -> _SeedBand:
    """Read a band and label its seed regions (4-connected)."""
    with rasterio.open(path) as src:
        probs = src.read(window=Window(0, rows[0], src.width, rows[1] - rows[0]))
    extent, seeds = class_masks(probs, settings)
    seeds = seeds.view(np.uint8)
    if settings.min_seed_px <= 1:
        count, labels = cv2.connectedComponents(seeds, connectivity=4, ltype=cv2.CV_32S)
        keep = np.arange(count) > 0
    else:
        _, labels, stats, _ = cv2.connectedComponentsWithStats(seeds, connectivity=4,
                                                               ltype=cv2.CV_32S)
        keep = kept_seeds(labels, stats[:, cv2.CC_STAT_AREA], settings.min_seed_px)
    return _SeedBand(rows, probs, extent, labels, keep)


def kept_seeds(labels: np.ndarray, sizes: np.ndarray, min_px: int) -> np.ndarray:
    """Per label: False for the background and for seeds under `min_px` pixels that touch
    neither the band's first nor its last row (those may continue in the next band)."""
    keep = sizes >= min_px
    keep[labels[0]] = True
    keep[labels[-1]] = True
    keep[0] = False
    return keep


def _links(upper: _SeedBand, lower: _SeedBand) -> np.ndarray:
    """(2, n) ids of the seeds that touch across the edge between two bands."""
    above, below = upper.labels[-1], lower.labels[0]
    both = (above > 0) & (below > 0)
    return np.stack([above[both] + upper.offset, below[both] + lower.offset])


def _grow_band(window: list[_SeedBand], rows: tuple[int, int], height: int,
               links: list[np.ndarray], settings: VectorizeSettings) -> _Pieces:
    """Grow the seeds of a band and of `halo` rows of its neighbours (`window`) over the
    band's field extent; polygonize the band."""
    core = next(i for i, b in enumerate(window) if b.rows == rows)
    cuts = [slice(-settings.halo, None) if i < core else slice(None, settings.halo)
            if i > core else slice(None) for i in range(len(window))]
    first = window[0].offset
    markers = np.concatenate([lut[b.labels[cut]] for b, lut, cut
                              in zip(window, _window_ids(window, links, first), cuts)])
    top = window[0].labels[cuts[0]].shape[0] if core else 0
    band_rows = slice(top, top + rows[1] - rows[0])
    extent = np.concatenate([b.extent[cut] for b, cut in zip(window, cuts)])
    boundary = (np.concatenate([b.probs[2, cut] for b, cut in zip(window, cuts)])
                if settings.method == "watershed" else None)
    grown = grow_seeds(markers, extent, settings.method, boundary, band_rows)
    seams = [row for row in rows if 0 < row < height]
    return _pieces_of(grown, window[core].probs[0], rows[0], seams, first - 1,
                           settings.min_field_px)


def _window_ids(window: list[_SeedBand], links: list[np.ndarray], first: int
                ) -> list[np.ndarray]:
    """Per band of a window: label -> window id, that is seed id - `first` + 1, seeds linked
    across the window's band edges taking the smallest of their ids (0: no seed)."""
    count = window[-1].offset + len(window[-1].keep) - first
    pairs = np.concatenate([np.zeros((2, 0), np.int64), *links], axis=1) - first
    pairs = pairs[:, ((pairs >= 0) & (pairs < count)).all(axis=0)]
    smallest = _smallest_linked(count, pairs) + 1
    return [np.where(b.keep, smallest[b.offset - first: b.offset - first + len(b.keep)], 0)
            .astype(np.int32) for b in window]


def components(count: int, pairs: np.ndarray) -> np.ndarray:
    """Connected component of each of `count` nodes linked by `pairs` (2, n)."""
    graph = coo_matrix((np.ones(pairs.shape[1], np.int8), (pairs[0], pairs[1])),
                       shape=(count, count))
    return connected_components(graph, directed=False)[1]


def _smallest_linked(count: int, pairs: np.ndarray) -> np.ndarray:
    """Smallest node linked to each of `count` nodes by `pairs` (2, n)."""
    component = components(count, pairs)
    _, smallest = np.unique(component, return_index=True)
    return smallest[component]


def _pieces_of(grown: np.ndarray, background: np.ndarray, row0: int, seams: list[int],
                    id_offset: int, min_px: int) -> _Pieces:
    """Pixel counts, field probability sums and polygons of a grown band (labels +
    `id_offset` are seed ids), without pieces under `min_px` pixels of bounding box that
    do not touch a band edge (`seams`, where they may continue)."""
    counted, pixels, field_sum = sums_by_label(grown, background)
    geoms, labels = polygonize(grown, row0)
    xmin, ymin, xmax, ymax = shapely.bounds(geoms).T
    on_seam = np.isin(ymin, seams) | np.isin(ymax, seams)
    keep = on_seam | ((xmax - xmin) * (ymax - ymin) >= min_px)
    return _Pieces(geoms[keep], labels[keep] + id_offset, on_seam[keep], counted + id_offset,
                   pixels, field_sum)


def sums_by_label(labels: np.ndarray, background: np.ndarray, chunk: int = 1 << 20
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero labels present, their pixel counts and their summed PROB_SCALE - background
    (uint8), from a histogram of (label, background) pairs built `chunk` pixels at a time
    (small temporaries are reused rather than mapped afresh)."""
    histogram = np.zeros((int(labels.max()) + 1) * 256, np.int64)
    rows = max(1, chunk // labels.shape[1])
    for top in range(0, len(labels), rows):
        pairs = labels[top: top + rows].astype(np.int64) * 256
        pairs += background[top: top + rows]
        histogram += np.bincount(pairs.ravel(), minlength=len(histogram))
    by_label = histogram.reshape(-1, 256)
    pixels = by_label.sum(axis=1)
    present = np.flatnonzero(pixels[1:]) + 1
    field_sum = by_label[present] @ (PROB_SCALE - np.arange(256))
    return present, pixels[present], field_sum


def _merge_fields(pool: ThreadPoolExecutor, pieces: list[_Pieces], links: list[np.ndarray],
                  seams: list[int], min_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Fields (linked seeds) with at least `min_px` pixels: their polygons, the pieces that
    meet at band edges (rows `seams`) unioned, parts under `min_px` pixels dropped; and
    their mean P(field or boundary)."""
    geoms, ids, on_seam, counted, pixels, field_sum = (
        np.concatenate([getattr(p, name) for p in pieces]) for name in
        ("geoms", "ids", "on_seam", "counted", "pixels", "field_sum"))
    pairs = np.concatenate([np.zeros((2, 0), np.int64), *links], axis=1)
    count = 1 + max(ids.max(initial=0), counted.max(initial=0), pairs.max(initial=0))
    field = components(count, pairs)
    total = np.bincount(field[counted], weights=pixels, minlength=count)
    fsum = np.bincount(field[counted], weights=field_sum, minlength=count)
    owner = field[ids]
    big = total[owner] >= min_px
    geoms, owner, on_seam = geoms[big], owner[big], on_seam[big]
    geoms[on_seam] = vertices_across_seams(geoms[on_seam], np.array(seams, float))
    geoms, owner = _union_at_seams(pool, geoms, owner, on_seam)
    keep = shapely.area(geoms) >= max(1, min_px)
    geoms, owner = geoms[keep], owner[keep]
    return geoms, fsum[owner] / total[owner] / PROB_SCALE


def vertices_across_seams(geoms: np.ndarray, seams: np.ndarray) -> np.ndarray:
    """Polygons with a vertex wherever a vertex of another lies on one of their edges along
    a band edge (rows `seams`): bands are polygonized apart, so an edge that two fields
    share along a band edge has only the vertices of one side in each."""
    rings, polygon = shapely.get_rings(geoms, return_index=True)
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    width = xy[:, 0].max(initial=0) + 1
    key = xy[:, 1] * width + xy[:, 0]  # row by row, west to east (integer coordinates)
    on_seam = np.isin(xy[:, 1], seams)
    points = np.unique(key[on_seam])
    along = (ring[1:] == ring[:-1]) & on_seam[:-1] & (xy[1:, 1] == xy[:-1, 1])
    lo = np.searchsorted(points, np.minimum(key[:-1], key[1:]), "right")
    hi = np.searchsorted(points, np.maximum(key[:-1], key[1:]), "left")
    added = np.where(along, hi - lo, 0)  # points strictly inside each edge along a seam
    if not added.any():
        return geoms
    east = key[1:] > key[:-1]
    step = np.where(np.repeat(east, added), 1, -1) * ranges(added)
    inserted = points[np.repeat(np.where(east, lo, hi - 1), added) + step]
    after = np.repeat(np.arange(1, len(key)), added)
    key = np.insert(key, after, inserted)
    ring = np.insert(ring, after, ring[after])
    rings = shapely.linearrings(np.column_stack([key % width, key // width]), indices=ring)
    return shapely.polygons(rings, indices=polygon)


def _union_at_seams(pool: ThreadPoolExecutor, geoms: np.ndarray, owner: np.ndarray,
                    on_seam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union the pieces of one owner that touch band edges (on `pool`); the other pieces
    stay apart."""
    seam = np.flatnonzero(on_seam)
    values, counts = np.unique(owner[seam], return_counts=True)
    shared = seam[np.isin(owner[seam], values[counts > 1])]
    if len(shared) == 0:
        return geoms, owner
    shared = shared[np.argsort(owner[shared], kind="stable")]
    groups = np.split(shared, np.flatnonzero(np.diff(owner[shared])) + 1)
    merged = list(pool.map(lambda group: shapely.get_parts(shapely.union_all(geoms[group])),
                           groups))
    apart = np.ones(len(geoms), bool)
    apart[shared] = False
    return (np.concatenate([geoms[apart], *merged]),
            np.concatenate([owner[apart], *(np.full(len(parts), owner[group[0]])
                                            for parts, group in zip(merged, groups))]))


def pixels_to_map(geoms: np.ndarray, transform: Affine) -> np.ndarray:
    """Pixel coordinates (col, row) -> map coordinates through the raster's geotransform."""
    if len(geoms) == 0:
        return geoms
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    return shapely.transform(geoms, lambda xy: np.column_stack(
        (a * xy[:, 0] + b * xy[:, 1] + c, d * xy[:, 0] + e * xy[:, 1] + f)))


def grow_seeds(markers: np.ndarray, extent: np.ndarray, method: str,
               boundary: np.ndarray | None, rows: slice = slice(None)) -> np.ndarray:
    """Labels of `rows` of the seed labels `markers` grown over the field `extent` (both
    the whole window) as `method` says: `boundary` (the boundary class, needed by
    "watershed") floods, else `_grow`."""
    if method == "watershed":
        assert boundary is not None, "watershed growth needs the boundary class"
        return _watershed(boundary, markers, extent)[rows]
    return _grow(markers, rows, extent[rows], method == "threshold")


def _grow(markers: np.ndarray, rows: slice, extent: np.ndarray, threshold: bool) -> np.ndarray:
    """Labels of `rows` of the seed labels `markers` grown over `extent` (that of `rows`):

    - seeded: each extent pixel takes the label of its nearest seed pixel (OpenCV distance
      transform; ~15x faster than watershed, same fields within ~1 % of pixels);
    - threshold: no growth, the connected field-class regions themselves.
    """
    if threshold:
        return np.where(extent, markers[rows], 0).astype(np.int32)
    seeded = markers > 0
    if not seeded.any():
        return np.zeros(extent.shape, np.int32)
    _, nearest = cv2.distanceTransformWithLabels(np.logical_not(seeded).view(np.uint8),
                                                 cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    # OpenCV numbers the seed pixels 1, 2, ... row by row (tests/test_fields.py checks it)
    grown = np.concatenate([np.zeros(1, np.int32), markers[seeded]])[nearest[rows]]
    grown *= extent
    return grown


def _watershed(boundary: np.ndarray, markers: np.ndarray, extent: np.ndarray) -> np.ndarray:
    """Flooding from the seeds over the field extent in order of boundary probability
    (scikit-image)."""
    from skimage.segmentation import watershed

    return watershed(boundary, markers=markers, mask=extent, connectivity=1).astype(np.int32)


# ---- polygonizing along pixel edges --------------------------------------------------------
# The corners of a (rows, cols) label array are numbered row by row, cols + 1 per row. A
# boundary is cut into runs, straight stretches between the same two regions, directed so
# that their region (label) lies on the right in image coordinates (y down). Directions:
# 0 east, 1 south, 2 west, 3 north; of the four pixels around a corner, the one right of a
# run leaving it in direction d is, for d = 0..3, SE, SW, NW, NE.
