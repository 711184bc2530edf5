"""A reader for TOYRGB, a made-up format, plugged into tilecast by an entry point.

A TOYRGB file is a text header and raw pixels::

    TOYRGB1\\n
    <width> <height>\\n
    <width * height * 3 bytes: 8-bit RGB, row by row, top row first>

Only the full-resolution level is stored; tilecast synthesizes the others. Everything
the header claims is checked before a pixel is read: a hostile header costs nothing.
"""

from __future__ import annotations

import numpy as np

from tilecast.workers.sources.reader import (
    ImageFile,
    Probe,
    RawTile,
    Reader,
    Settings,
    UnsupportedImage,
    level_count,
)

MAGIC = b"TOYRGB1\n"
TILE = 256
MAX_SIDE = 1 << 20  # a header claiming more is refused before any arithmetic on it


class ToyReader(Reader):
    name = "toy"
    priority = 500  # between tilecast's TIFF reader (200) and libvips (1000)

    @classmethod
    def can_read(cls, probe: Probe) -> bool:
        return probe.startswith(MAGIC)

    def __init__(self, file: ImageFile, settings: Settings) -> None:
        self.file = file
        self.path = file.name
        lines = file.read(0, 64).split(b"\n", 2)
        try:
            width, height = (int(value) for value in lines[1].split())
        except (IndexError, ValueError):
            raise UnsupportedImage("TOYRGB: the header has no '<width> <height>' line") from None
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise UnsupportedImage(f"TOYRGB: a size of {width} x {height} is not an image")
        if width * height > settings.max_decode_pixels:
            raise UnsupportedImage("TOYRGB: the image has more pixels than this server decodes")
        self._start = len(lines[0]) + len(lines[1]) + 2
        if file.size != self._start + width * height * 3:
            raise UnsupportedImage("TOYRGB: the file's size does not match its header")
        self.size_x, self.size_y = width, height
        self.tile_width = self.tile_height = TILE
        self.levels = level_count(width, height, TILE, TILE)
        self.dtype = np.dtype(np.uint8)
        self.band_count = 3

    def native_level_size(self, z: int, frame: int = 0) -> tuple[int, int] | None:
        # Only full resolution is stored; tilecast synthesizes the other levels.
        if z == self.levels - 1 and frame == 0:
            return self.size_x, self.size_y
        return None

    def read_tile(self, z: int, x: int, y: int, frame: int = 0) -> RawTile:
        if self.native_level_size(z, frame) is None:
            raise ValueError(f"level {z} of frame {frame} is not stored in the file")
        x0, y0 = x * TILE, y * TILE
        w, h = min(TILE, self.size_x - x0), min(TILE, self.size_y - y0)
        if w <= 0 or h <= 0:
            return RawTile.from_pixels(self.empty_tile())
        rows = [
            self.file.read(self._start + ((y0 + row) * self.size_x + x0) * 3, w * 3)
            for row in range(h)
        ]
        data = b"".join(rows)
        if len(data) != w * h * 3:  # the file was cut short since it was opened
            raise UnsupportedImage(f"TOYRGB: tile z={z} x={x} y={y} is cut short")
        pixels = np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3)
        return RawTile.from_pixels(self.pad_tile(pixels))

    @property
    def estimated_bytes(self) -> int:
        return 4096  # nothing is held between reads

    def close(self) -> None:
        self.file.close()


def write_toy(path: str, pixels: np.ndarray) -> None:
    """Write (height, width, 3) uint8 ``pixels`` as a TOYRGB file."""
    height, width = pixels.shape[:2]
    with open(path, "wb") as out:
        out.write(MAGIC + f"{width} {height}\n".encode())
        out.write(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
