"""Shared fixtures: small real crops of the bundled sample scene and of ../shared data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

# the GUI tests' fixtures (QSettings kept out of $HOME, a shown MainWindow)
pytest_plugins = ["tests.gui_support"]

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "resources" / "sample" / "sample.tif"
SAMPLE_FIELDS = ROOT / "resources" / "sample" / "sample_fields_reference.geojson"
SHARED = Path(os.environ.get("FARMSEG_SHARED_DATA", ROOT.parent / "shared" / "data" / "agoro-naip"
                             / "train"))


def write_crop(source: Path, target: Path, x: int, y: int, width: int, height: int,
               **profile_updates) -> Path:
    """Copy a window of `source` to a new GeoTIFF at `target`."""
    with rasterio.open(source) as src:
        window = Window(x, y, width, height)
        data = src.read(window=window)
        profile = src.profile
        profile.update(width=width, height=height, transform=src.window_transform(window),
                       tiled=False, compress="deflate")
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        profile.update(profile_updates)
        target.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(target, "w", **profile) as dst:
            dst.write(data.astype(profile["dtype"]))
    return target


@pytest.fixture
def sample_crop(tmp_path: Path) -> Path:
    """A 384 x 384 px real crop of the sample scene (several touching fields)."""
    return write_crop(SAMPLE, tmp_path / "crop.tif", 512, 576, 384, 384)


@pytest.fixture
def sample_network_tile(sample_crop: Path):
    """The default model's input for the crop's first 256 px tile, as inference makes it."""
    from farmseg.geoio.raster import RasterSource
    from farmseg.models.bundle import load_bundle
    from farmseg.pipeline.inference import _Prepared

    bundle = load_bundle("default")
    with RasterSource(sample_crop) as src:
        prepared = _Prepared(src, [1, 2, 3], bundle.scaling, bundle, 256, 1.0)
        tiles, _ = prepared.row(0, [0])
    return prepared.network_input(tiles[0])


@pytest.fixture
def labeled_dir(tmp_path: Path) -> Path:
    """A tiny training set: 3 real 160 x 192 crops with their 3-class masks."""
    names = sorted(p.stem for p in (SHARED / "images").glob("*.tif"))[:3]
    assert names, f"no training data under {SHARED}"
    for name in names:
        for sub in ("images", "masks"):
            write_crop(SHARED / sub / f"{name}.tif", tmp_path / "data" / sub / f"{name}.tif",
                       200, 300, 192, 160)
    return tmp_path / "data"


@pytest.fixture(autouse=True)
def _user_model_dir(tmp_path_factory, monkeypatch):
    """Keep tests away from the real user model folder."""
    monkeypatch.setenv("FARMSEG_MODEL_DIR", str(tmp_path_factory.mktemp("user_models")))


def read_raster(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()
