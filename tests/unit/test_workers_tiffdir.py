"""The TIFF directory parser: byte orders, BigTIFF, SubIFDs, and hostile structure."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from tilecast.common.settings import Settings
from tilecast.workers.sources import open_source, tiffdir
from tilecast.workers.sources.tiffdir import TiffFile, TiffFormatError

TILE = 64


def _tiles(pixels: np.ndarray) -> list[bytes]:
    height, width, _bands = pixels.shape
    out = []
    for top in range(0, height, TILE):
        for left in range(0, width, TILE):
            tile = np.zeros((TILE, TILE, pixels.shape[2]), pixels.dtype)
            part = pixels[top : top + TILE, left : left + TILE]
            tile[: part.shape[0], : part.shape[1]] = part
            out.append(tile.tobytes())
    return out


def write_tiff(
    path: Path, levels: list[np.ndarray], *, byteorder: str, bigtiff: bool, subifd: bool
) -> Path:
    """Uncompressed tiled RGB uint8 levels; lower levels chained or as SubIFDs of the first.
    Values that do not fit inline live after the pixel data, IFDs last."""
    bo = byteorder
    offset_fmt, count_fmt = ("Q", "Q") if bigtiff else ("I", "H")
    body = bytearray(
        (b"II" if bo == "<" else b"MM")
        + (struct.pack(bo + "HHHQ", 43, 8, 0, 0) if bigtiff else struct.pack(bo + "HI", 42, 0))
    )
    header_next = 8 if bigtiff else 4
    inline = 8 if bigtiff else 4
    layouts = []
    for pixels in levels:
        offsets = []
        counts = []
        for data in _tiles(pixels):
            offsets.append(len(body))
            counts.append(len(data))
            body += data
        layouts.append((pixels, offsets, counts))

    def entry(tag: int, kind: int, values: list[int]) -> tuple[int, int, int, bytes]:
        fmt = {3: "H", 4: "I", 5: "II", 16: "Q", 13: "I", 18: "Q"}[kind]
        packed = b"".join(
            struct.pack(bo + fmt, *(v if isinstance(v, tuple) else (v,))) for v in values
        )
        return tag, kind, len(values), packed

    def place(entries: list[tuple[int, int, int, bytes]]) -> int:
        """Write out-of-line values, then the IFD; returns the IFD's offset."""
        fields = []
        for tag, kind, count, packed in sorted(entries):
            if len(packed) <= inline:
                fields.append((tag, kind, count, packed.ljust(inline, b"\0")))
            else:
                where = len(body)
                body.extend(packed)
                body.extend(b"\0" * (len(body) % 2))
                fields.append((tag, kind, count, struct.pack(bo + offset_fmt, where)))
        where = len(body)
        body.extend(struct.pack(bo + count_fmt, len(fields)))
        for tag, kind, count, value in fields:
            body.extend(struct.pack(bo + "HH" + offset_fmt, tag, kind, count) + value)
        body.extend(struct.pack(bo + offset_fmt, 0))
        return where

    long_kind = 16 if bigtiff else 4

    def ifd_entries(pixels: np.ndarray, offsets: list[int], counts: list[int]) -> list:
        height, width, bands = pixels.shape
        return [
            entry(256, 4, [width]),
            entry(257, 4, [height]),
            entry(258, 3, [8] * bands),
            entry(259, 3, [1]),
            entry(262, 3, [2]),
            entry(277, 3, [bands]),
            entry(282, 5, [(50000, 1)]),
            entry(283, 5, [(50000, 1)]),
            entry(296, 3, [3]),
            entry(284, 3, [1]),
            entry(322, 3, [TILE]),
            entry(323, 3, [TILE]),
            entry(324, long_kind, offsets),
            entry(325, long_kind, counts),
        ]

    if subifd:
        sub_offsets = [place(ifd_entries(*layout)) for layout in layouts[1:]]
        first = [*ifd_entries(*layouts[0]), entry(330, 18 if bigtiff else 13, sub_offsets)]
        first_offset = place(first)
    else:
        # Chain: write the last IFD first so each can point at the next.
        next_offset = 0
        for layout in reversed(layouts):
            where = place(ifd_entries(*layout))
            if next_offset:
                next_pos = len(body) - struct.calcsize(offset_fmt)
                body[next_pos:] = struct.pack(bo + offset_fmt, next_offset)
            next_offset = where
        first_offset = next_offset
    body[header_next : header_next + struct.calcsize(offset_fmt)] = struct.pack(
        bo + offset_fmt, first_offset
    )
    path.write_bytes(bytes(body))
    return path


def _levels() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    base = rng.integers(0, 255, (150, 200, 3), dtype=np.uint8)
    return [base, base[::2, ::2].copy(), base[::4, ::4].copy()]


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("bigtiff", [False, True])
@pytest.mark.parametrize("subifd", [False, True])
def test_layouts_parse_and_read(
    tmp_path: Path, byteorder: str, bigtiff: bool, subifd: bool
) -> None:
    levels = _levels()
    path = write_tiff(
        tmp_path / "t.tiff", levels, byteorder=byteorder, bigtiff=bigtiff, subifd=subifd
    )
    with TiffFile(str(path)) as tiff:
        assert tiff.bigtiff is bigtiff
        assert tiff.byteorder == byteorder
        directories = tiff.directories
        if subifd:
            assert len(directories) == 1
            assert [d.width for d in directories[0].subifds] == [100, 50]
            assert [d.subifd for d in directories[0].subifds] == [0, 1]
        else:
            assert [d.width for d in directories] == [200, 100, 50]
        base = directories[0]
        assert (base.width, base.height, base.tile_width, base.tile_height) == (200, 150, 64, 64)
        assert base.compression == tiffdir.COMPRESSION_NONE
        assert base.photometric == tiffdir.PHOTOMETRIC_RGB
        assert len(base.tile_offsets) == len(base.tile_byte_counts) == 12
        assert base.resolution() == (50000.0, 50000.0, 3)
    with open_source(str(path), Settings()) as source:
        assert source.levels == 3
        assert all(source.is_native_level(z) for z in range(3))
        assert source.mm_x == pytest.approx(10 / 50000)
        for z, pixels in zip((2, 1, 0), levels, strict=True):
            tile = source.read_tile(z, 0, 0).array()
            part = pixels[:64, :64]
            assert np.array_equal(tile[: part.shape[0], : part.shape[1]], part)


def test_matches_large_image_on_a_big_endian_subifd_file(tmp_path: Path) -> None:
    large_image = pytest.importorskip("large_image")
    path = write_tiff(tmp_path / "be.tiff", _levels(), byteorder=">", bigtiff=False, subifd=True)
    from tilecast.workers.describe import describe_path

    theirs = large_image.open(str(path)).getMetadata()
    ours = describe_path(str(path), Settings())
    assert {k: ours[k] for k in theirs if k in ours} == {k: theirs[k] for k in ours if k in theirs}


def test_rejects_non_tiff_and_truncation(tmp_path: Path) -> None:
    path = write_tiff(tmp_path / "t.tiff", _levels(), byteorder="<", bigtiff=False, subifd=False)
    data = path.read_bytes()
    for name, content in {
        "empty": b"",
        "magic": b"II\x2b\x01" + data[4:],
        "cut": data[: len(data) - 40],
        "pointer": data[:4] + struct.pack("<I", len(data) + 100) + data[8:],
    }.items():
        bad = tmp_path / f"{name}.tiff"
        bad.write_bytes(content)
        with pytest.raises(TiffFormatError):
            TiffFile(str(bad))


def test_rejects_a_looping_directory_chain(tmp_path: Path) -> None:
    path = write_tiff(
        tmp_path / "t.tiff", _levels()[:1], byteorder="<", bigtiff=False, subifd=False
    )
    data = bytearray(path.read_bytes())
    (first,) = struct.unpack("<I", data[4:8])
    (count,) = struct.unpack("<H", data[first : first + 2])
    next_pos = first + 2 + 12 * count
    data[next_pos : next_pos + 4] = struct.pack("<I", first)  # points back at itself
    path.write_bytes(bytes(data))
    with pytest.raises(TiffFormatError, match="loops"):
        TiffFile(str(path))


def test_rejects_a_tag_claiming_more_than_the_file(tmp_path: Path) -> None:
    path = write_tiff(
        tmp_path / "t.tiff", _levels()[:1], byteorder="<", bigtiff=False, subifd=False
    )
    data = bytearray(path.read_bytes())
    (first,) = struct.unpack("<I", data[4:8])
    # The first entry (ImageWidth) now claims 2**30 LONGs.
    data[first + 2 + 4 : first + 2 + 8] = struct.pack("<I", 2**30)
    path.write_bytes(bytes(data))
    with pytest.raises(TiffFormatError):
        TiffFile(str(path))


def test_a_skipped_level_is_synthesized_from_the_next_stored_one(tmp_path: Path) -> None:
    base, _half, quarter = _levels()
    path = write_tiff(
        tmp_path / "gap.tiff", [base, quarter], byteorder="<", bigtiff=False, subifd=False
    )
    with open_source(str(path), Settings()) as source:
        assert [source.is_native_level(z) for z in range(3)] == [True, False, True]
        assert source.level_size(1) == (100, 75)
        assert np.array_equal(source.read_tile(0, 0, 0).array()[:38, :50], quarter)
