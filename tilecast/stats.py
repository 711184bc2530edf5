"""``tilecast stats``: the numbers of ``/metrics``, for people (or ``--json``)."""

from __future__ import annotations

import json
import sys
from typing import TextIO
from urllib.parse import urlsplit

import redis

from common import metrics, stats
from common.redisconn import connect, connect_cache
from common.settings import Settings


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
    try:
        snapshot = gather(settings)
    except redis.exceptions.RedisError as exc:
        print(f"tilecast stats: Redis is unreachable: {exc}", file=sys.stderr)
        return 1
    if as_json:
        body = snapshot.as_dict()
        body["hit_ratio"] = snapshot.hit_ratio
        body["source_cache_hit_ratio"] = snapshot.source_cache_hit_ratio
        json.dump(body, out, indent=2, sort_keys=True)
        out.write("\n")
    else:
        out.write(human(snapshot, settings))
    return 0


def human(snapshot: metrics.Snapshot, settings: Settings) -> str:
    c = snapshot.counters
    cache = snapshot.tile_cache
    sources = snapshot.source_cache
    window = _duration(settings.active_window)
    lines = [
        "tile cache (cache Redis)",
        f"  hits               {c[stats.API_TILE_HITS]:>12,}   ratio {_pct(snapshot.hit_ratio)}",
        f"  misses             {c[stats.API_TILE_MISSES]:>12,}",
        f"  thumbnails         {c[stats.API_THUMBNAIL_HITS]:>12,} hits"
        f"  {c[stats.API_THUMBNAIL_MISSES]:,} misses",
        f"  not modified (304) {c[stats.API_NOT_MODIFIED]:>12,}",
        f"  memory             {_bytes(cache['used_bytes']):>12} of {_max(cache['max_bytes'])}",
        f"  keys               {cache['keys']:>12,}",
        f"  active sources     {cache['active_sources']:>12,}   (viewed within {window})",
        f"  evicted by keeper  {cache['evicted_by_keeper']:>12,}"
        f"   ({c[stats.KEEPER_DELETED_ACTIVE_KEYS]:,} of active sources,"
        f" {c[stats.KEEPER_RUNS]:,} runs, {_bytes(c[stats.KEEPER_FREED_BYTES])} freed)",
        f"  evicted by Redis   {cache['evicted_by_redis']:>12,}",
        "source cache (worker processes)",
        f"  hits               {c[stats.SOURCE_CACHE_HITS]:>12,}"
        f"   ratio {_pct(snapshot.source_cache_hit_ratio)}",
        f"  misses (opens)     {c[stats.SOURCE_CACHE_MISSES]:>12,}",
        f"  evictions          {c[stats.SOURCE_CACHE_EVICTIONS]:>12,}   idle beyond {window}",
        f"                     {c[stats.SOURCE_CACHE_EVICTIONS_ACTIVE]:>12,}"
        f"   used within {window} (bounds too small)",
        f"  open sources       {sources['open']:>12,}"
        f"   in {sources['processes']} processes, {_bytes(sources['bytes'])}",
        "renders",
    ]
    for name in (
        stats.TILES_RENDERED,
        stats.THUMBNAILS_RENDERED,
        "regions_rendered",
        stats.RAW_TILES_READ,
        stats.RAW_TILES_SYNTHESIZED,
        stats.RENDER_ERRORS,
    ):
        lines.append(f"  {name.replace('_', ' '):<18} {c.get(name, 0):>12,}")
    lines.append(
        f"  prefetch           {c[stats.PREFETCH_TASKS]:>12,} tasks"
        f"  {c[stats.PREFETCH_TILES]:,} tiles"
    )
    lines.append("work in progress")
    lines.append(f"  in flight          {snapshot.inflight:>12,}")
    for queue, depth in sorted(snapshot.queues.items()):
        lines.append(f"  queue {queue:<12} {depth:>12,}")
    for role, count in sorted(snapshot.workers.items()):
        lines.append(f"  {role} nodes{'':<{max(0, 12 - len(role))}} {count:>12,}")
    return "\n".join(lines) + "\n"


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
