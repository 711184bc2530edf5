"""Any single image libvips opens (JPEG, PNG, WebP, large striped TIFFs, ...).

Only the full-resolution level is native; every other level is synthesized. Formats
without random access (JPEG, PNG, WebP) are decoded whole by libvips on the first
read and kept in this object, so the pixel count is bounded by
``Settings.max_decode_pixels`` before anything is decoded.
"""

from __future__ import annotations

import logging

import numpy as np
import pyvips

from common.errors import UnsupportedImage
from common.settings import Settings
from workers.rawtile import RawTile
from workers.sources.base import ImageSource, level_count
from workers.sources.files import ImageFile
from workers.vipsutil import to_numpy, vips_dtype

log = logging.getLogger(__name__)

TILE_SIZE = 256
# Loaders that can fetch a region without decoding everything before it.
RANDOM_ACCESS_LOADERS = ("tiffload", "vipsload", "ppmload", "fitsload")


class VipsImageSource(ImageSource):
    def __init__(self, file: ImageFile, settings: Settings) -> None:
        """Reads ``file``, which the source closes when it is closed (and its opener
        closes when this raises)."""
        self.file = file
        self.path = file.name
        try:
            image = file.load_image(access="random", fail_on="error")
            loader = str(image.get("vips-loader")) if image.get_typeof("vips-loader") else ""
            # An EXIF / TIFF orientation is applied, as viewers expect.
            if image.get_typeof("orientation") and image.get("orientation") not in (0, 1):
                image = image.autorot()
        except pyvips.Error as exc:
            file.raise_read_error()
            # libvips messages name the file; clients must not see internal paths.
            log.info("libvips cannot open %s: %s", self.path, exc)
            raise UnsupportedImage("no reader opens this file as an image") from None
        if image.width * image.height > settings.max_decode_pixels:
            raise UnsupportedImage(
                f"the image has {image.width * image.height} pixels, more than the "
                f"{settings.max_decode_pixels} this server decodes"
            )
        try:
            self.dtype = vips_dtype(image)
        except ValueError:
            raise UnsupportedImage(f"unsupported pixel format {image.format}") from None
        whole = image.width * image.height * image.bands * np.dtype(self.dtype).itemsize
        if not loader.startswith(RANDOM_ACCESS_LOADERS) and whole > settings.source_cache_bytes:
            # Decoded whole on the first read: a few kilobytes of PNG or JPEG may declare
            # gigabytes (a decompression bomb), which the source cache could not hold.
            raise UnsupportedImage(
                f"the image must be decoded whole and would take {whole} bytes, more than "
                f"the {settings.source_cache_bytes} of a worker's source cache"
            )
        if image.interpretation in ("cmyk", "labs", "lab") and image.format == "uchar":
            image = image.colourspace("srgb")
        self._image = image
        self._loader = loader
        self.size_x, self.size_y = image.width, image.height
        self.tile_width = self.tile_height = TILE_SIZE
        self.levels = level_count(self.size_x, self.size_y, TILE_SIZE, TILE_SIZE)
        self.band_count = image.bands

    def native_level_size(self, z: int, frame: int = 0) -> tuple[int, int] | None:
        if z == self.levels - 1 and frame == 0:
            return self.size_x, self.size_y
        return None

    def read_tile(self, z: int, x: int, y: int, frame: int = 0) -> RawTile:
        if z != self.levels - 1 or frame != 0:
            raise ValueError(f"level {z} of frame {frame} is not stored in the file")
        x0, y0 = x * self.tile_width, y * self.tile_height
        w = min(self.tile_width, self.size_x - x0)
        h = min(self.tile_height, self.size_y - y0)
        if w <= 0 or h <= 0:
            return RawTile.from_pixels(self.empty_tile())
        try:
            pixels = to_numpy(self._image.crop(x0, y0, w, h))
        except pyvips.Error as exc:
            self.file.raise_read_error()
            log.warning("cannot read z=%d x=%d y=%d of %s: %s", z, x, y, self.path, exc)
            raise UnsupportedImage(
                f"tile z={z} x={x} y={y} cannot be read: the file is corrupt"
            ) from None
        return RawTile.from_pixels(self.pad_tile(pixels))

    @property
    def estimated_bytes(self) -> int:
        whole = self.size_x * self.size_y * self.band_count * np.dtype(self.dtype).itemsize
        if self._loader.startswith(RANDOM_ACCESS_LOADERS):
            # Random-access loaders keep only the tiles or strips recently read.
            return 64 * 1024 + min(whole, 16 * 1024 * 1024)
        return 64 * 1024 + whole

    def close(self) -> None:
        self._image = None  # type: ignore[assignment]
        self.file.close()
