"""Score a model on labeled images it never trained on, and tune its post-processing.

Used by `farmseg validate` (figures in the README and in the bundle's metrics).
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import rasterio
from rasterio import Affine

from farmseg.errors import InputError
from farmseg.fields.clean import CleanSettings, clean_fields
from farmseg.fields.vectorize import VectorizeSettings, vectorize_job
from farmseg.geoio.raster import (
    RasterSource,
    close_pixel_sizes,
    resampled_shape,
    resize_image,
    resize_nearest,
)
from farmseg.jobs import Job, Progress, drain
from farmseg.models.bundle import ModelBundle, write_meta
from farmseg.models.engines import make_predictor
from farmseg.pipeline.inference import TileSettings, infer_job
from farmseg.scoring.evaluate import Score, rasterize_instances, score_instances

SEED_GRID = (0.5, 0.6, 0.7, 0.8)
BOUNDARY_GRID = (0.1, 0.15, 0.2, 0.3, 0.4)
FIELD_GRID = (0.4, 0.5, 0.6)


def bundle_vectorize_settings(bundle: ModelBundle, image: Path,
                              min_area_ha: float) -> VectorizeSettings:
    """The settings `segment` would use for this image with the bundle's thresholds."""
    from farmseg.pipeline.segment import VectorizeOptions

    with RasterSource(image) as src:
        pixel_m = src.grid.pixel_size_m() or 1.0
    return VectorizeOptions().settings(bundle, min_area_ha, pixel_m ** 2)


def validation_pixel_size(bundle: ModelBundle) -> float | None:
    """The pixel size the bundle is validated at: the one it was trained at when training
    resampled the images to it (`farmseg train --pixel-size`), else None (the images' own)."""
    config = bundle.meta.get("training", {}).get("config", {})
    value = config.get("pixel_size") if isinstance(config, dict) else None
    return float(value) if value else None


def resampled_pair(image: Path, ref: Path, pixel_size: float, work: Path
                   ) -> tuple[Path, Path]:
    """Copies of an image and its instance raster in `work` on a grid of `pixel_size` metres
    (image averaged over each new pixel, instances by nearest neighbour), as the trainer
    resamples its validation images; unchanged when already within 10 % of it."""
    with RasterSource(image) as source:
        own = source.grid.pixel_size_m() or 1.0
    if close_pixel_sizes(pixel_size, own):
        return image, ref
    with rasterio.open(image) as src:
        pixels, profile = src.read(), src.profile
    with rasterio.open(ref) as src:
        instances, ref_profile = src.read(), src.profile
    h, w = pixels.shape[1:]
    nh, nw = resampled_shape(h, w, pixel_size / own)
    transform = profile["transform"] * Affine.scale(w / nw, h / nh)
    out = []
    for path, array, prof in ((image, resize_image(pixels, nh, nw), profile),
                              (ref, resize_nearest(instances, nh, nw), ref_profile)):
        target = work / f"{path.parent.name}_{path.name}"
        prof = {key: value for key, value in prof.items()
                if key not in ("blockxsize", "blockysize", "tiled")}  # a small striped copy
        prof.update(width=nw, height=nh, transform=transform)
        with rasterio.open(target, "w", **prof) as dst:
            dst.write(array)
        out.append(target)
    return out[0], out[1]


def validation_pairs(bundle: ModelBundle, data_dir: Path) -> list[tuple[Path, Path]]:
    """(image, instance raster) for the bundle's validation images found in `data_dir`."""
    names = bundle.validation_images
    pairs = []
    for name in dict.fromkeys(names):
        image = Path(data_dir) / "images" / f"{name}.tif"
        ref = Path(data_dir) / "instances" / f"{name}.tif"
        if image.is_file() and ref.is_file():
            pairs.append((image, ref))
    if not pairs:
        raise InputError(data_dir, f"holds none of model '{bundle.name}''s validation images "
                         "(images/<name>.tif with instances/<name>.tif)")
    return pairs


def predict_all(bundle: ModelBundle, pairs: list[tuple[Path, Path]], work: Path,
                engine: str = "auto", precision: str = "fp32") -> Job[list[Path]]:
    """Probability rasters for each image (in `work`)."""
    predictor = make_predictor(bundle, engine, precision=precision)
    out = []
    for index, (image, _) in enumerate(pairs):
        with RasterSource(image) as src:
            job = infer_job(src, bundle, predictor, TileSettings(bundle.tile, bundle.overlap),
                            work / f"prob_{index}_{precision}.tif")
            for _ in job:
                pass
            out.append(work / f"prob_{index}_{precision}.tif")
        yield Progress("predict", index + 1, len(pairs), image.name)
    return out


def score_probabilities(probs: list[Path], pairs: list[tuple[Path, Path]],
                        vectorize: VectorizeSettings, clean: CleanSettings) -> Score:
    """Vectorize each probability raster and score it against its reference fields."""
    total = Score()
    for prob, (_, ref_path) in zip(probs, pairs):
        raw = drain(vectorize_job(prob, vectorize))
        layer = clean_fields(raw, clean)
        with rasterio.open(ref_path) as ref_src:
            ref = ref_src.read(1)
        total = total + score_instances(rasterize_instances(layer.geoms, raw.grid), ref)
    return total


def validate_job(bundle: ModelBundle, data_dir: Path, tune: bool = False,
                 min_area_ha: float = 0.1, pixel_size: float | None = None) -> Job[dict]:
    """Score the model (threshold vs watershed); with `tune`, grid-search the thresholds
    on these validation images and store the best in the bundle. The images are scored at
    `pixel_size` metres (default: validation_pixel_size) when given, else on their own grid."""
    pairs = validation_pairs(bundle, data_dir)
    clean = CleanSettings(min_area_ha=min_area_ha)
    pixel_size = pixel_size or validation_pixel_size(bundle)
    with tempfile.TemporaryDirectory(prefix="farmseg-validate-") as tmp:
        work = Path(tmp)
        if pixel_size:
            pairs = [resampled_pair(image, ref, pixel_size, work) for image, ref in pairs]
        probs = yield from predict_all(bundle, pairs, work)
        base = bundle_vectorize_settings(bundle, pairs[0][0], min_area_ha)
        results: dict[str, Any] = {"images": [p[0].stem.removeprefix("images_")
                                              for p in pairs], "pixel_size": pixel_size}
        for method in ("threshold", "watershed", "seeded"):
            results[method] = score_probabilities(probs, pairs, replace(base, method=method),
                                                  clean)
        if tune:
            grid = list(itertools.product(FIELD_GRID, SEED_GRID, BOUNDARY_GRID))
            best = (results["seeded"].f1, replace(base, method="seeded"))
            for index, (f, s, b) in enumerate(grid):
                settings = replace(base, field_threshold=f, seed_threshold=s,
                                   boundary_threshold=b)
                score = score_probabilities(probs, pairs, settings, clean)
                if score.f1 > best[0]:
                    best = (score.f1, settings)
                yield Progress("tune", index + 1, len(grid), f"best F1 {best[0]:.3f}")
            chosen = best[1]
            results["tuned"] = score_probabilities(probs, pairs, chosen, clean)
            results["settings"] = chosen
        return results


def record_metrics(bundle: ModelBundle, results: dict) -> None:
    """Write validation figures (and tuned thresholds) into the bundle's farmseg.json."""
    meta = dict(bundle.meta)
    final = results.get("tuned", results["seeded"])
    if "settings" in results:
        s = results["settings"]
        meta["postprocess"] = {"field_threshold": s.field_threshold,
                               "seed_threshold": s.seed_threshold,
                               "boundary_threshold": s.boundary_threshold}
    metrics = dict(meta.get("metrics", {}))
    metrics.update({
        "validation_images": results["images"],
        "val_pixel_iou": round(final.pixel_iou, 4),
        "val_field_f1": round(final.f1, 4),
        "val_field_f1_threshold_only": round(results["threshold"].f1, 4),
        "val_field_f1_watershed": round(results["watershed"].f1, 4),
        "val_pixel_iou_threshold_only": round(results["threshold"].pixel_iou, 4),
        "val_field_f1_untuned": round(results["seeded"].f1, 4),  # the bundle's thresholds
        "scoring": "polygons >= 0.1 ha rasterized on the image grid; match at IoU >= 0.5",
    })
    metrics.pop("validation_pixel_size_m", None)
    if results.get("pixel_size"):
        metrics["validation_pixel_size_m"] = results["pixel_size"]
    meta["metrics"] = metrics
    write_meta(bundle.path, meta)
