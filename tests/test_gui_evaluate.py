"""File > Add vector layer and Tools > Evaluate against reference, driven for real (offscreen):
the sample's reference polygons over a crop of it, scored against a segmentation and against
a polygon file, the report, bad vector files, drag and drop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QFileDialog, QLabel, QMessageBox, QSlider, QTreeWidget

from farmseg.fields.export import write_fields
from farmseg.geoio.vectors import read_polygons, reproject
from farmseg.gui import MainWindow
from farmseg.gui.evaluation import FIGURES, EvaluateDialog
from farmseg.gui.items import FIELD_COLOR, POLYGON_COLOR
from farmseg.gui.layers import Layer
from farmseg.scoring.evaluate import Score, evaluate_files
from tests.conftest import SAMPLE_FIELDS
from tests.gui_support import action, error_box, layers_of, segment_and_wait

REFERENCE_COUNT = len(read_polygons(SAMPLE_FIELDS)[0])


def add_vector(win: MainWindow, qtbot, path: Path) -> Layer:
    """Add `path` as a vector layer and wait until all its outlines are drawn."""
    count = len(layers_of(win, "vector"))
    win.add_vector(path)
    qtbot.waitUntil(lambda: len(layers_of(win, "vector")) > count)
    layer = layers_of(win, "vector")[0]
    qtbot.waitUntil(lambda: layer.item.complete)
    return layer


def open_evaluation(win: MainWindow, qtbot) -> EvaluateDialog:
    """Tools > Evaluate against reference, once its first scores are shown."""
    action(win, "actionEvaluate").trigger()
    dialog = win.findChild(EvaluateDialog)
    assert dialog is not None and dialog.isVisible()
    qtbot.waitUntil(lambda: dialog.scored is not None, timeout=30_000)
    return dialog


def shown(dialog: EvaluateDialog, key: str) -> str:
    return dialog.findChild(QLabel, f"score_{key}").text()


def assert_shows(dialog: EvaluateDialog, expected: Score) -> None:
    """Every figure as the core computes it: F1 and rates to 3 decimals, counts exactly."""
    for key, _, fmt, _ in FIGURES:
        assert shown(dialog, key) == fmt.format(getattr(expected, key)), key


def shrunk_reference(target: Path, metres: float, drop_every: int) -> Path:
    """Predicted fields made from the reference: each shrunk, every `drop_every`-th left out."""
    geoms, crs = read_polygons(SAMPLE_FIELDS)
    geoms = shapely.buffer(reproject(geoms, crs, "EPSG:32615"), -metres)
    geoms = reproject(np.delete(geoms, np.s_[::drop_every]), "EPSG:32615", "EPSG:4326")
    features = [{"type": "Feature", "properties": {}, "geometry": json.loads(
        shapely.to_geojson(geom))} for geom in geoms]
    target.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return target


def test_vector_layer_shows_outlines_in_their_own_colour(window, sample_crop, qtbot,
                                                         monkeypatch):
    image = window.open_raster(sample_crop)
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        lambda *a, **k: ([str(SAMPLE_FIELDS)], ""))
    action(window, "actionAddVector").trigger()
    qtbot.waitUntil(lambda: len(layers_of(window, "vector")) == 1)
    (layer,) = layers_of(window, "vector")
    qtbot.waitUntil(lambda: layer.item.complete)
    assert layer.item.count == len(layer.item.shapes) == REFERENCE_COUNT > 0
    assert f"(polygons, {REFERENCE_COUNT})" in layer.title
    assert layer.crs == image.crs  # reprojected from the file's WGS84 to the map's UTM
    assert layer.item.sceneBoundingRect().contains(image.item.sceneBoundingRect().center())
    assert layer.item.shapes[0].pen().color() == POLYGON_COLOR != FIELD_COLOR
    entry = window.findChild(QTreeWidget, "layerTree").topLevelItem(0)
    assert entry.text(0) == layer.title
    entry.setCheckState(0, Qt.CheckState.Unchecked)
    assert not layer.item.isVisible()
    window.findChild(QSlider, "opacitySlider").setValue(40)
    assert layer.item.opacity() == pytest.approx(0.4)
    assert not action(window, "actionEvaluate").isEnabled()  # nothing to score yet
    assert window.prefs.recent_files[0] == str(SAMPLE_FIELDS)


def test_evaluate_a_segmentation_shows_the_core_figures_and_saves_reports(
        window, sample_crop, qtbot, tmp_path, monkeypatch):
    window.open_raster(sample_crop)
    add_vector(window, qtbot, SAMPLE_FIELDS)
    assert not action(window, "actionEvaluate").isEnabled()
    segment_and_wait(qtbot, window)
    assert action(window, "actionEvaluate").isEnabled()
    (fields,) = layers_of(window, "fields")
    dialog = open_evaluation(window, qtbot)
    assert dialog.pred.currentData() is fields
    assert dialog.ref.currentData() is layers_of(window, "vector")[0]
    assert 0.5 < float(shown(dialog, "f1")) <= 1.0
    exported = write_fields(fields.fields, tmp_path / "fields.gpkg")
    assert_shows(dialog, evaluate_files(exported, SAMPLE_FIELDS, sample_crop).score)
    assert "crop.tif" in dialog.findChild(QLabel, "evaluateNote").text()

    (matches,) = layers_of(window, "matches")  # the match map lies on the image
    image = layers_of(window, "image")[0].item.sceneBoundingRect()
    assert matches.item.sceneBoundingRect().toRect() == image.toRect()

    report = tmp_path / "out" / "accuracy"
    report.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(report), "HTML (*.html)"))
    dialog.save_button.click()
    written = report.with_suffix(".html")
    qtbot.waitUntil(written.exists, timeout=10_000)
    assert "<h1>crop.tif vs sample_fields_reference.geojson</h1>" in written.read_text()
    assert window.prefs.last_folder == str(written.parent)

    existing = tmp_path / "out" / "accuracy.json"  # replaced only when the user agrees
    existing.write_text("old")
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(existing), "JSON (*.json)"))
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    dialog.save_button.click()
    qtbot.wait(300)
    assert existing.read_text() == "old"
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    dialog.save_button.click()
    qtbot.waitUntil(lambda: existing.read_text() != "old", timeout=10_000)
    summary = json.loads(existing.read_text())["summary"]
    assert f"{summary['f1']:.3f}" == shown(dialog, "f1")
    dialog.close()


def test_evaluate_a_polygon_file_against_the_reference(window, sample_crop, qtbot, tmp_path):
    predicted = shrunk_reference(tmp_path / "predicted.geojson", 3.0, drop_every=4)
    window.open_raster(sample_crop)
    pred_layer = add_vector(window, qtbot, predicted)
    assert not action(window, "actionEvaluate").isEnabled()
    ref_layer = add_vector(window, qtbot, SAMPLE_FIELDS)
    assert action(window, "actionEvaluate").isEnabled()
    dialog = open_evaluation(window, qtbot)  # default: the newest vector layer is the reference
    assert (dialog.pred.currentData(), dialog.ref.currentData()) == (pred_layer, ref_layer)
    expected = evaluate_files(predicted, SAMPLE_FIELDS, sample_crop).score
    assert 0.5 < expected.f1 < 1.0
    assert_shows(dialog, expected)

    dialog.ref.setCurrentIndex(dialog.ref.findData(pred_layer))  # the same layer twice
    assert dialog.scored is None and not dialog.save_button.isEnabled()
    assert shown(dialog, "f1") == "–"
    assert "two different" in dialog.findChild(QLabel, "evaluateNote").text()
    dialog.pred.setCurrentIndex(dialog.pred.findData(ref_layer))  # the other way round
    qtbot.waitUntil(lambda: dialog.scored is not None, timeout=10_000)
    assert_shows(dialog, evaluate_files(SAMPLE_FIELDS, predicted, sample_crop).score)
    assert len(layers_of(window, "matches")) == 2
    dialog.close()


def test_polygons_without_an_image_ask_for_one(window, qtbot, tmp_path):
    first = add_vector(window, qtbot, shrunk_reference(tmp_path / "p.geojson", 3.0, 4))
    add_vector(window, qtbot, SAMPLE_FIELDS)
    assert first.crs.to_epsg() == 4326  # the first layer sets the map's CRS
    action(window, "actionEvaluate").trigger()
    dialog = window.findChild(EvaluateDialog)
    assert "Open the image" in dialog.findChild(QLabel, "evaluateNote").text()
    dialog.close()


@pytest.mark.parametrize("content, problem", [
    ("these are field notes, not polygons\n", "cannot read as a vector file"),
    ('{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, '
     '"geometry": {"type": "Point", "coordinates": [-95.4, 39.7]}}]}', "no polygons"),
])
def test_bad_vector_file_shows_one_line_naming_it(window, qtbot, tmp_path, content, problem):
    bad = tmp_path / "notes.geojson"
    bad.write_text(content)
    window.add_vector(bad)
    qtbot.waitUntil(lambda: any(box.isVisible() for box in window.findChildren(QMessageBox)))
    box = error_box(window)
    assert "notes.geojson" in box.text() and problem in box.text()
    assert "\n" not in box.text() and "Traceback" not in box.text()
    assert window.layers() == []
    box.close()


def test_dropped_vector_file_becomes_a_layer(window, sample_crop, qtbot):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(sample_crop)), QUrl.fromLocalFile(str(SAMPLE_FIELDS))])
    window.dropEvent(QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                                Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier))
    qtbot.waitUntil(lambda: len(window.layers()) == 2)
    assert [layer.kind for layer in window.layers()] == ["vector", "image"]


def test_evaluation_failure_names_the_file(window, sample_crop, qtbot, tmp_path):
    reference = tmp_path / "parcels.geojson"
    reference.write_text(SAMPLE_FIELDS.read_text())
    window.open_raster(sample_crop)
    add_vector(window, qtbot, shrunk_reference(tmp_path / "predicted.geojson", 3.0, 4))
    add_vector(window, qtbot, reference)
    reference.unlink()  # gone since it was added
    action(window, "actionEvaluate").trigger()
    dialog = window.findChild(EvaluateDialog)
    qtbot.waitUntil(lambda: any(box.isVisible() for box in dialog.findChildren(QMessageBox)))
    box = error_box(dialog)
    assert "parcels.geojson" in box.text() and "\n" not in box.text()
    assert dialog.findChild(QLabel, "evaluateNote").text() == "Evaluation failed."
    assert layers_of(window, "matches") == []
    box.close()
    dialog.close()


def test_closing_the_dialog_before_the_scores_arrive(window, sample_crop, qtbot, tmp_path):
    window.open_raster(sample_crop)
    add_vector(window, qtbot, shrunk_reference(tmp_path / "predicted.geojson", 3.0, 4))
    add_vector(window, qtbot, SAMPLE_FIELDS)
    action(window, "actionEvaluate").trigger()
    window.findChild(EvaluateDialog).close()
    qtbot.waitUntil(lambda: window.findChild(EvaluateDialog) is None)
    qtbot.wait(500)  # the answer comes to a deleted dialog: dropped, no error
    assert action(window, "actionEvaluate").isEnabled()
