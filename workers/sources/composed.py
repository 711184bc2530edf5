"""Composed images: one image made of several files, described by a JSON or YAML file in
the shape of large_image's ``multi`` source (docs/READERS.md, "Composed images").

A description lists ``sources``: each a part's ``path`` (relative to the description's
folder, or to its ``basePath``), where its frames go (``c``/``z``/``t``/``xy``,
``channel``, ``frame``..., placed by workers/sources/composedframes.py) and where its
pixels go (``position``: ``x``, ``y``, ``scale``, the affine ``s11 s12 s21 s22``,
``crop``). Registered like any file, it is one image whose frames are its parts'
frames: a multiplexed experiment stored as one file per channel or cycle.

Every part is opened when the description is, through the reader registry (any format
tilecast reads can be a part, a description too, cycles refused), confined to the
source roots, and held open until ``close``. A composed tile reads only the parts it
overlaps, each from the level of the part nearest the tile's scale:

- a part placed by whole pixels at a power-of-two scale (large_image's ``getRegion``
  path) is sampled nearest-neighbour, pixel for pixel where the scale is one;
- any other placement (fractional offsets, rotation, shear, other scales) is resampled
  bicubically when it is the first thing drawn in the tile, nearest-neighbour over
  what is drawn already (large_image's choice of ``skimage`` order 3 or 0).

A composed level is *native* (composed from the parts) where every part it draws has a
stored level at that scale; other levels are synthesized by tilecast from the level
above, as for any file. Full resolution is always composed; a part shrunk further than
its stored levels allow is read from a finer level and halved, within a bound checked
when the description is opened.
"""

from __future__ import annotations

import contextvars
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pyvips

from tilecast.common.errors import SourceRefused, UnsupportedImage
from tilecast.common.localpaths import resolve_under_roots
from tilecast.common.settings import Settings
from tilecast.workers.rawtile import RawTile
from tilecast.workers.sources.base import ImageSource
from tilecast.workers.sources.composedframes import Layout, PartFrames, place
from tilecast.workers.sources.composedspec import (
    MAX_DESCRIPTION_BYTES,
    MAX_SIDE,
    Description,
    Entry,
    describe,
    is_description,
    load,
)
from tilecast.workers.sources.files import ImageFile
from tilecast.workers.sources.reader import (
    PRIORITIES,
    Probe,
    Reader,
    ReaderDeclined,
    level_count,
    naming_format,
)
from tilecast.workers.vipsutil import from_numpy, halve, to_numpy

MAX_PART_FILES = 256  # distinct files open for one description, nested ones included
MAX_NESTING = 4  # a description whose part is a description whose part is ...
MAX_REGION_SIDE = 4096  # pixels of a part read across for one composed tile
MIN_TILE, MAX_TILE = 64, 4096  # large_image's bounds on a multi source's tile size
STRIP_ROWS = 256  # rows of a tile drawn at once
INTERPOLATION_MARGIN = 2  # pixels a bicubic kernel reaches beyond its sample point
# A description is text whose top level names ``sources``: a JSON object with that key,
# a YAML mapping with it at the start of a line. Decided on the first 4096 bytes; the
# whole file is parsed when opened.
JSON_KEY = re.compile(rb'"sources"\s*:')
YAML_KEY = re.compile(rb"(?m)^[\"']?sources[\"']?[ \t]*:")
FLOW_KEY = re.compile(rb"[{,\s][\"']?sources[\"']?\s*:")


@dataclass
class _Opening:
    """The descriptions being opened in this context, outermost first, and the part
    files opened under the outermost one (a budget shared by nested descriptions)."""

    chain: tuple[str, ...]
    files: list[int] = field(default_factory=lambda: [0])


_OPENING: contextvars.ContextVar[_Opening | None] = contextvars.ContextVar(
    "composed_opening", default=None
)


@dataclass
class _Placed:
    """An entry with its opened part: the affine ``matrix`` (part full-resolution
    pixels -> composed full-resolution pixels) and its ``inverse``, the part's kept
    rectangle ``crop`` (left, top, right, bottom) and its ``bbox`` on the composed
    image."""

    entry: Entry
    part: ImageSource
    matrix: np.ndarray
    inverse: np.ndarray
    crop: tuple[int, int, int, int]
    bbox: tuple[float, float, float, float]

    @property
    def shrink(self) -> float:
        """Part pixels per composed pixel at full resolution (along the worse axis)."""
        return float(max(np.hypot(*self.inverse[:, 0]), np.hypot(*self.inverse[:, 1])))

    def pixel_aligned(self, scale: int) -> bool:
        """large_image's test for reading the part with ``getRegion`` at a level of
        ``scale``: a positive diagonal, whole-pixel offsets, power-of-two scales."""
        (a, b, x), (c, d, y) = self.matrix
        if b or c or a <= 0 or d <= 0 or x % a or y % d:
            return False
        return all(s % scale == 0 or math.log2(s).is_integer() for s in (a, d))


class ComposedSource(Reader):
    """An image composed from the files a JSON or YAML description names."""

    name = "composed"
    format_name = "composed image"
    priority = PRIORITIES["composed"]

    @classmethod
    def can_read(cls, probe: Probe) -> bool:
        head = probe.head
        if probe.is_directory or not head or b"\x00" in head:
            return False
        if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
            return bool(JSON_KEY.search(head) or FLOW_KEY.search(head))
        return bool(YAML_KEY.search(head))

    def __init__(self, file: ImageFile, settings: Settings) -> None:
        self.file = file
        self.path = file.name
        self._closed = False
        self._parts: dict[str, ImageSource] = {}
        self._native: dict[tuple[int, int], bool] = {}
        if file.local_path is None:
            raise UnsupportedImage(
                "the description must be a local file: its parts are named by paths relative "
                "to its folder"
            )
        if file.size > MAX_DESCRIPTION_BYTES:
            raise UnsupportedImage(
                f"the description is {file.size} bytes; at most {MAX_DESCRIPTION_BYTES} are read"
            )
        document = load(file.read(0, file.size))
        if not is_description(document):
            raise ReaderDeclined("JSON or YAML without a top-level sources list")
        description = describe(document)
        try:
            self._open_parts(description, file.local_path, settings)
            self._set_geometry(description, settings)
        except BaseException:
            self._close_parts()
            raise

    # -- opening ---------------------------------------------------------------------------
    def _open_parts(self, description: Description, own_path: str, settings: Settings) -> None:
        own = os.path.realpath(own_path)
        base = os.path.join(os.path.dirname(own_path), description.base_path)
        with _opening(own) as opening:
            placed: list[_Placed] = []
            for entry in description.entries:
                real = _resolve(entry, base, settings)
                if real in opening.chain:
                    what = "this description itself" if real == own else "a description above it"
                    raise UnsupportedImage(f"{entry.label}.path is {what}: a cycle")
                part = self._parts.get(real)
                if part is None:
                    opening.files[0] += 1
                    if opening.files[0] > MAX_PART_FILES:
                        raise UnsupportedImage(
                            f"{entry.label}: more than {MAX_PART_FILES} files are composed"
                        )
                    part = self._parts[real] = _open_part(entry, real, settings)
                placed.append(_place(entry, part))
        self._placed = placed

    def _set_geometry(self, description: Description, settings: Settings) -> None:
        first = self._placed[0].part
        width = description.width or math.ceil(max(p.bbox[2] for p in self._placed))
        height = description.height or math.ceil(max(p.bbox[3] for p in self._placed))
        if width <= 0 or height <= 0:
            raise UnsupportedImage("no source lands on the composed image (its size is 0)")
        if width > MAX_SIDE or height > MAX_SIDE or width * height > settings.max_decode_pixels:
            raise UnsupportedImage(
                f"the composed image is {width} x {height} pixels, more than the "
                f"{settings.max_decode_pixels} this server decodes"
            )
        self.size_x, self.size_y = width, height
        self.tile_width = min(max(description.tile_width or first.tile_width, MIN_TILE), MAX_TILE)
        self.tile_height = min(
            max(description.tile_height or first.tile_height, MIN_TILE), MAX_TILE
        )
        self.levels = level_count(width, height, self.tile_width, self.tile_height)
        self.magnification = description.magnification or first.magnification
        self.mm_x = description.mm_x or first.mm_x
        self.mm_y = description.mm_y or first.mm_y
        parts = [p.part for p in self._placed]
        self._explicit_dtype = description.dtype is not None
        self.dtype = np.dtype(description.dtype or np.result_type(*(p.dtype for p in parts)))
        self.band_count = 1 if description.single_band else max(p.band_count for p in parts)
        self._background = self._background_pixel(description.background)
        layout = self._layout(description)
        self._frames = layout.sources
        self.frame_count = len(layout.sources)
        self.frame_info = layout.info
        self.channel_names = layout.channels or None
        self._check_full_resolution_reads()

    def _layout(self, description: Description) -> Layout:
        parts = []
        for placed in self._placed:
            meta = placed.part.metadata
            parts.append(
                PartFrames(
                    frames=meta.get("frames") or [{}],
                    channels=meta.get("channels") or [],
                    has_axes="IndexRange" in meta,
                )
            )
        entries = [placed.entry for placed in self._placed]
        return place(entries, parts, description.axes, description.channels)

    def _background_pixel(self, colour: tuple[float, ...] | None) -> np.ndarray | None:
        if colour is None:
            return None
        if len(colour) > self.band_count:
            raise UnsupportedImage(
                f"backgroundColor has {len(colour)} values; the image has {self.band_count} bands"
            )
        pixel = np.array(colour, dtype=self.dtype).reshape(1, 1, len(colour))
        return _same_depth(pixel, self.band_count)

    def _check_full_resolution_reads(self) -> None:
        """Refuse a part shrunk so far below its stored levels that composing one tile
        would read more than MAX_REGION_SIDE pixels across it."""
        side = max(self.tile_width, self.tile_height)
        for index, sources in enumerate(self._frames):
            for number, part_frame in sources:
                placed = self._placed[number]
                level, halvings = self._level_plan(placed, part_frame, 1)
                finer = placed.part.level_size(level + halvings, part_frame)
                factor = 2 ** (placed.part.levels - 1 - level - halvings)
                across = min(side * placed.shrink / factor * 1.5 + 8, max(finer))
                if across > MAX_REGION_SIDE:
                    raise UnsupportedImage(
                        f"{placed.entry.label}: the part is shrunk {placed.shrink:.3g} times and "
                        f"stores no level near that scale (frame {index} would read "
                        f"{int(across)} pixels across it for one tile)"
                    )

    # -- geometry ----------------------------------------------------------------------------
    def native_level_size(self, z: int, frame: int = 0) -> tuple[int, int] | None:
        scale = 2 ** (self.levels - 1 - z)
        size = (-(-self.size_x // scale), -(-self.size_y // scale))
        if z == self.levels - 1:
            return size
        if not 0 <= z < self.levels or not 0 <= frame < self.frame_count:
            return None
        known = self._native.get((z, frame))
        if known is None:
            known = self._native[(z, frame)] = all(
                self._level_plan(self._placed[number], part_frame, scale)[1] == 0
                for number, part_frame in self._frames[frame]
            )
        return size if known else None

    def _level_plan(self, placed: _Placed, part_frame: int, scale: int) -> tuple[int, int]:
        """(level, halvings): the part level whose scale is nearest below the composed
        level's (``scale`` composed pixels per output pixel), and how many halvings of
        a finer stored level make it (0 when the part stores it)."""
        part = placed.part
        ratio = scale * placed.shrink
        steps = max(0, math.floor(math.log2(ratio) + 1e-9)) if ratio >= 1 else 0
        level = part.levels - 1 - min(steps, part.levels - 1)
        for finer in range(level, part.levels):
            if part.native_level_size(finer, part_frame) is not None:
                return level, finer - level
        raise UnsupportedImage(f"{placed.entry.label}: the part stores no full-resolution level")

    # -- tiles -------------------------------------------------------------------------------
    def read_tile(self, z: int, x: int, y: int, frame: int = 0) -> RawTile:
        if self._closed:
            raise ValueError("the composed image is closed")
        width, height = self.tile_content(z, x, y, frame)
        canvas = np.zeros((height, width, self.band_count), dtype=self.dtype)
        if self._background is not None:
            canvas[:] = self._background
        scale = 2 ** (self.levels - 1 - z)
        left, top = x * self.tile_width, y * self.tile_height
        # The tile on the composed image at full resolution, as large_image clips it.
        area = (
            left * scale,
            top * scale,
            min((left + width) * scale, self.size_x),
            min((top + height) * scale, self.size_y),
        )
        painted = False
        for number, part_frame in self._frames[frame]:
            placed = self._placed[number]
            if not _overlaps(placed.bbox, area) or width == 0 or height == 0:
                continue
            first = not painted and self._background is None
            # In strips of rows: a resampled part costs a few float64 arrays of the size
            # drawn, and a description may ask for tiles of 4096 x 4096.
            for row in range(0, height, STRIP_ROWS):
                rows = min(STRIP_ROWS, height - row)
                drawn = self._draw(placed, part_frame, scale, left, top + row, width, rows, first)
                if drawn is not None:
                    pixels, covered = drawn
                    self._merge(canvas[row : row + rows], self._conform(pixels), covered)
                    painted = True
        return RawTile.from_pixels(self.pad_tile(canvas))

    def _draw(
        self,
        placed: _Placed,
        part_frame: int,
        scale: int,
        left: int,
        top: int,
        width: int,
        height: int,
        first: bool,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The part's pixels over the tile's content (height, width, bands) and where
        they cover it, or None where they do not."""
        level, halvings = self._level_plan(placed, part_frame, scale)
        factor = 2 ** (placed.part.levels - 1 - level)
        # Output pixel centres on the composed image, then on the part (full resolution).
        xs = (left + np.arange(width) + 0.5) * scale
        ys = (top + np.arange(height) + 0.5) * scale
        (a, b, c), (d, e, f) = placed.inverse
        cl, ct, cr, cb = placed.crop
        if placed.pixel_aligned(scale):
            us, vs = a * xs + c, e * ys + f
            cover_x, cover_y = (us >= cl) & (us < cr), (vs >= ct) & (vs < cb)
            if not cover_x.any() or not cover_y.any():
                return None
            cols = np.floor(us / factor).astype(np.int64)
            rows = np.floor(vs / factor).astype(np.int64)
            block, x0, y0 = self._block(
                placed, part_frame, level, halvings,
                cols[cover_x].min(), rows[cover_y].min(),
                cols[cover_x].max() + 1, rows[cover_y].max() + 1,
            )  # fmt: skip
            cols = np.clip(cols - x0, 0, block.shape[1] - 1)
            rows = np.clip(rows - y0, 0, block.shape[0] - 1)
            return block[rows][:, cols], np.outer(cover_y, cover_x)
        us = a * xs[np.newaxis, :] + (b * ys + c)[:, np.newaxis]
        vs = d * xs[np.newaxis, :] + (e * ys + f)[:, np.newaxis]
        covered = (us >= cl) & (us < cr) & (vs >= ct) & (vs < cb)
        if not covered.any():
            return None
        px, py = us / factor - 0.5, vs / factor - 0.5  # continuous, pixel centres on integers
        margin = INTERPOLATION_MARGIN
        block, x0, y0 = self._block(
            placed, part_frame, level, halvings,
            math.floor(px[covered].min()) - margin, math.floor(py[covered].min()) - margin,
            math.ceil(px[covered].max()) + margin + 1, math.ceil(py[covered].max()) + margin + 1,
        )  # fmt: skip
        px = np.clip(px - x0, 0, block.shape[1] - 1)
        py = np.clip(py - y0, 0, block.shape[0] - 1)
        if first:
            return _bicubic(block, px, py), covered
        cols = np.clip(np.floor(px + 0.5).astype(np.int64), 0, block.shape[1] - 1)
        rows = np.clip(np.floor(py + 0.5).astype(np.int64), 0, block.shape[0] - 1)
        return block[rows, cols], covered

    def _block(
        self,
        placed: _Placed,
        part_frame: int,
        level: int,
        halvings: int,
        x0: int,
        y0: int,
        x1: int,
        y1: int,
    ) -> tuple[np.ndarray, int, int]:
        """Pixels [y0:y1, x0:x1] of the part's ``level`` (clipped to its content), read
        from that level or from the stored level ``halvings`` finer and halved; with
        the corner they start at."""
        part = placed.part
        width, height = part.level_size(level, part_frame)
        x0, y0 = min(max(int(x0), 0), width - 1), min(max(int(y0), 0), height - 1)
        x1, y1 = min(max(int(x1), x0 + 1), width), min(max(int(y1), y0 + 1), height)
        step = 2**halvings
        finer_w, finer_h = part.level_size(level + halvings, part_frame)
        try:
            pixels = _read_native(
                part, part_frame, level + halvings,
                x0 * step, y0 * step, min(x1 * step, finer_w), min(y1 * step, finer_h),
            )  # fmt: skip
        except UnsupportedImage as exc:  # a damaged part: say which, and its format
            named = naming_format(exc, part) if isinstance(part, Reader) else exc
            raise UnsupportedImage(f"{placed.entry.label}: {named.message}") from None
        for _ in range(halvings):
            pixels = halve(pixels)
        return pixels, x0, y0

    def _conform(self, pixels: np.ndarray) -> np.ndarray:
        """A part's pixels in the composed image's dtype and bands, as large_image
        converts them: by value, or scaled between full ranges when the description
        names a ``dtype``; grey repeated into RGB, missing bands opaque."""
        if pixels.dtype != self.dtype:
            if self._explicit_dtype:
                ratio = _full_value(self.dtype) / _full_value(pixels)
                pixels = (pixels.astype(np.float64) * ratio).astype(self.dtype)
            else:
                pixels = pixels.astype(self.dtype)
        return _same_depth(pixels, self.band_count)

    def _merge(self, canvas: np.ndarray, pixels: np.ndarray, covered: np.ndarray) -> None:
        """Draw ``pixels`` where ``covered``: over what is there (by the last band's
        alpha, for grey+alpha and RGBA images), else replacing it."""
        if self.band_count not in (2, 4):
            canvas[covered] = pixels[covered]
            return
        full = _full_value(canvas.dtype)
        base, over = canvas[covered].astype(np.float64), pixels[covered].astype(np.float64)
        over_alpha, base_alpha = over[:, -1:] / full, base[:, -1:] / full
        alpha = over_alpha + base_alpha * (1 - over_alpha)
        colour = (over[:, :-1] * over_alpha + base[:, :-1] * base_alpha * (1 - over_alpha)) / (
            np.where(alpha > 0, alpha, 1)
        )
        canvas[covered] = np.concatenate([colour, alpha * full], axis=1).astype(canvas.dtype)

    # -- associated images, memory, closing --------------------------------------------------
    def associated_names(self) -> list[str]:
        return sorted(self._associated())

    def associated_image(self, name: str) -> np.ndarray:
        found = self._associated().get(name)
        if found is None:
            return super().associated_image(name)
        part, own_name = found
        return part.associated_image(own_name)

    def _associated(self) -> dict[str, tuple[ImageSource, str]]:
        """The parts' associated images, under their own names, numbered when several
        parts have one of a name (``label``, ``label-1``), as large_image names them."""
        found: dict[str, tuple[ImageSource, str]] = {}
        for part in self._parts.values():
            for own_name in part.associated_names():
                name, number = own_name, 0
                while name in found:
                    number += 1
                    name = f"{own_name}-{number}"
                found[name] = (part, own_name)
        return found

    @property
    def estimated_bytes(self) -> int:
        return 64 * 1024 + sum(part.estimated_bytes for part in self._parts.values())

    def close(self) -> None:
        self._closed = True
        self._close_parts()
        self.file.close()

    def _close_parts(self) -> None:
        parts, self._parts = list(self._parts.values()), {}
        for part in parts:
            part.close()


# -- helpers -------------------------------------------------------------------------------------
@contextmanager
def _opening(own: str) -> Iterator[_Opening]:
    """The context of opening the description at ``own``: nested descriptions see the
    chain above them (to refuse cycles) and share its file budget."""
    outer = _OPENING.get()
    chain = (outer.chain if outer else ()) + (own,)
    if len(chain) > MAX_NESTING:
        raise UnsupportedImage(f"descriptions are nested more than {MAX_NESTING} deep")
    opening = _Opening(chain, outer.files if outer else [0])
    token = _OPENING.set(opening)
    try:
        yield opening
    finally:
        _OPENING.reset(token)


def _resolve(entry: Entry, base: str, settings: Settings) -> str:
    """The real path of an entry's part, confined to the source roots when the worker
    has them (a description may not reach files the api would not register)."""
    candidate = os.path.join(base, entry.path)
    if settings.source_roots:
        try:
            return resolve_under_roots(candidate, settings.source_roots)
        except SourceRefused as exc:  # "path is outside the configured source roots", ...
            raise UnsupportedImage(f"{entry.label}.{exc.message}") from None
    real = os.path.realpath(candidate)
    if not (os.path.isfile(real) or os.path.isdir(real)):
        raise UnsupportedImage(f"{entry.label}.path is neither a file nor a directory")
    return real


def _open_part(entry: Entry, real: str, settings: Settings) -> ImageSource:
    # The package imports this module (its registry lists this reader): imported here.
    from tilecast.workers.sources import open_source

    try:
        return open_source(real, settings)
    except UnsupportedImage as exc:  # a 415 of the part is a 422 of the description
        raise UnsupportedImage(f"{entry.label}: {exc.message}") from None


def _place(entry: Entry, part: ImageSource) -> _Placed:
    """The entry's part with its transform, crop and bounding box (large_image's
    ``_sourceBoundingBox``: the crop's corners, transformed)."""
    matrix = np.array(entry.position.matrix, dtype=np.float64)
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    width, height = part.size_x, part.size_y
    left, top, right, bottom = entry.position.crop or (None, None, None, None)
    x0 = min(max(left if left is not None else 0, 0), width)
    y0 = min(max(top if top is not None else 0, 0), height)
    x1 = min(max(right if right is not None else width, x0), width)
    y1 = min(max(bottom if bottom is not None else height, y0), height)
    corners = matrix @ np.array([[x0, x1, x0, x1], [y0, y0, y1, y1], [1, 1, 1, 1]], dtype=float)
    bbox = (
        float(corners[0].min()),
        float(corners[1].min()),
        float(corners[0].max()),
        float(corners[1].max()),
    )
    return _Placed(entry, part, matrix, inverse, (x0, y0, x1, y1), bbox)


def _overlaps(bbox: tuple[float, float, float, float], area: tuple[int, int, int, int]) -> bool:
    return not (
        area[2] <= bbox[0] or area[0] >= bbox[2] or area[3] <= bbox[1] or area[1] >= bbox[3]
    )


def _read_native(
    part: ImageSource, frame: int, level: int, x0: int, y0: int, x1: int, y1: int
) -> np.ndarray:
    """Pixels [y0:y1, x0:x1] of a stored level of a part, from its tiles."""
    tw, th = part.tile_width, part.tile_height
    out: np.ndarray | None = None
    for ty in range(y0 // th, (y1 - 1) // th + 1):
        for tx in range(x0 // tw, (x1 - 1) // tw + 1):
            tile = part.read_tile(level, tx, ty, frame).array()
            if out is None:
                out = np.zeros((y1 - y0, x1 - x0, tile.shape[2]), dtype=tile.dtype)
            sx0, sy0 = max(x0, tx * tw), max(y0, ty * th)
            sx1, sy1 = min(x1, (tx + 1) * tw), min(y1, (ty + 1) * th)
            out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = tile[
                sy0 - ty * th : sy1 - ty * th, sx0 - tx * tw : sx1 - tx * tw
            ]
    assert out is not None  # the region is never empty
    return out


def _bicubic(block: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """``block`` sampled at the (fractional) pixel positions ``px``, ``py``."""
    index = from_numpy(np.dstack([px, py]).astype(np.float32))
    image = from_numpy(block).mapim(
        index, interpolate=pyvips.Interpolate.new("bicubic"), extend="copy"
    )
    return to_numpy(image)


def _full_value(pixels: np.ndarray | np.dtype) -> float:
    """large_image's ``fullAlphaValue``: an opaque alpha, the top of the value range
    (for float pixels guessed from their largest value)."""
    dtype = pixels.dtype if isinstance(pixels, np.ndarray) else np.dtype(pixels)
    if dtype.kind == "u":
        return float(np.iinfo(dtype).max)
    if isinstance(pixels, np.ndarray) and dtype.kind == "f" and pixels.size:
        top = float(np.amax(pixels))
        if 1 < top < 256:
            return 255.0
        if 1 < top < 65536:
            return 65535.0
    return 1.0


def _same_depth(pixels: np.ndarray, bands: int) -> np.ndarray:
    """``pixels`` with ``bands`` bands, as large_image's ``_makeSameChannelDepth`` makes
    them: grey (and grey+alpha) repeated into RGB (RGBA), then opaque bands added; a
    single-band image keeps the first band."""
    have = pixels.shape[2]
    if have == bands:
        return pixels
    if have > bands:
        return pixels[:, :, :bands]
    if have < 3 <= bands:
        grey = pixels[:, :, :1]
        pixels = np.concatenate([grey, grey, grey, pixels[:, :, 1:2]], axis=2)
        have = pixels.shape[2]
    if have < bands:
        pad = np.full((*pixels.shape[:2], bands - have), _full_value(pixels), dtype=pixels.dtype)
        pixels = np.concatenate([pixels, pad], axis=2)
    return pixels
