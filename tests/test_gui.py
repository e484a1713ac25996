"""The desktop application, driven for real (offscreen): open, segment, cancel, export, errors."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QLabel,
    QMessageBox,
    QProgressBar,
    QSlider,
    QTreeWidget,
)

from farmseg import __version__
from farmseg.gui import MainWindow
from farmseg.gui.dialogs import about_text
from farmseg.gui.finetune import FineTuneDialog
from farmseg.gui.logs import exception_hook, recent_log
from farmseg.gui.render import overview_rgba
from farmseg.models.bundle import load_bundle
from tests.conftest import SAMPLE
from tests.gui_support import (
    JOB_TIMEOUT_MS,
    action,
    error_box,
    layers_of,
    sample_pixels,
    segment_and_wait,
    write_like_sample,
)


def test_pyside_keeps_its_references():
    from farmseg.gui.app import pyside_drops_references

    assert not pyside_drops_references(), "this PySide6 build crashes on this Python (see app.py)"


def test_open_shows_the_layer_and_enables_segment(window, sample_crop):
    assert action(window, "actionFineTune").isEnabled()
    assert not action(window, "actionSegment").isEnabled()
    assert not action(window, "actionExport").isEnabled()
    assert window.findChild(QProgressBar, "progressBar") is not None
    layer = window.open_raster(sample_crop)
    assert layer is not None and layer.kind == "image"
    assert layer.item.isVisible() and layer.item.scene() is window.view.scene()
    assert action(window, "actionSegment").isEnabled()
    assert not action(window, "actionCancel").isEnabled()
    assert "EPSG:32615" in window.findChild(QLabel, "status_crs").text()
    assert window.view.visible_rect().contains(layer.item.sceneBoundingRect().center())
    entry = window.findChild(QTreeWidget, "layerTree").topLevelItem(0)
    entry.setCheckState(0, Qt.CheckState.Unchecked)
    assert not layer.item.isVisible()
    window.findChild(QSlider, "opacitySlider").setValue(40)
    assert layer.item.opacity() == pytest.approx(0.4)


def test_segment_select_and_export(window, sample_crop, qtbot, tmp_path, monkeypatch):
    window.open_raster(sample_crop)
    ticks = [time.monotonic()]
    timer = QTimer(interval=20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    with qtbot.waitSignal(window.jobEnded, timeout=JOB_TIMEOUT_MS):
        action(window, "actionSegment").trigger()
        assert action(window, "actionCancel").isEnabled()
        assert not action(window, "actionSegment").isEnabled()
        window.segment()  # a second run is refused, politely
        assert "already running" in window.statusBar().currentMessage()
    timer.stop()
    assert max(np.diff(ticks)) < 1.0, "the event loop stalled while segmenting"
    assert action(window, "actionSegment").isEnabled()
    assert not action(window, "actionCancel").isEnabled()
    assert action(window, "actionExport").isEnabled()
    assert len(layers_of(window, "probability")) == 1
    (fields,) = layers_of(window, "fields")
    count = len(fields.fields)
    assert count > 0
    assert "fields" in window.run_panel.summary.text()
    qtbot.waitUntil(lambda: len(fields.item.shapes) == count)

    # clicking inside a field selects it and shows its attributes
    window.view.zoom_to(fields.item.shapes[0].sceneBoundingRect())
    inside = shapely.point_on_surface(fields.fields.geoms[0])
    pos = window.view.mapFromScene(QPointF(inside.x, window.view.y_sign * inside.y))
    qtbot.mouseClick(window.view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    assert window.findChild(QLabel, "field_field_id").text() == str(fields.fields.columns[
        "field_id"][0])

    # export: the format comes from the chosen filter when the name has no suffix
    target = tmp_path / "out" / "my_fields"
    target.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(target), "GeoPackage (*.gpkg)"))
    action(window, "actionExport").trigger()
    written = target.with_suffix(".gpkg")
    qtbot.waitUntil(written.exists, timeout=30_000)
    assert pyogrio.read_info(written, layer="fields")["features"] == count

    # an existing file is only replaced after asking
    stamp = written.stat().st_mtime_ns
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(written), "GeoJSON (*.geojson)"))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    action(window, "actionExport").trigger()
    qtbot.wait(300)
    assert written.stat().st_mtime_ns == stamp
    geojson = tmp_path / "out" / "fields.geojson"
    geojson.write_text("old")
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(geojson), "GeoJSON (*.geojson)"))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    action(window, "actionExport").trigger()
    qtbot.waitUntil(lambda: geojson.read_text() != "old", timeout=30_000)
    assert pyogrio.read_info(geojson)["features"] == count


def test_cancel_stops_quickly_and_leaves_no_files(window, qtbot, tmp_path):
    window.open_raster(SAMPLE)  # 9 tiles: long enough to cancel in the middle
    bar = window.findChild(QProgressBar, "progressBar")
    action(window, "actionSegment").trigger()
    qtbot.waitUntil(lambda: bar.maximum() > 1 and bar.value() >= 1, timeout=JOB_TIMEOUT_MS)
    assert any((tmp_path / "work").rglob("*")), "the run should have started writing"
    started = time.monotonic()
    with qtbot.waitSignal(window.jobEnded, timeout=10_000):
        action(window, "actionCancel").trigger()
    assert time.monotonic() - started < 3.0
    assert list((tmp_path / "work").rglob("*")) == []
    assert layers_of(window, "fields") == []
    assert action(window, "actionSegment").isEnabled()
    assert not action(window, "actionCancel").isEnabled()
    assert "Cancelled" in window.run_panel.summary.text()


def test_bad_file_shows_a_message_box(window, tmp_path):
    bad = tmp_path / "notes.tif"
    bad.write_text("these are field notes, not an image\n")
    assert window.open_raster(bad) is None
    box = error_box(window)
    assert "notes.tif" in box.text()
    assert box.detailedText()
    assert window.layers() == []
    box.close()


def test_model_that_does_not_fit_the_image_is_reported(window, qtbot, tmp_path):
    grey = write_like_sample(tmp_path / "grey.tif", sample_pixels(128)[:1])
    window.open_raster(grey)
    segment_and_wait(qtbot, window)
    assert "band" in error_box(window).text()
    assert layers_of(window, "fields") == []
    assert list((tmp_path / "work").rglob("*")) == []


def test_fine_tune_opens_a_dialog_without_an_image(window, qtbot):
    action(window, "actionFineTune").trigger()
    dialog = window.findChild(FineTuneDialog)
    assert dialog is not None and dialog.isVisible()
    assert "farmseg train --base default" in " ".join(
        label.text() for label in dialog.findChildren(QLabel))
    dialog.close()


def test_about_names_version_licences_and_model_provenance():
    text = about_text(load_bundle("default"))
    for part in (__version__, "MIT", "LGPLv3", "NAIP", "Radix", "Trained", "val_field_f1",
                 "val_selection_score"):
        assert part in text


def test_settings_and_recent_files_persist(qtbot, tmp_path, sample_crop):
    first = MainWindow(work_dir=tmp_path / "work1")
    qtbot.addWidget(first)
    first.open_raster(sample_crop)
    first.run_panel.tile.setValue(256)
    first.close()
    second = MainWindow(work_dir=tmp_path / "work2")
    qtbot.addWidget(second)
    assert second.run_panel.tile.value() == 256
    assert second.prefs.recent_files[0] == str(sample_crop.resolve())
    assert second.prefs.last_folder == str(sample_crop.parent)
    file_menu = second.menuBar().actions()[0].menu()
    recent = next(a.menu() for a in file_menu.actions() if a.text() == "Open &Recent")
    recent.aboutToShow.emit()
    recent.actions()[0].trigger()
    assert [layer.name for layer in second.layers()] == [sample_crop.name]


def test_drop_opens_the_file(window, sample_crop):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(sample_crop))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert [layer.name for layer in window.layers()] == [sample_crop.name]


def test_wheel_zoom_keeps_the_cursor_point_and_drag_pans(window, sample_crop, qtbot):
    window.open_raster(sample_crop)
    view = window.view
    at = QPoint(view.viewport().width() // 3, view.viewport().height() // 3)
    before = view.mapToScene(at)
    scale = view.scale_factor()
    view.zoom_by(2.0, at)
    assert view.scale_factor() == pytest.approx(2 * scale)
    after = view.mapToScene(at)
    assert abs(after.x() - before.x()) < 2 and abs(after.y() - before.y()) < 2
    centre = view.visible_rect().center()
    viewport = view.viewport()
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, pos=QPoint(200, 200))
    qtbot.mouseMove(viewport, QPoint(260, 230))
    assert window.findChild(QLabel, "status_coords").text().startswith("x ")
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, pos=QPoint(260, 230))
    moved = view.visible_rect().center() - centre
    assert moved.x() < 0 and moved.y() < 0  # the map follows the mouse


def test_sixteen_bit_multiband_images_are_stretched_with_nodata_transparent(tmp_path):
    rgb = sample_pixels(64).astype(np.uint16) * 40 + 1000
    data = np.concatenate([rgb, rgb[:1]])
    data[:, :8, :8] = 0
    path = write_like_sample(tmp_path / "u16.tif", data, nodata=0)
    with rasterio.open(path) as ds:
        style, rgba = overview_rgba(ds)
    assert style.bands == (1, 2, 3)
    assert min(style.low) > 1000 and max(style.high) < 11_200
    assert (rgba[:8, :8, 3] == 0).all() and (rgba[8:, 8:, 3] == 255).all()
    assert rgba[..., :3].min() == 0 and rgba[..., :3].max() == 255


def test_main_opens_segments_and_logs(qtbot, sample_crop, tmp_path):
    from farmseg.gui import app as gui_app

    def close_when_done() -> None:
        win = next(w for w in QApplication.topLevelWidgets()
                   if isinstance(w, MainWindow) and w.isVisible())
        win.jobEnded.connect(win.close)

    QTimer.singleShot(0, close_when_done)
    try:
        assert gui_app.main([str(sample_crop)], segment=True) == 0
    finally:
        for handler in list(logging.getLogger("farmseg").handlers):
            if isinstance(handler, RotatingFileHandler):
                logging.getLogger("farmseg").removeHandler(handler)
                handler.close()
    log = next((tmp_path / "data").rglob("farmseg.log"))
    assert "segmented" in log.read_text()


def test_view_extent_segments_only_what_is_shown(window, sample_crop, qtbot):
    image = window.open_raster(sample_crop)
    window.view.zoom_by(2.0)
    shown = window.view.visible_rect()
    window.run_panel.extent.setCurrentText("Current view")
    segment_and_wait(qtbot, window)
    (prob,) = layers_of(window, "probability")
    width, height = prob.item.boundingRect().width(), prob.item.boundingRect().height()
    assert 0 < width * height < 0.5 * 384 * 384
    assert shown.adjusted(-2, -2, 2, 2).contains(prob.item.sceneBoundingRect())
    assert image.item.sceneBoundingRect().contains(prob.item.sceneBoundingRect())


def test_closing_during_a_run_asks_then_cancels_cleanly(window, sample_crop, qtbot, tmp_path,
                                                         monkeypatch):
    window.open_raster(sample_crop)
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a) or QMessageBox.StandardButton.Yes)
    action(window, "actionSegment").trigger()
    with qtbot.waitSignal(window.jobEnded, timeout=10_000):
        assert not window.close()  # refused for now: the job is cancelled first
        assert asked and window.isVisible()
    qtbot.waitUntil(lambda: not window.isVisible())
    assert not (tmp_path / "work").exists() or list((tmp_path / "work").rglob("*")) == []


def test_unexpected_errors_are_logged_and_reported():
    seen = []
    with exception_hook(lambda reason, details: seen.append((reason, details))):
        try:
            raise ValueError("boom")
        except ValueError:
            sys.excepthook(*sys.exc_info())
    assert seen == [("ValueError: boom", seen[0][1])] and "Traceback" in seen[0][1]
    assert "boom" in recent_log()


def test_model_list_shows_new_user_models(window, monkeypatch):
    user = Path(os.environ["FARMSEG_MODEL_DIR"]) / "my_model"
    user.mkdir(parents=True)
    meta = json.loads((load_bundle("default").path / "farmseg.json").read_text())
    (user / "farmseg.json").write_text(json.dumps({**meta, "name": "my_model"}))
    (user / "model.safetensors").write_bytes(b"")
    combo = window.run_panel.model
    monkeypatch.setattr(QComboBox, "showPopup", lambda self: None)
    combo.showPopup()
    assert "my_model" in [combo.itemText(i) for i in range(combo.count())]
    assert combo.currentText() == "default"


def test_the_default_model_is_chosen_by_the_image_pixel_size(window):
    """The bundled default runs as `--model default` (the bundled model for the raster's
    pixel size, e.g. the coarse model for 10 m imagery), and the model box says so."""
    from farmseg.models.bundle import pixel_size_defaults

    panel = window.run_panel
    assert panel.model.currentText() == "default" and panel.settings().model == "default"
    for name, low, _ in pixel_size_defaults():
        if name != "default":
            assert f"{name} for {low:g} m pixels or coarser" in panel.model_info.text()
    panel.model.setCurrentIndex(panel.model.findText("fast"))
    assert panel.settings().model == "fast"


UNGUARDED_SCRIPT = """
import json
import sys
import time

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from farmseg.gui import MainWindow

app = QApplication([])
window = MainWindow(work_dir=sys.argv[2])
window.show()
window.open_raster(sys.argv[1])
ticks = [time.monotonic()]
timer = QTimer(interval=20)
timer.timeout.connect(lambda: ticks.append(time.monotonic()))
loop = QEventLoop()
window.jobEnded.connect(loop.quit)
QTimer.singleShot(90_000, loop.quit)
timer.start()
window.actionSegment.trigger()
loop.exec()
fields = [layer for layer in window.layers() if layer.kind == "fields"]
while not all(layer.outlines.complete for layer in fields):
    app.processEvents()
timer.stop()
print(json.dumps({"fields": len(fields[0].fields) if fields else 0,
                  "export": window.actionExport.isEnabled(),
                  "max_gap_ms": 1000 * max(b - a for a, b in zip(ticks, ticks[1:])),
                  "summary": window.run_panel.summary.text()}))
window.close()
"""


def test_a_script_without_a_main_guard_can_segment(sample_crop, tmp_path):
    """The job process never re-imports the caller's __main__ (as multiprocessing's spawn
    would, failing in a script without `if __name__ == "__main__":`)."""
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "XDG_DATA_HOME": str(tmp_path / "data"),
           "XDG_CONFIG_HOME": str(tmp_path / "config")}
    run = subprocess.run([sys.executable, str(script), str(sample_crop), str(tmp_path / "work")],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["fields"] > 0 and result["export"], result
    assert result["max_gap_ms"] < 250, result


def test_every_edit_tool_shows_at_1000_px_and_one_row_suffices_when_wide(window, qtbot):
    from PySide6.QtWidgets import QToolBar

    tools = window.findChild(QToolBar, "editToolBar")
    hidden = [a.text() for a in tools.actions() if not tools.widgetForAction(a).isVisible()]
    assert window.width() == 1000 and hidden == []  # none behind the overflow arrow
    assert window.toolBarBreak(tools)
    window.resize(1600, 700)
    qtbot.waitUntil(lambda: not window.toolBarBreak(tools))
