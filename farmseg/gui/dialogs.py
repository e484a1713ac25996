"""Message boxes and file dialogs: errors with details, questions, About, save targets."""

from __future__ import annotations

import html
import re
from pathlib import Path

from PySide6.QtCore import Qt, qVersion
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from farmseg import __version__
from farmseg.fields.export import VECTOR_FILTER
from farmseg.gui.logs import LOG, recent_log
from farmseg.models.bundle import ModelBundle

RASTER_FILTER = ("GeoTIFF (*.tif *.tiff *.TIF *.TIFF);;"
                 "Rasters (*.tif *.tiff *.vrt *.img *.jp2);;All files (*)")
VECTOR_SUFFIXES = (".geojson", ".json", ".shp", ".gpkg", ".kml")  # opened as vector layers
POLYGON_FILTER = (f"Polygons ({' '.join('*' + suffix for suffix in VECTOR_SUFFIXES)});;"
                  "All files (*)")
REPORT_FILTER = "HTML (*.html);;Markdown (*.md);;JSON (*.json)"


def show_error(parent: QWidget | None, reason: str, details: str = "") -> QMessageBox:
    """A window-modal error box that does not block: the reason in one line, then Details
    with `details` and the recent log."""
    LOG.error("%s", reason)
    box = QMessageBox(QMessageBox.Icon.Critical, "farmseg", reason, QMessageBox.StandardButton.Ok,
                      parent)
    box.setObjectName("errorBox")
    box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    box.setDetailedText("\n\n".join(part for part in (details.strip(), "Recent log:\n"
                                                      + recent_log()) if part))
    box.open()
    return box


def ask(parent: QWidget | None, title: str, question: str) -> bool:
    answer = QMessageBox.question(parent, title, question,
                                  QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes


def _provenance(bundle: ModelBundle | None) -> str:
    if bundle is None:
        return "<p>No model found.</p>"
    training = bundle.meta.get("training", {})
    rows = {
        "Model": bundle.describe(),
        "Trained": training.get("date", "unknown"),
        "Epochs": training.get("epochs_done", training.get("config", {}).get("epochs", "?")),
        "Base model": training.get("base") or "none (trained from ImageNet weights)",
        "Training data": training.get("data", "unknown"),
        "farmseg": training.get("farmseg", "?"),
    }
    rows.update({f"Metric {k}": v for k, v in bundle.meta.get("metrics", {}).items()})
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(str(v))}</td></tr>"
                    for k, v in rows.items())
    return f"<h4>Current model</h4><table>{cells}</table>"


def about_text(bundle: ModelBundle | None) -> str:
    """Version, licences, sample attribution and the model's provenance, as rich text."""
    return (
        f"<h3>farmseg {__version__}</h3>"
        "<p>Farm field polygons from aerial and satellite GeoTIFFs.</p>"
        "<p><b>Licences.</b> farmseg: MIT. Qt and PySide6 "
        f"{qVersion()}: LGPLv3. Sample scene: USDA NAIP imagery (US public domain) from the "
        "agoro-field-boundary-detector data set, MIT licence, Copyright (c) 2021 Radix "
        "(github.com/superlinear-ai/agoro-field-boundary-detector).</p>"
        + _provenance(bundle)
    )


def show_about(parent: QWidget, bundle: ModelBundle | None) -> None:
    QMessageBox.about(parent, "About farmseg", about_text(bundle))


def _suffix_of(filter_text: str) -> str:
    """'GeoPackage (*.gpkg)' -> '.gpkg'; '' without one."""
    found = re.search(r"\*(\.\w+)", filter_text)
    return found.group(1) if found else ""


def save_target(parent: QWidget, title: str, suggestion: Path, filters: str) -> Path | None:
    """Ask where to save: the format comes from the suffix, else from the chosen filter
    (else the suggestion's); an existing file is only replaced after asking."""
    suffixes = {_suffix_of(f) for f in filters.split(";;")}
    chosen = next((f for f in filters.split(";;") if _suffix_of(f) == suggestion.suffix), "")
    name, selected = QFileDialog.getSaveFileName(
        parent, title, str(suggestion), filters, chosen, QFileDialog.Option.DontConfirmOverwrite)
    if not name:
        return None
    target = Path(name)
    if target.suffix.lower() not in suffixes:
        target = target.with_name(target.name + (_suffix_of(selected or chosen)
                                                 or suggestion.suffix))
    if target.exists() and not ask(parent, title, f"{target.name} already exists. Replace it?"):
        return None
    return target


def export_target(parent: QWidget, suggestion: Path) -> Path | None:
    """Ask where to export fields (see save_target)."""
    return save_target(parent, "Export fields", suggestion, VECTOR_FILTER)
