"""Where an image's pixels sit in its OME-Zarr view (docs/EXPORTS.md): its axes, the
shape and chunks of each dataset, and which tile of which frame a chunk key names.

Axes, in NGFF 0.4's order (time, channel, space): ``t`` when the image has more than
one time point, ``c`` always, ``z`` when it has more than one plane, then ``y``,
``x``. They come from the frames' ``IndexT``, ``IndexC`` and ``IndexZ`` (large_image's
frame metadata). A frame carries all its bands, so ``c`` counts channels times bands
(an RGB slide: 3; three single-band channels: 3; two RGB channels: 6) and its chunks
are one frame's bands. Frames described by other axes as well (``IndexXY`` positions,
...) or by none (a plain multi-page file) are laid along ``t`` in large_image's
``Index`` order, with their channels still on ``c`` when those form a full grid, else
one frame per ``t``.

Datasets follow NGFF: ``0`` is the full resolution and each next one halves it, so
dataset ``p`` is tilecast's level ``levels - 1 - p``, of ``ceil(size / 2**p)`` pixels
a side. Chunks are tilecast's tiles (``tileHeight`` x ``tileWidth``, 256 for most
files), so a chunk is exactly one tile of one frame and is cached like one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tilecast.common.errors import NotFound, UnsupportedImage
from tilecast.common.grid import Grid

AXIS_T, AXIS_C, AXIS_Z = "t", "c", "z"
# large_image's frame axis keys of the axes NGFF names.
_FRAME_KEYS = {"IndexT": AXIS_T, "IndexC": AXIS_C, "IndexZ": AXIS_Z}
# NGFF 0.4 orders the axes by type: time, channel, then space.
_AXIS_ORDER = (AXIS_T, AXIS_C, AXIS_Z)
# numpy's names of the data types tilecast's readers hand out -> zarr v2's ``dtype``
# (little-endian, as the chunks are written).
ZARR_DTYPES: Mapping[str, str] = {
    "uint8": "|u1",
    "int8": "|i1",
    "uint16": "<u2",
    "int16": "<i2",
    "uint32": "<u4",
    "int32": "<i4",
    "float32": "<f4",
    "float64": "<f8",
}
# A chunk index is a decimal number; more digits than any image has tiles is no index.
_MAX_INDEX_DIGITS = 9


@dataclass(frozen=True)
class ChunkPlace:
    """What a chunk key names: tile (z, x, y) of ``frame``."""

    frame: int
    z: int
    x: int
    y: int


@dataclass(frozen=True)
class ZarrLayout:
    """The OME-Zarr view of one image's metadata (one generation of it)."""

    grid: Grid
    dtype: str  # numpy's name
    bands: int
    # The frame axes present, in NGFF order, with their sizes (c counts channel frames,
    # not bands: the array's c is ``channels * bands``).
    frame_axes: tuple[tuple[str, int], ...]
    # Frame index of each combination of frame-axis indices (in frame_axes' order).
    frames: Mapping[tuple[int, ...], int]
    channel_names: tuple[str, ...] | None = None
    mm_x: float | None = None
    mm_y: float | None = None

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> ZarrLayout:
        """The layout of a metadata record (``/item/{id}/tiles``'s fields)."""
        dtype = str(meta.get("dtype") or "uint8")
        if dtype not in ZARR_DTYPES:
            raise UnsupportedImage(f"the image's data type {dtype} has no OME-Zarr view")
        axes, frames = frame_layout(meta.get("frames") or [], meta.get("IndexRange") or {})
        names = meta.get("channels")
        return cls(
            grid=Grid.from_metadata(meta),
            dtype=dtype,
            bands=max(1, int(meta.get("bandCount") or 1)),
            frame_axes=axes,
            frames=frames,
            channel_names=tuple(str(n) for n in names) if names else None,
            mm_x=_positive(meta.get("mm_x")),
            mm_y=_positive(meta.get("mm_y")),
        )

    # -- the arrays ---------------------------------------------------------------------
    @property
    def axis_names(self) -> tuple[str, ...]:
        return (*(name for name, _ in self.frame_axes), "y", "x")

    @property
    def channels(self) -> int:
        """How many channel frames ``c`` holds (each of ``bands`` bands)."""
        return dict(self.frame_axes)[AXIS_C]

    @property
    def datasets(self) -> int:
        return self.grid.levels

    def level_of(self, dataset: int) -> int:
        """tilecast's level of zarr dataset ``dataset``."""
        return self.grid.levels - 1 - dataset

    def shape(self, dataset: int) -> list[int]:
        width, height = self.grid.level_size(self.level_of(dataset))
        return [*self._frame_extent(), height, width]

    def chunks(self) -> list[int]:
        sizes = [self.bands if name == AXIS_C else 1 for name, _ in self.frame_axes]
        return [*sizes, self.grid.tile_height, self.grid.tile_width]

    def _frame_extent(self) -> list[int]:
        return [size * self.bands if name == AXIS_C else size for name, size in self.frame_axes]

    # -- chunk keys ---------------------------------------------------------------------
    def dataset_of(self, name: str) -> int | None:
        """The dataset a path segment names (``"0"`` ... ), or None."""
        index = _index(name)
        return index if index is not None and index < self.datasets else None

    def locate(self, dataset: int, key: Sequence[str]) -> ChunkPlace:
        """The tile a chunk key (the segments after the dataset: one per axis) names;
        NotFound for a key that names no chunk of the array (zarr readers take a 404 as
        a chunk that was never written, so only keys outside the array answer it)."""
        names = self.axis_names
        indices = [_index(part) for part in key]
        if len(key) != len(names) or any(i is None for i in indices):
            raise NotFound(
                f"a chunk key of dataset {dataset} is {len(names)} numbers ({'/'.join(names)})",
                parameter="key",
            )
        found = [i for i in indices if i is not None]
        z = self.level_of(dataset)
        across, down = self.grid.tiles_at(z)
        extents = [size for _, size in self.frame_axes] + [down, across]
        for name, index, extent in zip(names, found, extents, strict=True):
            if index >= extent:
                raise NotFound(
                    f"chunk index {name}={index} is outside dataset {dataset} (0 to {extent - 1})",
                    parameter="key",
                )
        frame_index = tuple(found[: len(self.frame_axes)])
        return ChunkPlace(self.frames[frame_index], z, found[-1], found[-2])


def frame_layout(
    frames: Sequence[Mapping[str, Any]], index_range: Mapping[str, int]
) -> tuple[tuple[tuple[str, int], ...], dict[tuple[int, ...], int]]:
    """The frame axes (name, size) and the frame of each index combination."""
    if len(frames) <= 1:
        return ((AXIS_C, 1),), {(0,): 0}
    if set(index_range) <= set(_FRAME_KEYS):
        named = [(key, axis) for key, axis in _FRAME_KEYS.items() if key in index_range]
        layout = _grid_of(
            frames, named if "IndexC" in index_range else [*named, ("IndexC", AXIS_C)]
        )
        if layout is not None:
            return layout
    # Other axes, or frames no axis describes: along t in large_image's Index order.
    layout = _grid_of(frames, [("Index", AXIS_T), ("IndexC", AXIS_C)])
    if layout is not None:
        return layout
    return ((AXIS_T, len(frames)), (AXIS_C, 1)), {(n, 0): n for n in range(len(frames))}


def _grid_of(
    frames: Sequence[Mapping[str, Any]], axes: Sequence[tuple[str, str]]
) -> tuple[tuple[tuple[str, int], ...], dict[tuple[int, ...], int]] | None:
    """The layout placing each frame by the index keys ``axes`` (key, axis name) when
    the frames fill that grid exactly once each, else None. Axes of one value are left
    out, but for ``c``, which is always there (every ``axes`` names it)."""
    try:
        indices = [tuple(int(frame.get(key) or 0) for key, _ in axes) for frame in frames]
    except (TypeError, ValueError):  # a reader's index that is no number places nothing
        return None
    if any(value < 0 for index in indices for value in index):
        return None
    sizes = [max(index[i] for index in indices) + 1 for i in range(len(axes))]
    if len(set(indices)) != len(frames) or math.prod(sizes) != len(frames):
        return None
    keep = [i for i, (_, name) in enumerate(axes) if name == AXIS_C or sizes[i] > 1]
    keep.sort(key=lambda i: _AXIS_ORDER.index(axes[i][1]))
    named = tuple((axes[i][1], sizes[i]) for i in keep)
    mapping = {tuple(index[i] for i in keep): number for number, index in enumerate(indices)}
    return named, mapping


def _index(text: str) -> int | None:
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_INDEX_DIGITS:
        return None
    return int(text)


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None
