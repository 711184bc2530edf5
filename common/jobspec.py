"""What a bulk pre-rendering job asks for: :class:`JobSpec`, parsed and checked against a
source's metadata (``parse_job_request``) or made for a whole source (``auto_job_spec``).

The spec holds the few metadata fields the plan needs (common/jobplan.py), so a batch is
computed from the spec alone; its hash deduplicates running jobs (common/jobstore.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, astuple, dataclass
from typing import Any

from tilecast.common.encoding import QUERY_PARAMETERS, EncodingOptions
from tilecast.common.errors import BadRequest
from tilecast.common.grid import Grid
from tilecast.common.query import FRAME, FRAMES, LEVELS, PRECACHE_THUMBNAIL, REGION, STYLE
from tilecast.common.regionplan import RegionSpec
from tilecast.common.settings import Settings
from tilecast.common.style import canonical_style, style_frames

# The thumbnail a job pre-renders: large_image's default thumbnail request.
THUMBNAIL_SIZE = 256

# Tile side of the blocks a job is cut into, unless settings say otherwise.
DEFAULT_BLOCK = 8


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
