"""Bulk pre-rendering jobs: what a job asks for, how it is cut into batches, and its
record in the state Redis.

Both sides use this module: the api (and the command line) validate a request against
the source's metadata and create the record; the worker pool's job driver
(workers/precache.py) dispatches the batches and the batch tasks settle them.

Keys (state Redis, never evicted; a running job's keys carry no TTL):

- ``tc:job:{id}`` hash: the record (spec JSON, state, times, counters).
- ``tc:job:{id}:settled`` set: ids of batches that are finished (rendered, skipped or
  given up after their attempts); a batch id is its index in the plan.
- ``tc:job:{id}:leases`` sorted set: batch id -> lease expiry (unix seconds) of every
  batch dispatched but not settled. The driver re-dispatches a batch whose lease has
  expired (its worker died, its task was lost); a running batch renews its lease.
- ``tc:job:{id}:attempts`` hash: batch id -> times dispatched.
- ``tc:job:{id}:errors`` list: a few error samples (newest first).
- ``tc:jobs`` sorted set: every job id by creation time (listing);
  ``tc:jobs:active`` set: the running jobs (what the driver looks at);
  ``tc:jobspec:{hash}`` -> the id of the running job with that spec (deduplication).

The plan is a pure function of the spec (which holds the few metadata fields it
needs), so nobody stores it: batch ``i`` is computed on demand in O(levels).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import uuid
from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, astuple, dataclass, field
from functools import cached_property
from typing import Any

import redis

from tilecast.common import lease
from tilecast.common.encoding import QUERY_PARAMETERS, EncodingOptions
from tilecast.common.errors import BadRequest, UnknownJob
from tilecast.common.grid import Grid
from tilecast.common.keys import ACTIVE_JOBS_KEY as ACTIVE_KEY
from tilecast.common.keys import (
    DRIVER_LOCK_KEY,
    JOB_PREFIX,
    JOBS_KEY,
)
from tilecast.common.keys import job_attempts_key as attempts_key
from tilecast.common.keys import job_errors_key as errors_key
from tilecast.common.keys import job_leases_key as leases_key
from tilecast.common.keys import job_record_key as record_key
from tilecast.common.keys import job_settled_key as settled_key
from tilecast.common.keys import job_spec_key as spec_key
from tilecast.common.query import FRAME, FRAMES, LEVELS, PRECACHE_THUMBNAIL, REGION, STYLE
from tilecast.common.regions import RegionSpec
from tilecast.common.settings import Settings
from tilecast.common.style import canonical_style, style_frames
from tilecast.common.tiles import ThumbnailRequest, TileRequest

RUNNING = "running"
FINISHED = "finished"
CANCELLED = "cancelled"

# The thumbnail a job pre-renders: large_image's default thumbnail request.
THUMBNAIL_SIZE = 256
# How many error samples a job keeps.
ERROR_SAMPLES = 20
# Tile side of the blocks a job is cut into, unless settings say otherwise.
DEFAULT_BLOCK = 8
# The unstyled phase of a plan: levels with fewer tiles are not synthesized ahead; a
# level's blocks are sized so that it has at least this many batches.
MIN_RAW_TILES = 64
RAW_BATCHES_PER_LEVEL = 8


def job_keys(job_id: str) -> list[str]:
    return [
        record_key(job_id),
        settled_key(job_id),
        leases_key(job_id),
        attempts_key(job_id),
        errors_key(job_id),
    ]


def tile_owner(job_id: str, batch: int) -> str:
    """The in-flight marker owner of a batch's tiles: every attempt of the batch shares
    it, so a retry takes over the markers a killed attempt left behind."""
    return f"job:{job_id}:{batch}"


# --- the spec --------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSpec:
    """What a job renders. ``geometry`` holds the metadata the plan needs, copied at
    creation so the plan never changes under a running job."""

    source: str
    generation: int
    levels: tuple[int, ...]
    frames: tuple[int, ...]
    region: tuple[int, int, int, int]  # left, top, right, bottom in base pixels
    style: str | None
    encoding: EncodingOptions
    thumbnail: bool
    geometry: Grid
    block: int = DEFAULT_BLOCK

    def to_payload(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["encoding"] = self.encoding.to_payload()
        # sizeX, sizeY, tileWidth, tileHeight, levels: the form job records have kept.
        payload["geometry"] = astuple(self.geometry)
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> JobSpec:
        return cls(
            source=str(payload["source"]),
            generation=int(payload["generation"]),
            levels=tuple(int(z) for z in payload["levels"]),
            frames=tuple(int(f) for f in payload["frames"]),
            region=tuple(int(v) for v in payload["region"]),  # type: ignore[arg-type]
            style=payload.get("style"),
            encoding=EncodingOptions.from_payload(payload["encoding"]),
            thumbnail=bool(payload["thumbnail"]),
            geometry=Grid(*(int(v) for v in payload["geometry"])),
            block=int(payload.get("block", DEFAULT_BLOCK)),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_payload(), sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        """Equal requests (same source, generation, scope, style, encoding) share it."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:24]

    def summary(self) -> dict[str, Any]:
        """The spec as a client reads it."""
        left, top, right, bottom = self.region
        return {
            "source": self.source,
            "levels": list(self.levels),
            "frames": list(self.frames),
            "region": {"left": left, "top": top, "right": right, "bottom": bottom},
            "style": self.style,
            "encoding": self.encoding.key_part,
            "thumbnail": self.thumbnail,
        }


def _frame_count(metadata: Mapping[str, Any]) -> int:
    return len(metadata.get("frames") or ()) or 1


def parse_int_list(raw: Any, name: str, low: int, high: int) -> tuple[int, ...]:
    """``"0-6"``, ``"3"``, ``"0,2,4"``, ``"1-2,5"``, an int or a JSON list of ints, each
    within [low, high]; sorted, without duplicates. A 400 naming ``name`` otherwise."""
    values: list[int] = []
    if isinstance(raw, bool):
        raise BadRequest(f"{name} must be a range like 0-6 or a list", parameter=name)
    if isinstance(raw, int):
        values = [raw]
    elif isinstance(raw, list):
        if not raw or not all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
            raise BadRequest(f"{name} must be a non-empty list of integers", parameter=name)
        values = list(raw)
    elif isinstance(raw, str):
        for part in raw.replace(" ", "").split(","):
            first, sep, last = part.partition("-")
            try:
                start = int(first)
                end = int(last) if sep else start
            except ValueError:
                raise BadRequest(
                    f"{name} must be a range like 0-6 or a list like 0,2,4, not {raw!r}",
                    parameter=name,
                ) from None
            if end < start:
                raise BadRequest(f"{name}: {part!r} is an empty range", parameter=name)
            if end - start > 100_000:
                raise BadRequest(f"{name}: {part!r} is too long a range", parameter=name)
            values.extend(range(start, end + 1))
    else:
        raise BadRequest(f"{name} must be a range like 0-6 or a list", parameter=name)
    outside = [v for v in values if not low <= v <= high]
    if outside:
        raise BadRequest(
            f"{name} {outside[0]} is outside the image ({low} to {high})", parameter=name
        )
    return tuple(sorted(set(values)))


def _region(raw: Any, args: Mapping[str, Any], size_x: int, size_y: int) -> tuple[int, ...]:
    """The region in base pixels, clipped to the image; the whole image when absent.
    Given as ``region`` (an object, or ``left,top,right,bottom``) or as top-level
    ``left``/``top``/``right``/``bottom`` (+ ``units``), as the region endpoint takes."""
    fields = ("left", "top", "right", "bottom")
    if raw is None:
        raw = {name: args[name] for name in (*fields, "units") if args.get(name) is not None}
    elif isinstance(raw, str):
        parts = raw.split(",")
        if len(parts) != 4:
            raise BadRequest("region must be left,top,right,bottom", parameter="region")
        raw = dict(zip(fields, parts, strict=True))
    if not isinstance(raw, dict):
        raise BadRequest("region must be an object with left/top/right/bottom", parameter="region")
    unknown = set(raw) - {*fields, "units"}
    if unknown:
        raise BadRequest(f"region has unknown keys {sorted(unknown)}", parameter="region")
    query = {name: str(value) for name, value in raw.items() if value is not None}
    return RegionSpec.from_query(query).resolve(size_x, size_y)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def parse_job_request(
    source_id: str,
    args: Mapping[str, Any],
    metadata: Mapping[str, Any],
    generation: int,
    settings: Settings,
) -> JobSpec:
    """Validate a precache request against the source's metadata (400s up front).

    ``args`` is the JSON body merged over the query string: ``levels``, ``frames``
    (a range, a list or ``all``), ``region``, ``style`` (JSON text or an object),
    ``encoding`` and its options, ``thumbnail`` (true/false).
    """
    geometry = Grid.from_metadata(metadata)
    raw_levels = args.get(LEVELS.name)
    levels = (
        tuple(range(geometry.levels))
        if raw_levels in (None, "", LEVELS.default)
        else parse_int_list(raw_levels, LEVELS.name, 0, geometry.top_level)
    )
    count = _frame_count(metadata)
    raw_frames = args.get(FRAMES.name, args.get(FRAME.name))
    if raw_frames in (None, ""):
        frames: tuple[int, ...] = (0,)
    elif raw_frames == "all":
        frames = tuple(range(count))
    else:
        frames = parse_int_list(raw_frames, FRAMES.name, 0, count - 1)
    region = _region(args.get(REGION.name), args, geometry.size_x, geometry.size_y)
    style_text = _as_text(args.get(STYLE.name))
    style = canonical_style(style_text, max_bytes=STYLE.high_in(settings))
    for frame in frames:
        # Known up front: a style reading a frame the image lacks fails on every tile.
        if any(not 0 <= wanted < count for wanted in style_frames(style, frame)):
            raise BadRequest(
                f"the style reads a frame the image lacks (it has {count})", parameter="style"
            )
    encoding_args = {
        name: text for name in QUERY_PARAMETERS if (text := _as_text(args.get(name))) is not None
    }
    encoding = EncodingOptions.from_query(encoding_args, default_quality=settings.jpeg_quality)
    thumbnail_text = _as_text(args.get(PRECACHE_THUMBNAIL.name)) or PRECACHE_THUMBNAIL.default
    if thumbnail_text.lower() not in PRECACHE_THUMBNAIL.choices:
        raise BadRequest("thumbnail must be true or false", parameter=PRECACHE_THUMBNAIL.name)
    return JobSpec(
        source=source_id,
        generation=generation,
        levels=levels,
        frames=frames,
        region=region,  # type: ignore[arg-type]
        style=style,
        encoding=encoding,
        thumbnail=thumbnail_text.lower() in ("true", "1"),
        geometry=geometry,
        block=max(1, settings.job_block),
    )


def auto_job_spec(
    source_id: str, metadata: Mapping[str, Any], generation: int, settings: Settings
) -> JobSpec:
    """The job every newly registered source gets: its thumbnail and its coarsest
    levels (0 to ``auto_precache_levels``), default style and encoding."""
    geometry = Grid.from_metadata(metadata)
    top = min(geometry.top_level, max(0, settings.auto_precache_levels))
    return JobSpec(
        source=source_id,
        generation=generation,
        levels=tuple(range(top + 1)),
        frames=(0,),
        region=(0, 0, geometry.size_x, geometry.size_y),
        style=None,
        encoding=EncodingOptions(jpeg_quality=settings.jpeg_quality),
        thumbnail=True,
        geometry=geometry,
        block=max(1, settings.job_block),
    )


# --- the plan --------------------------------------------------------------------------

TILES = "tiles"  # styled, encoded tiles: what the job is for
RAW = "raw"  # unstyled tiles of a level a file may lack, synthesized ahead (see plan())
THUMBNAIL = "thumbnail"


@dataclass(frozen=True)
class Batch:
    """One task's worth of a job: a block of tiles of one level and frame (styled, or
    unstyled for ``raw``), or the thumbnail."""

    index: int
    kind: str
    z: int | None
    frame: int
    tiles: tuple[tuple[int, int], ...] = ()

    @property
    def size(self) -> int:
        """The tiles it adds to the job's total (raw tiles are a means, not counted)."""
        return {TILES: len(self.tiles), THUMBNAIL: 1}.get(self.kind, 0)

    def tile_requests(self, spec: JobSpec) -> list[TileRequest]:
        assert self.z is not None
        return [
            TileRequest(spec.source, self.z, x, y, self.frame, spec.style, spec.encoding)
            for x, y in self.tiles
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
        return (self.x1 - self.x0) * (self.y1 - self.y0) if self.kind == TILES else 0


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
        tiles = tuple(
            (x, y)
            for y in range(y0, min(y0 + segment.block, segment.y1))
            for x in range(x0, min(x0 + segment.block, segment.x1))
        )
        return Batch(index, segment.kind, segment.z, segment.frame, tiles)

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
    for z in range(base - 1, coarsest - 1, -1):
        x0, y0, x1, y1 = level_tile_range(spec, z)
        count = (x1 - x0) * (y1 - y0)
        if count < MIN_RAW_TILES:
            break  # coarser levels are small: synthesized on demand by their tiles
        # Blocks small enough that the level is shared by the pool (at least
        # RAW_BATCHES_PER_LEVEL of them), at most twice the styled blocks' side.
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
        x0, y0, x1, y1 = level_tile_range(spec, z)
        for frame in spec.frames:
            before = len(segments)
            add(_Segment(first, TILES, z, frame, x0, y0, x1, y1, spec.block, barrier))
            barrier = barrier and len(segments) == before
    return Plan(spec, tuple(segments), first, tiles)


# --- the record ------------------------------------------------------------------------

# The running job of the same spec is read from its record (built from JOB_PREFIX here).
_CREATE = f"""
local existing = redis.call('GET', KEYS[1])
if existing then
  if redis.call('HGET', '{JOB_PREFIX}' .. existing, 'state') == 'running' then
    return {{0, existing}}
  end
end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
return {{1, ARGV[1]}}
"""

# A batch is settled once: its counters are added only by the first settle.
_SETTLE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'done', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'skipped', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[4])
if redis.call('HEXISTS', KEYS[1], 'started') == 0 then
  redis.call('HSET', KEYS[1], 'started', ARGV[5])
end
return 1
"""

_CANCEL = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished', ARGV[1])
redis.call('SREM', KEYS[3], ARGV[2])
if redis.call('GET', KEYS[4]) == ARGV[2] then redis.call('DEL', KEYS[4]) end
redis.call('DEL', KEYS[2])
return 1
"""

_FINISH = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'finished', 'finished', ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
return 1
"""


@dataclass(frozen=True)
class JobRecord:
    id: str
    spec: JobSpec
    state: str
    created: float
    total: int
    batches: int
    started: float | None = None
    finished: float | None = None
    done: int = 0
    skipped: int = 0
    failed: int = 0
    renders: int = 0
    next: int = 0

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes]) -> JobRecord:
        values = {k.decode(): v.decode() for k, v in raw.items()}

        def optional(name: str) -> float | None:
            return float(values[name]) if values.get(name) else None

        return cls(
            id=values["id"],
            spec=JobSpec.from_payload(json.loads(values["spec"])),
            state=values["state"],
            created=float(values["created"]),
            total=int(values["total"]),
            batches=int(values["batches"]),
            started=optional("started"),
            finished=optional("finished"),
            done=int(values.get("done", 0)),
            skipped=int(values.get("skipped", 0)),
            failed=int(values.get("failed", 0)),
            renders=int(values.get("renders", 0)),
            next=int(values.get("next", 0)),
        )

    def progress(self, now: float | None = None) -> dict[str, Any]:
        """Counters, rate (tiles per second since the first batch settled) and ETA."""
        now = time.time() if now is None else now
        end = self.finished or now
        settled = self.done + self.failed
        elapsed = end - self.started if self.started is not None else 0.0
        rate = settled / elapsed if elapsed > 0 else 0.0
        remaining = max(0, self.total - settled)
        eta = None
        if self.state == RUNNING and rate > 0:
            eta = remaining / rate
        elif self.state != RUNNING:
            eta = 0.0
        return {
            "total": self.total,
            "done": self.done,
            "skipped": self.skipped,
            "failed": self.failed,
            "rendered": self.renders,
            "tilesPerSecond": round(rate, 2),
            "eta": None if eta is None else round(eta, 1),
        }

    def to_json(self, errors: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            **self.spec.summary(),
            **self.progress(),
            "batches": self.batches,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "errors": list(errors),
        }


class JobStore:
    """Jobs in the state Redis."""

    def __init__(self, state: redis.Redis) -> None:
        self.state = state
        self._create = state.register_script(_CREATE)
        self._settle = state.register_script(_SETTLE)
        self._cancel = state.register_script(_CANCEL)
        self._finish = state.register_script(_FINISH)

    # -- creating, reading, cancelling ------------------------------------------------------
    def submit(self, spec: JobSpec) -> tuple[JobRecord, bool]:
        """``(record, created)``: a new job, or the running job with an equal spec."""
        the_plan = plan(spec)
        job_id = uuid.uuid4().hex[:16]
        now = time.time()
        fields: dict[str, Any] = {
            "id": job_id,
            "spec": spec.to_json(),
            "state": RUNNING,
            "created": repr(now),
            "total": the_plan.total_tiles,
            "batches": the_plan.total_batches,
            "done": 0,
            "skipped": 0,
            "failed": 0,
            "renders": 0,
            "next": 0,
        }
        argv: list[Any] = [job_id, repr(now)]
        for name, value in fields.items():
            argv.extend((name, value))
        keys = [spec_key(spec.hash), record_key(job_id), JOBS_KEY, ACTIVE_KEY]
        created, found = self._create(keys=keys, args=argv)
        return self.get(found.decode()), bool(created)

    def get(self, job_id: str) -> JobRecord:
        raw = self.state.hgetall(record_key(job_id))
        if not raw:
            raise UnknownJob.of(job_id)
        return JobRecord.from_hash(raw)  # type: ignore[arg-type]

    def errors(self, job_id: str) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self.state.lrange(errors_key(job_id), 0, -1)]  # type: ignore[union-attr]

    def describe(self, job_id: str) -> dict[str, Any]:
        """What ``GET /jobs/{id}`` answers."""
        return self.get(job_id).to_json(self.errors(job_id))

    def list(self, limit: int = 100) -> list[JobRecord]:
        """Newest first; ids whose records have expired are dropped from the index."""
        ids = [i.decode() for i in self.state.zrevrange(JOBS_KEY, 0, limit - 1)]  # type: ignore[union-attr]
        pipe = self.state.pipeline(transaction=False)
        for job_id in ids:
            pipe.hgetall(record_key(job_id))
        records: list[JobRecord] = []
        for job_id, raw in zip(ids, pipe.execute(), strict=True):
            if raw:
                records.append(JobRecord.from_hash(raw))
            else:
                self.state.zrem(JOBS_KEY, job_id)
        return records

    def cancel(self, job_id: str, retention: int) -> JobRecord:
        """Stop a running job; a finished or cancelled job is left as it is."""
        record = self.get(job_id)
        keys = [record_key(job_id), leases_key(job_id), ACTIVE_KEY, spec_key(record.spec.hash)]
        if self._cancel(keys=keys, args=[repr(time.time()), job_id]):
            self.expire(job_id, retention)
        return self.get(job_id)

    def active(self) -> list[str]:
        return sorted(m.decode() for m in self.state.smembers(ACTIVE_KEY))  # type: ignore[union-attr]

    # -- what the driver does ---------------------------------------------------------------
    def expired_leases(self, job_id: str, now: float) -> list[int]:
        found = self.state.zrangebyscore(leases_key(job_id), "-inf", now)
        return [int(b) for b in found]  # type: ignore[union-attr]

    def in_flight(self, job_id: str) -> list[int]:
        return [int(b) for b in self.state.zrange(leases_key(job_id), 0, -1)]  # type: ignore[union-attr]

    def is_settled(self, job_id: str, batch: int) -> bool:
        return bool(self.state.sismember(settled_key(job_id), batch))

    def settled_count(self, job_id: str) -> int:
        return int(self.state.scard(settled_key(job_id)))  # type: ignore[arg-type]

    def attempts(self, job_id: str, batch: int) -> int:
        return int(self.state.hget(attempts_key(job_id), batch) or 0)  # type: ignore[arg-type]

    def dispatched(self, job_id: str, batch: int, lease_until: float) -> int:
        """Record a dispatch of ``batch``: its attempt number, and its lease."""
        pipe = self.state.pipeline()
        pipe.hincrby(attempts_key(job_id), batch, 1)
        pipe.zadd(leases_key(job_id), {str(batch): lease_until})
        attempt, _ = pipe.execute()
        return int(attempt)

    def advance_cursor(self, job_id: str) -> int:
        """The next batch never dispatched (the cursor moves past it)."""
        return int(self.state.hincrby(record_key(job_id), "next", 1)) - 1  # type: ignore[arg-type]

    def drop_lease(self, job_id: str, batch: int) -> None:
        self.state.zrem(leases_key(job_id), batch)

    def finish(self, job_id: str, retention: int) -> bool:
        record = self.get(job_id)
        keys = [record_key(job_id), ACTIVE_KEY, spec_key(record.spec.hash)]
        if self._finish(keys=keys, args=[repr(time.time()), job_id]):
            self.expire(job_id, retention)
            return True
        return False

    def expire(self, job_id: str, retention: int) -> None:
        """A job that no longer runs is kept ``retention`` seconds (0 = forever)."""
        pipe = self.state.pipeline()
        pipe.delete(leases_key(job_id), attempts_key(job_id))
        if retention > 0:
            for key in (record_key(job_id), settled_key(job_id), errors_key(job_id)):
                pipe.expire(key, retention)
        pipe.execute()

    def hold_driver_lock(self, owner: str, ttl: float) -> bool:
        """Take or keep the one job driver's lock (it expires when its holder dies)."""
        return lease.hold(self.state, DRIVER_LOCK_KEY, owner, ttl)

    def release_driver_lock(self, owner: str) -> None:
        lease.release(self.state, DRIVER_LOCK_KEY, owner)

    # -- what a batch task does -------------------------------------------------------------
    def begin_batch(self, job_id: str, batch: int, lease_until: float) -> bool:
        """True when the batch should run: its job runs and it is not settled. Renews
        its lease (only while dispatched: a cancelled job's leases are gone)."""
        pipe = self.state.pipeline(transaction=False)
        pipe.hget(record_key(job_id), "state")
        pipe.sismember(settled_key(job_id), batch)
        pipe.zadd(leases_key(job_id), {str(batch): lease_until}, xx=True)
        pipe.hsetnx(record_key(job_id), "started", repr(time.time()))
        state, settled, _, _ = pipe.execute()
        return state == RUNNING.encode() and not settled

    def progress_batch(self, job_id: str, batch: int, rendered: int, lease_until: float) -> bool:
        """A flush of a running batch: count its renders, renew its lease; False when
        the job no longer runs (cancelled)."""
        pipe = self.state.pipeline(transaction=False)
        if rendered:
            pipe.hincrby(record_key(job_id), "renders", rendered)
        pipe.zadd(leases_key(job_id), {str(batch): lease_until}, xx=True)
        pipe.hget(record_key(job_id), "state")
        return pipe.execute()[-1] == RUNNING.encode()  # type: ignore[no-any-return]

    def add_errors(self, job_id: str, samples: Sequence[dict[str, Any]]) -> None:
        if not samples:
            return
        pipe = self.state.pipeline(transaction=False)
        for sample in samples[:ERROR_SAMPLES]:
            pipe.lpush(errors_key(job_id), json.dumps(sample, sort_keys=True))
        pipe.ltrim(errors_key(job_id), 0, ERROR_SAMPLES - 1)
        pipe.execute()

    def settle(self, job_id: str, batch: int, *, done: int, skipped: int, failed: int) -> bool:
        """Record a finished batch once (its counters with it); False when it was
        settled already (a duplicate delivery)."""
        keys = [record_key(job_id), settled_key(job_id), leases_key(job_id)]
        args = [batch, done, skipped, failed, repr(time.time())]
        return bool(self._settle(keys=keys, args=args))

    def retry_later(self, job_id: str, batch: int, at: float) -> None:
        """Let the driver re-dispatch a failed attempt at ``at`` (if still dispatched)."""
        self.state.zadd(leases_key(job_id), {str(batch): at}, xx=True)
