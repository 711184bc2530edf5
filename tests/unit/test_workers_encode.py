"""Encoding: formats, options, 8-bit conversion and JPEG pass-through."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest

from common.encoding import TIFF_COMPRESSIONS, EncodingOptions
from workers.encode import encode_pixels, encode_tile, to_uint8
from workers.rawtile import RawTile


def _pixels(bands: int = 3) -> np.ndarray:
    y, x = np.mgrid[0:256, 0:256]
    planes = [(x + y) // 2, x, y, np.full_like(x, 200)]
    return np.stack(planes[:bands], axis=2).astype(np.uint8)


def _open(data: bytes) -> PIL.Image.Image:
    image = PIL.Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("fmt", "bands", "mode"),
    [
        ("JPEG", 3, "RGB"),
        ("JPEG", 4, "RGB"),
        ("JPEG", 1, "L"),
        ("JPEG", 2, "L"),
        ("PNG", 3, "RGB"),
        ("PNG", 4, "RGBA"),
        ("PNG", 1, "L"),
        ("PNG", 2, "LA"),
        ("WEBP", 3, "RGB"),
        ("TIFF", 3, "RGB"),
        ("TIFF", 4, "RGBA"),
    ],
)
def test_formats_and_modes(fmt: str, bands: int, mode: str) -> None:
    pixels = _pixels(bands)
    image = _open(encode_pixels(pixels, EncodingOptions(format=fmt)))
    assert image.format == fmt
    assert image.size == (256, 256)
    assert image.mode == mode
    if fmt in ("PNG", "TIFF"):
        assert np.array_equal(np.asarray(image).reshape(pixels.shape), pixels)


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_jpeg_options_match_pil_as_large_image_uses_it(subsampling: int) -> None:
    pixels = _pixels()
    data = encode_pixels(pixels, EncodingOptions("JPEG", 80, subsampling))
    reference = io.BytesIO()
    PIL.Image.fromarray(pixels).save(reference, "JPEG", quality=80, subsampling=subsampling)
    assert data == reference.getvalue()
    from PIL import JpegImagePlugin

    assert JpegImagePlugin.get_sampling(_open(data)) == subsampling


@pytest.mark.parametrize("compression", sorted(TIFF_COMPRESSIONS))
def test_tiff_compressions(compression: str) -> None:
    pixels = _pixels()
    image = _open(encode_pixels(pixels, EncodingOptions("TIFF", tiff_compression=compression)))
    decoded = np.asarray(image.convert("RGB"))
    if TIFF_COMPRESSIONS[compression] == "jpeg":
        assert np.abs(decoded.astype(int) - pixels).max() < 40
    else:
        assert np.array_equal(decoded, pixels)


def test_native_jpeg_passes_through_only_as_jpeg() -> None:
    buffer = io.BytesIO()
    PIL.Image.fromarray(_pixels()).save(buffer, "JPEG", quality=70)
    tile = RawTile.from_jpeg(buffer.getvalue())
    assert encode_tile(tile, EncodingOptions("JPEG", 95, 0)) == buffer.getvalue()
    png = _open(encode_tile(tile, EncodingOptions("PNG")))
    assert np.array_equal(np.asarray(png), tile.array())


def test_to_uint8_follows_large_image() -> None:
    assert to_uint8(np.array([[[0, 255, 256, 65535]]], np.uint16)).tolist() == [[[0, 0, 1, 255]]]
    assert to_uint8(np.array([[[-1.5, 3.7, 300.0]]], np.float32)).tolist() == [[[0, 3, 255]]]
    assert to_uint8(np.array([[[-128, 127]]], np.int8)).tolist() == [[[0, 255]]]
    assert to_uint8(np.zeros((2, 2, 6), np.uint8)).shape == (2, 2, 3)
