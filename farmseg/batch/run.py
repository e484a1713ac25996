"""The batch job: scenes -> blocks on a Dask cluster -> one seamless field layer."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rasterio.transform import Affine

from farmseg.batch.blocks import BlockReport, BlockSettings, infer_block, vectorize_block
from farmseg.batch.cluster import dashboard_link, dask_client
from farmseg.batch.jobdir import JobFolder
from farmseg.batch.merge import footprint, join_groups, merge_group, pixel_size_in
from farmseg.batch.mosaic import SceneGroup, group_scenes, write_group_vrt, write_window_vrt
from farmseg.batch.options import DEFAULT_BLOCK_PX
from farmseg.batch.plan import Block, TileGrid, neighbours, plan_blocks, scene_blocks
from farmseg.batch.scenes import Scene, find_scenes
from farmseg.errors import FarmsegError
from farmseg.fields.clean import FieldLayer, clean_fields
from farmseg.fields.export import check_format, check_layer_exportable, write_fields
from farmseg.fields.vectorize import RawFields
from farmseg.geoio.atomic import check_target
from farmseg.geoio.raster import Grid, RasterSource, parse_crs
from farmseg.jobs import EtaClock, Job, Progress
from farmseg.models.bundle import load_bundle
from farmseg.pipeline.inference import TileSettings, model_scale, raster_tile, tile_for_scale
from farmseg.pipeline.segment import SegmentOptions


@dataclass
class BatchOptions:
    """A batch: the inputs, the single-raster options that apply to each block (`segment`:
    model, engine, tiles, thresholds, minimum areas, output and --overwrite), and how the
    work is spread."""

    inputs: list[Path]
    segment: SegmentOptions
    out_crs: str | None = None  # default: the first scene's
    workers: int | None = None  # local cluster processes (None: sized to the machine)
    scheduler: str | None = None  # tcp://host:8786 of an existing cluster
    job_dir: Path | None = None  # default: beside the output
    skip_bad: bool = False
    block_px: int = DEFAULT_BLOCK_PX


@dataclass
class BatchResult:
    layer: FieldLayer
    scenes: list[Scene]
    skipped: list[FarmsegError]
    blocks: int
    computed: int  # blocks finished by this run (the others were in the job folder)
    pixels: int  # pixels inferred by this run
    seconds: float
    peak_rss_mb: dict[str, float] = field(default_factory=dict)  # largest worker, per step
    dashboard: str | None = None


def default_job_dir(output: Path) -> Path:
    return output.with_name(f".{output.name}.job")


def batch_job(options: BatchOptions) -> Job[BatchResult]:
    """Segment many scenes into one layer; resumes from the job folder; the output appears
    complete or not at all."""
    seg = options.segment
    if seg.output is None:
        raise FarmsegError(None, "a batch needs an output file (-o)")
    output = Path(seg.output)
    check_format(output)
    check_target(output, seg.overwrite)
    scenes, skipped = find_scenes(options.inputs, seg.crs, options.skip_bad)
    out_crs = parse_crs(options.out_crs) if options.out_crs else scenes[0].grid.crs
    check_layer_exportable(out_crs, output)
    bundle = load_bundle(seg.model)
    groups = group_scenes(scenes)
    job = JobFolder.open(options.job_dir or default_job_dir(output),
                         _manifest(options, scenes, bundle.path))
    vrts = [write_group_vrt(g, job.path(f"g{i}.vrt")) for i, g in enumerate(groups)]
    tiles = [_tile_grid(vrt, seg, bundle) for vrt in vrts]
    blocks = [plan_blocks(g, i, t, options.block_px)
              for i, (g, t) in enumerate(zip(groups, tiles))]
    pixel_m = groups[0].grid.pixel_size_m() or 1.0
    vec = seg.vectorize.settings(bundle, seg.clean.min_area_ha, pixel_m ** 2)
    settings = BlockSettings(job.root, bundle.path.resolve(), seg.engine, seg.tiles, vec)
    clock = EtaClock()
    with dask_client(options.workers, options.scheduler) as client:
        link = dashboard_link(client)
        yield Progress("batch", 0, sum(map(len, blocks)), "; ".join(
            [f"{len(scenes)} scenes, {sum(map(len, blocks))} blocks"]
            + [f"dashboard {link}"] * bool(link) + [f"skipped {e}" for e in skipped]),
            {"dashboard": link, "skipped": [str(e) for e in skipped]})
        reports = yield from _run_blocks(client, job, groups, vrts, blocks, settings, clock)
    yield Progress("merge", 0, 1, "merging block fields")
    raws = [merge_group(job, g, b, vec.min_field_px) for g, b in zip(groups, blocks)]
    geoms, confidence = join_groups(raws, [footprint(g, out_crs) for g in groups], out_crs)
    size = pixel_size_in(groups[0].grid, out_crs)
    grid = Grid(0, 0, Affine.scale(size, -size), out_crs)  # for the simplification tolerance
    layer = clean_fields(RawFields(geoms, confidence, grid),
                         seg.clean,
                         source=scenes[0].path.name if len(scenes) == 1 else
                         f"{len(scenes)} scenes", model=bundle.name)
    write_fields(layer, output)
    job.remove()
    yield Progress("merge", 1, 1, f"{len(layer)} fields written to {output}")
    done = [r for r in reports if r.step == "vectorize"]
    peaks = {step: max((r.peak_rss_mb for r in reports if r.step == step), default=0.0)
             for step in ("infer", "vectorize")}
    return BatchResult(layer, scenes, skipped, sum(map(len, blocks)), len(done),
                       sum(r.pixels for r in reports if r.step == "infer"), clock.elapsed(),
                       peaks, link)


def _tile_grid(vrt: Path, seg: SegmentOptions, bundle: Any) -> TileGrid:
    """The tile layout infer_job uses on this mosaic, in raster pixels."""
    with RasterSource(vrt) as source:
        scale = model_scale(source, bundle)
    tiles = tile_for_scale(TileSettings(seg.tiles.tile or bundle.tile, bundle.overlap
                                        if seg.tiles.overlap is None else seg.tiles.overlap
                                        ).checked(), scale)
    return TileGrid(raster_tile(tiles.tile, scale), raster_tile(tiles.overlap, scale))


def _manifest(options: BatchOptions, scenes: list[Scene], model: Path) -> dict[str, Any]:
    """What makes two runs the same job (scene files by size and time, model, settings)."""
    seg = dataclasses.asdict(options.segment)
    for key in ("output", "overwrite", "csv_out", "prob_out", "classes_out", "work_dir"):
        seg.pop(key, None)
    return {"scenes": [[str(s.path), s.path.stat().st_size, s.path.stat().st_mtime]
                       for s in scenes],
            "model": [str(model.resolve()), (model / "farmseg.json").stat().st_mtime],
            "segment": {k: str(v) if isinstance(v, Path) else v for k, v in seg.items()},
            "out_crs": options.out_crs, "block_px": options.block_px}


def _run_blocks(client: Any, job: JobFolder, groups: list[SceneGroup], vrts: list[Path],
                blocks: list[list[Block]], settings: BlockSettings, clock: EtaClock
                ) -> Job[list[BlockReport]]:
    """Submit the blocks not yet in the job folder and report them as they finish."""
    from distributed import as_completed

    everything = [b for group in blocks for b in group]
    order = {b.name: i for i, b in enumerate(everything)}
    by_key = {(b.group, b.row, b.col): b for b in everything}
    inferred: dict[str, Any] = {}
    futures = []
    for b in everything:
        if not job.inferred(b.name) and not job.vectorized(b.name):
            window = write_window_vrt(groups[b.group], vrts[b.group], b.read,
                                      job.path(f"{b.name}.vrt"))
            inferred[b.name] = client.submit(infer_block, b, window, settings,
                                             key=f"infer-{b.name}-{job.root}", pure=False)
            futures.append(inferred[b.name])
    for b in everything:
        if not job.vectorized(b.name):
            around = neighbours(b, by_key)
            after = [inferred[n.name] for n in around if n.name in inferred]
            futures.append(client.submit(vectorize_block, b, around, order, settings, *after,
                                         key=f"vectorize-{b.name}-{job.root}", pure=False))
    total = len(everything)
    done = total - sum(1 for b in everything if not job.vectorized(b.name))
    pixels_done = 0
    scenes = [(s.path.name, set(names)) for g, group_blocks in zip(groups, blocks)
              for s, names in zip(g.scenes, scene_blocks(g, group_blocks))]
    finished: set[str] = {b.name for b in everything if job.vectorized(b.name)}
    reports = []
    units, unit_total = 0, len(futures)
    for future in as_completed(futures):
        report: BlockReport = future.result()
        reports.append(report)
        units += 1
        if report.step == "infer":
            pixels_done += report.pixels
            continue
        done += 1
        finished.add(report.block)
        rate = pixels_done / max(clock.elapsed(), 1e-9) / 1e6
        eta = clock.eta(units, unit_total)
        lines = [f"scene {name} done" for name, names in scenes
                 if report.block in names and names <= finished]
        yield Progress("batch", done, total, "; ".join(
            [f"{done}/{total} blocks, {rate:.2f} MPix/s"
             + (f", ETA {eta:.0f} s" if eta is not None else "")] + lines),
            {"mpix_s": rate, "eta_s": eta, "scenes_done": lines})
    return reports


def batch_options(args: argparse.Namespace, segment: SegmentOptions) -> BatchOptions:
    """The batch of the parsed arguments; `segment` holds the single-raster options (its
    `crs` assigns a CRS to scenes without one; the output CRS is args.out_crs if the CLI
    names it so)."""
    return BatchOptions([Path(p) for p in args.input], segment,
                        out_crs=getattr(args, "out_crs", None), workers=args.workers,
                        scheduler=args.scheduler, job_dir=args.job_dir,
                        skip_bad=args.skip_bad, block_px=args.block)
