"""One background run at a time: a QObject that owns the run's worker and thread and
relays the worker's signals, so a window connects to it once (see worker.ProcessWorker)."""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, QThread, Signal

from farmseg.gui.worker import ProcessWorker


class JobController(QObject):
    """Starts workers on a thread of their own, one at a time. Each run emits `started`,
    any `progress` and `logged`, then one of `finished` (it succeeded), `failed` or
    `cancelled`, and last `ended`, once its thread has stopped and `is_running()` is False."""

    started = Signal()
    progress = Signal(object)  # farmseg.jobs.Progress
    logged = Signal(str)  # a warning from the core
    finished = Signal(object)  # what the worker's _finish returned
    failed = Signal(str, str)  # reason, details
    cancelled = Signal()
    ended = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._worker: ProcessWorker | None = None
        self._thread: QThread | None = None

    def is_running(self) -> bool:
        return self._worker is not None

    def is_cancelled(self) -> bool:
        """Whether the current run was asked to stop."""
        return self._worker is not None and self._worker.is_cancelled()

    def start(self, worker: ProcessWorker) -> None:
        """Run `worker` on a new thread; the previous run must have ended."""
        assert self._worker is None, "a run is still going"
        thread = QThread(self)
        thread.setObjectName("farmseg-job")
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.ended.connect(thread.quit, Qt.ConnectionType.DirectConnection)
        worker.progress.connect(self.progress)
        worker.logged.connect(self.logged)
        worker.succeeded.connect(self.finished)
        worker.failed.connect(self.failed)
        worker.cancelled.connect(self.cancelled)
        thread.finished.connect(self._on_thread_finished)  # after all of the worker's signals
        self._worker, self._thread = worker, thread
        thread.start()
        self.started.emit()

    def cancel(self) -> None:
        """Ask the current run, if any, to stop (see ProcessWorker for the grace time)."""
        if self._worker is not None:
            self._worker.cancel()

    def wait(self, ms: int) -> bool:
        """Block until the current run's thread has stopped, at most `ms` milliseconds."""
        return self._thread is None or self._thread.wait(ms)

    def _on_thread_finished(self) -> None:
        if self._thread is not None:
            self._thread.deleteLater()
        self._worker = self._thread = None
        self.ended.emit()
