"""Does fine-tuning on corrected fields pay off? (`make finetune-check-corrections`)

A user's corrections, made perfect: the `finetune_check` region (2 x 2 held-out NAIP images,
never trained on; 10 m by default, Sentinel-2's pixel size; uint16, recoloured) is segmented
whole with the base model; in the west half its fields are replaced by the reference fields
(those reaching into it) and the west half is marked reviewed. One training folder holds the
whole image and `fields/region.gpkg` (layers `fields` and `reviewed`), as the editor saves
it; `farmseg train --base default --tile 128 --epochs 30` learns from it (pixels outside
the reviewed half are ignored, the validation block lies inside it). The east half is
segmented and scored against its reference fields (`segment` + `evaluate`) before and after.
The fine-tune keeps its weights whatever its verdict (--keep-finetuned), so that they are
scored too; the result a user gets is those weights when the verdict was "better", else the
base. Passes when that result gains >= 0.05 field F1 and the fine-tune takes < 15 min.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS
from rasterio import features
from rasterio.transform import Affine, from_origin

from farmseg.editing.layer import EditableLayer, from_field_layer
from farmseg.editing.store import load_layer, save_layer
from farmseg.fields.clean import FieldLayer
from farmseg.jobs import drain, run_job
from farmseg.models.bundle import load_bundle
from farmseg.pipeline.segment import SegmentOptions, segment_job
from farmseg.tools.finetune_check import EastScore, _mosaic, _recolour, _write, east_score

NAME = "region"
MIN_GAIN, MAX_MINUTES = 0.05, 15.0


def reference_fields(instances: np.ndarray, transform: Affine, crs: CRS | None,
                     first_id: int) -> EditableLayer:
    """The reference fields of an instance raster as confirmed fields (ids from
    `first_id`)."""
    geoms: dict[int, list] = {}
    for geom, value in features.shapes(instances, mask=instances > 0, transform=transform):
        geoms.setdefault(int(value), []).append(shapely.geometry.shape(geom))
    polygons = np.array([shapely.union_all(parts) for parts in geoms.values()], dtype=object)
    ids = np.arange(first_id, first_id + len(polygons))
    return from_field_layer(FieldLayer(polygons, {"field_id": ids}, crs), status="confirmed")


def perfect_review(base: EditableLayer, reference: EditableLayer, west: shapely.Polygon
                   ) -> EditableLayer:
    """The base's fields with those touching `west` replaced by the reference fields that
    reach into it, and `west` marked reviewed (what a careful user's edits amount to)."""
    wrong = base.ids[base.tree.query(west, predicate="intersects")]
    right = reference.ids[reference.tree.query(west, predicate="intersects")]
    return base.replace_rows(wrong, reference.rows(right), reviewed=west)


def build_corrections(data_dir: Path, names: list[str], work: Path, pixel: int, base: str
                      ) -> dict[str, Path]:
    """The region at `pixel` m in `work`: train/ (the whole image, the corrected fields and
    the reviewed west half), east.tif and its reference instances east_instances.tif."""
    image, instances = _mosaic(data_dir, names, pixel)
    image = _recolour(image)
    transform = from_origin(500000, 4500000, pixel, pixel)
    whole = _write(work / "train" / "images" / f"{NAME}.tif", image, transform, "uint16")
    predicted = work / "base_fields.gpkg"
    drain(segment_job(SegmentOptions(input=whole, output=predicted, model=base,
                                     overwrite=True, work_dir=work)))
    layer = load_layer(predicted)
    h, w = instances.shape
    west = shapely.box(*(transform * (0, h)), *(transform * (w // 2, 0)))
    reference = reference_fields(instances, transform, layer.crs, layer.next_id())
    corrected = perfect_review(layer, reference, west)
    (work / "train" / "fields").mkdir(parents=True, exist_ok=True)
    save_layer(corrected, work / "train" / "fields" / f"{NAME}.gpkg")
    east = transform * Affine.translation(w // 2, 0)
    return {"train": work / "train",
            "east": _write(work / "east.tif", image[:, :, w // 2:], east, "uint16"),
            "east_ref": _write(work / "east_instances.tif", instances[None, :, w // 2:], east,
                               "int32")}


def _row(label: str, east: EastScore) -> str:
    s = east.score
    return f"| {label} | {s.reference} | {s.predicted} | {s.f1:.3f} | {s.pixel_iou:.3f} |"


def report(before: EastScore, after: EastScore, record: dict, minutes: float,
           cpu_minutes: float) -> bool:
    """Print the table; True when the result a user gets gains enough, in time (wall
    clock; the CPU time tells what it needs where other jobs share the cores)."""
    kept = "fine-tuned" if record["verdict"] == "better" else "base"
    result = after if kept == "fine-tuned" else before
    gain = result.score.f1 - before.score.f1
    print(f"fine-tune: {minutes:.1f} min ({cpu_minutes:.1f} CPU min); trainer's validation "
          f"(block of the reviewed half): {record['summary']}; verdict: {record['verdict']}")
    print("| east half | reference fields | predicted | field F1 | pixel IoU |\n"
          "|---|---|---|---|---|")
    print(_row("before (base)", before))
    print(_row("fine-tuned weights (--keep-finetuned)", after))
    print(_row(f"result without --keep-finetuned (the {kept} model)", result))
    print(f"F1 gain: fine-tuned {after.score.f1 - before.score.f1:+.3f}, result {gain:+.3f} "
          f"(needs >= {MIN_GAIN:+.2f}); fine-tune {minutes:.1f} min (needs < {MAX_MINUTES:.0f})")
    return gain >= MIN_GAIN and minutes < MAX_MINUTES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/agoro-naip/train")
    parser.add_argument("--base", default="default")
    parser.add_argument("--pixel", type=int, default=10, help="metres per pixel")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--keep", type=Path, help="build the region and the fine-tuned model "
                        "in this folder and keep them (default: a temporary folder)")
    args = parser.parse_args(argv)
    from farmseg.training.trainer import TrainConfig, train_job

    names = [n.split("[")[0] for n in
             load_bundle(args.base, args.pixel).meta["training"]["validation"]][:4]
    folder = (nullcontext(str(args.keep)) if args.keep
              else tempfile.TemporaryDirectory(prefix="farmseg-corrections-"))
    with folder as tmp:
        work = Path(tmp)
        paths = build_corrections(Path(args.data), names, work, args.pixel, args.base)
        before = east_score(args.base, paths)
        start, cpu = time.monotonic(), time.process_time()
        run_job(train_job(TrainConfig(data=str(paths["train"]), out=str(work / "tuned"),
                                      base=args.base, epochs=args.epochs, tile=args.tile,
                                      keep_finetuned=True, command=" ".join(sys.argv))))
        minutes = (time.monotonic() - start) / 60
        cpu_minutes = (time.process_time() - cpu) / 60
        record = json.loads((work / "tuned" / "farmseg.json").read_text())["finetune"]
        after = east_score(str(work / "tuned"), paths)
    print(f"region: 2 x 2 held-out NAIP images ({', '.join(names)}), {args.pixel} m, uint16, "
          "recoloured; the base's fields in the west half replaced by the reference fields, "
          f"the west half reviewed; --tile {args.tile} --epochs {args.epochs}")
    return 0 if report(before, after, record, minutes, cpu_minutes) else 1


if __name__ == "__main__":
    sys.exit(main())
