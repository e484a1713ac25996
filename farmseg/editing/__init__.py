"""Correcting a field layer: pure edit operations on an immutable collection (Qt-free).

`layer.EditableLayer` holds the fields (polygons sorted by `field_id`, attributes with
`status`) and the reviewed areas. Every operation in `ops` and `grow` returns an
`history.Edit` that turns the layer before into the layer after and back (undo/redo);
`EditHistory` keeps the stacks where no Qt undo stack does. Edits keep a clean coverage:
valid polygons, clipped by their neighbours, shared edges vertex for vertex (`geometry`).
`review` orders fields for checking, `store` reads and saves layers (GeoPackage with the
`reviewed` layer).
"""
