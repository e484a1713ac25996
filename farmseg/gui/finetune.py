"""Tools > Fine-tune: train a model further on the user's labelled tiles, in the background.

The form (finetune_form) gathers the settings; the run happens in a job process
(finetune_job, supervised like a segmentation: job_control.JobController), so the window stays
responsive and Cancel is honoured; this dialog shows the progress and the curves, and at
the end the before/after scores on the validation tiles.
"""

from __future__ import annotations

import html
import importlib.util
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QApplication,
    QDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from farmseg.errors import ModelError
from farmseg.gui.devices import gpu_name
from farmseg.gui.dialogs import ask, show_error
from farmseg.gui.finetune_chart import TrainingChart
from farmseg.gui.finetune_corrections import MyCorrections
from farmseg.gui.finetune_form import FineTuneForm
from farmseg.gui.finetune_job import FineTuneRequest, command_line
from farmseg.gui.job_control import JobController
from farmseg.gui.map_layers import MapLayers
from farmseg.gui.panels import RunPanel
from farmseg.gui.tasks import run_in_background
from farmseg.gui.widgets import named
from farmseg.gui.worker import ProcessWorker
from farmseg.jobs import EtaClock, Progress
from farmseg.models.bundle import META_NAME, ModelBundle, load_bundle, user_models_dir
from farmseg.tools.progressbar import format_clock

LOG = logging.getLogger("farmseg.gui")
TORCH_MISSING = ("Fine-tuning needs the full install of farmseg, with PyTorch: "
                 '<code>pip install "farmseg[torch,gui]"</code>. This build can segment only.')
CANCEL_GRACE_S = 60.0  # after Cancel: the current step, then writing the best epoch (with ONNX)
SCORE_HELP = ("<small>Field pixel IoU: the fields found (as polygons) against the labelled "
              "fields, pixel by pixel. Field F1: fields matched one to one at IoU ≥ 0.5."
              "</small>")
STAGE_TEXT = {"check": "checking labels %v/%m", "load": "starting", "train": "step %v/%m"}


def torch_installed() -> bool:
    """Whether this installation can train (the frozen CPU build cannot)."""
    return importlib.util.find_spec("torch") is not None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


class FineTuneWorker(ProcessWorker):
    """One run in its own process; afterwards removes the scratch folder and any temporary
    bundle folder (`.<name>.*`) that a killed process left behind."""

    def __init__(self, request: FineTuneRequest) -> None:
        super().__init__(request, "training", CANCEL_GRACE_S)
        self.request = request

    def _clean_up(self, kept: bool) -> None:
        shutil.rmtree(self.request.work_dir, ignore_errors=True)
        out = self.request.out
        for leftover in out.parent.glob(f".{out.name}.*"):
            shutil.rmtree(leftover, ignore_errors=True)


class StepClock:
    """ETA and time per epoch from the step rate since the first training step, so that
    start-up and the base model's scoring do not skew them (once an epoch has ended, the
    rate includes its validation)."""

    def __init__(self, epochs: int) -> None:
        self._epochs = epochs
        self._clock: EtaClock | None = None
        self._first = 0

    def update(self, report: Progress) -> tuple[float | None, float | None]:
        """(ETA, seconds per epoch) after a "train" report; None before the second step."""
        if self._clock is None:
            self._clock, self._first = EtaClock(), report.done
            return None, None
        rate = self._clock.elapsed() / max(1, report.done - self._first)
        return rate * (report.total - report.done), rate * report.total / self._epochs


@dataclass
class _Run:
    request: FineTuneRequest
    base_name: str
    started: float  # time.time(): a partial bundle written after this is this run's
    clock: EtaClock
    steps: StepClock
    epochs_done: int = 0
    trained: bool = False  # at least one training step ran
    stopped: str = ""  # why it stopped early ("Cancelled", ...); reported once it is gone


class FineTuneDialog(QDialog):
    """Fine-tune a model on labelled tiles. `images`: the images open in the main window
    (current first), for labels drawn over one of them; `base`: the bundle folder to start
    from (default: the bundled default model)."""

    modelSaved = Signal(str, bool)  # bundle folder; False: partial (the best epoch, cancelled)
    runEnded = Signal()  # after every run, whatever its outcome

    def __init__(self, parent: QWidget | None = None, images: Sequence[Path] = (),
                 base: str | None = None, corrections: MyCorrections | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("fineTuneDialog")
        self.setWindowTitle("Fine-tune a model")
        self.job = JobController(self)
        self.job.progress.connect(self._on_progress)
        self.job.finished.connect(self._on_succeeded)
        self.job.failed.connect(self._on_failed)
        self.job.cancelled.connect(self._on_cancelled)
        self.job.ended.connect(self._on_done)
        self._run: _Run | None = None
        self._close_when_idle = False
        self._can_train = torch_installed()
        self.form = FineTuneForm(list(images), base, corrections)
        self.corrections = corrections
        self.chart = TrainingChart()
        self.progress = named(QProgressBar(textVisible=True), "progressBar")
        self.progress_text = named(QLabel(), "progressLabel")
        self.epoch_time = named(QLabel(), "epochTimeLabel")
        self.scores = named(QTableWidget(3, 2), "scoreTable")
        self.scores_caption = named(QLabel(wordWrap=True), "scoreCaption")
        self.result_text = named(QLabel(wordWrap=True), "resultLabel")
        self.command = named(QLabel(wordWrap=True), "commandLabel")
        self.start_button = named(QPushButton("Start"), "startButton")
        self.cancel_button = named(QPushButton("Cancel training"), "cancelButton")
        self.close_button = named(QPushButton("Close"), "closeButton")
        self._lay_out()
        self._clear_scores()
        self.form.changed.connect(self._show_command)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)
        self._show_command()
        self._set_running(False)
        self.progress.setFormat("idle")
        self.progress.setValue(0)
        self.resize(1000, 660)
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self._stop_at_exit)
        if self._can_train:
            run_in_background(gpu_name, self._on_gpu, lambda error: None)

    def _lay_out(self) -> None:
        settings = QGroupBox("Settings")
        QVBoxLayout(settings).addWidget(self.form)
        scores = QGroupBox("Before / after")
        column = QVBoxLayout(scores)
        column.addWidget(self.scores)
        column.addWidget(self.scores_caption)
        column.addWidget(QLabel(SCORE_HELP, wordWrap=True))
        self.scores.setHorizontalHeaderLabels(["Field pixel IoU", "Field F1"])
        self.scores.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.scores.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents)
        self.scores.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.scores.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.scores.setSelectionMode(QTableWidget.SelectionMode.NoSelection)
        self.scores.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for label in (self.result_text, self.command):
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        run = QGroupBox("Training")
        column = QVBoxLayout(run)
        column.addWidget(self.chart, 1)
        column.addWidget(self.progress)
        column.addWidget(self.progress_text)
        column.addWidget(self.epoch_time)
        column.addWidget(scores)
        column.addWidget(self.result_text)
        if self.corrections is not None:
            column.addWidget(self.corrections)
        top = QHBoxLayout()
        top.addWidget(settings)
        top.addWidget(run, 1)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.cancel_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addLayout(top, 1)
        if not self._can_train:
            layout.addWidget(named(QLabel(TORCH_MISSING, wordWrap=True), "torchMissingLabel"))
        layout.addWidget(self.command)
        layout.addLayout(buttons)
        self.start_button.setDefault(True)

    def _on_gpu(self, name: str | None) -> None:
        if shiboken6.isValid(self.form):  # the dialog may be gone by now
            self.form.set_gpu(name)

    def _show_command(self) -> None:
        labels = self.form.labels()
        data = str(labels.paths[0]) if labels.kind == "folder" and labels.paths[0].name else "DATA"
        line = command_line(data, user_models_dir() / self.form.model_name(),
                            self.form.options())
        self.command.setText(f"From a terminal: <code>{html.escape(line)}</code>")

    def _set_running(self, running: bool) -> None:
        self.form.setEnabled(not running)
        self.start_button.setEnabled(self._can_train and not running)
        self.cancel_button.setEnabled(running)

    # ----------------------------------------------------------------- running

    def is_running(self) -> bool:
        return self.job.is_running()

    def start(self) -> None:
        """Check the settings, then train in the background."""
        problem = self.form.problem()
        if problem:
            show_error(self, problem)
            return
        out = user_models_dir() / self.form.model_name()
        if out.exists() and not ask(self, "Fine-tune", f"A model named '{out.name}' already "
                                    f"exists in {out.parent}. Replace it?"):
            return
        request = FineTuneRequest(self.form.labels(), out, self.form.options(),
                                  Path(tempfile.mkdtemp(prefix="farmseg-finetune-")))
        epochs = int(request.options["epochs"])
        self._run = _Run(request, self.form.base.currentText(), time.time(), EtaClock(),
                         StepClock(epochs))
        self.chart.reset(epochs)
        self._clear_scores()
        for label in (self.progress_text, self.epoch_time, self.result_text):
            label.clear()
        self._busy("starting")
        self._set_running(True)
        LOG.info("fine-tune to %s from %s %s with %s", out, request.labels.kind,
                 [str(path) for path in request.labels.paths], request.options)
        self.job.start(FineTuneWorker(request))

    def cancel(self) -> None:
        """Stop; the core keeps the best epoch so far as a bundle marked partial."""
        if self.job.is_running():
            self.job.cancel()
            self.cancel_button.setEnabled(False)
            self._busy("cancelling")
            self.progress_text.setText("Cancelling: finishing the current step, then saving "
                                       "the best epoch so far…")

    @property
    def _active(self) -> _Run:
        """The run started last (its handlers run only after a start)."""
        assert self._run is not None, "no run has started"
        return self._run

    def _busy(self, text: str) -> None:
        self.progress.setRange(0, 0)
        self.progress.setFormat(text)

    def _on_progress(self, report: Progress) -> None:
        run = self._active
        if report.stage == "epoch":
            run.epochs_done = report.done
            extra = report.extra
            self.chart.add_epoch(extra["loss"], extra["val_iou"])
            if extra["base_val_iou"] is not None:  # known early; the base's F1 comes at the end
                cell = self.scores.item(0, 0)
                assert cell is not None  # every cell is set in _clear_scores
                cell.setText(f"{extra['base_val_iou']:.3f}")
            return
        if self.job.is_cancelled():  # keep showing "cancelling"
            return
        self.progress.setRange(0, report.total)
        self.progress.setValue(report.done)
        self.progress.setFormat(STAGE_TEXT.get(report.stage, report.stage))
        if report.stage != "train":
            self.progress_text.setText(report.message)
            return
        run.trained = True
        self.chart.add_step(report.extra["loss"])
        eta, per_epoch = run.steps.update(report)
        text = (f"epoch {report.extra['epoch']}/{self.chart.epochs} · loss "
                f"{report.extra['loss']:.3f} · elapsed {format_clock(run.clock.elapsed())}")
        self.progress_text.setText(text + (f" · ETA {format_clock(eta)}" if eta else ""))
        if per_epoch is not None:
            self.epoch_time.setText(f"{_duration(per_epoch)} per epoch" if run.epochs_done else
                                    f"about {_duration(per_epoch)} per epoch (estimated from "
                                    "the first steps)")

    def _on_succeeded(self, result: dict[str, Any]) -> None:
        self._show_scores(result)
        seconds = [epoch["seconds"] for epoch in result["history"]]
        self.epoch_time.setText(f"{_duration(statistics.mean(seconds))} per epoch ("
                                f"{_count(len(seconds), 'epoch')}, {format_clock(sum(seconds))}"
                                " in all)")
        self.progress_text.setText(f"Done in {format_clock(self._active.clock.elapsed())}.")
        path = result["bundle"]
        verdict = f"{html.escape(result['verdict'])}.<br>" if result.get("verdict") else ""
        if self.corrections is not None and self._active.request.labels.kind == "corrections":
            verdict += f"{self.corrections.offer(path, result.get('finetune'))}<br>"
        self.result_text.setText(f"{verdict}Saved as <b>{html.escape(Path(path).name)}</b> in "
                                 f"{html.escape(path)}; it is now the model in the main window.")
        LOG.info("fine-tuned model written to %s", path)
        self.modelSaved.emit(path, True)

    def _on_failed(self, reason: str, details: str) -> None:
        run = self._active
        run.stopped = "Fine-tuning failed" if run.trained else "Nothing was trained"
        show_error(self, f"{run.stopped}: {reason}", details)

    def _on_cancelled(self) -> None:
        self._active.stopped = "Cancelled"

    def _report_stopped(self, what: str) -> None:
        """Say what a stopped run left: the best epoch so far as a partial bundle (then
        announced with modelSaved), or nothing."""
        bundle = self._partial_bundle()
        if bundle is None:
            self.result_text.setText(f"{what}. No model was saved.")
            return
        epoch = bundle.meta.get("training", {}).get("epochs_done", "?")
        self.result_text.setText(f"{what}. The best epoch so far (epoch {epoch}) was saved as "
                                 f"{html.escape(str(bundle.path))}, marked partial.")
        self.modelSaved.emit(str(bundle.path), False)

    def _partial_bundle(self) -> ModelBundle | None:
        out = self._active.request.out
        try:
            bundle = load_bundle(out)
        except ModelError:
            return None
        fresh = (out / META_NAME).stat().st_mtime >= self._active.started
        return bundle if fresh and bundle.meta.get("partial") else None

    def _on_done(self) -> None:
        """The process is gone (killed, if it ignored Cancel) and its leftovers removed."""
        if self._active.stopped:
            self._report_stopped(self._active.stopped)
        if self.progress.maximum() == 0:  # stopped while busy
            self.progress.setRange(0, 1)
            self.progress.setFormat("stopped")
        self._set_running(False)
        self.runEnded.emit()
        if self._close_when_idle:
            super().reject()

    # ----------------------------------------------------------------- scores

    def _row_names(self) -> tuple[str, str, str]:
        if self._run is None:
            return "before", "after", "change"
        return f"before: {self._run.base_name}", f"after: {self._run.request.out.name}", "change"

    def _clear_scores(self) -> None:
        for row, name in enumerate(self._row_names()):
            self.scores.setVerticalHeaderItem(row, QTableWidgetItem(name))
            for col in range(2):
                self.scores.setItem(row, col, QTableWidgetItem("–"))
        self.scores_caption.setText("The base and the fine-tuned model on the validation "
                                    "tiles, never trained on.")

    def _show_scores(self, result: dict[str, Any]) -> None:
        before = (result["base_val_field_iou"], result["base_val_field_f1"])
        after = (result["val_field_iou"], result["val_field_f1"])
        change = tuple(None if a is None or b is None else a - b
                       for a, b in zip(after, before))
        rows = ((before, "{:.3f}"), (after, "{:.3f}"), (change, "{:+.3f}"))
        for row, (values, fmt) in enumerate(rows):
            for col, value in enumerate(values):
                self.scores.setItem(row, col, QTableWidgetItem(
                    "–" if value is None else fmt.format(value)))
        tiles = result["validation"]
        self.scores_caption.setText(
            f"On {_count(len(tiles), 'validation tile')}, never trained on (hover for names)."
            if tiles else "No validation tiles (validation share 0 %): nothing to compare.")
        self.scores_caption.setToolTip("\n".join(tiles))

    # ----------------------------------------------------------------- closing

    def reject(self) -> None:
        """Close; while training, ask first, then cancel and close once it stopped."""
        if not self.job.is_running():
            super().reject()
        elif self._close_when_idle or ask(self, "Fine-tune", "Training is running. Cancel it "
                                          "(the best epoch so far is kept) and close?"):
            self._close_when_idle = True
            self.cancel()

    def _stop_at_exit(self) -> None:
        """The application quits (Ctrl+C, SIGTERM): cancel, which saves the best epoch so
        far, and wait for the process, so no thread outlives the dialog."""
        if self.job.is_running():
            self.job.cancel()
            self.job.wait(int((CANCEL_GRACE_S + 5) * 1000))


def open_fine_tune(window: QWidget, layers: MapLayers, panel: RunPanel,
                   corrections: MyCorrections) -> FineTuneDialog:
    """Open the fine-tune dialog over `window`: labels may be drawn over an open image
    (current first) or be the current corrections; a model it saves joins the model list
    (and, when complete, becomes current)."""
    current = layers.current_image()
    images = [layer.source for layer in layers.of_kind("image")]
    images.sort(key=lambda source: current is None or source != current.source)
    dialog = FineTuneDialog(window, images, panel.settings().model, corrections)
    dialog.modelSaved.connect(
        lambda path, complete: panel.reload_models(path if complete else None))
    dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dialog.open()
    return dialog
