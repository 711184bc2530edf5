"""IIIF Image API 3.0 parsing, geometry, canonical URIs and info.json (api/protocols/iiif.py),
checked against the rules of https://iiif.io/api/image/3.0/ (sections 4, 5 and 7)."""

from __future__ import annotations

import pytest

from tilecast.api.protocols import iiif
from tilecast.api.protocols.boxes import PixelBox
from tilecast.common.errors import BadRequest, TilecastError
from tilecast.common.grid import Grid

W, H = 3000, 2000
MAX_AREA = 4096 * 4096


def resolved(region: str, size: str) -> PixelBox:
    request = iiif.parse_request(region, size, "0", "default.jpg")
    return iiif.resolve(request, W, H, MAX_AREA)


# --- region (4.1) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "area"),
    [
        ("full", (0, 0, 3000, 2000)),
        ("square", (500, 0, 2500, 2000)),
        ("0,0,256,256", (0, 0, 256, 256)),
        ("2900,1900,500,500", (2900, 1900, 3000, 2000)),  # cropped to the image
        ("pct:10,25,50,50", (300, 500, 1800, 1500)),
        ("pct:0.5,0.5,99.5,99.5", (15, 10, 3000, 2000)),
        ("pct:50,50,100,100", (1500, 1000, 3000, 2000)),
    ],
)
def test_regions(region: str, area: tuple[int, int, int, int]) -> None:
    box = resolved(region, "max")
    assert (box.left, box.top, box.right, box.bottom) == area


@pytest.mark.parametrize(
    "region",
    ["", "ful", "0,0,10", "0,0,10,10,10", "-1,0,10,10", "0,0,0,10", "0,0,10,0", "pct:0,0,0,5",
     "1.5,0,10,10", "pct:a,0,1,1", "pct:1e2,0,1,1", "0x0,10,10", "square ", "FULL",
     "pct:0,0," + "9" * 400 + ",1", "0,0," + "9" * 13 + ",1"],
)  # fmt: skip
def test_malformed_regions_are_400(region: str) -> None:
    with pytest.raises(BadRequest) as caught:
        iiif.parse_region(region)
    assert caught.value.parameter == "region"


@pytest.mark.parametrize("region", ["3000,0,10,10", "0,2000,10,10", "pct:100,0,10,10"])
def test_a_region_wholly_outside_is_400(region: str) -> None:
    with pytest.raises(BadRequest) as caught:
        resolved(region, "max")
    assert caught.value.parameter == "region"


# --- size (4.2) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "size", "out"),
    [
        ("full", "max", (3000, 2000)),
        ("full", "1500,", (1500, 1000)),
        ("full", ",500", (750, 500)),
        ("full", "pct:50", (1500, 1000)),
        ("full", "pct:12.5", (375, 250)),
        ("full", "300,300", (300, 300)),  # w,h: exactly that, aspect not kept
        ("full", "!300,300", (300, 200)),
        ("full", "!3000,100", (150, 100)),
        ("full", "!6000,6000", (3000, 2000)),  # confined, never above the region
        ("full", "^!4000,4000", (4000, 2667)),
        ("0,0,100,50", "^200,", (200, 100)),
        ("0,0,100,50", "^pct:150", (150, 75)),
        ("0,0,100,50", "^max", (5792, 2896)),  # up to maxArea
        ("2816,1792,256,256", "23,26", (23, 26)),  # an OpenSeadragon edge tile
    ],
)
def test_sizes(region: str, size: str, out: tuple[int, int]) -> None:
    box = resolved(region, size)
    assert (box.width, box.height) == out


def test_max_is_bounded_by_max_area() -> None:
    request = iiif.parse_request("full", "max", "0", "default.jpg")
    box = iiif.resolve(request, 40_000, 30_000, MAX_AREA)
    assert box.width * box.height <= MAX_AREA
    assert box.width / box.height == pytest.approx(4 / 3, rel=1e-3)
    assert box.width * box.height > MAX_AREA * 0.99


@pytest.mark.parametrize("size", ["3001,", ",2001", "pct:101", "3001,10", "10,2001"])
def test_upscaling_without_caret_is_400(size: str) -> None:
    with pytest.raises(BadRequest) as caught:
        resolved("full", size)
    assert caught.value.parameter == "size"


def test_past_max_area_is_400() -> None:
    with pytest.raises(BadRequest) as caught:
        resolved("full", "^5000,5000")
    assert caught.value.parameter == "size"


@pytest.mark.parametrize(
    "size",
    ["", "full", ",", "0,", ",0", "pct:0", "pct:", "!100,", "!,100", "w,h", "10,10,10",
     "^", "^^max", "max^", "-5,", "pct:-5", "!^10,10", "10.5,", "pct:" + "9" * 400],
)  # fmt: skip
def test_malformed_sizes_are_400(size: str) -> None:
    with pytest.raises(BadRequest) as caught:
        iiif.parse_size(size)
    assert caught.value.parameter == "size"


# --- rotation, quality, format (4.3 - 4.5) ---------------------------------------------


@pytest.mark.parametrize("rotation", ["0", "0.0", "360"])
def test_rotation_zero(rotation: str) -> None:
    iiif.parse_rotation(rotation)


@pytest.mark.parametrize("rotation", ["90", "180", "22.5", "!0", "!90"])
def test_other_rotations_and_mirroring_are_501(rotation: str) -> None:
    with pytest.raises(iiif.NotImplementedFeature) as caught:
        iiif.parse_rotation(rotation)
    assert caught.value.status == 501


@pytest.mark.parametrize("rotation", ["", "-90", "361", "abc", "!", "0!", "1e1", "9" * 400])
def test_malformed_rotations_are_400(rotation: str) -> None:
    with pytest.raises(BadRequest):
        iiif.parse_rotation(rotation)


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [("default.jpg", ("default", "jpg")), ("color.png", ("color", "png")),
     ("default.webp", ("default", "webp"))],
)  # fmt: skip
def test_qualities_and_formats(raw: str, parsed: tuple[str, str]) -> None:
    assert iiif.parse_quality_format(raw) == parsed


@pytest.mark.parametrize("raw", ["gray.jpg", "bitonal.png", "default.jp2", "default.gif"])
def test_known_but_unimplemented_are_501(raw: str) -> None:
    with pytest.raises(TilecastError) as caught:
        iiif.parse_quality_format(raw)
    assert caught.value.status == 501


@pytest.mark.parametrize(
    "raw", ["default", "default.", "default.bmp", "best.jpg", ".jpg", "Default.jpg"]
)
def test_unknown_qualities_and_formats_are_400(raw: str) -> None:
    with pytest.raises(BadRequest):
        iiif.parse_quality_format(raw)


def test_format_names_the_encoding() -> None:
    assert iiif.parse_request("full", "max", "0", "default.png").encoding == "PNG"
    assert iiif.parse_request("full", "max", "0", "color.jpg").encoding == "JPEG"


# --- canonical URI (4.7) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "size", "quality_format", "canonical"),
    [
        ("full", "max", "default.jpg", "full/max/0/default.jpg"),
        ("0,0,3000,2000", "3000,", "default.jpg", "full/max/0/default.jpg"),
        ("square", "max", "default.png", "500,0,2000,2000/max/0/default.png"),
        ("pct:10,25,50,50", "pct:50", "color.jpg", "300,500,1500,1000/750,500/0/color.jpg"),
        ("2900,1900,500,500", "max", "default.jpg", "2900,1900,100,100/max/0/default.jpg"),
        ("full", "!300,300", "default.webp", "full/300,200/0/default.webp"),
    ],
)
def test_canonical_paths(region: str, size: str, quality_format: str, canonical: str) -> None:
    request = iiif.parse_request(region, size, "0", quality_format)
    box = iiif.resolve(request, W, H, MAX_AREA)
    assert iiif.canonical_path(box, request, W, H, MAX_AREA) == canonical


# --- info.json (5) ---------------------------------------------------------------------


def test_info_document() -> None:
    grid = Grid(size_x=W, size_y=H, tile_width=256, tile_height=256, levels=5)
    info = iiif.info("http://host/iiif/abc", grid, MAX_AREA)
    assert info["@context"] == "http://iiif.io/api/image/3/context.json"
    assert info["id"] == "http://host/iiif/abc"
    assert info["type"] == "ImageService3"
    assert info["protocol"] == "http://iiif.io/api/image"
    assert info["profile"] == "level1"
    assert (info["width"], info["height"], info["maxArea"]) == (W, H, MAX_AREA)
    assert info["tiles"] == [{"width": 256, "height": 256, "scaleFactors": [1, 2, 4, 8, 16]}]
    assert info["sizes"] == [
        {"width": 188, "height": 125},
        {"width": 375, "height": 250},
        {"width": 750, "height": 500},
        {"width": 1500, "height": 1000},
        {"width": 3000, "height": 2000},
    ]
    assert info["extraFormats"] == ["png", "webp", "tif"]
    assert info["extraQualities"] == ["color"]
    assert {"regionByPct", "sizeByPct", "sizeByConfinedWh", "sizeUpscaling"} <= set(
        info["extraFeatures"]
    )


def test_sizes_past_max_area_are_not_listed() -> None:
    grid = Grid(size_x=100_000, size_y=50_000, tile_width=256, tile_height=256, levels=10)
    sizes = iiif.info("http://host/iiif/big", grid, MAX_AREA)["sizes"]
    assert all(s["width"] * s["height"] <= MAX_AREA for s in sizes)
    assert sizes[0] == {"width": 196, "height": 98}
    assert sizes == sorted(sizes, key=lambda s: s["width"])


def test_every_listed_size_and_tile_is_a_valid_request() -> None:
    """Compliance 3.2: the sizes listed and those implicit in tiles must be served."""
    grid = Grid(size_x=W, size_y=H, tile_width=256, tile_height=256, levels=5)
    info = iiif.info("http://host/iiif/abc", grid, MAX_AREA)
    for size in info["sizes"]:
        box = resolved("full", f"{size['width']},{size['height']}")
        assert (box.width, box.height) == (size["width"], size["height"])
    for factor in info["tiles"][0]["scaleFactors"]:
        span = 256 * factor
        for x in range(0, W, span):
            for y in range(0, H, span):
                w, h = min(span, W - x), min(span, H - y)
                size = f"{-(-w // factor)},{-(-h // factor)}"
                box = resolved(f"{x},{y},{w},{h}", size)
                assert (box.width, box.height) == (-(-w // factor), -(-h // factor))
