"""`farmseg gui [FILE ...] [--segment]` and bare `farmseg`: start the desktop application."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import PySide6
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from farmseg import __version__
from farmseg.gui.dialogs import show_error
from farmseg.gui.logs import exception_hook, log_file_path, setup_logging
from farmseg.gui.main_window import MainWindow

SIGNAL_POLL_MS = 200
BROKEN_PYSIDE = ("farmseg: error: this PySide6 ({version}) loses references to None on Python "
                 "{python} and would crash the application; install one that does not, e.g. "
                 "pip install 'PySide6-Essentials<6.12' (or use Python 3.12 or newer)\n")


def pyside_drops_references() -> bool:
    """True for PySide6 builds that lose a reference to None on each call of a C++ method
    returning nothing (6.12.0 on Python < 3.12): the interpreter soon aborts with
    "deallocating None"."""
    timer = QTimer()
    before = sys.getrefcount(None)
    for _ in range(8):
        timer.stop()
    return sys.getrefcount(None) < before - 4


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
    if pyside_drops_references():
        sys.stderr.write(BROKEN_PYSIDE.format(version=PySide6.__version__,
                                              python=sys.version.split()[0]))
        return 2
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
        QTimer.singleShot(0, window.offer_recovery)  # edits a crash left unsaved
        layers = [window.open_raster(name) for name in files]
        if segment and layers and layers[0] is not None:
            window.layer_panel.set_current(layers[0])
            QTimer.singleShot(0, window.segment)
        return app.exec()
