"""Re-segmenting the rest of an image with a new model: what the user drew, edited or
confirmed stays, and so does every field in the reviewed areas; only the model's untouched
fields (`predicted`) outside them are replaced by the new model's, clipped by what stays."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import shapely

from farmseg.editing.geometry import settle
from farmseg.editing.history import Edit
from farmseg.editing.layer import EditableLayer, from_field_layer, measurements
from farmseg.fields.clean import CleanSettings, FieldLayer
from farmseg.geoio.vectors import reproject

TEXT = "Re-segment the rest"
MIN_OVERLAP_SHARE = 1e-6  # a field sharing more of its area with the reviewed areas is kept


def replaced_ids(layer: EditableLayer) -> np.ndarray:
    """Ids of the fields a re-segmentation replaces: `predicted` ones that share no area
    with the reviewed areas."""
    replaceable = layer.columns["status"] == "predicted"
    if not layer.reviewed.is_empty:
        hits = layer.tree.query(layer.reviewed, predicate="intersects")
        shared = shapely.area(shapely.intersection(layer.geoms[hits], layer.reviewed))
        replaceable[hits[shared > MIN_OVERLAP_SHARE * shapely.area(layer.geoms[hits])]] = False
    return layer.ids[replaceable]


def _clipped(incoming: EditableLayer, taken: shapely.Geometry, first_id: int,
             min_area_ha: float) -> tuple[EditableLayer, np.ndarray]:
    """The parts of the `incoming` fields outside `taken` of at least `min_area_ha`, as
    fields with ids from `first_id` (their other columns from the field they come from,
    measured again), and which of them were cut."""
    geoms = np.array(incoming.geoms)
    cut = np.zeros(len(geoms), bool)
    if not taken.is_empty and len(geoms):
        shapely.prepare(taken)
        cut[shapely.STRtree(geoms).query(taken, predicate="intersects")] = True
        geoms[cut] = shapely.difference(geoms[cut], taken)
    parts, origin = shapely.get_parts(geoms, return_index=True)
    polygon = shapely.get_type_id(parts) == shapely.GeometryType.POLYGON
    parts, origin = parts[polygon], origin[polygon]
    measured = measurements(parts, incoming.crs)
    big = measured["area_ha"] >= min_area_ha
    rows = incoming.rows(incoming.ids[origin[big]])
    columns = {**rows.columns, **{k: v[big] for k, v in measured.items()},
               "field_id": np.arange(first_id, first_id + int(big.sum()),
                                     dtype=rows.ids.dtype)}
    return replace(rows, geoms=parts[big], columns=columns), cut[origin[big]]


def merge_resegmented(layer: EditableLayer, new: FieldLayer,
                      min_area_ha: float = CleanSettings.min_area_ha) -> Edit:
    """The edit that replaces the `predicted` fields outside the reviewed areas by the
    fields of `new` (a segmentation of the same image by another model), clipped by the
    fields that stay and by the reviewed areas (parts under `min_area_ha` dropped), with
    shared edges noded, so that the coverage stays clean. New fields get new ids."""
    gone = replaced_ids(layer)
    staying = layer.replace_rows(gone, layer.rows([]))
    target = layer.crs.to_wkt() if layer.crs is not None else None
    source = new.crs.to_wkt() if new.crs is not None else None
    incoming = from_field_layer(replace(new, geoms=reproject(np.asarray(new.geoms), source,
                                                             target), crs=layer.crs))
    near = staying.geoms[staying.tree.query(shapely.box(*shapely.total_bounds(
        incoming.geoms)), predicate="intersects")] if len(incoming) else staying.geoms[:0]
    taken = shapely.union_all([*near, layer.reviewed])
    pieces, cut = _clipped(incoming, taken, layer.next_id(), min_area_ha)
    both = staying.replace_rows([], pieces)
    done, noded = settle(both, [(int(i), g) for i, g in zip(pieces.ids[cut], pieces.geoms[cut])],
                         clip=False)
    fitted = {**noded, **done}
    fresh = [int(i) for i in pieces.ids if int(i) in fitted]
    neighbours = sorted(set(noded) - set(pieces.ids.tolist()))
    added = pieces.replace_rows(fresh, both.with_geometries(fresh, [fitted[i] for i in fresh]))
    added = added.replace_rows([], staying.with_geometries(neighbours,
                                                          [fitted[i] for i in neighbours]))
    return Edit(TEXT, layer.rows(sorted([*gone.tolist(), *neighbours])), added)
