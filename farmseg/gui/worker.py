"""Background runs: a QThread supervises a job process (segmentation, fine-tuning); for a
segmentation it then prepares what to draw.

Everything heavy happens off the GUI thread: the core job in its own process (see
job_process), and turning its result into QPainterPaths and an overlay QImage in this
thread. The GUI thread only adds ready-made items.
"""

from __future__ import annotations

import logging
import multiprocessing
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import rasterio
from PySide6.QtCore import QObject, QRectF, Qt, QThread, Signal, Slot
from PySide6.QtGui import QImage, QPainterPath, QTransform

from farmseg.gui import job_process
from farmseg.gui.convert import polygon_path, scene_bounds, scene_transform, to_qimage
from farmseg.gui.render import PROBABILITY_STYLE, overview_rgba
from farmseg.gui.tasks import describe
from farmseg.pipeline.segment import SegmentOptions, SegmentResult

LOG = logging.getLogger("farmseg.gui")
GRACE_S = 1.0  # after Cancel, the process may take this long to stop by itself
EXIT_S = 0.5  # after its last message, the process may take this long to exit; then it is killed
POLL_S = 0.05


@dataclass
class JobRequest:
    options: SegmentOptions  # with prob_out and work_dir inside job_dir
    window: job_process.PixelWindow | None  # crop to this first (the view extent)
    job_dir: Path  # private folder for every file of the run; removed unless it succeeds
    y_sign: float  # the map view's scene y = y_sign * map y


@dataclass
class JobOutcome:
    """A finished run, ready to draw."""

    result: SegmentResult
    job_dir: Path
    prob_path: Path
    prob_size: tuple[int, int]  # width, height
    prob_transform: QTransform
    prob_image: QImage
    paths: list[QPainterPath]  # one per field, scene coordinates
    bounds: QRectF
    seconds: float


class JobFailed(Exception):
    def __init__(self, reason: str, details: str) -> None:
        super().__init__(reason)
        self.reason, self.details = reason, details


def _exit_reason(process: BaseProcess, what: str) -> str:
    process.join(EXIT_S)
    code = process.exitcode
    if code is not None and code < 0:
        return f"the {what} process was killed (signal {-code}; out of memory?)"
    return f"the {what} process stopped unexpectedly (exit code {code})"


class ProcessWorker(QObject):
    """Runs `target(conn, *args)`, an entry point like job_process.run, in a child process and
    relays its messages. Runs in the job thread; `cancel()` may be called from any thread.
    Subclasses turn the result into what `succeeded` carries (`_finish`) and tidy up
    (`_clean_up`)."""

    progress = Signal(object)  # farmseg.jobs.Progress
    logged = Signal(str)  # a warning from the core
    succeeded = Signal(object)  # what _finish returns
    failed = Signal(str, str)  # reason, details
    cancelled = Signal()
    ended = Signal()  # always last

    def __init__(self, target: Callable[..., None], args: tuple[Any, ...], what: str,
                 grace_s: float = GRACE_S) -> None:
        super().__init__()
        self._target, self._args, self._what, self._grace_s = target, args, what, grace_s
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    @Slot()
    def run(self) -> None:
        started = time.monotonic()
        kept = False
        context = multiprocessing.get_context("spawn")
        conn, child_conn = context.Pipe()
        process = context.Process(target=self._target, name=f"farmseg-{self._what}",
                                  daemon=True, args=(child_conn, *self._args))
        try:
            process.start()
            child_conn.close()
            result = self._listen(conn, process)
            outcome = self._finish(result, started) if result is not None else None
            if outcome is None:
                self.cancelled.emit()
            else:
                kept = True
                self.succeeded.emit(outcome)
        except JobFailed as exc:
            self.failed.emit(exc.reason, exc.details)
        except Exception as exc:  # a bug here must still reach the user
            LOG.exception("%s worker failed", self._what)
            self.failed.emit(describe(exc), traceback.format_exc())
        finally:
            conn.close()
            if process.is_alive():
                process.join(EXIT_S)
            if process.is_alive():
                process.kill()
                process.join()
            self._clean_up(kept)
            self.ended.emit()

    def _listen(self, conn: Connection, process: BaseProcess) -> Any:
        """Relay the process's messages until its result (None when cancelled)."""
        cancel_sent: float | None = None
        while True:
            if self._cancel.is_set():
                if cancel_sent is None:
                    cancel_sent = time.monotonic()
                    try:
                        conn.send("cancel")
                    except OSError:
                        return None
                elif time.monotonic() - cancel_sent > self._grace_s:
                    return None
            if not conn.poll(POLL_S):
                continue
            try:
                kind, *payload = conn.recv()
            except EOFError:
                if cancel_sent is not None:
                    return None
                raise JobFailed(_exit_reason(process, self._what), "") from None
            if kind == "progress":
                self.progress.emit(payload[0])
            elif kind == "log":
                LOG.warning("%s", payload[0])
                self.logged.emit(payload[0])
            elif kind == "done":
                return payload[0]
            elif kind == "cancelled":
                return None
            else:
                raise JobFailed(*payload)

    def _finish(self, result: Any, started: float) -> Any:
        """What `succeeded` carries; None if cancelled meanwhile."""
        return result

    def _clean_up(self, kept: bool) -> None:
        """Called once the process is gone; `kept` tells whether the run succeeded."""


class SegmentWorker(ProcessWorker):
    """One segmentation: the job process, then the paths and overlay to draw."""

    def __init__(self, request: JobRequest) -> None:
        super().__init__(job_process.run, (request.options, request.window), "segmentation")
        self.request = request

    def _clean_up(self, kept: bool) -> None:
        if not kept:
            shutil.rmtree(self.request.job_dir, ignore_errors=True)

    def _finish(self, result: SegmentResult, started: float) -> JobOutcome | None:
        """Field paths and the probability overlay image; None if cancelled meanwhile."""
        sign = self.request.y_sign
        paths = []
        for polygon in result.layer.geoms:
            if self.is_cancelled():
                return None
            paths.append(polygon_path(polygon, sign))
        bounds = scene_bounds(result.layer.geoms, sign)
        prob_path = Path(self.request.options.prob_out)
        with rasterio.open(prob_path) as ds:
            _, rgba = overview_rgba(ds, PROBABILITY_STYLE)
            size, transform = (ds.width, ds.height), ds.transform
        return JobOutcome(result, self.request.job_dir, prob_path, size,
                          scene_transform(transform, sign), to_qimage(rgba), paths, bounds,
                          time.monotonic() - started)


class ProcessJob(QObject):
    """Owns the thread and the worker of one run. Connect to `worker`'s signals; the thread's
    `finished` (re-emitted as `done`) comes after all of them."""

    done = Signal()

    def __init__(self, worker: ProcessWorker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self._thread = QThread(self)
        self._thread.setObjectName("farmseg-job")
        self.worker.moveToThread(self._thread)
        self._thread.started.connect(self.worker.run)
        self.worker.ended.connect(self._thread.quit, Qt.ConnectionType.DirectConnection)
        self._thread.finished.connect(self.done)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self.worker.cancel()

    def wait(self, ms: int) -> bool:
        return self._thread.wait(ms)


class SegmentJob(ProcessJob):
    """One segmentation run (see SegmentWorker)."""

    def __init__(self, request: JobRequest, parent: QObject | None = None) -> None:
        super().__init__(SegmentWorker(request), parent)
