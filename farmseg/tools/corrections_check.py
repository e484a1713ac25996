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

import sys
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS
from rasterio import features
from rasterio.transform import Affine, from_origin

from farmseg.editing.layer import EditableLayer, from_field_layer
from farmseg.editing.store import load_layer, save_layer
from farmseg.fields.clean import FieldLayer
from farmseg.jobs import drain
from farmseg.pipeline.segment import SegmentOptions, segment_job
from farmseg.tools.finetune_check import (
    CheckRun,
    check_arguments,
    mosaic,
    recolour,
    run_check,
    write_raster,
)

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
    image, instances = mosaic(data_dir, names, pixel)
    image = recolour(image)
    transform = from_origin(500000, 4500000, pixel, pixel)
    whole = write_raster(work / "train" / "images" / f"{NAME}.tif", image, transform, "uint16")
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
            "east": write_raster(work / "east.tif", image[:, :, w // 2:], east, "uint16"),
            "east_ref": write_raster(work / "east_instances.tif", instances[None, :, w // 2:], east,
                               "int32")}


def passes(run: CheckRun) -> bool:
    """The result a user gets gains enough, in time (wall clock; the CPU time printed beside
    it tells what it needs where other jobs share the cores)."""
    gain = run.result.score.f1 - run.before.score.f1
    print(f"needs a result gain >= {MIN_GAIN:+.2f} ({gain:+.3f}) and a fine-tune under "
          f"{MAX_MINUTES:.0f} min ({run.minutes:.1f})")
    return gain >= MIN_GAIN and run.minutes < MAX_MINUTES


def main(argv: list[str] | None = None) -> int:
    args = check_arguments(__doc__ or "", 10, argv)
    run = run_check(args, lambda data, names, work: build_corrections(
        data, names, work, args.pixel, args.base), "farmseg-corrections-")
    print(f"region: 2 x 2 held-out NAIP images ({', '.join(run.names)}), {args.pixel} m, "
          "uint16, recoloured; the base's fields in the west half replaced by the reference "
          f"fields, the west half reviewed; --tile {args.tile} --epochs {args.epochs}")
    run.report()
    return 0 if passes(run) else 1


if __name__ == "__main__":
    sys.exit(main())
