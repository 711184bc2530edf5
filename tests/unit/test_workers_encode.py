"""Encoding: formats, options, 8-bit conversion and JPEG pass-through."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest

from tilecast.common.encoding import TIFF_COMPRESSIONS, EncodingOptions
from tilecast.common.errors import BadRequest
from tilecast.workers.encode import encode_pixels, encode_tile, to_uint8
from tilecast.workers.rawtile import RawTile


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
        ("WEBP", 4, "RGBA"),
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


@pytest.mark.parametrize("bands", [1, 2, 3, 4])
@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_jpeg_bytes_are_large_images(subsampling: int, bands: int) -> None:
    from large_image.tilesource.utilities import _encodeImage

    pixels = _pixels(bands)
    data = encode_pixels(pixels, EncodingOptions("JPEG", 80, subsampling))
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[bands]
    image = PIL.Image.fromarray(pixels[:, :, 0] if bands == 1 else pixels, mode)
    reference, _mimetype = _encodeImage(image, "JPEG", jpegQuality=80, jpegSubsampling=subsampling)
    assert data == bytes(reference)
    if bands < 3:
        return
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


# --- issue 3: WEBP / AVIF options, non-8-bit data, option parsing -----------------------


def _decode_vips(data: bytes) -> np.ndarray:
    import pyvips

    from tilecast.workers.vipsutil import to_numpy

    return to_numpy(pyvips.Image.new_from_buffer(data, ""))


def test_webp_default_is_large_images_bytes() -> None:
    """large_image hands WEBP to PIL with PIL's defaults; so does the default here."""
    pixels = _pixels()
    reference = io.BytesIO()
    PIL.Image.fromarray(pixels).save(reference, "WEBP")
    assert encode_pixels(pixels, EncodingOptions("WEBP")) == reference.getvalue()


def test_webp_quality_and_lossless() -> None:
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    low = encode_pixels(pixels, EncodingOptions("WEBP", webp_quality=10))
    high = encode_pixels(pixels, EncodingOptions("WEBP", webp_quality=95))
    assert len(low) < len(high)
    lossless = encode_pixels(pixels, EncodingOptions("WEBP", webp_lossless=True))
    assert np.array_equal(np.asarray(_open(lossless)), pixels)
    rgba = np.dstack([pixels, np.full((64, 64), 77, np.uint8)])
    decoded = np.asarray(_open(encode_pixels(rgba, EncodingOptions("WEBP", webp_lossless=True))))
    assert np.array_equal(decoded, rgba)


def test_avif_when_libvips_has_it() -> None:
    from tilecast.workers.encode import avif_supported

    pixels = _pixels()
    options = EncodingOptions("AVIF", avif_quality=90)
    if not avif_supported():
        with pytest.raises(BadRequest) as err:
            encode_pixels(pixels, options)
        assert err.value.parameter == "encoding"
        return
    data = encode_pixels(pixels, options)
    assert data[4:12] == b"ftypavif"
    decoded = np.asarray(_open(data).convert("RGB")).astype(float)
    mse = np.mean((decoded - pixels) ** 2)
    assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 35
    small = encode_pixels(pixels, EncodingOptions("AVIF", avif_quality=20))
    assert len(small) < len(data)
    gray = _open(encode_pixels(pixels[:, :, :1], options))
    assert gray.size == (256, 256)


def test_uint16_pixels_make_a_16_bit_png() -> None:
    values = (np.arange(64 * 64 * 3).reshape(64, 64, 3) * 17 % 65536).astype(np.uint16)
    for bands in (1, 3, 4):
        expected = values[:, :, :bands] if bands < 4 else np.dstack([values, values[:, :, :1]])
        decoded = _decode_vips(encode_pixels(expected, EncodingOptions("PNG")))
        assert decoded.dtype == np.uint16 and np.array_equal(decoded, expected)


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.float32])
@pytest.mark.parametrize("compression", ["raw", "lzw", "deflate"])
def test_tiff_keeps_the_dtype(dtype: type, compression: str) -> None:
    values = (np.arange(32 * 48 * 3).reshape(32, 48, 3) * 13 % 30000).astype(dtype)
    data = encode_pixels(values, EncodingOptions("TIFF", tiff_compression=compression))
    decoded = _decode_vips(data)
    assert decoded.dtype == np.dtype(dtype) and np.array_equal(decoded, values)


def test_tiff_zstd_of_other_dtypes() -> None:
    plane = (np.arange(32 * 32).reshape(32, 32, 1) * 50).astype(np.uint16)
    data = encode_pixels(plane, EncodingOptions("TIFF", tiff_compression="zstd"))
    assert np.array_equal(np.asarray(_open(data)), plane[:, :, 0])
    with pytest.raises(BadRequest) as err:
        encode_pixels(np.dstack([plane] * 3), EncodingOptions("TIFF", tiff_compression="zstd"))
    assert err.value.parameter == "tiffCompression"
    # JPEG-in-TIFF holds 8 bits: large_image's conversion first.
    jpeg = encode_pixels(np.dstack([plane] * 3), EncodingOptions("TIFF", tiff_compression="jpeg"))
    assert _open(jpeg).mode == "RGB"


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG"])
def test_other_dtypes_get_large_images_8_bit_conversion(fmt: str) -> None:
    from large_image.tilesource.utilities import _encodeImage

    values = np.linspace(-0.5, 400, 64 * 64 * 3).reshape(64, 64, 3).astype(np.float32)
    ours = _open(encode_pixels(values, EncodingOptions(fmt)))
    theirs = _open(_encodeImage(values, encoding=fmt)[0])
    a, b = np.asarray(ours).astype(float), np.asarray(theirs).astype(float)
    assert a.shape == b.shape
    if fmt == "PNG":
        assert np.array_equal(a, b)
    else:
        assert 10 * np.log10(255**2 / max(np.mean((a - b) ** 2), 1e-9)) > 40


def test_unstyled_tiles_are_encoded_like_large_image() -> None:
    """An unstyled single-band uint16 tile stays 16-bit only in a TIFF (large_image's
    ``_encodeImage`` rule); its PNG is 8-bit, as large_image's."""
    from large_image.tilesource.utilities import _encodeImage

    plane = (np.arange(256 * 256).reshape(256, 256, 1) % 65536).astype(np.uint16)
    tile = RawTile.from_pixels(plane)
    tiff = _decode_vips(encode_tile(tile, EncodingOptions("TIFF")))
    assert tiff.dtype == np.uint16 and np.array_equal(tiff, plane)
    png = encode_tile(tile, EncodingOptions("PNG"))
    theirs = _encodeImage(plane, encoding="PNG")[0]
    assert np.array_equal(np.asarray(_open(png)), np.asarray(_open(theirs)))
    rgb16 = RawTile.from_pixels(np.dstack([plane] * 3))
    assert _decode_vips(encode_tile(rgb16, EncodingOptions("TIFF"))).dtype == np.uint8


def test_every_option_that_changes_bytes_is_in_the_key() -> None:
    variants = [
        EncodingOptions("JPEG"),
        EncodingOptions("JPEG", jpeg_quality=80),
        EncodingOptions("JPEG", jpeg_subsampling=2),
        EncodingOptions("PNG"),
        EncodingOptions("WEBP"),
        EncodingOptions("WEBP", webp_quality=90),
        EncodingOptions("WEBP", webp_lossless=True),
        EncodingOptions("TIFF"),
        EncodingOptions("TIFF", tiff_compression="lzw"),
        EncodingOptions("TIFF", tiff_compression="zstd"),
        EncodingOptions("AVIF"),
        EncodingOptions("AVIF", avif_quality=50),
    ]
    assert len({options.key_part for options in variants}) == len(variants)
    # Options of another format never split the cache.
    assert EncodingOptions("PNG", webp_quality=5).key_part == "PNG"
    assert EncodingOptions("JPEG", avif_quality=5).key_part == "JPEG.q95.s0"
    for options in variants:
        assert EncodingOptions.from_payload(options.to_payload()) == options


def test_query_parsing() -> None:
    parsed = EncodingOptions.from_query(
        {"encoding": "webp", "webpQuality": "60", "webpLossless": "true"}
    )
    assert (parsed.format, parsed.webp_quality, parsed.webp_lossless) == ("WEBP", 60, True)
    assert EncodingOptions.from_query({"encoding": "JFIF"}).format == "JPEG"
    assert EncodingOptions.from_query({"encoding": "avif", "avifQuality": "30"}).avif_quality == 30
    assert EncodingOptions.from_query({"encoding": "tiff"}).content_type == "image/tiff"
    for args, parameter in [
        ({"encoding": "GIF"}, "encoding"),
        ({"webpQuality": "0"}, "webpQuality"),
        ({"webpQuality": "101"}, "webpQuality"),
        ({"webpLossless": "perhaps"}, "webpLossless"),
        ({"avifQuality": "x"}, "avifQuality"),
        ({"tiffCompression": "lzma"}, "tiffCompression"),
    ]:
        with pytest.raises(BadRequest) as err:
            EncodingOptions.from_query(args)
        assert err.value.parameter == parameter


def test_avif_without_libvips_support_is_a_400(monkeypatch: pytest.MonkeyPatch) -> None:
    """A libvips built without AV1 makes AVIF a 400 naming ``encoding``, never a 500."""
    from tilecast.workers import encode

    monkeypatch.setattr(encode, "avif_supported", lambda: False)
    with pytest.raises(BadRequest) as err:
        encode.encode_pixels(_pixels(), EncodingOptions("AVIF"))
    assert err.value.parameter == "encoding" and "AVIF" in err.value.message
