"""Probability raster -> field polygons, in row bands with bounded memory.

Pass 1 labels seed regions band by band into a temporary raster and records which labels
touch across band edges; a graph's connected components make the labels global. Pass 2
re-reads each band with a halo, grows the seeds over the field extent (watershed on the
boundary probability), polygonizes the band and keeps the pieces by global label.
Pieces of one field from different bands share exact pixel edges and are merged, so no
field is cut or duplicated at band edges.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
import shapely
from rasterio import features
from rasterio.transform import Affine
from rasterio.windows import Window
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from farmseg.inference import PROB_SCALE
from farmseg.jobs import Job, Progress
from farmseg.raster import Grid, raster_profile_for

FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


@dataclass
class VectorizeSettings:
    """How probabilities become fields (defaults come from the model's metadata)."""

    method: str = "seeded"  # "seeded", "watershed" or "threshold" (see _grow)
    field_threshold: float = 0.5  # P(field or boundary) for the field extent
    seed_threshold: float = 0.5  # P(field) for seeds
    boundary_threshold: float = 0.5  # P(boundary) below which a pixel may seed
    band_rows: int | None = None  # rows per band; None: sized for ~4 MPix bands
    halo: int = 64
    min_seed_px: int = 0  # drop seed regions smaller than this (noise)
    min_field_px: int = 0  # skip fields with fewer pixels (they fail the minimum area)


@dataclass
class RawFields:
    """Merged field polygons in the raster CRS with their mean field probability."""

    geoms: np.ndarray
    confidence: np.ndarray
    grid: Grid


def _masks(probs: np.ndarray, s: VectorizeSettings) -> tuple[np.ndarray, np.ndarray]:
    """(extent, seeds) boolean masks from uint8 probabilities (background, field, boundary)."""
    bg, fld, bnd = probs[0], probs[1], probs[2]
    if s.method == "threshold":
        plain = (fld > bg) & (fld >= bnd)
        return plain, plain
    extent = bg <= (1.0 - s.field_threshold) * PROB_SCALE
    seeds = (fld >= s.seed_threshold * PROB_SCALE) & (bnd < s.boundary_threshold * PROB_SCALE)
    return extent, seeds & extent


def band_rows_for(width: int, target_pixels: int = 4_000_000) -> int:
    """Rows per band so that a band holds about `target_pixels` (memory stays flat)."""
    return int(min(4096, max(256, target_pixels // max(1, width))))


def _bands(height: int, rows: int) -> list[tuple[int, int]]:
    return [(r, min(height, r + rows)) for r in range(0, height, rows)]


def _label_seeds(seeds: np.ndarray, min_seed_px: int) -> tuple[np.ndarray, int]:
    """4-connected seed regions; tiny ones (not touching the band's first/last row, so
    never part of a larger seed across bands) are dropped."""
    labels, count = ndimage.label(seeds, structure=FOUR_CONNECTED)
    if count and min_seed_px > 1:
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        keep = sizes >= min_seed_px
        keep[np.unique(labels[[0, -1]])] = True
        keep[0] = False
        renumber = np.zeros(count + 1, np.int32)
        renumber[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        return renumber[labels], int(keep.sum())
    return labels.astype(np.int32), count


def vectorize_job(prob_path: Path, work_dir: Path, settings: VectorizeSettings) -> Job[RawFields]:
    """Turn a probability raster into merged field polygons; yields Progress per band."""
    with rasterio.open(prob_path) as src:
        grid = Grid(src.width, src.height, src.transform, src.crs)
        bands = _bands(src.height, settings.band_rows or band_rows_for(src.width))
        seeds_path = Path(work_dir) / "seeds.tif"
        next_label = 1
        links: list[np.ndarray] = []
        prev_last: np.ndarray | None = None
        profile = raster_profile_for(grid, 1, "int32")
        profile.update(compress="zstd", zstd_level=1)
        with rasterio.open(seeds_path, "w", **profile) as seeds_out:
            for index, (r0, r1) in enumerate(bands):
                probs = src.read(window=Window(0, r0, src.width, r1 - r0))
                _, seeds = _masks(probs, settings)
                labels, count = _label_seeds(seeds, settings.min_seed_px)
                labels[labels > 0] += next_label - 1
                next_label += count
                if prev_last is not None:
                    both = (prev_last > 0) & (labels[0] > 0)
                    links.append(np.stack([prev_last[both], labels[0][both]]))
                prev_last = labels[-1].copy()
                seeds_out.write(labels, 1, window=Window(0, r0, src.width, r1 - r0))
                yield Progress("vectorize", index + 1, 2 * len(bands), "labelling seeds")
        lut = _global_labels(next_label, links)
        pieces: dict[int, list] = defaultdict(list)
        conf_sum = np.zeros(int(lut.max()) + 1)
        conf_n = np.zeros(int(lut.max()) + 1, np.int64)
        with rasterio.open(seeds_path) as seeds_in:
            for index, (r0, r1) in enumerate(bands):
                h0, h1 = max(0, r0 - settings.halo), min(src.height, r1 + settings.halo)
                window = Window(0, h0, src.width, h1 - h0)
                probs = src.read(window=window)
                markers = lut[seeds_in.read(1, window=window)]
                labels = _grow(probs, markers, settings)[r0 - h0: r1 - h0]
                inside = labels > 0
                conf_sum += np.bincount(labels[inside], weights=PROB_SCALE - probs[0, r0 - h0:
                                        r1 - h0][inside], minlength=len(conf_sum))
                conf_n += np.bincount(labels[inside], minlength=len(conf_n))
                seams = {r for r in (r0, r1) if 0 < r < src.height}
                # polygonize in pixel coordinates: band edges are exact integers
                for geom, value in features.shapes(labels, mask=inside, connectivity=4,
                                                   transform=Affine.translation(0, r0)):
                    shell = np.asarray(geom["coordinates"][0])
                    top, bottom = shell[:, 1].min(), shell[:, 1].max()
                    on_seam = bool(seams & {top, bottom})
                    box = (bottom - top) * (shell[:, 0].max() - shell[:, 0].min())
                    if on_seam or box >= settings.min_field_px:
                        rings = geom["coordinates"]
                        pieces[int(value)].append((shapely.Polygon(rings[0], rings[1:]),
                                                   on_seam))
                yield Progress("vectorize", len(bands) + index + 1, 2 * len(bands),
                               "polygonizing")
    geoms, confidence = [], []
    for label in sorted(pieces):
        if conf_n[label] < settings.min_field_px:
            continue  # too small to pass the minimum area whatever its shape
        for part in _merge_pieces(pieces[label], settings.min_field_px):
            geoms.append(part)
            confidence.append(conf_sum[label] / conf_n[label] / PROB_SCALE)
    return RawFields(_to_map(np.array(geoms, dtype=object), grid.transform),
                     np.array(confidence), grid)


def _merge_pieces(pieces: list[tuple[shapely.Polygon, bool]], min_px: int) -> list:
    """One field's polygons: pieces that meet at band seams are unioned; others stay as
    they are (disconnected within their band); parts under `min_px` pixels are dropped."""
    seam = [piece for piece, on_seam in pieces if on_seam]
    parts = [piece for piece, on_seam in pieces if not on_seam]
    if len(seam) > 1:
        merged = shapely.union_all(seam)
        parts.extend(getattr(merged, "geoms", [merged]))
    else:
        parts.extend(seam)
    return [p for p in parts if p.area >= max(1, min_px)]


def _to_map(geoms: np.ndarray, transform: Affine) -> np.ndarray:
    """Pixel coordinates (col, row) -> map coordinates through the raster's geotransform."""
    if len(geoms) == 0:
        return geoms
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    return shapely.transform(geoms, lambda xy: np.column_stack(
        (a * xy[:, 0] + b * xy[:, 1] + c, d * xy[:, 0] + e * xy[:, 1] + f)))


def _global_labels(count: int, links: list[np.ndarray]) -> np.ndarray:
    """Lookup table band label -> global label (labels linked across band edges merge)."""
    if not links or not any(l.size for l in links):
        return np.arange(count, dtype=np.int32)
    pairs = np.concatenate(links, axis=1)
    graph = coo_matrix((np.ones(pairs.shape[1]), (pairs[0], pairs[1])), shape=(count, count))
    _, component = connected_components(graph, directed=False)
    lut = (component + 1).astype(np.int32)
    lut[0] = 0
    return lut


def _grow(probs: np.ndarray, markers: np.ndarray, settings: VectorizeSettings) -> np.ndarray:
    """Grow seeds over the field extent.

    - seeded: each extent pixel takes the label of its nearest seed pixel (OpenCV distance
      transform; ~15x faster than watershed, same fields within ~1 % of pixels);
    - watershed: flooding from the seeds in order of boundary probability (scikit-image);
    - threshold: no growth, the connected field-class regions themselves.
    """
    extent, _ = _masks(probs, settings)
    if settings.method == "threshold":
        return np.where(extent, markers, 0).astype(np.int32)
    if settings.method == "watershed":
        from skimage.segmentation import watershed

        return watershed(probs[2], markers=markers, mask=extent, connectivity=1).astype(np.int32)
    seeded = markers > 0
    if not seeded.any():
        return np.zeros(markers.shape, np.int32)
    _, nearest = cv2.distanceTransformWithLabels((~seeded).astype(np.uint8), cv2.DIST_L2, 5,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
    lut = np.zeros(int(nearest.max()) + 1, np.int32)
    lut[nearest[seeded]] = markers[seeded]
    grown = lut[nearest]
    grown[~extent] = 0
    return grown
