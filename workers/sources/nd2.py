"""Nikon ND2 (NIS-Elements), read with the ``nd2`` package: the modern chunked format
(files starting with the chunk magic 0x0ABECEDA, little-endian), uncompressed or
zlib-compressed ("lossless") frames, gray channels or RGB.

Frames as large_image's nd2 source numbers them: channel fastest, then the
experiment's loops from the innermost out (typically z, then stage position, then
time) -- ``IndexC``, ``IndexZ``, ``IndexXY`` (stage positions), ``IndexT``. Only full
resolution is stored (ND2 has no pyramids): tilecast synthesizes the other levels.

Reading: a local file is handed to ``nd2`` as an open descriptor of the registered file,
which maps it into memory; an uncompressed frame is then a view of the file and a tile
copies only its own rows (no whole-plane read). A compressed frame, or any frame of a
file that is not local (read through positioned reads), can only be decoded whole: it
is decoded once into a bounded cache of planes per reader
(workers/sources/planes.py), and a file whose planes could not fit it is refused at
open. The legacy JPEG 2000-based ND2 (NIS-Elements before 4) is not recognised here: it
starts as a JPEG 2000 file and is left to the readers after this one (large_image's nd2
source refuses it too).
"""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings

import nd2
import numpy as np

from tilecast.common.errors import UnsupportedImage
from tilecast.common.grid import level_count
from tilecast.common.settings import Settings
from tilecast.workers.rawtile import RawTile
from tilecast.workers.sources.files import FileStream, ImageFile
from tilecast.workers.sources.planes import (
    Axis,
    PlaneCache,
    check_pixels,
    check_plane_bytes,
    error_text,
    frame_indices,
)
from tilecast.workers.sources.reader import PRIORITIES, Probe, Reader

log = logging.getLogger(__name__)

TILE = 256
MAGIC = b"\xda\xce\xbe\x0a"  # 0x0ABECEDA, little-endian: every modern ND2 chunk's start
SIGNATURE = b"ND2 FILE SIGNATURE CHUNK NAME01!"  # the name of the file's first chunk
# The nd2 axes of a frame itself; every other axis of ``sizes`` is an experiment loop.
FRAME_AXES = ("C", "Y", "X", "S")
# large_image's keys for the loop axes (P: stage positions).
AXIS_KEYS = {"P": "IndexXY", "T": "IndexT", "Z": "IndexZ"}
# Where a frame's pixels start in its ImageDataSeq chunk (nd2's reader reads them there).
IMAGE_DATA_OFFSET = 24 + 4072


class Nd2Source(Reader):
    name = "nd2"
    priority = PRIORITIES["nd2"]
    format_name = "ND2"

    @classmethod
    def can_read(cls, probe: Probe) -> bool:
        return probe.startswith(MAGIC) and probe.head[16:48] == SIGNATURE

    def __init__(self, file: ImageFile, settings: Settings) -> None:
        self.file = file
        self.path = file.name
        self._lock = threading.Lock()
        self._planes = PlaneCache()
        self._handle = _handle(file)
        try:
            self._nd2 = _open(self._handle)
        except BaseException:
            self._handle.close()
            raise
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._init_layout(settings)
        except UnsupportedImage:
            self._close_nd2()
            raise
        except Exception as exc:  # nd2 parses lazily: any parse error is a broken file
            self._close_nd2()
            file.raise_read_error()
            raise UnsupportedImage(
                f"the file's metadata cannot be read: {error_text(exc)}"
            ) from None

    # -- opening ------------------------------------------------------------------------
    def _init_layout(self, settings: Settings) -> None:
        f = self._nd2
        sizes = dict(f.sizes)
        attributes = f.attributes
        self.size_x, self.size_y = int(sizes["X"]), int(sizes["Y"])
        check_pixels(self.size_x, self.size_y, settings.max_decode_pixels)
        components = f.components_per_channel
        if components not in (1, 3):
            raise UnsupportedImage(f"frames of {components} components per channel")
        self.band_count = components
        self.dtype = np.dtype(f.dtype)
        if self.dtype.kind not in "uf" or self.dtype.itemsize > 4:
            raise UnsupportedImage(f"pixels of type {self.dtype} are not read here")
        self.tile_width = self.tile_height = TILE
        self.levels = level_count(self.size_x, self.size_y, TILE, TILE)
        self._channels = int(sizes.get("C", 1))
        self._loops = [(axis, int(count)) for axis, count in sizes.items()
                       if axis not in FRAME_AXES]  # fmt: skip
        axes = [Axis("IndexC", self._channels)]
        axes += [Axis(AXIS_KEYS.get(axis, f"Index{axis}"), count)
                 for axis, count in reversed(self._loops)]  # fmt: skip
        self.frame_info = frame_indices(axes)
        self.frame_count = len(self.frame_info)
        self._sequence_count = int(attributes.sequenceCount)
        self._plane_bytes = self.size_y * int(attributes.widthBytes or 0)
        if attributes.compressionType == "lossy":  # nd2 would hand out the coded bytes
            raise UnsupportedImage("lossy-compressed frames are not read here")
        compressed = attributes.compressionType is not None
        mapped = getattr(getattr(f, "_rdr", None), "_mmap", None) is not None
        # An uncompressed frame of a memory-mapped file is a view: tiles read by area.
        self.area_reads = mapped and not compressed
        if not self.area_reads:
            check_plane_bytes(self.size_y * self.size_x * self._channels * components
                              * self.dtype.itemsize)  # fmt: skip
        if not compressed:
            self._check_frames_inside()
        self._init_metadata()

    def _check_frames_inside(self) -> None:
        """Every uncompressed frame the chunk map lists lies inside the file (nd2 reads
        a frame past the end as black; a truncated file is refused here instead)."""
        chunks = getattr(getattr(self._nd2, "_rdr", None), "chunkmap", None) or {}
        for name, (offset, _size) in chunks.items():
            end = offset + IMAGE_DATA_OFFSET + self._plane_bytes
            if name.startswith(b"ImageDataSeq|") and end > self.file.size:
                number = name[13:-1].decode(errors="replace")
                raise UnsupportedImage(f"frame {number} is cut short: the file ends before it")

    def _init_metadata(self) -> None:
        f = self._nd2
        try:
            metadata = f.metadata
            channels = metadata.channels or []
        except (ValueError, KeyError, TypeError, AttributeError):
            log.info("%s: the ND2 channel metadata does not parse; none used", self.path)
            channels = []
        names = [channel.channel.name for channel in channels]
        if len(names) >= self._channels and all(names[: self._channels]):
            self.channel_names = names[: self._channels]
        voxel = f.voxel_size()
        self.mm_x = voxel.x * 1e-3 if voxel.x and voxel.x > 0 else None
        self.mm_y = voxel.y * 1e-3 if voxel.y and voxel.y > 0 else self.mm_x
        recorded = channels[0].microscope.objectiveMagnification if channels else None
        self.magnification = recorded or (0.01 / self.mm_x if self.mm_x else None)

    # -- reading ------------------------------------------------------------------------
    def native_level_size(self, z: int, frame: int = 0) -> tuple[int, int] | None:
        return (self.size_x, self.size_y) if z == self.levels - 1 else None

    def sequence_index(self, frame: int) -> tuple[int, int]:
        """The nd2 sequence frame holding a frame, and the frame's channel in it."""
        info = self.frame_info[frame] if self.frame_info else {}
        index = 0
        for axis, count in self._loops:  # outermost first: the last loop is fastest
            index = index * count + info.get(AXIS_KEYS.get(axis, f"Index{axis}"), 0)
        return index, info.get("IndexC", 0)

    def read_tile(self, z: int, x: int, y: int, frame: int = 0) -> RawTile:
        if z != self.levels - 1:
            raise ValueError(f"level {z} is not stored in the file")
        self.check_frame(frame)
        sequence, channel = self.sequence_index(frame)
        x0, y0 = x * TILE, y * TILE
        width, height = min(TILE, self.size_x - x0), min(TILE, self.size_y - y0)
        if width <= 0 or height <= 0:
            return RawTile.from_pixels(self.empty_tile())
        if self.area_reads:
            plane = self._read_frame(sequence, f"tile x={x} y={y}")
        else:
            plane = self._planes.get(
                sequence, lambda: np.array(self._read_frame(sequence, f"frame {frame}"))
            )
        pixels = plane[channel, y0 : y0 + height, x0 : x0 + width]
        return RawTile.from_pixels(self.pad_tile(np.array(pixels, dtype=self.dtype)))

    def _read_frame(self, sequence: int, where: str) -> np.ndarray:
        """Sequence frame ``sequence`` as (channels, height, width, components): a view
        of the mapped file when uncompressed and local, else decoded."""
        if sequence >= self._sequence_count:  # an acquisition cut short: black
            shape = (self._channels, self.size_y, self.size_x, self.band_count)
            return np.zeros(shape, dtype=self.dtype)
        try:
            with self._lock:
                if self._nd2.closed:
                    raise ValueError("the ND2 reader is closed")
                data = self._nd2.read_frame(sequence)
        except (ValueError, OSError, KeyError, IndexError) as exc:
            self.file.raise_read_error()
            raise UnsupportedImage(f"ND2: {where} cannot be read: {error_text(exc)}") from None
        except Exception as exc:  # zlib.error and the like: a damaged frame
            raise UnsupportedImage(f"ND2: {where} cannot be decoded: {error_text(exc)}") from None
        shape = (self._channels, self.size_y, self.size_x, self.band_count)
        if data.size != np.prod(shape):
            raise UnsupportedImage(f"ND2: {where} holds {data.size} values, not {np.prod(shape)}")
        return data.reshape(shape)

    @property
    def estimated_bytes(self) -> int:
        return self._planes.nbytes + 1024 * 1024

    def close(self) -> None:
        self._close_nd2()
        self._planes.clear()
        self.file.close()

    def _close_nd2(self) -> None:
        with self._lock:
            if not self._nd2.closed:
                self._nd2.close()
            self._handle.close()


def _handle(file: ImageFile) -> io.RawIOBase:
    """What nd2 reads from: a descriptor of the registered local file (nd2 maps it into
    memory), else positioned reads through the ImageFile."""
    fileno = getattr(file, "fileno", None)
    if file.local_path is not None and fileno is not None:
        return io.FileIO(os.dup(fileno()), "rb")
    return FileStream(file)


def _open(handle: io.RawIOBase) -> nd2.ND2File:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return nd2.ND2File(handle)
    except Exception as exc:
        raise UnsupportedImage(f"nd2 cannot open it: {error_text(exc)}") from None
