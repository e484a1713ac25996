"""Model bundles: round trip, strict loading, refusal of pickles and future schemas."""

from __future__ import annotations

import json
import shutil

import pytest

from farmseg.errors import ModelError
from farmseg.models.bundle import load_bundle, resolve_bundle_path


def test_default_bundle_is_self_describing():
    bundle = load_bundle("default")
    assert bundle.classes == ["background", "field", "boundary"]
    assert bundle.bands == [1, 2, 3] and bundle.dtype == "uint8"
    assert bundle.has_onnx and bundle.weights_path.stat().st_size > 1_000_000
    assert bundle.meta["training"]["validation"], "provenance lists the validation images"


def test_models_lists_every_bundled_model_with_its_pixel_size_and_f1(capsys):
    from farmseg.cli import main
    from farmseg.models.bundle import bundled_models_dir

    assert main(["models"]) == 0
    rows = {row.split()[0]: row.split() for row in capsys.readouterr().out.splitlines()[1:]}
    shipped = [p.name for p in bundled_models_dir().iterdir() if (p / "farmseg.json").is_file()]
    assert {"default", "fast", "coarse"} <= set(shipped)
    for name in shipped:
        bundle = load_bundle(name)
        f1 = bundle.meta["metrics"]["val_field_f1"]
        assert rows[name][1:6] == [bundle.arch, bundle.encoder, f"{bundle.pixel_size_m:g}", "m",
                                   f"{f1:.3f}"]
    assert rows["default"][8:10] == ["<", "6"] and rows["coarse"][8:10] == [">=", "6"]


def test_round_trip_gives_the_same_predictions(tmp_path):
    torch = pytest.importorskip("torch")
    from farmseg.models.nets import network_from_bundle, save_weights

    bundle = load_bundle("default")
    model = network_from_bundle(bundle.meta, bundle.weights_path)
    copy = tmp_path / "copy"
    copy.mkdir()
    save_weights(model, copy / "model.safetensors")
    (copy / "farmseg.json").write_text(json.dumps(bundle.meta))
    again = network_from_bundle(load_bundle(copy).meta, copy / "model.safetensors")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), again(x), atol=1e-5)


def _copy_default(tmp_path):
    target = tmp_path / "m"
    shutil.copytree(resolve_bundle_path("default"), target)
    return target


def test_wrong_architecture_is_refused_by_strict_loading(tmp_path):
    pytest.importorskip("torch")
    from farmseg.models.nets import network_from_bundle

    target = _copy_default(tmp_path)
    meta = json.loads((target / "farmseg.json").read_text())
    meta["encoder"] = "resnet18"
    (target / "farmseg.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="do not fit"):
        network_from_bundle(load_bundle(target).meta, target / "model.safetensors")


def test_corrupt_weights_are_refused(tmp_path):
    pytest.importorskip("torch")
    from farmseg.models.nets import network_from_bundle

    target = _copy_default(tmp_path)
    (target / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelError, match="corrupt"):
        network_from_bundle(load_bundle(target).meta, target / "model.safetensors")


def test_future_schema_is_refused(tmp_path):
    target = _copy_default(tmp_path)
    meta = json.loads((target / "farmseg.json").read_text())
    meta["schema_version"] = 99
    (target / "farmseg.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="newer farmseg"):
        load_bundle(target)


def test_pickle_checkpoint_is_refused_with_advice(tmp_path):
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ModelError, match="never loads"):
        load_bundle(checkpoint)


def test_unknown_model_name(tmp_path):
    with pytest.raises(ModelError, match="no such model"):
        load_bundle("no-such-model")


def test_onnx_matches_torch_on_a_real_crop(sample_network_tile):
    pytest.importorskip("torch")
    from farmseg.models.bundle import load_bundle as load
    from farmseg.models.engine_onnx import OnnxPredictor
    from farmseg.models.engine_torch import TorchPredictor

    bundle = load("default")
    batch = sample_network_tile[None]
    a = TorchPredictor(bundle, "cpu", "fp32").predict(batch).argmax(1)
    b = OnnxPredictor(bundle).predict(batch).argmax(1)
    assert (a != b).mean() < 0.002
