"""The OME-Zarr reader (workers/sources/omezarr.py) on stores written by ome-zarr-py and by
zarr (tests/images_omezarr.py): geometry, levels, axes as frames, every pixel of native
tiles against the written content and zarr's own read, zipped stores, an HCS plate, and
chunk reads shared between the tiles and frames that need them."""

from __future__ import annotations

import json
import math
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr

from tests.images_omezarr import (
    CHANNEL_NAMES,
    OMEZARR_IMAGES,
    PLATE,
    PLATE_FIELDS,
    make_omezarr_images,
    planes,
    plate_field,
)
from tilecast.common.errors import UnsupportedFormat
from tilecast.common.settings import Settings
from tilecast.workers.sources import open_source
from tilecast.workers.sources.omezarr import OmeZarrSource

# name -> (frames, bands, reductions of the native levels from full resolution down)
EXPECTED: dict[str, tuple[int, int, list[int]]] = {
    "ngff04_czyx": (6, 1, [0, 1, 2]),
    "ngff05_czyx": (6, 1, [0, 1, 2]),
    "ngff04_tczyx": (12, 1, [0, 1]),
    "rgb04": (1, 3, [0, 1]),
    "float04_3x": (2, 1, [0, 1, 2]),  # the 3x dataset is skipped, the 8x one beyond level 0
    "yx04_uint16": (1, 1, [0]),  # its only other dataset is a 3x one
    "int16_05_tyx": (3, 1, [0, 1]),
    "zcyx04": (4, 1, [0, 1]),
    "sharded05": (2, 1, [0, 1]),
    "zip_root": (6, 1, [0, 1, 2]),
    "zip_folder": (6, 1, [0, 1, 2]),
    PLATE: (2 * 2 * 2 * PLATE_FIELDS, 1, [0, 1]),
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_omezarr_images(tmp_path_factory.mktemp("omezarr"))


def opened(path: Path, **settings: Any) -> OmeZarrSource:
    source = open_source(str(path), Settings(**settings))
    assert isinstance(source, OmeZarrSource)
    return source


def level_pixels(source: OmeZarrSource, z: int, frame: int) -> np.ndarray:
    """Every tile of native level ``z`` of ``frame``, assembled (height, width, bands)."""
    width, height = source.level_size(z, frame)
    out = np.zeros((height, width, source.band_count), source.dtype)
    across, down = source.grid.tiles_at(z)
    for y in range(down):
        for x in range(across):
            tile = source.read_tile(z, x, y, frame).pixels
            assert tile is not None
            assert tile.shape == (source.tile_height, source.tile_width, source.band_count)
            w, h = source.tile_content(z, x, y, frame)
            x0, y0 = x * source.tile_width, y * source.tile_height
            out[y0 : y0 + h, x0 : x0 + w] = tile[:h, :w]
            assert not tile[h:].any() and not tile[:, w:].any()  # padded with zeros
    return out


def plane_of(array: np.ndarray, axes: str, frame: dict[str, Any], bands: int) -> np.ndarray:
    """The (height, width, bands) plane of ``array`` (axes in ``axes``' order) a frame's
    ``IndexC``/``IndexZ``/``IndexT`` name; channels are the bands when ``bands`` > 1."""
    index: list[Any] = []
    for axis in axes:
        if axis in "yx" or (axis == "c" and bands > 1):
            index.append(slice(None))
        else:
            index.append(frame.get(f"Index{axis.upper()}", 0))
    plane = array[tuple(index)]
    kept = [axis for axis in axes if axis in "yx" or (axis == "c" and bands > 1)]
    if "c" not in kept:
        return plane[:, :, np.newaxis]
    return np.transpose(plane, [kept.index("y"), kept.index("x"), kept.index("c")])


def frames_of(source: OmeZarrSource) -> list[dict[str, Any]]:
    return source.metadata.get("frames") or [{}]


def sample_frames(count: int) -> list[int]:
    return sorted({0, count // 2, count - 1})


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_geometry_frames_and_native_levels(stores: dict[str, Path], name: str) -> None:
    frames, bands, reductions = EXPECTED[name]
    with opened(stores[name]) as source:
        assert source.frame_count == frames
        assert source.band_count == bands
        native = [z for z in range(source.levels) if source.native_level_size(z) is not None]
        assert native == sorted(source.levels - 1 - k for k in reductions)
        metadata = json.loads(json.dumps(source.metadata))
        assert (metadata.get("frames") is not None) == (frames > 1)
        for z in native:
            width, height = source.native_level_size(z)  # type: ignore[misc]
            k = source.levels - 1 - z
            assert source.size_x // 2**k <= width <= -(-source.size_x // 2**k)
            assert source.size_y // 2**k <= height <= -(-source.size_y // 2**k)


@pytest.mark.parametrize(
    "name", sorted(set(EXPECTED) - {PLATE})
)  # the plate: test_plate_fields_are_frames
def test_every_pixel_of_full_resolution(stores: dict[str, Path], name: str) -> None:
    spec = OMEZARR_IMAGES[{"zip_root": "ngff04_czyx", "zip_folder": "ngff05_czyx"}.get(name, name)]
    content = planes(name)
    with opened(stores[name]) as source:
        frames = frames_of(source)
        for frame in sample_frames(source.frame_count):
            expected = plane_of(content, spec.axes, frames[frame], source.band_count)
            got = level_pixels(source, source.levels - 1, frame)
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", ["ngff04_czyx", "ngff05_czyx", "float04_3x", "sharded05"])
def test_reduced_native_levels_are_the_stored_datasets(stores: dict[str, Path], name: str) -> None:
    """A native level below full resolution holds what zarr itself reads of its dataset."""
    spec = OMEZARR_IMAGES[name]
    group = zarr.open_group(str(stores[name]), mode="r")
    with opened(stores[name]) as source:
        frames = frames_of(source)
        for z in range(source.levels - 1):
            size = source.native_level_size(z)
            if size is None:
                continue
            dataset = next(
                group[key]
                for key in sorted(group.array_keys())
                if tuple(group[key].shape[-2:]) == (size[1], size[0])
            )
            stored = np.asarray(dataset[...])
            for frame in sample_frames(source.frame_count):
                expected = plane_of(stored, spec.axes, frames[frame], source.band_count)
                np.testing.assert_array_equal(level_pixels(source, z, frame), expected)


def test_channels_from_omero_and_frames_in_large_images_order(stores: dict[str, Path]) -> None:
    with opened(stores["ngff04_tczyx"]) as source:
        metadata = source.metadata
    assert metadata["channels"] == list(CHANNEL_NAMES)
    assert metadata["channelmap"] == {name: n for n, name in enumerate(CHANNEL_NAMES)}
    assert metadata["IndexRange"] == {"IndexC": 3, "IndexZ": 2, "IndexT": 2}
    assert metadata["IndexStride"] == {"IndexC": 1, "IndexZ": 3, "IndexT": 6}
    assert metadata["frames"][7] == {
        "IndexC": 1, "IndexZ": 0, "IndexT": 1, "Frame": 7, "Index": 2, "Channel": "GFP"
    }  # fmt: skip
    assert metadata["mm_x"] == pytest.approx(0.0005) and metadata["magnification"] == 20


def test_default_channel_names_make_bands(stores: dict[str, Path]) -> None:
    """Three channels named ``Channel 0``-``2`` are an RGB pixel, as large_image reads them."""
    with opened(stores["rgb04"]) as source:
        assert source.band_count == 3 and source.frame_count == 1
        assert "channels" not in source.metadata
        # large_image's tile size: the chunk's 300 across, 512 for its 100 rows.
        assert (source.tile_width, source.tile_height) == (300, 512)


def test_zipped_stores_are_recognised_by_content(stores: dict[str, Path], tmp_path: Path) -> None:
    assert stores["zip_root"].name == "image.bin"
    with opened(stores["zip_root"]) as source:
        assert source.frame_count == 6
    # A zip holding something else is not a store.
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("readme.txt", "hello")
        archive.writestr("deep/er/.zattrs", "{}")  # two folders down: not looked for
    with pytest.raises(UnsupportedFormat):
        open_source(str(other), Settings())


def test_plate_fields_are_frames(stores: dict[str, Path]) -> None:
    with opened(stores[PLATE]) as source:
        metadata = source.metadata
        assert metadata["IndexRange"] == {"IndexC": 2, "IndexXY": 8}
        assert metadata["IndexStride"] == {"IndexC": 1, "IndexXY": 2}
        for field_number in (0, 5, 7):
            for channel in (0, 1):
                frame = field_number * 2 + channel
                got = level_pixels(source, source.levels - 1, frame)
                np.testing.assert_array_equal(got[:, :, 0], plate_field(field_number)[channel])


def test_a_chunk_is_decoded_once_for_every_tile_and_frame_it_serves(
    stores: dict[str, Path],
) -> None:
    """zcyx04 keeps 2 z x 2 channels (4 frames) of 150 x 150 pixels in each chunk: reading
    every tile of every frame at full resolution decodes each of its 4 chunks once."""
    with opened(stores["zcyx04"]) as source:
        z = source.levels - 1
        for frame in range(source.frame_count):
            level_pixels(source, z, frame)
        assert source._chunks.misses == 4
        assert source._chunks.hits == 4 * source.frame_count - 4


def test_tiles_across_chunk_borders_share_them(stores: dict[str, Path]) -> None:
    """yx04_uint16: chunks of 100 x 300, tiles of 300 x 512 -- each chunk read once."""
    with opened(stores["yx04_uint16"]) as source:
        level_pixels(source, source.levels - 1, 0)
        chunks = math.ceil(500 / 100) * math.ceil(700 / 300)
        assert source._chunks.misses == chunks


def test_concurrent_readers_of_one_chunk_decode_it_once(stores: dict[str, Path]) -> None:
    with opened(stores["ngff04_czyx"]) as source:
        z = source.levels - 1
        barrier = threading.Barrier(8)
        results: list[np.ndarray] = []

        def read() -> None:
            barrier.wait()
            tile = source.read_tile(z, 1, 1, 3).pixels
            assert tile is not None
            results.append(tile)

        threads = [threading.Thread(target=read) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert source._chunks.misses == 1  # a 300 x 256 tile is exactly one chunk
        assert all(np.array_equal(result, results[0]) for result in results)


def test_tiles_do_not_alter_cached_chunks(stores: dict[str, Path]) -> None:
    with opened(stores["ngff04_czyx"]) as source:
        z = source.levels - 1
        first = source.read_tile(z, 0, 0, 0).pixels
        assert first is not None
        first[:] = 0  # a caller may scribble on its tile
        again = source.read_tile(z, 0, 0, 0).pixels
        assert again is not None and again.any()


def test_a_bioformats2raw_layout_serves_its_first_series(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    """bioformats2raw writes each series of a file as an image group 0, 1, ... below a
    root that says so; the first series is the image."""
    import shutil

    root = tmp_path / "converted.zarr"
    group = zarr.open_group(str(root), mode="w", zarr_format=2)
    group.attrs.update({"bioformats2raw.layout": 3})
    shutil.copytree(stores["ngff04_czyx"], root / "0")
    with opened(root) as source, opened(stores["ngff04_czyx"]) as original:
        assert source.metadata == original.metadata
        assert np.array_equal(
            source.read_tile(2, 1, 1, 3).pixels, original.read_tile(2, 1, 1, 3).pixels
        )


@pytest.mark.parametrize(
    ("unit", "mm"), [("micrometer", 0.0005), ("millimeter", 0.5), ("meter", 500.0), ("inch", None)]
)
def test_pixel_size_from_the_first_datasets_scale(unit: str, mm: float | None) -> None:
    """large_image's zarr source knows three units; others leave mm_x unknown."""
    from tilecast.workers.sources import ngff

    axes = [
        {"name": "c", "type": "channel"},
        {"name": "y", "unit": unit},
        {"name": "x", "unit": unit},
    ]
    datasets = [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 0.5, 0.5]}]}
    ]
    for attributes in (
        {"multiscales": [{"version": "0.4", "axes": axes, "datasets": datasets}]},
        {"ome": {"version": "0.5", "multiscales": [{"axes": axes, "datasets": datasets}]}},
    ):
        image = ngff.parse_image(attributes)
        assert ngff.pixel_size_mm(image, "x") == (pytest.approx(mm) if mm else None)


def codec_options(name: str) -> dict[str, Any]:
    """create_array's codec arguments for a layout of LAYOUTS."""
    import numcodecs
    from zarr.codecs import BloscCodec, Crc32cCodec, GzipCodec, TransposeCodec, ZstdCodec

    return {
        "v2-blosc": {"compressors": numcodecs.Blosc()},
        "v2-zlib": {"compressors": numcodecs.Zlib()},
        "v2-lz4": {"compressors": numcodecs.LZ4()},
        "raw": {"compressors": None},
        "blosc": {"compressors": BloscCodec()},
        "gzip": {"compressors": GzipCodec()},
        "crc32c": {"compressors": (ZstdCodec(), Crc32cCodec())},
        "transpose": {"filters": TransposeCodec(order=(0, 2, 1)), "compressors": ZstdCodec()},
    }[name]


LAYOUTS = [
    (2, ">u2", "F", "v2-blosc"),
    (2, "<i2", "C", "raw"),
    (2, ">f4", "C", "v2-zlib"),
    (2, "|u1", "F", "v2-lz4"),
    *[(3, "uint16", "C", name) for name in ("blosc", "gzip", "raw", "crc32c", "transpose")],
]


@pytest.mark.parametrize(("zarr_format", "dtype", "order", "layout"), LAYOUTS)
def test_byte_orders_memory_orders_codecs_and_missing_chunks(
    tmp_path: Path, zarr_format: int, dtype: str, order: str, layout: str
) -> None:
    """Chunks tilecast decodes itself (one compressor or none, C or F order, either byte
    order) and those it leaves to zarr (checksums, transposes) read the same pixels; a
    chunk the store lacks reads as the array's fill value."""
    options = codec_options(layout)
    shape = (2, 70, 90)
    data = (np.arange(np.prod(shape)) % 251).reshape(shape).astype(dtype)
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="w", zarr_format=zarr_format)
    extra: dict[str, Any] = {"order": order} if zarr_format == 2 else {}
    if zarr_format == 2:
        extra["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    array = group.create_array(
        "0", shape=shape, dtype=dtype, chunks=(1, 32, 40), fill_value=7, **options, **extra
    )
    array[...] = data
    array[1, 32:64, 40:80] = 7  # an all-fill chunk: zarr does not store it
    data[1, 32:64, 40:80] = 7
    axes = [{"name": "c", "type": "channel"}, {"name": "y"}, {"name": "x"}]
    multiscale: dict[str, Any] = {"axes": axes, "datasets": [{"path": "0"}]}
    omero = {"channels": [{"label": "one"}, {"label": "two"}]}
    if zarr_format == 2:
        group.attrs.update({"multiscales": [{**multiscale, "version": "0.4"}], "omero": omero})
    else:
        group.attrs.update({"ome": {"version": "0.5", "multiscales": [multiscale], "omero": omero}})
    with opened(tmp_path / "s.zarr") as source:
        assert source.dtype == np.dtype(dtype).newbyteorder("=")
        level = source._fields[0].levels[-1]
        assert level is not None
        assert (level.plain is None) == (layout in ("crc32c", "transpose"))  # read by zarr
        for frame in (0, 1):
            got = level_pixels(source, source.levels - 1, frame)
            np.testing.assert_array_equal(got[:, :, 0], data[frame])
