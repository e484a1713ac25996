"""Editing fields in the desktop application, driven with real mouse and key events on a
real crop: selection, merge/split/draw/reshape/grow, undo/redo, saving, the close
question, crash recovery, the review queue, training export and segmenting a folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox

from farmseg.editing.geometry import coverage_problems
from farmseg.editing.store import load_layer
from farmseg.gui import MainWindow
from farmseg.gui.overlays import ReviewedItem
from tests.conftest import ROOT, SAMPLE, write_crop
from tests.gui_support import (
    JOB_TIMEOUT_MS,
    action,
    discard_edits,
    layers_of,
    segment_and_wait,
)

SHOTS = Path("/tmp")
Buttons = QMessageBox.StandardButton


@pytest.fixture
def segmented(window, sample_crop, qtbot) -> MainWindow:
    window.open_raster(sample_crop)
    segment_and_wait(qtbot, window)
    return window


def layer_of(win: MainWindow):
    session = win.editor.session()
    assert session is not None
    return session.layer


def at(win: MainWindow, xy) -> QPoint:
    """The viewport position of map point `xy`."""
    return win.view.mapFromScene(QPointF(float(xy[0]), win.view.y_sign * float(xy[1])))


def click(qtbot, win: MainWindow, xy, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.mouseClick(win.view.viewport(), Qt.MouseButton.LeftButton, modifier, at(win, xy))


def drag(qtbot, win: MainWindow, start, end, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    viewport = win.view.viewport()
    qtbot.mousePress(viewport, Qt.MouseButton.LeftButton, modifier, at(win, start))
    for step in np.linspace(0.2, 1.0, 5):
        qtbot.mouseMove(viewport, at(win, np.add(start, step * np.subtract(end, start))))
    qtbot.mouseRelease(viewport, Qt.MouseButton.LeftButton, modifier, at(win, end))


def hover(win: MainWindow, xy) -> None:
    """The mouse moves over the map with no button down."""
    pos = QPointF(at(win, xy))
    viewport = win.view.viewport()
    QApplication.sendEvent(viewport, QMouseEvent(
        QEvent.Type.MouseMove, pos, viewport.mapToGlobal(pos), Qt.MouseButton.NoButton,
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier))


def inside(layer, fid: int) -> tuple[float, float]:
    point = shapely.point_on_surface(layer.geometry(fid))
    return point.x, point.y


def neighbours(layer) -> list[int]:
    """Two fields that share an edge."""
    pairs = layer.tree.query(layer.geoms, predicate="touches")
    for a, b in pairs.T:
        if a < b and layer.geoms[a].intersection(layer.geoms[b]).length > 10:
            return [int(layer.ids[a]), int(layer.ids[b])]
    raise AssertionError("no neighbouring fields")


def biggest(layer) -> int:
    return int(layer.ids[np.argmax(layer.columns["area_ha"])])


def use_tool(win: MainWindow, name: str) -> None:
    action(win, name).trigger()
    assert action(win, name).isChecked()


# ----------------------------------------------------------------- contract


def test_merge_then_undo_and_redo(segmented):
    win = segmented
    before = win.field_ids()
    pair = neighbours(layer_of(win))
    win.select_fields(pair)
    action(win, "actionMergeFields").trigger()
    assert len(win.field_ids()) == len(before) - 1
    assert not set(pair) & set(win.field_ids())
    (merged,) = set(win.field_ids()) - set(before)
    assert layer_of(win).columns["status"][layer_of(win).index_of([merged])[0]] == "edited"
    action(win, "actionUndo").trigger()
    assert win.field_ids() == before
    assert win.editor.session().selected == set(pair)  # undo selects them again
    action(win, "actionRedo").trigger()
    assert len(win.field_ids()) == len(before) - 1
    assert action(win, "actionUndo").shortcut().toString() == "Ctrl+Z"
    assert action(win, "actionRedo").shortcut().toString() == "Ctrl+Shift+Z"


def test_ids_are_those_of_the_command_line(segmented, sample_crop, tmp_path):
    out = tmp_path / "cli.gpkg"
    subprocess.run([sys.executable, "-m", "farmseg", "segment", str(sample_crop), "-o", str(out),
                    "-q"], check=True, timeout=120)
    assert segmented.field_ids() == load_layer(out).ids.tolist()


# ----------------------------------------------------------------- selection and edits


def test_click_shift_click_and_rubber_band_select(segmented, qtbot):
    win = segmented
    layer = layer_of(win)
    a, b = neighbours(layer)
    click(qtbot, win, inside(layer, a))
    assert win.editor.session().selected == {a}
    assert win.findChild(type(win.field_info), "fieldInfo").title() == "Selected field"
    click(qtbot, win, inside(layer, b), Qt.KeyboardModifier.ShiftModifier)
    assert win.editor.session().selected == {a, b}
    assert "2 fields" in win.field_info._values["field_id"].text()
    click(qtbot, win, inside(layer, b), Qt.KeyboardModifier.ControlModifier)
    assert win.editor.session().selected == {a}
    x0, y0, x1, y1 = shapely.total_bounds(layer.geoms)
    drag(qtbot, win, (x0 - 5, y0 - 5), (x1 + 5, y1 + 5), Qt.KeyboardModifier.ShiftModifier)
    assert win.editor.session().selected == set(win.field_ids())
    click(qtbot, win, (x0 - 50, y0 - 50))  # outside every field: nothing
    assert win.editor.session().selected == set()
    action(win, "actionDeleteFields").trigger()  # disabled without a selection
    assert len(win.field_ids()) == len(layer)


def test_delete_selected(segmented, qtbot):
    win = segmented
    layer = layer_of(win)
    fid = biggest(layer)
    click(qtbot, win, inside(layer, fid))
    action(win, "actionDeleteFields").trigger()
    assert fid not in win.field_ids()
    assert len(layers_of(win, "fields")[0].item.shapes) == len(layer) - 1
    action(win, "actionUndo").trigger()
    assert fid in win.field_ids()


def test_split_along_a_drawn_line(segmented, qtbot):
    win = segmented
    layer = layer_of(win)
    fid = biggest(layer)
    x0, y0, x1, y1 = layer.geometry(fid).bounds
    y = (y0 + y1) / 2
    use_tool(win, "actionSplitField")
    assert win.view.viewport().cursor().shape() == Qt.CursorShape.CrossCursor
    start, end = (x0 - 3, y), (x1 + 3, y)
    click(qtbot, win, start)
    qtbot.keyClick(win.view, Qt.Key.Key_Escape)  # abort: nothing happens
    assert win.view.tool().busy() is False
    click(qtbot, win, start)
    hover(win, end)
    assert win.view.tool().busy()
    qtbot.wait(50)  # the scene draws new items on its next turn
    win.grab().save(str(SHOTS / "farmseg_split_in_progress.png"))
    click(qtbot, win, end)
    qtbot.mouseDClick(win.view.viewport(), Qt.MouseButton.LeftButton, pos=at(win, end))
    after = layer_of(win)
    assert fid not in after.ids and len(after) == len(layer) + 1
    new = sorted(set(after.ids.tolist()) - set(layer.ids.tolist()))
    assert [after.columns["status"][after.index_of([i])[0]] for i in new] == ["edited"] * 2
    assert coverage_problems(after) == []
    action(win, "actionUndo").trigger()
    click(qtbot, win, start)  # Enter finishes as well
    click(qtbot, win, end)
    qtbot.keyClick(win.view, Qt.Key.Key_Return)
    assert len(layer_of(win)) == len(layer) + 1


def test_draw_a_field_snapped_to_its_neighbours(segmented, qtbot):
    win = segmented
    layer = layer_of(win)
    fid = biggest(layer)
    hole = layer.geometry(fid)
    win.select_fields([fid])
    action(win, "actionDeleteFields").trigger()
    ring = shapely.get_coordinates(hole.exterior)[:-1]
    corners = ring[np.linspace(0, len(ring) - 1, 6).astype(int)[:-1]]
    shared = set(map(tuple, shapely.get_coordinates(layer_of(win).geoms)))
    use_tool(win, "actionDrawField")
    for xy in corners:
        click(qtbot, win, xy + 1.0)  # about a screen pixel off
    qtbot.keyClick(win.view, Qt.Key.Key_Enter)
    after = layer_of(win)
    (new,) = set(after.ids.tolist()) - set(layer.ids.tolist())
    drawn = after.geometry(new)
    assert after.columns["status"][after.index_of([new])[0]] == "drawn"
    assert drawn.area > 0.3 * shapely.Polygon(corners).area
    snapped = [tuple(xy) in shared for xy in shapely.get_coordinates(drawn)]
    assert any(snapped)  # on the neighbours' vertices exactly
    assert coverage_problems(after) == []


def test_reshape_drag_add_and_delete_vertices(segmented, qtbot):
    win = segmented
    layer = layer_of(win)
    fid = biggest(layer)
    polygon = layer.geometry(fid)
    ring = shapely.get_coordinates(polygon.exterior)[:-1]
    centre = np.asarray(polygon.centroid.coords[0])
    use_tool(win, "actionReshape")
    vertex = ring[0]
    target = vertex + 0.15 * (centre - vertex)
    drag(qtbot, win, vertex, target)
    moved = layer_of(win).geometry(fid)
    assert np.hypot(*(shapely.get_coordinates(moved) - target).T).min() < 1.5
    assert layer_of(win).columns["status"][layer_of(win).index_of([fid])[0]] == "edited"
    ring = shapely.get_coordinates(moved.exterior)
    longest = np.argmax(np.hypot(*np.diff(ring, axis=0).T))
    middle = (ring[longest] + ring[longest + 1]) / 2
    count = len(ring)
    click(qtbot, win, middle)
    assert len(shapely.get_coordinates(layer_of(win).geometry(fid).exterior)) == count + 1
    click(qtbot, win, middle, Qt.KeyboardModifier.ShiftModifier)
    assert len(shapely.get_coordinates(layer_of(win).geometry(fid).exterior)) == count
    assert coverage_problems(layer_of(win)) == []


def test_grow_a_field_from_the_model(segmented, qtbot):
    win = segmented
    layer = layer_of(win)
    fid = biggest(layer)
    point = inside(layer, fid)
    win.select_fields([fid])
    action(win, "actionDeleteFields").trigger()
    use_tool(win, "actionGrowField")
    assert win.view.viewport().cursor().shape() == Qt.CursorShape.PointingHandCursor
    click(qtbot, win, point)
    qtbot.waitUntil(lambda: len(layer_of(win)) == len(layer), timeout=30_000)
    after = layer_of(win)
    new = after.field_at(*point)
    assert new is not None and new not in layer.ids
    assert after.columns["status"][after.index_of([new])[0]] == "drawn"
    assert after.geometry(new).intersection(layer.geometry(fid)).area > \
        0.5 * layer.geometry(fid).area


def test_tools_have_shortcuts_in_menus_and_tooltips(segmented):
    for name, key in (("actionSelect", "S"), ("actionSplitField", "K"),
                      ("actionDrawField", "D"), ("actionGrowField", "G"),
                      ("actionReshape", "R"), ("actionDeleteFields", "Del"),
                      ("actionMergeFields", "M"), ("actionSaveFields", "Ctrl+S"),
                      ("actionReviewNext", "N"), ("actionReviewPrevious", "P"),
                      ("actionAcceptField", "A"), ("actionMarkReviewed", "V")):
        found = action(segmented, name)
        assert found.shortcut().toString() == key
        assert f"({key})" in found.toolTip()
    edit_menu = next(menu for menu in segmented.menuBar().actions() if menu.text() == "&Edit")
    assert "actionSplitField" in [a.objectName() for a in edit_menu.menu().actions()]


# ----------------------------------------------------------------- saving


def answer(monkeypatch, button) -> list:
    asked: list = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: asked.append(a) or button)
    return asked


def save_as(monkeypatch, path: Path) -> None:
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(path), "GeoPackage (*.gpkg)"))


def test_save_and_reload(segmented, qtbot, tmp_path, monkeypatch):
    win = segmented
    pair = neighbours(layer_of(win))
    win.select_fields(pair)
    action(win, "actionMergeFields").trigger()
    action(win, "actionMarkReviewed").trigger()
    target = tmp_path / "edited.gpkg"
    save_as(monkeypatch, target)
    action(win, "actionSaveFields").trigger()
    assert not win.editor.session().dirty
    assert {"fields", "reviewed"} <= set(pyogrio.list_layers(target)[:, 0])
    saved = load_layer(target)
    assert saved.ids.tolist() == win.field_ids()
    assert "edited" in saved.columns["status"].tolist()
    assert not saved.reviewed.is_empty
    win.select_fields([win.field_ids()[0]])  # a second save writes to the same file
    action(win, "actionDeleteFields").trigger()
    action(win, "actionSaveFields").trigger()
    assert len(load_layer(target)) == len(win.field_ids())
    win.open_fields(target)
    qtbot.waitUntil(lambda: len(layers_of(win, "fields")) == 2)
    assert win.field_ids() == load_layer(target).ids.tolist()
    assert not win.editor.session().layer.reviewed.is_empty
    assert not list(tmp_path.glob(".*part*"))  # atomic: no temporary left


def test_closing_with_unsaved_edits_asks(segmented, tmp_path, monkeypatch):
    win = segmented
    win.select_fields(win.field_ids()[:1])
    action(win, "actionDeleteFields").trigger()
    asked = answer(monkeypatch, Buttons.Cancel)
    assert not win.close() and win.isVisible() and asked
    target = tmp_path / "kept.gpkg"
    save_as(monkeypatch, target)
    answer(monkeypatch, Buttons.Save)
    count = len(win.field_ids())
    assert win.close()
    assert len(load_layer(target)) == count


def test_opening_another_image_with_unsaved_edits_asks(segmented, tmp_path, monkeypatch):
    win = segmented
    count = len(win.field_ids())
    win.select_fields(win.field_ids()[:1])
    action(win, "actionDeleteFields").trigger()
    other = write_crop(SAMPLE, tmp_path / "other.tif", 0, 0, 128, 128)
    answer(monkeypatch, Buttons.Cancel)
    assert win.open_raster(other) is None
    assert len(win.field_ids()) == count - 1
    answer(monkeypatch, Buttons.Discard)
    assert win.open_raster(other) is not None
    assert len(win.editor.sessions()[0].layer) == count
    assert not win.editor.sessions()[0].dirty


CRASHING_APP = """
import sys
from pathlib import Path
from PySide6.QtCore import QTimer
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication
from farmseg.gui import MainWindow

app = QApplication(sys.argv[:1])
window = MainWindow(work_dir=Path(sys.argv[3]))
window.show()
window.open_raster(sys.argv[1])
window.open_fields(sys.argv[2])

def edit():
    if not window.field_ids():
        QTimer.singleShot(50, edit)
        return
    window.select_fields(window.field_ids()[:1])
    window.findChild(QAction, "actionDeleteFields").trigger()
    print("edited", flush=True)

QTimer.singleShot(50, edit)
app.exec()
"""


def test_unsaved_edits_survive_a_crash(qtbot, sample_crop, tmp_path, monkeypatch):
    fields = tmp_path / "fields.gpkg"
    with rasterio.open(sample_crop) as src:
        x0, y0, x1, y1 = src.bounds
    boxes = [shapely.box(x, y0, x + (x1 - x0) / 4, y1) for x in np.linspace(x0, x1, 5)[:-1]]
    from farmseg.editing.layer import from_field_layer
    from farmseg.editing.store import save_layer
    from farmseg.fields.clean import FieldLayer

    with rasterio.open(sample_crop) as src:
        crs = src.crs.to_wkt()
    from pyproj import CRS

    save_layer(from_field_layer(FieldLayer(np.asarray(boxes), {}, CRS(crs))), fields)
    script = tmp_path / "app.py"
    script.write_text(CRASHING_APP)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "FARMSEG_RECOVERY_SECONDS": "0.2",
           "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "PYTHONPATH": str(ROOT)}
    app = subprocess.Popen([sys.executable, str(script), str(sample_crop), str(fields),
                            str(tmp_path / "work")], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert app.stdout is not None and app.stdout.readline().strip() == "edited"
        recovery = tmp_path / "data" / "farmseg" / "recovery"
        deadline = time.monotonic() + 30
        while not list(recovery.glob("*.json")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(recovery.glob("*.json")), "no recovery file written"
    finally:
        app.send_signal(signal.SIGKILL)
        app.wait(10)
    asked = answer(monkeypatch, Buttons.Yes)
    win = MainWindow(work_dir=tmp_path / "work2")
    qtbot.addWidget(win, before_close_func=discard_edits)
    win.show()
    win.offer_recovery()
    assert asked and "Restore" in asked[0][1]
    assert win.field_ids() == [2, 3, 4]
    assert win.editor.session().dirty
    assert [layer.source for layer in layers_of(win, "image")] == [sample_crop]
    assert not list(recovery.glob("*.json"))  # offered once


# ----------------------------------------------------------------- review


def test_review_queue_next_previous_accept(segmented, qtbot):
    win = segmented
    layer = layer_of(win)
    review = win.review
    assert review.progress.text() == f"0 of {len(layer)} reviewed"
    win.activateWindow()
    win.view.setFocus()
    qtbot.keyClick(win.view, Qt.Key.Key_N)
    first = review.current_field()
    assert first is not None and win.editor.session().selected == {first}
    field_rect = layers_of(win, "fields")[0].item.shape_of(first).sceneBoundingRect()
    shown = win.view.visible_rect()
    assert shown.contains(field_rect) and shown.width() > 1.5 * field_rect.width() - 1
    qtbot.keyClick(win.view, Qt.Key.Key_N)
    second = review.current_field()
    qtbot.keyClick(win.view, Qt.Key.Key_P)
    assert review.current_field() == first != second
    qtbot.keyClick(win.view, Qt.Key.Key_A)
    after = layer_of(win)
    assert after.columns["status"][after.index_of([first])[0]] == "confirmed"
    assert review.progress.text() == f"1 of {len(layer)} reviewed"
    assert review.current_field() == second
    review.left_only.setChecked(True)
    hidden = [review.list.item(r).isHidden() for r in range(review.list.count())]
    assert sum(hidden) == 1
    qtbot.wait(50)
    win.grab().save(str(SHOTS / "farmseg_review_dock.png"))
    win.select_fields([second])  # an edit marks a field edited
    click(qtbot, win, inside(after, second))
    use_tool(win, "actionReshape")
    vertex = shapely.get_coordinates(after.geometry(second).exterior)[0]
    drag(qtbot, win, vertex, vertex + (6, 6))
    assert layer_of(win).columns["status"][layer_of(win).index_of([second])[0]] == "edited"


def test_reviewed_areas_are_marked_drawn_and_hatched(segmented, qtbot):
    win = segmented
    win.view.zoom_by(2.0)
    action(win, "actionMarkReviewed").trigger()
    reviewed = layer_of(win).reviewed
    assert not reviewed.is_empty
    image = layers_of(win, "image")[0].item.sceneBoundingRect()
    assert reviewed.area < 0.5 * image.width() * image.height()
    action(win, "actionZoomLayer").trigger()
    use_tool(win, "actionDrawReviewed")
    x0, y0, x1, y1 = shapely.total_bounds(layer_of(win).geoms)
    corners = [(x0 + 10, y0 + 10), (x0 + 120, y0 + 10), (x0 + 120, y0 + 120)]
    for xy in corners:
        click(qtbot, win, xy)
    qtbot.keyClick(win.view, Qt.Key.Key_Return)
    assert layer_of(win).reviewed.area > reviewed.area
    hatch = [item for item in layers_of(win, "fields")[0].item.childItems()
             if isinstance(item, ReviewedItem)]
    assert hatch and not hatch[0].path().isEmpty()
    assert hatch[0].brush().style() == Qt.BrushStyle.BDiagPattern
    qtbot.wait(50)
    win.grab().save(str(SHOTS / "farmseg_reviewed_hatch.png"))
    action(win, "actionUndo").trigger()
    assert layer_of(win).reviewed.equals(reviewed)


def test_export_corrections_as_training_data(segmented, tmp_path, qtbot, monkeypatch):
    win = segmented
    win.view.zoom_by(2.0)
    action(win, "actionMarkReviewed").trigger()
    folder = tmp_path / "train"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(folder))
    action(win, "actionExportTrainingData").trigger()
    picture = folder / "images" / "crop.tif"
    qtbot.waitUntil(lambda: (folder / "fields" / "crop.gpkg").exists(), timeout=30_000)
    from farmseg.training.corrections import find_reviewed, load_correction_labels

    with rasterio.open(picture) as src:
        assert src.width < 384 and src.height < 384
        shape, transform, crs = (src.height, src.width), src.transform, src.crs
    reviewed = find_reviewed(folder, "crop")
    assert reviewed == (folder / "fields" / "crop.gpkg", "reviewed")
    mask, valid, _ = load_correction_labels(folder / "fields" / "crop.gpkg", reviewed, shape,
                                            transform, crs)
    assert valid.mean() > 0.9 and (mask == 1).any()


# ----------------------------------------------------------------- batch


def test_segment_a_folder_loads_the_merged_layer(window, qtbot, tmp_path, monkeypatch):
    scenes = tmp_path / "scenes"
    write_crop(SAMPLE, scenes / "a.tif", 512, 576, 192, 192)
    write_crop(SAMPLE, scenes / "b.tif", 704, 576, 192, 192)
    output = tmp_path / "folder_fields.gpkg"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(scenes))
    save_as(monkeypatch, output)
    with qtbot.waitSignal(window.jobEnded, timeout=3 * JOB_TIMEOUT_MS):
        action(window, "actionSegmentFolder").trigger()
        assert action(window, "actionCancel").isEnabled()
    qtbot.waitUntil(lambda: bool(layers_of(window, "fields")), timeout=30_000)
    assert output.exists()
    assert window.field_ids() == load_layer(output).ids.tolist() and window.field_ids()
    assert layers_of(window, "fields")[0].source == output
