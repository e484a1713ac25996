"""`farmseg validate`, `quantize` and `import-checkpoint` on tiny crops, and the metric
names the shipped bundles carry."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from farmseg.cli import main
from farmseg.models.bundle import bundled_models_dir, load_bundle
from tests.conftest import SHARED, write_crop

SIDE = 256  # one network tile per crop


@pytest.fixture
def scored_model(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the default model whose validation images are two 256 px crops in a data
    folder (images/ + instances/), calibrated for int8 on two other crops."""
    names = sorted(p.stem for p in (SHARED / "images").glob("*.tif"))[:4]
    data = tmp_path / "data"
    for name in names:
        for sub in ("images", "instances"):
            write_crop(SHARED / sub / f"{name}.tif", data / sub / f"{name}.tif", 300, 300,
                       SIDE, SIDE)
    model = tmp_path / "scored"
    shutil.copytree(bundled_models_dir() / "default", model,
                    ignore=shutil.ignore_patterns("model.int8.onnx"))
    meta = json.loads((model / "farmseg.json").read_text())
    meta["name"] = "scored"
    meta["training"]["validation"] = names[:2]
    meta["training"]["files"] = [str(data / "images" / f"{n}.tif") for n in names]
    (model / "farmseg.json").write_text(json.dumps(meta))
    return model, data


def _f1(line: str) -> float:
    return float(re.search(r"F1 ([0-9.]+)", line).group(1))


def test_validate_prints_figures_and_records_them_in_the_bundle(scored_model, capsys):
    model, data = scored_model
    assert main(["validate", "--data", str(data), "--model", str(model), "-q"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("validation images: ") and out[0].count(",") == 1
    lines = {line.split(":")[0]: line for line in out[1:]}
    assert {"threshold only", "watershed", "seeded"} <= set(lines)
    for line in lines.values():
        assert re.search(r"pixel IoU [01]\.\d{3} .* F1 [01]\.\d{3} +\(\d+ predicted, "
                         r"\d+ reference, \d+ matched\)", line)
    before = json.loads((model / "farmseg.json").read_text())["metrics"]

    assert main(["validate", "--data", str(data), "--model", str(model), "--record",
                 "-q"]) == 0
    assert f"metrics written to {model}" in capsys.readouterr().out
    metrics = json.loads((model / "farmseg.json").read_text())["metrics"]
    assert metrics != before
    assert metrics["val_field_f1"] == pytest.approx(_f1(lines["seeded"]), abs=6e-4)
    assert metrics["val_field_f1_threshold_only"] == pytest.approx(
        _f1(lines["threshold only"]), abs=6e-4)
    assert metrics["val_field_f1_untuned"] == metrics["val_field_f1"]  # not tuned here
    assert sorted(metrics["validation_images"]) == sorted(
        json.loads((model / "farmseg.json").read_text())["training"]["validation"])
    assert 0 <= metrics["val_pixel_iou"] <= 1


def test_validate_scores_at_the_pixel_size_the_model_was_trained_at(scored_model, capsys):
    model, data = scored_model
    assert main(["validate", "--data", str(data), "--model", str(model), "-q"]) == 0
    own = capsys.readouterr().out.splitlines()
    meta = json.loads((model / "farmseg.json").read_text())
    meta["training"]["config"]["pixel_size"] = 4.0  # as `train --pixel-size 4` records it
    (model / "farmseg.json").write_text(json.dumps(meta))

    assert main(["validate", "--data", str(data), "--model", str(model), "--record", "-q"]) == 0
    coarse = capsys.readouterr().out.splitlines()
    assert own[0].startswith("validation images: ")
    assert coarse[0].startswith("validation images at 4 m: ")
    assert coarse[0].split(": ")[1] == own[0].split(": ")[1]  # the same images, by name
    # the reference fields are the same fields on a 4 m grid: small ones vanish
    ref_own, ref_coarse = (int(re.search(r"(\d+) reference", lines[1]).group(1))
                           for lines in (own, coarse))
    assert 0 < ref_coarse <= ref_own
    metrics = json.loads((model / "farmseg.json").read_text())["metrics"]
    assert metrics["validation_pixel_size_m"] == 4.0

    assert main(["validate", "--data", str(data), "--model", str(model), "--pixel-size", "1",
                 "-q"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == own[1]  # asked for: their own grid


def test_models_lists_figures_and_the_speed_bench_records(tmp_path, capsys, monkeypatch):
    user = tmp_path / "user"
    shutil.copytree(bundled_models_dir() / "default", user / "mine",
                    ignore=shutil.ignore_patterns("model.int8.onnx", "replay*"))
    meta = json.loads((user / "mine" / "farmseg.json").read_text())
    (user / "mine" / "farmseg.json").write_text(json.dumps({**meta, "name": "mine"}))
    monkeypatch.setenv("FARMSEG_MODEL_DIR", str(user))
    assert main(["bench", "--size", "512", "--no-baseline", "--model", str(user / "mine"),
                 "--record"]) == 0
    assert f"recorded in {user / 'mine' / 'farmseg.json'}" in capsys.readouterr().out
    speed = load_bundle(user / "mine").mpix_per_s
    assert speed is not None and speed > 0

    assert main(["models"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert rows[0][:7] == ["name", "arch", "encoder", "pixel", "field", "F1", "pixel"]
    by_name = {row[0]: row for row in rows[1:]}
    assert {"default", "mine"} <= set(by_name)
    default = load_bundle("default")
    assert by_name["default"][1:5] == ["Unet", default.encoder, "1", "m"]
    assert by_name["default"][5] == f"{default.meta['metrics']['val_field_f1']:.3f}"
    assert by_name["mine"][7] == f"{speed:.2f}"
    assert f"{speed:g} MPix/s" in load_bundle(user / "mine").describe()


def test_validate_without_the_validation_images_is_one_line(scored_model, capsys, tmp_path):
    model, _ = scored_model
    (tmp_path / "empty").mkdir()
    assert main(["validate", "--data", str(tmp_path / "empty"), "--model", str(model)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith(f"farmseg: error: {tmp_path / 'empty'}: holds none of model")


def test_quantize_writes_an_int8_variant_with_a_verdict(scored_model, capsys):
    pytest.importorskip("onnx")
    model, data = scored_model
    assert main(["quantize", "--data", str(data), "--model", str(model), "-q"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    verdict = re.fullmatch(r"int8: validation field F1 ([0-9.]+) vs fp32 ([0-9.]+) -> "
                           r"(accepted|rejected \(kept fp32\))", line)
    assert verdict is not None
    check = json.loads((model / "farmseg.json").read_text())["precision"]["int8"]
    assert check["val_field_f1"] == pytest.approx(float(verdict.group(1)), abs=6e-4)
    assert check["fp32_val_field_f1"] == pytest.approx(float(verdict.group(2)), abs=6e-4)
    accepted = verdict.group(3) == "accepted"
    assert check["accepted"] is accepted
    assert accepted == (abs(check["val_field_f1"] - check["fp32_val_field_f1"]) <= 0.01)
    # a rejected variant is never shipped, so `auto` can never pick it
    assert (model / "model.int8.onnx").is_file() is accepted
    assert load_bundle(model).int8_accepted is accepted


# ---- import-checkpoint ----------------------------------------------------------------

torch_only = pytest.mark.skipif(not __import__("importlib").util.find_spec("torch"),
                                reason="needs torch")


def _small_network():
    from farmseg.models.nets import build_network

    return build_network("Unet", "mobilenet_v2", 3, 3)


@torch_only
def test_import_checkpoint_converts_a_state_dict(tmp_path, capsys):
    import torch
    from safetensors.torch import load_file

    net = _small_network()
    checkpoint = tmp_path / "trained.pth"
    # what training scripts save: a wrapped state dict with DataParallel prefixes
    torch.save({"epoch": 7, "state_dict": {f"module.{k}": v for k, v in
                                           net.state_dict().items()}}, checkpoint)
    out = tmp_path / "imported"
    assert main(["import-checkpoint", str(checkpoint), "--arch", "unet", "--encoder",
                 "mobilenet_v2", "--out", str(out)]) == 0
    assert f"model written to {out}" in capsys.readouterr().out
    bundle = load_bundle(out)
    assert bundle.has_onnx and bundle.meta["training"]["imported_from"] == str(checkpoint)
    stored = load_file(str(bundle.weights_path))
    for key, value in net.state_dict().items():
        assert torch.allclose(stored[key].float(), value.float(), atol=1e-2, rtol=1e-3), key


class _Payload:
    """Unpickling this would create a file: weights_only must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@torch_only
@pytest.mark.parametrize("case", ["code", "text", "misfit"])
def test_import_checkpoint_refuses_a_bad_file_in_one_line(tmp_path, capsys, case):
    import torch

    bad = tmp_path / f"{case}.pth"
    marker = tmp_path / "code-ran"
    if case == "code":
        torch.save({"state_dict": _Payload(marker)}, bad)
    elif case == "text":
        bad.write_text("not a checkpoint\n")
    else:  # tensors of another network
        torch.save(torch.nn.Linear(3, 3).state_dict(), bad)
    out = tmp_path / "imported"
    assert main(["import-checkpoint", str(bad), "--arch", "unet", "--encoder",
                 "mobilenet_v2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    line = err.splitlines()[-1]
    assert line.startswith(f"farmseg: error: {bad}: ")
    expected = "does not fit unet/mobilenet_v2" if case == "misfit" else "cannot be loaded safely"
    assert expected in line
    assert not out.exists() and not marker.exists()


# ---- the shipped bundles' figures ------------------------------------------------------

SHIPPED = sorted(p.name for p in bundled_models_dir().iterdir() if (p / "farmseg.json").is_file())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_iou_figures_are_ious_and_not_the_selection_score(name):
    meta = load_bundle(name).meta
    metrics = meta["metrics"]
    ious = {k: v for k, v in metrics.items() if "iou" in k}
    assert "val_pixel_iou" in ious
    assert ("base_val_pixel_iou" in ious) == bool(meta["training"].get("base"))  # its base's
    assert all(0.0 <= v <= 1.0 for v in ious.values())
    assert "val_field_iou" not in metrics and "base_val_field_iou" not in metrics
    assert metrics["val_selection_score"] not in ious.values()
    # F1 is what selects epochs; IoU only breaks ties
    assert 0.0 <= metrics["val_field_f1"] <= 1.0
