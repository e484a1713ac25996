"""The desktop application (PySide6). `MainWindow` is imported on first use, so that the
job process (`farmseg --job-process`, see job_process) never loads Qt."""

from __future__ import annotations

from typing import Any

__all__ = ["JOB_PROCESS_ARG", "MainWindow"]

JOB_PROCESS_ARG = "--job-process"  # farmseg's hidden first argument: be a GUI job's process


def __getattr__(name: str) -> Any:
    if name == "MainWindow":
        from farmseg.gui.main_window import MainWindow

        return MainWindow
    raise AttributeError(f"module 'farmseg.gui' has no attribute {name!r}")
