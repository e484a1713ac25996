"""Accuracy reports (JSON, Markdown, HTML) with a small map of matches and misses."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import cv2
import numpy as np

from farmseg.errors import UsageError
from farmseg.geoio.atomic import atomic_file
from farmseg.scoring.evaluate import Evaluation

MAP_SIDE = 512
GREEN, RED, ORANGE = (60, 170, 60), (210, 50, 50), (245, 150, 30)


def match_map(evaluation: Evaluation) -> np.ndarray:
    """RGB image: matched reference fields green, missed red, false predictions orange."""
    ref, pred = evaluation.ref, evaluation.pred
    matched_ref = {f["ref_id"] for f in evaluation.score.per_field if f["pred_id"]}
    matched_pred = {f["pred_id"] for f in evaluation.score.per_field if f["pred_id"]}
    image = np.full(ref.shape + (3,), 255, np.uint8)
    image[(ref > 0)] = RED
    image[np.isin(ref, list(matched_ref)) & (ref > 0)] = GREEN
    image[(pred > 0) & ~np.isin(pred, list(matched_pred)) & (ref == 0)] = ORANGE
    edges = np.zeros(ref.shape, bool)
    edges[:, 1:] |= pred[:, 1:] != pred[:, :-1]
    edges[1:, :] |= pred[1:, :] != pred[:-1, :]
    image[edges] = (40, 40, 40)
    scale = MAP_SIDE / max(ref.shape)
    if scale >= 1:
        return image
    size = (max(1, int(ref.shape[1] * scale)), max(1, int(ref.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_NEAREST)


def _png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return data.tobytes()


def _table(evaluation: Evaluation) -> list[str]:
    rows = ["| reference field | matched prediction | IoU | pixels |", "|---|---|---|---|"]
    for f in evaluation.score.per_field:
        rows.append(f"| {f['ref_id']} | {f['pred_id'] or '-'} | {f['iou']:.3f} | {f['ref_px']} |")
    return rows


def write_report(evaluation: Evaluation, path: Path, title: str) -> Path:
    """Write the report; format from the suffix (.json, .md, .html)."""
    path = Path(path)
    suffix = path.suffix.lower()
    summary = evaluation.score.summary()
    if suffix not in (".json", ".md", ".html", ".htm"):
        raise UsageError(path, "report must be .json, .md or .html")
    with atomic_file(path) as tmp:
        if suffix == ".json":
            tmp.write_text(json.dumps({"title": title, "summary": summary,
                                       "fields": evaluation.score.per_field}, indent=2))
        elif suffix == ".md":
            png = path.with_name(path.stem + "_map.png")
            png.write_bytes(_png(match_map(evaluation)))
            lines = [f"# {title}", "", *[f"- {k}: {v}" for k, v in summary.items()], "",
                     f"![matches green, misses red, false fields orange]({png.name})", "",
                     *_table(evaluation)]
            tmp.write_text("\n".join(lines) + "\n")
        else:
            image = base64.b64encode(_png(match_map(evaluation))).decode()
            items = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in summary.items())
            fields = "".join(f"<tr><td>{f['ref_id']}</td><td>{f['pred_id'] or '-'}</td>"
                             f"<td>{f['iou']:.3f}</td><td>{f['ref_px']}</td></tr>"
                             for f in evaluation.score.per_field)
            tmp.write_text(
                f"<!doctype html><meta charset='utf-8'><title>{title}</title>"
                f"<h1>{title}</h1><table>{items}</table>"
                f"<p><img alt='map' src='data:image/png;base64,{image}'><br>"
                "green: matched reference fields, red: missed, orange: false fields</p>"
                "<table><tr><th>reference</th><th>prediction</th><th>IoU</th><th>pixels</th>"
                f"</tr>{fields}</table>")
    return path
