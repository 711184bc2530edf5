"""Parameter parsing at the edge: every bad parameter is a 400 (or 404) naming it."""

from __future__ import annotations

import json

import pytest

from tilecast.api.parsing import (
    parse_source_body,
    parse_thumbnail_request,
    parse_tile_request,
    path_coordinate,
)
from tilecast.common.encoding import EncodingOptions
from tilecast.common.errors import BadRequest, TileOutOfRange
from tilecast.common.settings import Settings

SETTINGS = Settings(max_style_bytes=200, max_thumbnail_size=1000, jpeg_quality=90)


def tile(args: dict[str, str], z: str = "1", x: str = "2", y: str = "3"):
    return parse_tile_request("src", z, x, y, args, SETTINGS)


def test_defaults() -> None:
    request = tile({})
    assert (request.source, request.z, request.x, request.y, request.frame) == ("src", 1, 2, 3, 0)
    assert request.style is None
    assert request.encoding == EncodingOptions("JPEG", 90, 0, "raw")  # settings' quality


def test_encoding_options() -> None:
    args = {"encoding": "png", "jpegQuality": "70", "jpegSubsampling": "2", "frame": "4"}
    request = tile(args)
    assert request.encoding.format == "PNG" and request.encoding.jpeg_quality == 70
    assert request.frame == 4
    assert tile({"encoding": "TIFF", "tiffCompression": "lzw"}).encoding.key_part == "TIFF.lzw"


def test_style_is_canonical() -> None:
    a = tile({"style": '{"max": 10, "min": 1}'}).style
    b = tile({"style": '{"min":1,"max":10}'}).style
    assert a == b == '{"max":10,"min":1}'
    assert tile({"style": ""}).style is None


@pytest.mark.parametrize(
    ("args", "parameter"),
    [
        ({"encoding": "GIF"}, "encoding"),
        ({"jpegQuality": "0"}, "jpegQuality"),
        ({"jpegQuality": "101"}, "jpegQuality"),
        ({"jpegQuality": "high"}, "jpegQuality"),
        ({"jpegSubsampling": "3"}, "jpegSubsampling"),
        ({"tiffCompression": "gzip"}, "tiffCompression"),
        ({"frame": "-1"}, "frame"),
        ({"frame": "x"}, "frame"),
        ({"style": "{not json"}, "style"),
        ({"style": "[1, 2]"}, "style"),
        ({"style": '{"min": "low"}'}, "style"),
        ({"style": '{"palette": "notacolour"}'}, "style"),
        ({"style": '{"function": {"name": "os.system"}}'}, "style"),
        ({"style": json.dumps({"palette": ["#000000"] * 40})}, "style"),  # > 200 bytes
    ],
)
def test_bad_parameters_name_themselves(args: dict[str, str], parameter: str) -> None:
    with pytest.raises(BadRequest) as caught:
        tile(args)
    assert caught.value.parameter == parameter
    assert caught.value.status == 400


@pytest.mark.parametrize("raw", ["a", "1.5", "", " 1", "1_0", "٣", "0x1", "+1"])
def test_non_integer_coordinates_are_400(raw: str) -> None:
    with pytest.raises(BadRequest) as caught:
        path_coordinate(raw, "x")
    assert caught.value.parameter == "x" and caught.value.status == 400


@pytest.mark.parametrize("raw", ["-1", "99999999999"])
def test_impossible_coordinates_are_out_of_range(raw: str) -> None:
    with pytest.raises(TileOutOfRange) as caught:
        path_coordinate(raw, "y")
    assert caught.value.status == 404 and caught.value.parameter == "y"


def test_thumbnail_size_defaults_to_large_image_256() -> None:
    request = parse_thumbnail_request("src", {}, SETTINGS)
    assert (request.width, request.height) == (256, 256)
    only_width = parse_thumbnail_request("src", {"width": "500"}, SETTINGS)
    assert (only_width.width, only_width.height) == (500, 0)
    both = parse_thumbnail_request("src", {"width": "30", "height": "40"}, SETTINGS)
    assert (both.width, both.height) == (30, 40)


@pytest.mark.parametrize(
    ("args", "parameter"),
    [({"width": "1"}, "width"), ({"height": "1001"}, "height"), ({"width": "big"}, "width")],
)
def test_thumbnail_size_bounds(args: dict[str, str], parameter: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_thumbnail_request("src", args, SETTINGS)
    assert caught.value.parameter == parameter


def test_source_body() -> None:
    assert parse_source_body({"path": "/a/b.tiff"}) == "/a/b.tiff"
    for body in [None, [], "x", {}, {"path": ""}, {"path": 3}]:
        with pytest.raises(BadRequest):
            parse_source_body(body)
