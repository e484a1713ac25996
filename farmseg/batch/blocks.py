"""The work of one block, run on a cluster worker; each step writes its files and returns.

infer_block: probabilities over the block's read window (tiles laid out as over the whole
raster, see plan.py), its core kept, and the core's seed regions labelled (4-connected,
tiny ones dropped unless they touch the core's edge, where they may continue).

vectorize_block: the core's seeds and those of the neighbours within `halo` pixels grow
over the core's field extent; the core is polygonized. Seeds carry ids unique over the job
(block number << 32 + label); seeds that touch across the core's edges are recorded as
links, so merge.py can make one field of them.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import rasterio
import shapely
from rasterio.windows import Window

from farmseg.batch.jobdir import JobFolder, atomic_path
from farmseg.batch.plan import Block
from farmseg.fields.polygonize import polygonize
from farmseg.fields.vectorize import (
    VectorizeSettings,
    class_masks,
    components,
    grow_seeds,
    kept_seeds,
    sums_by_label,
)
from farmseg.geoio.raster import PROB_SCALE, Grid, RasterSource, raster_profile_for
from farmseg.jobs import drain
from farmseg.models.bundle import ModelBundle, load_bundle
from farmseg.models.engine_choice import EngineRequest
from farmseg.models.engines import Predictor, make_predictor
from farmseg.pipeline.inference import infer_job
from farmseg.pipeline.segment import TileOptions

ID_SHIFT = 32  # seed id = block number << ID_SHIFT | label in the block


@dataclass(frozen=True)
class BlockSettings:
    """Everything a worker needs besides the block (picklable, sent with each task)."""

    job: Path
    model: Path  # bundle folder on a path the workers share
    engine: EngineRequest
    tiles: TileOptions
    vectorize: VectorizeSettings


@dataclass(frozen=True)
class BlockReport:
    """What a finished step tells the orchestrator."""

    block: str
    step: str
    pixels: int
    peak_rss_mb: float


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@lru_cache(maxsize=2)
def _engine(model: Path, engine: EngineRequest) -> tuple[ModelBundle, Predictor]:
    """One bundle and predictor per worker process, reused by its blocks (chosen as for a
    large raster: the job's area)."""
    bundle = load_bundle(model)
    return bundle, make_predictor(bundle, engine.engine, engine.device, engine.precision,
                                  pixels=1 << 30)


def _warn(text: str) -> None:
    sys.stderr.write(f"farmseg: warning: {text}\n")


def infer_block(block: Block, vrt: Path, settings: BlockSettings) -> BlockReport:
    """Probabilities and seed labels of the block's core (skipped when already written)."""
    job = JobFolder(settings.job)
    pixels = int(block.core.width * block.core.height)
    if job.inferred(block.name):
        return BlockReport(block.name, "infer", pixels, peak_rss_mb())
    bundle, predictor = _engine(settings.model, settings.engine)
    core = Window(block.core.col_off - block.read.col_off, block.core.row_off -
                  block.read.row_off, block.core.width, block.core.height)
    with atomic_path(job.path(f"{block.name}.window.tif")) as window_probs:
        with RasterSource(vrt) as source:
            drain(infer_job(source, bundle, predictor,
                            settings.tiles.settings(bundle, predictor), window_probs,
                            settings.tiles.bands, _warn))
            grid = Grid(int(core.width), int(core.height), source.grid.window_transform(core),
                        source.grid.crs)
        with rasterio.open(window_probs) as src:
            probs = src.read(window=core)
    _write(job.probabilities(block.name), grid, probs)
    _write(job.seeds(block.name), grid, _seed_labels(probs, settings.vectorize)[None])
    return BlockReport(block.name, "infer", pixels, peak_rss_mb())


def _write(target: Path, grid: Grid, data: np.ndarray) -> None:
    profile = {**raster_profile_for(grid, len(data), data.dtype.name), "zlevel": 1}
    with atomic_path(target) as tmp, rasterio.open(tmp, "w", **profile) as out:
        out.write(data)


def _seed_labels(probs: np.ndarray, settings: VectorizeSettings) -> np.ndarray:
    """4-connected seed regions (int32, 0: none); those under `min_seed_px` are dropped
    unless they touch the core's edge."""
    _, seeds = class_masks(probs, settings)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(seeds.view(np.uint8), connectivity=4,
                                                           ltype=cv2.CV_32S)
    keep = kept_seeds(labels, stats[:, cv2.CC_STAT_AREA], settings.min_seed_px)
    keep[labels[:, 0]] = True
    keep[labels[:, -1]] = True
    keep[0] = False
    return np.where(keep[labels], labels, 0).astype(np.int32)


def block_number(block: Block, order: dict[str, int]) -> int:
    return order[block.name] + 1


def vectorize_block(block: Block, around: list[Block], order: dict[str, int],
                    settings: BlockSettings, *after: object) -> BlockReport:
    """Fields of the block's core, grown with the seeds of its neighbours `around` (their
    infer_block must be done: `after` holds those steps, so the scheduler waits for them)."""
    job = JobFolder(settings.job)
    pixels = int(block.core.width * block.core.height)
    if job.vectorized(block.name):
        return BlockReport(block.name, "vectorize", pixels, peak_rss_mb())
    s = settings.vectorize
    halo = s.halo
    c0, r0 = int(block.core.col_off), int(block.core.row_off)
    window = Window(c0 - halo, r0 - halo, block.core.width + 2 * halo,
                    block.core.height + 2 * halo)
    probs = np.zeros((3, int(window.height), int(window.width)), np.uint8)
    probs[0] = int(PROB_SCALE)  # outside every block: background
    seeds = np.zeros((1, int(window.height), int(window.width)), np.int64)
    for other in around:
        _paste(probs, job.probabilities(other.name), other.core, window)
        offset = block_number(other, order) << ID_SHIFT
        _paste(seeds, job.seeds(other.name), other.core, window, offset)
    core = (slice(halo, halo + int(block.core.height)), slice(halo, halo + int(block.core.width)))
    markers = seeds[0]
    links = _edge_links(markers, core)
    ids, compact = _compact(markers, links)
    extent, _ = class_masks(probs, s)
    grown = grow_seeds(compact, extent, s.method, probs[2], core[0])[:, core[1]]
    counted, count, field_sum = sums_by_label(grown, probs[0][core])
    geoms, labels = polygonize(grown, 0)
    geoms = shapely.transform(geoms, lambda xy: xy + (c0, r0))
    job.save_pieces(block.name, geoms, {
        "ids": ids[labels], "counted": ids[counted], "pixels": count,
        "field_sum": field_sum.astype(np.int64), "links": links})
    return BlockReport(block.name, "vectorize", pixels, peak_rss_mb())


def _paste(out: np.ndarray, path: Path, core: Window, window: Window, offset: int = 0) -> None:
    """Copy the part of a block's core file that falls in `window` into `out` (ids offset)."""
    c0 = max(int(core.col_off), int(window.col_off))
    r0 = max(int(core.row_off), int(window.row_off))
    c1 = min(int(core.col_off + core.width), int(window.col_off + window.width))
    r1 = min(int(core.row_off + core.height), int(window.row_off + window.height))
    if c1 <= c0 or r1 <= r0:
        return
    with rasterio.open(path) as src:
        data = src.read(window=Window(c0 - core.col_off, r0 - core.row_off, c1 - c0, r1 - r0))
    target = out[:, r0 - int(window.row_off): r1 - int(window.row_off),
                 c0 - int(window.col_off): c1 - int(window.col_off)]
    target[:] = np.where(data > 0, data.astype(out.dtype) + offset, 0) if offset else data


def _edge_links(markers: np.ndarray, core: tuple[slice, slice]) -> np.ndarray:
    """(2, n) ids of seeds that touch across the core's four edges."""
    rows, cols = core
    inner = [markers[rows.start, cols], markers[rows.stop - 1, cols],
             markers[rows, cols.start], markers[rows, cols.stop - 1]]
    outer = [markers[rows.start - 1, cols], markers[rows.stop, cols],
             markers[rows, cols.start - 1], markers[rows, cols.stop]]
    a, b = np.concatenate(inner), np.concatenate(outer)
    both = (a > 0) & (b > 0)
    return np.unique(np.stack([a[both], b[both]]), axis=1)


def _compact(markers: np.ndarray, links: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Window ids 1.. for the job-wide seed ids of `markers`, linked seeds taking one id:
    (job-wide id of each window id, markers as window ids)."""
    ids = np.union1d([0], markers)
    compact = np.searchsorted(ids, markers).astype(np.int32)
    component = components(len(ids), np.searchsorted(ids, links))
    _, smallest = np.unique(component, return_index=True)
    return ids, smallest[component].astype(np.int32)[compact]
