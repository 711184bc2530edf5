"""What each setting accepts: one check per :class:`common.settings.Settings` field.

A value tilecast cannot use is refused when the settings are read, in every process, with
one line naming the variable and what it accepts, instead of a traceback (or a silent
fallback) later, in a worker, at the first request that needs it.
``tests/unit/test_setting_checks.py`` requires a check for every field.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

# A check returns None for a usable value, else what the setting accepts.
Check = Callable[[Any], str | None]

REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def at_least(low: float) -> Check:
    def check(value: Any) -> str | None:
        return None if math.isfinite(value) and value >= low else f"a number >= {low:g}"

    return check


def above(low: float) -> Check:
    def check(value: Any) -> str | None:
        return None if math.isfinite(value) and value > low else f"a number > {low:g}"

    return check


def between(low: float, high: float) -> Check:
    def check(value: Any) -> str | None:
        usable = math.isfinite(value) and low <= value <= high
        return None if usable else f"a number from {low:g} to {high:g}"

    return check


def fraction(value: float) -> str | None:
    return None if math.isfinite(value) and 0 < value <= 1 else "a fraction above 0, at most 1"


def switch(value: int) -> str | None:
    return None if value in (0, 1) else "0 (off) or 1 (on)"


def anything(value: Any) -> str | None:
    """Free text (secrets, keys checked where they are parsed, names)."""
    return None


def redis_url(value: str) -> str | None:
    if not value:
        return None  # the URL it defaults to
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    return None if scheme in REDIS_SCHEMES else "a redis://, rediss:// or unix:// URL"


def any_url(value: str) -> str | None:
    """A Celery broker: redis://, amqp://, memory://, ..."""
    return None if not value or "://" in value else "a URL, scheme://..."


def http_url(value: str) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    usable = parts.scheme in ("http", "https") and bool(parts.netloc)
    return None if usable else "an http:// or https:// URL"


def absolute_paths(value: tuple[str, ...]) -> str | None:
    # A relative root would mean a different directory in each process's working directory.
    usable = all(os.path.isabs(p) for p in value)
    return None if usable else f"absolute directories, {os.pathsep!r}-separated"


def absolute_path(value: str) -> str | None:
    return None if not value or os.path.isabs(value) else "an absolute directory"


def path_pairs(value: tuple[str, ...]) -> str | None:
    usable = all(a and b for a, sep, b in (pair.partition("=") for pair in value))
    return None if usable else f"GIRDER_PATH=LOCAL_PATH pairs, {os.pathsep!r}-separated"


def log_level(value: str) -> str | None:
    return None if value.upper() in LOG_LEVELS else "one of " + ", ".join(LOG_LEVELS)


def networks(value: str) -> str | None:
    try:
        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip())
    except ValueError:
        return "comma-separated addresses or networks (10.0.0.0/8)"
    return None


def origin_list(value: str) -> str | None:
    """``*`` or comma-separated origins (``scheme://host[:port]``), api/middleware/cors.py."""
    for part in (p.strip().rstrip("/") for p in value.split(",")):
        parts = urlsplit(part)
        if part and part != "*" and not (parts.scheme and parts.netloc and not parts.path):
            return "*, or comma-separated origins such as https://viewer.example:8443"
    return None


def named_origins(value: str) -> str | None:
    """Management is opened to named origins only: ``*`` would let any page use it."""
    if any(p.strip() == "*" for p in value.split(",")):
        return "comma-separated origins, not * (any web page could then manage the server)"
    return origin_list(value)


CHECKS: dict[str, Check] = {
    "cache_url": redis_url,
    "state_url": redis_url,
    "broker_url": any_url,
    "source_roots": absolute_paths,
    "render_timeout": above(0),
    "inflight_ttl": above(0),
    "tile_ttl": at_least(0),
    "generation_ttl": at_least(0),
    "source_cache_count": at_least(1),
    "source_cache_bytes": at_least(1),
    "active_window": at_least(0),
    "keeper_interval": at_least(0),
    "keeper_high_water": fraction,
    "keeper_low_water": fraction,
    "prefetch": switch,
    "prefetch_viewer_tiles": at_least(0),
    "prefetch_tiles": at_least(0),
    "prefetch_window": above(0),
    "prefetch_ttl": above(0),
    "hit_path": switch,
    "max_queue_depth": at_least(0),
    "max_waiting": at_least(1),
    "affinity_queue_depth": at_least(0),
    "worker_ttl": above(0),
    "bulk_nice": between(0, 19),
    "worker_max_tasks": at_least(0),
    "worker_max_memory_mb": at_least(0),
    "worker_heap_keep": at_least(0),
    "max_style_bytes": at_least(1),
    "max_query_bytes": at_least(1),
    "max_path_bytes": at_least(1),
    "max_body_bytes": at_least(1),
    "rate_limit": at_least(0),
    "rate_limit_burst": at_least(0),
    "trusted_proxies": networks,
    "max_thumbnail_size": at_least(1),
    "max_region_pixels": at_least(1),
    "max_decode_pixels": at_least(1),
    "http_max_age": at_least(0),
    "jpeg_quality": between(1, 100),
    "job_block": at_least(1),
    "job_inflight_batches": at_least(1),
    "job_lease": above(0),
    "job_queue_lease": above(0),
    "job_max_attempts": at_least(1),
    "job_retention": at_least(0),
    "auto_precache": switch,
    "auto_precache_levels": at_least(0),
    "log_level": log_level,
    # Checked with their neighbours in Settings.resolved (modes, keys, Girder URL).
    "log_format": anything,
    "access_mode": anything,
    "signing_keys": anything,
    "cors_origins": origin_list,
    "cors_manage_origins": named_origins,
    "girder_url": http_url,
    "girder_api_key": anything,
    "girder_secret": anything,
    "girder_access_ttl": at_least(0),
    "girder_timeout": above(0),
    "girder_path_map": path_pairs,
    "girder_block_size": at_least(1),
    "girder_block_cache_bytes": at_least(0),
    "girder_block_ttl": at_least(0),
    "girder_file_ttl": at_least(0),
    "girder_download_dir": absolute_path,
    "girder_download_cache_bytes": at_least(1),
    "max_request_cost": at_least(0),
    "render_soft_time_limit": at_least(0),
    "render_time_limit": at_least(0),
    "bulk_soft_time_limit": at_least(0),
    "bulk_time_limit": at_least(0),
    "too_costly_ttl": at_least(0),
    "source_share": between(0, 1),
    "max_decode_disk_bytes": at_least(1),
    "decode_cache_dir": absolute_path,
    "file_check_interval": at_least(0),
    "redis_timeout": above(0),
    "redis_connect_timeout": above(0),
    "readyz_timeout": above(0),
    "public_url": http_url,
    # Parsed in Settings.resolved (common/remoteurls.py), which names the bad entry.
    "remote_allow": anything,
    "dicomweb_token": anything,
    "dicomweb_user": anything,
    "dicomweb_password": anything,
    "remote_endpoints": anything,
    "remote_timeout": above(0),
    "remote_retries": between(0, 10),
    "remote_backoff": at_least(0),
    "remote_block_size": at_least(1024),
    "remote_block_cache_bytes": at_least(0),
    "remote_block_ttl": at_least(0),
    "remote_download_dir": absolute_path,
    "remote_download_cache_bytes": at_least(1),
}


def problem(name: str, value: Any) -> str | None:
    """What setting ``name`` accepts, when ``value`` is not usable; None when it is (or
    when the field has no check yet: the unit test above refuses that)."""
    check = CHECKS.get(name)
    return None if check is None else check(value)
