"""A helper for building widgets."""

from __future__ import annotations

from typing import TypeVar

from PySide6.QtWidgets import QWidget

W = TypeVar("W", bound=QWidget)


def named(widget: W, name: str, tip: str = "") -> W:
    """`widget`, given its objectName (how tests and code find it) and optionally a tooltip.

    PySide6 accepts these as constructor keywords, but its type stubs do not."""
    widget.setObjectName(name)
    if tip:
        widget.setToolTip(tip)
    return widget
