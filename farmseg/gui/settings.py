"""Settings kept between runs (QSettings, organisation and application "farmseg")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

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
        return [value] if isinstance(value, str) else list(value or [])

    def add_recent(self, path: Path) -> None:
        text = str(Path(path).resolve())
        files = [text] + [f for f in self.recent_files if f != text]
        self.store.setValue("recentFiles", files[:RECENT_MAX])

    def clear_recent(self) -> None:
        self.store.setValue("recentFiles", [])
