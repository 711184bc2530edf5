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
    assert noise.tobytes() in data  # stored raw: zlib would not have saved an eighth


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
