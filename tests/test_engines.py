"""Engines: ONNX Runtime without torch (static import rules: make lint), auto choice, parity."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio
import pytest

from farmseg.errors import UsageError
from farmseg.models.engine_choice import BundleVerdicts, EngineChoice, EngineRequest, choose_engine
from tests.conftest import ROOT


def _python(code: str, tmp_path: Path, block_torch: bool = False, **kw):
    env = dict(os.environ)
    if block_torch:
        blocker = tmp_path / "blocker" / "torch"
        blocker.mkdir(parents=True)
        (blocker / "__init__.py").write_text(
            "raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
        env["PYTHONPATH"] = f"{blocker.parent}{os.pathsep}{ROOT}"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, **kw)


def test_onnx_engine_segments_without_torch(tmp_path, sample_crop):
    out = tmp_path / "f.geojson"
    code = ("import sys; from farmseg.cli import main; "
            f"sys.exit(main(['segment', {str(sample_crop)!r}, '-o', {str(out)!r}, "
            "'--engine', 'onnx', '-q']))")
    done = _python(code, tmp_path, block_torch=True)
    assert done.returncode == 0, done.stderr
    assert pyogrio.read_info(out)["features"] > 0


def test_torch_engine_asked_for_without_torch_is_a_clear_error(tmp_path, sample_crop):
    code = ("import sys; from farmseg.cli import main; "
            f"sys.exit(main(['segment', {str(sample_crop)!r}, '-o', "
            f"{str(tmp_path / 'f.gpkg')!r}, '--engine', 'torch', '-q']))")
    done = _python(code, tmp_path, block_torch=True)
    assert done.returncode == 2
    assert "needs PyTorch" in done.stderr and "--engine onnx" in done.stderr


def at_pixel_size(crop: Path, pixel_size_m: float | None) -> Path:
    """The crop labelled with the model's pixel size (same pixels), so that a model for coarse
    imagery reads it without resampling."""
    import rasterio

    if not pixel_size_m:
        return crop
    with rasterio.open(crop, "r+") as dst:
        t = dst.transform
        dst.transform = rasterio.Affine(pixel_size_m, 0, t.c, 0, -pixel_size_m, t.f)
    return crop


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "models").iterdir()
                                        if (p / "farmseg.json").is_file()))
def test_torch_and_onnx_engines_give_the_same_fields(tmp_path, sample_crop, name):
    from farmseg.cli import main
    from farmseg.models.bundle import load_bundle

    bundle = load_bundle(name)
    assert bundle.has_onnx, f"models/{name}/model.onnx is missing: run `make onnx`"
    crop = at_pixel_size(sample_crop, bundle.pixel_size_m)
    counts = []
    for engine in ("torch", "onnx"):
        out = tmp_path / f"{engine}.gpkg"
        assert main(["segment", str(crop), "-o", str(out), "--engine", engine, "--model",
                     str(bundle.path), "--precision", "fp32",
                     "--prob", str(tmp_path / f"{engine}.tif"), "-q"]) == 0
        counts.append(pyogrio.read_info(out)["features"])
    assert counts[0] > 0
    import rasterio

    with rasterio.open(tmp_path / "torch.tif") as a, rasterio.open(tmp_path / "onnx.tif") as b:
        classes_a, classes_b = a.read().argmax(0), b.read().argmax(0)
    assert (classes_a != classes_b).mean() < 0.002
    assert abs(counts[0] - counts[1]) <= 1


def test_export_onnx_rewrites_a_checked_model(tmp_path, capsys):
    import shutil

    from farmseg.cli import main
    from farmseg.models.bundle import resolve_bundle_path

    copy = tmp_path / "m"
    shutil.copytree(resolve_bundle_path("default"), copy)
    (copy / "model.onnx").unlink()
    assert main(["export-onnx", str(copy)]) == 0
    assert (copy / "model.onnx").stat().st_size > 1_000_000
    assert "max |torch - onnx|" in capsys.readouterr().out


def test_training_without_torch_says_what_to_install(tmp_path, labeled_dir):
    code = ("import sys; from farmseg.cli import main; "
            f"sys.exit(main(['train', '--data', {str(labeled_dir)!r}, '--out', "
            f"{str(tmp_path / 'm')!r}]))")
    done = _python(code, tmp_path, block_torch=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "pip install 'farmseg[torch]'" in done.stderr


@pytest.mark.parametrize("int8_ok, native_bf16, fast_int8, pixels, expected", [
    (True, True, True, 20_000 ** 2, "onnx/cpu/int8"),
    (True, False, False, 20_000 ** 2, "onnx/cpu/fp32"),
    (False, True, True, 20_000 ** 2, "torch/cpu/bfloat16"),
    (False, True, True, 1024 ** 2, "onnx/cpu/fp32"),
    (False, False, True, 20_000 ** 2, "onnx/cpu/fp32")])
def test_auto_engine_follows_the_cpu_features(monkeypatch, int8_ok, native_bf16, fast_int8,
                                              pixels, expected):
    """An accepted int8 model where the CPU has fast int8; else, on CPUs with native bf16,
    the accepted bf16 torch path for large rasters (small ones do not repay torch's
    start-up); else ONNX fp32."""
    from farmseg.models import cpu, engines, machine
    from farmseg.models.bundle import load_bundle

    bundle = load_bundle("default")
    bundle.meta = {**bundle.meta, "precision": {"int8": {"accepted": int8_ok},
                                                "bf16": {"accepted": True}}}
    monkeypatch.setattr(cpu, "has_native_bf16", lambda: native_bf16)
    monkeypatch.setattr(machine, "int8_is_fast", lambda: fast_int8)
    monkeypatch.setattr(machine, "torch_cuda_available", lambda: False)
    assert engines.make_predictor(bundle, pixels=pixels).name == expected


@dataclass(frozen=True)
class _Machine:
    native_bf16: bool = False
    fast_int8: bool = False
    cuda: bool = False
    onnxruntime: bool = True
    torch: bool = True


_BIG, _SMALL = 20_000 ** 2, 1024 ** 2
_BF16_CPU = _Machine(native_bf16=True)
_BF16_OK = BundleVerdicts(has_onnx=True, int8_accepted=False, bf16_accepted=True)
_INT8_OK = BundleVerdicts(has_onnx=True, int8_accepted=True, bf16_accepted=True)
_PLAIN = BundleVerdicts(has_onnx=True, int8_accepted=False, bf16_accepted=False)
_NO_ONNX = BundleVerdicts(has_onnx=False, int8_accepted=False, bf16_accepted=False)


@pytest.mark.parametrize("request_, machine, verdicts, pixels, expected", [
    # auto on the CPU: int8 where accepted and fast, torch bf16 for large rasters where
    # native and accepted (and no int8), else ONNX fp32
    (EngineRequest(), _Machine(), _PLAIN, _BIG, ("onnx", "cpu", "fp32")),
    (EngineRequest(), _Machine(fast_int8=True), _INT8_OK, _BIG, ("onnx", "cpu", "int8")),
    (EngineRequest(), _Machine(), _INT8_OK, _BIG, ("onnx", "cpu", "fp32")),
    (EngineRequest(), _BF16_CPU, _BF16_OK, _BIG, ("torch", "cpu", "bf16")),
    (EngineRequest(), _BF16_CPU, _BF16_OK, None, ("torch", "cpu", "bf16")),
    (EngineRequest(), _BF16_CPU, _BF16_OK, _SMALL, ("onnx", "cpu", "fp32")),
    (EngineRequest(), _BF16_CPU, _PLAIN, _BIG, ("onnx", "cpu", "fp32")),
    (EngineRequest(), _Machine(native_bf16=True, fast_int8=True), _INT8_OK, _BIG,
     ("onnx", "cpu", "int8")),
    (EngineRequest(), _Machine(native_bf16=True, torch=False), _BF16_OK, _BIG,
     ("onnx", "cpu", "fp32")),
    (EngineRequest(precision="fp32"), _BF16_CPU, _BF16_OK, _BIG, ("onnx", "cpu", "fp32")),
    # torch where ONNX cannot run, or on CUDA
    (EngineRequest(), _Machine(), _NO_ONNX, _BIG, ("torch", "cpu", "fp32")),
    (EngineRequest(), _Machine(onnxruntime=False), _PLAIN, _BIG, ("torch", "cpu", "fp32")),
    (EngineRequest(), _Machine(cuda=True), _BF16_OK, _BIG, ("torch", "cuda", "fp32")),
    (EngineRequest(device="cpu"), _Machine(cuda=True), _PLAIN, _BIG, ("onnx", "cpu", "fp32")),
    (EngineRequest(device="cuda"), _Machine(), _PLAIN, _BIG, ("torch", "cuda", "fp32")),
    # asked precisions pick their engine
    (EngineRequest(precision="bf16"), _Machine(), _PLAIN, _SMALL, ("torch", "cpu", "bf16")),
    (EngineRequest(precision="fp16"), _Machine(cuda=True), _PLAIN, _SMALL,
     ("torch", "cuda", "fp16")),
    (EngineRequest(precision="int8"), _Machine(), _PLAIN, _SMALL, ("onnx", "cpu", "int8")),
    (EngineRequest(device="cuda", precision="int8"), _Machine(cuda=True), _PLAIN, _SMALL,
     ("torch", "cuda", "fp32")),
    # asked engines
    (EngineRequest("onnx"), _Machine(cuda=True), _BF16_OK, _BIG, ("onnx", "cpu", "fp32")),
    (EngineRequest("onnx"), _Machine(fast_int8=True), _INT8_OK, _SMALL,
     ("onnx", "cpu", "int8")),
    (EngineRequest("torch"), _BF16_CPU, _BF16_OK, _SMALL, ("torch", "cpu", "bf16")),
    (EngineRequest("torch"), _Machine(), _BF16_OK, _SMALL, ("torch", "cpu", "fp32")),
    (EngineRequest("torch"), _Machine(native_bf16=True, cuda=True), _BF16_OK, _SMALL,
     ("torch", "cuda", "fp32")),
])
def test_engine_decision_table(request_, machine, verdicts, pixels, expected):
    assert choose_engine(request_, machine, verdicts, pixels) == EngineChoice(*expected)


@pytest.mark.parametrize("request_, message", [
    (EngineRequest("tensorrt"), "unknown engine 'tensorrt'"),
    (EngineRequest(device="tpu"), "unknown device 'tpu'"),
    (EngineRequest(precision="fp8"), "unknown precision 'fp8'"),
    (EngineRequest("torch", precision="int8"), "int8 runs on ONNX Runtime"),
    (EngineRequest("onnx", precision="bf16"), "bf16 runs on torch"),
    (EngineRequest("onnx", device="cuda"), "onnx runs on the CPU"),
])
def test_engine_requests_that_do_not_go_together(request_, message):
    with pytest.raises(UsageError, match=message):
        choose_engine(request_, _Machine(), _PLAIN)


class _NoCudaProbe:
    native_bf16 = fast_int8 = False
    onnxruntime = torch = True

    @property
    def cuda(self) -> bool:  # probing CUDA imports torch where a driver is present
        raise AssertionError("CUDA probed")


@pytest.mark.parametrize("request_", [EngineRequest("onnx"), EngineRequest(device="cpu")])
def test_the_cpu_paths_never_probe_cuda(request_):
    assert choose_engine(request_, _NoCudaProbe(), _PLAIN).engine == "onnx"


def test_frozen_bf16_torch_path_matches_fp32_on_a_real_crop(sample_network_tile):
    """--precision bf16 on CPU runs a frozen bf16 graph; it must give the fp32 classes up
    to a few pixels, for any batch and tile size (traced once, on the first batch)."""
    pytest.importorskip("torch")
    from farmseg.models.bundle import load_bundle
    from farmseg.models.engine_torch import TorchPredictor

    bundle = load_bundle("default")
    tile = sample_network_tile
    fp32 = TorchPredictor(bundle, "cpu", "fp32")
    bf16 = TorchPredictor(bundle, "cpu", "bf16")
    assert bf16.suggested_batch(512) == 1
    for batch in (tile[None], np.stack([tile, tile[:, ::-1].copy()]), tile[None, :, :128, :128]):
        expected = fp32.predict(batch).argmax(1)
        got = bf16.predict(batch)
        assert got.dtype == np.float32 and np.allclose(got.sum(1), 1.0, atol=1e-4)
        assert (got.argmax(1) != expected).mean() < 0.01
