"""What runs in a job process (Qt-free): a core job, driven over a pipe.

The GUI runs segmentation (and fine-tuning, see finetune_job) in a child process rather
than a thread of its own: native code in GDAL and GEOS can hold Python's GIL for hundreds
of milliseconds (closing a compressed GeoTIFF, for one), which would freeze the window; a
process also survives being killed when a cancel is not honoured in time.

Messages to the parent: ("progress", Progress), ("log", text), ("done", result),
("cancelled",), ("error", reason, details). The parent may send "cancel".
"""

from __future__ import annotations

import sys
import traceback
from dataclasses import replace
from multiprocessing.connection import Connection
from pathlib import Path

import rasterio
from rasterio.windows import Window

from farmseg.errors import Cancelled, FarmsegError
from farmseg.jobs import Job, Progress, run_job
from farmseg.pipeline.segment import SegmentOptions, SegmentResult, segment_job

CROP_ROWS = 512
PixelWindow = tuple[int, int, int, int]  # column, row, width, height


class _PipeText:
    """A write-only text stream that sends each line to the parent as a log message."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self._conn.send(("log", line.strip()))
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


def serve(conn: Connection, job: Job, memory_hint: str) -> None:
    """Run `job` in this child process: report over `conn`, stop on "cancel"; `memory_hint`
    says what to try when memory runs out."""
    sys.stderr = _PipeText(conn)  # core warnings reach the GUI's log

    def cancelled() -> bool:
        return conn.poll() and conn.recv() == "cancel"

    try:
        result = run_job(job, lambda p: conn.send(("progress", p)), cancelled)
        conn.send(("done", result))
    except Cancelled:
        conn.send(("cancelled",))
    except FarmsegError as exc:
        conn.send(("error", str(exc), traceback.format_exc()))
    except MemoryError:
        conn.send(("error", f"out of memory: {memory_hint}", traceback.format_exc()))
    except Exception as exc:  # anything else still reaches the user, with its traceback
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        conn.send(("error", f"unexpected error: {reason}", traceback.format_exc()))
    finally:
        conn.close()


def run(conn: Connection, options: SegmentOptions, window: PixelWindow | None) -> None:
    """Child process entry point of a segmentation."""
    serve(conn, gui_job(options, window), "try a smaller tile size or the view extent")
