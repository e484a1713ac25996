"""File > Export corrections as training data: a training folder from the corrected fields
of an image (images/NAME.tif cropped to the reviewed areas' extent, fields/NAME.gpkg with
its `reviewed` layer), written off the GUI thread by the core's `write_corrections_folder`."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QStatusBar, QWidget

from farmseg.gui.dialogs import show_error
from farmseg.gui.field_editor import Corrections
from farmseg.gui.settings import Prefs
from farmseg.gui.tasks import run_in_background
from farmseg.training.corrections import write_corrections_folder

LOG = logging.getLogger("farmseg.gui")


def export_training_data(parent: QWidget, corrections: Corrections | None, prefs: Prefs,
                         status: QStatusBar) -> None:
    """Ask for a training folder and write the corrections there in the background."""
    if corrections is None:
        status.showMessage("No fields to export: segment an image first.", 8000)
        return
    name = QFileDialog.getExistingDirectory(parent, "Export corrections as training data",
                                            prefs.last_folder)
    if not name:
        return
    folder = Path(name)

    def done(picture: Path) -> None:
        prefs.last_folder = str(folder)
        LOG.info("training data written to %s", folder)
        status.showMessage(f"Training data written to {folder} ({picture.name})", 10000)

    run_in_background(lambda: write_corrections_folder(corrections.image, corrections.layer,
                                                      folder),
                      done, lambda error: show_error(parent, f"Export failed: {error[0]}",
                                                     error[1]))
