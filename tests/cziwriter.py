"""CZI files for the tests, written with Zeiss's own writer (``pylibCZIrw``, libCZI).

libCZI's writer stores full-resolution subblocks only. A scanner's pyramid is subblocks
whose stored size is smaller than the area they cover; :func:`write_czi` makes them by
writing the reduced pixels as ordinary subblocks, then rewriting those subblocks'
directory entries (in the subblock segment and in the directory segment, as the CZI
specification lays them out) to cover the full-resolution area.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pylibCZIrw import czi as pyczi

SEGMENT_HEADER = 32  # id (16 bytes), allocated size, used size
DIRECTORY_POSITION = SEGMENT_HEADER + 4 * 4 + 16 + 16 + 4  # in the file header segment
ENTRY_HEAD = struct.Struct("<2siqiiB5si")  # DirectoryEntryDV up to its dimension entries
DIMENSION = struct.Struct("<4siifi")  # dimension, start, size, start coordinate, stored size


@dataclass
class Scene:
    x: int
    y: int
    width: int
    height: int
    # Per plane (c, z, t): the full-resolution pixels, (height, width[, 3]).
    planes: dict[tuple[int, int, int], np.ndarray] = field(default_factory=dict)


def reduce2(pixels: np.ndarray) -> np.ndarray:
    """The 2 x 2 mean (rounded), as a scanner's pyramid layer would hold."""
    h, w = pixels.shape[0] // 2, pixels.shape[1] // 2
    blocks = pixels[: h * 2, : w * 2].astype(np.float64)
    blocks = blocks.reshape(h, 2, w, 2, *pixels.shape[2:]).mean(axis=(1, 3))
    return np.round(blocks).astype(pixels.dtype)


def write_czi(
    path: Path,
    scenes: Sequence[Scene],
    *,
    compression: str | None = None,
    channel_names: Sequence[str] = (),
    scale_m: float | None = None,
    pyramid: bool = False,
    subblock: int = 0,
) -> Path:
    """A CZI of ``scenes`` (one scene index each, at its position), written in subblocks
    of ``subblock`` pixels a side (0: one subblock per plane); with ``pyramid``, a 2x
    reduced layer of every plane too. ``compression``: libCZI's option string
    ("zstd1:ExplicitLevel=2", ...)."""
    pyramid_entries: list[tuple[int, int, int]] = []  # (entry number, full w, full h)
    written = 0
    with pyczi.create_czi(str(path), exist_ok=True, compression_options=compression) as czi:
        for number, scene in enumerate(scenes):
            for (c, z, t), pixels in scene.planes.items():
                plane = {"C": c, "Z": z, "T": t}
                for top, left, piece in _pieces(pixels, subblock):
                    czi.write(piece, location=(scene.x + left, scene.y + top), plane=plane,
                              scene=number)  # fmt: skip
                    written += 1
                if pyramid:
                    small = reduce2(pixels)
                    czi.write(np.ascontiguousarray(small), location=(scene.x, scene.y),
                              plane=plane, scene=number)  # fmt: skip
                    pyramid_entries.append((written, small.shape[1] * 2, small.shape[0] * 2))
                    written += 1
        metadata: dict[str, object] = {"document_name": path.stem}
        if channel_names:
            metadata["channel_names"] = dict(enumerate(channel_names))
        if scale_m:
            metadata.update(scale_x=scale_m, scale_y=scale_m, scale_z=scale_m)
        czi.write_metadata(**metadata)
    if pyramid_entries:
        _make_pyramid(path, pyramid_entries)
    return path


def _pieces(pixels: np.ndarray, size: int) -> list[tuple[int, int, np.ndarray]]:
    if size <= 0:
        return [(0, 0, np.ascontiguousarray(pixels))]
    return [
        (top, left, np.ascontiguousarray(pixels[top : top + size, left : left + size]))
        for top in range(0, pixels.shape[0], size)
        for left in range(0, pixels.shape[1], size)
    ]


def _make_pyramid(path: Path, entries: list[tuple[int, int, int]]) -> None:
    """Directory entries ``entries`` (by write order) cover their full-size area."""
    data = bytearray(path.read_bytes())
    (directory,) = struct.unpack_from("<q", data, DIRECTORY_POSITION)
    count = struct.unpack_from("<i", data, directory + SEGMENT_HEADER)[0]
    offset = directory + SEGMENT_HEADER + 128
    located: list[int] = []
    for _ in range(count):
        located.append(offset)
        dims = ENTRY_HEAD.unpack_from(data, offset)[-1]
        offset += ENTRY_HEAD.size + dims * DIMENSION.size
    for number, width, height in entries:
        in_directory = located[number]
        position = ENTRY_HEAD.unpack_from(data, in_directory)[2]
        for where in (in_directory, position + SEGMENT_HEADER + 16):
            _widen(data, where, width, height)
    path.write_bytes(bytes(data))


def _widen(data: bytearray, entry: int, width: int, height: int) -> None:
    head = list(ENTRY_HEAD.unpack_from(data, entry))
    assert head[0] == b"DV", "not a DirectoryEntryDV"
    head[5] = 1  # PyramidType: a single-subblock pyramid layer
    ENTRY_HEAD.pack_into(data, entry, *head)
    for index in range(head[-1]):
        at = entry + ENTRY_HEAD.size + index * DIMENSION.size
        name, start, _size, coordinate, stored = DIMENSION.unpack_from(data, at)
        if name.rstrip(b"\0") == b"X":
            DIMENSION.pack_into(data, at, name, start, width, coordinate, stored)
        elif name.rstrip(b"\0") == b"Y":
            DIMENSION.pack_into(data, at, name, start, height, coordinate, stored)
