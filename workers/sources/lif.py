"""Leica LIF (LAS X / LAS AF project files), opened with ``liffile``; tiles read by area.

A LIF file holds a tree of images (series), each an uncompressed block of pixels laid
out as its XML describes: a byte increment per dimension (X, Y, Z, T, mosaic tile M,
wavelength...) and per channel. ``liffile`` parses the file (header, XML, memory
blocks); the pixels of a tile are then read straight from the file with positioned
reads of the rows it covers -- never a whole plane -- and checked against the block's
size when the file is opened.

Which images: the largest image of the file (width x height x planes) and every other
image of the same shape and pixel type, in file order, as ``IndexXY`` frames (what
large_image's bioformats source does with series); images of other shapes are left out.
Frames: channel fastest, then Z, T, any other dimension of more than one value
(``IndexM`` for the tiles of an unmerged mosaic, ``IndexLambda`` ...), then the image.
RGB images (three interleaved channels) are one RGB frame. Only full resolution is
stored (LIF has no pyramids): tilecast synthesizes the other levels. Pixel size from
the X and Y dimensions' extents; magnification from the objective's setting where
recorded (``Magnification`` of the image's hardware settings), else estimated from the
pixel size as large_image does.
"""

from __future__ import annotations

import contextlib
import logging
import math
import struct
import threading
from dataclasses import dataclass
from typing import Any
from xml.etree import ElementTree

import liffile
import numpy as np

from tilecast.common.errors import UnsupportedImage
from tilecast.common.grid import level_count
from tilecast.common.settings import Settings
from tilecast.workers.rawtile import RawTile
from tilecast.workers.sources.files import FileStream, ImageFile
from tilecast.workers.sources.planes import (
    Axis,
    check_pixels,
    error_text,
    frame_indices,
)
from tilecast.workers.sources.reader import PRIORITIES, Probe, Reader

log = logging.getLogger(__name__)

TILE = 256
HEADER = struct.Struct("<IIBI")  # 0x70, size, 0x2A, XML length in UTF-16 units
XML_START = "<LMSDataContainerHeader".encode("utf-16-le")
# A tile's rows are read in one piece when they span at most this many bytes.
SPAN_READ_BYTES = 16 * 1024 * 1024
# Dimension ids of Leica's format description: frame axes beyond X and Y.
DIMENSIONS = {1: "X", 2: "Y", 3: "Z", 4: "T", 5: "Lambda", 6: "Rotation", 7: "XTSlice",
              8: "TSlice", 9: "ExcitationLambda", 10: "M", 11: "Loop"}  # fmt: skip
# Metres per unit of a dimension's Length.
UNITS = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "\u00b5m": 1e-6, "nm": 1e-9}
# LIF channel tags of RGB samples (Leica stores them B, G, R).
RED, GREEN, BLUE = 1, 2, 3


@dataclass(frozen=True)
class Dimension:
    name: str
    count: int
    bytes_inc: int
    length: float
    unit: str


@dataclass(frozen=True)
class Layout:
    """Where one image's pixels are: its memory block, dimensions and channels."""

    name: str
    offset: int  # of the memory block in the file
    size: int  # of the memory block
    width: int
    height: int
    x_inc: int
    y_inc: int
    others: tuple[Dimension, ...]  # Z, T, ... of more than one value
    channel_incs: tuple[int, ...]  # byte offset of each channel (or RGB sample)
    dtype: np.dtype
    rgb: bool
    pixel_m: tuple[float | None, float | None]
    magnification: float | None

    @property
    def shape(self) -> tuple[Any, ...]:
        others = tuple((d.name, d.count) for d in self.others)
        return (self.width, self.height, len(self.channel_incs), self.rgb, others, self.dtype)

    @property
    def planes(self) -> int:
        count = 1 if self.rgb else len(self.channel_incs)
        for dim in self.others:
            count *= dim.count
        return count


class LifSource(Reader):
    name = "lif"
    priority = PRIORITIES["lif"]
    format_name = "LIF"

    @classmethod
    def can_read(cls, probe: Probe) -> bool:
        """The 0x70 / 0x2A header, then the XML's root element."""
        if len(probe.head) < HEADER.size + len(XML_START):
            return False
        marker, _size, star, _length = HEADER.unpack_from(probe.head)
        return marker == 0x70 and star == 0x2A and probe.head[HEADER.size :].startswith(XML_START)

    def __init__(self, file: ImageFile, settings: Settings) -> None:
        self.file = file
        self.path = file.name
        self._lock = threading.Lock()
        try:
            with liffile.LifFile(FileStream(file)) as lif:
                layouts = [_layout(image) for image in lif.images]
        except (liffile.LifFileError, ValueError, KeyError, IndexError, OSError) as exc:
            file.raise_read_error()
            raise UnsupportedImage(
                f"the file's structure cannot be read: {error_text(exc)}"
            ) from None
        except ElementTree.ParseError:
            raise UnsupportedImage("the file's XML does not parse") from None
        layouts = [layout for layout in layouts if layout is not None]
        if not layouts:
            raise UnsupportedImage("the file holds no image this server reads")
        main = max(layouts, key=lambda layout: layout.width * layout.height * layout.planes)
        self._images = [layout for layout in layouts if layout.shape == main.shape]
        for layout in self._images:
            _check_block(layout, file.size)
        self._init_geometry(main, settings)

    def _init_geometry(self, main: Layout, settings: Settings) -> None:
        self.size_x, self.size_y = main.width, main.height
        check_pixels(self.size_x, self.size_y, settings.max_decode_pixels)
        self.tile_width = self.tile_height = TILE
        self.levels = level_count(self.size_x, self.size_y, TILE, TILE)
        self.dtype = main.dtype
        self.band_count = 3 if main.rgb else 1
        axes = [] if main.rgb else [Axis("IndexC", len(main.channel_incs))]
        axes += [Axis(f"Index{dim.name}", dim.count) for dim in main.others]
        axes.append(Axis("IndexXY", len(self._images)))
        if main.rgb and not main.others and len(self._images) == 1:
            self.frame_info = None
            self.frame_count = 1
        else:
            self.frame_info = frame_indices(axes)
            self.frame_count = len(self.frame_info)
        mx, my = main.pixel_m
        self.mm_x = mx * 1e3 if mx else None
        self.mm_y = my * 1e3 if my else self.mm_x
        self.magnification = main.magnification or (0.01 / self.mm_x if self.mm_x else None)

    # -- reading ------------------------------------------------------------------------
    def native_level_size(self, z: int, frame: int = 0) -> tuple[int, int] | None:
        return (self.size_x, self.size_y) if z == self.levels - 1 else None

    def frame_offset(self, frame: int) -> tuple[Layout, int]:
        """The image of a frame and the file offset of its first pixel (channel or first
        RGB sample)."""
        info = self.frame_info[frame] if self.frame_info else {}
        layout = self._images[info.get("IndexXY", 0)]
        offset = layout.offset
        if not layout.rgb:
            offset += layout.channel_incs[info.get("IndexC", 0)]
        for dim in layout.others:
            offset += info.get(f"Index{dim.name}", 0) * dim.bytes_inc
        return layout, offset

    def read_tile(self, z: int, x: int, y: int, frame: int = 0) -> RawTile:
        if z != self.levels - 1:
            raise ValueError(f"level {z} is not stored in the file")
        self.check_frame(frame)
        layout, start = self.frame_offset(frame)
        x0, y0 = x * TILE, y * TILE
        width, height = min(TILE, layout.width - x0), min(TILE, layout.height - y0)
        if width <= 0 or height <= 0:
            return RawTile.from_pixels(self.empty_tile())
        pixels = self._read_area(layout, start + y0 * layout.y_inc + x0 * layout.x_inc,
                                 width, height, f"tile x={x} y={y}")  # fmt: skip
        return RawTile.from_pixels(self.pad_tile(pixels))

    def _read_area(
        self, layout: Layout, first: int, width: int, height: int, where: str
    ) -> np.ndarray:
        item = layout.dtype.itemsize
        samples = layout.channel_incs if layout.rgb else (0,)
        row_bytes = (width - 1) * layout.x_inc + max(samples) + item
        span = (height - 1) * layout.y_inc + row_bytes
        if span <= SPAN_READ_BYTES:
            data = self.file.read(first, span)
            rows = [data[row * layout.y_inc : row * layout.y_inc + row_bytes]
                    for row in range(height)]  # fmt: skip
        else:
            rows = [self.file.read(first + row * layout.y_inc, row_bytes) for row in range(height)]
        if any(len(row) != row_bytes for row in rows):
            raise UnsupportedImage(f"LIF: {where} is cut short: the file ends before it")
        block = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(height, row_bytes)
        out = np.empty((height, width, len(samples)), dtype=layout.dtype)
        for band, at in enumerate(samples):
            columns = np.arange(width) * layout.x_inc + at
            picked = block[:, columns[:, None] + np.arange(item)]  # (height, width, item)
            out[:, :, band] = np.ascontiguousarray(picked).view(layout.dtype)[:, :, 0]
        return out

    @property
    def estimated_bytes(self) -> int:
        return 64 * 1024

    def close(self) -> None:
        self.file.close()


def _layout(image: Any) -> Layout | None:
    """The pixel layout an image's XML describes; None for images not read here (FLIM
    histograms, no X and Y, mixed or unknown pixel types, no memory block in the file)."""
    if not isinstance(image, liffile.LifImage):
        return None
    element = image.xml_element
    try:
        block = image.memory_block
    except (IndexError, KeyError):
        log.info("image %r has no memory block in the file; left out", image.name)
        return None
    if block.offset < 0 or block.size <= 0:
        return None
    dims = [_dimension(d) for d in element.findall("./Data/Image/ImageDescription/Dimensions/")]
    by_name = {dim.name: dim for dim in dims}
    if "X" not in by_name or "Y" not in by_name:
        return None
    channels = element.findall("./Data/Image/ImageDescription/Channels/ChannelDescription")
    if not channels:
        return None
    kinds = {(int(c.get("DataType", "0")), int(c.get("Resolution", "8"))) for c in channels}
    if len(kinds) != 1:
        log.info("image %r has channels of several pixel types; left out", image.name)
        return None
    dtype = _dtype(*kinds.pop())
    if dtype is None:
        log.info("image %r has pixels of a type not read here; left out", image.name)
        return None
    incs = tuple(int(c.get("BytesInc", "0")) for c in channels)
    tags = tuple(int(c.get("ChannelTag", "0")) for c in channels)
    x, y = by_name["X"], by_name["Y"]
    rgb = len(channels) == 3 and x.bytes_inc == 3 * dtype.itemsize and set(tags) == {1, 2, 3}
    if rgb:
        incs = tuple(incs[tags.index(tag)] for tag in (RED, GREEN, BLUE))
    others = tuple(d for d in dims if d.name not in ("X", "Y") and d.count > 1)
    return Layout(
        name=image.name,
        offset=block.offset,
        size=block.size,
        width=x.count,
        height=y.count,
        x_inc=x.bytes_inc,
        y_inc=y.bytes_inc,
        others=others,
        channel_incs=incs,
        dtype=dtype,
        rgb=rgb,
        pixel_m=(_pixel_metres(x), _pixel_metres(y)),
        magnification=_magnification(element),
    )


def _dimension(element: ElementTree.Element) -> Dimension:
    dim_id = int(element.get("DimID", "0"))
    return Dimension(
        name=DIMENSIONS.get(dim_id, f"Dim{dim_id}"),
        count=int(element.get("NumberOfElements", "0")),
        bytes_inc=int(element.get("BytesInc", "0")),
        length=float(element.get("Length", "0")),
        unit=element.get("Unit", ""),
    )


def _dtype(data_type: int, resolution: int) -> np.dtype | None:
    """numpy's type of LIF pixels (DataType 0: unsigned integers, 1: floats)."""
    if data_type == 0 and 0 < resolution <= 8:
        return np.dtype("<u1")
    if data_type == 0 and 8 < resolution <= 16:
        return np.dtype("<u2")
    if data_type == 1 and resolution == 32:
        return np.dtype("<f4")
    return None


def _pixel_metres(dim: Dimension) -> float | None:
    """A pixel's size: the dimension's extent over its steps (first to last pixel)."""
    unit = UNITS.get(dim.unit)
    if unit is None or dim.count < 2 or not dim.length > 0 or not math.isfinite(dim.length):
        return None
    return dim.length * unit / (dim.count - 1)


def _magnification(element: ElementTree.Element) -> float | None:
    for setting in element.iter():
        if setting.tag in ("ATLConfocalSettingDefinition", "ATLCameraSettingDefinition"):
            with contextlib.suppress(TypeError, ValueError):
                value = float(setting.get("Magnification") or "")
                if value > 0 and math.isfinite(value):
                    return value
    return None


def _check_block(layout: Layout, file_size: int) -> None:
    """The last pixel the layout addresses lies inside its memory block, and the block
    inside the file (a lying or truncated file is refused when opened)."""
    item = layout.dtype.itemsize
    if min(layout.x_inc, layout.y_inc, *layout.channel_incs) < 0 or layout.x_inc < item:
        raise UnsupportedImage(f"image {layout.name!r} has a negative or overlapping layout")
    last = (layout.width - 1) * layout.x_inc + (layout.height - 1) * layout.y_inc
    last += max(layout.channel_incs) + item
    last += sum((dim.count - 1) * dim.bytes_inc for dim in layout.others)
    if last > layout.size:
        raise UnsupportedImage(
            f"image {layout.name!r} addresses {last} bytes, more than its {layout.size}-byte block"
        )
    if layout.offset + layout.size > file_size:
        raise UnsupportedImage(f"image {layout.name!r} is cut short: the file ends before it")
