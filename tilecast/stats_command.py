"""``tilecast stats``: the numbers of ``/metrics``, for people (or ``--json``)."""

from __future__ import annotations

import json
import sys
from typing import TextIO
from urllib.parse import urlsplit

import redis

from tilecast.common import counters, metrics
from tilecast.common.redisconn import connect, connect_cache
from tilecast.common.settings import Settings


def gather(settings: Settings) -> metrics.Snapshot:
    cache = connect_cache(settings.cache_url)
    state = (
        cache
        if settings.state_url == settings.cache_url and isinstance(cache, redis.Redis)
        else connect(settings.state_url)
    )
    broker: redis.Redis | None = None
    if settings.broker_url == settings.state_url:
        broker = state
    elif urlsplit(settings.broker_url).scheme in ("redis", "rediss", "unix"):
        broker = connect(settings.broker_url)
    try:
        return metrics.collect(cache, state, broker, window=settings.active_window)
    finally:
        for client in {id(c): c for c in (cache, state, broker) if c is not None}.values():
            client.close()


def run_stats(settings: Settings, *, as_json: bool = False, out: TextIO = sys.stdout) -> int:
    """Print the numbers; an unreachable Redis raises (tilecast/cli.py says it in one
    line)."""
    snapshot = gather(settings)
    if as_json:
        body = snapshot.as_dict()
        body["hit_ratio"] = snapshot.hit_ratio
        body["source_cache_hit_ratio"] = snapshot.source_cache_hit_ratio
        json.dump(body, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        out.write(human(snapshot, settings))
    return 0


# One line of the table: a label, a number (right-aligned) and an optional note.
Row = tuple[str, str, str]


def human(snapshot: metrics.Snapshot, settings: Settings) -> str:
    """Sections of rows whose labels, numbers and notes line up in three columns,
    however long a queue's name or a number gets."""
    sections = _sections(snapshot, settings)
    rows = [row for _heading, section in sections for row in section]
    label_width = max(len(label) for label, _value, _note in rows)
    value_width = max(len(value) for _label, value, _note in rows)
    lines: list[str] = []
    for heading, section in sections:
        lines.append(heading)
        for label, value, note in section:
            line = f"  {label:<{label_width}}  {value:>{value_width}}"
            lines.append(f"{line}  {note}" if note else line)
    return "\n".join(lines) + "\n"


def _sections(snapshot: metrics.Snapshot, settings: Settings) -> list[tuple[str, list[Row]]]:
    c = snapshot.counters
    cache = snapshot.tile_cache
    sources = snapshot.source_cache
    window = _duration(settings.active_window)
    tile_cache: list[Row] = [
        ("hits", _n(c[counters.API_TILE_HITS]), f"ratio {_pct(snapshot.hit_ratio)}"),
        ("misses", _n(c[counters.API_TILE_MISSES]), ""),
        ("thumbnail hits", _n(c[counters.API_THUMBNAIL_HITS]), ""),
        ("thumbnail misses", _n(c[counters.API_THUMBNAIL_MISSES]), ""),
        ("not modified (304)", _n(c[counters.API_NOT_MODIFIED]), ""),
        ("memory", _bytes(cache["used_bytes"]), f"of {_max(cache['max_bytes'])}"),
        ("keys", _n(cache["keys"]), ""),
        ("active sources", _n(cache["active_sources"]), f"viewed within {window}"),
        (
            "evicted by keeper",
            _n(cache["evicted_by_keeper"]),
            f"{c[counters.KEEPER_DELETED_ACTIVE_KEYS]:,} of active sources, "
            f"{c[counters.KEEPER_RUNS]:,} runs, {_bytes(c[counters.KEEPER_FREED_BYTES])} freed",
        ),
        ("evicted by Redis", _n(cache["evicted_by_redis"]), ""),
    ]
    source_cache: list[Row] = [
        (
            "hits",
            _n(c[counters.SOURCE_CACHE_HITS]),
            f"ratio {_pct(snapshot.source_cache_hit_ratio)}",
        ),
        ("misses (opens)", _n(c[counters.SOURCE_CACHE_MISSES]), ""),
        ("evictions, idle", _n(c[counters.SOURCE_CACHE_EVICTIONS]), f"idle beyond {window}"),
        (
            "evictions, in use",
            _n(c[counters.SOURCE_CACHE_EVICTIONS_ACTIVE]),
            f"used within {window} (bounds too small)",
        ),
        (
            "open sources",
            _n(sources["open"]),
            f"in {sources['processes']} processes, {_bytes(sources['bytes'])}",
        ),
    ]
    renders: list[Row] = [
        (name.replace("_", " "), _n(c.get(name, 0)), "")
        for name in (
            counters.TILES_RENDERED,
            counters.THUMBNAILS_RENDERED,
            "regions_rendered",
            counters.RAW_TILES_READ,
            counters.RAW_TILES_SYNTHESIZED,
            counters.RENDER_ERRORS,
        )
    ]
    renders.append(
        ("prefetch tasks", _n(c[counters.PREFETCH_TASKS]), f"{c[counters.PREFETCH_TILES]:,} tiles")
    )
    renders.append(
        (
            "prefetch rendered",
            _n(c.get(counters.PREFETCH_RENDERED, 0)),
            f"{c.get(counters.PREFETCH_DROPPED, 0):,} dropped (expired, claimed or cached)",
        )
    )
    work: list[Row] = [("in flight", _n(snapshot.inflight), "")]
    work += [(f"queue {q}", _n(depth), "") for q, depth in sorted(snapshot.queues.items())]
    work += [(f"{role} nodes", _n(n), "") for role, n in sorted(snapshot.workers.items())]
    work += [(f"jobs {state}", _n(n), "") for state, n in sorted(snapshot.jobs.items())]
    return [
        ("tile cache (cache Redis)", tile_cache),
        ("source cache (worker processes)", source_cache),
        ("renders", renders),
        ("work in progress", work),
    ]


def _n(value: int) -> str:
    return f"{value:,}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _bytes(value: int) -> str:
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _max(value: int) -> str:
    return "no maxmemory" if value <= 0 else _bytes(value)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"
