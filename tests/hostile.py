"""A corpus of hostile image files, written byte by byte (issue 8).

Each file is what a careless or malicious uploader could leave under a source root: a
TIFF cut short, tile offsets pointing anywhere, absurd dimensions and tile sizes, bogus
JPEG tables, a directory chain that loops, a BigTIFF with an impossible entry count, PNG
and JPEG headers declaring gigapixels (decompression bombs). ``make_hostile_files``
writes them; ``HOSTILE`` says what tilecast must answer for each.

The TIFFs are built here rather than by libvips, which would refuse to write them:
classic little-endian TIFF, one tiled JPEG directory (tiles from libvips' own JPEG
encoder), its values after the directory and the tile data last.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyvips

from tilecast.sample import sample_image

SHORT, LONG, UNDEFINED = 3, 4, 7
IMAGE_WIDTH, IMAGE_LENGTH, BITS_PER_SAMPLE, COMPRESSION = 256, 257, 258, 259
PHOTOMETRIC, SAMPLES_PER_PIXEL, SUB_IFDS = 262, 277, 330
TILE_WIDTH, TILE_LENGTH, TILE_OFFSETS, TILE_BYTE_COUNTS, JPEG_TABLES = 322, 323, 324, 325, 347
COMPRESSION_JPEG, PHOTOMETRIC_YCBCR = 7, 6
TILE = 256
SIZE = 512  # 2 x 2 tiles

TagValue = tuple[int, Sequence[int] | bytes]


@dataclass(frozen=True)
class Hostile:
    """What a hostile file must cause: ``register`` is the status of ``POST /sources``
    (422 unsupported_image, or 400 source_refused for what is not a file at all); a file
    that registers (its directory is sound) must answer ``tile`` for its tiles."""

    register: int
    tile: int | None = None


# name -> expected answers; every name is a file (or directory, FIFO) make_hostile_files writes.
HOSTILE: dict[str, Hostile] = {
    "empty.tiff": Hostile(422),
    "header-only.tiff": Hostile(422),
    "cut-in-ifd.tiff": Hostile(422),
    "cut-in-tile-data.tiff": Hostile(201, tile=422),
    "offsets-past-eof.tiff": Hostile(201, tile=422),
    "offsets-into-header.tiff": Hostile(201, tile=422),
    "counts-past-eof.tiff": Hostile(201, tile=422),
    "dims-1e6.tiff": Hostile(422),
    "dims-2e32.tiff": Hostile(422),
    "tile-width-0.tiff": Hostile(422),
    "tile-huge.tiff": Hostile(422),
    "tile-2e32.tiff": Hostile(422),
    "offsets-missing.tiff": Hostile(422),
    "jpegtables-garbage.tiff": Hostile(201, tile=422),
    "jpegtables-wrapped-garbage.tiff": Hostile(201, tile=422),
    "tile-garbage.tiff": Hostile(201, tile=422),
    "ifd-loop.tiff": Hostile(422),
    "subifd-loop.tiff": Hostile(422),
    "tag-count-huge.tiff": Hostile(422),
    "bigtiff-entries-2e63.tiff": Hostile(422),
    "bigtiff-entries-4000.tiff": Hostile(422),
    "bigtiff-first-ifd-past-eof.tiff": Hostile(422),
    "png-1e6.png": Hostile(422),
    "png-bomb-40000.png": Hostile(422),
    "jpeg-65000.jpg": Hostile(422),
    "garbage.bin": Hostile(422),
    "a-directory.tiff": Hostile(400),
    "a-fifo.tiff": Hostile(400),
}
# Built as the hostile TIFFs are, without a defect: it must serve its tiles.
CONTROL = "control.tiff"
# Zero TileByteCounts mark absent tiles of a sparse file (libtiff, GDAL, large_image):
# served blank, as large_image serves them, never an error.
SPARSE = "zero-byte-counts.tiff"


def make_hostile_files(root: Path) -> dict[str, Path]:
    """Write every file of ``HOSTILE`` (and ``CONTROL``, ``SPARSE``) into ``root``: name -> path."""
    root.mkdir(parents=True, exist_ok=True)
    tiles = _jpeg_tiles()
    good = tiled_tiff(tiles)
    writers: dict[str, Callable[[], bytes]] = {
        "empty.tiff": lambda: b"",
        "header-only.tiff": lambda: b"II*\x00" + struct.pack("<I", 8),
        "cut-in-ifd.tiff": lambda: good[: 8 + 2 + 12 * 4],
        "cut-in-tile-data.tiff": lambda: good[: len(good) - len(tiles[-1]) // 2],
        "offsets-past-eof.tiff": lambda: tiled_tiff(tiles, {TILE_OFFSETS: (LONG, [10**9] * 4)}),
        "offsets-into-header.tiff": lambda: tiled_tiff(tiles, {TILE_OFFSETS: (LONG, [0] * 4)}),
        "counts-past-eof.tiff": lambda: tiled_tiff(tiles, {TILE_BYTE_COUNTS: (LONG, [2**31] * 4)}),
        "dims-1e6.tiff": lambda: tiled_tiff(tiles, _size(10**6)),
        "dims-2e32.tiff": lambda: tiled_tiff(tiles, _size(2**32 - 1)),
        "tile-width-0.tiff": lambda: tiled_tiff(tiles, {TILE_WIDTH: (SHORT, [0])}),
        "tile-huge.tiff": lambda: tiled_tiff(
            tiles, {TILE_WIDTH: (LONG, [65536]), TILE_LENGTH: (LONG, [65536])}
        ),
        "tile-2e32.tiff": lambda: tiled_tiff(
            tiles, {TILE_WIDTH: (LONG, [2**32 - 16]), TILE_LENGTH: (LONG, [2**32 - 16])}
        ),
        # 100,000^2 pixels declared, one tile stored.
        "offsets-missing.tiff": lambda: tiled_tiff(tiles[:1], _size(100_000), tile_count=1),
        "jpegtables-garbage.tiff": lambda: tiled_tiff(
            tiles, {JPEG_TABLES: (UNDEFINED, b"\x13\x37" * 300)}
        ),
        "jpegtables-wrapped-garbage.tiff": lambda: tiled_tiff(
            tiles,
            {JPEG_TABLES: (UNDEFINED, b"\xff\xd8" + b"\xff\xdb\x00\x05garbage" * 40 + b"\xff\xd9")},
        ),
        "tile-garbage.tiff": lambda: tiled_tiff([b"\xff\xd8" + b"\x00" * 500 + b"\xff\xd9"] * 4),
        "ifd-loop.tiff": lambda: tiled_tiff(tiles, loop=True),
        "subifd-loop.tiff": lambda: tiled_tiff(tiles, {SUB_IFDS: (LONG, [8])}),
        "tag-count-huge.tiff": lambda: tiled_tiff(
            tiles, {JPEG_TABLES: (UNDEFINED, b"")}, huge=JPEG_TABLES
        ),
        "bigtiff-entries-2e63.tiff": lambda: _bigtiff_directory(2**63),
        "bigtiff-entries-4000.tiff": lambda: _bigtiff_directory(4000),
        "bigtiff-first-ifd-past-eof.tiff": lambda: b"II+\x00" + struct.pack("<HHQ", 8, 0, 2**62),
        "png-1e6.png": lambda: png_header_only(10**6, 10**6),
        "png-bomb-40000.png": lambda: png_header_only(40_000, 40_000),
        "jpeg-65000.jpg": lambda: jpeg_declaring(65_000, 65_000),
        "garbage.bin": lambda: bytes(range(256)) * 64,
        CONTROL: lambda: good,
        SPARSE: lambda: tiled_tiff(tiles, {TILE_BYTE_COUNTS: (LONG, [0] * 4)}),
    }
    paths = {}
    for name, write in writers.items():
        path = root / name
        path.write_bytes(write())
        paths[name] = path
    paths["a-directory.tiff"] = root / "a-directory.tiff"
    paths["a-directory.tiff"].mkdir(exist_ok=True)
    fifo = root / "a-fifo.tiff"
    if not fifo.exists():
        os.mkfifo(fifo)
    paths["a-fifo.tiff"] = fifo
    return paths


# -- TIFF building --------------------------------------------------------------------------


def _jpeg_tiles() -> list[bytes]:
    image = sample_image(SIZE, SIZE)
    return [
        image.crop(x, y, TILE, TILE).jpegsave_buffer(Q=80)
        for y in range(0, SIZE, TILE)
        for x in range(0, SIZE, TILE)
    ]


def _size(pixels: int) -> dict[int, TagValue]:
    return {IMAGE_WIDTH: (LONG, [pixels]), IMAGE_LENGTH: (LONG, [pixels])}


def tiled_tiff(
    tiles: Sequence[bytes],
    overrides: Mapping[int, TagValue] | None = None,
    *,
    tile_count: int | None = None,
    loop: bool = False,
    huge: int | None = None,
) -> bytes:
    """A 512 x 512 tiled JPEG TIFF holding ``tiles``; ``overrides`` replace (or add) tags
    after the tile offsets are known; ``loop``: the directory names itself as the next
    one; ``huge``: that tag's entry claims 2^32 - 1 values."""
    tags: dict[int, TagValue] = {
        IMAGE_WIDTH: (LONG, [SIZE]),
        IMAGE_LENGTH: (LONG, [SIZE]),
        BITS_PER_SAMPLE: (SHORT, [8, 8, 8]),
        COMPRESSION: (SHORT, [COMPRESSION_JPEG]),
        PHOTOMETRIC: (SHORT, [PHOTOMETRIC_YCBCR]),
        SAMPLES_PER_PIXEL: (SHORT, [3]),
        TILE_WIDTH: (SHORT, [TILE]),
        TILE_LENGTH: (SHORT, [TILE]),
        TILE_OFFSETS: (LONG, [0] * (tile_count or len(tiles))),
        TILE_BYTE_COUNTS: (LONG, [len(tile) for tile in tiles]),
    }
    tags.update(overrides or {})
    # The offsets depend on the directory's length, which does not depend on them.
    head = _classic(tags, loop=loop, huge=huge)
    offsets, position = [], len(head)
    for tile in tiles:
        offsets.append(position)
        position += len(tile)
    if TILE_OFFSETS not in (overrides or {}):
        tags[TILE_OFFSETS] = (LONG, offsets)
    return _classic(tags, loop=loop, huge=huge) + b"".join(tiles)


def _classic(tags: Mapping[int, TagValue], *, loop: bool, huge: int | None) -> bytes:
    """Header, one directory at offset 8, then the values that do not fit in an entry."""
    ifd_at = 8
    extra_at = ifd_at + 2 + 12 * len(tags) + 4
    entries, extra = b"", b""
    for tag in sorted(tags):
        type_code, values = tags[tag]
        data = bytes(values) if type_code == UNDEFINED else _pack(type_code, values)
        count = 2**32 - 1 if tag == huge else len(data) // _UNIT[type_code]
        if len(data) <= 4:
            field = data.ljust(4, b"\x00")
        else:
            field = struct.pack("<I", extra_at + len(extra))
            extra += data + b"\x00" * (len(data) % 2)
        entries += struct.pack("<HHI", tag, type_code, count) + field
    next_ifd = ifd_at if loop else 0
    header = b"II*\x00" + struct.pack("<I", ifd_at)
    return header + struct.pack("<H", len(tags)) + entries + struct.pack("<I", next_ifd) + extra


_UNIT = {SHORT: 2, LONG: 4, UNDEFINED: 1}


def _pack(type_code: int, values: Sequence[int] | bytes) -> bytes:
    return struct.pack(f"<{len(values)}{'H' if type_code == SHORT else 'I'}", *values)


def _bigtiff_directory(count: int) -> bytes:
    """A BigTIFF whose only directory claims ``count`` entries and holds none."""
    return b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + struct.pack("<Q", count) + b"\x00" * 64


# -- decompression bombs ------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A PNG declaring ``width`` x ``height`` RGB pixels with a few rows of data: opening
    it costs nothing, decoding it whole would cost width * height * 3 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * min(width, 4096)) * 4)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A real small JPEG whose start-of-frame is rewritten to declare ``width`` x
    ``height`` (at most 65535 each)."""
    data = bytearray(pyvips.Image.black(16, 16, bands=3).jpegsave_buffer(Q=50))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)
