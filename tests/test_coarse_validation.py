"""The trainer scores what `segment` makes: on a coarse Sentinel-2-like raster, the base
model's validation F1 in a fine-tuning run equals `segment` + `evaluate` on the same pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window, from_bounds

from farmseg.models.bundle import load_bundle
from farmseg.training.labels import boundary_from_instances
from tests.conftest import SHARED

PIXEL = 5  # metres: the held-out 1 m NAIP images averaged over 5 x 5 pixels
OFFSET = 1000  # stored values are reflectance + 1000, as Sentinel-2 L2A since baseline 04.00
DESCRIPTIONS = ("blue (B02)", "green (B03)", "red (B04)", "nir (B08)")


def _write(path: Path, data: np.ndarray, transform, crs, **tags: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="GTiff", width=data.shape[-1], height=data.shape[-2],
                       count=data.shape[0], dtype=data.dtype, crs=crs,
                       transform=transform) as out:
        out.write(data)
        out.update_tags(**tags)
        if data.shape[0] == len(DESCRIPTIONS):
            for band, text in enumerate(DESCRIPTIONS, 1):
                out.set_band_description(band, text)
    return path


def sentinel_like(data_dir: Path, name: str) -> None:
    """A held-out NAIP image at 5 m as a 4-band uint16 L2A stack (B02, B03, B04, B08 with
    descriptions and a declared offset), with its mask and reference instances."""
    with rasterio.open(SHARED / "images" / f"{name}.tif") as src:
        h, w = src.height // PIXEL, src.width // PIXEL
        rgb = src.read(out_shape=(3, h, w), resampling=Resampling.average).astype(np.float64)
        transform = src.transform * rasterio.Affine.scale(src.width / w, src.height / h)
        crs = src.crs
    with rasterio.open(SHARED / "instances" / f"{name}.tif") as src:
        instances = src.read(1, out_shape=(h, w), resampling=Resampling.mode).astype(np.int32)
    reflectance = rgb * 12.0 + 300.0
    nir = reflectance[1] * 1.8
    bands = np.stack([reflectance[2], reflectance[1], reflectance[0], nir]) + OFFSET
    _write(data_dir / "images" / f"{name}.tif", bands.astype(np.uint16), transform, crs,
           BOA_ADD_OFFSET=str(-OFFSET))
    _write(data_dir / "masks" / f"{name}.tif", boundary_from_instances(instances)[None],
           transform, crs)
    _write(data_dir / "instances" / f"{name}.tif", instances[None], transform, crs)


def cut_out(source: Path, bounds, target: Path) -> Path:
    """The window of `source` within `bounds`, keeping descriptions and tags."""
    with rasterio.open(source) as src:
        window = _window(src, bounds)
        return _write(target, src.read(window=window), src.window_transform(window), src.crs,
                      **src.tags())


@pytest.mark.skipif(not (SHARED / "instances").is_dir(), reason="no shared NAIP data")
def test_trainer_validation_f1_is_segment_plus_evaluate_on_a_coarse_raster(tmp_path):
    from farmseg.tools.indomain_check import score_segmented
    from farmseg.training.trainer import TrainConfig, score_base, start_run
    from farmseg.training.validating import ValidationImages

    names = [n.split("[")[0] for n in load_bundle("default").meta["training"]["validation"]]
    data = tmp_path / "data"
    for name in names[:2]:
        sentinel_like(data, name)
    run = start_run(TrainConfig(data=str(data), out=str(tmp_path / "tuned"), base="default",
                                val_fraction=0.5, tile=96))
    sample = run.val[0]
    with rasterio.open(sample.files[0]) as src:  # red, green, blue by description, offset
        stored = src.read([3, 2, 1], window=_window(src, _bounds(sample)))
    assert np.array_equal(sample.image, stored - OFFSET)

    (tmp_path / "val").mkdir()
    score_base(run, ValidationImages(run.val, tmp_path / "val"))
    assert run.state.base_score is not None
    trainer_f1 = run.state.base_score.f1

    segmented = None
    for i, val in enumerate(run.val):
        image = cut_out(Path(val.files[0]), _bounds(val), tmp_path / "seg" / f"val_{i}.tif")
        ref = data / "instances" / Path(val.files[0]).name
        reference = cut_out(ref, _bounds(val), tmp_path / "seg" / f"ref_{i}.tif")
        score = score_segmented("default", image, reference, tmp_path / "seg")
        segmented = score if segmented is None else segmented + score
    assert segmented is not None and segmented.reference == run.state.base_score.reference
    assert trainer_f1 > 0.2  # fields are found at 5 m: the comparison means something
    assert abs(trainer_f1 - segmented.f1) <= 0.02


def _window(src, bounds) -> Window:
    return from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()


def _bounds(sample) -> tuple[float, float, float, float]:
    h, w = sample.shape
    t = sample.transform
    return (t.c, t.f + t.e * h, t.c + t.a * w, t.f)


def test_a_model_trained_for_coarser_pixels_is_validated_at_them(labeled_dir, tmp_path):
    """`train --pixel-size 2` on 1 m images: training and validation samples are both on 2 m
    grids (the imagery such a model is made for), not the validation images' own 1 m."""
    from farmseg.training.trainer import TrainConfig, load_samples, split_samples

    config = TrainConfig(data=str(labeled_dir), out=str(tmp_path / "m"), pixel_size=2.0,
                         val_fraction=0.5).resolved()
    samples = load_samples(config, None)
    train, val = split_samples(config, samples, 2.0)
    assert val and all(s.pixel_size == 2.0 for s in train + val)
    own = split_samples(TrainConfig(data=str(labeled_dir), out="o", val_fraction=0.5)
                        .resolved(), samples, None)[1]
    assert [s.shape for s in val] == [(h // 2, w // 2) for h, w in (s.shape for s in own)]


def test_a_warning_about_the_validation_tiles_is_said_once_per_run(tmp_path, capsys):
    """Resampling warnings name temporary validation files the user never sees; repeated
    for every tile at every epoch they buried the training progress."""
    from farmseg.training.validating import ValidationImages

    images = ValidationImages([], tmp_path)
    for _epoch in range(3):
        for tile in range(4):
            images.warn_once(f"{tmp_path}/val_{tile}.tif: 10.00 m pixels, model 'default' was "
                             "trained on 1 m; its input is resampled")
    assert capsys.readouterr().err.splitlines() == [
        "farmseg: warning: validation tiles: 10.00 m pixels, model 'default' was trained on "
        "1 m; its input is resampled"]
