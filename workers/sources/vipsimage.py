"""Any single image libvips opens (JPEG, PNG, WebP, large striped TIFFs, ...).

Only the full-resolution level is native; every other level is synthesized. Formats
without random access (JPEG, PNG, WebP) are decoded whole: up to ``IN_MEMORY_BYTES``
by libvips on the first read, kept in this object; beyond, once per machine into a
tiled copy that every worker process reads (workers/sources/decoded.py), bounded by
``Settings.max_decode_disk_bytes``. Both bounds are checked before anything is decoded.
"""

from __future__ import annotations

import logging

import numpy as np
import pyvips

from tilecast.common.errors import UnsupportedImage
from tilecast.common.grid import level_count
from tilecast.common.settings import Settings
from tilecast.workers.rawtile import RawTile
from tilecast.workers.sources import decoded
from tilecast.workers.sources.files import ImageFile
from tilecast.workers.sources.reader import PRIORITIES, Probe, Reader
from tilecast.workers.sources.tiffdir import TiffFile, TiffFormatError
from tilecast.workers.vipsutil import to_numpy, vips_dtype

log = logging.getLogger(__name__)

TILE_SIZE = 256
# Loaders that can fetch a region without decoding everything before it.
RANDOM_ACCESS_LOADERS = ("tiffload", "vipsload", "ppmload", "fitsload")
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Decoded whole in each process up to this size (libvips' own threshold for decoding
# to memory rather than to a temporary file); larger ones share one copy on disk.
IN_MEMORY_BYTES = 100 * 1024 * 1024


class VipsImageSource(Reader):
    name = "libvips"
    priority = PRIORITIES["libvips"]
    format_name = "libvips"

    @classmethod
    def can_read(cls, probe: Probe) -> bool:
        """Whether one of libvips' loaders recognises the first bytes (its own sniffing,
        the same it does when opening): what none does is a 415, not a failed decode."""
        return sniffed_loader(probe) is not None

    @classmethod
    def open(cls, probe: Probe, settings: Settings) -> VipsImageSource:
        return cls(probe.file, settings, loader_hint=sniffed_loader(probe))

    def __init__(
        self, file: ImageFile, settings: Settings, *, loader_hint: str | None = None
    ) -> None:
        """Reads ``file``, which the source closes when it is closed (and its opener
        closes when this raises). ``loader_hint``: the loader the probe found, for
        messages."""
        self.file = file
        self.path = file.name
        try:
            image = file.load_image(access="random", fail_on="error")
            loader = str(image.get("vips-loader")) if image.get_typeof("vips-loader") else ""
        except pyvips.Error as exc:
            file.raise_read_error()
            # libvips messages name the file; clients must not see internal paths.
            log.info("libvips cannot open %s: %s", self.path, exc)
            what = f"this {_loader_format(loader_hint)} file" if loader_hint else "the file"
            raise UnsupportedImage(f"{what} cannot be read: it is corrupt or truncated") from None
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
        # Decoded whole on the first read: a few kilobytes of PNG or JPEG may declare
        # gigabytes (a decompression bomb). Past IN_MEMORY_BYTES it is decoded once per
        # machine onto disk, within the disk bound checked here, before any decoding.
        self._shared = whole > IN_MEMORY_BYTES and (
            not loader.startswith(RANDOM_ACCESS_LOADERS)
            or (loader.startswith("tiffload") and _largest_strip(file) > IN_MEMORY_BYTES)
        )
        if self._shared:
            decoded.check_bound(whole, settings)
        self._settings = settings
        self._whole = whole
        self._image = self._prepare(image)
        self._loader = loader
        self.size_x, self.size_y = self._image.width, self._image.height
        self.tile_width = self.tile_height = TILE_SIZE
        self.levels = level_count(self.size_x, self.size_y, TILE_SIZE, TILE_SIZE)
        self.band_count = self._image.bands

    @staticmethod
    def _prepare(image: pyvips.Image) -> pyvips.Image:
        if image.get_typeof("orientation") and image.get("orientation") not in (0, 1):
            image = image.autorot()  # an EXIF / TIFF orientation, as viewers expect
        if image.interpretation in ("cmyk", "labs", "lab") and image.format == "uchar":
            image = image.colourspace("srgb")
        return image

    def _pixels(self) -> pyvips.Image:
        """The image to crop tiles from: for an image decoded whole onto disk, the
        machine's shared tiled copy, made on the first read."""
        if self._shared:

            def load() -> pyvips.Image:
                # Streamed top to bottom, a few rows in memory; a rotation reads out of
                # order, so a rotated image is decoded with random access (once).
                image = self.file.load_image(access="sequential", fail_on="error")
                if image.get_typeof("orientation") and image.get("orientation") not in (0, 1):
                    image = self.file.load_image(access="random", fail_on="error")
                return self._prepare(image)

            path = decoded.shared_copy(self.file, self._whole, load, self._settings)
            self._image = pyvips.Image.tiffload(path, access="random", fail_on="error")
            self._shared = False
        return self._image

    def native_level_size(self, z: int, frame: int = 0) -> tuple[int, int] | None:
        if z == self.levels - 1 and frame == 0:
            return self.size_x, self.size_y
        return None

    def read_tile(self, z: int, x: int, y: int, frame: int = 0) -> RawTile:
        if z != self.levels - 1 or frame != 0:
            raise ValueError(f"level {z} of frame {frame} is not stored in the file")
        x0, y0 = x * self.tile_width, y * self.tile_height
        w, h = self.grid.tile_size(z, x, y)
        if w == 0 or h == 0:
            return RawTile.from_pixels(self.empty_tile())
        try:
            pixels = to_numpy(self._pixels().crop(x0, y0, w, h))
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
        if self._loader.startswith(RANDOM_ACCESS_LOADERS) or whole > IN_MEMORY_BYTES:
            # (A TIFF whose strips pass IN_MEMORY_BYTES is read from its shared copy.)
            # Random-access loaders (and the shared tiled copy of an image decoded onto
            # disk) keep only the tiles or strips recently read.
            return 64 * 1024 + min(whole, 16 * 1024 * 1024)
        return 64 * 1024 + whole

    def close(self) -> None:
        self._image = None  # type: ignore[assignment]
        self.file.close()


def sniffed_loader(probe: Probe) -> str | None:
    """The libvips loader class that recognises the probe's first bytes
    ("VipsForeignLoadPngBuffer"), or None."""
    return probe.shared("libvips-loader", lambda _file: _find_loader(probe.head))


def _find_loader(head: bytes) -> str | None:
    if head.startswith(TIFF_MAGICS):
        # libvips' TIFF sniffing parses the first directory, which may lie past the head.
        return "VipsForeignLoadTiffBuffer"
    # pyvips wraps this sniffing only inside new_from_buffer; the C call is public API.
    pointer = pyvips.vips_lib.vips_foreign_find_load_buffer(head, len(head))
    if pointer == pyvips.ffi.NULL:
        pyvips.vips_lib.vips_error_clear()  # "not a known format" is no error here
        return None
    return str(pyvips.ffi.string(pointer).decode())


def _loader_format(loader: str) -> str:
    """``VipsForeignLoadPngBuffer`` -> ``PNG``."""
    return loader.removeprefix("VipsForeignLoad").removesuffix("Buffer").upper() or loader


def _largest_strip(file: ImageFile) -> int:
    """Decoded bytes of the first page's largest strip: libtiff decodes a strip whole,
    so a TIFF stored as one huge strip is, for every reader, an image decoded whole."""
    try:
        with TiffFile(file) as tiff:
            page = tiff.directories[0]
            if page.is_tiled:
                return 0
            sample_bytes = max(1, page.bits_per_sample // 8)
            return page.width * page.rows_per_strip * page.samples_per_pixel * sample_bytes
    except (TiffFormatError, OSError, ValueError):
        return 0  # libvips opened it; its own reads report what is wrong
