"""Field layers and their files: Save (atomic, GeoPackage by default), the Save / Discard /
Cancel question before unsaved edits would be lost, opening saved fields for editing and
restoring edits left by a crash."""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox, QStatusBar, QWidget

from farmseg.editing.layer import EditableLayer
from farmseg.editing.store import load_layer
from farmseg.errors import FarmsegError
from farmseg.fields.export import VECTOR_FILTER
from farmseg.gui.dialogs import POLYGON_FILTER, ask, save_target, show_error
from farmseg.gui.edit_session import EditSession
from farmseg.gui.field_drawing import session_layer
from farmseg.gui.field_editor import FieldEditor
from farmseg.gui.layers import Layer
from farmseg.gui.map_layers import MapLayers
from farmseg.gui.recovery import RecoveryWriter, left_over
from farmseg.gui.settings import Prefs
from farmseg.gui.tasks import run_in_background

LOG = logging.getLogger("farmseg.gui")
Buttons = QMessageBox.StandardButton


class FieldFiles:
    """Saving, opening and recovering the field layers of `editor` on `layers`;
    `open_image(path)` opens a raster (restoring edits of an image not open)."""

    def __init__(self, parent: QWidget, editor: FieldEditor, layers: MapLayers, prefs: Prefs,
                 status: QStatusBar, open_image: Callable[[Path], Layer | None]) -> None:
        self._parent, self._editor, self._layers = parent, editor, layers
        self._prefs, self._status, self._open_image = prefs, status, open_image
        self.recovery = RecoveryWriter(editor.sessions, parent)

    # ----------------------------------------------------------------- saving

    def save_current(self) -> bool:
        session = self._editor.session()
        return session is not None and self.save(session)

    def save(self, session: EditSession) -> bool:
        """Write the session's layer to its file (asked for the first time); say if not."""
        target = session.path or save_target(
            self._parent, "Save fields",
            Path(self._prefs.last_folder) / f"{session.image.stem}_fields.gpkg", VECTOR_FILTER)
        if target is None:
            return False
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            written = session.save(target)
        except (FarmsegError, OSError) as exc:
            show_error(self._parent, f"Saving failed: {exc}")
            return False
        finally:
            QApplication.restoreOverrideCursor()
        self.recovery.forget(session)
        self._prefs.last_folder = str(written.parent)
        LOG.info("saved %d fields to %s", len(session.layer), written)
        self._status.showMessage(f"Saved {len(session.layer)} fields to {written}", 10000)
        return True

    def confirm_unsaved(self, title: str) -> bool:
        """Before unsaved edits would be lost: Save them, Discard them, or Cancel (False)."""
        dirty = [session for session in self._editor.sessions() if session.dirty]
        if not dirty:
            return True
        names = ", ".join(session.image.name for session in dirty)
        answer = QMessageBox.question(
            self._parent, title, f"The fields of {names} have unsaved edits. Save them?",
            Buttons.Save | Buttons.Discard | Buttons.Cancel, Buttons.Save)
        if answer == Buttons.Save:
            return all(self.save(session) for session in dirty)
        if answer == Buttons.Discard:
            for session in dirty:
                session.discard()
                self.recovery.forget(session)
            return True
        return False

    def close(self, keep_unsaved: bool = False) -> None:
        """The application closes: no recovery files are left, unless `keep_unsaved`
        (closed by a signal without asking) and there are unsaved edits."""
        self.recovery.close(keep_unsaved)

    # ----------------------------------------------------------------- opening

    def open_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self._parent, "Open fields for editing",
                                              self._prefs.last_folder, POLYGON_FILTER)
        if name:
            self.open_fields(Path(name))

    def open_fields(self, path: Path, on_open: Callable[[Layer], object] = lambda _: None
                    ) -> None:
        """Add the fields of a vector file as an editable layer of the current image (read
        in the background); Save writes back to it when it is a GeoPackage."""
        self._status.showMessage(f"Reading {path.name}…")
        target = path if path.suffix.lower() == ".gpkg" else None

        def done(layer: EditableLayer) -> None:
            on_open(self.add(layer, path, target, unsaved=False))

        run_in_background(lambda: load_layer(path), done,
                          lambda error: show_error(self._parent, error[0], error[1]))

    def add(self, fields: EditableLayer, source: Path, target: Path | None, unsaved: bool,
            image_path: Path | None = None) -> Layer:
        """Put an editable layer on the map, as fields of `image_path` (default: of the
        current image, else of `source`)."""
        image = self._layers.current_image()
        session = EditSession(fields, image_path or (image.source if image else source),
                              target, self._probabilities(image))
        session.reset(fields, unsaved)
        pixel = image.pixel_size if image else 1.0
        layer = session_layer(session, source.name, pixel, self._layers.y_sign(), source)
        self._layers.add(layer)
        if len(self._layers.all()) == 1:
            self._layers.zoom_to_current()
        return layer

    def _probabilities(self, image: Layer | None) -> Path | None:
        """The model's probabilities of `image`, if a segmentation left them on the map."""
        return next((layer.grid for layer in self._layers.of_kind("fields")
                     if image is not None and layer.source == image.source and layer.grid),
                    None)

    # ----------------------------------------------------------------- recovery

    def offer_recovery(self) -> None:
        """Offer to restore the edits an application left when it did not close."""
        found = left_over(self.recovery.folder, self.recovery.owner)
        if not found:
            return
        when = ", ".join(f"{r.image.name} ({_dt.datetime.fromtimestamp(r.saved_at):%H:%M})"
                         for r in found)
        restore = ask(self._parent, "Restore unsaved edits",
                      f"farmseg did not close normally. Restore the unsaved edits of {when}?")
        for recovered in found:
            if restore:
                self._restore(recovered.load(), recovered.image, recovered.target)
            recovered.remove()

    def _restore(self, fields: EditableLayer, image: Path, target: Path | None) -> None:
        opened = [layer for layer in self._layers.of_kind("image") if layer.source == image]
        if not opened and image.is_file():
            self._open_image(image)
        self.add(fields, target or image, target, True, image)
        LOG.info("restored unsaved edits of %s", image)
