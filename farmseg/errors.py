"""One error hierarchy for the core; the CLI and the GUI each map it once."""

from __future__ import annotations

from pathlib import Path


class FarmsegError(Exception):
    """A problem the user can fix: bad input, bad model, bad output location."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class InputError(FarmsegError):
    """A raster or label file that cannot be used."""


class ModelError(FarmsegError):
    """A model bundle that cannot be loaded or does not fit the input."""


class OutputError(FarmsegError):
    """An output target that cannot be written."""


class UsageError(FarmsegError):
    """Options that do not go together."""


class Cancelled(Exception):
    """The user stopped a job; everything it started has been cleaned up."""
