"""The catalogue of bad input and faults: each case gets a result or a clear one-line reason,
and no file is ever lost or half-written."""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rasterio.transform import Affine, from_origin

from farmseg.cli import main
from farmseg.errors import Cancelled, FarmsegError, ModelError
from farmseg.geoio.raster import RasterSource
from farmseg.jobs import run_job
from farmseg.models.bundle import load_bundle, resolve_bundle_path
from farmseg.pipeline.segment import SegmentOptions, TileOptions, segment_job
from tests.conftest import ROOT, SAMPLE, write_crop


def _run(capsys, *args) -> tuple[int, str]:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.strip().splitlines()[-1] if err.strip() else ""


def _write(path: Path, data: np.ndarray, **profile) -> Path:
    count, h, w = data.shape
    base = {"driver": "GTiff", "width": w, "height": h, "count": count, "dtype": data.dtype.name,
            "crs": "EPSG:32615", "transform": from_origin(500000, 4400000, 1, 1)}
    base.update(profile)
    with rasterio.open(path, "w", **base) as ds:
        ds.write(data)
    return path


def _crop_data(size: int = 256) -> np.ndarray:
    with rasterio.open(SAMPLE) as src:
        return src.read(window=rasterio.windows.Window(512, 576, size, size))


# ---- rasters that cannot be read: exit 2 and one line naming the file -------------------

def test_zero_byte_file(capsys, tmp_path):
    empty = tmp_path / "empty.tif"
    empty.touch()
    assert _run(capsys, "segment", empty, "-o", tmp_path / "o.gpkg") == (
        2, f"farmseg: error: {empty}: is empty (0 bytes)")


def test_truncated_geotiff(capsys, tmp_path):
    whole = write_crop(SAMPLE, tmp_path / "whole.tif", 0, 0, 512, 512)
    cut = tmp_path / "cut.tif"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    code, line = _run(capsys, "segment", cut, "-o", tmp_path / "o.gpkg")
    assert code == 2 and str(cut) in line and ("truncated" in line or "corrupt" in line)
    assert not (tmp_path / "o.gpkg").exists()


@pytest.mark.parametrize("driver,kind", [("PNG", "PNG"), ("JPEG", "JPEG")])
def test_photo_renamed_tif(capsys, tmp_path, driver, kind):
    photo = tmp_path / "photo.tif"
    with rasterio.open(photo, "w", driver=driver, width=64, height=64, count=3,
                       dtype="uint8") as ds:
        ds.write(np.zeros((3, 64, 64), np.uint8))
    code, line = _run(capsys, "segment", photo, "-o", tmp_path / "o.gpkg")
    assert code == 2 and f"is a {kind} image renamed .tif" in line


def test_unicode_and_spaces_in_paths(tmp_path):
    folder = tmp_path / "Äcker und Wiesen 2026"
    image = write_crop(SAMPLE, folder / "Feld Süd ø.tif", 512, 576, 256, 256)
    out = folder / "Felder Süd.gpkg"
    assert main(["segment", str(image), "-o", str(out), "-q"]) == 0
    assert pyogrio.read_info(out)["features"] > 0


# ---- odd georeferencing -----------------------------------------------------------------

def test_no_crs_runs_in_pixel_units_and_refuses_geojson(capsys, tmp_path):
    image = _write(tmp_path / "nocrs.tif", _crop_data(), crs=None)
    code, line = _run(capsys, "segment", image, "-o", tmp_path / "o.geojson")
    assert code == 2 and "no CRS" in line and "--crs" in line
    assert main(["segment", str(image), "-o", str(tmp_path / "o.gpkg"), "-q"]) == 0
    assert "pixel units" in capsys.readouterr().err
    assert main(["segment", str(image), "-o", str(tmp_path / "o.geojson"), "--crs",
                 "EPSG:32615", "-q"]) == 0
    assert pyogrio.read_info(tmp_path / "o.geojson")["features"] > 0


def test_no_geotransform(tmp_path):
    image = _write(tmp_path / "nogt.tif", _crop_data(), crs=None, transform=Affine.identity())
    assert main(["segment", str(image), "-o", str(tmp_path / "o.gpkg"), "-q"]) == 0


def test_rotated_transform_keeps_true_areas(tmp_path):
    data = _crop_data()
    north = _write(tmp_path / "north.tif", data)
    angle = Affine.rotation(20)
    rotated = _write(tmp_path / "rot.tif", data,
                     transform=from_origin(500000, 4400000, 1, 1) * angle)
    areas = []
    for image in (north, rotated):
        out = image.with_suffix(".gpkg")
        assert main(["segment", str(image), "-o", str(out), "-q"]) == 0
        areas.append(pyogrio.raw.read(out, columns=["area_ha"])[3][0].sum())
    assert areas[0] > 1 and abs(areas[0] - areas[1]) / areas[0] < 0.03


# ---- band layouts -----------------------------------------------------------------------

@pytest.mark.parametrize("count", [1, 2])
def test_too_few_bands(capsys, tmp_path, count):
    image = _write(tmp_path / "few.tif", _crop_data()[:count])
    code, line = _run(capsys, "segment", image, "-o", tmp_path / "o.gpkg")
    assert code == 2 and f"has {count} band" in line and "red, green, blue" in line


def test_rgba_uses_alpha_as_mask(tmp_path):
    data = _crop_data()
    alpha = np.full((1, 256, 256), 255, np.uint8)
    alpha[:, :, :128] = 0
    image = _write(tmp_path / "rgba.tif", np.concatenate([data, alpha]),
                   photometric="RGB", alpha="YES")
    out = tmp_path / "o.gpkg"
    assert main(["segment", str(image), "-o", str(out), "-q"]) == 0
    _, _, wkb, _ = pyogrio.raw.read(out)
    import shapely

    assert shapely.bounds(shapely.from_wkb(wkb))[:, 0].min() >= 500000 + 127


def test_thirteen_band_uint16_with_band_choice(capsys, tmp_path):
    rgb = _crop_data().astype(np.uint16) * 30 + 500
    bands = np.concatenate([np.full((1, 256, 256), 900, np.uint16), rgb[::-1],
                            np.full((9, 256, 256), 2000, np.uint16)])  # B1, B2..B4, ...
    image = _write(tmp_path / "s2.tif", bands)
    assert main(["segment", str(image), "-o", str(tmp_path / "a.gpkg"), "-q"]) == 0
    guidance = capsys.readouterr().err
    assert "13 uint16 bands without descriptions" in guidance and "give --bands" in guidance
    assert main(["segment", str(image), "-o", str(tmp_path / "b.gpkg"), "--bands", "4,3,2",
                 "-q"]) == 0
    assert pyogrio.read_info(tmp_path / "b.gpkg")["features"] > 0


def test_float32_with_nan(tmp_path):
    data = _crop_data().astype(np.float32) / 255
    data[:, :40, :] = np.nan
    image = _write(tmp_path / "f.tif", data, nodata=float("nan"))
    out = tmp_path / "o.gpkg"
    assert main(["segment", str(image), "-o", str(out), "-q"]) == 0
    assert pyogrio.read_info(out)["features"] > 0


def test_sparse_bigtiff_over_4gb_info_and_windowed_read(tmp_path, capsys):
    big = tmp_path / "big.tif"
    with rasterio.open(big, "w", driver="GTiff", width=40000, height=40000, count=3,
                       dtype="uint8", crs="EPSG:32615", nodata=0, tiled=True,
                       transform=from_origin(500000, 4400000, 1, 1), BIGTIFF="YES",
                       SPARSE_OK="TRUE") as ds:
        ds.write(_crop_data(), window=rasterio.windows.Window(1000, 1000, 256, 256))
    assert big.stat().st_size < 50_000_000  # sparse on disk, 4.8 GB of pixels
    assert main(["info", str(big)]) == 0
    assert "40000 x 40000" in capsys.readouterr().out
    with RasterSource(big) as src:
        data, valid = src.read(rasterio.windows.Window(1000, 1000, 256, 256), [1, 2, 3])
        assert valid.mean() > 0.9 and data.any()
        _, empty = src.read(rasterio.windows.Window(30000, 30000, 512, 512), [1, 2, 3])
        assert not empty.any()


# ---- outputs ------------------------------------------------------------------------------

def test_target_is_a_directory(capsys, tmp_path, sample_crop):
    (tmp_path / "out.gpkg").mkdir()
    code, line = _run(capsys, "segment", sample_crop, "-o", tmp_path / "out.gpkg")
    assert code == 2 and "is a directory" in line


def test_very_long_file_name(capsys, tmp_path, sample_crop):
    code, line = _run(capsys, "segment", sample_crop, "-o", tmp_path / ("f" * 300 + ".gpkg"))
    assert code == 2 and "longer than 255" in line


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_disk_full_leaves_the_folder_as_it_was(capsys, tmp_path, sample_crop, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "fields.gpkg").write_bytes(b"yesterday's fields")
    before = _snapshot(out)

    def full(path, *a, **k):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pyogrio.raw, "write", full)
    code, line = _run(capsys, "segment", sample_crop, "-o", out / "fields.gpkg", "--overwrite")
    assert code == 2 and "No space left on device" in line
    assert _snapshot(out) == before and sorted(p.name for p in out.iterdir()) == ["fields.gpkg"]


def test_killed_during_export_keeps_the_previous_file(tmp_path, sample_crop, monkeypatch):
    out = tmp_path / "fields.shp"
    assert main(["segment", str(sample_crop), "-o", str(out), "-q"]) == 0
    before = _snapshot(tmp_path)

    def killed(path, *a, **k):
        Path(path).write_bytes(b"half a shapefile")
        raise KeyboardInterrupt

    monkeypatch.setattr(pyogrio.raw, "write", killed)
    assert main(["segment", str(sample_crop), "-o", str(out), "--overwrite", "-q"]) == 130
    assert _snapshot(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ---- models ---------------------------------------------------------------------------------

def test_missing_model_folder(capsys, tmp_path, sample_crop):
    code, line = _run(capsys, "segment", sample_crop, "-o", tmp_path / "o.gpkg", "--model",
                      tmp_path / "nothing")
    assert code == 2 and "not found" in line


def test_bundle_without_weights(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "farmseg.json").write_text(
        (resolve_bundle_path("default") / "farmseg.json").read_text())
    with pytest.raises(ModelError, match="model.safetensors is missing"):
        load_bundle(folder)


# ---- runtime ------------------------------------------------------------------------------

class _Failing:
    name = "failing"

    def __init__(self, error: BaseException, fail_above: int = 0) -> None:
        self.error, self.fail_above, self.batches = error, fail_above, []

    def suggested_batch(self, tile: int) -> int:
        return 2

    def predict(self, batch):
        self.batches.append(len(batch))
        if len(batch) > self.fail_above:
            raise self.error
        n, _, h, w = batch.shape
        return np.broadcast_to(np.float32([0.2, 0.7, 0.1])[None, :, None, None],
                               (n, 3, h, w)).copy()


def _with_predictor(monkeypatch, predictor) -> None:
    monkeypatch.setattr("farmseg.pipeline.segment.make_predictor", lambda *a, **k: predictor)


def test_out_of_memory_retries_with_smaller_batches(tmp_path, sample_crop, monkeypatch):
    predictor = _Failing(MemoryError(), fail_above=1)
    _with_predictor(monkeypatch, predictor)
    out = tmp_path / "o.gpkg"
    assert main(["segment", str(sample_crop), "-o", str(out), "--tile", "128", "--batch", "4",
                 "-q"]) == 0
    assert 4 in predictor.batches and 1 in predictor.batches


def test_out_of_memory_at_batch_one_is_a_clear_error(capsys, tmp_path, sample_crop,
                                                     monkeypatch):
    _with_predictor(monkeypatch, _Failing(RuntimeError("CUDA out of memory")))
    code, line = _run(capsys, "segment", sample_crop, "-o", tmp_path / "o.gpkg")
    assert code == 2 and "out of memory" in line and "smaller --tile" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crop.tif"]


def test_worker_exception_mid_run_leaves_nothing_behind(tmp_path, sample_crop, monkeypatch):
    _with_predictor(monkeypatch, _Failing(ValueError("engine crashed")))
    with pytest.raises(ValueError):
        run_job(segment_job(SegmentOptions(input=sample_crop, output=tmp_path / "o.gpkg")))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crop.tif"]


@pytest.mark.parametrize("stage", ["segment", "vectorize", "export"])
def test_cancel_at_each_stage_leaves_the_folder_as_it_was(tmp_path, sample_crop, stage):
    before = sorted(p.name for p in tmp_path.iterdir())
    seen = []
    with pytest.raises(Cancelled):
        run_job(segment_job(SegmentOptions(input=sample_crop, output=tmp_path / "o.gpkg",
                                           prob_out=tmp_path / "p.tif",
                                           tiles=TileOptions(tile=128))),
                lambda p: seen.append(p.stage), lambda: stage in seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


_SEGMENT_PROGRESS = re.compile(r"segment +\[[#.]+\] (\d+)/(\d+)")


def _wait_for_tiles(process: subprocess.Popen, stderr: list[bytes], fraction: float) -> None:
    """Until the child's progress bar shows at least `fraction` of the tiles segmented."""
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        shown = _SEGMENT_PROGRESS.findall(b"".join(stderr).decode(errors="replace"))
        if shown and int(shown[-1][0]) >= fraction * int(shown[-1][1]):
            return
        time.sleep(0.01)
    pytest.fail("no segment progress: " + b"".join(stderr).decode(errors="replace"))


def _interruptible() -> None:
    """In the child: Ctrl-C as in a terminal, even when the tests run in the background
    (a background job starts with SIGINT ignored, and Python then never raises
    KeyboardInterrupt)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


# The start-up moment is 0.4 s in: a signal in the first milliseconds lands while the
# interpreter itself starts (before any farmseg code can run) and is handled by Python.
@pytest.mark.parametrize("moment", ["start-up", "first tile", "half the tiles"])
def test_ctrl_c_at_any_moment_exits_130_cleanly(tmp_path, moment):
    image = write_crop(SAMPLE, tmp_path / "in" / "scene.tif", 0, 0, 1024, 1024)
    out = tmp_path / "out"
    out.mkdir()
    # 441 small tiles one at a time: seconds of segmenting, so the signal always lands mid-job
    process = subprocess.Popen([sys.executable, "-m", "farmseg", "segment", str(image), "-o",
                                str(out / "f.gpkg"), "--tile", "64", "--overlap", "16",
                                "--batch", "1"], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, preexec_fn=_interruptible)
    stderr: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr.extend(iter(process.stderr.read1, b"")))
    reader.start()
    if moment == "start-up":
        time.sleep(0.4)
    else:
        _wait_for_tiles(process, stderr, 0.5 if moment == "half the tiles" else 0.0)
    assert process.poll() is None, "the job ended before the signal"
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    reader.join()
    err = b"".join(stderr).decode(errors="replace")
    assert process.returncode == 130, err
    assert "farmseg: cancelled" in err and "Traceback" not in err
    assert list(out.iterdir()) == []


# ---- fuzz: mutated files only ever raise the error type -----------------------------------

_TIFF = None


def _tiff_bytes() -> bytes:
    global _TIFF
    if _TIFF is None:
        _TIFF = write_crop(SAMPLE, Path(os.environ.get("TMPDIR", "/tmp")) /
                           f"farmseg-fuzz-{os.getpid()}.tif", 0, 0, 64, 64).read_bytes()
    return _TIFF


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=8),
       st.integers(50, 100))
def test_mutated_geotiff_headers(tmp_path_factory, edits, keep_percent):
    data = bytearray(_tiff_bytes())
    for offset, value in edits:
        data[offset % len(data)] = value
    data = data[: max(8, len(data) * keep_percent // 100)]
    path = tmp_path_factory.mktemp("fuzz") / "m.tif"
    path.write_bytes(bytes(data))
    try:
        with RasterSource(path) as src:
            src.read(rasterio.windows.Window(0, 0, min(64, src.width), min(64, src.height)),
                     list(range(1, min(3, src.count) + 1)))
    except FarmsegError:
        pass


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(["farmseg.json", "model.safetensors"]),
       st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_bundles(tmp_path_factory, name, edits):
    import shutil

    pytest.importorskip("torch")
    from farmseg.models.nets import network_from_bundle

    folder = tmp_path_factory.mktemp("bundle") / "m"
    shutil.copytree(resolve_bundle_path("default"), folder, ignore=shutil.ignore_patterns("*.onnx"))
    target = folder / name
    data = bytearray(target.read_bytes())
    for offset, value in edits:
        data[offset % len(data)] = value
    target.write_bytes(bytes(data))
    try:
        bundle = load_bundle(folder)
        network_from_bundle(bundle.meta, bundle.weights_path)
    except FarmsegError:
        pass


def test_metadata_that_is_not_an_object(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "farmseg.json").write_text(json.dumps([1, 2, 3]))
    with pytest.raises(ModelError, match="not a JSON object"):
        load_bundle(folder)


def test_cog_is_read_through_its_overviews_for_display(tmp_path, capsys):
    from farmseg.gui.render import full_window, read_window  # Qt-free display reader

    cog = tmp_path / "scene_cog.tif"
    with rasterio.open(SAMPLE) as src:
        profile = src.profile
        profile.update(driver="COG", compress="deflate", overview_resampling="average")
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled")
        with rasterio.open(cog, "w", **profile) as dst:
            dst.write(src.read())
    assert main(["info", str(cog)]) == 0
    assert "overviews:  [2" in capsys.readouterr().out
    with RasterSource(cog) as src:
        shown, valid = read_window(src.dataset, (1, 2, 3), full_window(src.dataset), (512, 512))
    with rasterio.open(cog, overview_level=0) as level:  # the x2 overview (averaged pixels)
        assert level.width == 512
        assert np.array_equal(shown, level.read())  # plain decimation would differ
    assert valid.all()


def test_metadata_whose_input_lacks_its_bands(tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(resolve_bundle_path("default"), folder, ignore=shutil.ignore_patterns("*.onnx"))
    meta = json.loads((folder / "farmseg.json").read_text())
    meta["input"]["bandz"] = meta["input"].pop("bands")
    (folder / "farmseg.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="lacks its 'bands'"):
        load_bundle(folder)
