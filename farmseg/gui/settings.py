"""Settings kept between runs (QSettings, organisation and application "farmseg")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings
from PySide6.QtWidgets import QMainWindow

from farmseg.gui.panels import RunPanel

RECENT_MAX = 10


class _Key:
    """A typed QSettings entry, read and written as an attribute of Prefs."""

    def __init__(self, key: str, default: Any, kind: type) -> None:
        self.key, self.default, self.kind = key, default, kind

    def __get__(self, prefs: Prefs, owner: type) -> Any:
        value = prefs.store.value(self.key, self.default)
        try:
            return self.kind(value) if value is not None else self.default
        except (TypeError, ValueError):
            return self.default

    def __set__(self, prefs: Prefs, value: Any) -> None:
        prefs.store.setValue(self.key, value)


class Prefs:
    """Last folder, window layout, model, device, tiling and recent files."""

    last_folder = _Key("lastFolder", str(Path.home()), str)
    geometry = _Key("window/geometry", QByteArray(), QByteArray)
    state = _Key("window/state", QByteArray(), QByteArray)
    model = _Key("run/model", "default", str)
    device = _Key("run/device", "auto", str)
    tile = _Key("run/tile", 0, int)  # 0: the model's own
    overlap = _Key("run/overlap", -1, int)  # -1: the model's own

    def __init__(self) -> None:
        self.store = QSettings("farmseg", "farmseg")

    @property
    def recent_files(self) -> list[str]:
        value = self.store.value("recentFiles", [])
        if isinstance(value, str):  # a list of one, as some formats store it
            return [value]
        return [str(item) for item in value] if isinstance(value, (list, tuple)) else []

    def add_recent(self, path: Path) -> None:
        text = str(Path(path).resolve())
        files = [text] + [f for f in self.recent_files if f != text]
        self.store.setValue("recentFiles", files[:RECENT_MAX])

    def clear_recent(self) -> None:
        self.store.setValue("recentFiles", [])


def restore_window(prefs: Prefs, window: QMainWindow, run: RunPanel) -> None:
    """The window's layout and the run panel's choices as they were last saved."""
    if not prefs.geometry.isEmpty():
        window.restoreGeometry(prefs.geometry)
    if not prefs.state.isEmpty():
        window.restoreState(prefs.state)
    run.reload_models(prefs.model)
    run.select_device(prefs.device)
    if prefs.tile > 0:
        run.tile.setValue(prefs.tile)
    if prefs.overlap >= 0:
        run.overlap.setValue(prefs.overlap)


def save_window(prefs: Prefs, window: QMainWindow, run: RunPanel) -> None:
    """Keep the window's layout and the run panel's choices for the next start."""
    settings = run.settings()
    prefs.geometry = window.saveGeometry()
    prefs.state = window.saveState()
    prefs.model = settings.model
    prefs.device = settings.device
    prefs.tile = settings.tile
    prefs.overlap = settings.overlap
    prefs.store.sync()
