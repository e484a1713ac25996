"""The job folder: one file set per finished block, so a rerun redoes only what is missing.

Every file appears under its final name only when complete (written under a temporary
name, then renamed), so an interrupted job leaves the folder consistent. `job.json` says
which job the folder belongs to; a different job refuses to resume it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from farmseg.errors import UsageError

MANIFEST = "job.json"


class JobFolder:
    """Paths of a job's files and whether each block's steps are done."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def open(cls, root: Path, manifest: dict[str, Any]) -> JobFolder:
        """Create the folder, or resume it when it holds the same job."""
        root = Path(root)
        path = root / MANIFEST
        if path.exists():
            if json.loads(path.read_text()) != json.loads(json.dumps(manifest)):
                raise UsageError(root, "job folder of a different job (other inputs or "
                                 "options); remove it or give another --job-dir")
        else:
            (root / "blocks").mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                tmp.write_text(json.dumps(manifest, indent=1))
        return cls(root)

    def path(self, name: str) -> Path:
        return self.root / "blocks" / name

    def probabilities(self, block: str) -> Path:
        return self.path(f"{block}.prob.tif")

    def seeds(self, block: str) -> Path:
        return self.path(f"{block}.seeds.tif")

    def pieces(self, block: str) -> Path:
        return self.path(f"{block}.pieces.npz")

    def inferred(self, block: str) -> bool:
        """Probabilities and seeds written (the seeds file is written last)."""
        return self.seeds(block).exists()

    def vectorized(self, block: str) -> bool:
        return self.pieces(block).exists()

    def save_pieces(self, block: str, geoms: np.ndarray, arrays: dict[str, np.ndarray]) -> None:
        """A block's polygons (as WKB) and its arrays, in one file."""
        blobs = shapely.to_wkb(geoms) if len(geoms) else []
        wkb = np.frombuffer(b"".join(blobs), np.uint8)
        sizes = np.array([len(b) for b in blobs], np.int64)
        with atomic_path(self.pieces(block)) as tmp, open(tmp, "wb") as handle:
            payload = {"wkb": wkb, "wkb_sizes": sizes, **arrays}
            np.savez(handle, **payload)  # type: ignore[arg-type]  # (names are not options)

    def load_pieces(self, block: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        with np.load(self.pieces(block), allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        wkb, ends = arrays.pop("wkb").tobytes(), np.cumsum(arrays.pop("wkb_sizes"))
        blobs = [wkb[a:b] for a, b in zip(np.concatenate([[0], ends[:-1]]), ends)]
        return shapely.from_wkb(np.array(blobs, dtype=object)), arrays

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path beside `target` that becomes `target` when the block succeeds."""
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
