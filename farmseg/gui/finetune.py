"""Tools > Fine-tune: a placeholder until fine-tuning from the application lands."""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QVBoxLayout, QWidget

from farmseg.bundle import user_models_dir

TEXT = (
    "<h3>Fine-tune a model</h3>"
    "<p>Fine-tuning from the application is coming: you will pick images with their field "
    "outlines, train on top of a model and find the new model in the Model list.</p>"
    "<p>Until then the command line does it:</p>"
    "<pre>farmseg train --base default --data my_fields --out {models}/my_model</pre>"
    "<p>where <code>my_fields</code> holds <code>images/</code> and <code>masks/</code> "
    "(or <code>fields/</code>). Models in <code>{models}</code> appear in the Model list.</p>"
)

class FineTuneDialog(QDialog):
    """Explains how to fine-tune today; replaced by the real dialog later."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("fineTuneDialog")
        self.setWindowTitle("Fine-tune a model")
        text = QLabel(TEXT.format(models=html.escape(str(user_models_dir()))), wordWrap=True)
        text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(buttons)
