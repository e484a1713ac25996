"""Long work is a generator of Progress; these helpers drive it from any front end."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from farmseg.errors import Cancelled

T = TypeVar("T")


@dataclass
class Progress:
    """One progress report: which stage, how far, and optional extra figures."""

    stage: str
    done: int
    total: int
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


Job = Generator[Progress, None, T]


def run_job(
    job: Job[T],
    on_progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> T:
    """Run a job to completion; close it (its finally blocks clean up) on cancel."""
    try:
        while True:
            if should_cancel is not None and should_cancel():
                job.close()
                raise Cancelled("cancelled by the user")
            report = next(job)
            if on_progress is not None:
                on_progress(report)
    except StopIteration as stop:
        return stop.value
    except BaseException:
        job.close()
        raise


def drain(job: Job[T]) -> T:
    """Run a job to its result, ignoring its progress."""
    try:
        while True:
            next(job)
    except StopIteration as stop:
        return stop.value


class EtaClock:
    """Elapsed time and a simple rate-based ETA for a stage."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def eta(self, done: int, total: int) -> float | None:
        if done <= 0 or total <= 0:
            return None
        return self.elapsed() / done * (total - done)


def cpu_threads() -> int:
    """Threads for compute libraries: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
