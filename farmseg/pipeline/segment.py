"""The main job: raster -> probabilities -> field polygons -> files."""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from farmseg.fields.clean import CleanSettings, FieldLayer, clean_fields
from farmseg.fields.export import check_format, check_layer_exportable, write_fields
from farmseg.fields.vectorize import VectorizeSettings, settings_for, vectorize_job
from farmseg.geoio.atomic import atomic_file, check_target
from farmseg.geoio.raster import Grid, RasterSource, raster_profile_for
from farmseg.jobs import Job, Progress
from farmseg.models.bundle import ModelBundle, load_bundle
from farmseg.models.engine_choice import EngineRequest
from farmseg.models.engines import Predictor, make_predictor
from farmseg.pipeline.inference import TileSettings, band_note, infer_job


@dataclass
class TileOptions:
    """How the raster is cut for the network; None: the model's tile and overlap, the
    batch the engine suggests for the device, the model's bands."""

    tile: int | None = None
    overlap: int | None = None
    batch: int | None = None
    bands: list[int] | None = None

    def settings(self, bundle: ModelBundle, predictor: Predictor) -> TileSettings:
        """The tile settings for this bundle and engine."""
        tile = self.tile or bundle.tile
        overlap = bundle.overlap if self.overlap is None else self.overlap
        return TileSettings(tile, overlap, self.batch or predictor.suggested_batch(tile))


@dataclass
class VectorizeOptions:
    """How probabilities become fields; thresholds left None come from the model."""

    method: str = "seeded"
    field_threshold: float | None = None
    seed_threshold: float | None = None
    boundary_threshold: float | None = None
    band_rows: int | None = None

    def settings(self, bundle: ModelBundle, min_area_ha: float,
                 pixel_area_m2: float = 1.0) -> VectorizeSettings:
        """Thresholds from the model metadata, overridden by these options; size filters
        from the minimum field area."""
        return settings_for(bundle.thresholds, min_area_ha, pixel_area_m2, **asdict(self))


@dataclass
class SegmentOptions:
    """What `farmseg segment` and the GUI's Segment button can set."""

    input: Path
    output: Path | None = None
    model: str = "default"
    engine: EngineRequest = field(default_factory=EngineRequest)
    tiles: TileOptions = field(default_factory=TileOptions)
    vectorize: VectorizeOptions = field(default_factory=VectorizeOptions)
    clean: CleanSettings = field(default_factory=CleanSettings)
    prob_out: Path | None = None
    classes_out: Path | None = None
    csv_out: Path | None = None
    overwrite: bool = False
    crs: str | None = None  # assign a CRS to a raster without one
    work_dir: Path | None = None  # where intermediates go (default: beside the output)


@dataclass
class SegmentResult:
    layer: FieldLayer
    bundle: ModelBundle
    engine: str
    seconds: dict[str, float] = field(default_factory=dict)
    outputs: list[Path] = field(default_factory=list)
    pixels: int = 0


def _targets(options: SegmentOptions) -> list[Path]:
    return [Path(p) for p in (options.output, options.prob_out, options.classes_out,
                              options.csv_out) if p is not None]


def warn(text: str) -> None:
    """Warnings go to stderr (the GUI shows stderr in its log)."""
    sys.stderr.write(f"farmseg: warning: {text}\n")


def segment_job(options: SegmentOptions) -> Job[SegmentResult]:
    """Segment one raster; every output appears complete or not at all."""
    if options.output is not None:
        check_format(Path(options.output))
    for target in _targets(options):
        check_target(target, options.overwrite)
    source = RasterSource(options.input, options.crs)
    work_parent = options.work_dir or (Path(options.output).parent if options.output else None)
    work = Path(tempfile.mkdtemp(prefix=".farmseg-work-", dir=work_parent))
    try:
        bundle = load_bundle(options.model, source.grid.pixel_size_m())
        if options.output is not None:
            check_layer_exportable(source.grid.crs, Path(options.output))
        if source.grid.crs is None:
            warn(f"{source.path}: no CRS; areas are in pixel units (give one with --crs)")
        note = band_note(source, bundle, options.tiles.bands)
        if note is not None:
            warn(note)
        predictor = make_predictor(bundle, **asdict(options.engine),
                                   pixels=source.width * source.height)
        settings = options.tiles.settings(bundle, predictor)
        clock = time.monotonic()
        seconds: dict[str, float] = {}
        prob_path = yield from infer_job(source, bundle, predictor, settings,
                                         work / "probabilities.tif", options.tiles.bands, warn)
        seconds["infer"] = time.monotonic() - clock
        engine_name = predictor.name
        del predictor  # the network's memory (weights, ONNX Runtime's arena) is not needed
        clock = time.monotonic()
        pixel_m = source.grid.pixel_size_m() or 1.0
        raw = yield from vectorize_job(prob_path, options.vectorize.settings(
            bundle, options.clean.min_area_ha, pixel_m ** 2))
        layer = clean_fields(raw, options.clean, source=source.path.name, model=bundle.name)
        seconds["vectorize"] = time.monotonic() - clock
        clock = time.monotonic()
        yield Progress("export", 0, 1, "writing")
        outputs = write_outputs(options, layer, prob_path)
        seconds["export"] = time.monotonic() - clock
        yield Progress("export", 1, 1, "done")
        return SegmentResult(layer, bundle, engine_name, seconds, outputs,
                             source.width * source.height)
    finally:
        source.close()
        shutil.rmtree(work, ignore_errors=True)


def write_outputs(options: SegmentOptions, layer: FieldLayer, prob_path: Path) -> list[Path]:
    """The files `options` asks for, each written atomically."""
    outputs = []
    if options.output is not None:
        outputs.append(write_fields(layer, Path(options.output)))
    if options.csv_out is not None:
        outputs.append(write_fields(layer, Path(options.csv_out)))
    if options.classes_out is not None:
        outputs.append(write_classes(prob_path, Path(options.classes_out)))
    if options.prob_out is not None:
        with atomic_file(Path(options.prob_out)) as tmp:
            shutil.copyfile(prob_path, tmp)
        outputs.append(Path(options.prob_out))
    return outputs


def write_classes(prob_path: Path, target: Path, rows: int = 1024) -> Path:
    """Argmax class raster (uint8: 0 background, 1 field, 2 boundary) from probabilities."""
    with rasterio.open(prob_path) as src, atomic_file(target) as tmp:

        grid = Grid(src.width, src.height, src.transform, src.crs)
        with rasterio.open(tmp, "w", **raster_profile_for(grid, 1, "uint8")) as out:
            for r0 in range(0, src.height, rows):
                window = Window(0, r0, src.width, min(rows, src.height - r0))
                out.write(src.read(window=window).argmax(axis=0).astype(np.uint8), 1,
                          window=window)
    return target
