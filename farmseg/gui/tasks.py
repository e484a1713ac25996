"""Run a short function on a worker thread and get its result back on the GUI thread."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from farmseg.errors import FarmsegError


def describe(exc: BaseException) -> str:
    """One line for a message box: the core's own wording, else the type and first line."""
    if isinstance(exc, FarmsegError):
        return str(exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


class _Relay(QObject):
    """Lives on the GUI thread; signals emitted from worker threads are queued to it."""

    deliver = Signal(object, object)

    def __init__(self) -> None:
        super().__init__()
        self.deliver.connect(self._call)

    @Slot(object, object)
    def _call(self, callback: Callable[[Any], object], value: Any) -> None:
        callback(value)


_relay: _Relay | None = None
# Python threads, not QThreadPool's: the binding gives a pool thread a new Python thread state
# for each task, and pyproj 3.7 keeps its per-thread PROJ context in both thread-local storage
# of the OS thread and of the thread state, so its second use on a pool thread can crash.
_pool = ThreadPoolExecutor(thread_name_prefix="farmseg-task")


def _run(fn: Callable[[], Any], on_done: Callable[[Any], object],
         on_error: Callable[[tuple[str, str]], object], relay: _Relay) -> None:
    try:
        value = fn()
    except Exception as exc:  # reported to the caller, never lost in the pool
        relay.deliver.emit(on_error, (describe(exc), traceback.format_exc()))
    else:
        relay.deliver.emit(on_done, value)


def run_in_background(fn: Callable[[], Any], on_done: Callable[[Any], object],
                      on_error: Callable[[tuple[str, str]], object]) -> None:
    """Call `fn()` on a worker thread; then `on_done(result)` or `on_error((reason, details))`
    on the GUI thread. Call this from the GUI thread."""
    global _relay
    if _relay is None:
        _relay = _Relay()
    _pool.submit(_run, fn, on_done, on_error, _relay)
