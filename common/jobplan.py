"""How a job is cut into batches: a pure function of its spec (common/jobspec.py).

The base level's styled tiles with the unstyled level under them, then the unstyled
levels a file may lack (fine to coarse), then the thumbnail and the styled tiles of
every other level and frame, in blocks of ``spec.block`` x ``spec.block`` (see
:func:`plan`). Nobody stores the plan: batch ``i`` is computed on demand in O(levels).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

from tilecast.common.jobspec import THUMBNAIL_SIZE, JobSpec
from tilecast.common.tiles import ThumbnailRequest, TileRequest

# The unstyled phase of a plan: levels with fewer tiles are not synthesized ahead; a
# level's blocks are sized so that it has at least this many batches.
MIN_RAW_TILES = 64
RAW_BATCHES_PER_LEVEL = 8


# --- the plan --------------------------------------------------------------------------

TILES = "tiles"  # styled, encoded tiles: what the job is for
# A block of base tiles with the levels under it, made from the same reads: the base's
# styled tiles, then level by level the unstyled tiles under them (and their styled tiles
# where the job wants the level), each base tile read and decoded once (see plan()).
BASE_TILES = "base_tiles"
RAW = "raw"  # unstyled tiles of a level a file may lack, synthesized ahead (see plan())
THUMBNAIL = "thumbnail"


Tiles = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class LevelTiles:
    """Tiles of one level under a ``base_tiles`` batch's block: unstyled always, styled
    too when the job wants the level."""

    z: int
    tiles: Tiles
    styled: bool


@dataclass(frozen=True)
class Batch:
    """One task's worth of a job: a block of tiles of one level and frame (styled, or
    unstyled for ``raw``; with the levels under it for ``base_tiles``), or the
    thumbnail."""

    index: int
    kind: str
    z: int | None
    frame: int
    tiles: Tiles = ()
    under: tuple[LevelTiles, ...] = ()  # base_tiles: the levels under the block, finest first

    @property
    def size(self) -> int:
        """The tiles it adds to the job's total (raw tiles are a means, not counted)."""
        if self.kind == BASE_TILES:
            return len(self.tiles) + sum(len(level.tiles) for level in self.under if level.styled)
        return {TILES: len(self.tiles), THUMBNAIL: 1}.get(self.kind, 0)

    def tile_requests(self, spec: JobSpec) -> list[TileRequest]:
        """Its styled tiles of the block's own level."""
        assert self.z is not None
        return self.level_requests(spec, self.z, self.tiles)

    def all_tile_requests(self, spec: JobSpec) -> list[TileRequest]:
        """Every styled tile it renders, the levels under a block included."""
        under = [self.level_requests(spec, lv.z, lv.tiles) for lv in self.under if lv.styled]
        return self.tile_requests(spec) + [request for level in under for request in level]

    def level_requests(self, spec: JobSpec, z: int, tiles: Tiles) -> list[TileRequest]:
        return [
            TileRequest(spec.source, z, x, y, self.frame, spec.style, spec.encoding)
            for x, y in tiles
        ]

    def thumbnail_request(self, spec: JobSpec) -> ThumbnailRequest:
        return ThumbnailRequest(
            spec.source, THUMBNAIL_SIZE, THUMBNAIL_SIZE, self.frame, spec.style, spec.encoding
        )


@dataclass(frozen=True)
class _Segment:
    """The blocks of one level and frame: a grid of blocks over a tile rectangle (the
    thumbnail is a segment of one). A segment with ``barrier`` starts only once every
    batch before it is settled."""

    first: int  # index of its first batch
    kind: str
    z: int
    frame: int
    x0: int
    y0: int
    x1: int  # exclusive
    y1: int
    block: int
    barrier: bool = False
    # base_tiles: the levels under the block, (z, tile range x0, y0, x1, y1, styled),
    # finest first; ``block`` and the start are multiples of 2 ** len(under).
    under: tuple[tuple[int, int, int, int, int, bool], ...] = ()

    @property
    def across(self) -> int:
        return -(-(self.x1 - self.x0) // self.block)

    @property
    def count(self) -> int:
        if self.kind == THUMBNAIL:
            return 1
        return self.across * -(-(self.y1 - self.y0) // self.block)

    @property
    def tiles(self) -> int:
        if self.kind == THUMBNAIL:
            return 1
        if self.kind == RAW:
            return 0
        own = (self.x1 - self.x0) * (self.y1 - self.y0)
        return own + sum(
            len(self.parents(depth, self.x0, self.y0, self.x1, self.y1))
            for depth, (*_, styled) in enumerate(self.under, start=1)
            if styled
        )

    def parents(self, depth: int, x0: int, y0: int, x1: int, y1: int) -> Tiles:
        """The tiles of level ``under[depth - 1]`` under base tiles [x0, x1) x [y0, y1),
        row by row, within that level's range."""
        _z, lx0, ly0, lx1, ly1, _styled = self.under[depth - 1]
        xs = range(max(x0 >> depth, lx0), min(((x1 - 1) >> depth) + 1, lx1))
        ys = range(max(y0 >> depth, ly0), min(((y1 - 1) >> depth) + 1, ly1))
        return tuple((x, y) for y in ys for x in xs)


@dataclass(frozen=True, eq=False)
class Plan:
    """A job's batches in dispatch order (see :func:`plan`)."""

    spec: JobSpec
    segments: tuple[_Segment, ...] = field(repr=False)
    total_batches: int
    total_tiles: int

    @cached_property
    def _starts(self) -> tuple[int, ...]:
        return tuple(segment.first for segment in self.segments)

    def _segment(self, index: int) -> _Segment:
        if not 0 <= index < self.total_batches:
            raise IndexError(index)
        return self.segments[bisect_right(self._starts, index) - 1]

    def batch(self, index: int) -> Batch:
        segment = self._segment(index)
        if segment.kind == THUMBNAIL:
            return Batch(index, THUMBNAIL, None, segment.frame)
        local = index - segment.first
        bx, by = local % segment.across, local // segment.across
        x0 = segment.x0 + bx * segment.block
        y0 = segment.y0 + by * segment.block
        x1 = min(x0 + segment.block, segment.x1)
        y1 = min(y0 + segment.block, segment.y1)
        tiles = tuple((x, y) for y in range(y0, y1) for x in range(x0, x1))
        under = tuple(
            LevelTiles(z, segment.parents(depth, x0, y0, x1, y1), styled)
            for depth, (z, *_, styled) in enumerate(segment.under, start=1)
        )
        return Batch(index, segment.kind, segment.z, segment.frame, tiles, under)

    def waits_before(self, index: int) -> bool:
        """True when batch ``index`` may start only after every earlier batch settled."""
        segment = self._segment(index)
        return segment.barrier and index == segment.first

    def batches(self) -> Iterator[Batch]:
        for index in range(self.total_batches):
            yield self.batch(index)


def level_tile_range(spec: JobSpec, z: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``, x1/y1 exclusive: the tiles of level ``z`` the region touches."""
    grid = spec.geometry
    return grid.tiles_covering(z, *grid.level_area(z, *spec.region))


def plan(spec: JobSpec) -> Plan:
    """The batches of a job, in three phases:

    1. ``raw``: the unstyled tiles of every level between the job's coarsest level and
       the base, finest level first, each level starting once the finer one is done.
       A file lacking those levels (a single-level TIFF) has them synthesized from the
       level above -- in parallel across the pool, each tile once; without this phase
       the first coarse tile would synthesize the whole pyramid in one task while the
       other workers redid the same tiles. Where the file has the level, the batch
       returns at once. Levels of fewer than ``MIN_RAW_TILES`` tiles are left to the
       next phase (a fraction of a second of work, not worth a phase boundary each).
       When the job wants the base level's styled tiles, the finest of those levels are
       not batches of their own: the base's blocks (``base_tiles``, 2 ** d tiles wide)
       come first and each makes, from the base tiles it just read and kept, the d
       levels under it (unstyled, and styled where the job wants the level): a base
       tile that must be decoded (JPEG 2000, deflate...) is decoded once, and the
       unstyled tiles under it are made without a round trip to the cache.
    2. the thumbnail, when asked.
    3. the styled tiles, coarse levels first (what viewers load first), each level's
       blocks row by row, all in parallel.
    """
    segments: list[_Segment] = []
    first = 0
    tiles = 0

    def add(segment: _Segment) -> None:
        nonlocal first, tiles
        if segment.count == 0:
            return
        segments.append(segment)
        first += segment.count
        tiles += segment.tiles

    base = spec.geometry.top_level
    coarsest = min(spec.levels) if spec.levels else base
    raw_levels: list[int] = []
    for z in range(base - 1, coarsest - 1, -1):
        if not _raw_count(spec, z):
            break  # coarser levels are small: synthesized on demand by their tiles
        raw_levels.append(z)
    made_by_base: set[int] = set()
    x0, y0, x1, y1 = level_tile_range(spec, base)
    depth = min(_alignment(spec.block, x0, y0), len(raw_levels))
    if depth and raw_levels[0] == base - 1 and base in spec.levels:
        under = tuple((z, *level_tile_range(spec, z), z in spec.levels) for z in raw_levels[:depth])
        side = max(2**depth, spec.block >> depth << depth)
        for frame in spec.frames:
            add(_Segment(first, BASE_TILES, base, frame, x0, y0, x1, y1, side, under=under))
        made_by_base = {base, *raw_levels[:depth]}
        raw_levels = raw_levels[depth:]
    for z in raw_levels:
        x0, y0, x1, y1 = level_tile_range(spec, z)
        # Blocks small enough that the level is shared by the pool (at least
        # RAW_BATCHES_PER_LEVEL of them), at most twice the styled blocks' side.
        count = _raw_count(spec, z)
        side = max(1, min(2 * spec.block, math.isqrt(count // RAW_BATCHES_PER_LEVEL)))
        for index, frame in enumerate(spec.frames):
            barrier = bool(segments) and index == 0
            add(_Segment(first, RAW, z, frame, x0, y0, x1, y1, side, barrier))
    # Only the unstyled phase is waited for: the thumbnail and the styled tiles start
    # once it is done (the thumbnail's barrier covers the tiles dispatched after it).
    raw_phase = bool(segments)
    if spec.thumbnail:
        add(_Segment(first, THUMBNAIL, 0, spec.frames[0], 0, 0, 1, 1, 1, raw_phase))
    barrier = raw_phase and not spec.thumbnail
    for z in spec.levels:
        if z in made_by_base:
            continue
        x0, y0, x1, y1 = level_tile_range(spec, z)
        for frame in spec.frames:
            before = len(segments)
            add(_Segment(first, TILES, z, frame, x0, y0, x1, y1, spec.block, barrier))
            barrier = barrier and len(segments) == before
    return Plan(spec, tuple(segments), first, tiles)


def _raw_count(spec: JobSpec, z: int) -> int:
    """Tiles of unstyled level ``z`` worth synthesizing ahead (0 when too few)."""
    x0, y0, x1, y1 = level_tile_range(spec, z)
    count = (x1 - x0) * (y1 - y0)
    return count if count >= MIN_RAW_TILES else 0


def _alignment(block: int, x0: int, y0: int) -> int:
    """How many levels under the base a block of about ``block`` tiles starting at
    (x0, y0) can make from its own tiles: blocks hold whole groups of 2 ** depth tiles,
    from a start divisible by 2 ** depth."""
    depth = max(1, max(block, 2).bit_length() - 1)
    while depth and (x0 % 2**depth or y0 % 2**depth):
        depth -= 1
    return depth
