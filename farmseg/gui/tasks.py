"""Run a short function on Qt's thread pool and get its result back on the GUI thread."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, Slot

from farmseg.errors import FarmsegError


def describe(exc: BaseException) -> str:
    """One line for a message box: the core's own wording, else the type and first line."""
    if isinstance(exc, FarmsegError):
        return str(exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class _Relay(QObject):
    """Lives on the GUI thread; signals emitted from pool threads are queued to it."""

    deliver = Signal(object, object)

    def __init__(self) -> None:
        super().__init__()
        self.deliver.connect(self._call)

    @Slot(object, object)
    def _call(self, callback: Callable[[Any], None], value: Any) -> None:
        callback(value)


_relay: _Relay | None = None


class _Task(QRunnable):
    def __init__(self, fn: Callable[[], Any], on_done: Callable[[Any], None],
                 on_error: Callable[[tuple[str, str]], None], relay: _Relay) -> None:
        super().__init__()
        self._fn, self._on_done, self._on_error, self._relay = fn, on_done, on_error, relay

    def run(self) -> None:
        try:
            value = self._fn()
        except Exception as exc:  # reported to the caller, never lost in the pool
            self._relay.deliver.emit(self._on_error, (describe(exc), traceback.format_exc()))
        else:
            self._relay.deliver.emit(self._on_done, value)


def run_in_background(fn: Callable[[], Any], on_done: Callable[[Any], None],
                      on_error: Callable[[tuple[str, str]], None]) -> None:
    """Call `fn()` on a pool thread; then `on_done(result)` or `on_error((reason, details))`
    on the GUI thread. Call this from the GUI thread."""
    global _relay
    if _relay is None:
        _relay = _Relay()
    QThreadPool.globalInstance().start(_Task(fn, on_done, on_error, _relay))
