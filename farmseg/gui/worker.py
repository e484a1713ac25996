"""One segmentation run: a QThread supervises the job process, then prepares what to draw.

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
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

import rasterio
import shapely
from PySide6.QtCore import QObject, QRectF, Qt, QThread, Signal, Slot
from PySide6.QtGui import QImage, QPainterPath, QTransform

from farmseg.gui import job_process
from farmseg.gui.convert import polygon_path, scene_transform, to_qimage
from farmseg.gui.render import PROBABILITY_STYLE, overview_rgba
from farmseg.gui.tasks import describe
from farmseg.segment import SegmentOptions, SegmentResult

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


def _exit_reason(process: BaseProcess) -> str:
    process.join(EXIT_S)
    code = process.exitcode
    if code is not None and code < 0:
        return f"the segmentation process was killed (signal {-code}; out of memory?)"
    return f"the segmentation process stopped unexpectedly (exit code {code})"


class SegmentWorker(QObject):
    """Runs in the job thread; `cancel()` may be called from any thread."""

    progress = Signal(object)  # farmseg.jobs.Progress
    logged = Signal(str)  # a warning from the core
    succeeded = Signal(object)  # JobOutcome
    failed = Signal(str, str)  # reason, details
    cancelled = Signal()
    ended = Signal()  # always last

    def __init__(self, request: JobRequest) -> None:
        super().__init__()
        self.request = request
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    @Slot()
    def run(self) -> None:
        started = time.monotonic()
        kept = False
        context = multiprocessing.get_context("spawn")
        conn, child_conn = context.Pipe()
        process = context.Process(target=job_process.run, name="farmseg-segment", daemon=True,
                                  args=(child_conn, self.request.options, self.request.window))
        try:
            process.start()
            child_conn.close()
            result = self._listen(conn, process)
            outcome = self._prepare(result, started) if result is not None else None
            if outcome is None:
                self.cancelled.emit()
            else:
                kept = True
                self.succeeded.emit(outcome)
        except JobFailed as exc:
            self.failed.emit(exc.reason, exc.details)
        except Exception as exc:  # a bug here must still reach the user
            LOG.exception("segmentation worker failed")
            self.failed.emit(describe(exc), traceback.format_exc())
        finally:
            conn.close()
            if process.is_alive():
                process.join(EXIT_S)
            if process.is_alive():
                process.kill()
                process.join()
            if not kept:
                shutil.rmtree(self.request.job_dir, ignore_errors=True)
            self.ended.emit()

    def _listen(self, conn: Connection, process: BaseProcess) -> SegmentResult | None:
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
                elif time.monotonic() - cancel_sent > GRACE_S:
                    return None
            if not conn.poll(POLL_S):
                continue
            try:
                kind, *payload = conn.recv()
            except EOFError:
                if cancel_sent is not None:
                    return None
                raise JobFailed(_exit_reason(process), "") from None
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

    def _prepare(self, result: SegmentResult, started: float) -> JobOutcome | None:
        """Field paths and the probability overlay image; None if cancelled meanwhile."""
        sign = self.request.y_sign
        paths = []
        for polygon in result.layer.geoms:
            if self._cancel.is_set():
                return None
            paths.append(polygon_path(polygon, sign))
        bounds = QRectF()
        if len(result.layer):
            x0, y0, x1, y1 = shapely.total_bounds(result.layer.geoms)
            bounds = QRectF(x0, min(sign * y0, sign * y1), x1 - x0, abs(y1 - y0))
        prob_path = Path(self.request.options.prob_out)
        with rasterio.open(prob_path) as ds:
            _, rgba = overview_rgba(ds, PROBABILITY_STYLE)
            size, transform = (ds.width, ds.height), ds.transform
        return JobOutcome(result, self.request.job_dir, prob_path, size,
                          scene_transform(transform, sign), to_qimage(rgba), paths, bounds,
                          time.monotonic() - started)


class SegmentJob(QObject):
    """Owns the thread and the worker of one run. Connect to `worker`'s signals; the thread's
    `finished` (re-emitted as `done`) comes after all of them."""

    done = Signal()

    def __init__(self, request: JobRequest, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = SegmentWorker(request)
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
