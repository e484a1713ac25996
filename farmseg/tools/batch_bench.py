"""`farmseg bench --scenes N --workers 1 2`: the batch on N adjacent scenes, as one VRT and
as N files, against the single-raster job on the same area (time, MPix/s, peak memory per
worker, scaling with workers, field counts and union IoU)."""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.windows import Window

from farmseg.batch.mosaic import group_scenes, write_group_vrt
from farmseg.batch.options import DEFAULT_BLOCK_PX
from farmseg.batch.run import BatchOptions, batch_job
from farmseg.batch.scenes import find_scenes
from farmseg.geoio.raster import Grid, raster_profile_for
from farmseg.jobs import drain
from farmseg.pipeline.segment import SegmentOptions, segment_job
from farmseg.tools.bench import build_mosaic


def split_scenes(mosaic: Path, count: int, folder: Path) -> list[Path]:
    """`count` adjacent scenes cut from `mosaic` on a near-square grid."""
    cols = math.ceil(math.sqrt(count))
    rows = math.ceil(count / cols)
    paths = []
    with rasterio.open(mosaic) as src:
        for index in range(count):
            r, c = divmod(index, cols)
            x0, x1 = src.width * c // cols, src.width * (c + 1) // cols
            y0, y1 = src.height * r // rows, src.height * (r + 1) // rows
            window = Window(x0, y0, x1 - x0, y1 - y0)
            grid = Grid(x1 - x0, y1 - y0, src.window_transform(window), src.crs)
            paths.append(folder / f"scene_{r}_{c}.tif")
            with rasterio.open(paths[-1], "w", **raster_profile_for(grid, src.count,
                                                                     "uint8")) as out:
                out.write(src.read(window=window))
    return paths


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ua, ub = shapely.union_all(a), shapely.union_all(b)
    return float(shapely.area(shapely.intersection(ua, ub)) / shapely.area(shapely.union(ua, ub)))


def bench_batch(scenes: int = 4, size: int = 4096, workers: tuple[int, ...] = (1, 2),
                model: str = "default", block_px: int = DEFAULT_BLOCK_PX) -> str:
    """A Markdown table of the runs (the single-raster job first)."""
    with tempfile.TemporaryDirectory(prefix="farmseg-bench-batch-") as tmp:
        folder = Path(tmp)
        mosaic = build_mosaic(folder / "mosaic.tif", size)
        files = split_scenes(mosaic, scenes, folder)
        vrt = write_group_vrt(group_scenes(find_scenes(files)[0])[0], folder / "scenes.vrt")
        mpix = size * size / 1e6
        clock = time.monotonic()
        single = drain(segment_job(SegmentOptions(mosaic, folder / "single.gpkg",
                                                  model=model))).layer
        seconds = time.monotonic() - clock
        lines = ["| run | workers | time | MPix/s | peak RSS per worker | fields | vs single |",
                 "|---|---|---|---|---|---|---|",
                 f"| single raster, no Dask | - | {seconds:.1f} s | {mpix / seconds:.2f} | - | "
                 f"{len(single)} | - |"]
        for count in workers:
            for name, inputs in ((f"1 VRT of {scenes} scenes", [vrt]),
                                 (f"{scenes} files", files)):
                output = folder / f"batch-{count}-{len(inputs)}.gpkg"
                result = drain(batch_job(BatchOptions(
                    inputs, SegmentOptions(inputs[0], output, model=model), workers=count,
                    block_px=block_px)))
                rss = max(result.peak_rss_mb.values())
                diff = (len(result.layer) - len(single)) / max(1, len(single)) * 100
                lines.append(f"| {name} | {count} | {result.seconds:.1f} s | "
                             f"{mpix / result.seconds:.2f} | {rss:.0f} MB | {len(result.layer)} "
                             f"| count {diff:+.1f} %, IoU "
                             f"{_iou(result.layer.geoms, single.geoms):.4f} |")
        return "\n".join(lines)
