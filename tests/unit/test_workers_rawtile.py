"""The raw tile: lossless round trips through its cache serialization."""

from __future__ import annotations

import io
import zlib

import numpy as np
import PIL.Image
import pytest

from tilecast.common.errors import UnsupportedImage
from tilecast.workers.rawtile import RawTile, RawTileError


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (16, 8), (10, 200, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_jpeg_round_trip_keeps_the_bytes() -> None:
    data = _jpeg()
    tile = RawTile.from_bytes(RawTile.from_jpeg(data).to_bytes())
    assert tile.is_jpeg and tile.jpeg == data
    assert tile.array().shape == (8, 16, 3)


@pytest.mark.parametrize(
    ("dtype", "bands"),
    [("uint8", 3), ("uint8", 1), ("uint8", 4), ("uint16", 1), (">u2", 2), ("float32", 3)],
)
def test_pixels_round_trip_exactly(dtype: str, bands: int) -> None:
    rng = np.random.default_rng(3)
    pixels = (rng.random((256, 256, bands)) * 200).astype(dtype)
    tile = RawTile.from_bytes(RawTile.from_pixels(pixels).to_bytes())
    assert not tile.is_jpeg
    assert tile.array().dtype == pixels.dtype
    assert np.array_equal(tile.array(), pixels)


def test_smooth_pixels_are_compressed_and_noise_is_not() -> None:
    smooth = np.tile(np.arange(256, dtype=np.uint8), (256, 1))[:, :, None].repeat(3, axis=2)
    assert len(RawTile.from_pixels(smooth).to_bytes()) < smooth.nbytes // 10
    noise = np.random.default_rng(4).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    data = RawTile.from_pixels(noise).to_bytes()
    assert noise.tobytes() in data  # stored raw: compression would not have saved an eighth


def test_tiles_cached_with_zlib_by_an_earlier_version_still_read() -> None:
    import struct

    pixels = np.tile(np.arange(64, dtype=np.uint8), (32, 1))[:, :, None].repeat(3, axis=2)
    header = struct.pack("<8sIIIB", b"|u1".ljust(8), 32, 64, 3, 1)  # codec 1: zlib
    data = b"TCRT\x01P" + header + zlib.compress(pixels.tobytes(), 1)
    assert np.array_equal(RawTile.from_bytes(data).array(), pixels)


def test_a_compressed_tile_never_decodes_past_its_declared_size() -> None:
    pixels = np.zeros((256, 256, 3), np.uint8)
    data = bytearray(RawTile.from_pixels(pixels).to_bytes())
    data[14:18] = (128).to_bytes(4, "little")  # the header now says 128 rows
    with pytest.raises(RawTileError):
        RawTile.from_bytes(bytes(data))


def test_two_dimensional_pixels_gain_a_band_axis() -> None:
    assert RawTile.from_pixels(np.zeros((4, 5), np.uint8)).array().shape == (4, 5, 1)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"TCRT\x02J",
        b"TCRT\x01P" + b"|u1     " + b"\x00" * 13 + zlib.compress(b"x"),
    ],
)
def test_unreadable_bytes_raise(data: bytes) -> None:
    with pytest.raises(RawTileError):
        RawTile.from_bytes(data)


def test_a_broken_jpeg_raises_on_decode() -> None:
    with pytest.raises(UnsupportedImage):
        RawTile.from_jpeg(b"\xff\xd8not a jpeg").array()
