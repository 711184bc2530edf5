"""TileRequest/ThumbnailRequest keys and payloads; encoding options."""

from __future__ import annotations

import pytest

from tilecast.common.encoding import EncodingOptions
from tilecast.common.errors import BadRequest
from tilecast.common.style import style_hash
from tilecast.common.taskprotocol import render_thumbnail_payload, render_tile_payload
from tilecast.common.tiles import ThumbnailRequest, TileRequest, raw_tile_key

STYLE = '{"max":200,"min":10}'


def test_tile_key_follows_the_design() -> None:
    request = TileRequest("src", z=3, x=4, y=5, frame=1, style=STYLE)
    assert request.key(7) == f"tc:tile:src:7:1:3:4:5:{style_hash(STYLE)}:JPEG.q95.s0"
    assert (
        request.raw_key(7) == raw_tile_key("src", 7, 1, 3, 4, 5) == "tc:raw:src:7:1:3:4:5:none:raw"
    )
    assert TileRequest("src", 3, 4, 5).key(8) != TileRequest("src", 3, 4, 5).key(7)


def test_options_that_do_not_change_bytes_do_not_change_keys() -> None:
    png_a = EncodingOptions("PNG", jpeg_quality=10)
    png_b = EncodingOptions("PNG", jpeg_quality=90)
    assert png_a.key_part == png_b.key_part == "PNG"
    assert EncodingOptions("TIFF", tiff_compression="zip").key_part == "TIFF.deflate"
    assert EncodingOptions("WEBP", jpeg_quality=70, webp_quality=70).key_part == "WEBP.q70"
    assert EncodingOptions("WEBP", jpeg_quality=70).key_part == "WEBP.q80"  # jpegQuality: JPEG only


def test_payload_round_trips() -> None:
    tile = TileRequest("src", 1, 2, 3, 4, STYLE, EncodingOptions("PNG"))
    payload = render_tile_payload(tile, 9)
    assert TileRequest.from_payload(payload["request"]) == tile and payload["generation"] == 9
    thumb = ThumbnailRequest("src", 256, 0, 0, None, EncodingOptions("JPEG", 80, 2))
    payload = render_thumbnail_payload(thumb, 2)
    assert ThumbnailRequest.from_payload(payload["request"]) == thumb
    assert thumb.key(2) == "tc:thumb:src:2:0:fit:256:0:none:JPEG.q80.s2"


def test_encoding_from_query() -> None:
    assert EncodingOptions.from_query({}) == EncodingOptions()
    assert EncodingOptions.from_query({"encoding": "jpg"}).format == "JPEG"
    assert EncodingOptions.from_query({}, default_quality=80).jpeg_quality == 80
    parsed = EncodingOptions.from_query({"encoding": "tiff", "tiffCompression": "LZW"})
    assert (parsed.format, parsed.tiff_compression, parsed.content_type) == (
        "TIFF",
        "lzw",
        "image/tiff",
    )


@pytest.mark.parametrize(
    ("args", "parameter"),
    [
        ({"encoding": "bmp"}, "encoding"),
        ({"jpegQuality": "0"}, "jpegQuality"),
        ({"jpegSubsampling": "-1"}, "jpegSubsampling"),
        ({"tiffCompression": "lzma"}, "tiffCompression"),
    ],
)
def test_encoding_errors(args: dict[str, str], parameter: str) -> None:
    with pytest.raises(BadRequest) as caught:
        EncodingOptions.from_query(args)
    assert caught.value.parameter == parameter
