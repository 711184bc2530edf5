"""A minimal tiled-TIFF writer for compressions this machine's libvips cannot write.

The bundled libvips writes JPEG, LZW and deflate TIFFs but not ZSTD; tilecast must still
read ZSTD files, so the tests write one here: classic little-endian TIFF, one IFD,
chunky RGB(A)/gray uint8, tiles compressed with the system's libzstd (which Debian's
dpkg itself depends on).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import struct
from pathlib import Path

import pyvips

COMPRESSION_ZSTD = 50000
SHORT, LONG = 3, 4


def zstd_compress(data: bytes, level: int = 3) -> bytes:
    name = ctypes.util.find_library("zstd")
    if name is None:
        raise RuntimeError("libzstd is not installed")
    lib = ctypes.CDLL(name)
    lib.ZSTD_compressBound.restype = ctypes.c_size_t
    lib.ZSTD_compressBound.argtypes = [ctypes.c_size_t]
    lib.ZSTD_compress.restype = ctypes.c_size_t
    lib.ZSTD_compress.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int
    ]  # fmt: skip
    lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
    capacity = lib.ZSTD_compressBound(len(data))
    out = ctypes.create_string_buffer(capacity)
    size = lib.ZSTD_compress(out, capacity, data, len(data), level)
    if lib.ZSTD_isError(size):
        raise RuntimeError("ZSTD_compress failed")
    return out.raw[:size]


def write_zstd_tiff(image: pyvips.Image, path: Path, tile: int = 256) -> Path:
    """``image`` (uint8) as a single-level tiled TIFF with ZSTD-compressed tiles."""
    bands = image.bands
    tiles = []
    for top in range(0, image.height, tile):
        for left in range(0, image.width, tile):
            width = min(tile, image.width - left)
            height = min(tile, image.height - top)
            # Edge tiles are padded to the full tile size, as TIFF requires.
            region = image.crop(left, top, width, height).embed(0, 0, tile, tile)
            tiles.append(zstd_compress(bytes(region.write_to_memory())))
    _write(path, image.width, image.height, bands, tile, tiles)
    return path


def _write(path: Path, width: int, height: int, bands: int, tile: int, tiles: list[bytes]) -> None:
    body = bytearray(b"II*\x00\x00\x00\x00\x00")
    offsets = []
    for data in tiles:
        offsets.append(len(body))
        body += data
        body += b"\x00" * (len(body) % 2)  # word alignment
    extra = bytearray()
    extra_base = len(body)

    def array(kind: int, values: list[int]) -> tuple[int, int, int]:
        fmt = "<H" if kind == SHORT else "<I"
        packed = b"".join(struct.pack(fmt, v) for v in values)
        if len(packed) <= 4:
            return kind, len(values), int.from_bytes(packed.ljust(4, b"\x00"), "little")
        offset = extra_base + len(extra)
        extra.extend(packed)
        return kind, len(values), offset

    entries = {
        256: array(LONG, [width]),
        257: array(LONG, [height]),
        258: array(SHORT, [8] * bands),
        259: array(SHORT, [COMPRESSION_ZSTD]),
        262: array(SHORT, [2 if bands >= 3 else 1]),
        277: array(SHORT, [bands]),
        284: array(SHORT, [1]),
        322: array(LONG, [tile]),
        323: array(LONG, [tile]),
        324: array(LONG, offsets),
        325: array(LONG, [len(t) for t in tiles]),
    }
    if bands in (2, 4):
        entries[338] = array(SHORT, [2])  # unassociated alpha
    ifd_offset = extra_base + len(extra)
    ifd = bytearray(struct.pack("<H", len(entries)))
    for tag in sorted(entries):
        kind, count, value = entries[tag]
        ifd += struct.pack("<HHII", tag, kind, count, value)
    ifd += struct.pack("<I", 0)
    body[4:8] = struct.pack("<I", ifd_offset)
    path.write_bytes(bytes(body + extra + ifd))
