"""Crash recovery: unsaved edits are written in the background at least once a minute;
the next start offers to restore those of an application that did not close.

Each running application holds a lock file in the recovery folder; its files are named
after it. Files whose owner's lock is free (the process is gone) are left over from a
crash. Writes and removals run in order on one background thread.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QLockFile, QObject, QStandardPaths, QTimer

from farmseg.editing.layer import EditableLayer
from farmseg.editing.store import load_layer, save_layer
from farmseg.gui.edit_session import EditSession

LOG = logging.getLogger("farmseg.gui")
INTERVAL_ENV = "FARMSEG_RECOVERY_SECONDS"  # how often unsaved edits are written
INTERVAL_S = 60.0


def recovery_dir() -> Path:
    """farmseg/recovery in the user's data folder (the same for any application name)."""
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation)
    folder = Path(base) / "farmseg" / "recovery"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _lock(folder: Path, owner: str) -> QLockFile:
    lock = QLockFile(str(folder / f"{owner}.lock"))
    lock.setStaleLockTime(0)  # stale only when its process is gone
    return lock


@dataclass
class Recovered:
    """Edits left by an application that did not close: the layer file and what it was."""

    fields: Path  # the GeoPackage written
    image: Path
    target: Path | None  # where the user saved the fields before, if anywhere
    saved_at: float

    def load(self) -> EditableLayer:
        return load_layer(self.fields)

    def remove(self) -> None:
        for path in (self.fields, self.fields.with_suffix(".json")):
            path.unlink(missing_ok=True)


def left_over(folder: Path, owner: str) -> list[Recovered]:
    """Recovery files of applications that are gone (not of `owner`, this one)."""
    found = []
    for info in sorted(folder.glob("*.json")):
        other = info.stem.split("-")[0]
        if other == owner or not _lock(folder, other).tryLock(0):
            continue  # ours, or its application still runs
        meta = json.loads(info.read_text())
        found.append(Recovered(info.with_suffix(".gpkg"), Path(meta["image"]),
                               Path(meta["target"]) if meta["target"] else None,
                               float(meta["time"])))
    return found


def _write(layer: EditableLayer, meta: dict[str, object], base: Path) -> None:
    """The layer, then its description (what marks the pair complete)."""
    try:
        save_layer(layer, base.with_suffix(".gpkg"))
        tmp = base.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta))
        tmp.replace(base.with_suffix(".json"))
    except Exception:  # a full disk must not take the application down
        LOG.exception("cannot write the recovery file %s", base)


class RecoveryWriter(QObject):
    """Writes each dirty session of `sessions()` that changed since its last write, every
    `interval_s` seconds (FARMSEG_RECOVERY_SECONDS overrides the default)."""

    def __init__(self, sessions: Callable[[], list[EditSession]],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._sessions = sessions
        self.folder = recovery_dir()
        self.owner = uuid.uuid4().hex
        self._owner_lock = _lock(self.folder, self.owner)
        self._owner_lock.lock()
        self._written: dict[str, int] = {}
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="farmseg-recovery")
        self._timer = QTimer(self)
        self._timer.setInterval(round(1000 * float(os.environ.get(INTERVAL_ENV, INTERVAL_S))))
        self._timer.timeout.connect(self.write_now)
        self._timer.start()

    def _base(self, session: EditSession) -> Path:
        return self.folder / f"{self.owner}-{session.key}"

    def write_now(self) -> None:
        """Queue a write of every dirty session that changed since it was last written."""
        for session in self._sessions():
            if session.dirty and self._written.get(session.key) != session.revision:
                self._written[session.key] = session.revision
                meta = {"image": str(session.image), "time": time.time(),
                        "target": str(session.path) if session.path else None}
                self._thread.submit(_write, session.layer, meta, self._base(session))

    def forget(self, session: EditSession) -> None:
        """Remove the session's recovery file (saved or discarded)."""
        self._written.pop(session.key, None)
        base = self._base(session)
        self._thread.submit(Recovered(base.with_suffix(".gpkg"), Path(), None, 0.0).remove)

    def close(self, keep: bool = False) -> None:
        """Stop writing and free the lock; remove this application's files unless `keep`
        (unsaved edits are then written first, for the next start to offer)."""
        self._timer.stop()
        if keep:
            self.write_now()
        self._thread.shutdown(wait=True)
        for path in [] if keep else self.folder.glob(f"{self.owner}-*"):
            path.unlink(missing_ok=True)
        self._owner_lock.unlock()
