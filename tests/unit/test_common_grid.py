"""The tile grid (common/grid.py): exact answers for the shapes that catch rounding."""

from __future__ import annotations

import dataclasses
import math

import pytest

from tilecast.common.grid import Grid, level_count

# tests/images.py's pyramid: 3000 x 2000, 256-pixel tiles, 5 levels.
PYRAMID = Grid(size_x=3000, size_y=2000, tile_width=256, tile_height=256, levels=5)


def test_from_metadata_reads_large_images_names() -> None:
    meta = {"sizeX": 3000, "sizeY": "2000", "tileWidth": 256, "tileHeight": 256.0, "levels": 5}
    assert Grid.from_metadata(meta) == PYRAMID
    with pytest.raises(KeyError):
        Grid.from_metadata({"sizeX": 3000, "sizeY": 2000, "levels": 5})


def test_a_grid_is_an_immutable_value() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PYRAMID.levels = 6  # type: ignore[misc]
    assert {PYRAMID, Grid(3000, 2000, 256, 256, 5)} == {PYRAMID}


@pytest.mark.parametrize(
    ("size", "tile", "levels"),
    [
        ((1, 1), (256, 256), 1),
        ((256, 256), (256, 256), 1),
        ((257, 10), (256, 256), 2),
        ((512, 512), (256, 256), 2),
        ((513, 1), (256, 256), 3),
        ((1001, 999), (256, 256), 3),
        ((3000, 2000), (256, 256), 5),
        ((1000, 300), (512, 128), 3),  # the taller ratio (300 / 128) decides
        ((1, 100_000), (1, 256), 10),  # a 1-pixel-wide stripped TIFF
        ((1, 5000), (1, 4096), 2),
        ((47104, 40960), (256, 256), 9),
    ],
)
def test_level_count(size: tuple[int, int], tile: tuple[int, int], levels: int) -> None:
    assert level_count(*size, *tile) == levels
    grid = Grid.for_image(*size, *tile)
    assert grid.levels == levels
    # Level 0 fits in one tile; level 1 (when there is one) does not.
    assert grid.tiles_at(0) == (1, 1)
    if levels > 1:
        assert grid.tiles_at(1) != (1, 1)


def test_level_count_keeps_large_images_float_logarithm() -> None:
    """At a ratio of exactly 2**29 large_image's float log2 is 29.000000000000004: one
    level more than needed, whose level 0 is half a tile wide. tilecast answers the same."""
    assert level_count(256 * 2**28, 1, 256, 256) == 29
    assert level_count(256 * 2**29, 1, 256, 256) == 31
    assert Grid.for_image(256 * 2**29, 1, 256, 256).level_size(0) == (128, 1)


def test_scale_doubles_per_level_down() -> None:
    assert [PYRAMID.scale(z) for z in range(5)] == [16, 8, 4, 2, 1]
    assert PYRAMID.top_level == 4


@pytest.mark.parametrize(
    ("grid", "sizes", "tiles"),
    [
        (
            PYRAMID,
            [(188, 125), (375, 250), (750, 500), (1500, 1000), (3000, 2000)],
            [(1, 1), (2, 1), (3, 2), (6, 4), (12, 8)],
        ),
        # Odd sizes round up at every halving.
        (Grid.for_image(1001, 999, 256, 256), [(251, 250), (501, 500), (1001, 999)], None),
        # Non-square tiles: 512 x 128.
        (
            Grid.for_image(1000, 300, 512, 128),
            [(250, 75), (500, 150), (1000, 300)],
            [(1, 1), (1, 2), (2, 3)],
        ),
        # A 1-pixel-wide stripped TIFF, served as whole-width tiles 256 rows tall.
        (
            Grid.for_image(1, 100_000, 1, 256),
            [(1, h) for h in (196, 391, 782, 1563, 3125, 6250, 12500, 25000, 50000, 100_000)],
            [(1, rows) for rows in (1, 2, 4, 7, 13, 25, 49, 98, 196, 391)],
        ),
        # Tiles much taller than wide, over a short image.
        (Grid.for_image(1, 5000, 1, 4096), [(1, 2500), (1, 5000)], [(1, 1), (1, 2)]),
        (Grid.for_image(1, 1, 256, 256), [(1, 1)], [(1, 1)]),
    ],
)
def test_level_sizes_and_tiles(
    grid: Grid, sizes: list[tuple[int, int]], tiles: list[tuple[int, int]] | None
) -> None:
    assert [grid.level_size(z) for z in range(grid.levels)] == sizes
    expected = tiles or [(-(-w // 256), -(-h // 256)) for w, h in sizes]
    assert [grid.tiles_at(z) for z in range(grid.levels)] == expected


def test_level_sizes_are_repeated_halvings_rounded_up() -> None:
    """ceil(size / 2**k) is ceil of ceil halved k times: what synthesis produces."""
    for size in range(1, 600):
        grid = Grid(size, size + 1, 7, 7, 12)
        width, height = size, size + 1
        for z in range(11, -1, -1):
            assert grid.level_size(z) == (width, height)
            width, height = (width + 1) // 2, (height + 1) // 2


def test_non_square_tiles_crop_each_side_on_its_own() -> None:
    grid = Grid.for_image(1000, 300, 512, 128)
    assert grid.tile_size(2, 1, 2) == (488, 44)
    assert grid.tile_size(1, 0, 1) == (500, 22)


def test_one_pixel_wide_stripped_tiff() -> None:
    grid = Grid.for_image(1, 100_000, 1, 256)
    assert grid.tile_size(9, 0, 390) == (1, 100_000 - 390 * 256)
    assert grid.tile_size(0, 0, 0) == (1, 196)
    assert grid.contains(9, 0, 390)
    assert not grid.contains(9, 1, 0)
    assert not grid.contains(9, 0, 391)
    tall = Grid.for_image(1, 5000, 1, 4096)
    assert tall.tile_size(1, 0, 1) == (1, 5000 - 4096)
    assert tall.tile_size(0, 0, 0) == (1, 2500)


def test_one_pixel_image() -> None:
    grid = Grid.for_image(1, 1, 256, 256)
    assert grid.tile_size(0, 0, 0) == (1, 1)
    assert grid.contains(0, 0, 0)
    assert not grid.contains(0, 1, 0)
    assert not grid.contains(0, 0, 1)
    assert not grid.contains(1, 0, 0)
    assert grid.children(0, 0, 0) == []


def test_edge_tile_sizes() -> None:
    assert PYRAMID.tile_size(4, 0, 0) == (256, 256)
    assert PYRAMID.tile_size(4, 11, 7) == (3000 - 11 * 256, 2000 - 7 * 256)  # (184, 208)
    assert PYRAMID.tile_size(0, 0, 0) == (188, 125)
    assert PYRAMID.tile_size(2, 2, 1) == (750 - 512, 500 - 256)
    assert PYRAMID.tile_size(4, 12, 0) == (0, 256)  # past the level: no content
    # A level a file stores at its own size (here rounded down) crops at that size.
    assert PYRAMID.tile_size(0, 0, 0, level_size=(187, 125)) == (187, 125)


def test_edge_tiles_cover_each_level_exactly() -> None:
    for grid in (PYRAMID, Grid.for_image(1000, 300, 512, 128), Grid.for_image(1, 5000, 1, 256)):
        for z in range(grid.levels):
            across, down = grid.tiles_at(z)
            width, height = grid.level_size(z)
            area = sum(
                math.prod(grid.tile_size(z, x, y)) for x in range(across) for y in range(down)
            )
            assert area == width * height


def test_contains() -> None:
    assert PYRAMID.contains(4, 11, 7)
    assert not PYRAMID.contains(4, 12, 7)
    assert not PYRAMID.contains(4, 11, 8)
    assert PYRAMID.contains(0, 0, 0)
    assert not PYRAMID.contains(0, 1, 0)
    assert not PYRAMID.contains(5, 0, 0)
    assert not PYRAMID.contains(-1, 0, 0)
    assert not PYRAMID.contains(2, -1, 0)


def test_level_area_widens_to_whole_level_pixels() -> None:
    assert PYRAMID.level_area(4, 1, 2, 3, 4) == (1, 2, 3, 4)
    assert PYRAMID.level_area(2, 1, 1, 1001, 999) == (0, 0, 251, 250)
    assert PYRAMID.level_area(0, 0, 0, 3000, 2000) == (0, 0, 188, 125)


def test_tiles_covering_an_area() -> None:
    assert PYRAMID.tiles_covering(4, 0, 0, 3000, 2000) == (0, 0, 12, 8)
    assert PYRAMID.tiles_covering(4, 255, 256, 257, 512) == (0, 1, 2, 2)
    assert PYRAMID.tiles_covering(2, 0, 0, 1, 1) == (0, 0, 1, 1)
    # Past the level's last tile: an empty range, clipped to the level.
    assert PYRAMID.tiles_covering(0, 300, 0, 400, 10) == (1, 0, 1, 1)
    assert PYRAMID.tiles_covering(3, 1000, 900, 5000, 5000) == (3, 3, 6, 4)


def test_children() -> None:
    assert PYRAMID.children(3, 0, 0) == [(0, 0), (1, 0), (0, 1), (1, 1)]
    # Level 4 has 12 x 8 tiles: tile (5, 3) of level 3 has all four; level 2's (2, 1)
    # has (4, 2) and (5, 2), (4, 3) and (5, 3) at level 3, which has 6 x 4.
    assert PYRAMID.children(2, 2, 1) == [(4, 2), (5, 2), (4, 3), (5, 3)]
    odd = Grid.for_image(1001, 999, 256, 256)  # level 2: 4 x 4, level 1: 2 x 2
    assert odd.children(1, 1, 1) == [(2, 2), (3, 2), (2, 3), (3, 3)]
    edge = Grid(3, 1, 1, 1, 3)  # level 1: 2 x 1 tiles, level 2: 3 x 1
    assert edge.children(1, 1, 0) == [(2, 0)]
    assert PYRAMID.children(4, 0, 0) == []  # nothing under the full resolution


@pytest.mark.parametrize(
    ("ratio", "level"),
    [
        (1.0, 4),
        (2.0, 4),  # finer than the full resolution: the full resolution
        (0.5, 3),
        (0.4, 3),
        (0.25, 2),
        (0.2, 2),
        (2**-0.99999, 3),  # the logarithm is rounded to four places before going up
        (2**-1.99999, 2),
        (1e-9, 0),
    ],
)
def test_level_for_a_ratio(ratio: float, level: int) -> None:
    assert PYRAMID.level_for(ratio) == level
