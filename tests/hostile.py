"""A corpus of hostile image files, written byte by byte (issue 8).

Each file is what a careless or malicious uploader could leave under a source root: a
TIFF cut short, tile offsets pointing anywhere, absurd dimensions and tile sizes, bogus
JPEG tables, a directory chain that loops, a BigTIFF with an impossible entry count, PNG
and JPEG headers declaring gigapixels (decompression bombs), and (issue 14) tiles whose
own codec header -- JPEG, PNG, WebP, JPEG 2000 -- declares a size other than the file's
tile size. ``make_hostile_files`` writes them; ``HOSTILE`` says what tilecast must
answer for each.

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
COMPRESSION_JPEG, PHOTOMETRIC_YCBCR, PHOTOMETRIC_RGB = 7, 6, 2
COMPRESSION_JPEG2000, COMPRESSION_APERIO_JP2K, COMPRESSION_PNG = 34712, 33005, 34933
COMPRESSION_WEBP = 50001
HUGE = 30_000  # what a hostile tile header declares (VP8 and VP8L hold 14 bits: 16383)
TILE = 256
SIZE = 512  # 2 x 2 tiles

TagValue = tuple[int, Sequence[int] | bytes]


@dataclass(frozen=True)
class Hostile:
    """What a hostile file must cause: ``register`` is the status of ``POST /sources``
    (422 unsupported_image; 415 unsupported_format for content no reader recognises; 400
    source_refused for what is neither a file nor a directory); a file
    that registers (its directory is sound) must answer ``tile`` for its tiles."""

    register: int
    tile: int | None = None


# name -> expected answers; every name is a file (or directory, FIFO) make_hostile_files writes.
HOSTILE: dict[str, Hostile] = {
    "empty.tiff": Hostile(415),
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
    # Issue 14: tiles whose own codec header disagrees with the TIFF's 256 x 256 tiles.
    "tile-jpeg-sof-30000.tiff": Hostile(201, tile=422),
    "tile-jpeg-tables-sof-30000.tiff": Hostile(201, tile=422),
    "tile-jpeg-sof-128.tiff": Hostile(201, tile=422),
    "tile-png-ihdr-30000.tiff": Hostile(201, tile=422),
    "tile-webp-vp8-16383.tiff": Hostile(201, tile=422),
    "tile-webp-vp8l-16384.tiff": Hostile(201, tile=422),
    "tile-webp-vp8x-30000.tiff": Hostile(201, tile=422),
    "tile-j2k-siz-30000.tiff": Hostile(201, tile=422),
    "tile-jp2-ihdr-30000.tiff": Hostile(201, tile=422),
    "png-1e6.png": Hostile(422),
    # Issue 14: 1.2 GB decoded, within the disk bound, a few rows of data: registers, and
    # its tiles are a 422 once the one shared decode meets the end of the data.
    "png-canvas-20000.png": Hostile(201, tile=422),
    "png-bomb-40000.png": Hostile(422),
    "jpeg-65000.jpg": Hostile(422),
    "garbage.bin": Hostile(415),
    # A directory may be an image (OME-Zarr, a DICOM series); an empty one is none.
    "a-directory.tiff": Hostile(415),
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
        "tile-jpeg-sof-30000.tiff": lambda: tiled_tiff(declaring(tiles, _jpeg_sof, HUGE)),
        "tile-jpeg-tables-sof-30000.tiff": lambda: _abbreviated_tiff(
            declaring(tiles, _jpeg_sof, HUGE)
        ),
        "tile-jpeg-sof-128.tiff": lambda: tiled_tiff(declaring(tiles, _jpeg_sof, 128)),
        "tile-png-ihdr-30000.tiff": lambda: _codec_tiff(_png_tiles(), _png_ihdr, COMPRESSION_PNG),
        "tile-webp-vp8-16383.tiff": lambda: _codec_tiff(
            _webp_tiles(lossless=False), _webp_vp8, COMPRESSION_WEBP, 16383
        ),
        "tile-webp-vp8l-16384.tiff": lambda: _codec_tiff(
            _webp_tiles(lossless=True), _webp_vp8l, COMPRESSION_WEBP, 16384
        ),
        "tile-webp-vp8x-30000.tiff": lambda: _codec_tiff(
            _webp_tiles(lossless=False), _webp_vp8x, COMPRESSION_WEBP
        ),
        "tile-j2k-siz-30000.tiff": lambda: _codec_tiff(
            _jpeg2000_tiles("J2K"), _j2k_siz, COMPRESSION_APERIO_JP2K
        ),
        "tile-jp2-ihdr-30000.tiff": lambda: _codec_tiff(
            _jpeg2000_tiles("JP2"), _jp2_ihdr_and_siz, COMPRESSION_JPEG2000
        ),
        "png-1e6.png": lambda: png_header_only(10**6, 10**6),
        "png-canvas-20000.png": lambda: png_header_only(20_000, 20_000),
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


def _tile_images() -> list[pyvips.Image]:
    image = sample_image(SIZE, SIZE)
    return [
        image.crop(x, y, TILE, TILE) for y in range(0, SIZE, TILE) for x in range(0, SIZE, TILE)
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


# -- tiles whose codec header declares another size (issue 14) -----------------------------

Rewrite = Callable[[bytes, int], bytes]


def declaring(tiles: Sequence[bytes], rewrite: Rewrite, size: int) -> list[bytes]:
    """``tiles`` with their own headers rewritten to declare ``size`` x ``size``; the
    compressed data stays that of a 256 x 256 tile."""
    return [rewrite(tile, size) for tile in tiles]


def _codec_tiff(
    tiles: Sequence[bytes], rewrite: Rewrite, compression: int, size: int = HUGE
) -> bytes:
    overrides = {COMPRESSION: (SHORT, [compression]), PHOTOMETRIC: (SHORT, [PHOTOMETRIC_RGB])}
    return tiled_tiff(declaring(tiles, rewrite, size), overrides)


def _jpeg_sof(data: bytes, size: int) -> bytes:
    out = bytearray(data)
    sof = out.find(b"\xff\xc0")
    out[sof + 5 : sof + 9] = struct.pack(">HH", size, size)
    return bytes(out)


def _abbreviated_tiff(tiles: Sequence[bytes]) -> bytes:
    """Tiles as TIFF JPEG writers store them: the tables once in JPEGTables, each tile an
    abbreviated stream (SOI, its frame and scan, EOI) -- the SOF is in the tile."""
    tables = _jpeg_segments(tiles[0], keep=(0xDB, 0xC4))
    streams = [_jpeg_segments(tile, drop=(0xDB, 0xC4, *range(0xE0, 0xF0))) for tile in tiles]
    return tiled_tiff(streams, {JPEG_TABLES: (UNDEFINED, tables)})


def _jpeg_segments(data: bytes, keep: Sequence[int] = (), drop: Sequence[int] = ()) -> bytes:
    """SOI, the marker segments before the scan that ``keep`` names (or all but ``drop``),
    then -- when not keeping a subset -- the scan to the end; else EOI."""
    out, pos = bytearray(b"\xff\xd8"), 2
    while data[pos + 1] != 0xDA:
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        marker = data[pos + 1]
        if (keep and marker in keep) or (not keep and marker not in drop):
            out += data[pos : pos + 2 + length]
        pos += 2 + length
    return bytes(out + (b"\xff\xd9" if keep else data[pos:]))


def _png_tiles() -> list[bytes]:
    return [tile.pngsave_buffer() for tile in _tile_images()]


def _png_ihdr(data: bytes, size: int) -> bytes:
    out = bytearray(data)
    out[16:24] = struct.pack(">II", size, size)
    out[29:33] = struct.pack(">I", zlib.crc32(out[12:29]))  # a valid chunk, a hostile size
    return bytes(out)


def _webp_tiles(*, lossless: bool) -> list[bytes]:
    return [tile.webpsave_buffer(lossless=lossless, Q=80, keep="none") for tile in _tile_images()]


def _webp_vp8(data: bytes, size: int) -> bytes:
    out = bytearray(data)
    assert out[12:16] == b"VP8 ", "libvips wrote a simple lossy WebP"
    out[26:30] = struct.pack("<HH", size & 0x3FFF, size & 0x3FFF)
    return bytes(out)


def _webp_vp8l(data: bytes, size: int) -> bytes:
    out = bytearray(data)
    assert out[12:16] == b"VP8L", "libvips wrote a simple lossless WebP"
    bits = int.from_bytes(out[21:25], "little") & ~((1 << 28) - 1)
    out[21:25] = (bits | (size - 1) | ((size - 1) << 14)).to_bytes(4, "little")
    return bytes(out)


def _webp_vp8x(data: bytes, size: int) -> bytes:
    """The lossy tile behind an extended-format header whose canvas is ``size``^2: what
    libwebp allocates for."""
    chunk = b"VP8X" + struct.pack("<I", 10) + b"\x00" * 4
    chunk += (size - 1).to_bytes(3, "little") * 2
    body = b"WEBP" + chunk + data[12:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _jpeg2000_tiles(codecformat: str) -> list[bytes]:
    import imagecodecs  # the test extra's JPEG 2000 encoder (libvips here has none)
    import numpy as np

    return [
        imagecodecs.jpeg2k_encode(
            np.ndarray((TILE, TILE, 3), np.uint8, tile.write_to_memory()),
            level=0,
            codecformat=codecformat,
        )
        for tile in _tile_images()
    ]


def _j2k_siz(data: bytes, size: int, at: int = 0) -> bytes:
    """The codestream at ``at`` with its SIZ reference grid set to ``size``^2."""
    out = bytearray(data)
    assert out[at : at + 4] == b"\xff\x4f\xff\x51", "SIZ follows SOC"
    out[at + 8 : at + 16] = struct.pack(">II", size, size)
    return bytes(out)


def _jp2_ihdr_and_siz(data: bytes, size: int) -> bytes:
    """A jp2 file whose image header box and codestream both declare ``size``^2."""
    ihdr = data.find(b"ihdr")
    out = bytearray(data)
    out[ihdr + 4 : ihdr + 12] = struct.pack(">II", size, size)
    return _j2k_siz(bytes(out), size, at=data.find(b"jp2c") + 4)


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
