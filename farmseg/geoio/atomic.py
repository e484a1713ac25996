"""Write outputs all-or-nothing: a temporary name in the target folder, then rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from farmseg.errors import OutputError

SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")


def check_target(target: Path, overwrite: bool) -> None:
    """Refuse a target we must not or cannot write, before any work starts."""
    target = Path(target)
    if len(target.name.encode()) > 255:
        raise OutputError(target, "file name is longer than 255 bytes")
    try:
        if target.is_dir():
            raise OutputError(target, "is a directory; give a file name")
        if target.exists() and not overwrite:
            raise OutputError(target, "already exists; use --overwrite to replace it")
        parent = target.parent if str(target.parent) else Path(".")
        if not parent.is_dir():
            raise OutputError(target, f"folder {parent} does not exist")
    except OSError as exc:
        raise OutputError(target, f"cannot use this path ({exc.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(target, f"folder {parent} is not writable")


def default_mode(directory: bool = False) -> int:
    """Permissions a plainly created file or folder gets (temp files are private)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target`."""
    target = Path(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem[:40]}.", suffix=f".part{target.suffix}",
                                    dir=target.parent if str(target.parent) else ".")
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, default_mode())
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(target, f"cannot write ({exc.strerror or exc})") from None
        raise


@contextmanager
def atomic_fileset(target: Path, suffixes: tuple[str, ...] = SHAPEFILE_PARTS) -> Iterator[Path]:
    """Like atomic_file for multi-file formats: written in a temporary folder, moved as a set."""
    target = Path(target)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.stem[:40]}.", suffix=".part",
                                   dir=target.parent if str(target.parent) else "."))
    try:
        yield folder / target.name
        for suffix in suffixes:
            part = folder / (target.stem + suffix)
            if part.exists():
                _fsync(part)
                os.chmod(part, default_mode())
        for suffix in suffixes:
            part = folder / (target.stem + suffix)
            if part.exists():
                os.replace(part, target.with_suffix(suffix))
    except OSError as exc:
        raise OutputError(target, f"cannot write ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
