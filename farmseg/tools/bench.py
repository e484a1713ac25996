"""`farmseg bench`: the whole pipeline on a large real-looking raster, against the plain
per-tile loop that plugins run, each in its own process so peak memory is its own."""

from __future__ import annotations

import multiprocessing as mp
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from farmseg.geoio.raster import Grid, raster_profile_for
from farmseg.jobs import cpu_threads
from farmseg.models.bundle import META_NAME, app_root, load_bundle, write_meta
from farmseg.models.cpu import describe_cpu

SAMPLE = app_root() / "resources" / "sample" / "sample.tif"


def build_mosaic(target: Path, size: int, sample: Path = SAMPLE,
                 pixel_size_m: float | None = None) -> Path:
    """A size x size mosaic of `sample` (mirrored copies, so fields continue across the
    joins), written by row bands; labelled with `pixel_size_m` metre pixels when given (so
    that a model for coarse imagery reads it at its own pixel size)."""
    with rasterio.open(sample) as src:
        tile = src.read()
        crs = src.crs
        x0, y0 = src.transform.c, src.transform.f
        pixel = pixel_size_m or src.transform.a
    bands, th, tw = tile.shape
    grid = Grid(size, size, from_origin(x0, y0, pixel, pixel), crs)
    with rasterio.open(target, "w", **raster_profile_for(grid, bands, "uint8")) as out:
        for row in range(0, size, th):
            band = np.empty((bands, min(th, size - row), size), np.uint8)
            for col in range(0, size, tw):
                piece = tile[:, :, ::-1] if (col // tw) % 2 else tile
                piece = piece[:, ::-1] if (row // th) % 2 else piece
                w = min(tw, size - col)
                band[:, :, col:col + w] = piece[:, : band.shape[1], :w]
            out.write(band, window=Window(0, row, size, band.shape[1]))
    return target


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_farmseg(raster: str, model: str, engine: str, precision: str, tile: int | None,
                queue) -> None:
    """Child process: read -> infer -> blend -> vectorize -> write a GeoPackage."""
    from farmseg.jobs import run_job
    from farmseg.models.engine_choice import EngineRequest
    from farmseg.pipeline.segment import SegmentOptions, TileOptions, segment_job

    out = Path(raster).with_name("fields.gpkg")
    start = time.monotonic()
    tiles = {"n": 0}

    def count(progress) -> None:
        if progress.stage == "segment":
            tiles["n"] = progress.total

    result = run_job(segment_job(SegmentOptions(
        input=Path(raster), output=out, model=model,
        engine=EngineRequest(engine, precision=precision), tiles=TileOptions(tile),
        overwrite=True)), count)
    queue.put({"seconds": result.seconds, "total": time.monotonic() - start,
               "fields": len(result.layer), "engine": result.engine, "tiles": tiles["n"],
               "peak_rss_mb": _peak_rss_mb()})


def run_baseline(raster: str, model: str, queue) -> None:
    """Child process: the plain plugin loop — fp32 torch, 512 px tiles without overlap,
    batch 1, argmax per tile into an in-memory array, no polygons."""
    import segmentation_models_pytorch as smp
    import torch
    from safetensors.torch import load_file

    from farmseg.models.scaling import apply_scaling

    torch.set_num_threads(cpu_threads())
    bundle = load_bundle(model)
    net = smp.create_model(bundle.arch, encoder_name=bundle.encoder, encoder_weights=None,
                           in_channels=len(bundle.bands), classes=len(bundle.classes))
    net.load_state_dict({k: v.float() for k, v in load_file(str(bundle.weights_path)).items()})
    net.eval()
    norm = bundle.meta["normalize"]
    start = time.monotonic()
    with rasterio.open(raster) as src:
        classes = np.zeros((src.height, src.width), np.uint8)
        for y in range(0, src.height, 512):
            for x in range(0, src.width, 512):
                window = Window(x, y, min(512, src.width - x), min(512, src.height - y))
                data = src.read(bundle.bands, window=window, boundless=True)
                net_in = apply_scaling(data, bundle.scaling, norm["mean"], norm["std"])
                h, w = net_in.shape[1:]
                net_in = np.pad(net_in, ((0, 0), (0, (-h) % 32), (0, (-w) % 32)))
                with torch.no_grad():
                    logits = net(torch.from_numpy(net_in[None]))
                classes[y:y + h, x:x + w] = logits[0, :, :h, :w].argmax(0).numpy()
    queue.put({"total": time.monotonic() - start, "peak_rss_mb": _peak_rss_mb()})


def run_vectorize(prob_path: str, model: str, queue) -> None:
    """Child process: vectorize + clean a probability raster, with `segment`'s settings."""
    from farmseg.fields.clean import CleanSettings, clean_fields
    from farmseg.fields.vectorize import vectorize_job
    from farmseg.jobs import drain
    from farmseg.pipeline.segment import VectorizeOptions

    start = time.monotonic()
    clean = CleanSettings()
    settings = VectorizeOptions().settings(load_bundle(model), clean.min_area_ha)
    raw = drain(vectorize_job(Path(prob_path), settings))
    middle = time.monotonic()
    layer = clean_fields(raw, clean)
    queue.put({"vectorize": middle - start, "clean": time.monotonic() - middle,
               "fields": len(layer), "peak_rss_mb": _peak_rss_mb()})


def bench_vectorize(size: int = 10240, model: str = "default") -> str:
    """Vectorize + clean alone, on a mosaic of the sample's probabilities."""
    work = Path(tempfile.mkdtemp(prefix="farmseg-bench-"))
    try:
        from farmseg.jobs import drain
        from farmseg.pipeline.segment import SegmentOptions, segment_job

        probs = work / "sample_probs.tif"
        drain(segment_job(SegmentOptions(input=SAMPLE, model=model, prob_out=probs,
                                         work_dir=work)))
        mosaic = build_mosaic(work / "probs_mosaic.tif", size, probs)
        result = _child(run_vectorize, str(mosaic), model)
        mpix = size * size / 1e6
        total = result["vectorize"] + result["clean"]
        return "\n".join([
            f"CPU: {describe_cpu()}, {cpu_threads()} threads",
            f"probabilities: {size} x {size} px ({mpix:.0f} MPix), mosaic of the sample's",
            f"vectorize {result['vectorize']:.1f} s + clean {result['clean']:.1f} s = "
            f"{total:.1f} s ({total / mpix * 100:.1f} s per 100 MPix), {result['fields']} "
            f"fields, peak RSS {result['peak_rss_mb']:.0f} MB"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


SEAM_SETTINGS = ((256, 32), (1024, 64))


def seam_check(size: int = 2048, model: str = "default") -> str:
    """The same mosaic segmented with small and large tiles: field counts, union IoU of the
    two layers, overlaps between fields and validity (the result must not depend on tiles)."""
    import shapely

    from farmseg.jobs import drain
    from farmseg.pipeline.segment import SegmentOptions, TileOptions, segment_job

    work = Path(tempfile.mkdtemp(prefix="farmseg-bench-"))
    try:
        raster = build_mosaic(work / f"mosaic_{size}.tif", size)
        layers = {}
        for tile, overlap in SEAM_SETTINGS:
            result = drain(segment_job(SegmentOptions(
                input=raster, model=model, tiles=TileOptions(tile, overlap), work_dir=work)))
            layers[(tile, overlap)] = result.layer.geoms
        unions = {key: shapely.union_all(geoms) for key, geoms in layers.items()}
        lines = [f"raster: {size} x {size} px, mosaic of the sample scene"]
        for (tile, overlap), geoms in layers.items():
            overlap_area = unions[(tile, overlap)].area - shapely.area(geoms).sum()
            lines.append(f"  --tile {tile} --overlap {overlap}: {len(geoms)} fields, "
                         f"all valid: {bool(shapely.is_valid(geoms).all())}, "
                         f"overlapping area: {abs(overlap_area):.1f} m2")
        small, large = (unions[key] for key in SEAM_SETTINGS)
        counts = [len(layers[key]) for key in SEAM_SETTINGS]
        lines.append(f"field counts differ by {abs(counts[0] - counts[1])} "
                     f"({abs(counts[0] - counts[1]) / max(counts) * 100:.1f} %), union IoU of the "
                     f"two layers: {small.intersection(large).area / small.union(large).area:.4f}")
        return "\n".join(lines)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _child(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def record_speed(model: str, mpix_per_s: float, engine: str, size: int) -> Path:
    """Write the measured end-to-end speed into the bundle's farmseg.json (`speed`), which
    `farmseg models` and the GUI's model box show."""
    bundle = load_bundle(model)
    meta = dict(bundle.meta)
    meta["speed"] = {"mpix_per_s": round(mpix_per_s, 2), "cpu": describe_cpu(),
                     "threads": cpu_threads(), "engine": engine,
                     "measured": f"farmseg bench --size {size} --record, end to end "
                                 "(read, infer, vectorize, write) at the model's pixel size"}
    write_meta(bundle.path, meta)
    return bundle.path


def bench(size: int = 8192, model: str = "default", engine: str = "auto",
          tile: int | None = None, baseline: bool = True, precision: str = "auto",
          record: bool = False) -> str:
    """Run the benchmark and return its report; `record` writes the speed into the bundle."""
    work = Path(tempfile.mkdtemp(prefix="farmseg-bench-"))
    try:
        pixel = load_bundle(model).pixel_size_m
        raster = build_mosaic(work / f"mosaic_{size}.tif", size, pixel_size_m=pixel)
        mpix = size * size / 1e6
        ours = _child(run_farmseg, str(raster), model, engine, precision, tile)
        lines = [f"CPU: {describe_cpu()}, {cpu_threads()} threads",
                 f"raster: {size} x {size} px ({mpix:.1f} MPix) of {pixel or 1:g} m, mosaic "
                 "of the sample scene",
                 f"farmseg ({ours['engine']}): {ours['fields']} fields, {ours['tiles']} tiles"]
        for stage, seconds in ours["seconds"].items():
            lines.append(f"  {stage:<10} {seconds:8.1f} s  {mpix / max(seconds, 1e-9):7.2f} MPix/s")
        lines.append(f"  end to end {ours['total']:8.1f} s  {mpix / ours['total']:7.2f} MPix/s, "
                     f"{ours['tiles'] / ours['seconds']['infer']:.2f} tiles/s, "
                     f"peak RSS {ours['peak_rss_mb']:.0f} MB")
        lines.append(f"  vectorize+clean per 100 MPix: "
                     f"{ours['seconds']['vectorize'] / mpix * 100:.1f} s")
        if baseline:
            base = _child(run_baseline, str(raster), model)
            lines.append(f"baseline (torch fp32, 512 px, batch 1, argmax, no polygons): "
                         f"{base['total']:.1f} s  {mpix / base['total']:.2f} MPix/s, "
                         f"peak RSS {base['peak_rss_mb']:.0f} MB")
            lines.append(f"speed-up, end to end vs baseline: {base['total'] / ours['total']:.2f}x")
        if record:
            path = record_speed(model, mpix / ours["total"], ours["engine"], size)
            lines.append(f"recorded in {path / META_NAME}")
        return "\n".join(lines)
    finally:
        shutil.rmtree(work, ignore_errors=True)


