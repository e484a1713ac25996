"""The application log: recent lines for error "Details", a file in the user's data folder,
and an exception hook so that no error passes silently."""

from __future__ import annotations

import logging
import sys
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QStandardPaths

from farmseg.gui.tasks import describe

LOG = logging.getLogger("farmseg")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
RECENT_LINES = 200


class _Recent(logging.Handler):
    """Keeps the last lines in memory."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: deque[str] = deque(maxlen=RECENT_LINES)
        self.setFormatter(logging.Formatter(FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


_recent = _Recent()


def log_file_path() -> Path:
    """farmseg.log in the user's data folder (QStandardPaths AppDataLocation)."""
    folder = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(folder) / "farmseg.log"


def setup_logging(log_file: Path | None = None) -> None:
    """Keep recent lines in memory; also append to `log_file` if given. Safe to call again."""
    LOG.setLevel(logging.INFO)
    if _recent not in LOG.handlers:
        LOG.addHandler(_recent)
    if log_file is not None and not any(isinstance(h, RotatingFileHandler) for h in LOG.handlers):
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(log_file, maxBytes=1_000_000, backupCount=2,
                                      encoding="utf-8")
        handler.setFormatter(logging.Formatter(FORMAT))
        LOG.addHandler(handler)


def recent_log() -> str:
    return "\n".join(_recent.lines)


@contextmanager
def exception_hook(report: Callable[[str, str], object]) -> Iterator[None]:
    """While active, unexpected exceptions are logged and `report(reason, details)`ed,
    instead of ending the application or vanishing."""

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        details = "".join(traceback.format_exception(kind, exc, tb))
        LOG.error("unexpected error\n%s", details)
        try:
            report(describe(exc), details)
        except Exception:  # the report itself failed: the log and stderr still have it
            if sys.__stderr__ is not None:  # None in a windowed build
                sys.__stderr__.write(details)

    previous = sys.excepthook
    sys.excepthook = hook
    try:
        yield
    finally:
        sys.excepthook = previous
