"""The reader interface every image source implements, and its level geometry.

Levels follow large_image: level ``levels - 1`` is full resolution, each lower level
halves it, level 0 fits in one tile. A level is *native* when the file stores it (a
read costs one tile of I/O); any other level is synthesized by workers/synthesis.py.

Every tile a source hands out is a full ``tile_width`` x ``tile_height`` tile with
its content at the top left; what lies beyond the level's content area is the file's
own padding for natively read JPEG tiles and zeros for everything else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from tilecast.common.errors import BadRequest, NotFound, TileOutOfRange
from tilecast.common.grid import Grid
from tilecast.workers.rawtile import RawTile
from tilecast.workers.sources.frameinfo import frame_metadata


class ImageSource(ABC):
    """An opened image file. Subclasses fill the geometry in ``__init__``."""

    path: str
    size_x: int
    size_y: int
    tile_width: int
    tile_height: int
    levels: int
    dtype: np.dtype
    band_count: int
    frame_count: int = 1
    # Per frame, the axis indices and values large_image reports (``IndexC``, ...); None
    # for plain numbered frames. ``channel_names`` when the file names its channels.
    frame_info: list[dict[str, Any]] | None = None
    channel_names: list[str] | None = None
    # large_image's OME source lists ``frames`` even for a single plane.
    frames_always_listed: bool = False
    magnification: float | None = None
    mm_x: float | None = None
    mm_y: float | None = None
    # What lies beyond the content in the file's edge tiles, as large_image composites
    # them when it synthesizes a level: black (libvips pads JPEG tiles with zeros), or
    # a continuation of the edge (libvips' LZW / deflate / uncompressed tiles, and the
    # best guess for decoded formats). workers/synthesis.py imitates it.
    black_padding: bool = False

    # -- metadata -------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, Any]:
        """large_image's ``getMetadata()`` fields (JSON-ready)."""
        result: dict[str, Any] = {
            "levels": self.levels,
            "sizeX": self.size_x,
            "sizeY": self.size_y,
            "tileWidth": self.tile_width,
            "tileHeight": self.tile_height,
            "magnification": self.magnification,
            "mm_x": self.mm_x,
            "mm_y": self.mm_y,
            "dtype": str(self.dtype),
            "bandCount": self.band_count,
        }
        if self.frame_count > 1 or self.frames_always_listed:
            info = self.frame_info or [{} for _ in range(self.frame_count)]
            result.update(frame_metadata(info, self.channel_names))
        return result

    # -- geometry -------------------------------------------------------------------
    @property
    def grid(self) -> Grid:
        """The tile grid: which tiles each level has (common/grid.py)."""
        return Grid(self.size_x, self.size_y, self.tile_width, self.tile_height, self.levels)

    def level_size(self, z: int, frame: int = 0) -> tuple[int, int]:
        """The content size of level ``z``: the stored size of a native level, else
        half (rounded up) of the next higher-resolution level. (A file may store a
        level rounded otherwise than the grid's, and the levels under it follow it.)"""
        native = self.native_level_size(z, frame)
        if native is not None:
            return native
        if z >= self.levels - 1:
            return self.size_x, self.size_y
        width, height = self.level_size(z + 1, frame)
        return (width + 1) // 2, (height + 1) // 2

    def tile_content(self, z: int, x: int, y: int, frame: int = 0) -> tuple[int, int]:
        """Width and height of the content of tile (z, x, y); the rest is padding."""
        return self.grid.tile_size(z, x, y, self.level_size(z, frame))

    def check_tile(self, z: int, x: int, y: int, frame: int = 0) -> None:
        """Raise BadRequest for a frame the image lacks, TileOutOfRange unless (z, x, y)
        names a tile of this image."""
        self.check_frame(frame)
        if not 0 <= z < self.levels:
            raise TileOutOfRange(f"z={z} is outside 0 to {self.levels - 1}", parameter="z")
        across, down = self.grid.tiles_at(z)
        if not 0 <= x < across:
            raise TileOutOfRange(f"x={x} is outside 0 to {across - 1} at z={z}", parameter="x")
        if not 0 <= y < down:
            raise TileOutOfRange(f"y={y} is outside 0 to {down - 1} at z={z}", parameter="y")

    def check_frame(self, frame: int) -> None:
        """A frame the image lacks is a bad parameter (400), not a missing tile."""
        if not 0 <= frame < self.frame_count:
            raise BadRequest(
                f"frame {frame} does not exist (0 to {self.frame_count - 1})", parameter="frame"
            )

    def empty_tile(self) -> np.ndarray:
        return np.zeros((self.tile_height, self.tile_width, self.band_count), dtype=self.dtype)

    def pad_tile(self, pixels: np.ndarray) -> np.ndarray:
        """A full-size tile with ``pixels`` at the top left and zeros elsewhere."""
        if pixels.ndim == 2:
            pixels = pixels[:, :, np.newaxis]
        if pixels.shape[0] == self.tile_height and pixels.shape[1] == self.tile_width:
            return pixels
        tile = np.zeros((self.tile_height, self.tile_width, pixels.shape[2]), dtype=pixels.dtype)
        h = min(self.tile_height, pixels.shape[0])
        w = min(self.tile_width, pixels.shape[1])
        tile[:h, :w] = pixels[:h, :w]
        return tile

    # -- what each reader provides ----------------------------------------------------
    @abstractmethod
    def native_level_size(self, z: int, frame: int = 0) -> tuple[int, int] | None:
        """The stored size of level ``z``, or None when the file lacks that level."""

    def is_native_level(self, z: int, frame: int = 0) -> bool:
        return self.native_level_size(z, frame) is not None

    @abstractmethod
    def read_tile(self, z: int, x: int, y: int, frame: int = 0) -> RawTile:
        """Read tile (z, x, y) of a native level. Raises UnsupportedImage when the
        file's data for that tile is corrupt."""

    @contextmanager
    def bulk_read(
        self, z: int, coords: Sequence[tuple[int, int]], frame: int = 0
    ) -> Iterator[None]:
        """A hint, around a block of reads: tiles ``coords`` of native level ``z`` are
        about to be read one after another (a pre-rendering batch). A reader that
        decodes an area of several tiles for about the price of one (JPEG 2000) may
        decode them together at the first read and hand each its part
        (workers/sources/bulkareas.py); the pixels are those ``read_tile`` returns
        alone. By default nothing changes."""
        yield

    # -- associated images (label, macro, thumbnail): none unless a reader has them --------
    def associated_names(self) -> list[str]:
        """The names of the file's associated images, sorted (large_image's
        ``getAssociatedImagesList``)."""
        return []

    def associated_image(self, name: str) -> np.ndarray:
        """The (height, width, bands) pixels of associated image ``name``; NotFound when
        the file has none of that name."""
        raise NotFound(f"the image has no associated image {name!r}", parameter="name")

    @property
    @abstractmethod
    def estimated_bytes(self) -> int:
        """Memory this open source holds (for the source cache's byte bound)."""

    @abstractmethod
    def close(self) -> None:
        """Release file handles and decoded data. Idempotent."""

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
