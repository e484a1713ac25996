"""Blocks: windows of a scene group, each read with a halo laid out on the tile grid.

A block's core starts on a multiple of the tile stride s and spans whole strides. It is
read from one stride before its core to `overlap` pixels after it, so the tiles inferred
over the read window are exactly the tiles a run over the whole raster puts over the core,
at the same places, blended with the same weights: the core's probabilities are those of
one run over the whole area. Fields are then grown with a smaller halo of the neighbours'
seeds (VectorizeSettings.halo) and linked across block edges (blocks.py, merge.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from rasterio.windows import Window

from farmseg.batch.mosaic import SceneGroup


@dataclass(frozen=True)
class TileGrid:
    """Tile layout in raster pixels: tiles of `tile` every `stride` pixels."""

    tile: int
    overlap: int

    @property
    def stride(self) -> int:
        return max(1, self.tile - self.overlap)


@dataclass(frozen=True)
class Block:
    """One unit of work: its core (the pixels it owns) and the window it reads."""

    group: int
    row: int
    col: int
    core: Window
    read: Window

    @property
    def name(self) -> str:
        return f"g{self.group}-r{self.row}-c{self.col}"


def core_size(block_px: int, tiles: TileGrid) -> int:
    """Block side in pixels: a whole number of strides near `block_px`."""
    return max(1, round(block_px / tiles.stride)) * tiles.stride


def _spans(length: int, size: int, tiles: TileGrid) -> list[tuple[int, int, int, int]]:
    """(core start, core end, read start, read end) along one axis."""
    return [(start, min(length, start + size), max(0, start - tiles.stride),
             min(length, start + size + tiles.overlap)) for start in range(0, length, size)]


def _intersects(a: Window, b: Window) -> bool:
    return (a.col_off < b.col_off + b.width and b.col_off < a.col_off + a.width
            and a.row_off < b.row_off + b.height and b.row_off < a.row_off + a.height)


def plan_blocks(group: SceneGroup, index: int, tiles: TileGrid, block_px: int) -> list[Block]:
    """The blocks of a group that hold part of a scene, row by row."""
    size = core_size(block_px, tiles)
    blocks = []
    for r, (r0, r1, rr0, rr1) in enumerate(_spans(group.grid.height, size, tiles)):
        for c, (c0, c1, rc0, rc1) in enumerate(_spans(group.grid.width, size, tiles)):
            core = Window(c0, r0, c1 - c0, r1 - r0)
            if any(_intersects(core, w) for w in group.windows):
                blocks.append(Block(index, r, c, core, Window(rc0, rr0, rc1 - rc0, rr1 - rr0)))
    return blocks


def neighbours(block: Block, blocks: dict[tuple[int, int, int], Block]) -> list[Block]:
    """The block and those of the 8 around it that exist."""
    return [blocks[key] for key in ((block.group, block.row + dr, block.col + dc)
                                    for dr in (-1, 0, 1) for dc in (-1, 0, 1)) if key in blocks]


def scene_blocks(group: SceneGroup, blocks: list[Block]) -> list[list[str]]:
    """Per scene of the group, the names of the blocks whose core it touches."""
    return [[b.name for b in blocks if _intersects(b.core, w)] for w in group.windows]
