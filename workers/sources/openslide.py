"""The vendor formats OpenSlide 4 reads (openslide-python with the openslide-bin wheel)
that no faster reader takes, as large_image's ``openslide`` source serves them.

Chosen last among the format readers (``PRIORITIES["openslide"]``). tilecast's TIFF
reader keeps generic TIFFs, Aperio SVS (JPEG tiles passed through), Huron and ARGOS, and
declines the vendor TIFFs it would read wrongly (workers/sources/slidevendors.py). What
reaches this one: Hamamatsu NDPI and VMS/VMU, Leica SCN, MIRAX MRXS, Philips TIFF, Sakura
SVSlide, Trestle, Ventana BIF, and tiled TIFFs the TIFF reader declined. Not taken here:
DICOM (declined when OpenSlide detects it: the DICOM reader's), Zeiss CZI (not
recognised: the CZI reader's, workers/sources/czi.py), files OpenSlide does not detect,
and a generic tiled TIFF without a local path (both go on to libvips).

Geometry follows large_image's source: the slide's levels whose sizes are (within 2 %)
a power of two of the largest are its native levels, each mapped to tilecast's halving
level it matches within rounding; the others are synthesized. Tiles are read one at a
time with ``read_region`` at their level, as RGBA (OpenSlide's transparent pixels where
the slide has no data); a Philips TIFF's JPEG tiles that OpenSlide would hand out
unchanged are decoded here as OpenSlide decodes them, the same pixels in a seventh of the
time (workers/sources/slidejpegtiles.py). The tile size is the file's own (OpenSlide's
``openslide.level[0].tile-width`` hints), else 256. Like large_image by default, the
ICC profile of a TIFF's first page is applied (to sRGB, perceptual intent).

OpenSlide opens files by path: a file without ``local_path`` (a Girder file read by
HTTP ranges) cannot be read here.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import openslide
import PIL.Image
import PIL.ImageCms
import pyvips

from tilecast.common.errors import UnsupportedImage
from tilecast.common.grid import level_count
from tilecast.common.settings import Settings
from tilecast.workers.rawtile import RawTile
from tilecast.workers.sources import slidevendors
from tilecast.workers.sources.files import ImageFile
from tilecast.workers.sources.reader import PRIORITIES, Probe, Reader, ReaderDeclined
from tilecast.workers.sources.slidejpegtiles import SlideJpegTiles
from tilecast.workers.sources.tiff import TIFF_MAGICS, parsed_tiff
from tilecast.workers.sources.tiffassociated import read_associated
from tilecast.workers.sources.tiffdir import (
    ICC_PROFILE,
    NEW_SUBFILE_TYPE,
    TiffDirectory,
    TiffFile,
    TiffFormatError,
)

log = logging.getLogger(__name__)

DEFAULT_TILE = 256
# A tile hint beyond this is no tile size to read by (a whole NDPI strip): 256 instead.
MAX_TILE_PIXELS = 4096 * 4096
# large_image keeps levels whose size is a power of two of the largest within this.
POWER_OF_TWO_TOLERANCE = 0.02
# One tile cache for every slide this process opens (OpenSlide's default is 32 MiB per
# slide): tilecast caches rendered tiles itself, and sources are many.
SHARED_CACHE_BYTES = 64 * 1024 * 1024
# What an open slide holds besides the shared cache: its directory, index, XML.
HANDLE_BYTES = 4 * 1024 * 1024
# The key files of multi-file formats (MIRAX's Slidedat.ini, a VMS file) are small.
MAX_KEY_FILE_BYTES = 4 * 1024 * 1024
# Keys whose values name the files a multi-file slide is made of.
COMPANION_KEYS = {
    "hamamatsu-vms": re.compile(r"^(ImageFile|MapFile|OptimisationFile|MacroImage)\b"),
    "mirax": re.compile(r"^(FILE_\d+|INDEXFILE)$"),
}

_shared_cache: openslide.OpenSlideCache | None = None
_shared_cache_lock = threading.Lock()


def shared_cache() -> openslide.OpenSlideCache:
    global _shared_cache
    with _shared_cache_lock:
        if _shared_cache is None:
            _shared_cache = openslide.OpenSlideCache(SHARED_CACHE_BYTES)
        return _shared_cache


class OpenSlideSource(Reader):
    name = "openslide"
    priority = PRIORITIES["openslide"]
    # The registry names this in front of a 422 that does not start with it; the
    # messages here name the vendor format OpenSlide detected ("Philips TIFF: ...").
    format_name = "OpenSlide"

    @classmethod
    def can_read(cls, probe: Probe) -> bool:
        """A tiled TIFF (OpenSlide's generic TIFF), a TIFF carrying a vendor's marker
        (NDPI is striped), or a non-TIFF slide format recognised by its first bytes (a
        Zeiss CZI is not: the CZI reader's)."""
        if probe.startswith(*TIFF_MAGICS):
            base = _first_directory(probe)
            if base is None:
                return False
            return base.is_tiled or slidevendors.tiff_vendor(base) is not None
        return slidevendors.head_vendor(probe.head, probe.file.local_path) is not None

    @classmethod
    def open(cls, probe: Probe, settings: Settings) -> OpenSlideSource:
        kind = _probed_kind(probe)
        # A URL source's object is downloaded into the bounded download cache here.
        path = probe.file.local_copy()
        if path is None:
            if kind == "generic-tiff":
                raise ReaderDeclined("OpenSlide reads local files only")
            raise UnsupportedImage(
                f"{slidevendors.FORMAT_NAMES[kind]}: this server reads the format with "
                "OpenSlide, which needs the file on a local filesystem, and this file is not"
            )
        vendor = openslide.OpenSlide.detect_format(path)
        if vendor is None:
            raise ReaderDeclined("OpenSlide does not recognise the file")
        if vendor == "dicom":
            raise ReaderDeclined("DICOM is the DICOM reader's")
        if vendor == "hamamatsu" and kind == "hamamatsu-vms":
            vendor = kind
        if vendor in COMPANION_KEYS:
            _check_companions(vendor, path)
        tiff = parsed_tiff(probe) if probe.startswith(*TIFF_MAGICS) else None
        return cls(probe.file, settings, vendor=vendor, tiff=tiff)

    def __init__(
        self,
        file: ImageFile,
        settings: Settings,
        *,
        vendor: str | None = None,
        tiff: TiffFile | None = None,
    ) -> None:
        """Reads ``file`` (a local file) with OpenSlide; the source closes it when it is
        closed (and its opener closes it when this raises). ``tiff``: the file's TIFF
        directories when they were parsed already."""
        self.file = file
        self.path = file.name
        local = file.local_copy()
        if local is None:
            raise ReaderDeclined("OpenSlide reads local files only")
        self._local_path = local
        self.vendor = vendor or openslide.OpenSlide.detect_format(self._local_path) or ""
        self.slide_format = slidevendors.FORMAT_NAMES.get(self.vendor, "slide")
        self._lock = threading.Lock()
        self._closed = False
        self._file_readers = 0  # reads of the file's own tiles under way (close waits)
        directories = _tiff_directories(file, tiff)
        self._handle = _Handle(self._open_slide())
        try:
            self._init_geometry(self._handle.slide, settings)
            self._init_associated(self._handle.slide, settings, directories)
            # A Philips TIFF's JPEG tiles, decoded here as OpenSlide would (same pixels,
            # a seventh of read_region's time): workers/sources/slidejpegtiles.py.
            self._jpeg_tiles = SlideJpegTiles.for_slide(
                self.vendor,
                file,
                directories,
                self._handle.slide.level_dimensions,
                (self.tile_width, self.tile_height),
            )
            icc_profile = _icc_profile(directories[0]) if directories else None
            self._icc = _IccTransform(icc_profile) if icc_profile else None
        except BaseException:
            self._handle.retire()
            raise

    # -- opening ------------------------------------------------------------------------
    def _open_slide(self) -> openslide.OpenSlide:
        try:
            slide = openslide.OpenSlide(self._local_path)
        except openslide.OpenSlideUnsupportedFormatError:
            raise ReaderDeclined("OpenSlide does not recognise the file") from None
        except openslide.OpenSlideError as exc:
            raise UnsupportedImage(
                f"{self.slide_format}: OpenSlide cannot open it: {self._reason(exc)}"
            ) from None
        slide.set_cache(shared_cache())
        return slide

    def _init_geometry(self, slide: openslide.OpenSlide, settings: Settings) -> None:
        available = _power_of_two_levels(slide.level_dimensions, slide.level_downsamples)
        if not available:
            raise UnsupportedImage(f"{self.slide_format}: the slide has no pixels")
        self.size_x, self.size_y = available[0].width, available[0].height
        if self.size_x * self.size_y > settings.max_decode_pixels:
            raise UnsupportedImage(
                f"{self.slide_format}: the image has {self.size_x * self.size_y} pixels, more "
                f"than the {settings.max_decode_pixels} this server decodes"
            )
        self.tile_width, self.tile_height = _tile_size(slide.properties, self.size_x, self.size_y)
        self.levels = level_count(self.size_x, self.size_y, self.tile_width, self.tile_height)
        self._native = _native_levels(available, self.size_x, self.size_y, self.levels)
        self._origin = (0, 0)
        bounds = _bounds(slide.properties, self.size_x, self.size_y)
        if bounds is not None:
            # large_image serves the bounding box of the slide's regions only (MIRAX, SCN,
            # BIF...), its levels chosen for the whole slide's size.
            self._origin = bounds[:2]
            self.size_x, self.size_y = bounds[2:]
            levels = level_count(self.size_x, self.size_y, self.tile_width, self.tile_height)
            shift = self.levels - levels
            self._native = {z - shift: level for z, level in self._native.items() if z >= shift}
            self.levels = levels
        self.dtype = np.dtype(np.uint8)
        self.band_count = 4  # RGBA: transparent where the slide has no data
        self.black_padding = True  # read_region beyond a level is transparent black
        self._background = _background(slide.properties)
        self._pixel_info(slide.properties)

    def _pixel_info(self, properties: Any) -> None:
        """Magnification and pixel size as large_image's openslide source reports them."""
        try:
            power = properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)
            magnification = float(power) if power else None
        except ValueError:
            magnification = None
        try:
            mm_x = float(properties[openslide.PROPERTY_NAME_MPP_X]) * 0.001
            mm_y = float(properties[openslide.PROPERTY_NAME_MPP_Y]) * 0.001
        except (KeyError, ValueError):
            mm_x = mm_y = None
        self.mm_x, self.mm_y = mm_x, mm_y
        self.magnification = (
            magnification if magnification is not None else (0.01 / mm_x if mm_x else None)
        )

    def _init_associated(
        self, slide: openslide.OpenSlide, settings: Settings, directories: list[TiffDirectory]
    ) -> None:
        """OpenSlide's associated images, plus the TIFF pages large_image adds to them
        (an NDPI's non-empty-region map, Aperio label and macro pages OpenSlide skips)."""
        self._max_associated_pixels = settings.max_decode_pixels
        self._associated_pages: dict[str, TiffDirectory] = {}
        self._openslide_associated = set(slide.associated_images)
        if self.vendor not in ("hamamatsu", "aperio"):
            return
        for directory in directories:
            name = _extra_associated_name(self.vendor, directory)
            if name and name not in self._openslide_associated:
                self._associated_pages.setdefault(name, directory)

    # -- the slide handle ---------------------------------------------------------------------
    @contextmanager
    def _reading(self, what: str) -> Iterator[openslide.OpenSlide]:
        """The slide, to read ``what`` (a tile, an associated image) from; its handle is
        held (not closed) until the read is done. An OpenSlide error is a 422 naming
        ``what`` and the format, raised once the handle is let go: OpenSlide leaves a
        handle unusable after any error, so later reads go to a new one."""
        with self._lock:
            handle = self._handle
            if self._closed or not handle.acquire():
                raise ValueError(f"{self.path} is closed")
        try:
            yield handle.slide
            return
        except openslide.OpenSlideError as exc:
            reason = self._reason(exc)
        finally:
            handle.release()
        self._replace_broken(handle)
        log.warning("%s: %s: %s", self.path, what, reason)
        raise UnsupportedImage(f"{self.slide_format}: {what} cannot be read: {reason}") from None

    def _replace_broken(self, broken: _Handle) -> None:
        """OpenSlide leaves a handle unusable after a read error: later reads go to a
        fresh one (large_image reopens too). The broken handle is closed once no thread
        reads from it."""
        with self._lock:
            if self._closed or self._handle is not broken:
                return
            try:
                self._handle = _Handle(self._open_slide())
            except (UnsupportedImage, ReaderDeclined):
                return  # the file went bad: keep answering with the broken handle's error
        broken.retire()

    def _reason(self, exc: BaseException) -> str:
        """OpenSlide's message without the slide's path (clients see it)."""
        text = str(exc) or type(exc).__name__
        folder = os.path.dirname(self._local_path)
        text = text.replace(self._local_path, "the file")
        if folder:
            text = text.replace(folder + os.sep, "")
        return text

    # -- the reader interface -------------------------------------------------------------
    def native_level_size(self, z: int, frame: int = 0) -> tuple[int, int] | None:
        level = self._native.get(z) if frame == 0 else None
        if level is None:
            return None
        if self._origin == (0, 0) and (self.size_x, self.size_y) == self._full_size():
            return level.width, level.height
        # A bounding box: its share of the level, as large_image's grid counts it.
        scale = 2 ** (self.levels - 1 - z)
        return -(-self.size_x // scale), -(-self.size_y // scale)

    def _full_size(self) -> tuple[int, int]:
        top = self._native.get(self.levels - 1)
        return (top.width, top.height) if top is not None else (0, 0)

    def read_tile(self, z: int, x: int, y: int, frame: int = 0) -> RawTile:
        level = self._native.get(z) if frame == 0 else None
        if level is None:
            raise ValueError(f"level {z} of frame {frame} is not stored in the file")
        pixels = self._jpeg_tile(z, x, y, level)  # opaque
        if pixels is None:
            pixels = self._read_region(z, x, y, level)
        if self._icc is not None:
            pixels = self._icc.apply(pixels)
        return RawTile.from_pixels(self.pad_tile(pixels))

    def _jpeg_tile(self, z: int, x: int, y: int, level: _SlideLevel) -> np.ndarray | None:
        """The tile decoded from the file's own JPEG tile, where OpenSlide would hand
        that out unchanged (one tile of its level's directory, on its grid); else None."""
        if self._jpeg_tiles is None or self._origin != (0, 0):
            return None
        if level.downsample != 2 ** (self.levels - 1 - z):
            return None
        with self._lock:
            if self._closed:
                raise ValueError(f"{self.path} is closed")
            self._file_readers += 1
        try:
            return self._jpeg_tiles.read(level.number, x, y, (level.width, level.height))
        finally:
            with self._lock:
                self._file_readers -= 1
                last = self._closed and self._file_readers == 0
            if last:
                self.file.close()

    def _read_region(self, z: int, x: int, y: int, level: _SlideLevel) -> np.ndarray:
        with self._reading(f"tile z={z} x={x} y={y}") as slide:
            size = (self.tile_width, self.tile_height)
            image = slide.read_region(self._location(z, x, y, level), level.number, size)
        pixels = np.asarray(image)
        if self._background is not None:
            pixels = pixels.copy()
            pixels[pixels[:, :, 3] == 0, :3] = self._background
        return pixels

    def _location(self, z: int, x: int, y: int, level: _SlideLevel) -> tuple[int, int]:
        """Where tile (z, x, y) starts, in the full-resolution pixels read_region takes.
        OpenSlide divides it by the level's own downsample, which is not the power of two
        when a level's size was rounded (16.0018 for 16): scaled by their ratio, as
        large_image does, the read starts on the tile's first pixel of the level."""
        scale = 2 ** (self.levels - 1 - z)
        left = x * self.tile_width * scale + self._origin[0]
        top = y * self.tile_height * scale + self._origin[1]
        ratio = level.downsample / scale if level.downsample else 1
        if ratio != 1:
            left, top = round(left * ratio), round(top * ratio)
        return left, top

    # -- associated images ------------------------------------------------------------------
    def associated_names(self) -> list[str]:
        return sorted(self._openslide_associated | set(self._associated_pages))

    def associated_image(self, name: str) -> np.ndarray:
        page = self._associated_pages.get(name)
        if page is not None:
            return self._associated_page(name, page)
        if name not in self._openslide_associated:
            return super().associated_image(name)
        with self._reading(f"the associated image {name!r}") as slide:
            # OpenSlide 4 states each associated image's size among the properties.
            prefix = f"openslide.associated.{name}"
            try:
                width = int(slide.properties[f"{prefix}.width"])
                height = int(slide.properties[f"{prefix}.height"])
            except (KeyError, ValueError):
                width = height = 0
            self._check_associated_size(name, width, height)
            image = slide.associated_images[name]
        return np.asarray(image)

    def _associated_page(self, name: str, page: TiffDirectory) -> np.ndarray:
        self._check_associated_size(name, page.width, page.height)
        try:
            return read_associated(self.file, page)
        except pyvips.Error as exc:
            log.warning("cannot read associated image %s of %s: %s", name, self.path, exc)
            raise UnsupportedImage(
                f"{self.slide_format}: the associated image {name!r} cannot be read"
            ) from None

    def _check_associated_size(self, name: str, width: int, height: int) -> None:
        if width <= 0 or height <= 0 or width * height > self._max_associated_pixels:
            raise UnsupportedImage(
                f"{self.slide_format}: the associated image {name!r} claims {width} x {height} "
                "pixels, more than this server decodes"
            )

    # -- resources ------------------------------------------------------------------------
    @property
    def estimated_bytes(self) -> int:
        # Decoded tiles live in the process's one OpenSlide cache, counted once, not here.
        return HANDLE_BYTES

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handle = self._handle
            idle = self._file_readers == 0
        handle.retire()
        if idle:  # else the last reader of the file's tiles closes it
            self.file.close()


class _Handle:
    """One OpenSlide handle, read from by any number of threads at once (OpenSlide's
    reads are thread-safe) and closed once the last of them is done: ``openslide_close``
    must not run beside a read."""

    def __init__(self, slide: openslide.OpenSlide) -> None:
        self.slide = slide
        self._users = 0
        self._retired = False
        self._lock = threading.Lock()

    def acquire(self) -> bool:
        with self._lock:
            if self._retired:
                return False
            self._users += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._retired and self._users == 0
        if last:
            self.slide.close()

    def retire(self) -> None:
        with self._lock:
            if self._retired:
                return
            self._retired = True
            idle = self._users == 0
        if idle:
            self.slide.close()


class _IccTransform:
    """The slide's ICC profile applied to tiles, to sRGB with the perceptual intent: what
    large_image does to every tile by default (``icc_correction``). A profile that does not
    load is logged once and the tiles are left as stored, as large_image leaves them."""

    def __init__(self, profile: bytes) -> None:
        self._profile = profile
        self._transforms: dict[str, Any] = {}
        self._failed = False
        self._lock = threading.Lock()

    def apply(self, pixels: np.ndarray) -> np.ndarray:
        mode = {3: "RGB", 4: "RGBA"}.get(pixels.shape[2] if pixels.ndim == 3 else 0)
        if mode is None:
            return pixels
        transform = self._transform(mode)
        if transform is None:
            return pixels
        image = PIL.Image.fromarray(np.ascontiguousarray(pixels), mode)
        return np.asarray(PIL.ImageCms.applyTransform(image, transform))

    def _transform(self, mode: str) -> Any:
        with self._lock:
            if self._failed:
                return None
            if mode not in self._transforms:
                try:
                    source = PIL.ImageCms.ImageCmsProfile(io.BytesIO(self._profile))
                    target = PIL.ImageCms.createProfile("sRGB")
                    self._transforms[mode] = PIL.ImageCms.buildTransformFromOpenProfiles(
                        source, target, mode, mode,
                        renderingIntent=PIL.ImageCms.Intent.PERCEPTUAL,
                    )  # fmt: skip
                except (PIL.ImageCms.PyCMSError, OSError, ValueError) as exc:
                    log.warning("the slide's ICC profile cannot be applied: %s", exc)
                    self._failed = True
                    return None
            return self._transforms[mode]


def _first_directory(probe: Probe) -> TiffDirectory | None:
    try:
        return parsed_tiff(probe).directories[0]
    except (TiffFormatError, OSError):
        return None


def _probed_kind(probe: Probe) -> str:
    """What the probe alone says the file is: a vendor name, else ``generic-tiff``."""
    if probe.startswith(*TIFF_MAGICS):
        base = _first_directory(probe)
        vendor = slidevendors.tiff_vendor(base) if base is not None else None
        return vendor or "generic-tiff"
    return slidevendors.head_vendor(probe.head, probe.file.local_path) or "generic-tiff"


def _tiff_directories(file: ImageFile, tiff: TiffFile | None) -> list[TiffDirectory]:
    """The file's TIFF directories (none for a file that is not a TIFF)."""
    if tiff is not None:
        return tiff.directories
    if not file.read(0, 4).startswith(TIFF_MAGICS):
        return []
    try:
        return TiffFile(file).directories
    except (TiffFormatError, OSError):
        return []


def _icc_profile(base: TiffDirectory) -> bytes | None:
    """The ICC profile of a TIFF's first page: the one large_image applies."""
    value = base.tags.get(ICC_PROFILE)
    if value is None:
        return None
    data = value.tobytes() if isinstance(value, np.ndarray) else bytes(value)
    return data or None


class _SlideLevel(NamedTuple):
    number: int  # OpenSlide's level
    width: int
    height: int
    downsample: float


def _power_of_two_levels(
    dimensions: tuple[tuple[int, int], ...], downsamples: tuple[float, ...]
) -> list[_SlideLevel]:
    """The usable levels, largest first (ties in OpenSlide's order), keeping those whose
    size is a power of two of the largest's within 2 % -- large_image's
    ``_getAvailableLevels``."""
    levels = [
        _SlideLevel(number, w, h, downsample)
        for number, ((w, h), downsample) in enumerate(zip(dimensions, downsamples, strict=True))
        if w > 0 and h > 0
    ]
    levels.sort(key=lambda level: -level.width * level.height)
    if not levels:
        return []
    base = levels[0]
    return [
        level
        for level in levels
        if _near_power_of_two(base.width, level.width)
        and _near_power_of_two(base.height, level.height)
    ]


def _near_power_of_two(a: int, b: int) -> bool:
    ratio = math.log2(a / b)
    return abs(ratio - round(ratio)) < POWER_OF_TWO_TOLERANCE


def _native_levels(
    available: list[_SlideLevel], size_x: int, size_y: int, levels: int
) -> dict[int, _SlideLevel]:
    """tilecast level -> the slide level stored at it: for each halving level, the
    smallest slide level at least as large (within a pixel), native when it is the same
    scale -- large_image's choice. Levels without one are synthesized."""
    native: dict[int, _SlideLevel] = {}
    for z in range(levels):
        want_w = max(1.0, size_x / 2 ** (levels - 1 - z))
        want_h = max(1.0, size_y / 2 ** (levels - 1 - z))
        best, scale = available[0], 1
        for level in available:
            if level.width < want_w - 1 or level.height < want_h - 1:
                break
            best, scale = level, round(level.width / want_w)
        if scale == 1:
            native[z] = best
    return native


def _bounds(properties: Any, size_x: int, size_y: int) -> tuple[int, int, int, int] | None:
    """The slide's bounding box of non-empty regions (``openslide.bounds-*``), when it
    lies inside the image and is smaller than it -- when large_image crops to it."""
    try:
        left, top, width, height = (
            int(properties[f"openslide.bounds-{key}"]) for key in ("x", "y", "width", "height")
        )
    except (KeyError, ValueError):
        return None
    inside = left >= 0 and width > 0 and left + width <= size_x
    inside = inside and top >= 0 and height > 0 and top + height <= size_y
    if inside and (width < size_x or height < size_y):
        return left, top, width, height
    return None


def _background(properties: Any) -> tuple[int, int, int] | None:
    """The slide's background colour (``openslide.background-color``, RRGGBB), which
    large_image paints under transparent pixels."""
    value = properties.get("openslide.background-color") or ""
    try:
        return tuple(int(value[i * 2 : i * 2 + 2], 16) for i in range(3))  # type: ignore[return-value]
    except ValueError:
        return None


def _tile_size(properties: Any, size_x: int, size_y: int) -> tuple[int, int]:
    """The file's tile size from OpenSlide's hints, as large_image takes it: 256 when a
    hint is missing, under 4 pixels, or 4 times longer one way than the other; never
    more than the image."""
    sizes = []
    for key in ("openslide.level[0].tile-width", "openslide.level[0].tile-height"):
        try:
            value = int(properties[key])
        except (KeyError, ValueError):
            value = DEFAULT_TILE
        sizes.append(value if value >= 4 else DEFAULT_TILE)
    width, height = sizes
    if max(width, height) / min(width, height) >= 4 or width * height > MAX_TILE_PIXELS:
        width = height = DEFAULT_TILE
    return min(width, size_x), min(height, size_y)


def _extra_associated_name(vendor: str, directory: TiffDirectory) -> str | None:
    """The associated image large_image finds on this TIFF page beside OpenSlide's."""
    if vendor == "hamamatsu":
        lens = directory.scalar(slidevendors.NDPI_SOURCELENS)
        return {-1: "macro", -2: "nonempty"}.get(int(lens)) if lens is not None else None
    subfile = directory.scalar(NEW_SUBFILE_TYPE)
    if vendor == "aperio" and subfile is not None and int(subfile) & 1:
        return "label" if int(subfile) == 1 else "macro"
    return None


def _check_companions(vendor: str, path: str) -> None:
    """A multi-file slide must not reach outside its folder: every file its key file
    names is a plain name inside it (OpenSlide would open ``../../anything``), and the
    folder holding them lies beside the slide (no symbolic link out)."""
    label = slidevendors.FORMAT_NAMES[vendor]
    folder = os.path.dirname(os.path.abspath(path))
    key_file = path
    if vendor == "mirax":
        data = slidevendors.mirax_folder(path)
        if data is None:
            raise ReaderDeclined("the MIRAX data folder is gone")
        folder = data
        key_file = os.path.join(data, slidevendors.MIRAX_INDEX)
    real_folder = os.path.realpath(folder)
    if not _inside(real_folder, os.path.realpath(os.path.dirname(os.path.abspath(path)))):
        raise UnsupportedImage(f"{label}: its data folder lies outside the slide's folder")
    pattern = COMPANION_KEYS[vendor]
    for key, value in _key_file_entries(key_file, label):
        if not pattern.match(key) or not value:
            continue
        named = os.path.realpath(os.path.join(real_folder, value))
        if (
            os.path.basename(value) != value
            or value in (".", "..")
            or not _inside(named, real_folder)
        ):
            raise UnsupportedImage(f"{label}: it names a file outside its folder ({key})")


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _key_file_entries(path: str, label: str) -> Iterator[tuple[str, str]]:
    """``key = value`` lines of an INI-style key file (any group)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise UnsupportedImage(f"{label}: its key file cannot be read: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise UnsupportedImage(f"{label}: its key file is larger than any slide's")
    for line in data.decode("utf-8", errors="replace").lstrip("\ufeff").splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith(("#", "[")):
            yield key.strip(), value.strip()
