"""Readers: metadata and native tiles against large_image, plain images, bad files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from tilecast.common.errors import BadRequest, TileOutOfRange, UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.describe import describe_path
from tilecast.workers.sources import open_source
from tilecast.workers.sources.tiff import TiffSource
from tilecast.workers.sources.vipsimage import VipsImageSource

large_image = pytest.importorskip("large_image")
large_image.config.setConfig("icc_correction", False)

FIELDS = [
    "levels",
    "sizeX",
    "sizeY",
    "tileWidth",
    "tileHeight",
    "magnification",
    "mm_x",
    "mm_y",
    "dtype",
    "bandCount",
]
TIFF_KINDS = ["pyramid", "single", "lzw", "deflate", "zstd", "striped"]
EXTRA_TIFF_KINDS = ["subifd", "bigtiff", "inch", "lowres", "gray", "rgba", "uint16", "frames"]


def _image(name: str, images: dict[str, Path], wk_images: dict[str, Path]) -> Path:
    return images[name] if name in images else wk_images[name]


@pytest.mark.parametrize("name", TIFF_KINDS + EXTRA_TIFF_KINDS)
def test_tiff_metadata_matches_large_image(
    name: str, images: dict[str, Path], wk_images: dict[str, Path]
) -> None:
    path = _image(name, images, wk_images)
    ours = describe_path(str(path), Settings())
    theirs = large_image.open(str(path)).getMetadata()
    assert {k: ours[k] for k in FIELDS} == {k: theirs[k] for k in FIELDS}


def test_frames(wk_images: dict[str, Path]) -> None:
    path = wk_images["frames"]
    ours = describe_path(str(path), Settings())
    theirs = large_image.open(str(path))
    assert ours["frames"] == theirs.getMetadata()["frames"]
    with open_source(str(path), Settings()) as source:
        assert source.frame_count == 2
        first = source.read_tile(2, 1, 1, frame=0).array()
        second = source.read_tile(2, 1, 1, frame=1).array()
        w, h = source.tile_content(2, 1, 1)
        assert np.array_equal(second[:h, :w], 255 - first[:h, :w])
        expected = theirs.getTile(1, 1, 2, frame=1, numpyAllowed="always")
        assert np.array_equal(second[:h, :w], expected[:h, :w])


def test_resolution_gives_magnification(images: dict[str, Path], wk_images: dict[str, Path]):
    meta = describe_path(str(images["pyramid"]), Settings())
    assert meta["mm_x"] == pytest.approx(0.00025)
    assert meta["magnification"] == pytest.approx(40.0)
    # 300 dpi in inches; below 100 per unit is ignored as a meaningless default.
    mm_x = describe_path(str(wk_images["inch"]), Settings())["mm_x"]
    assert mm_x == pytest.approx(25.4 / 300, rel=1e-4)
    assert describe_path(str(wk_images["lowres"]), Settings())["magnification"] is None


@pytest.mark.parametrize("name", ["pyramid", "subifd"])
def test_native_jpeg_tiles_are_large_images_bytes(
    name: str, images: dict[str, Path], wk_images: dict[str, Path]
) -> None:
    path = _image(name, images, wk_images)
    theirs = large_image.open(str(path))
    with open_source(str(path), Settings()) as source:
        assert isinstance(source, TiffSource)
        assert all(source.is_native_level(z) for z in range(source.levels))
        for z in range(source.levels):
            across, down = source.grid.tiles_at(z)
            for x, y in {(0, 0), (across - 1, down - 1), (across // 2, down // 2)}:
                tile = source.read_tile(z, x, y)
                assert tile.is_jpeg
                expected = bytes(theirs.getTile(x, y, z))
                assert tile.jpeg == expected
                decoded = np.asarray(PIL.Image.open(io.BytesIO(expected)))
                assert np.array_equal(tile.array().reshape(decoded.shape), decoded)


@pytest.mark.parametrize("name", ["lzw", "deflate", "zstd", "striped", "bigtiff", "rgba", "uint16"])
def test_native_decoded_tiles_match_large_image(
    name: str, images: dict[str, Path], wk_images: dict[str, Path]
) -> None:
    path = _image(name, images, wk_images)
    theirs = large_image.open(str(path))
    with open_source(str(path), Settings()) as source:
        for z in range(source.levels):
            if not source.is_native_level(z):
                continue
            across, down = source.grid.tiles_at(z)
            for x, y in {(0, 0), (across - 1, down - 1)}:
                ours = source.read_tile(z, x, y).array()
                assert ours.shape == (source.tile_height, source.tile_width, source.band_count)
                assert ours.dtype == source.dtype
                expected = theirs.getTile(x, y, z, numpyAllowed="always")
                w, h = source.tile_content(z, x, y)
                assert np.array_equal(ours[:h, :w], expected[:h, :w, : ours.shape[2]])
                # Beyond the content: zeros.
                assert not ours[h:].any() and not ours[:, w:].any()


def test_single_level_tiff_has_only_its_base_level(images: dict[str, Path]) -> None:
    with open_source(str(images["single"]), Settings()) as source:
        assert [source.is_native_level(z) for z in range(source.levels)] == [False] * 4 + [True]
        assert source.level_size(3) == (1500, 1000)
        assert source.level_size(0) == (188, 125)
        assert source.grid.tiles_at(4) == (12, 8)


def test_range_checks(images: dict[str, Path]) -> None:
    with open_source(str(images["single"]), Settings()) as source:
        source.check_tile(4, 11, 7)
        for z, x, y, frame in [(5, 0, 0, 0), (-1, 0, 0, 0), (4, 12, 0, 0), (4, 0, 8, 0),
                               (0, 1, 0, 0)]:  # fmt: skip
            with pytest.raises(TileOutOfRange):
                source.check_tile(z, x, y, frame)
        # A frame the image lacks is a bad parameter (400), not a missing tile (404).
        with pytest.raises(BadRequest) as caught:
            source.check_tile(4, 0, 0, 1)
        assert caught.value.parameter == "frame"


@pytest.mark.parametrize("name", ["png", "jpeg"])
def test_plain_images(name: str, images: dict[str, Path]) -> None:
    path = images[name]
    with open_source(str(path), Settings()) as source:
        assert isinstance(source, VipsImageSource)
        assert (source.size_x, source.size_y, source.tile_width, source.levels) == (
            1000, 700, 256, 3
        )  # fmt: skip
        assert [source.is_native_level(z) for z in range(3)] == [False, False, True]
        tile = source.read_tile(2, 3, 2)
        reference = np.asarray(PIL.Image.open(path))
        assert np.array_equal(tile.array()[:188, :232], reference[512:700, 768:1000])
        assert not tile.array()[188:].any()


def test_large_striped_tiff_reads_through_libvips(wk_images: dict[str, Path]) -> None:
    path = wk_images["wide_striped"]
    theirs = large_image.open(str(path))
    ours = describe_path(str(path), Settings())
    assert {k: ours[k] for k in FIELDS} == {k: theirs.getMetadata()[k] for k in FIELDS}
    with open_source(str(path), Settings()) as source:
        assert isinstance(source, VipsImageSource)
        tile = source.read_tile(source.levels - 1, 16, 1).array()
        expected = theirs.getTile(16, 1, source.levels - 1, numpyAllowed="always")
        assert np.array_equal(tile[:44, :104], expected[:44, :104, :3])


def test_webp_is_read(wk_images: dict[str, Path]) -> None:
    meta = describe_path(str(wk_images["webp"]), Settings())
    assert (meta["sizeX"], meta["sizeY"], meta["bandCount"]) == (700, 500, 3)


def test_decode_limit_refuses_large_plain_images(images: dict[str, Path]) -> None:
    with pytest.raises(UnsupportedImage, match="more than"):
        open_source(str(images["png"]), Settings(max_decode_pixels=1000 * 699))


@pytest.mark.parametrize("name", ["not_image", "garbage_tiff"])
def test_unreadable_files_are_unsupported(name: str, wk_images: dict[str, Path]) -> None:
    with pytest.raises(UnsupportedImage) as caught:
        describe_path(str(wk_images[name]), Settings())
    assert str(wk_images[name]) not in caught.value.message  # no internal paths


def test_missing_file_is_unsupported(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedImage):
        describe_path(str(tmp_path / "absent.tiff"), Settings())


@pytest.mark.parametrize("compression", ["jpeg", "zlib", "lzw", "zstd", None])
def test_truncated_tiff_fails_per_tile(compression: str | None, tmp_path: Path) -> None:
    """A tiled TIFF cut in half whose directory comes first (as tifffile writes it) opens;
    the tiles still in the file read as written, each tile whose data is gone raises
    UnsupportedImage (never a black tile)."""
    import tifffile

    from tests.images import truncated_copy

    pixels = np.random.default_rng(1).integers(0, 255, (700, 1000, 3), dtype=np.uint8)
    whole = tmp_path / "whole.tiff"
    tifffile.imwrite(whole, pixels, tile=(256, 256), compression=compression, photometric="rgb")
    with tifffile.TiffFile(whole) as tiff:
        page = tiff.pages[0]
        assert page.offset < whole.stat().st_size // 2  # the directory survives the cut
        ends = [
            offset + count
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=True)
        ]
    cut = truncated_copy(whole, tmp_path / "cut.tiff")
    size = cut.stat().st_size
    with open_source(str(cut), Settings()) as source:
        z = source.levels - 1
        across, down = source.grid.tiles_at(z)
        assert (across, down) == (4, 3)
        kept = [i for i, end in enumerate(ends) if end <= size]
        assert 0 < len(kept) < len(ends)  # some tiles survive, some are gone
        for index in range(across * down):
            x, y = index % across, index // across
            if index in kept:
                tile = source.read_tile(z, x, y)
                assert tile.is_jpeg == (compression == "jpeg")
                if compression != "jpeg":  # lossless: the pixels written
                    expected = pixels[y * 256 : (y + 1) * 256, x * 256 : (x + 1) * 256]
                    got = tile.array()[: expected.shape[0], : expected.shape[1]]
                    assert np.array_equal(got, expected), (x, y)
            else:
                with pytest.raises(UnsupportedImage, match="corrupt"):
                    source.read_tile(z, x, y)


def test_estimated_bytes_and_close(images: dict[str, Path]) -> None:
    source = open_source(str(images["lzw"]), Settings())
    before = source.estimated_bytes
    source.read_tile(source.levels - 1, 0, 0)
    assert source.estimated_bytes >= before > 0
    source.close()
    source.close()  # idempotent


@pytest.mark.parametrize("name", ["pyramid", "lzw", "zstd"])
def test_damaged_tile_data_fails_that_tile_only(
    name: str, images: dict[str, Path], tmp_path: Path
) -> None:
    from tilecast.workers.sources.tiffdir import TiffFile

    path = tmp_path / f"damaged-{name}.tiff"
    data = bytearray(images[name].read_bytes())
    with TiffFile(str(images[name])) as tiff:
        base = tiff.directories[0]
        offset, count = int(base.tile_offsets[1]), int(base.tile_byte_counts[1])
    data[offset : offset + count] = (
        np.random.default_rng(2).integers(0, 255, count, dtype=np.uint8).tobytes()
    )
    path.write_bytes(bytes(data))
    with open_source(str(path), Settings()) as source:
        z = source.levels - 1
        assert source.read_tile(z, 0, 0).array().any()
        if name == "lzw":
            # Random bytes are often a valid LZW stream: garbage pixels, but no crash.
            try:
                tile = source.read_tile(z, 1, 0)
            except UnsupportedImage:
                pass
            else:
                assert tile.array().shape == (256, 256, 3)
        else:
            with pytest.raises(UnsupportedImage, match="corrupt"):
                source.read_tile(z, 1, 0)
        assert source.read_tile(z, 2, 0).array().any()
