"""A minimal TIFF / BigTIFF directory reader.

libvips decodes pixels, but native JPEG pass-through needs what libvips does not
expose: each directory's tile offsets, byte counts and shared JPEGTables, so that a
tile's own compressed bytes can be spliced into a standalone JPEG without decoding.
This module reads exactly that (plus the tags that decide pyramid levels and
resolution) for both byte orders, classic TIFF and BigTIFF, and SubIFDs.

Every size and offset read from the file is checked against the file's length, so a
corrupt or truncated file raises :class:`TiffFormatError` instead of allocating or
looping without bound.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tilecast.workers.sources.files import ImageFile, LocalFile

# Tags this project reads (TIFF 6.0 numbering).
NEW_SUBFILE_TYPE = 254
IMAGE_WIDTH = 256
IMAGE_LENGTH = 257
BITS_PER_SAMPLE = 258
COMPRESSION = 259
PHOTOMETRIC = 262
IMAGE_DESCRIPTION = 270
STRIP_OFFSETS = 273
ORIENTATION = 274
SAMPLES_PER_PIXEL = 277
ROWS_PER_STRIP = 278
STRIP_BYTE_COUNTS = 279
X_RESOLUTION = 282
Y_RESOLUTION = 283
PLANAR_CONFIG = 284
RESOLUTION_UNIT = 296
PREDICTOR = 317
TILE_WIDTH = 322
TILE_LENGTH = 323
TILE_OFFSETS = 324
TILE_BYTE_COUNTS = 325
SUB_IFDS = 330
EXTRA_SAMPLES = 338
SAMPLE_FORMAT = 339
JPEG_TABLES = 347
ICC_PROFILE = 34675

# Compression codes.
COMPRESSION_NONE = 1
COMPRESSION_LZW = 5
COMPRESSION_OJPEG = 6
COMPRESSION_JPEG = 7
COMPRESSION_ADOBE_DEFLATE = 8
COMPRESSION_DEFLATE = 32946
COMPRESSION_ZSTD = 50000
COMPRESSION_WEBP = 50001

PHOTOMETRIC_MINISBLACK = 1
PHOTOMETRIC_RGB = 2
PHOTOMETRIC_YCBCR = 6

# Bounds that keep a hostile file from costing unbounded time or memory.
MAX_DIRECTORIES = 4096
MAX_ENTRIES_PER_DIRECTORY = 4096
MAX_SUBIFDS = 64
# A directory's entries and the arrays they point at (tile offsets and byte counts:
# 12-16 bytes per tile) usually follow one another; a remote file fetches this much
# from a directory's start at once, so that they cost one request, not two or three.
DIRECTORY_READAHEAD = 512 * 1024

# type code -> (numpy base type, bytes per value); RATIONALs are pairs of 4-byte ints.
_TYPES: dict[int, tuple[str, int]] = {
    1: ("u1", 1),  # BYTE
    2: ("S", 1),  # ASCII
    3: ("u2", 2),  # SHORT
    4: ("u4", 4),  # LONG
    5: ("u4", 8),  # RATIONAL
    6: ("i1", 1),  # SBYTE
    7: ("V", 1),  # UNDEFINED
    8: ("i2", 2),  # SSHORT
    9: ("i4", 4),  # SLONG
    10: ("i4", 8),  # SRATIONAL
    11: ("f4", 4),  # FLOAT
    12: ("f8", 8),  # DOUBLE
    13: ("u4", 4),  # IFD
    16: ("u8", 8),  # LONG8
    17: ("i8", 8),  # SLONG8
    18: ("u8", 8),  # IFD8
}


class TiffFormatError(ValueError):
    """The file is not a TIFF, or its structure is corrupt or truncated."""


@dataclass
class TiffDirectory:
    """One image file directory: its tags, decoded to Python values.

    Numeric tags are numpy arrays (so a million tile offsets cost one allocation),
    ASCII tags are ``bytes`` without the trailing NUL, UNDEFINED tags are ``bytes``.
    """

    index: int  # position of the (parent) directory in the main IFD chain
    subifd: int | None  # 0-based index among the parent's SubIFDs, None in the main chain
    offset: int
    tags: dict[int, Any]
    subifds: list[TiffDirectory] = field(default_factory=list)

    def scalar(self, tag: int, default: Any = None) -> Any:
        value = self.tags.get(tag)
        if value is None:
            return default
        if isinstance(value, np.ndarray):
            return value.flat[0].item() if value.size else default
        return value

    @property
    def width(self) -> int:
        return int(self.scalar(IMAGE_WIDTH, 0))

    @property
    def height(self) -> int:
        return int(self.scalar(IMAGE_LENGTH, 0))

    @property
    def is_tiled(self) -> bool:
        return TILE_WIDTH in self.tags and TILE_OFFSETS in self.tags

    @property
    def tile_width(self) -> int | None:
        value = self.scalar(TILE_WIDTH)
        return None if value is None else int(value)

    @property
    def tile_height(self) -> int | None:
        value = self.scalar(TILE_LENGTH)
        return None if value is None else int(value)

    @property
    def rows_per_strip(self) -> int:
        value = self.scalar(ROWS_PER_STRIP)
        return self.height if value is None else max(1, min(int(value), self.height or 1))

    @property
    def compression(self) -> int:
        return int(self.scalar(COMPRESSION, COMPRESSION_NONE))

    @property
    def photometric(self) -> int | None:
        value = self.scalar(PHOTOMETRIC)
        return None if value is None else int(value)

    @property
    def samples_per_pixel(self) -> int:
        return int(self.scalar(SAMPLES_PER_PIXEL, 1))

    @property
    def bits_per_sample(self) -> int:
        return int(self.scalar(BITS_PER_SAMPLE, 1))

    @property
    def sample_format(self) -> int | None:
        value = self.scalar(SAMPLE_FORMAT)
        return None if value is None else int(value)

    @property
    def planar_config(self) -> int:
        return int(self.scalar(PLANAR_CONFIG, 1))

    @property
    def orientation(self) -> int | None:
        value = self.scalar(ORIENTATION)
        return None if value is None else int(value)

    @property
    def predictor(self) -> int:
        return int(self.scalar(PREDICTOR, 1))

    @property
    def jpeg_tables(self) -> bytes | None:
        value = self.tags.get(JPEG_TABLES)
        return bytes(value) if value is not None else None

    @property
    def image_description(self) -> bytes | None:
        value = self.tags.get(IMAGE_DESCRIPTION)
        return bytes(value) if value is not None else None

    @property
    def tile_offsets(self) -> np.ndarray:
        return self._array(TILE_OFFSETS)

    @property
    def tile_byte_counts(self) -> np.ndarray:
        return self._array(TILE_BYTE_COUNTS)

    @property
    def strip_offsets(self) -> np.ndarray:
        return self._array(STRIP_OFFSETS)

    @property
    def strip_byte_counts(self) -> np.ndarray:
        return self._array(STRIP_BYTE_COUNTS)

    def resolution(self) -> tuple[float | None, float | None, int | None]:
        """(x resolution, y resolution, unit) with rationals as float32, the way
        libtiff hands them to large_image (so mm_x comes out bit-identical)."""
        unit = self.scalar(RESOLUTION_UNIT)
        return (
            _float32(self.tags.get(X_RESOLUTION)),
            _float32(self.tags.get(Y_RESOLUTION)),
            None if unit is None else int(unit),
        )

    def _array(self, tag: int) -> np.ndarray:
        value = self.tags.get(tag)
        if value is None:
            return np.zeros(0, dtype=np.uint64)
        return np.asarray(value).astype(np.uint64, copy=False).ravel()


def _float32(value: Any) -> float | None:
    if value is None:
        return None
    number = float(np.asarray(value).ravel()[0]) if np.size(value) else None
    if number is None:
        return None
    return float(np.float32(number))


class TiffFile:
    """An open TIFF file: its directory tree plus positioned reads of its bytes.

    Reads are positioned (``ImageFile.read``), so no shared file position has to be
    guarded and a source object can serve tiles in any order. Given a path, the
    TiffFile opens (and closes) the file itself; given an ImageFile, its owner closes it.
    """

    def __init__(self, file: ImageFile | str) -> None:
        self._owns_file = isinstance(file, str)
        self.file = LocalFile(file) if isinstance(file, str) else file
        self.path = self.file.name
        self.size = self.file.size
        self._open = True
        try:
            self._parse_header()
            self.directories = self._parse_chain()
        except Exception:
            self.close()
            raise

    # -- reading ------------------------------------------------------------------
    def read(self, offset: int, count: int) -> bytes:
        if not self._open:
            raise TiffFormatError("file is closed")
        if offset < 0 or count < 0 or offset + count > self.size:
            raise TiffFormatError(
                f"read of {count} bytes at {offset} runs past the end of the file ({self.size})"
            )
        data = self.file.read(offset, count)
        if len(data) != count:
            raise TiffFormatError("short read: the file is truncated")
        return data

    def close(self) -> None:
        if self._open and self._owns_file:
            self.file.close()
        self._open = False

    def __enter__(self) -> TiffFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- parsing ------------------------------------------------------------------
    def _parse_header(self) -> None:
        head = self.read(0, min(16, self.size)) if self.size >= 8 else b""
        if len(head) < 8 or head[:2] not in (b"II", b"MM"):
            raise TiffFormatError("not a TIFF file")
        self.byteorder = "<" if head[:2] == b"II" else ">"
        (magic,) = struct.unpack(self.byteorder + "H", head[2:4])
        if magic == 42:
            self.bigtiff = False
            (self.first_offset,) = struct.unpack(self.byteorder + "I", head[4:8])
        elif magic == 43:
            if len(head) < 16:
                raise TiffFormatError("truncated BigTIFF header")
            self.bigtiff = True
            bytesize, _zero, first = struct.unpack(self.byteorder + "HHQ", head[4:16])
            if bytesize != 8:
                raise TiffFormatError("unsupported BigTIFF offset size")
            self.first_offset = first
        else:
            raise TiffFormatError("not a TIFF file (bad magic number)")

    def _parse_chain(self) -> list[TiffDirectory]:
        directories: list[TiffDirectory] = []
        seen: set[int] = set()
        offset = self.first_offset
        while offset:
            if offset in seen:
                raise TiffFormatError("the directory chain loops")
            if len(directories) >= MAX_DIRECTORIES:
                raise TiffFormatError("too many directories")
            seen.add(offset)
            tags, next_offset = self._parse_directory(offset)
            directory = TiffDirectory(len(directories), None, offset, tags)
            directory.subifds = self._parse_subifds(directory, seen)
            directories.append(directory)
            offset = next_offset
        if not directories:
            raise TiffFormatError("the file has no image directory")
        return directories

    def _parse_subifds(self, parent: TiffDirectory, seen: set[int]) -> list[TiffDirectory]:
        raw = parent.tags.get(SUB_IFDS)
        if raw is None:
            return []
        offsets = np.asarray(raw).ravel()[:MAX_SUBIFDS]
        result = []
        for number, sub_offset in enumerate(int(v) for v in offsets):
            if sub_offset in seen or not sub_offset:
                raise TiffFormatError("a SubIFD points at another directory")
            seen.add(sub_offset)
            # large_image uses only the first directory of each SubIFD chain.
            tags, _next = self._parse_directory(sub_offset)
            result.append(TiffDirectory(parent.index, number, sub_offset, tags))
        return result

    def _parse_directory(self, offset: int) -> tuple[dict[int, Any], int]:
        bo = self.byteorder
        self.file.prefetch(offset, min(DIRECTORY_READAHEAD, self.size - offset))
        if self.bigtiff:
            (count,) = struct.unpack(bo + "Q", self.read(offset, 8))
            entry_size, head_size, next_fmt, inline = 20, 8, "Q", 8
        else:
            (count,) = struct.unpack(bo + "H", self.read(offset, 2))
            entry_size, head_size, next_fmt, inline = 12, 2, "I", 4
        if count > MAX_ENTRIES_PER_DIRECTORY:
            raise TiffFormatError("a directory has too many entries")
        table = self.read(offset + head_size, count * entry_size)
        next_size = struct.calcsize(next_fmt)
        (next_offset,) = struct.unpack(
            bo + next_fmt, self.read(offset + head_size + count * entry_size, next_size)
        )
        entry_fmt = bo + ("HHQ" if self.bigtiff else "HHI")
        tags: dict[int, Any] = {}
        for i in range(count):
            entry = table[i * entry_size : (i + 1) * entry_size]
            tag, type_code, n = struct.unpack(entry_fmt, entry[: 4 + (8 if self.bigtiff else 4)])
            value_field = entry[4 + (8 if self.bigtiff else 4) :]
            if type_code not in _TYPES:
                continue  # unknown types are skipped, as libtiff does
            base, unit = _TYPES[type_code]
            nbytes = n * unit
            if nbytes > self.size:
                raise TiffFormatError(f"tag {tag} claims more data than the file holds")
            if nbytes <= inline:
                data = value_field[:nbytes]
            else:
                (value_offset,) = struct.unpack(bo + ("Q" if self.bigtiff else "I"), value_field)
                self.file.prefetch(value_offset, nbytes)  # part of the directory, too
                data = self.read(value_offset, nbytes)
            tags[tag] = self._decode_value(type_code, base, data, n)
        return tags, next_offset

    def _decode_value(self, type_code: int, base: str, data: bytes, n: int) -> Any:
        if type_code == 2:  # ASCII: one NUL-terminated string (or several; keep the bytes)
            return data.rstrip(b"\x00")
        if type_code == 7:
            return bytes(data)
        dtype = np.dtype(self.byteorder + base)
        if type_code in (5, 10):  # (SRATIONAL): numerator / denominator pairs
            pairs = np.frombuffer(data, dtype=dtype, count=2 * n).astype(np.float64).reshape(n, 2)
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.where(pairs[:, 1] != 0, pairs[:, 0] / pairs[:, 1], 0.0)
        return np.frombuffer(data, dtype=dtype, count=n).astype(dtype.newbyteorder("="))
