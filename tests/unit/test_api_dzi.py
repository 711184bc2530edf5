"""Deep Zoom geometry (api/protocols/dzi.py) and its tilecast tile shortcut
(api/protocols/boxes.py)."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from tilecast.api.protocols import dzi
from tilecast.api.protocols.boxes import PixelBox, aligned_tile
from tilecast.common.errors import BadRequest
from tilecast.common.grid import Grid

# tests/images.py's pyramid: 3000 x 2000, 256-pixel tiles, 5 levels.
GRID = Grid(size_x=3000, size_y=2000, tile_width=256, tile_height=256, levels=5)


@pytest.mark.parametrize(
    ("size", "level"),
    [((1, 1), 0), ((2, 1), 1), ((3, 3), 2), ((256, 256), 8), ((257, 10), 9), ((3000, 2000), 12)],
)
def test_max_level_is_ceil_log2_of_the_longer_side(size: tuple[int, int], level: int) -> None:
    assert dzi.max_level(*size) == level
    if max(size) > 1:
        assert level == math.ceil(math.log2(max(size)))


def test_each_level_halves_rounding_up_down_to_one_pixel() -> None:
    assert dzi.pyramid(dzi.Layout(), 3000, 2000).level_size(12) == (3000, 2000)
    assert dzi.pyramid(dzi.Layout(), 3000, 2000).level_size(11) == (1500, 1000)
    assert dzi.pyramid(dzi.Layout(), 3000, 2000).level_size(3) == (6, 4)
    assert dzi.pyramid(dzi.Layout(), 3000, 2000).level_size(1) == (2, 1)
    assert dzi.pyramid(dzi.Layout(), 3000, 2000).level_size(0) == (1, 1)


def level_pixels_of(box: PixelBox, level: int) -> tuple[int, int, int, int]:
    factor = 2 ** (12 - level)
    return box.left // factor, box.top // factor, box.width, box.height


def test_interior_tile_is_a_whole_tile() -> None:
    box = dzi.tile_box(dzi.Layout(), 12, 1, 2, 3000, 2000)
    assert box == PixelBox(256, 512, 512, 768, 256, 256)
    coarser = dzi.tile_box(dzi.Layout(), 11, 1, 2, 3000, 2000)
    assert coarser == PixelBox(512, 1024, 1024, 1536, 256, 256)


def test_edge_tiles_are_cropped_to_the_level() -> None:
    box = dzi.tile_box(dzi.Layout(), 12, 11, 7, 3000, 2000)
    assert box == PixelBox(2816, 1792, 3000, 2000, 184, 208)
    # Level 9 is 375 x 250: its second column is 119 pixels wide (375 - 256).
    box = dzi.tile_box(dzi.Layout(), 9, 1, 0, 3000, 2000)
    assert (box.width, box.height) == (119, 250)
    assert (box.left, box.right) == (256 * 8, 3000)


def test_overlap_widens_tiles_on_sides_with_neighbours_only() -> None:
    layout = dzi.Layout(tile_size=256, overlap=2)
    first = dzi.tile_box(layout, 12, 0, 0, 3000, 2000)
    assert (first.left, first.top, first.width, first.height) == (0, 0, 258, 258)
    middle = dzi.tile_box(layout, 12, 1, 1, 3000, 2000)
    assert (middle.left, middle.top, middle.width, middle.height) == (254, 254, 260, 260)
    last = dzi.tile_box(layout, 12, 11, 7, 3000, 2000)
    assert (last.left, last.width, last.right) == (2814, 186, 3000)


def test_every_tile_of_a_level_covers_it_once() -> None:
    """Without overlap the tiles of each level partition it."""
    for level in range(13):
        width, height = dzi.pyramid(dzi.Layout(), 3000, 2000).level_size(level)
        across, down = math.ceil(width / 256), math.ceil(height / 256)
        covered = sum(
            dzi.tile_box(dzi.Layout(), level, x, y, 3000, 2000).width
            * dzi.tile_box(dzi.Layout(), level, x, y, 3000, 2000).height
            for x in range(across)
            for y in range(down)
        )
        assert covered == width * height


@pytest.mark.parametrize(
    ("level", "x", "y", "parameter"),
    [(13, 0, 0, "level"), (12, 12, 0, "x"), (12, 0, 8, "y"), (0, 1, 0, "x")],
)
def test_outside_the_image_is_a_400(level: int, x: int, y: int, parameter: str) -> None:
    with pytest.raises(BadRequest) as caught:
        dzi.tile_box(dzi.Layout(), level, x, y, 3000, 2000)
    assert caught.value.parameter == parameter


def test_level_zero_is_the_one_pixel_image() -> None:
    assert dzi.tile_box(dzi.Layout(), 0, 0, 0, 3000, 2000) == PixelBox(0, 0, 3000, 2000, 1, 1)


@pytest.mark.parametrize(
    ("args", "parameter"),
    [
        ({"tilesize": "300"}, "tilesize"),
        ({"tilesize": "0"}, "tilesize"),
        ({"tilesize": "8192"}, "tilesize"),
        ({"tilesize": "big"}, "tilesize"),
        ({"overlap": "-1"}, "overlap"),
        ({"tilesize": "64", "overlap": "65"}, "overlap"),
    ],
)
def test_bad_layout_parameters(args: dict[str, str], parameter: str) -> None:
    with pytest.raises(BadRequest) as caught:
        dzi.Layout.from_query(args)
    assert caught.value.parameter == parameter


def test_layout_parameters() -> None:
    assert dzi.Layout.from_query({}) == dzi.Layout(256, 0)
    assert dzi.Layout.from_query({"tilesize": "512", "overlap": "1"}) == dzi.Layout(512, 1)


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("3_4.jpg", (3, 4, "JPEG")),
        ("3_4.jpeg", (3, 4, "JPEG")),
        ("0_0.PNG", (0, 0, "PNG")),
        ("10_0.webp", (10, 0, "WEBP")),
        ("0_0", (0, 0, None)),
    ],
)
def test_tile_names(name: str, parsed: tuple[int, int, str | None]) -> None:
    assert dzi.parse_tile_name(name) == parsed


@pytest.mark.parametrize("name", ["a_b.jpg", "1.jpg", "1_2_3.jpg", "-1_0.jpg", "1_2.bmp", ""])
def test_bad_tile_names(name: str) -> None:
    with pytest.raises(BadRequest):
        dzi.parse_tile_name(name)


@pytest.mark.parametrize("raw", ["-1", "x", "1.5", "", "1000"])
def test_bad_levels(raw: str) -> None:
    with pytest.raises(BadRequest):
        dzi.parse_level(raw)


def test_descriptor_is_deep_zoom_xml() -> None:
    text = dzi.descriptor(dzi.Layout(512, 1), "PNG", 3000, 2000)
    root = ET.fromstring(text)
    ns = "{http://schemas.microsoft.com/deepzoom/2008}"
    assert root.tag == f"{ns}Image"
    assert root.attrib == {"TileSize": "512", "Overlap": "1", "Format": "png"}
    size = root.find(f"{ns}Size")
    assert size is not None and size.attrib == {"Width": "3000", "Height": "2000"}


# --- the tilecast tile a box is, if any ------------------------------------------------


def test_full_resolution_dzi_tiles_are_tilecast_tiles() -> None:
    box = dzi.tile_box(dzi.Layout(), 12, 3, 2, 3000, 2000)
    assert aligned_tile(box, GRID) == (4, 3, 2)
    box = dzi.tile_box(dzi.Layout(), 9, 0, 0, 3000, 2000)
    assert aligned_tile(box, GRID) is None  # 256 x 250: cropped at the bottom
    box = dzi.tile_box(dzi.Layout(), 10, 1, 0, 3000, 2000)
    assert aligned_tile(box, GRID) == (2, 1, 0)


def test_boxes_that_are_not_tiles() -> None:
    def box(left: int, top: int, span: int, size: int = 256) -> PixelBox:
        return PixelBox(left, top, left + span, top + span, size, size)

    assert aligned_tile(box(0, 0, 512), GRID) == (3, 0, 0)
    assert aligned_tile(box(256, 0, 512), GRID) is None  # off the level's grid
    assert aligned_tile(box(0, 0, 768), GRID) is None  # not a power of two
    assert aligned_tile(box(0, 0, 256, 128), GRID) is None  # not a whole tile
    assert aligned_tile(box(0, 0, 8192), GRID) is None  # coarser than level 0
    assert aligned_tile(box(2816, 0, 256), GRID) is None  # reaches past the image
    assert aligned_tile(PixelBox(0, 0, 512, 256, 256, 256), GRID) is None  # stretched
    assert aligned_tile(PixelBox(0, 0, 128, 128, 256, 256), GRID) is None  # upscaled
