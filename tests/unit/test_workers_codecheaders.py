"""workers/codecheaders.py: the size each codec's own header declares, read without
decoding, on real streams (libvips' JPEG, PNG and WebP encoders, imagecodecs' JPEG 2000),
and the TIFF reader refusing a tile whose header disagrees with its tile size before
any decoder sees it (issue 14)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests import hostile
from tilecast.common.errors import UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers import codecheaders
from tilecast.workers.rawtile import RawTile, RawTileError, decode_jpeg
from tilecast.workers.sources import open_source

TILE = hostile.TILE


def _streams() -> dict[str, tuple[str, bytes]]:
    image = hostile._tile_images()[0]
    jpeg = image.jpegsave_buffer(Q=80)
    return {
        "jpeg": (codecheaders.JPEG, jpeg),
        "jpeg-abbreviated": (
            codecheaders.JPEG,
            hostile._jpeg_segments(jpeg, drop=(0xDB, 0xC4, *range(0xE0, 0xF0))),
        ),
        "png": (codecheaders.PNG, image.pngsave_buffer()),
        "webp-vp8": (codecheaders.WEBP, image.webpsave_buffer(Q=80, keep="none")),
        "webp-vp8l": (codecheaders.WEBP, image.webpsave_buffer(lossless=True, keep="none")),
        "webp-vp8x": (codecheaders.WEBP, image.webpsave_buffer(Q=80)),  # EXIF: extended
        "j2k": (codecheaders.JPEG2000, hostile._jpeg2000_tiles("J2K")[0]),
        "jp2": (codecheaders.JPEG2000, hostile._jpeg2000_tiles("JP2")[0]),
    }


STREAMS = _streams()
REWRITES = {
    "jpeg": hostile._jpeg_sof,
    "png": hostile._png_ihdr,
    "webp-vp8": hostile._webp_vp8,
    "webp-vp8l": hostile._webp_vp8l,
    "webp-vp8x": lambda data, size: hostile._webp_vp8x(STREAMS["webp-vp8"][1], size),
    "j2k": hostile._j2k_siz,
    "jp2": hostile._jp2_ihdr_and_siz,
}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_sound_streams_declare_their_size(name: str) -> None:
    codec, data = STREAMS[name]
    sizes = codecheaders.declared_sizes(codec, data)
    assert sizes and all(size == (TILE, TILE) for size in sizes)
    codecheaders.check_tile(codec, data, TILE, TILE)  # no error


@pytest.mark.parametrize("name", sorted(REWRITES))
def test_a_header_declaring_another_size_is_refused(name: str) -> None:
    codec, data = STREAMS[name]
    size = 16383 if name == "webp-vp8" else 9000
    hostile_data = REWRITES[name](data, size)
    assert (size, size) in codecheaders.declared_sizes(codec, hostile_data)
    with pytest.raises(UnsupportedImage, match=f"declares {size}x{size} pixels in a 256x256"):
        codecheaders.check_tile(codec, hostile_data, TILE, TILE, "tile x=1 y=1")


def test_jp2_codestream_disagreeing_with_its_image_header_is_refused() -> None:
    """The decoder sizes its output from the codestream's SIZ, not the ihdr box."""
    data = STREAMS["jp2"][1]
    only_siz = hostile._j2k_siz(data, 20000, at=data.find(b"jp2c") + 4)
    assert codecheaders.declared_sizes(codecheaders.JPEG2000, only_siz) == [
        (TILE, TILE),
        (20000, 20000),
    ]
    with pytest.raises(UnsupportedImage, match="20000x20000"):
        codecheaders.check_tile(codecheaders.JPEG2000, only_siz, TILE, TILE)


def test_jpeg_frame_marker_bytes_inside_a_segment_are_not_a_frame() -> None:
    """An APP segment holding the bytes of a SOF0 saying 30000 x 30000 is skipped."""
    data = STREAMS["jpeg"][1]
    fake = b"\xff\xc0\x00\x11\x08\x75\x30\x75\x30"
    app = b"\xff\xe5" + (2 + len(fake)).to_bytes(2, "big") + fake
    assert codecheaders.declared_sizes(codecheaders.JPEG, data[:2] + app + data[2:]) == [
        (TILE, TILE)
    ]


@pytest.mark.parametrize(
    "codec, data",
    [
        (codecheaders.JPEG, b"\xff\xd8\xff\xda\x00\x02"),  # a scan before any frame
        (codecheaders.JPEG, b"not a jpeg"),
        (codecheaders.PNG, b"\x89PNG\r\n\x1a\n"),  # cut before IHDR
        (codecheaders.WEBP, b"RIFF\x00\x00\x00\x00WEBP"),  # no bitstream
        (codecheaders.JPEG2000, b"\xff\x4f\xff\x51\x00"),  # cut in SIZ
        (codecheaders.JPEG2000, b"garbage"),
    ],
)
def test_an_unreadable_header_is_refused(codec: str, data: bytes) -> None:
    with pytest.raises(UnsupportedImage, match="header cannot be read"):
        codecheaders.check_tile(codec, data, TILE, TILE)


def test_jpeg_decoding_checks_the_header_before_allocating() -> None:
    """A cached JPEG tile is decoded only when its header stays within a tile's bound."""
    huge = hostile._jpeg_sof(STREAMS["jpeg"][1], 30000)
    with pytest.raises(RawTileError, match="30000x30000"):
        decode_jpeg(huge)
    with pytest.raises(UnsupportedImage):
        RawTile.from_jpeg(huge).array()
    assert decode_jpeg(STREAMS["jpeg"][1]).shape == (TILE, TILE, 3)


# -- the TIFF reader ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return hostile.make_hostile_files(tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize("name", [n for n in sorted(hostile.HOSTILE) if "-30000" in n])
def test_tiff_tile_declaring_a_huge_size_is_refused(corpus: dict[str, Path], name: str) -> None:
    with (
        open_source(str(corpus[name]), Settings()) as source,
        pytest.raises(UnsupportedImage, match="declares 30000x30000 pixels in a 256x256"),
    ):
        source.read_tile(source.levels - 1, 1, 1)


def test_a_disagreeing_jpeg_tile_is_never_passed_through(corpus: dict[str, Path]) -> None:
    with (
        open_source(str(corpus["tile-jpeg-sof-128.tiff"]), Settings()) as source,
        pytest.raises(UnsupportedImage, match="declares 128x128 pixels"),
    ):
        source.read_tile(source.levels - 1, 0, 0)


def test_abbreviated_jpeg_tiles_with_tables_pass_through(tmp_path: Path) -> None:
    """JPEGTables plus tile streams holding only their frame: the SOF is found in the
    tile, the tile passes through and decodes to the image."""
    path = tmp_path / "abbreviated.tiff"
    path.write_bytes(hostile._abbreviated_tiff(hostile._jpeg_tiles()))
    with open_source(str(path), Settings()) as source:
        tile = source.read_tile(source.levels - 1, 1, 1)
        assert tile.is_jpeg
        pixels = tile.array()
    expected = hostile._tile_images()[3]
    reference = np.ndarray((TILE, TILE, 3), np.uint8, expected.write_to_memory())
    assert np.abs(pixels.astype(int) - reference).mean() < 3


def test_webp_tiles_decode(tmp_path: Path) -> None:
    path = tmp_path / "webp.tiff"
    lossless = hostile._webp_tiles(lossless=True)
    path.write_bytes(
        hostile._codec_tiff(lossless, lambda data, size: data, hostile.COMPRESSION_WEBP)
    )
    with open_source(str(path), Settings()) as source:
        pixels = source.read_tile(source.levels - 1, 1, 1).array()
    expected = hostile._tile_images()[3]
    assert np.array_equal(pixels, np.ndarray((TILE, TILE, 3), np.uint8, expected.write_to_memory()))


def test_png_tiles_libvips_would_return_black_are_refused(tmp_path: Path) -> None:
    """libvips' libtiff answers black pixels, without an error, for PNG tiles."""
    path = tmp_path / "codec.tiff"
    compression = hostile.COMPRESSION_PNG
    path.write_bytes(
        hostile._codec_tiff(hostile._png_tiles(), lambda data, size: data, compression)
    )
    with (
        open_source(str(path), Settings()) as source,
        pytest.raises(UnsupportedImage, match=f"TIFF compression {compression}"),
    ):
        source.read_tile(source.levels - 1, 1, 1)


@pytest.mark.parametrize(
    "codecformat, compression",
    [("JP2", hostile.COMPRESSION_JPEG2000), ("J2K", hostile.COMPRESSION_APERIO_JP2K)],
)
def test_jpeg2000_tiles_libvips_would_return_black_are_decoded(
    tmp_path: Path, codecformat: str, compression: int
) -> None:
    """libvips' libtiff answers black for JPEG 2000 tiles too; imagecodecs decodes them
    (issue 16): lossless tiles come back as written."""
    path = tmp_path / "codec.tiff"
    tiles = hostile._jpeg2000_tiles(codecformat)
    path.write_bytes(hostile._codec_tiff(tiles, lambda data, size: data, compression))
    with open_source(str(path), Settings()) as source:
        pixels = source.read_tile(source.levels - 1, 1, 1).array()
    expected = hostile._tile_images()[3]
    assert np.array_equal(pixels, np.ndarray((TILE, TILE, 3), np.uint8, expected.write_to_memory()))
