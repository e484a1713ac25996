"""`farmseg gui [FILE ...] [--segment]` and bare `farmseg`: start the desktop application."""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from farmseg import __version__
from farmseg.gui.dialogs import show_error
from farmseg.gui.logs import exception_hook, log_file_path, setup_logging
from farmseg.gui.main_window import MainWindow


def main(files: list[str], segment: bool = False) -> int:
    """Open the main window with `files` as layers; segment the first one if asked.
    Returns the exit code."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("farmseg")
    app.setApplicationName("farmseg")
    app.setApplicationVersion(__version__)
    setup_logging(log_file_path())
    window = MainWindow()
    with exception_hook(lambda reason, details: show_error(window, f"Unexpected error: {reason}",
                                                           details)):
        window.show()
        layers = [window.open_raster(name) for name in files]
        if segment and layers and layers[0] is not None:
            window.layer_panel.set_current(layers[0])
            QTimer.singleShot(0, window.segment)
        return app.exec()
