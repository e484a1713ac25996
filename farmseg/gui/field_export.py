"""File > Export fields: a field layer written in the background to a file the user picks."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtWidgets import QStatusBar, QWidget

from farmseg.fields.export import write_fields
from farmseg.gui.dialogs import export_target, show_error
from farmseg.gui.layers import Layer
from farmseg.gui.settings import Prefs
from farmseg.gui.tasks import run_in_background

LOG = logging.getLogger("farmseg.gui")


def export_fields(parent: QWidget, layer: Layer, prefs: Prefs, status: QStatusBar) -> None:
    """Ask where to save the fields of `layer`, then write them off the GUI thread; the
    outcome is shown in `status` or in a message box."""
    fields = layer.fields
    assert fields is not None, layer.kind
    count = len(fields)
    target = export_target(parent, Path(prefs.last_folder) / f"{layer.source.stem}_fields.gpkg")
    if target is None:
        return

    def done(path: Path) -> None:
        prefs.last_folder = str(path.parent)
        LOG.info("exported %d fields to %s", count, path)
        status.showMessage(f"Exported {count} fields to {path}", 10000)

    status.showMessage(f"Exporting {count} fields to {target}…")
    run_in_background(lambda: write_fields(fields, target), done,
                      lambda error: show_error(parent, f"Export failed: {error[0]}", error[1]))
