"""Turn a trusted PyTorch checkpoint into a bundle (imports torch).

Only on the user's explicit request, and even then with `weights_only=True`, which loads
tensors and plain containers but refuses to run code from the file.
"""

from __future__ import annotations

from pathlib import Path

import torch

from farmseg.errors import ModelError
from farmseg.models.bundle import (
    CLASS_NAMES,
    SCHEMA_VERSION,
    WEIGHTS_NAME,
    normalization,
    write_bundle_atomically,
    write_meta,
)
from farmseg.models.nets import build_network, save_weights, smp_arch, smp_encoder
from farmseg.models.onnx_export import export_onnx
from farmseg.models.scaling import fixed_scaling


def _state_dict(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(loaded, dict) and isinstance(loaded.get(key), dict):
            loaded = loaded[key]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor)
                                               for v in loaded.values()):
        raise ModelError(path, "holds no plain state dict of tensors")
    return {k.removeprefix("module."): v for k, v in loaded.items()}


def import_checkpoint(path: Path, arch: str, encoder: str, out: Path,
                      bands: list[int] | None = None, dtype: str = "uint8") -> Path:
    """Load `path` with weights_only=True into arch/encoder strictly and write a bundle."""
    path = Path(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(path, f"cannot be loaded safely ({str(exc).splitlines()[0]})") from None
    bands = bands or [1, 2, 3]
    model = build_network(arch, encoder, len(bands), len(CLASS_NAMES))
    try:
        model.load_state_dict(_state_dict(loaded, path), strict=True)
    except RuntimeError as exc:
        raise ModelError(path, f"does not fit {arch}/{encoder} "
                         f"({str(exc).splitlines()[0]})") from None
    mean, std = normalization(len(bands))
    meta = {"schema_version": SCHEMA_VERSION, "name": Path(out).name, "arch": smp_arch(arch),
            "encoder": smp_encoder(encoder), "classes": CLASS_NAMES,
            "input": {"bands": bands, "dtype": dtype, "pixel_size_m": None},
            "scaling": fixed_scaling([0.0] * len(bands), [255.0] * len(bands)),
            "normalize": {"mean": mean, "std": std},
            "inference": {"tile": 512, "overlap": 64}, "partial": False,
            "training": {"imported_from": str(path)}, "metrics": {}}

    def fill(folder: Path) -> None:
        save_weights(model, folder / WEIGHTS_NAME)
        write_meta(folder, meta)
        export_onnx(model, folder, len(bands))

    return write_bundle_atomically(Path(out), fill)
