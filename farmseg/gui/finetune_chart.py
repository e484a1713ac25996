"""A live chart of a fine-tuning run, drawn with QPainter (QtCharts is not in
PySide6-Essentials): training loss (left axis) and validation pixel IoU (right axis) per
epoch."""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QWidget

LOSS_COLOUR = QColor("#1f77b4")
IOU_COLOUR = QColor("#2ca02c")
MARGINS = (46, 26, 46, 30)  # left, top, right, bottom: room for the axis labels
MAX_EPOCH_LABELS = 10
Axis = tuple[float, float]  # the values at the bottom and the top of the plot


class TrainingChart(QWidget):
    """Loss and validation IoU per finished epoch, plus the running loss of the current one."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainingChart")
        self.setMinimumSize(380, 220)
        self.reset(1)

    def reset(self, epochs: int) -> None:
        self.epochs = max(1, epochs)
        self.losses: list[float] = []
        self.ious: list[float | None] = []
        self.running: float | None = None  # mean loss of the current epoch so far
        self.update()

    def add_step(self, loss: float) -> None:
        self.running = loss
        self.update()

    def add_epoch(self, loss: float, val_iou: float | None) -> None:
        self.losses.append(loss)
        self.ious.append(val_iou)
        self.running = None
        self.update()

    # ----------------------------------------------------------------- drawing

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        left, top, right, bottom = MARGINS
        plot = QRectF(self.rect()).adjusted(left, top, -right, -bottom)
        text = self.palette().text().color()
        loss_axis = (0.0, max(self.losses + [self.running or 0.0]) * 1.15 or 1.0)
        self._draw_axes(painter, plot, text, loss_axis, self._iou_axis())
        if not self.losses and self.running is None:
            painter.setPen(text)
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                             "Training loss and validation IoU\nappear here, epoch by epoch.")
            return
        loss_points = [self._point(plot, i + 1, v, loss_axis) for i, v in enumerate(self.losses)]
        self._draw_series(painter, loss_points, LOSS_COLOUR)
        if self.running is not None:
            painter.setPen(QPen(LOSS_COLOUR, 1.5, Qt.PenStyle.DotLine))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            current = self._point(plot, len(self.losses) + 1, self.running, loss_axis)
            if loss_points:
                painter.drawLine(loss_points[-1], current)
            painter.drawEllipse(current, 4, 4)
        iou_points = [self._point(plot, i + 1, v, self._iou_axis())
                      for i, v in enumerate(self.ious) if v is not None]
        self._draw_series(painter, iou_points, IOU_COLOUR)
        self._draw_legend(painter, plot, text)

    def _x(self, plot: QRectF, epoch: float) -> float:
        """Epochs are columns: epoch k sits in the middle of the k-th."""
        return plot.left() + plot.width() * (epoch - 0.5) / self.epochs

    def _iou_axis(self) -> Axis:
        """0 to 1, zoomed in to tenths around the values (fine-tuning moves IoU a little)."""
        known = [v for v in self.ious if v is not None]
        return (max(0.0, math.floor((min(known) - 0.05) * 10) / 10) if known else 0.0, 1.0)

    def _y(self, plot: QRectF, value: float, axis: Axis) -> float:
        low, high = axis
        return plot.bottom() - plot.height() * min(max((value - low) / (high - low), 0.0), 1.0)

    def _point(self, plot: QRectF, epoch: float, value: float, axis: Axis) -> QPointF:
        return QPointF(self._x(plot, epoch), self._y(plot, value, axis))

    def _draw_axes(self, painter: QPainter, plot: QRectF, text: QColor, loss_axis: Axis,
                   iou_axis: Axis) -> None:
        grid = QColor(text)
        grid.setAlpha(40)
        metrics = painter.fontMetrics()
        for i in range(5):
            y = plot.bottom() - plot.height() * i / 4
            painter.setPen(grid)
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(LOSS_COLOUR)
            painter.drawText(QRectF(0, y - 8, plot.left() - 4, 16),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                             f"{loss_axis[0] + (loss_axis[1] - loss_axis[0]) * i / 4:.2f}")
            painter.setPen(IOU_COLOUR)
            painter.drawText(QRectF(plot.right() + 4, y - 8, 40, 16),
                             Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
                             f"{iou_axis[0] + (iou_axis[1] - iou_axis[0]) * i / 4:.2f}")
        painter.setPen(text)
        painter.drawRect(plot)
        step = max(1, -(-self.epochs // MAX_EPOCH_LABELS))
        for epoch in range(1, self.epochs + 1, step):
            x = self._x(plot, epoch)
            painter.drawText(QRectF(x - 20, plot.bottom() + 2, 40, metrics.height()),
                             Qt.AlignmentFlag.AlignHCenter, str(epoch))
        painter.drawText(QRectF(plot.left(), plot.bottom() + 2 + metrics.height() * 0.9,
                                plot.width(), metrics.height()),
                         Qt.AlignmentFlag.AlignHCenter, "epoch")

    def _draw_series(self, painter: QPainter, points: list[QPointF], colour: QColor) -> None:
        painter.setPen(QPen(colour, 2))
        painter.setBrush(colour)
        for a, b in zip(points, points[1:]):
            painter.drawLine(a, b)
        for point in points:
            painter.drawEllipse(point, 3.5, 3.5)

    def _draw_legend(self, painter: QPainter, plot: QRectF, text: QColor) -> None:
        entries = [("training loss", LOSS_COLOUR)]
        if any(v is not None for v in self.ious):
            entries.append(("validation pixel IoU", IOU_COLOUR))
        x = plot.left()
        y = plot.top() - 13
        metrics = painter.fontMetrics()
        for label, colour in entries:
            painter.setPen(QPen(colour, 2))
            painter.drawLine(QPointF(x, y), QPointF(x + 18, y))
            painter.setPen(text)
            painter.drawText(QPointF(x + 22, y + metrics.ascent() / 2 - 1), label)
            x += 22 + metrics.horizontalAdvance(label) + 14
