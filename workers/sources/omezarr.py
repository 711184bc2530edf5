"""OME-Zarr (OME-NGFF 0.4 on zarr v2, 0.5 on zarr v3), read with the ``zarr`` library from
a local directory, a ``.zip`` store (local or remote, read by range) or a URL prefix in an
object store or behind HTTP (workers/sources/zarrprefix.py; docs/READERS.md, "OME-Zarr").

- Recognised by content: a directory source holding zarr metadata (``.zattrs``,
  ``.zgroup``, ``zarr.json``) at its root, or a zip whose central directory lists them at
  its root or one folder down (workers/sources/zarrstore.py). A zarr store without NGFF
  image, plate or bioformats2raw metadata is passed on (and ends a 415).
- Levels: the multiscale's datasets. A dataset is a native level when its x and y sizes
  are the full resolution's halved k times (rounded either way) and its declared scale
  agrees; any other dataset (a 3x reduction, a z-reduced one) is not used, and the levels
  it would have been are synthesized from the next finer native level.
- Axes: ``t``, ``c``, ``z``, ``y``, ``x`` in any order. As large_image's zarr source does,
  ``c`` is the bands of a pixel when it holds 1, 3 or 4 unnamed channels, else an axis of
  frames; frames run ``c`` fastest, then ``z``, then ``t``, then the fields of an HCS plate
  (``IndexXY``), and carry large_image's ``IndexC``/``IndexZ``/``IndexT``/``IndexXY``.
- Tiles: large_image's tile size for the store (the chunk's width and height when 128 to
  1024, else 512), assembled from the decoded chunks they overlap, through a per-reader
  cache of decoded chunks (workers/sources/chunkcache.py) that the tiles and frames sharing
  a chunk share.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import zarr

from tilecast.common.errors import TilecastError, UnsupportedImage
from tilecast.workers.sources import ngff
from tilecast.workers.sources.chunkcache import ChunkCache
from tilecast.workers.sources.files import ImageFile, KeyedDirectory
from tilecast.workers.sources.reader import (
    PRIORITIES,
    Probe,
    RawTile,
    Reader,
    ReaderDeclined,
    Settings,
    level_count,
)
from tilecast.workers.sources.zarrprefix import PrefixStore
from tilecast.workers.sources.zarrstore import (
    MAX_ZIP_ENTRIES,
    METADATA_NAMES,
    ZIP_ENTRY_BYTES,
    ZIP_MAGIC,
    ChunkLimits,
    DirectoryStore,
    PlainChunks,
    ZipFileStore,
    ZipLayout,
    chunk_codec,
    plain_chunks,
    zip_zarr_root,
)

log = logging.getLogger(__name__)

# large_image's zarr source: the chunk's size as the tile size when within these, else 512.
TILE_DEFAULT, TILE_MIN, TILE_MAX = 512, 128, 1024
# A decoded chunk larger than this is refused: one chunk is decoded whole to serve a tile.
MAX_CHUNK_BYTES = 64 * 1024 * 1024
# The decoded chunks one reader keeps: room for a few of its largest chunks, bounded.
CHUNK_CACHE_MIN, CHUNK_CACHE_MAX = 16 * 1024 * 1024, 128 * 1024 * 1024
# The frames metadata lists every frame: beyond this many, the image is refused.
MAX_FRAMES = 100_000
DTYPES = frozenset(
    np.dtype(name)
    for name in ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
)
# Frame axes in large_image's stride order: channels vary fastest, then z, then t.
FRAME_AXES = ("c", "z", "t")
# How far a dataset's declared scale may stray from its sizes' reduction and still be
# taken as that reduction (ome-zarr-py states the sizes' exact ratio, e.g. 8.0459).
SCALE_TOLERANCE = 0.1


@dataclass(frozen=True)
class _Level:
    """One dataset's array, serving a native level of a field."""

    key: tuple[int, int]  # (field, dataset): the chunk cache's name for the array
    name: str  # "dataset s0", "field A/1/0, dataset s0": what messages call it
    path: str  # the array's path in the store
    array: Any  # zarr.Array
    plain: PlainChunks | None  # its chunks read without zarr, when they are that simple
    shape: tuple[int, ...]
    chunks: tuple[int, ...]  # the chunks read and cached (a sharded array's inner ones)


@dataclass(frozen=True)
class _Field:
    """One NGFF image -- the store's, or one field of a plate's well -- by tilecast level
    (None where the level is synthesized)."""

    levels: tuple[_Level | None, ...]


class OmeZarrSource(Reader):
    name = "ome-zarr"
    priority = PRIORITIES["ome-zarr"]
    format_name = "OME-Zarr"

    @classmethod
    def can_read(cls, probe: Probe) -> bool:
        if probe.is_directory:
            return bool(METADATA_NAMES.intersection(probe.entries()))
        if not probe.startswith(ZIP_MAGIC):
            return False
        return _zip_layout(probe) is not None

    @classmethod
    def open(cls, probe: Probe, settings: Settings) -> OmeZarrSource:
        limits = ChunkLimits()
        file = probe.file
        store: DirectoryStore | ZipFileStore | PrefixStore
        if probe.is_directory:
            if isinstance(file, KeyedDirectory):
                store, root, entries = PrefixStore(file, limits), "", 0
            elif file.local_path is not None:
                store, root, entries = DirectoryStore(file.local_path, limits), "", 0
            else:
                raise UnsupportedImage("this kind of directory is not read as a store")
        else:
            layout = _zip_layout(probe)
            assert layout is not None
            if layout.entries > MAX_ZIP_ENTRIES:
                raise UnsupportedImage(f"the zip holds more than {MAX_ZIP_ENTRIES} entries")
            store = ZipFileStore(file, limits)
            try:
                store.read_directory()
            except (OSError, ValueError) as exc:  # zipfile.BadZipFile is a ValueError
                raise UnsupportedImage(
                    f"the zip cannot be read ({_short(exc, file.name)})"
                ) from None
            root, entries = layout.root, layout.entries
        try:
            return cls(file, settings, store, root, limits, zip_entries=entries)
        except BaseException:
            store.close()
            raise

    def __init__(
        self,
        file: ImageFile,
        settings: Settings,
        store: DirectoryStore | ZipFileStore | PrefixStore,
        root: str,
        limits: ChunkLimits,
        zip_entries: int = 0,
    ) -> None:
        self.file = file
        self.path = file.name
        self._store = store
        self._limits = limits
        self._zip_entries = zip_entries
        self._lock = threading.Lock()
        self._zarr_format: Literal[2, 3] | None = None
        self._field_paths = self._find_fields(root)
        image, arrays = self._read_field(0)
        self._image = image
        self._geometry(image, arrays[0], settings)
        self._fields: dict[int, _Field] = {0: self._levels_of(0, image, arrays)}
        self._frames(image)
        largest = max(
            math.prod(level.chunks) * self.dtype.itemsize
            for level in self._fields[0].levels
            if level is not None
        )
        self._chunks = ChunkCache(min(CHUNK_CACHE_MAX, max(CHUNK_CACHE_MIN, 4 * largest)))

    # -- the store's images ---------------------------------------------------------------
    def _find_fields(self, root: str) -> list[str]:
        """The store's images: its root image, a bioformats2raw layout's first series,
        or every field of every well of an HCS plate, in the plate's order."""
        attributes = self._attributes(root, "the store's root group")
        kind = ngff.group_kind(attributes)
        if kind == "image":
            return [root]
        if kind == "series":
            return [_join(root, "0")]
        if kind == "plate":
            return self._plate_fields(root, attributes)
        if kind == "well":
            raise ReaderDeclined("one well of an HCS plate (the plate is the image)")
        raise ReaderDeclined("a zarr store without OME-NGFF image or plate metadata")

    def _plate_fields(self, root: str, attributes: dict[str, Any]) -> list[str]:
        try:
            plate = ngff.parse_plate(attributes)
            paths: list[str] = []
            for well in plate.wells:
                well_path = _join(root, well)
                fields = ngff.parse_well(self._attributes(well_path, f"well {well}"))
                paths += [_join(well_path, name) for name in fields]
                if len(paths) > MAX_FRAMES:
                    raise UnsupportedImage(f"the HCS plate has more than {MAX_FRAMES} fields")
        except ngff.NgffError as exc:
            raise UnsupportedImage(f"HCS plate: {exc}") from None
        return paths

    def _attributes(self, path: str, what: str) -> dict[str, Any]:
        try:
            group = zarr.open_group(self._store, path=path, mode="r", zarr_format=self._zarr_format)
            attributes = group.attrs.asdict()
            # The root's format is every node's: zarr then asks for one format's
            # documents only (a round trip or two fewer per array of a remote store).
            self._zarr_format = self._zarr_format or group.metadata.zarr_format
        except TilecastError:
            raise
        except Exception as exc:
            raise UnsupportedImage(
                f"{what} is not a readable zarr group ({self._why(exc)})"
            ) from None
        return dict(attributes)

    def _field_name(self, number: int) -> str:
        return "the image" if len(self._field_paths) == 1 else f"field {self._field_paths[number]}"

    def _read_field(self, number: int) -> tuple[ngff.Image, list[Any]]:
        """Field ``number``'s NGFF metadata and its datasets' arrays (opened: metadata
        read and checked, no chunk read)."""
        path = self._field_paths[number]
        what = self._field_name(number)
        try:
            image = ngff.parse_image(self._attributes(path, what))
        except ngff.NgffError as exc:
            raise UnsupportedImage(f"{what}: {exc}") from None
        arrays = [
            self._open_array(_join(path, dataset.path), image, f"{what}, dataset {dataset.path}")
            for dataset in image.multiscale.datasets
        ]
        return image, arrays

    def _open_array(self, path: str, image: ngff.Image, what: str) -> Any:
        try:
            array = zarr.open_array(self._store, path=path, mode="r", zarr_format=self._zarr_format)
            shape = tuple(int(n) for n in array.shape)
            chunks = tuple(int(n) for n in array.chunks)
            stored_chunks = tuple(int(n) for n in (array.shards or array.chunks))
            dtype = np.dtype(array.dtype)
        except TilecastError:
            raise
        except Exception as exc:
            raise UnsupportedImage(
                f"{what} is not a readable zarr array ({self._why(exc)})"
            ) from None
        if len(shape) != len(image.multiscale.axes):
            raise UnsupportedImage(
                f"{what} has {len(shape)} dimensions and the multiscale "
                f"{len(image.multiscale.axes)} axes"
            )
        if len(chunks) != len(shape) or min(chunks) <= 0 or min(shape) <= 0:
            raise UnsupportedImage(f"{what} has a shape of {shape} in chunks of {chunks}")
        if dtype.newbyteorder("=") not in DTYPES:
            raise UnsupportedImage(f"{what} holds {dtype}, which is not read")
        if math.prod(stored_chunks) * dtype.itemsize > MAX_CHUNK_BYTES * 64:
            raise UnsupportedImage(f"{what} is stored in shards too large to read")
        if math.prod(chunks) * dtype.itemsize > MAX_CHUNK_BYTES:
            raise UnsupportedImage(
                f"{what} is stored in chunks of {math.prod(chunks) * dtype.itemsize} bytes "
                f"(at most {MAX_CHUNK_BYTES} are read)"
            )
        try:
            codec = chunk_codec(array.metadata, stored_chunks, dtype.itemsize)
        except UnsupportedImage as exc:
            raise UnsupportedImage(f"{what}: {exc.message}") from None
        self._limits.register(path, codec)
        return array

    # -- geometry -----------------------------------------------------------------------
    def _geometry(self, image: ngff.Image, base: Any, settings: Settings) -> None:
        axes = image.multiscale.axes
        self._position = {axis.name: index for index, axis in enumerate(axes)}
        self._axis_names = tuple(axis.name for axis in axes)
        shape = tuple(int(n) for n in base.shape)
        chunks = tuple(int(n) for n in base.chunks)
        self.size_x, self.size_y = shape[self._position["x"]], shape[self._position["y"]]
        if self.size_x * self.size_y > settings.max_decode_pixels:
            raise UnsupportedImage("the image has more pixels than this server decodes")
        self.tile_width = _tile_size(chunks[self._position["x"]])
        self.tile_height = _tile_size(chunks[self._position["y"]])
        self.levels = level_count(self.size_x, self.size_y, self.tile_width, self.tile_height)
        self.dtype = np.dtype(base.dtype).newbyteorder("=")
        self._base_shape = shape
        names = ngff.channel_names(image)
        channels = shape[self._position["c"]] if "c" in self._position else 1
        # large_image's zarr source: 1, 3 or 4 unnamed channels are a pixel's bands.
        self._band_axis = (
            "c" if "c" in self._position and not names and channels in (1, 3, 4) else None
        )
        self.band_count = channels if self._band_axis else 1
        self.channel_names = names
        self.mm_x = ngff.pixel_size_mm(image, "x")
        self.mm_y = ngff.pixel_size_mm(image, "y")
        self.magnification = 0.01 / self.mm_x if self.mm_x else None

    def _levels_of(self, number: int, image: ngff.Image, arrays: list[Any]) -> _Field:
        """Which of a field's datasets serve which levels (see the module docstring)."""
        what = self._field_name(number)
        base_shape = tuple(int(n) for n in arrays[0].shape)
        if number and (
            base_shape != self._base_shape
            or image.multiscale.axes != self._image.multiscale.axes
            or np.dtype(arrays[0].dtype).newbyteorder("=") != self.dtype
        ):
            raise UnsupportedImage(f"{what} differs from the first field in shape, axes or type")
        levels: list[_Level | None] = [None] * self.levels
        datasets = image.multiscale.datasets
        for index, (dataset, array) in enumerate(zip(datasets, arrays, strict=True)):
            shape = tuple(int(n) for n in array.shape)
            chunks = tuple(int(n) for n in array.chunks)
            self._check_dataset(shape, np.dtype(array.dtype), f"{what}, dataset {dataset.path}")
            reduction = self._reduction(shape, dataset.scale, datasets[0].scale)
            if reduction is None:
                log.info(
                    "%s: %s, dataset %s is not a halving; not used", self.path, what, dataset.path
                )
                continue
            z = self.levels - 1 - reduction
            if z >= 0 and levels[z] is None:
                name = f"dataset {dataset.path}"
                if len(self._field_paths) > 1:
                    name = f"{what}, {name}"
                path = _join(self._field_paths[number], dataset.path)
                plain = plain_chunks(array.metadata)
                levels[z] = _Level((number, index), name, path, array, plain, shape, chunks)
        if levels[-1] is None:
            raise UnsupportedImage(f"{what}: the first dataset is not the full resolution")
        return _Field(tuple(levels))

    def _check_dataset(self, shape: tuple[int, ...], dtype: np.dtype, what: str) -> None:
        """A dataset holds the full resolution's channels and times, in its type, and no
        more pixels than it."""
        for axis in ("t", "c"):
            if axis in self._position:
                here, base = shape[self._position[axis]], self._base_shape[self._position[axis]]
                if here != base:
                    raise UnsupportedImage(
                        f"{what} has {here} along {axis}, full resolution {base}"
                    )
        if dtype.newbyteorder("=") != self.dtype:
            raise UnsupportedImage(f"{what} holds {dtype}, full resolution {self.dtype}")
        x, y = self._position["x"], self._position["y"]
        if shape[x] > self._base_shape[x] or shape[y] > self._base_shape[y]:
            raise UnsupportedImage(f"{what} is larger than the full resolution")

    def _reduction(
        self,
        shape: tuple[int, ...],
        scale: tuple[float, ...] | None,
        base_scale: tuple[float, ...] | None,
    ) -> int | None:
        """k when ``shape`` is the full resolution halved k times (rounded either way)
        in x and y, its z and scale agreeing; None for any other dataset."""
        if (
            "z" in self._position
            and shape[self._position["z"]] != self._base_shape[self._position["z"]]
        ):
            return None  # a z-reduced level cannot serve the full resolution's planes
        x, y = self._position["x"], self._position["y"]
        for k in range(0, 64):
            if _halved(self._base_shape[x], k, shape[x]) and _halved(
                self._base_shape[y], k, shape[y]
            ):
                if scale is None or base_scale is None:
                    return k
                declared = (scale[x] / base_scale[x], scale[y] / base_scale[y])
                if all(abs(factor / 2**k - 1) <= SCALE_TOLERANCE for factor in declared):
                    return k
                return None
            if self._base_shape[x] >> k == 0:
                break
        return None

    # -- frames -------------------------------------------------------------------------
    def _frames(self, image: ngff.Image) -> None:
        """Frame axes in large_image's order, strides, and the frames' axis indices."""
        axes = [axis for axis in FRAME_AXES if axis in self._position and axis != self._band_axis]
        counts = {axis: self._base_shape[self._position[axis]] for axis in axes}
        if len(self._field_paths) > 1:
            axes.append("xy")
            counts["xy"] = len(self._field_paths)
        self._frame_axes = tuple(axes)
        self._counts = counts
        self._strides: dict[str, int] = {}
        stride = 1
        for axis in axes:
            self._strides[axis] = stride
            stride *= counts[axis]
        self.frame_count = stride
        if self.frame_count > MAX_FRAMES:
            raise UnsupportedImage(
                f"the image has {self.frame_count} frames (at most {MAX_FRAMES})"
            )
        if self.frame_count > 1:
            self.frame_info = [
                {f"Index{axis.upper()}": self._frame_index(frame, axis) for axis in axes}
                for frame in range(self.frame_count)
            ]

    def _frame_index(self, frame: int, axis: str) -> int:
        return (frame // self._strides[axis]) % self._counts[axis]

    # -- reading --------------------------------------------------------------------------
    def _field(self, number: int) -> _Field:
        with self._lock:
            known = self._fields.get(number)
        if known is not None:
            return known
        try:
            image, arrays = self._read_field(number)
            opened = self._levels_of(number, image, arrays)
        except UnsupportedImage as exc:
            raise _named(exc) from None
        with self._lock:
            return self._fields.setdefault(number, opened)

    def _field_of(self, frame: int) -> int:
        return self._frame_index(frame, "xy") if "xy" in self._strides else 0

    def native_level_size(self, z: int, frame: int = 0) -> tuple[int, int] | None:
        if not 0 <= z < self.levels:
            return None
        level = self._field(self._field_of(frame)).levels[z]
        if level is None:
            return None
        return level.shape[self._position["x"]], level.shape[self._position["y"]]

    def read_tile(self, z: int, x: int, y: int, frame: int = 0) -> RawTile:
        level = self._field(self._field_of(frame)).levels[z]
        if level is None:
            raise ValueError(f"level {z} of frame {frame} is not stored in the file")
        width, height = level.shape[self._position["x"]], level.shape[self._position["y"]]
        x0, y0 = x * self.tile_width, y * self.tile_height
        x1, y1 = min(width, x0 + self.tile_width), min(height, y0 + self.tile_height)
        if x1 <= x0 or y1 <= y0:
            return RawTile.from_pixels(self.empty_tile())
        indices = {
            axis: self._frame_index(frame, axis) for axis in self._frame_axes if axis != "xy"
        }
        return RawTile.from_pixels(self.pad_tile(self._region(level, x0, y0, x1, y1, indices)))

    def _region(
        self, level: _Level, x0: int, y0: int, x1: int, y1: int, indices: dict[str, int]
    ) -> np.ndarray:
        """Pixels [y0, y1) x [x0, x1) of ``level`` at the frame's ``indices``, as
        (height, width, bands), assembled from the chunks they overlap."""
        ranges: list[range] = []
        for dimension, chunk in enumerate(level.chunks):
            axis = self._axis_at(dimension)
            if axis == "x":
                ranges.append(range(x0 // chunk, (x1 - 1) // chunk + 1))
            elif axis == "y":
                ranges.append(range(y0 // chunk, (y1 - 1) // chunk + 1))
            elif axis == self._band_axis:
                ranges.append(range(0, (self.band_count - 1) // chunk + 1))
            else:
                ranges.append(range(indices[axis] // chunk, indices[axis] // chunk + 1))
        box = (x0, y0, x1, y1)
        every = _product(ranges)
        if len(every) == 1:
            # One chunk holds the whole area (chunks as large as tiles or larger: the usual
            # layout): its part is copied out as it is, not into a zero-filled tile (about
            # 0.04 ms of a 1 ms read of a 512-pixel uint16 tile). A copy: the cached chunk
            # is shared.
            part, _target = self._part(level, every[0], self._chunk(level, every[0]), box, indices)
            return np.array(part, order="C")
        out = np.zeros((y1 - y0, x1 - x0, self.band_count), dtype=self.dtype)
        for coords in every:
            part, target = self._part(level, coords, self._chunk(level, coords), box, indices)
            out[target["y"], target["x"], target.get("band", slice(None))] = part
        return out

    def _chunk(self, level: _Level, coords: tuple[int, ...]) -> np.ndarray:
        """The decoded chunk at ``coords``, through the reader's chunk cache."""
        return self._chunks.get((level.key, coords), lambda: self._read_chunk(level, coords))

    def _part(
        self,
        level: _Level,
        coords: tuple[int, ...],
        chunk: np.ndarray,
        box: tuple[int, int, int, int],
        indices: dict[str, int],
    ) -> tuple[np.ndarray, dict[str, slice]]:
        """The part of ``chunk`` (at chunk ``coords``) inside ``box``, as a (height, width,
        bands) view, and where it goes in the area: slices by ``y``, ``x`` and, when the
        chunk holds some of the bands, ``band``."""
        x0, y0, x1, y1 = box
        selection: list[slice | int] = []
        kept: list[str] = []
        target: dict[str, slice] = {}
        for dimension, (number, size) in enumerate(zip(coords, level.chunks, strict=True)):
            axis, start = self._axis_at(dimension), number * size
            if axis in ("x", "y"):
                low, high = (x0, x1) if axis == "x" else (y0, y1)
                first, last = max(low, start), min(high, start + size)
                selection.append(slice(first - start, last - start))
                target[axis] = slice(first - low, last - low)
                kept.append(axis)
            elif axis == self._band_axis:
                last = min(self.band_count, start + size)
                selection.append(slice(0, last - start))
                target["band"] = slice(start, last)
                kept.append("band")
            else:
                selection.append(indices[axis] - start)
        part = chunk[tuple(selection)]
        if "band" not in kept:
            part, kept = part[..., np.newaxis], [*kept, "band"]
        return np.transpose(part, [kept.index(name) for name in ("y", "x", "band")]), target

    def _axis_at(self, dimension: int) -> str:
        return self._axis_names[dimension]

    def _read_chunk(self, level: _Level, coords: tuple[int, ...]) -> np.ndarray:
        """One chunk, decoded (cut at the array's edge), in native byte order."""
        selection = tuple(
            slice(number * size, min(extent, (number + 1) * size))
            for number, size, extent in zip(coords, level.chunks, level.shape, strict=True)
        )
        chunk = f"chunk {'.'.join(map(str, coords))} of {level.name}"
        try:
            if level.plain is not None:
                pixels = self._read_plain(level, level.plain, coords, selection)
            else:
                pixels = np.asarray(level.array[selection])
        except UnsupportedImage as exc:  # refused by the store's bounds
            raise _named(exc, chunk) from None
        except TilecastError:
            raise
        except Exception as exc:
            raise _named(UnsupportedImage(f"cannot be decoded ({self._why(exc)})"), chunk) from None
        expected = tuple(s.stop - s.start for s in selection)
        if pixels.shape != expected:
            raise _named(UnsupportedImage(f"decodes to {pixels.shape}, not {expected}"), chunk)
        return pixels.astype(self.dtype, copy=False)

    def _read_plain(
        self,
        level: _Level,
        plain: PlainChunks,
        coords: tuple[int, ...],
        selection: tuple[slice, ...],
    ) -> np.ndarray:
        """A chunk read and decoded here (PlainChunks), cut at the array's edge."""
        data = self._store.read(plain.key(level.path, coords), None)
        full = plain.fill(level.chunks) if data is None else plain.pixels(data, level.chunks)
        return full[tuple(slice(0, s.stop - s.start) for s in selection)]

    def _why(self, exc: BaseException) -> str:
        return _short(exc, self.path, os.path.realpath(self.path))

    # -- the rest of the interface --------------------------------------------------------
    @property
    def estimated_bytes(self) -> int:
        return 256 * 1024 + self._chunks.capacity + self._zip_entries * ZIP_ENTRY_BYTES

    def close(self) -> None:
        self._chunks.clear()
        self._store.close()
        self.file.close()


def _named(error: UnsupportedImage, where: str = "") -> UnsupportedImage:
    """``error`` as a client sees it from a tile: the format first (the registry adds it
    to errors raised while opening), then what was read."""
    message = f"{where}: {error.message}" if where else error.message
    label = f"{OmeZarrSource.format_name}: "
    return type(error)(message if message.startswith(label) else label + message)


def _zip_layout(probe: Probe) -> ZipLayout | None:
    """The zipped store's layout, read once per probe."""
    return probe.shared("zip-zarr", zip_zarr_root)


def _tile_size(chunk: int) -> int:
    return chunk if TILE_MIN <= chunk <= TILE_MAX else TILE_DEFAULT


def _halved(full: int, times: int, size: int) -> bool:
    """Whether ``size`` is ``full`` halved ``times`` times, rounded down or up."""
    return full // 2**times <= size <= -(-full // 2**times)


def _join(*parts: str) -> str:
    return "/".join(part.strip("/") for part in parts if part)


def _product(ranges: list[range]) -> list[tuple[int, ...]]:
    combos: list[tuple[int, ...]] = [()]
    for values in ranges:
        combos = [(*combo, value) for combo in combos for value in values]
    return combos


def _short(exc: BaseException, *locations: str) -> str:
    """An exception's message for a client: its first line, at most 200 characters, with
    the store's ``locations`` taken out (clients never see a path)."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    for location in sorted(filter(None, locations), key=len, reverse=True):
        text = text.replace(location, "")
    return text[:200]
