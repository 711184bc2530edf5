"""workers/sources/files.py: readers over ImageFile -- a local file (libvips by path) and
any other file (libvips through a custom source) give the same tiles, metadata and
associated images; a read failure inside libvips surfaces as itself; FileStream reads like
a file, with or without read-ahead."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile

from tilecast.common.errors import GirderUnavailable, UnsupportedFormat, UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.sources import open_source
from tilecast.workers.sources.files import SMALL_READ, FileStream, ImageFile, LocalFile
from tilecast.workers.sources.tiff import TiffSource
from tilecast.workers.sources.tiffdir import TiffFile
from tilecast.workers.sources.vipsimage import VipsImageSource


class MemoryFile(ImageFile):
    """A non-local file: libvips must read it through ``vips_source``."""

    def __init__(self, data: bytes, *, fail_after: int | None = None) -> None:
        super().__init__()
        self.name = "memory"
        self.size = len(data)
        self._data = data
        self.reads = 0
        self.closed = False
        self._fail_after = fail_after
        self._lock = threading.Lock()

    def read(self, offset: int, count: int) -> bytes:
        with self._lock:
            self.reads += 1
            if self._fail_after is not None and self.reads > self._fail_after:
                raise GirderUnavailable("Girder went away")
        return self._data[offset : offset + count]

    def close(self) -> None:
        self.closed = True


def _tiles(source: object) -> list[tuple[int, int, int]]:
    found = []
    for z in range(source.levels):  # type: ignore[attr-defined]
        if not source.is_native_level(z):  # type: ignore[attr-defined]
            continue
        across, down = source.grid.tiles_at(z)  # type: ignore[attr-defined]
        found += [(z, x, y) for x, y in {(0, 0), (across - 1, down - 1), (across // 2, 0)}]
    return found


@pytest.mark.parametrize(
    "name", ["pyramid", "deflate", "lzw", "zstd", "striped", "png", "jpeg", "single"]
)
def test_a_file_read_through_libvips_sources_gives_the_local_tiles(
    name: str, images: dict[str, Path]
) -> None:
    path = images[name]
    with open_source(str(path), Settings()) as local:
        remote_file = MemoryFile(path.read_bytes())
        with open_source(remote_file, Settings()) as remote:
            assert type(remote) is type(local)
            assert remote.metadata == local.metadata
            for z, x, y in _tiles(local):
                assert remote.read_tile(z, x, y).to_bytes() == local.read_tile(z, x, y).to_bytes()
        assert remote_file.closed  # the source owns its file


def test_kinds_of_reader(images: dict[str, Path], wk_images: dict[str, Path]) -> None:
    with open_source(MemoryFile(images["pyramid"].read_bytes()), Settings()) as source:
        assert isinstance(source, TiffSource)
        assert source.read_tile(0, 0, 0).is_jpeg  # JPEG pass-through from a remote file
    for name in ("wide_striped", "webp"):
        with open_source(MemoryFile(wk_images[name].read_bytes()), Settings()) as source:
            assert isinstance(source, VipsImageSource)
            with open_source(str(wk_images[name]), Settings()) as local:
                z = local.levels - 1
                assert source.read_tile(z, 1, 0).to_bytes() == local.read_tile(z, 1, 0).to_bytes()


def test_associated_images_of_a_remote_tiff(tmp_path: Path) -> None:
    path = tmp_path / "assoc.tiff"
    rgb = np.random.default_rng(3).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    with tifffile.TiffWriter(path) as tif:
        tif.write(rgb, tile=(128, 128), photometric="rgb", compression="zlib", metadata=None)
        tif.write(rgb[:60, :90], photometric="rgb", subfiletype=1, metadata=None)
    with (
        open_source(str(path), Settings()) as local,
        open_source(MemoryFile(path.read_bytes()), Settings()) as remote,
    ):
        assert remote.associated_names() == local.associated_names() == ["label"]
        assert np.array_equal(remote.associated_image("label"), local.associated_image("label"))


def test_a_failed_read_inside_libvips_is_not_reported_as_a_corrupt_file(
    images: dict[str, Path],
) -> None:
    data = images["deflate"].read_bytes()
    opened = MemoryFile(data)
    with open_source(opened, Settings()) as source:
        opened._fail_after = opened.reads  # every read from now on fails
        z = source.levels - 1
        with pytest.raises(GirderUnavailable):
            source.read_tile(z, 1, 1)
    png = MemoryFile(images["png"].read_bytes(), fail_after=1)
    with pytest.raises(GirderUnavailable):
        open_source(png, Settings())
    assert png.closed  # a failed open closes the file


def test_local_file_reads_and_refusals(images: dict[str, Path], tmp_path: Path) -> None:
    path = images["lzw"]
    with LocalFile(str(path)) as local:
        assert local.local_path == str(path) and local.size == path.stat().st_size
        assert local.read(0, 4) == path.read_bytes()[:4]
        assert local.read(local.size - 2, 10) == path.read_bytes()[-2:]
    with pytest.raises(OSError):
        LocalFile(str(tmp_path))
    with pytest.raises(UnsupportedFormat, match="a directory of 0 entries"):
        open_source(str(tmp_path), Settings())  # a directory may be an image; this one none
    with pytest.raises(UnsupportedImage, match="cannot open the file"):
        open_source(str(tmp_path / "absent.tiff"), Settings())


def test_tifffile_takes_a_file_it_does_not_close(images: dict[str, Path]) -> None:
    opened = MemoryFile(images["pyramid"].read_bytes())
    with TiffFile(opened) as tiff:
        assert tiff.directories[0].width == 3000
    assert not opened.closed


def test_libvips_source_seeks_and_reads_to_the_end(images: dict[str, Path]) -> None:
    import pyvips

    data = images["png"].read_bytes()
    source = MemoryFile(data).vips_source()
    image = pyvips.Image.new_from_source(source, "", access="sequential")
    local = pyvips.Image.new_from_file(str(images["png"]), access="sequential")
    assert image.avg() == local.avg()


@pytest.mark.parametrize("read_ahead", [0, 64 * 1024])
def test_file_stream_reads_like_a_file(read_ahead: int, images: dict[str, Path]) -> None:
    data = images["lzw"].read_bytes()
    with LocalFile(str(images["lzw"])) as file:
        stream = FileStream(file, read_ahead=read_ahead)
        assert stream.name == ""  # no path for a library to reopen
        assert stream.read(5) == data[:5] and stream.tell() == 5
        assert stream.seek(-10, 2) == len(data) - 10
        assert stream.read() == data[-10:] and stream.read(3) == b""
        stream.seek(7)
        buffer = bytearray(4)
        assert stream.readinto(buffer) == 4 and bytes(buffer) == data[7:11]
        stream.seek(3, 1)
        words = np.zeros(3, dtype=np.uint32)  # a buffer of other items than bytes
        assert stream.readinto(words) == 12 and words.tobytes() == data[14:26]
        stream.seek(len(data) - 6)
        assert stream.readinto(bytearray(10)) == 6  # stops at the end of the file
        assert stream.read(SMALL_READ + 1) == b""
        with pytest.raises(OSError):
            stream.seek(-1)
        with pytest.raises(ValueError):
            stream.seek(0, 3)
        stream.close()
        assert file.read(0, 4) == data[:4]  # the stream's close leaves the file open


def test_file_stream_read_ahead_serves_small_reads_from_one_block() -> None:
    data = bytes(range(256)) * 1024  # 256 KiB
    plain, ahead = MemoryFile(data), MemoryFile(data)
    streams = FileStream(plain), FileStream(ahead, read_ahead=64 * 1024)
    for stream in streams:
        pieces = [stream.read(16) for _ in range(1000)]  # a header parsed bit by bit
        assert b"".join(pieces) == data[:16000]
        stream.seek(100_000)
        assert stream.read(SMALL_READ + 1) == data[100_000 : 100_000 + SMALL_READ + 1]
        stream.seek(10)  # back inside the block
        assert stream.read(8) == data[10:18]
        stream.seek(70_000)  # past it: a new block
        assert stream.read(8) == data[70_000:70_008]
    assert plain.reads == 1003
    assert ahead.reads == 3  # a block, the large read straight through, a block
