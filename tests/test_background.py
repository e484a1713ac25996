"""The reader that prefetches one item ahead and the writer one write behind, alone."""

from __future__ import annotations

import threading
import time

import pytest

from farmseg.pipeline.background import WriteBehind, prefetched


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(name)]


class _Reads:
    """Records which items were read and when each read ended; item 1 reads slowly."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.started: list[int] = []
        self.finished: list[int] = []
        self.fail_at = fail_at

    def __call__(self, item: int) -> int:
        self.started.append(item)
        if item == self.fail_at:
            raise ValueError(f"cannot read {item}")
        if item == 1:
            time.sleep(0.1)
        self.finished.append(item)
        return item * 10


def test_results_come_in_order_each_read_once():
    reads = _Reads()
    with prefetched(reads, range(6), "test-read-order") as results:
        assert list(results) == [0, 10, 20, 30, 40, 50]
    assert reads.started == list(range(6))
    assert not _threads("test-read-order")


def test_the_next_item_is_read_while_the_caller_works_and_no_further():
    reads = _Reads()
    with prefetched(reads, range(6), "test-read-ahead") as results:
        assert next(results) == 0
        deadline = time.monotonic() + 5
        while 1 not in reads.finished and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reads.started == [0, 1] and reads.finished == [0, 1]


def test_leaving_early_waits_for_the_read_in_flight_and_reads_no_more():
    reads = _Reads()
    with prefetched(reads, range(6), "test-read-early") as results:
        assert next(results) == 0  # item 1 now read (slowly) in the background
    assert reads.finished == [0, 1]  # finished before the context was left
    assert not _threads("test-read-early")


def test_an_error_in_the_read_reaches_the_caller_and_stops_reading():
    reads = _Reads(fail_at=2)
    seen = []
    with pytest.raises(ValueError, match="cannot read 2"), \
            prefetched(reads, range(6), "test-read-error") as results:
        seen.extend(results)
    assert seen == [0, 10] and reads.started == [0, 1, 2]
    assert not _threads("test-read-error")


def test_writes_run_in_order_and_the_last_is_done_on_leaving():
    written = []

    def write(item: int) -> None:
        time.sleep(0.01)
        written.append(item)

    with WriteBehind("test-write-order") as writer:
        for item in range(5):
            writer.write(write, item)
    assert written == list(range(5))
    assert not _threads("test-write-order")


def test_an_error_in_a_write_reaches_the_caller():
    def fail() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), WriteBehind("test-write-error") as writer:
        writer.write(fail)
    with WriteBehind("test-write-error") as writer:
        writer.write(fail)
        with pytest.raises(OSError, match="disk full"):
            writer.wait()
    assert not _threads("test-write-error")
