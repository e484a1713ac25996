"""The batch's command-line options, for the CLI's `segment` to add and turn into a job."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_BLOCK_PX = 4096  # the block side: about 0.5 GB per worker


def add_batch_options(parser: argparse.ArgumentParser) -> None:
    """--workers, --scheduler, --job-dir, --skip-bad, --block (`segment` takes several
    inputs, folders or VRTs as `input` with nargs='+')."""
    group = parser.add_argument_group("many scenes (a Dask cluster)")
    group.add_argument("--workers", type=int, help="worker processes of a local cluster "
                       "(default with several scenes: sized to this machine)")
    group.add_argument("--scheduler", help="run on an existing cluster, e.g. tcp://HOST:8786 "
                       "(the model and the job folder must be on a path its workers share)")
    group.add_argument("--job-dir", type=Path, help="finished blocks are kept here; rerunning "
                       "resumes (default: beside the output)")
    group.add_argument("--skip-bad", action="store_true", help="skip scenes that cannot be "
                       "read (named on stderr) instead of stopping")
    group.add_argument("--block", type=int, default=DEFAULT_BLOCK_PX,
                       help=f"block side in pixels (default {DEFAULT_BLOCK_PX})")


def wants_batch(inputs: list[Path], workers: int | None, scheduler: str | None) -> bool:
    """Several inputs, a folder, a cluster asked for: the batch; else the single-raster job."""
    return (len(inputs) > 1 or Path(inputs[0]).is_dir() or workers is not None
            or scheduler is not None)
