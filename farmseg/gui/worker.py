"""Background runs: a worker supervises a job process (segmentation, fine-tuning) from its
own thread (see job_control); for a segmentation it then prepares what to draw.

Everything heavy happens off the GUI thread: the core job in its own process (see
job_process), and turning its result into QPainterPaths and an overlay QImage in this
thread. The GUI thread only adds ready-made items.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
from PySide6.QtCore import QObject, QRectF, Signal, Slot
from PySide6.QtGui import QImage, QPainterPath, QTransform

from farmseg.gui.child import ChildProcess
from farmseg.gui.convert import polygon_path, scene_bounds, scene_transform, to_qimage
from farmseg.gui.job_process import ChildTask, PixelWindow, SegmentTask
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
    window: PixelWindow | None  # crop to this first (the view extent)
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


class ProcessWorker(QObject):
    """Runs `task` in a job process and relays its messages. Runs in the job thread;
    `cancel()` may be called from any thread. Subclasses turn the result into what
    `succeeded` carries (`_finish`) and tidy up (`_clean_up`)."""

    progress = Signal(object)  # farmseg.jobs.Progress
    logged = Signal(str)  # a warning from the core
    succeeded = Signal(object)  # what _finish returns
    failed = Signal(str, str)  # reason, details
    cancelled = Signal()
    ended = Signal()  # always last

    def __init__(self, task: ChildTask, what: str, grace_s: float = GRACE_S) -> None:
        super().__init__()
        self._task, self._what, self._grace_s = task, what, grace_s
        self._cancel = threading.Event()

    def cancel(self) -> None:
        self._cancel.set()

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    @Slot()
    def run(self) -> None:
        started = time.monotonic()
        kept = False
        child: ChildProcess | None = None
        try:
            child = ChildProcess(self._task, self._what)
            result = self._listen(child)
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
            if child is not None:
                child.stop(EXIT_S)
            self._clean_up(kept)
            self.ended.emit()

    def _listen(self, child: ChildProcess) -> Any:
        """Relay the process's messages until its result (None when cancelled)."""
        cancel_sent: float | None = None
        while True:
            if self._cancel.is_set():
                if cancel_sent is None:
                    cancel_sent = time.monotonic()
                    if not child.send("cancel"):
                        return None
                elif time.monotonic() - cancel_sent > self._grace_s:
                    return None
            try:
                message = child.receive(POLL_S)
            except EOFError:
                if cancel_sent is not None:
                    return None
                raise JobFailed(child.exit_reason(EXIT_S), "") from None
            if message is None:
                continue
            kind, *payload = message
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
        super().__init__(SegmentTask(request.options, request.window), "segmentation")
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
        prob_path = self.request.options.prob_out
        assert prob_path is not None  # the GUI always asks for the probabilities
        with rasterio.open(prob_path) as ds:
            _, rgba = overview_rgba(ds, PROBABILITY_STYLE)
            size, transform = (ds.width, ds.height), ds.transform
        return JobOutcome(result, self.request.job_dir, Path(prob_path), size,
                          scene_transform(transform, sign), to_qimage(rgba), paths, bounds,
                          time.monotonic() - started)
