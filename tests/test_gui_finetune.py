"""Tools > Fine-tune, driven for real (offscreen) from the main window: a 1-epoch run on tiny
real crops, Cancel (honoured, or not and killed), bad labels from a folder, picked files or
polygons over an open image, an existing name, an install without torch, and a run on the
corrections of the open image followed by "Re-segment the rest with the new model"."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMessageBox, QPushButton

from farmseg.editing.geometry import coverage_problems
from farmseg.editing.resegment import TEXT, replaced_ids
from farmseg.errors import InputError
from farmseg.geoio.vectors import reproject
from farmseg.gui import finetune
from farmseg.gui.finetune import FineTuneDialog
from farmseg.gui.finetune_corrections import NOT_REVIEWED, ValidationItem
from farmseg.gui.finetune_job import FineTuneRequest, Labels, finetune_job
from farmseg.jobs import drain
from farmseg.models.bundle import load_bundle, user_models_dir
from tests.gui_support import JOB_TIMEOUT_MS, action, layers_of, segment_and_wait

RUN_TIMEOUT_MS = 180_000
SHOT = Path("/tmp/farmseg_resegment.png")


@pytest.fixture
def dialog(window, qtbot):  # noqa: F811 (the fixture imported above)
    action(window, "actionFineTune").trigger()
    found = window.findChild(FineTuneDialog)
    assert found is not None and found.isVisible()
    yield found
    if found.is_running():
        with qtbot.waitSignal(found.runEnded, timeout=RUN_TIMEOUT_MS):
            found.cancel()


def set_up(dialog: FineTuneDialog, labeled: Path, epochs: int = 1) -> None:
    """Tiny but real settings: the folder of labelled crops, 64 px crops, batches of 4."""
    form = dialog.form
    form.set_source("folder")
    form.folder.setText(str(labeled))
    form.name.setText("tuned")
    form.epochs.setValue(epochs)
    form.crop.setValue(64)
    form.batch.setValue(4)
    form.device.setCurrentIndex(form.device.findData("cpu"))


def start_and_wait(qtbot, dialog: FineTuneDialog) -> None:
    with qtbot.waitSignal(dialog.runEnded, timeout=RUN_TIMEOUT_MS):
        qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)


def error_text(dialog: FineTuneDialog) -> str:
    boxes = [box for box in dialog.findChildren(QMessageBox, "errorBox") if box.isVisible()]
    assert boxes, "no error message box"
    return boxes[-1].text()


def leftovers() -> list[str]:
    return [p.name for p in user_models_dir().glob(".*")]


def test_fine_tune_shows_curves_scores_and_selects_the_new_model(window, dialog, qtbot,
                                                                  labeled_dir):
    set_up(dialog, labeled_dir)
    assert "--base default" in dialog.command.text()
    # the learning rate is the trainer's choice unless one is set
    assert dialog.form.lr.text() == "automatic" and "--lr" not in dialog.command.text()
    dialog.form.lr.setValue(0.0005)
    assert "--lr 0.0005" in dialog.command.text()
    dialog.form.lr.setValue(0.0)
    start_and_wait(qtbot, dialog)
    assert not dialog.findChildren(QMessageBox, "errorBox")
    cells = [dialog.scores.item(row, col).text() for row in range(3) for col in range(2)]
    assert all(cell != "–" for cell in cells), cells
    assert all(-1.0 <= float(cell) <= 1.0 for cell in cells)
    assert "3 validation tiles" in dialog.scores_caption.text()
    assert len(dialog.chart.losses) == 1 and dialog.chart.ious[0] is not None
    assert "per epoch" in dialog.epoch_time.text()
    out = user_models_dir() / "tuned"
    assert str(out) in dialog.result_text.text()
    bundle = load_bundle(out)
    assert not bundle.meta["partial"] and bundle.has_onnx
    assert bundle.meta["training"]["base"] == "default"
    assert bundle.meta["training"]["command"].startswith("farmseg train --base default")
    assert window.run_panel.current_bundle().path == out
    assert leftovers() == []
    assert dialog.start_button.isEnabled() and not dialog.cancel_button.isEnabled()


def cancel_when(qtbot, dialog: FineTuneDialog, ready) -> None:
    """Start, wait until `ready()`, then click Cancel and wait for the run to end."""
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(ready, timeout=RUN_TIMEOUT_MS)
    assert dialog.is_running()
    with qtbot.waitSignal(dialog.runEnded, timeout=RUN_TIMEOUT_MS):
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert "Cancelled" in dialog.result_text.text()


def test_cancel_saves_the_best_epoch_as_a_complete_partial_model(window, dialog, qtbot,
                                                                 labeled_dir):
    set_up(dialog, labeled_dir, epochs=3)
    dialog.form.set_source("files")  # picked images; masks/ beside images/ are found
    dialog.form.set_files(sorted((labeled_dir / "images").glob("*.tif")))
    cancel_when(qtbot, dialog, lambda: len(dialog.chart.losses) == 1)
    bundle = load_bundle(user_models_dir() / "tuned")
    # the best so far: epoch 1, or the base model's weights (0) where epoch 1 scored lower
    assert bundle.meta["partial"] and bundle.meta["training"]["epochs_done"] in (0, 1)
    assert len(bundle.meta["training"]["history"]) == 1
    assert bundle.has_onnx
    assert "marked partial" in dialog.result_text.text()
    model = window.run_panel.model
    assert "tuned" in [model.itemText(i) for i in range(model.count())]
    assert leftovers() == []


def test_a_process_that_ignores_cancel_is_killed_and_leaves_no_half_written_model(
        dialog, qtbot, labeled_dir, monkeypatch):
    monkeypatch.setattr(finetune, "CANCEL_GRACE_S", 0.0)  # kill at once
    (user_models_dir() / ".tuned.k1ll3d").mkdir()  # as left by a process killed mid-write
    set_up(dialog, labeled_dir, epochs=3)
    dialog.form.val_share.setValue(0)  # no scoring: a quicker start
    cancel_when(qtbot, dialog, lambda: dialog.chart.running is not None)
    out = user_models_dir() / "tuned"
    assert not out.exists() or load_bundle(out).meta["partial"]
    assert leftovers() == []


def test_an_empty_mask_is_named_and_nothing_starts(dialog, qtbot, labeled_dir):
    mask = sorted((labeled_dir / "masks").glob("*.tif"))[1]
    with rasterio.open(mask, "r+") as ds:
        ds.write(np.zeros((1, ds.height, ds.width), dtype=ds.dtypes[0]))
    set_up(dialog, labeled_dir)
    start_and_wait(qtbot, dialog)
    assert f"{mask}: labels no field pixel (empty mask)" in error_text(dialog)
    assert "Nothing was trained" in error_text(dialog)
    assert dialog.chart.running is None and not dialog.chart.losses
    assert list(user_models_dir().iterdir()) == []


def test_polygons_over_too_little_of_the_open_image_are_named(window, qtbot, sample_crop,
                                                              tmp_path):
    with rasterio.open(sample_crop) as src:  # a 10 px square in the corner, in lon/lat
        x, y = src.transform * (0, 0)
        size = 10 * src.res[0]
        square = reproject(np.array([shapely.box(x, y - size, x + size, y)]),
                           src.crs.to_wkt(), "EPSG:4326")[0]
    polygons = tmp_path / "corner.geojson"
    feature = {"type": "Feature", "properties": {},
               "geometry": json.loads(shapely.to_geojson(square))}
    polygons.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    window.open_raster(sample_crop)
    action(window, "actionFineTune").trigger()
    dialog = window.findChild(FineTuneDialog)
    dialog.form.set_source("polygons")
    assert dialog.form.image.currentData() == str(sample_crop)
    dialog.form.polygons.setText(str(polygons))
    start_and_wait(qtbot, dialog)
    assert f"{polygons}: covers only" in error_text(dialog)
    assert list(user_models_dir().iterdir()) == []


def test_an_existing_name_is_replaced_only_when_confirmed(dialog, labeled_dir, monkeypatch):
    (user_models_dir() / "tuned").mkdir(parents=True)
    asked = []
    monkeypatch.setattr(finetune, "ask", lambda *args: asked.append(args[2]) or False)
    set_up(dialog, labeled_dir)
    dialog.start()
    assert asked and "'tuned' already exists" in asked[0]
    assert not dialog.is_running()


def test_without_torch_it_says_what_to_install(qtbot, monkeypatch):
    monkeypatch.setattr(finetune, "torch_installed", lambda: False)
    dialog = FineTuneDialog()
    qtbot.addWidget(dialog)
    label = dialog.findChild(QLabel, "torchMissingLabel")
    assert label is not None and 'pip install "farmseg[torch,gui]"' in label.text()
    assert not dialog.start_button.isEnabled()


def test_bad_picked_files_are_named_by_their_own_path(labeled_dir, tmp_path):
    """Picked files are linked into a scratch folder; messages name the user's file."""
    mask = sorted((labeled_dir / "masks").glob("*.tif"))[0]
    picked = tmp_path / "picked"
    picked.mkdir()
    image = (labeled_dir / "images" / mask.name).rename(picked / "tile.tif")
    own_mask = picked / "tile_mask.tif"
    with rasterio.open(mask) as src:
        profile = src.profile
    with rasterio.open(own_mask, "w", **profile) as out:
        out.write(np.full((1, profile["height"], profile["width"]), 7, dtype=profile["dtype"]))
    request = FineTuneRequest(Labels("files", [image, own_mask]), user_models_dir() / "x",
                              {"base": "default"}, tmp_path / "work")
    with pytest.raises(InputError) as caught:
        drain(finetune_job(request))
    assert str(caught.value).startswith(f"{own_mask}: mask classes must be 0")


def open_dialog(window) -> FineTuneDialog:
    action(window, "actionFineTune").trigger()
    found = [d for d in window.findChildren(FineTuneDialog) if d.isVisible()]
    assert found
    return found[-1]


def source_item(dialog: FineTuneDialog, kind: str):
    return dialog.form.source.model().item(dialog.form.source.findData(kind))


def edit_a_field_away_from(window, area: shapely.Geometry) -> list[int]:
    """Add a vertex to the field farthest from `area`; the ids of the edited fields."""
    layer = window.editor.session().layer
    far = int(np.argmax(shapely.distance(layer.geoms, area)))
    assert layer.geoms[far].distance(area) > 0
    ring = shapely.get_coordinates(layer.geoms[far].exterior)
    window.editor.insert_vertex(tuple((ring[0] + ring[1]) / 2), 1.0)
    layer = window.editor.session().layer
    edited = layer.ids[layer.columns["status"] == "edited"].tolist()
    assert int(layer.ids[far]) in edited
    return edited


def test_fine_tune_on_my_corrections_then_resegment_the_rest(window, qtbot, sample_crop,
                                                             tmp_path):
    window.open_raster(sample_crop)
    segment_and_wait(qtbot, window)
    dialog = open_dialog(window)
    item = source_item(dialog, "corrections")
    assert not item.isEnabled() and item.toolTip() == NOT_REVIEWED
    dialog.reject()
    window.view.zoom_by(2.0)
    action(window, "actionMarkReviewed").trigger()
    session = window.editor.session()
    reviewed = session.layer.reviewed
    edited = edit_a_field_away_from(window, reviewed)
    dialog = open_dialog(window)
    assert source_item(dialog, "corrections").isEnabled()
    set_up(dialog, tmp_path)
    dialog.form.set_source("corrections")
    start_and_wait(qtbot, dialog)
    assert not dialog.findChildren(QMessageBox, "errorBox")
    assert "outlined block of your reviewed area" in dialog.result_text.text()
    assert "validation block" in dialog.result_text.text()  # the verdict line
    fields = layers_of(window, "fields")[0]
    outline = [i for i in fields.item.childItems() if isinstance(i, ValidationItem)]
    assert outline and not outline[0].path().isEmpty()
    button = dialog.findChild(QPushButton, "resegmentRestButton")
    assert button is not None and button.isVisible() and button.isEnabled()
    before = session.layer
    with qtbot.waitSignal(dialog.corrections.resegmented, timeout=JOB_TIMEOUT_MS) as said:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert said.args[0].startswith("Re-segmented:"), said.args[0]
    after = session.layer
    kept = np.setdiff1d(before.ids, replaced_ids(before))
    assert set(edited) <= set(kept.tolist())
    for fid in kept:
        assert after.geometry(fid).equals(before.geometry(fid)), fid
    assert set(after.columns["status"][np.isin(after.ids, edited)]) == {"edited"}
    assert not np.isin(replaced_ids(before), after.ids).any()
    assert after.reviewed.equals(reviewed) and coverage_problems(after) == []
    assert session.stack.undoText() == TEXT
    action(window, "actionZoomLayer").trigger()
    qtbot.wait(100)
    window.grab().save(str(SHOT))
    session.stack.undo()
    assert session.layer.ids.tolist() == before.ids.tolist()
