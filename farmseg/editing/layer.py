"""The editable field collection: polygons sorted by `field_id`, attributes, reviewed areas."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import shapely
from pyproj import CRS

from farmseg.errors import FarmsegError
from farmseg.fields.clean import ATTRIBUTES, M2_PER_HA, FieldLayer
from farmseg.fields.measure import areas_perimeters_m, compactness

STATUSES = ("predicted", "edited", "drawn", "confirmed")
COLUMNS = tuple(dict.fromkeys((*ATTRIBUTES, "status")))
_MEASURES = ("area_ha", "perim_m", "compact")
_FLOATS = ("confidence", *_MEASURES)
EMPTY = shapely.MultiPolygon()


class EditError(FarmsegError):
    """An edit that cannot be made (nothing selected, a line that does not cut, ...)."""

    def __init__(self, problem: str) -> None:
        super().__init__(None, problem)


def measurements(geoms: np.ndarray, crs: CRS | None) -> dict[str, np.ndarray]:
    """area_ha, perim_m and compact of polygons, rounded as the pipeline rounds them."""
    area, perimeter = areas_perimeters_m(geoms, crs)
    return {"area_ha": np.round(area / M2_PER_HA, 4), "perim_m": np.round(perimeter, 1),
            "compact": np.round(compactness(area, perimeter), 3)}


def _frozen(values: np.ndarray) -> np.ndarray:
    values = np.array(values)
    values.flags.writeable = False
    return values


@dataclass(frozen=True, eq=False)
class EditableLayer:
    """Fields (single valid polygons in `crs`, sorted by unique `field_id`), their columns
    (`COLUMNS`) and the reviewed areas (one dissolved geometry). Arrays are read-only;
    edits make new layers that share what did not change."""

    geoms: np.ndarray
    columns: Mapping[str, np.ndarray]
    crs: CRS | None
    reviewed: shapely.Geometry = EMPTY
    meta: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "geoms", _frozen(np.asarray(self.geoms, dtype=object)))
        object.__setattr__(self, "columns", {name: _frozen(self.columns[name])
                                             for name in COLUMNS})

    def __len__(self) -> int:
        return len(self.geoms)

    @property
    def ids(self) -> np.ndarray:
        return self.columns["field_id"]

    @cached_property
    def tree(self) -> shapely.STRtree:
        """Spatial index of `geoms` (positions)."""
        return shapely.STRtree(self.geoms)

    def index_of(self, ids: Iterable[int]) -> np.ndarray:
        """Positions of the fields `ids` (EditError for an unknown id)."""
        wanted = np.asarray(list(ids), dtype=np.int64)
        where = np.searchsorted(self.ids, wanted)
        found = (where < len(self)) & (self.ids[np.minimum(where, len(self) - 1)] == wanted) \
            if len(self) else np.zeros(len(wanted), bool)
        if not found.all():
            raise EditError(f"no field with id {int(wanted[~found][0])}")
        return where

    def geometry(self, field_id: int) -> shapely.Polygon:
        return self.geoms[self.index_of([field_id])[0]]

    def rows(self, ids: Iterable[int]) -> EditableLayer:
        """The fields `ids` alone (no reviewed areas)."""
        at = self.index_of(ids)
        return EditableLayer(self.geoms[at], {k: v[at] for k, v in self.columns.items()},
                             self.crs, EMPTY, self.meta)

    def replace_rows(self, removed: Iterable[int], added: EditableLayer,
                     reviewed: shapely.Geometry | None = None) -> EditableLayer:
        """This layer without the fields `removed`, with those of `added`, in id order."""
        keep = np.ones(len(self), bool)
        keep[self.index_of(removed)] = False
        ids = np.concatenate([self.ids[keep], added.ids])
        if len(np.unique(ids)) != len(ids):
            raise EditError("a field id would be used twice")
        order = np.argsort(ids, kind="stable")
        columns = {k: np.concatenate([v[keep], added.columns[k]]).astype(v.dtype)[order]
                   for k, v in self.columns.items()}
        geoms = np.concatenate([self.geoms[keep], added.geoms])[order]
        return EditableLayer(geoms, columns, self.crs,
                             self.reviewed if reviewed is None else reviewed, self.meta)

    def next_id(self) -> int:
        return int(self.ids.max()) + 1 if len(self) else 1

    def field_at(self, x: float, y: float) -> int | None:
        """Id of the field containing the point, None where there is none."""
        hits = self.tree.query(shapely.Point(x, y), predicate="intersects")
        return int(self.ids[hits.min()]) if len(hits) else None

    def new_rows(self, geoms: Iterable[shapely.Polygon], status: str, confidence: float,
                 parents: Iterable[int] = (), ids: Iterable[int] | None = None
                 ) -> EditableLayer:
        """Fields made by an edit: measured, `status`, new ids from `next_id` (or `ids`),
        source and model of the first parent (else of the layer's first field)."""
        geoms = np.asarray(list(geoms), dtype=object)
        n = len(geoms)
        ids = np.arange(self.next_id(), self.next_id() + n) if ids is None else list(ids)
        donor = next(iter(parents), None)
        origin = self.index_of([donor])[0] if donor is not None else 0 if len(self) else None
        columns = {
            "field_id": np.asarray(ids, dtype=self.ids.dtype),
            "confidence": np.full(n, confidence, float),
            "created": np.array([_dt.date.today().isoformat()] * n, dtype=object),
            "status": np.array([status] * n, dtype=object),
            **measurements(geoms, self.crs),
        }
        for name in ("source", "model"):
            value = self.columns[name][origin] if origin is not None else ""
            columns[name] = np.array([value] * n, dtype=object)
        return EditableLayer(geoms, columns, self.crs, EMPTY, self.meta)

    def with_geometries(self, ids: Iterable[int], geoms: Iterable[shapely.Polygon],
                        status: str | None = None) -> EditableLayer:
        """The fields `ids` alone with new geometries, measured again; `status` if given."""
        rows = self.rows(ids)
        geoms = np.asarray(list(geoms), dtype=object)
        columns = {**rows.columns, **measurements(geoms, self.crs)}
        if status is not None:
            columns["status"] = np.array([status] * len(rows), dtype=object)
        return replace(rows, geoms=geoms, columns=columns)

    def with_status(self, ids: Iterable[int], status: str) -> EditableLayer:
        """The fields `ids` alone with `status`."""
        rows = self.rows(ids)
        return replace(rows, columns={**rows.columns,
                                      "status": np.array([status] * len(rows), dtype=object)})


def from_field_layer(layer: FieldLayer, reviewed: shapely.Geometry = EMPTY,
                     status: str = "predicted") -> EditableLayer:
    """An editable copy of a pipeline layer: geometries made valid, multipolygons split
    into fields (other geometries dropped), missing or repeated ids given new ones,
    missing columns filled (measurements computed, `status` as given)."""
    geoms = shapely.make_valid(np.asarray(layer.geoms, dtype=object))
    geoms, index = shapely.get_parts(geoms, return_index=True)
    geoms, inner = shapely.get_parts(geoms, return_index=True)  # multipolygons in collections
    index = index[inner]
    keep = (shapely.get_type_id(geoms) == shapely.GeometryType.POLYGON) & ~shapely.is_empty(geoms)
    geoms, index = geoms[keep], index[keep]
    n = len(geoms)
    source = {k: np.asarray(v)[index] for k, v in layer.columns.items()}
    ids = _unique_ids(source.get("field_id", np.arange(1, n + 1)))
    defaults = {"confidence": np.full(n, np.nan), "status": np.array([status] * n, dtype=object)}
    columns: dict[str, np.ndarray] = {"field_id": ids}
    for name in COLUMNS[1:]:
        if name in source:
            columns[name] = source[name].astype(float if name in _FLOATS else object)
        else:
            columns[name] = defaults.get(name, np.array([""] * n, dtype=object))
    if any(name not in source for name in _MEASURES):
        columns.update(measurements(geoms, layer.crs))
    order = np.argsort(ids, kind="stable")
    return EditableLayer(geoms[order], {k: v[order] for k, v in columns.items()}, layer.crs,
                         reviewed, dict(layer.meta))


def _unique_ids(ids: np.ndarray) -> np.ndarray:
    """Integer ids with each repeat after the first (and any id < 1) replaced by a new one."""
    ids = np.asarray(ids).astype(np.int64)
    _, first = np.unique(ids, return_index=True)
    bad = np.ones(len(ids), bool)
    bad[first] = False
    bad |= ids < 1
    start = int(ids[~bad].max(initial=0)) + 1
    ids[bad] = np.arange(start, start + int(bad.sum()))
    return ids.astype(np.int32)


def to_field_layer(layer: EditableLayer) -> FieldLayer:
    """A pipeline layer (for `write_fields`), every column kept, `status` included."""
    return FieldLayer(np.array(layer.geoms), {k: np.array(v) for k, v in layer.columns.items()},
                      layer.crs, dict(layer.meta))
