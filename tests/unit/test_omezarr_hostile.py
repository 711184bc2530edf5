"""Hostile and broken OME-Zarr stores: every one a 422 naming the format and the reason
(never the store's path), at open or at the tile, before anything sized by the store is
read or decoded; a zarr store that is not an OME-NGFF image is a 415."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import shutil
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import google_crc32c
import numcodecs
import numpy as np
import pytest
import zarr

from tests.images_omezarr import PLATE_SPEC, write_plate
from tilecast.common.errors import UnsupportedFormat, UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.sources import open_source
from tilecast.workers.sources.omezarr import OmeZarrSource

SHAPE, CHUNKS = (2, 64, 96), (1, 32, 32)
# 50 MB of zeros: a few kilobytes once compressed, 25 000 times a 2 KiB chunk.
BOMB = bytes(50_000_000)


def write_store(
    path: Path,
    *,
    zarr_format: int = 2,
    compressors: Any = "auto",
    shards: tuple[int, ...] | None = None,
    levels: int = 2,
    axes: str = "cyx",
    shape: tuple[int, ...] = SHAPE,
    chunks: tuple[int, ...] = CHUNKS,
    data: bool = True,
) -> Path:
    """A small NGFF store written with zarr: ``levels`` halving datasets s0, s1, ..."""
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    datasets = []
    for index in range(levels):
        level_shape = (*shape[:-2], shape[-2] >> index, shape[-1] >> index)
        options: dict[str, Any] = {"chunks": chunks, "compressors": compressors}
        if zarr_format == 2:
            options["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        if shards is not None:
            options["shards"] = shards
        array = group.create_array(f"s{index}", shape=level_shape, dtype="uint16", **options)
        if data:
            array[...] = np.arange(np.prod(level_shape), dtype=np.uint16).reshape(level_shape)
        scale = [2.0**index if axis in "yx" else 1.0 for axis in axes]
        datasets.append(
            {"path": f"s{index}", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
        )
    multiscale = {"axes": [{"name": a} for a in axes], "datasets": datasets, "version": "0.4"}
    if zarr_format == 2:
        group.attrs.update({"multiscales": [multiscale]})
    else:
        del multiscale["version"]
        group.attrs.update({"ome": {"version": "0.5", "multiscales": [multiscale]}})
    return path


def edit_attributes(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    attributes = json.loads((path / ".zattrs").read_text())
    change(attributes)
    (path / ".zattrs").write_text(json.dumps(attributes))


def refused(path: Path, *words: str, **settings: Any) -> UnsupportedImage:
    """The 422 opening ``path`` raises, checked to name the format, ``words`` and no path."""
    with pytest.raises(UnsupportedImage) as caught:
        open_source(str(path), Settings(**settings)).close()
    return checked(caught.value, path, *words)


def refused_at_tile(path: Path, *words: str, frame: int = 0) -> UnsupportedImage:
    with open_source(str(path), Settings()) as source:
        assert isinstance(source, OmeZarrSource)
        with pytest.raises(UnsupportedImage) as caught:
            source.read_tile(source.levels - 1, 0, 0, frame)
    return checked(caught.value, path, *words)


def checked(error: UnsupportedImage, path: Path, *words: str) -> UnsupportedImage:
    assert error.status == 422, error
    assert error.message.startswith("OME-Zarr: "), error.message
    for word in words:
        assert word in error.message, error.message
    assert str(path.parent) not in error.message
    return error


# -- metadata that lies or that tilecast does not follow -----------------------------------


def test_axes_that_do_not_match_the_arrays(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.zarr")
    edit_attributes(store, lambda a: a["multiscales"][0].update(axes=[{"name": n} for n in "tcyx"]))
    refused(store, "3 dimensions", "4 axes")


def test_an_ngff_version_not_read(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.zarr")
    edit_attributes(store, lambda a: a["multiscales"][0].update(version="0.3"))
    refused(store, "NGFF version 0.3")


def test_an_axis_not_read(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.zarr")
    edit_attributes(store, lambda a: a["multiscales"][0].update(axes=[{"name": n} for n in "qyx"]))
    refused(store, "axis 'q'")


def test_a_dataset_path_out_of_the_store(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.zarr")
    (tmp_path / "elsewhere").mkdir()
    edit_attributes(store, lambda a: a["multiscales"][0]["datasets"][0].update(path="../elsewhere"))
    refused(store, "path tilecast does not follow")


def test_a_chunk_shape_that_does_not_fit_the_array(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.zarr")
    array = json.loads((store / "s0" / ".zarray").read_text())
    array["chunks"] = [32, 32]  # two chunk sides for three dimensions
    (store / "s0" / ".zarray").write_text(json.dumps(array))
    refused(store, "dataset s0", "not a readable zarr array")


def test_a_level_with_other_channels(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.zarr")
    array = json.loads((store / "s1" / ".zarray").read_text())
    array["shape"][0] = 3
    (store / "s1" / ".zarray").write_text(json.dumps(array))
    refused(store, "dataset s1 has 3 along c, full resolution 2")


def test_a_first_dataset_smaller_than_another(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.zarr")
    edit_attributes(store, lambda a: a["multiscales"][0]["datasets"].reverse())
    refused(store, "larger than the full resolution")


def test_an_image_beyond_the_decode_bound(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.zarr")
    refused(store, "more pixels than this server decodes", max_decode_pixels=64 * 95)


def test_chunks_beyond_the_chunk_bound(tmp_path: Path) -> None:
    """128 MiB chunks are refused from the metadata alone (nothing is written or read)."""
    store = write_store(
        tmp_path / "s.zarr", shape=(1, 9000, 9000), chunks=(1, 8192, 8192), levels=1, data=False
    )
    refused(store, "chunks of 134217728 bytes")


def test_metadata_documents_are_bounded(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.zarr")
    edit_attributes(store, lambda a: a.update(padding="x" * (17 * 1024 * 1024)))
    refused(store, "metadata document is larger")


def test_metadata_that_is_not_json(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.zarr")
    (store / ".zattrs").write_text("{not json")
    refused(store, "not a readable zarr group")


def test_a_zarr_store_without_ngff_metadata_is_passed_on(tmp_path: Path) -> None:
    group = zarr.open_group(str(tmp_path / "plain.zarr"), mode="w", zarr_format=2)
    group.create_array("data", shape=(10, 10), dtype="uint8")
    with pytest.raises(UnsupportedFormat) as caught:
        open_source(str(tmp_path / "plain.zarr"), Settings())
    assert "OME-Zarr: a zarr store without OME-NGFF image or plate metadata" in str(caught.value)


def test_a_plate_field_unlike_the_first(tmp_path: Path) -> None:
    """Fields are opened when first read: one of another shape is a 422 for its frames."""
    plate = write_plate(tmp_path / "plate.zarr", PLATE_SPEC)
    field = plate / "B" / "2" / "1"
    for dataset in ("s0", "s1"):
        meta = json.loads((field / dataset / ".zarray").read_text())
        meta["shape"][-1] -= 10
        (field / dataset / ".zarray").write_text(json.dumps(meta))
    with open_source(str(plate), Settings()) as source:
        source.read_tile(source.levels - 1, 0, 0, 0)
        with pytest.raises(UnsupportedImage) as caught:
            source.read_tile(source.levels - 1, 0, 0, source.frame_count - 1)
    checked(caught.value, plate, "field B/2/1 differs from the first field")


# -- chunks ----------------------------------------------------------------------------------


def test_a_damaged_chunk(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.zarr", compressors=numcodecs.Zstd())
    (store / "s0" / "0" / "0" / "0").write_bytes(os.urandom(300))
    refused_at_tile(store, "chunk 0.0.0 of dataset s0: cannot be decoded")


def test_a_chunk_shorter_than_its_shape(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.zarr", compressors=numcodecs.Zlib())
    (store / "s0" / "0" / "0" / "0").write_bytes(zlib.compress(bytes(100)))
    refused_at_tile(store, "chunk 0.0.0 of dataset s0: cannot be decoded")


def test_a_stored_chunk_larger_than_any_encoding(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.zarr", compressors=None)
    (store / "s0" / "0" / "0" / "0").write_bytes(bytes(2 * 2048 + 1024 * 1024 + 1))
    refused_at_tile(store, "stored chunk is larger than any encoding")


BOMBS: dict[str, tuple[Any, Callable[[bytes], bytes]]] = {
    "gzip": (numcodecs.GZip(), gzip.compress),
    "zlib": (numcodecs.Zlib(), zlib.compress),
    "bz2": (numcodecs.BZ2(), bz2.compress),
    "lzma": (numcodecs.LZMA(), lzma.compress),
    "blosc": (numcodecs.Blosc(), numcodecs.Blosc().encode),
    "zstd": (numcodecs.Zstd(), numcodecs.Zstd().encode),
    "lz4": (numcodecs.LZ4(), numcodecs.LZ4().encode),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_a_decompression_bomb_is_refused_before_zarr_decodes_it(tmp_path: Path, name: str) -> None:
    codec, compress = BOMBS[name]
    store = write_store(tmp_path / "s.zarr", compressors=codec)
    (store / "s0" / "0" / "0" / "0").write_bytes(compress(BOMB))
    refused_at_tile(store, "decodes to more than the 2048 bytes its metadata declares")


def test_a_zstd_bomb_in_a_v3_store(tmp_path: Path) -> None:
    from zarr.codecs import ZstdCodec

    store = write_store(tmp_path / "s.zarr", zarr_format=3, compressors=ZstdCodec())
    (store / "s0" / "c" / "0" / "0" / "0").write_bytes(numcodecs.Zstd().encode(BOMB))
    refused_at_tile(store, "decodes to more than")


@pytest.mark.parametrize("whole_shard", [True, False])
def test_a_bomb_inside_a_shard(tmp_path: Path, whole_shard: bool) -> None:
    """An inner chunk of a shard, read alone (by range) or with its whole shard."""
    from zarr.codecs import ZstdCodec

    chunks = (1, 32, 32) if whole_shard else (1, 16, 16)
    store = write_store(
        tmp_path / "s.zarr",
        zarr_format=3,
        compressors=ZstdCodec(),
        chunks=chunks,
        shards=(1, 32, 32),
    )
    shard = store / "s0" / "c" / "0" / "0" / "0"
    data = shard.read_bytes()
    bomb = numcodecs.Zstd().encode(BOMB)
    # The index (at the end): (offset, length) per inner chunk, then a crc32c; the first
    # chunk is pointed at the bomb appended before the index.
    inner_chunks = 1 if whole_shard else 4
    index = bytearray(data[-(16 * inner_chunks + 4) :])
    body = data[: len(data) - len(index)]
    index[0:16] = np.array([len(body), len(bomb)], "<u8").tobytes()
    entries = bytes(index[:-4])
    crc = google_crc32c.value(entries).to_bytes(4, "little")
    shard.write_bytes(body + bomb + entries + crc)
    refused_at_tile(store, "decodes to more than")


# -- the place: links, special files, zips ----------------------------------------------------


def test_a_chunk_linked_out_of_the_store(tmp_path: Path) -> None:
    store = write_store(tmp_path / "s.zarr", compressors=None)
    secret = tmp_path / "secret"
    secret.write_bytes(bytes(2048))
    chunk = store / "s0" / "0" / "0" / "0"
    chunk.unlink()
    chunk.symlink_to(secret)
    refused_at_tile(store, "links to a file outside")


def test_a_chunk_folder_linked_out_of_the_store(tmp_path: Path) -> None:
    """A link before the chunk's own name: opened, then refused by the kernel's name
    for what was opened, before a byte of it is read."""
    store = write_store(tmp_path / "s.zarr", compressors=None)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "0").write_bytes(bytes(2048))
    folder = store / "s0" / "0" / "0"
    for chunk in folder.iterdir():
        chunk.unlink()
    folder.rmdir()
    folder.symlink_to(outside)
    refused_at_tile(store, "links to a file outside")


def test_links_that_stay_inside_the_store_read(tmp_path: Path) -> None:
    """A chunk linked to another chunk and a folder linked to another folder of the
    same store read as those."""
    store = write_store(tmp_path / "s.zarr", compressors=None)
    with open_source(str(store), Settings()) as source:
        z = source.levels - 1
        first, second = source.read_tile(z, 0, 0, 0).array(), source.read_tile(z, 0, 0, 1).array()
    chunk = store / "s0" / "1" / "0" / "0"
    chunk.unlink()
    chunk.symlink_to(store / "s0" / "0" / "0" / "0")
    row = store / "s0" / "0" / "1"
    shutil.rmtree(row)
    row.symlink_to(store / "s0" / "0" / "0")
    with open_source(str(store), Settings()) as source:
        linked_chunk = source.read_tile(z, 0, 0, 1).array()
        linked_row = source.read_tile(z, 0, 0, 0).array()
    assert not np.array_equal(first[:32, :32], second[:32, :32])
    assert np.array_equal(linked_chunk[:32, :32], first[:32, :32])
    assert np.array_equal(linked_chunk[:64, 32:], second[:64, 32:])
    assert np.array_equal(linked_row[32:64, :96], first[:32, :96])


def test_a_fifo_in_place_of_a_chunk_reads_as_missing(tmp_path: Path) -> None:
    """Opening a FIFO must not wait for a writer: it is no chunk, so zarr fills it."""
    store = write_store(tmp_path / "s.zarr", compressors=None)
    chunk = store / "s0" / "0" / "0" / "0"
    chunk.unlink()
    os.mkfifo(chunk)
    with open_source(str(store), Settings()) as source:
        tile = source.read_tile(source.levels - 1, 0, 0, 0).pixels
    assert tile is not None and not tile[:32, :32].any() and tile[:32, 32:64].any()


def zipped(store: Path, target: Path, compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(target, "w", compression=compression) as archive:
        for file in sorted(store.rglob("*")):
            if file.is_file():
                archive.write(file, file.relative_to(store).as_posix())
    return target


def test_a_zip_member_larger_than_its_chunk(tmp_path: Path) -> None:
    """A deflated member inflating to 50 MB in place of a 2 KiB chunk: refused by its
    declared size before it is inflated."""
    store = write_store(tmp_path / "s.zarr", compressors=None)
    (store / "s0" / "0" / "0" / "0").write_bytes(BOMB)
    target = zipped(store, tmp_path / "s.zip", zipfile.ZIP_DEFLATED)
    assert target.stat().st_size < 1_000_000
    refused_at_tile(target, "stored chunk is larger than any encoding")


def test_a_zip_cut_short_is_not_a_store(tmp_path: Path) -> None:
    target = zipped(write_store(tmp_path / "s.zarr"), tmp_path / "s.zip")
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnsupportedFormat):
        open_source(str(target), Settings())


def test_a_zip_whose_members_are_damaged(tmp_path: Path) -> None:
    target = zipped(
        write_store(tmp_path / "s.zarr", compressors=numcodecs.Zstd()), tmp_path / "s.zip"
    )
    data = bytearray(target.read_bytes())
    with zipfile.ZipFile(target) as archive:
        info = archive.getinfo("s0/0/0/0")
    start = info.header_offset + 30 + len(info.filename)
    data[start : start + info.compress_size] = os.urandom(info.compress_size)
    target.write_bytes(bytes(data))
    refused_at_tile(target, "chunk 0.0.0 of dataset s0: a member of the zip cannot be read")
