"""Background threads that overlap reading and writing with the caller's work."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@contextmanager
def prefetched(read: Callable[[Item], Result], items: Iterable[Item],
               thread_name: str = "farmseg-read") -> Iterator[Iterator[Result]]:
    """`read(item)` for each item, in order, one item ahead in a background thread so that
    reading overlaps the caller's work on the last result. An error in `read` is raised where
    its result is taken; leaving the context waits for the read in flight, so nothing reads
    after it."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name) as pool:
        yield _one_ahead(pool, read, items)


def _one_ahead(pool: ThreadPoolExecutor, read: Callable[[Item], Result],
               items: Iterable[Item]) -> Iterator[Result]:
    reads = (pool.submit(read, item) for item in items)  # lazy: started one at a time
    pending = next(reads, None)
    while pending is not None:
        result = pending.result()
        pending = next(reads, None)
        yield result


class WriteBehind:
    """Runs writes in a background thread, one at a time and in order, so that writing
    overlaps the caller's work. Leaving the context waits for the last write (its error is
    raised unless the context is left by another)."""

    def __init__(self, thread_name: str = "farmseg-write") -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)
        self._last: Future[Any] | None = None

    def wait(self) -> None:
        """Wait for the write in flight; its error is raised here."""
        if self._last is not None:
            last, self._last = self._last, None
            last.result()

    def write(self, write: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Start `write(*args, **kwargs)` once the write in flight is done."""
        self.wait()
        self._last = self._pool.submit(write, *args, **kwargs)

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            self._pool.shutdown(wait=True)
