"""The fine-tune dialog's settings: base model, labelled data, new model name, training options."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QRegularExpression, Qt, Signal
from PySide6.QtGui import QRegularExpressionValidator, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from farmseg.fields.export import VECTOR_FILTER
from farmseg.gui.finetune_corrections import EXPLAIN, MyCorrections
from farmseg.gui.finetune_job import Labels
from farmseg.gui.widgets import named
from farmseg.models.bundle import (
    bundle_argument,
    bundled_models_dir,
    list_bundles,
    user_models_dir,
)

SOURCES = (("folder", "Training folder (images/ + masks/ or fields/)"),
           ("files", "Image files with their masks or polygons"),
           ("polygons", "Polygon file over an open image"),
           ("corrections", "My corrections on the open image"))
LABEL_FILTER = ("Images, masks and polygons (*.tif *.tiff *.geojson *.json *.gpkg *.shp);;"
                "All files (*)")
NAME_RE = r"[\w][\w .-]{0,79}"  # a plain folder name: no separators, not hidden


def _browse_row(edit: QLineEdit, pick: Callable[[], None]) -> QWidget:
    """`edit` with a Browse button that calls `pick`."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    button = QPushButton("Browse…")
    button.clicked.connect(lambda _checked=False: pick())
    layout.addWidget(edit, 1)
    layout.addWidget(button)
    return row


class FineTuneForm(QWidget):
    """Everything a fine-tuning run is started with. `problem()` says what is missing."""

    changed = Signal()

    def __init__(self, images: list[Path], base: str | None = None,
                 corrections: MyCorrections | None = None, parent: QWidget | None = None
                 ) -> None:
        super().__init__(parent)
        self.corrections = corrections
        bundles = list_bundles()
        self.base = named(QComboBox(), "baseCombo")
        for bundle in bundles:
            self.base.addItem(bundle.name, bundle_argument(bundle))
            self.base.setItemData(self.base.count() - 1, bundle.describe(),
                                  Qt.ItemDataRole.ToolTipRole)
        index = self.base.findData(base)  # `base` as the run panel names it
        self.base.setCurrentIndex(index if index >= 0 else max(0, self.base.findText("default")))
        self.source = named(QComboBox(), "sourceCombo")
        for key, text in SOURCES:
            self.source.addItem(text, key)
        self.pages: dict[str, QWidget] = {}
        self.folder = named(QLineEdit(placeholderText="folder with images/"), "folderEdit")
        self.files = named(QListWidget(), "fileList")
        self.files.setMaximumHeight(90)
        self.image = named(QComboBox(), "imageCombo")
        for path in images:
            self.image.addItem(path.name, str(path))
        self.polygons = named(QLineEdit(placeholderText="GeoJSON, GeoPackage or Shapefile"),
                              "polygonEdit")
        self._build_pages()
        self.name = named(QLineEdit(), "nameEdit", f"Saved in {user_models_dir()}")
        self.name.setValidator(QRegularExpressionValidator(QRegularExpression(NAME_RE)))
        self.epochs = named(QSpinBox(minimum=1, maximum=500, value=10), "epochsSpin")
        lr = QDoubleSpinBox(minimum=0.0, maximum=0.01, decimals=5, singleStep=0.0001, value=0.0)
        lr.setSpecialValueText("automatic")  # shown at the minimum, 0: the trainer chooses
        self.lr = named(lr, "lrSpin",
                        "Automatic: chosen from how well the model already reads these "
                        "tiles (gentler when it reads them well)")
        self.crop = named(QSpinBox(minimum=64, maximum=1024, singleStep=32, value=256,
                                   suffix=" px"),
                          "cropSpin", "Random crops of this size; capped at the smallest tile")
        self.batch = named(QSpinBox(minimum=1, maximum=64, value=8), "batchSpin")
        self.val_share = named(QSpinBox(minimum=0, maximum=50, value=25, suffix=" %"),
                               "valSpin", "A block of each labelled area (touching tiles) kept "
                               "for validation, never trained on")
        self.freeze = named(QCheckBox("Freeze the encoder (faster, for very few tiles)"),
                            "freezeCheck")
        self.device = named(QComboBox(), "deviceCombo")
        self.device.addItem("Auto", "auto")
        self.device.addItem("CPU", "cpu")
        self._lay_out()
        self.base.currentIndexChanged.connect(self._suggest_name)
        self._suggest_name()
        for signal in (self.base.currentIndexChanged, self.source.currentIndexChanged,
                       self.folder.textChanged, self.name.textChanged, self.epochs.valueChanged,
                       self.lr.valueChanged, self.crop.valueChanged, self.batch.valueChanged,
                       self.val_share.valueChanged, self.freeze.toggled,
                       self.device.currentIndexChanged):
            signal.connect(self.changed)

    def _build_pages(self) -> None:
        """One row of inputs per kind of labelled data; only the chosen kind's shows."""
        self.pages["folder"] = _browse_row(self.folder, self._pick_folder)
        files = QWidget()
        column = QVBoxLayout(files)
        column.setContentsMargins(0, 0, 0, 0)
        choose = named(QPushButton("Choose files…"), "chooseFilesButton")
        choose.clicked.connect(self._pick_files)
        column.addWidget(self.files)
        column.addWidget(choose)
        self.pages["files"] = files
        over = QWidget()
        form = QFormLayout(over)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Image", self.image)
        form.addRow("Polygons", _browse_row(self.polygons, self._pick_polygons))
        self.pages["polygons"] = over
        self.pages["corrections"] = QLabel(EXPLAIN, wordWrap=True)
        self.source.currentIndexChanged.connect(self._show_page)
        self._show_page()
        if self.image.count() == 0:  # no image open in the main window
            self._disable("polygons", "Open the image the polygons label first.")
        self._disable("corrections", self.corrections_problem())

    def _disable(self, kind: str, why: str | None) -> None:
        """Grey out the data source `kind` with `why` as its tooltip (None: leave it)."""
        if why is None:
            return
        model = self.source.model()
        assert isinstance(model, QStandardItemModel)  # a QComboBox's own model
        item = model.item(self.source.findData(kind))
        assert item is not None
        item.setEnabled(False)
        item.setToolTip(why)

    def corrections_problem(self) -> str | None:
        """Why the open image's corrections cannot be trained on (None: they can)."""
        if self.corrections is None:
            return "Open an image and segment it first."
        return self.corrections.problem()

    def _lay_out(self) -> None:
        form = QFormLayout(self)
        form.addRow("Base model", self.base)
        form.addRow("Labelled data", self.source)
        pages = QVBoxLayout()
        for page in self.pages.values():
            pages.addWidget(page)
        form.addRow(pages)
        form.addRow("New model name", self.name)
        form.addRow("Epochs", self.epochs)
        form.addRow("Learning rate", self.lr)
        form.addRow("Crop size", self.crop)
        form.addRow("Batch size", self.batch)
        form.addRow("Validation share", self.val_share)
        form.addRow(self.freeze)
        form.addRow("Device", self.device)

    # ----------------------------------------------------------------- choosing

    def _pick_folder(self) -> None:
        name = QFileDialog.getExistingDirectory(self, "Training folder", self.folder.text())
        if name:
            self.folder.setText(name)

    def _pick_files(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(self, "Images with their masks or polygons",
                                                "", LABEL_FILTER)
        if names:
            self.set_files([Path(name) for name in names])

    def _pick_polygons(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Field polygons", "", VECTOR_FILTER)
        if name:
            self.polygons.setText(name)

    def _show_page(self) -> None:
        for kind, page in self.pages.items():
            page.setVisible(kind == self.kind())

    def set_source(self, kind: str) -> None:
        self.source.setCurrentIndex(self.source.findData(kind))

    def set_files(self, files: list[Path]) -> None:
        self.files.clear()
        self.files.addItems([str(path) for path in files])
        self.changed.emit()

    def set_gpu(self, name: str | None) -> None:
        if name and self.device.findData("cuda") < 0:
            self.device.addItem(f"GPU: {name}", "cuda")

    def _suggest_name(self) -> None:
        """`<base>-finetuned-YYYYMMDD-HHMM`, unless the user typed a name."""
        if not self.name.isModified():
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M")
            self.name.setText(f"{self.base.currentText()}-finetuned-{stamp}")

    # ----------------------------------------------------------------- reading

    def kind(self) -> str:
        return str(self.source.currentData())

    def labels(self) -> Labels:
        kind = self.kind()
        if kind == "folder":
            return Labels("folder", [Path(self.folder.text().strip())])
        if kind == "files":
            return Labels("files", [Path(self.files.item(i).text())
                                    for i in range(self.files.count())])
        if kind == "corrections" and self.corrections is not None:
            return self.corrections.labels()
        return Labels("polygons", [Path(self.image.currentData()),
                                   Path(self.polygons.text().strip())])

    def model_name(self) -> str:
        return self.name.text().strip()

    def options(self) -> dict[str, Any]:
        """TrainConfig's fields for this run (all but data and out)."""
        return {"base": str(self.base.currentData()), "epochs": self.epochs.value(),
                "tile": self.crop.value(), "batch": self.batch.value(),
                "lr": round(self.lr.value(), 6) or None,
                "val_fraction": self.val_share.value() / 100,
                "freeze_encoder": self.freeze.isChecked(),
                "device": str(self.device.currentData())}

    def problem(self) -> str | None:
        """Why Start cannot run yet, or None."""
        if self.base.count() == 0:
            return "No model to start from was found."
        kind = self.kind()
        folder, polygons = self.folder.text().strip(), self.polygons.text().strip()
        if kind == "folder" and not (folder and Path(folder).is_dir()):
            return "Choose the training folder (with images/ and masks/ or fields/)."
        if kind == "files" and self.files.count() == 0:
            return "Choose the images and their masks or polygon files."
        if kind == "polygons" and not (polygons and Path(polygons).is_file()):
            return "Choose the polygon file that labels part of the open image."
        why = self.corrections_problem() if kind == "corrections" else None
        if why:
            return why
        name = self.model_name()
        if not re.fullmatch(NAME_RE, name):
            return "Name the new model: letters, digits, spaces, '.', '-' or '_'."
        if (bundled_models_dir() / name).exists():
            return f"'{name}' is the name of a model that comes with farmseg; choose another."
        return None
