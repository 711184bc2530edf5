"""Zeiss CZI, read with libCZI (``pylibCZIrw``): uncompressed, JPEG, JPEG-XR and zstd
subblocks, mosaics, pyramids.

Frames: every channel, z-plane, time point and scene (``C``, ``Z``, ``T``, ``S``) is a
frame, channel fastest, then z, t and scene -- ``IndexC``, ``IndexZ``, ``IndexT``,
``IndexXY``, in the order large_image's bioformats source numbers them. Other CZI
dimensions (rotation, illumination, phase, view, block) are read at index 0.

Scenes of different sizes: the image is as large as the largest scene (its width by
the largest height); every scene's frames start at its own top left corner and a smaller
scene's frames are black beyond its edge -- what large_image's bioformats source
serves for series of different sizes. A file without scenes is one image: the bounding
box of its full-resolution subblocks.

Levels: full resolution is read from the file; a lower (halving) level is read from the
file's pyramid subblocks when it stores them at that factor (a power of two), else
synthesized by tilecast from the level above. A tile is one ``read(roi, zoom)`` of
its area: libCZI composes it from the subblocks that cover it (decoding each whole;
decoded compressed subblocks are kept in a bounded cache, so the neighbouring tiles of
one subblock decode it once).

libCZI opens files by path: a file without ``local_path`` (a Girder file read by HTTP
ranges) is refused with a 422. Reads of one file are serialized (a lock per reader).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
from typing import Any
from xml.etree import ElementTree

import numpy as np
from pylibCZIrw import czi as pyczi

from tilecast.common.errors import UnsupportedImage
from tilecast.common.grid import level_count
from tilecast.common.settings import Settings
from tilecast.workers.rawtile import RawTile
from tilecast.workers.sources.files import ImageFile
from tilecast.workers.sources.planes import (
    Axis,
    check_pixels,
    crop_or_pad,
    error_text,
    frame_indices,
)
from tilecast.workers.sources.reader import PRIORITIES, Probe, Reader

log = logging.getLogger(__name__)

MAGIC = b"ZISRAWFILE"
TILE = 256
# Decoded compressed subblocks libCZI keeps per open file.
SUBBLOCK_CACHE_BYTES = 64 * 1024 * 1024
# libCZI's pixel types: numpy dtype and bands. BGR types are handed out as RGB.
PIXEL_TYPES: dict[str, tuple[np.dtype, int]] = {
    "Gray8": (np.dtype(np.uint8), 1),
    "Gray16": (np.dtype(np.uint16), 1),
    "Gray32Float": (np.dtype(np.float32), 1),
    "Bgr24": (np.dtype(np.uint8), 3),
    "Bgr48": (np.dtype(np.uint16), 3),
    "Bgr96Float": (np.dtype(np.float32), 3),
}
# A pyramid layer whose minification is within this of a power of two is that level.
POWER_OF_TWO_TOLERANCE = 0.02
# Bounds on what the subblock directory may make the reader do: entries looked at when
# opening, and the decoded size of one subblock (libCZI decodes a subblock whole).
MAX_SUBBLOCKS = 2_000_000
MAX_SUBBLOCK_BYTES = 1024**3


class CziSource(Reader):
    name = "czi"
    priority = PRIORITIES["czi"]
    format_name = "CZI"

    @classmethod
    def can_read(cls, probe: Probe) -> bool:
        # Every CZI segment starts with its 16-byte id; the file's first is ZISRAWFILE.
        return probe.startswith(MAGIC)

    def __init__(self, file: ImageFile, settings: Settings) -> None:
        self.file = file
        self.path = file.name
        local = file.local_copy()  # a URL source's object: from the download cache
        if local is None:
            raise UnsupportedImage(
                "this server reads CZI with libCZI, which needs the file on a local "
                "filesystem, and this file is not"
            )
        self._lock = threading.Lock()
        self._czi = _open(local)
        try:
            self._init_layout(settings)
        except BaseException:
            self._czi.close()
            raise
        self._closed = False

    # -- opening ------------------------------------------------------------------------
    def _init_layout(self, settings: Settings) -> None:
        czi = self._czi
        try:
            box = czi.total_bounding_box_no_pyramid
            pixel_types = czi.pixel_types
            scenes = _scenes(czi)
            xml = czi.raw_metadata
        except (RuntimeError, ValueError, KeyError) as exc:
            raise UnsupportedImage(
                f"the file's directory cannot be read: {error_text(exc)}"
            ) from None
        kinds = set(pixel_types.values())
        if len(kinds) != 1 or next(iter(kinds)) not in PIXEL_TYPES:
            raise UnsupportedImage(f"pixel types {sorted(kinds)} are not read here")
        self._pixel_type = next(iter(kinds))
        self.dtype, self.band_count = PIXEL_TYPES[self._pixel_type]
        self._scenes = scenes
        self.size_x = max(rect.w for rect in scenes.values())
        self.size_y = max(rect.h for rect in scenes.values())
        check_pixels(self.size_x, self.size_y, settings.max_decode_pixels)
        self.tile_width = self.tile_height = TILE
        self.levels = level_count(self.size_x, self.size_y, TILE, TILE)
        self._sizes = {axis: box[axis][1] - box[axis][0] for axis in ("C", "Z", "T")}
        axes = [
            Axis("IndexC", self._sizes["C"]),
            Axis("IndexZ", self._sizes["Z"]),
            Axis("IndexT", self._sizes["T"]),
            Axis("IndexXY", len(scenes)),
        ]
        self.frame_info = frame_indices(axes)
        self.frame_count = len(self.frame_info)
        self._scene_ids = sorted(scenes)
        self._native = self._pyramid_levels()
        self._init_metadata(xml)

    def _pyramid_levels(self) -> set[int]:
        """The levels below full resolution that pyramid subblocks store (and a 422 for a
        subblock too large to decode)."""
        factors: set[int] = set()
        count = 0
        largest = 0
        pixel_bytes = self.dtype.itemsize * self.band_count

        def look(_index: int, info: Any) -> bool:
            nonlocal count, largest
            count += 1
            logical, stored = info.logicalRect, info.physicalSize
            largest = max(largest, stored.w * stored.h * pixel_bytes)
            if stored.w > 0 and logical.w > stored.w:
                ratio = math.log2(logical.w / stored.w)
                if abs(ratio - round(ratio)) <= POWER_OF_TWO_TOLERANCE:
                    factors.add(round(ratio))
            return count < MAX_SUBBLOCKS

        try:
            self._czi.enumerate_subblocks(look)
        except RuntimeError as exc:
            raise UnsupportedImage(
                f"the subblock directory is corrupt: {error_text(exc)}"
            ) from None
        if largest > MAX_SUBBLOCK_BYTES:
            raise UnsupportedImage(
                f"a subblock decodes to {largest} bytes, more than the {MAX_SUBBLOCK_BYTES} "
                "this server decodes at once"
            )
        top = self.levels - 1
        return {top - step for step in factors if 0 < step <= top}

    def _init_metadata(self, xml: str) -> None:
        try:
            root = ElementTree.fromstring(xml) if xml else None
        except ElementTree.ParseError:
            log.info("%s: the CZI's XML metadata does not parse; none used", self.path)
            root = None
        if root is None:
            return
        self.channel_names = _channel_names(root, self._sizes["C"])
        metres = {axis: _distance(root, axis) for axis in ("X", "Y")}
        self.mm_x = metres["X"] * 1e3 if metres["X"] else None
        self.mm_y = metres["Y"] * 1e3 if metres["Y"] else self.mm_x
        self.magnification = _magnification(root)
        if not self.magnification and self.mm_x:
            self.magnification = 0.01 / self.mm_x  # large_image's estimate

    # -- reading ------------------------------------------------------------------------
    def native_level_size(self, z: int, frame: int = 0) -> tuple[int, int] | None:
        if z == self.levels - 1 or z in self._native:
            scale = 1 << (self.levels - 1 - z)
            return -(-self.size_x // scale), -(-self.size_y // scale)
        return None

    def frame_plane(self, frame: int) -> tuple[dict[str, int], int]:
        """The CZI plane coordinates and scene of a frame."""
        info = self.frame_info[frame] if self.frame_info else {}
        plane = {"C": info.get("IndexC", 0), "Z": info.get("IndexZ", 0), "T": info.get("IndexT", 0)}
        return plane, self._scene_ids[info.get("IndexXY", 0)]

    def read_tile(self, z: int, x: int, y: int, frame: int = 0) -> RawTile:
        if self.native_level_size(z, frame) is None:
            raise ValueError(f"level {z} is not stored in the file")
        self.check_frame(frame)
        plane, scene = self.frame_plane(frame)
        rect = self._scenes[scene]
        scale = 1 << (self.levels - 1 - z)
        x0, y0 = x * TILE * scale, y * TILE * scale
        # Only the scene's own area; beyond it (a smaller scene) the tile stays black.
        width, height = min(TILE * scale, rect.w - x0), min(TILE * scale, rect.h - y0)
        content_w, content_h = self.tile_content(z, x, y, frame)
        if width <= 0 or height <= 0:
            return RawTile.from_pixels(self.empty_tile())
        roi = (rect.x + x0, rect.y + y0, width, height)
        pixels = self._read(roi, plane, scene, 1.0 / scale, f"tile z={z} x={x} y={y}")
        want_w, want_h = -(-width // scale), -(-height // scale)
        pixels = crop_or_pad(pixels, min(want_h, content_h), min(want_w, content_w))
        return RawTile.from_pixels(self.pad_tile(pixels))

    def _read(
        self, roi: tuple[int, int, int, int], plane: dict[str, int], scene: int, zoom: float,
        where: str,
    ) -> np.ndarray:  # fmt: skip
        try:
            with self._lock:
                if self._closed:
                    raise ValueError("the CZI reader is closed")
                pixels = self._czi.read(
                    roi=roi, plane=plane, scene=scene, zoom=zoom, pixel_type=self._pixel_type
                )
        except RuntimeError as exc:
            raise UnsupportedImage(f"CZI: {where} cannot be read: {error_text(exc)}") from None
        pixels = np.asarray(pixels)
        if pixels.ndim == 2:
            pixels = pixels[:, :, np.newaxis]
        if self.band_count == 3:
            pixels = pixels[:, :, ::-1]  # libCZI's BGR to RGB
        return np.ascontiguousarray(pixels, dtype=self.dtype)

    @property
    def estimated_bytes(self) -> int:
        return SUBBLOCK_CACHE_BYTES + 1024 * 1024

    def close(self) -> None:
        with self._lock:
            if not getattr(self, "_closed", True):
                self._closed = True
                with contextlib.suppress(RuntimeError):
                    self._czi.close()
        self.file.close()


def _open(path: str) -> pyczi.CziReader:
    try:
        return pyczi.CziReader(
            path, cache_options=pyczi.CacheOptions(max_memory_usage=SUBBLOCK_CACHE_BYTES)
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise UnsupportedImage(f"libCZI cannot open it: {error_text(exc, path)}") from None


def _scenes(czi: pyczi.CziReader) -> dict[int, pyczi.Rectangle]:
    """Scene index -> its full-resolution bounding box; one scene for a file without."""
    scenes = dict(czi.scenes_bounding_rectangle_no_pyramid)
    scenes = {index: rect for index, rect in scenes.items() if rect.w > 0 and rect.h > 0}
    if scenes:
        return scenes
    whole = czi.total_bounding_rectangle_no_pyramid
    if whole.w <= 0 or whole.h <= 0:
        raise UnsupportedImage("the file holds no image subblocks")
    return {0: whole}


def _find(root: ElementTree.Element, path: str) -> list[ElementTree.Element]:
    return root.findall(path)


def _channel_names(root: ElementTree.Element, count: int) -> list[str] | None:
    channels = _find(root, "./Metadata/Information/Image/Dimensions/Channels/Channel")
    names = [channel.get("Name") or channel.get("Id") or "" for channel in channels]
    if len(names) < count or not all(names[:count]):
        return None
    return names[:count]


def _distance(root: ElementTree.Element, axis: str) -> float | None:
    """Metres per pixel along ``axis`` (CZI's Scaling/Items/Distance values are metres)."""
    for item in _find(root, "./Metadata/Scaling/Items/Distance"):
        if item.get("Id") == axis:
            value = item.findtext("Value")
            with contextlib.suppress(TypeError, ValueError):
                number = float(value or "")
                if number > 0 and math.isfinite(number):
                    return number
    return None


def _magnification(root: ElementTree.Element) -> float | None:
    for objective in _find(root, "./Metadata/Information/Instrument/Objectives/Objective"):
        with contextlib.suppress(TypeError, ValueError):
            value = float(objective.findtext("NominalMagnification") or "")
            if value > 0 and math.isfinite(value):
                return value
    return None
