"""Fixtures and helpers shared by the GUI tests (registered by tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from PySide6.QtCore import QSettings
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMessageBox

from farmseg.gui import MainWindow
from tests.conftest import SAMPLE

JOB_TIMEOUT_MS = 90_000


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """QSettings and the user data folder (log file) live in tmp_path, never in $HOME."""
    folder = tmp_path / "settings"
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        QSettings.setPath(fmt, QSettings.Scope.UserScope, str(folder))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return folder


def discard_edits(win: MainWindow) -> None:
    """Drop unsaved edits, so that closing does not ask whether to save them."""
    for session in win.editor.sessions():
        session.discard()


@pytest.fixture
def window(qtbot, tmp_path: Path):
    win = MainWindow(work_dir=tmp_path / "work")
    qtbot.addWidget(win, before_close_func=discard_edits)
    win.resize(1000, 700)
    win.show()
    yield win
    if win.is_running():
        with qtbot.waitSignal(win.jobEnded, timeout=JOB_TIMEOUT_MS):
            win.cancel()


def action(win: MainWindow, name: str) -> QAction:
    found = win.findChild(QAction, name)
    assert found is not None, name
    return found


def layers_of(win: MainWindow, kind: str) -> list:
    return [layer for layer in win.layers() if layer.kind == kind]


def error_box(win: MainWindow) -> QMessageBox:
    boxes = [box for box in win.findChildren(QMessageBox, "errorBox") if box.isVisible()]
    assert boxes, "no error message box"
    return boxes[-1]


def write_like_sample(path: Path, data: np.ndarray, **updates) -> Path:
    """`data` (bands, rows, cols) as a GeoTIFF placed at the sample scene's corner."""
    with rasterio.open(SAMPLE) as src:
        profile = src.profile
    profile.update(count=data.shape[0], height=data.shape[1], width=data.shape[2],
                   dtype=str(data.dtype), tiled=False, **updates)
    profile.pop("blockxsize", None)
    profile.pop("blockysize", None)
    with rasterio.open(path, "w", **profile) as out:
        out.write(data)
    return path


def sample_pixels(size: int) -> np.ndarray:
    with rasterio.open(SAMPLE) as src:
        return src.read(window=((0, size), (0, size)))


def segment_and_wait(qtbot, win: MainWindow) -> None:
    with qtbot.waitSignal(win.jobEnded, timeout=JOB_TIMEOUT_MS):
        action(win, "actionSegment").trigger()
    qtbot.waitUntil(lambda: all(layer.item.complete for layer in layers_of(win, "fields")))
