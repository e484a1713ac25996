"""Model bundles: a folder with model.safetensors, farmseg.json and model.onnx.

This module reads and writes the metadata only; it never imports torch and never
unpickles anything.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farmseg.errors import ModelError
from farmseg.geoio.atomic import default_mode

SCHEMA_VERSION = 1
META_NAME = "farmseg.json"
WEIGHTS_NAME = "model.safetensors"
ONNX_NAME = "model.onnx"
ONNX_INT8_NAME = "model.int8.onnx"
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".pkl", ".bin")
CLASS_NAMES = ["background", "field", "boundary"]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def normalization(n_bands: int) -> tuple[list[float], list[float]]:
    """ImageNet mean/std for RGB; neutral values for extra bands."""
    return (IMAGENET_MEAN[:n_bands] + [0.5] * max(0, n_bands - 3),
            IMAGENET_STD[:n_bands] + [0.25] * max(0, n_bands - 3))


def app_root() -> Path:
    """Folder holding models/ and resources/ (the repo, or the frozen app folder)."""
    frozen = getattr(sys, "_MEIPASS", None)
    return Path(frozen) if frozen else Path(__file__).resolve().parents[2]


def bundled_models_dir() -> Path:
    return app_root() / "models"


def user_models_dir() -> Path:
    """Where fine-tuned models go: $FARMSEG_MODEL_DIR or the user's data folder."""
    env = os.environ.get("FARMSEG_MODEL_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "farmseg" / "models"


@dataclass
class ModelBundle:
    """A loaded bundle description; weights are loaded by an engine."""

    path: Path
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.path.name)

    @property
    def arch(self) -> str:
        return str(self.meta["arch"])

    @property
    def encoder(self) -> str:
        return str(self.meta["encoder"])

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def bands(self) -> list[int]:
        """1-based raster band indexes the model reads, in order."""
        return [int(b) for b in self.meta["input"]["bands"]]

    @property
    def band_names(self) -> list[str]:
        return list(self.meta["input"].get("band_names", [str(b) for b in self.bands]))

    @property
    def dtype(self) -> str:
        return str(self.meta["input"]["dtype"])

    @property
    def pixel_size_m(self) -> float | None:
        value = self.meta["input"].get("pixel_size_m")
        return float(value) if value else None

    @property
    def scaling(self) -> dict[str, Any]:
        return dict(self.meta["scaling"])

    @property
    def tile(self) -> int:
        return int(self.meta.get("inference", {}).get("tile", 512))

    @property
    def overlap(self) -> int:
        return int(self.meta.get("inference", {}).get("overlap", 64))

    @property
    def validation_names(self) -> list[str]:
        """The samples training validated on, as recorded: image names, `name[tag]` for a
        strip or block of one (empty when the bundle records none)."""
        return list(self.meta.get("training", {}).get("validation", []))

    @property
    def validation_images(self) -> list[str]:
        """The names of the images training validated on (or on a part of)."""
        return [name.split("[")[0] for name in self.validation_names]

    @property
    def thresholds(self) -> dict[str, float]:
        return dict(self.meta.get("postprocess", {}))

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_NAME

    @property
    def onnx_path(self) -> Path:
        return self.path / ONNX_NAME

    @property
    def has_onnx(self) -> bool:
        return self.onnx_path.is_file()

    @property
    def int8_path(self) -> Path:
        return self.path / ONNX_INT8_NAME

    @property
    def int8_accepted(self) -> bool:
        """An int8 model exists and kept field F1 within tolerance of fp32 on validation."""
        check = self.meta.get("precision", {}).get("int8", {})
        return self.int8_path.is_file() and bool(check.get("accepted"))

    def describe(self) -> str:
        """One line: what the model expects, and its validation field F1 when measured."""
        px = f"{self.pixel_size_m:g} m" if self.pixel_size_m else "any pixel size"
        partial = " (partial)" if self.meta.get("partial") else ""
        f1 = self.meta.get("metrics", {}).get("val_field_f1")
        scored = f", validation field F1 {f1:.3f}" if f1 is not None else ""
        speed = self.mpix_per_s
        cpu = str(self.meta.get("speed", {}).get("cpu", "")).split(" [")[0]  # without flags
        timed = f", {speed:g} MPix/s on {cpu}" if speed else ""
        return (
            f"{self.name}{partial}: {self.arch}/{self.encoder}, bands {self.band_names} "
            f"{self.dtype}, {px}, classes {self.classes}{scored}{timed}"
        )

    @property
    def mpix_per_s(self) -> float | None:
        """End-to-end segmenting speed recorded by `farmseg bench --record` (None if not)."""
        value = self.meta.get("speed", {}).get("mpix_per_s")
        return float(value) if value is not None else None


def models_table(bundles: list[ModelBundle]) -> str:
    """`farmseg models`: one row per bundle (arch, encoder, pixel size, validation figures,
    speed, the pixel sizes it is the default for, folder)."""
    def cell(value: float | None, form: str) -> str:
        return format(value, form) if value is not None else "-"

    rows = [("name", "arch", "encoder", "pixel", "field F1", "pixel IoU", "MPix/s",
             "default for", "folder")]
    for b in bundles:
        metrics = b.meta.get("metrics", {})
        low, high = default_range(b.meta)
        default_for = ("all" if b.name == "default" else "-") if low >= high else (
            f"< {high:g} m" if not low else f">= {low:g} m" if high == math.inf
            else f"{low:g}-{high:g} m")
        rows.append((b.name + (" (partial)" if b.meta.get("partial") else ""), b.arch,
                     b.encoder, f"{b.pixel_size_m:g} m" if b.pixel_size_m else "any",
                     cell(metrics.get("val_field_f1"), ".3f"),
                     cell(metrics.get("val_pixel_iou"), ".3f"), cell(b.mpix_per_s, ".2f"),
                     default_for, str(b.path)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(row, widths)).rstrip()
             for row in rows]
    return "\n".join(lines)


def default_bundle_path(pixel_size_m: float | None = None) -> Path:
    """The bundled model that `default` means for a raster of `pixel_size_m` metres: the
    one whose `default_for_m` range [low, high) holds it (e.g. the coarse-imagery model for
    5-10 m pixels); `models/default` when none does or the pixel size is unknown."""
    if pixel_size_m:
        for name, low, high in pixel_size_defaults():
            if low <= pixel_size_m < high:
                return bundled_models_dir() / name
    return bundled_models_dir() / "default"


def default_range(meta: dict[str, Any]) -> tuple[float, float]:
    """A bundle's `default_for_m` range [low, high) of raster pixel sizes (0 and inf for an
    open end; empty, (0, 0), when it has none or it is malformed)."""
    value: Any = meta.get("default_for_m")
    try:
        low, high = value
        return (float(low or 0.0), float(high or math.inf))
    except (ValueError, TypeError):
        return (0.0, 0.0)


def pixel_size_defaults() -> list[tuple[str, float, float]]:
    """(bundle folder name, low, high) of each bundled model with a `default_for_m` range:
    what `default` means for rasters of those pixel sizes."""
    folder = bundled_models_dir()
    found = []
    for sub in sorted(folder.iterdir()) if folder.is_dir() else []:
        try:
            meta = json.loads((sub / META_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        low, high = default_range(meta) if isinstance(meta, dict) else (0.0, 0.0)
        if low < high:
            found.append((sub.name, low, high))
    return found


def bundle_argument(bundle: ModelBundle) -> str:
    """How `--model`/`--base` name a bundle: its folder name when that finds it, else its
    path. The bundled default is `default`, which picks the model for the raster's pixel size."""
    try:
        found = resolve_bundle_path(bundle.path.name)
    except ModelError:
        return str(bundle.path)
    return bundle.path.name if found.resolve() == bundle.path.resolve() else str(bundle.path)


def resolve_bundle_path(name_or_path: str | Path, pixel_size_m: float | None = None) -> Path:
    """Turn `default` (the bundled model suited to `pixel_size_m`, see default_bundle_path),
    a bundle name or a folder path into a bundle folder."""
    text = str(name_or_path)
    if text == "default":
        return default_bundle_path(pixel_size_m)
    candidate = Path(text).expanduser()
    if candidate.exists() or os.sep in text or "/" in text:
        return candidate
    for folder in (bundled_models_dir(), user_models_dir()):
        if (folder / text).is_dir():
            return folder / text
    raise ModelError(text, "no such model (not a folder, and no bundle of that name in "
                     f"{bundled_models_dir()} or {user_models_dir()})")


def load_bundle(name_or_path: str | Path, pixel_size_m: float | None = None) -> ModelBundle:
    """Read and check a bundle's metadata; refuse pickles and future schemas. `default`
    picks the bundled model suited to rasters of `pixel_size_m` metres."""
    path = resolve_bundle_path(name_or_path, pixel_size_m)
    if path.is_file() and path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelError(path, "is a pickle checkpoint, which farmseg never loads (it can run "
                         "code); convert it with `farmseg import-checkpoint FILE --arch A "
                         "--encoder E --out DIR` if you trust its author")
    if not path.exists():
        raise ModelError(path, "model bundle not found")
    if not path.is_dir():
        raise ModelError(path, "is not a model bundle folder (expected farmseg.json + "
                         "model.safetensors)")
    meta_path = path / META_NAME
    if not meta_path.is_file():
        raise ModelError(path, f"not a model bundle: {META_NAME} is missing")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(meta_path, f"unreadable metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelError(meta_path, "metadata is not a JSON object")
    version = meta.get("schema_version")
    if not isinstance(version, int):
        raise ModelError(meta_path, "metadata has no schema_version")
    if version > SCHEMA_VERSION:
        raise ModelError(meta_path, f"made by a newer farmseg (schema {version}, this "
                         f"version reads up to {SCHEMA_VERSION}); update farmseg")
    for key in ("arch", "encoder", "classes", "input", "scaling"):
        if key not in meta:
            raise ModelError(meta_path, f"metadata lacks '{key}'")
    given = meta["input"]
    if not isinstance(given, dict) or not isinstance(given.get("bands"), list) \
            or "dtype" not in given:
        raise ModelError(meta_path, "metadata 'input' lacks its 'bands' or 'dtype'")
    if not isinstance(meta["classes"], list):
        raise ModelError(meta_path, "metadata 'classes' is not a list")
    if not (path / WEIGHTS_NAME).is_file():
        raise ModelError(path, f"{WEIGHTS_NAME} is missing")
    return ModelBundle(path=path, meta=meta)


def list_bundles() -> list[ModelBundle]:
    """Every loadable bundle: bundled ones first, then the user's."""
    found = []
    for folder in (bundled_models_dir(), user_models_dir()):
        if not folder.is_dir():
            continue
        for sub in sorted(folder.iterdir()):
            if sub.is_dir() and (sub / META_NAME).is_file() and not sub.name.startswith("."):
                try:
                    found.append(load_bundle(sub))
                except ModelError:
                    continue
    return found


def write_bundle_atomically(dest: Path, fill: Any) -> Path:
    """Create bundle folder `dest` complete or not at all.

    `fill(tmpdir)` writes the files into a temporary folder beside `dest`; the folder
    is then renamed into place (replacing an older bundle of that name).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        fill(tmp)
        for item in tmp.iterdir():
            with open(item, "rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(item, default_mode())
        os.chmod(tmp, default_mode(directory=True))
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def write_meta(folder: Path, meta: dict[str, Any]) -> None:
    (folder / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True), encoding="utf-8")
