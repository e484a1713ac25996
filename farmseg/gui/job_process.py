"""What runs in a job process (Qt-free): a core job, driven over pipes.

The GUI runs segmentation (and fine-tuning, see finetune_job) in a child process rather
than a thread of its own: native code in GDAL and GEOS can hold Python's GIL for hundreds
of milliseconds (closing a compressed GeoTIFF, for one), which would freeze the window; a
process also survives being killed when a cancel is not honoured in time.

The parent (child.ChildProcess) starts `farmseg --job-process`, which calls main(); it never
imports the caller's `__main__`. Frames (see frames.py) from the parent on stdin: the task
(a ChildTask), then possibly "cancel"; the end of stdin (the parent is gone) cancels too.
Frames to the parent on stdout: ("progress", Progress), ("log", text), ("done", result),
("cancelled",), ("error", reason, details). Anything else written to stdout goes to stderr.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Protocol

import rasterio
from rasterio.windows import Window

from farmseg.errors import Cancelled, FarmsegError
from farmseg.gui.frames import read_frame, write_frame
from farmseg.jobs import Job, Progress, run_job
from farmseg.pipeline.segment import SegmentOptions, SegmentResult, segment_job

CROP_ROWS = 512
PixelWindow = tuple[int, int, int, int]  # column, row, width, height
Send = Callable[..., None]  # send(kind, *payload): one message to the parent


class ChildTask(Protocol):
    """What the parent sends to a job process: the job to run there."""

    memory_hint: str  # what to try when memory runs out

    def job(self) -> Job[Any]:
        """The core job to run."""
        ...


class _PipeText:
    """A write-only text stream that sends each line to the parent as a log message."""

    def __init__(self, send: Send) -> None:
        self._send = send

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self._send("log", line.strip())
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""


def crop_job(source: Path, window: PixelWindow, target: Path) -> Job[Path]:
    """Copy a pixel window of `source` to a GeoTIFF `target`, by row blocks."""
    col, row, width, height = window
    with rasterio.open(source) as src:
        profile = src.profile
        profile.update(driver="GTiff", width=width, height=height, compress="deflate",
                       transform=src.window_transform(Window(col, row, width, height)))
        if width >= 256 and height >= 256:
            profile.update(tiled=True, blockxsize=256, blockysize=256)
        else:
            profile.update(tiled=False)
            profile.pop("blockxsize", None)
            profile.pop("blockysize", None)
        with rasterio.open(target, "w", **profile) as out:
            for r0 in range(0, height, CROP_ROWS):
                rows = min(CROP_ROWS, height - r0)
                data = src.read(window=Window(col, row + r0, width, rows))
                out.write(data, window=Window(0, r0, width, rows))
                yield Progress("crop", r0 + rows, height, "cropping to the view")
    return target


def gui_job(options: SegmentOptions, window: PixelWindow | None) -> Job[SegmentResult]:
    """Segment the whole raster, or first crop it to `window` (the view extent)."""
    if window is None:
        return (yield from segment_job(options))
    crop = Path(options.work_dir or ".") / f"{Path(options.input).stem}_view.tif"
    try:
        yield from crop_job(Path(options.input), window, crop)
        return (yield from segment_job(replace(options, input=crop)))
    finally:
        crop.unlink(missing_ok=True)


@dataclass
class SegmentTask:
    """A segmentation, as the job process runs it."""

    options: SegmentOptions
    window: PixelWindow | None  # crop to this first (the view extent)
    memory_hint = "try a smaller tile size or the view extent"

    def job(self) -> Job[SegmentResult]:
        return gui_job(self.options, self.window)


@dataclass
class BatchTask:
    """A folder of scenes segmented into one layer (the batch job), as the job process
    runs it; `options.output` is the layer's file."""

    folder: Path
    options: SegmentOptions
    memory_hint = "try a smaller tile size"

    def job(self) -> Job[Any]:
        from farmseg.batch.run import BatchOptions, batch_job

        return batch_job(BatchOptions([self.folder], self.options))


def serve(job: Job[Any], memory_hint: str, send: Send, cancelled: Callable[[], bool]) -> None:
    """Run `job`, reporting with `send` and stopping once `cancelled()`; `memory_hint` says
    what to try when memory runs out."""
    sys.stderr = _PipeText(send)  # core warnings reach the GUI's log
    try:
        result = run_job(job, lambda report: send("progress", report), cancelled)
        send("done", result)
    except Cancelled:
        send("cancelled")
    except FarmsegError as exc:
        send("error", str(exc), traceback.format_exc())
    except MemoryError:
        send("error", f"out of memory: {memory_hint}", traceback.format_exc())
    except Exception as exc:  # anything else still reaches the user, with its traceback
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        send("error", f"unexpected error: {reason}", traceback.format_exc())


class _Outbox:
    """Sends frames to the parent on the original stdout, one thread at a time; the
    process's own stdout then goes to stderr, so no stray print can break a frame."""

    def __init__(self) -> None:
        self._stream = os.fdopen(os.dup(1), "wb")
        try:
            os.dup2(2, 1)
        except OSError:  # no stderr (a windowed build): stray output goes nowhere
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)
        self._lock = threading.Lock()

    def send(self, *message: Any) -> None:
        with self._lock:
            write_frame(self._stream, message)


def _watch_inbox(inbox: IO[bytes], cancel: threading.Event) -> None:
    """Set `cancel` on "cancel" or when the parent closes stdin (it has gone)."""
    try:
        while read_frame(inbox) != "cancel":
            pass
    except (EOFError, OSError):
        pass
    cancel.set()


def main() -> int:
    """The job process: read the task from stdin, run it, report on stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in a terminal: the GUI cancels
    outbox = _Outbox()
    inbox = os.fdopen(0, "rb")
    try:
        task: ChildTask = read_frame(inbox)
    except Exception as exc:  # cannot happen unless this install is broken
        outbox.send("error", f"the job did not reach its process ({exc!r})",
                    traceback.format_exc())
        return 1
    cancel = threading.Event()
    threading.Thread(target=_watch_inbox, args=(inbox, cancel), name="farmseg-inbox",
                     daemon=True).start()
    serve(task.job(), task.memory_hint, outbox.send, cancel.is_set)
    return 0
