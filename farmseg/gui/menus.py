"""Building blocks of the main window's commands: actions, menus, the recent-files menu."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QMenuBar, QStyle, QWidget

from farmseg.gui.settings import Prefs


def make_action(parent: QWidget, name: str, text: str, slot: Callable[[], object],
                shortcut: str | None = None, icon: QStyle.StandardPixmap | None = None,
                tip: str = "") -> QAction:
    """An action named `name` (its objectName) that calls `slot()` when triggered."""
    action = QAction(text, parent)
    action.setObjectName(name)
    if shortcut:
        action.setShortcut(QKeySequence(shortcut))
    if icon is not None:
        action.setIcon(parent.style().standardIcon(icon))
    action.setStatusTip(tip)
    action.setToolTip(f"{tip} ({shortcut})" if shortcut and tip else tip or text)
    action.triggered.connect(lambda _checked=False: slot())
    return action


def add_menu(bar: QMenuBar, title: str, entries: Iterable[QAction | QMenu | None]) -> QMenu:
    """A menu of `entries`: actions, submenus, and None for a separator."""
    menu = bar.addMenu(title)
    for entry in entries:
        if entry is None:
            menu.addSeparator()
        elif isinstance(entry, QMenu):
            menu.addMenu(entry)
        else:
            menu.addAction(entry)
    return menu


class RecentMenu(QMenu):
    """File > Open Recent: the preferences' recent files, listed afresh each time it opens;
    choosing one calls `open_file(path)`."""

    def __init__(self, prefs: Prefs, open_file: Callable[[str], None],
                 parent: QWidget | None = None) -> None:
        super().__init__("Open &Recent", parent)
        self._prefs, self._open_file = prefs, open_file
        self.aboutToShow.connect(self._fill)

    def _fill(self) -> None:
        self.clear()
        for path in self._prefs.recent_files:
            self.addAction(path, partial(self._open_file, path))
        if not self.isEmpty():
            self.addSeparator()
        self.addAction("Clear list", self._prefs.clear_recent)
