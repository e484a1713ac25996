"""Bad input gets one line naming the file and the problem, exit code 2, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from farmseg.cli import main
from tests.conftest import ROOT


def _error(capsys, *args) -> str:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err
    line = err.splitlines()[-1]
    assert line.startswith("farmseg: error: ")
    return line


def test_missing_file(capsys, tmp_path):
    line = _error(capsys, "segment", tmp_path / "nope.tif", "-o", tmp_path / "o.gpkg")
    assert "nope.tif: file not found" in line


def test_non_raster_file(capsys, tmp_path):
    bad = tmp_path / "notes.tif"
    bad.write_text("these are my field notes, not an image\n")
    line = _error(capsys, "segment", bad, "-o", tmp_path / "o.gpkg")
    assert "notes.tif" in line and ("not a" in line)


def test_directory_as_input(capsys, tmp_path):
    line = _error(capsys, "segment", tmp_path, "-o", tmp_path / "o.gpkg")
    assert "folder holds no GeoTIFF" in line  # a folder is a batch of its *.tif scenes


def test_existing_target_is_kept(capsys, tmp_path, sample_crop):
    target = tmp_path / "o.gpkg"
    target.write_bytes(b"precious")
    line = _error(capsys, "segment", sample_crop, "-o", target)
    assert "already exists" in line and "--overwrite" in line
    assert target.read_bytes() == b"precious"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_output_folder(capsys, tmp_path, sample_crop):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        line = _error(capsys, "segment", sample_crop, "-o", folder / "o.gpkg")
        assert "not writable" in line
    finally:
        folder.chmod(0o755)


def test_read_only_output_folder_as_root(capsys, tmp_path, sample_crop, monkeypatch):
    """Root can write anywhere, so simulate the access check failing."""
    folder = tmp_path / "ro"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(folder)
                        else real_access(p, mode))
    line = _error(capsys, "segment", sample_crop, "-o", folder / "o.gpkg")
    assert "not writable" in line
    assert list(folder.iterdir()) == []


def test_band_count_mismatch_names_the_needed_bands(capsys, tmp_path):
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    one = tmp_path / "gray.tif"
    with rasterio.open(one, "w", driver="GTiff", width=64, height=64, count=1, dtype="uint8",
                       crs="EPSG:32615", transform=from_origin(0, 0, 1, 1)) as ds:
        ds.write(np.zeros((1, 64, 64), np.uint8))
    line = _error(capsys, "segment", one, "-o", tmp_path / "o.gpkg")
    assert "has 1 band" in line and "red, green, blue" in line


def test_unknown_output_format(capsys, tmp_path, sample_crop):
    line = _error(capsys, "segment", sample_crop, "-o", tmp_path / "o.xyz")
    assert "unknown output format" in line


def test_entry_point_exit_code_and_version():
    env = dict(os.environ)
    done = subprocess.run([sys.executable, "-m", "farmseg", "--version"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("farmseg ")


def test_a_file_as_first_argument_opens_the_app(monkeypatch, tmp_path, sample_crop):
    import farmseg.cli as cli

    opened = {}
    monkeypatch.setattr(cli, "_cmd_gui", lambda args: opened.setdefault("files", args.files) and 0)
    assert main([str(sample_crop)]) == 0
    assert opened["files"] == [str(sample_crop)]
