"""`farmseg gui [FILE ...] [--segment]` and bare `farmseg`: start the desktop application."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from farmseg import __version__
from farmseg.gui.dialogs import show_error
from farmseg.gui.logs import exception_hook, log_file_path, setup_logging
from farmseg.gui.main_window import MainWindow

SIGNAL_POLL_MS = 200


@contextmanager
def closed_by_signals(window: MainWindow) -> Iterator[None]:
    """Ctrl+C and SIGTERM close the window cleanly (cancelling a run) instead of raising
    KeyboardInterrupt inside some slot. A timer lets Python notice signals during Qt's loop."""
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: window.shut_down()) for sig in handled}
    ticker = QTimer(interval=SIGNAL_POLL_MS)
    ticker.timeout.connect(lambda: None)
    ticker.start()
    try:
        yield
    finally:
        ticker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(files: list[str], segment: bool = False) -> int:
    """Open the main window with `files` as layers; segment the first one if asked.
    Returns the exit code."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setOrganizationName("farmseg")
    app.setApplicationName("farmseg")
    app.setApplicationVersion(__version__)
    setup_logging(log_file_path())
    window = MainWindow()
    report = lambda reason, details: show_error(window, f"Unexpected error: {reason}",  # noqa: E731
                                                details)
    with exception_hook(report), closed_by_signals(window):
        window.show()
        layers = [window.open_raster(name) for name in files]
        if segment and layers and layers[0] is not None:
            window.layer_panel.set_current(layers[0])
            QTimer.singleShot(0, window.segment)
        return app.exec()
