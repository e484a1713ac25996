"""The Dask client of a batch: an existing cluster (--scheduler) or a local one made on the
spot, its worker processes sized to this machine's cores and memory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from farmseg.errors import UsageError
from farmseg.jobs import cpu_threads

BLOCK_MEMORY_GB = 1.5  # a block's peak (one raster's budget): workers get at least this


def local_workers(requested: int | None, memory_gb: float) -> int:
    """Worker processes for a local cluster: as asked, else one per core that memory allows."""
    if requested is not None:
        if requested < 1:
            raise UsageError(None, f"--workers {requested}: must be at least 1")
        return requested
    return max(1, min(cpu_threads(), int(memory_gb // BLOCK_MEMORY_GB)))


def _pin(cores: list[int]) -> None:
    """Run on a worker: keep its compute threads (ONNX Runtime, OpenCV) on its cores."""
    os.sched_setaffinity(0, cores)


@contextmanager
def dask_client(workers: int | None, scheduler: str | None) -> Iterator[Any]:
    """A connected client; a local cluster is closed (its workers stopped) on exit."""
    import psutil
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise UsageError(None, f"--scheduler {scheduler}: cannot connect ({exc})") from None
        with client:
            yield client
        return
    memory_gb = psutil.virtual_memory().total / 2**30
    count = local_workers(workers, memory_gb)
    cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True,
                           memory_limit=f"{max(BLOCK_MEMORY_GB, memory_gb / count):.1f}GiB",
                           dashboard_address=":0")
    try:
        with Client(cluster) as client:
            _pin_workers(client)
            yield client
    finally:
        cluster.close()


def _pin_workers(client: Any) -> None:
    """Share this machine's cores out among the local workers."""
    if not hasattr(os, "sched_getaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    addresses = sorted(client.scheduler_info()["workers"])
    for i, address in enumerate(addresses):
        share = cores[i * len(cores) // len(addresses): (i + 1) * len(cores) // len(addresses)]
        client.run(_pin, share or cores, workers=[address])


def dashboard_link(client: Any) -> str | None:
    """The cluster's dashboard, when it serves one."""
    try:
        return client.dashboard_link or None
    except Exception:  # no dashboard (e.g. bokeh missing): not a reason to fail
        return None
