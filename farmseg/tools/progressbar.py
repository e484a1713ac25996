"""A one-line stderr progress bar with ETA for CLI jobs."""

from __future__ import annotations

import sys
import time

from farmseg.jobs import Progress


def format_clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60:02d}:{rem % 60:02d}"


class ProgressBar:
    """Draws `stage [#####.....] done/total elapsed<eta` on stderr; silent when quiet."""

    def __init__(self, quiet: bool = False, width: int = 30) -> None:
        self.quiet = quiet
        self.width = width
        self.stage: str | None = None
        self.start = time.monotonic()
        self.last_draw = 0.0

    def __call__(self, report: Progress) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if report.stage != self.stage:
            if self.stage is not None:
                sys.stderr.write("\n")
            self.stage, self.start = report.stage, now
        if now - self.last_draw < 0.2 and report.done < report.total:
            return
        self.last_draw = now
        elapsed = now - self.start
        eta = elapsed / report.done * (report.total - report.done) if report.done else None
        filled = int(self.width * report.fraction)
        bar = "#" * filled + "." * (self.width - filled)
        sys.stderr.write(f"\r{report.stage:<10} [{bar}] {report.done}/{report.total} "
                         f"{format_clock(elapsed)}<{format_clock(eta)} "
                         f"{report.message}"[:160].ljust(100))
        sys.stderr.flush()

    def close(self) -> None:
        if not self.quiet and self.stage is not None:
            sys.stderr.write("\n")
            self.stage = None
