"""The one typed settings object, read once from ``TILECAST_*`` environment variables.

Nothing else in tilecast reads ``os.environ``: every process calls :func:`get_settings`
(or builds :class:`Settings` with :meth:`Settings.from_env` in tests) and passes values on.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from typing import Any

from tilecast.common.errors import ConfigurationError
from tilecast.common.redisconn import is_cluster_url, parse_cluster_url
from tilecast.common.remoteurls import RemoteUrl, parse_allow_list, parse_endpoints
from tilecast.common.setting_checks import problem
from tilecast.common.signing import parse_keys

PREFIX = "TILECAST_"
# Reserved for tilecast's own tests and benchmarks (TILECAST_TEST_MONGO_URI, ...): never
# a setting, so never refused as an unknown one.
TEST_PREFIX = PREFIX + "TEST_"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
ACCESS_MODES = ("open", "girder", "signed")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True)
class Settings:
    """Every knob tilecast has; see the README's configuration table."""

    # Redis "cache" (tiles, metadata; may evict) and "state" (registry, generations,
    # in-flight markers; never evicts). The broker defaults to the state Redis.
    cache_url: str = DEFAULT_REDIS_URL
    state_url: str = ""
    broker_url: str = ""
    # Local image files may only be registered from below these directories.
    source_roots: tuple[str, ...] = ()
    # How long an HTTP request waits for a render before answering 504.
    render_timeout: float = 30.0
    # Requests one api process lets wait for renders at once; past it a 503
    # too_many_waiting. The servers run this many app threads on top of --threads, so
    # that waiting requests never hold the threads that answer hits (tilecast/servers.py).
    # 512: servers do not spread connections evenly over processes, and 128 viewers (768
    # connections) on cold images of a 2-core machine had one process refuse past 256
    # (docs/BENCHMARKS.md, section 5).
    max_waiting: int = 512
    # In-flight markers expire after this long even if their worker died.
    inflight_ttl: float = 60.0
    # Rendered tiles carry this TTL (seconds, 0 = none) so that a shared Redis can use
    # volatile-lru and never evict state.
    tile_ttl: int = 7 * 24 * 3600
    # The api remembers a source's generation this long before asking Redis again,
    # which keeps the hit path at one Redis round trip.
    generation_ttl: float = 1.0
    # A worker checks that an open local source's file is still the registered one
    # (one stat) at most this often per open source; a change registers a new
    # generation (workers/filechanges.py). 0 = on every use.
    file_check_interval: float = 2.0
    # Worker source cache bounds.
    source_cache_count: int = 32
    source_cache_bytes: int = 2 * 1024**3
    # Activity-aware caching (common/activity.py, workers/keeper.py): a source viewed
    # within this many seconds is "active"; its tiles and open source are kept first.
    active_window: float = 600.0
    # The cache keeper trims the cache Redis, least recently viewed sources first, from
    # used_memory > high_water * maxmemory down to low_water * maxmemory; it checks
    # every keeper_interval seconds (0 = no keeper).
    keeper_interval: float = 2.0
    keeper_high_water: float = 0.9
    keeper_low_water: float = 0.75
    # Prefetch (api/miss/prefetch.py): from the tiles a viewer asks for, render on the bulk
    # pool what that viewer likely needs next (the band ahead of its pan, the finer level
    # under its view while it zooms in); 0 = off, 1 = on. At most prefetch_viewer_tiles
    # per viewer and prefetch_tiles for everyone per prefetch_window seconds; a
    # queued tile not rendered within prefetch_ttl seconds is dropped. On by default: fed
    # by hits as well as misses, it cut the median time to full view of 32 replayed
    # viewers by 57% at 1.15x the renders (goal 30% at <= 1.5x; docs/BENCHMARKS.md, 13).
    prefetch: int = 1
    prefetch_viewer_tiles: int = 48
    prefetch_tiles: int = 1000
    prefetch_window: float = 10.0
    prefetch_ttl: float = 5.0
    # Worker pools and source affinity (api/miss/routing.py, workers/heartbeat.py): interactive
    # tasks that may wait in the shared queue before a miss is answered 503 (0 = no
    # bound); tasks per worker process that may wait in a worker's own queue before a
    # source's work spills to the shared queue (0 = no affinity); seconds a worker counts
    # as live after its last heartbeat; OS niceness of bulk-only worker nodes.
    max_queue_depth: int = 1000
    affinity_queue_depth: int = 4
    worker_ttl: float = 5.0
    bulk_nice: int = 19
    # Worker pool processes are replaced after this many tasks (0 = never) or once their
    # resident memory passes this many MiB after a task (0 = no bound): a leak in a
    # decoder costs a process, never the host. The memory bound must stay above
    # source_cache_bytes, which a healthy process may fill.
    worker_max_tasks: int = 0
    worker_max_memory_mb: int = 4096
    # Freed memory a worker process keeps in its heap for the next tile instead of
    # returning it to the kernel (workers/allocator.py; 0 = glibc's defaults).
    worker_heap_keep: int = 128 * 1024 * 1024
    # Request bounds.
    max_style_bytes: int = 16 * 1024
    # Longest query string and path (bytes, as sent) before anything else: past them a
    # 414 (the query bound leaves room for a largest style percent-encoded, and stays
    # below granian's own 64 KiB URI cap, past which it answers a bare 414); the largest
    # request body (POST JSON): past it a 413 (api/middleware/limits.py).
    max_query_bytes: int = 60 * 1024
    max_path_bytes: int = 2 * 1024
    max_body_bytes: int = 64 * 1024
    # Per-client rate limit (api/middleware/ratelimit.py): requests per second (0 = off) with a
    # burst of rate_limit_burst (0 = twice the rate, at least 1); clients behind these
    # comma-separated proxy addresses or networks are told apart by X-Forwarded-For.
    rate_limit: float = 0.0
    rate_limit_burst: int = 0
    trusted_proxies: str = ""
    max_thumbnail_size: int = 4096
    # Largest region (and histogram analysis) output, in pixels: past it a 400 naming
    # width. A region is read from a level at most twice its output size per side.
    max_region_pixels: int = 4096 * 4096
    # Per-request cost budget (common/cost.py): output pixels x (style layers or bands +
    # codec factor), in units of about 5 ns of one core; past it a 400 naming the budget.
    max_request_cost: int = 2 * 10**9
    # Time limits of a task, per kind (Celery soft and hard limits, seconds; 0 = none):
    # past the soft one the render stops and its waiters are told 503 too_costly; past the
    # hard one its pool process is killed. Interactive renders, then bulk batches.
    render_soft_time_limit: float = 90.0
    render_time_limit: float = 120.0
    bulk_soft_time_limit: float = 600.0
    bulk_time_limit: float = 660.0
    # Seconds a render stopped by its time limit is answered 503 too_costly at once.
    too_costly_ttl: int = 300
    # Share of the interactive pool's processes one source may hold while other sources'
    # renders wait (common/share.py); over it a task is deferred behind them (0 = off).
    source_share: float = 0.5
    # Decoding bound: images (or levels read whole) beyond this many pixels are refused.
    max_decode_pixels: int = 2 * 10**11
    # Images libvips must decode whole (PNG, JPEG, WebP, ...) beyond 100 MiB decoded are
    # converted once per machine into a tiled TIFF under decode_cache_dir (default: a
    # "tilecast-decoded" folder in the system temporary directory), shared by every
    # worker process; one image, and the folder, hold at most max_decode_disk_bytes
    # (least recently used copies deleted first); a larger image is refused (422).
    max_decode_disk_bytes: int = 4 * 1024**3
    decode_cache_dir: str = ""
    # HTTP caching of tiles.
    http_max_age: int = 24 * 3600
    # Tile hits answered by raw WSGI in front of Flask (api/hitpath/; 1 = on, 0 = every
    # request through Flask: the same answers at several times the CPU per hit).
    hit_path: int = 1
    # Default JPEG quality when a request gives none (large_image's default).
    jpeg_quality: int = 95
    # Pre-rendering jobs (common/jobstore.py, workers/precache.py): tiles per block side of a
    # batch; batches in flight per job; a started batch's lease (renewed at every
    # flush) and a queued batch's lease, after which the job driver re-dispatches it;
    # dispatches of a batch before it is recorded as failed; seconds a finished job's
    # record is kept (0 = forever).
    job_block: int = 8
    job_inflight_batches: int = 16
    job_lease: float = 30.0
    job_queue_lease: float = 60.0
    job_max_attempts: int = 3
    job_retention: int = 7 * 24 * 3600
    # Newly registered sources get a job: their thumbnail and levels 0 to
    # auto_precache_levels (auto_precache 0 = off).
    auto_precache: int = 1
    auto_precache_levels: int = 2
    log_level: str = "INFO"
    # "text" (one readable line per record) or "json" (one JSON object per line, for log
    # collectors); common/logs.py.
    log_format: str = "text"
    # Access control (api/middleware/access.py): "open" (no check) or "girder" (the request's Girder
    # token must read the item; decisions remembered girder_access_ttl seconds per token
    # and item) or "signed" (HMAC-signed URL prefixes with expiry, api/middleware/signed.py).
    access_mode: str = "open"
    # The "signed" mode's keys (common/signing.py): keyid:secret[,keyid:secret...]; all
    # verify, the first signs.
    signing_keys: str = ""
    # Origins whose pages may read tilecast's answers (api/middleware/cors.py): "*", a
    # comma-separated list, or empty for no CORS headers. Management routes (sources,
    # jobs, pre-rendering, the Girder plugin's calls) answer only cors_manage_origins,
    # a comma-separated list (default none: no page of another origin may manage).
    cors_origins: str = "*"
    cors_manage_origins: str = ""
    # Girder (common/girder.py): its API root (http://host:8080/api/v1); the API key of
    # the service account workers read items and files with (read access to every image
    # item, typically an admin); the secret its tilecast plugin signs calls with;
    # seconds any Girder call may take before Girder counts as unreachable.
    girder_url: str = ""
    girder_api_key: str = ""
    girder_secret: str = ""
    girder_access_ttl: float = 10.0
    girder_timeout: float = 5.0
    # Reading Girder files (workers/girder/): "GIRDER_PATH=LOCAL_PATH" prefix pairs
    # (os.pathsep-separated) under which a worker sees Girder's filesystem assetstores;
    # otherwise HTTP range reads of /file/{id}/download in blocks of girder_block_size
    # bytes, each process keeping girder_block_cache_bytes of them; the blocks holding a
    # file's directories are shared by all processes in the cache Redis for
    # girder_block_ttl seconds, and which file each registration (source generation) of
    # an item reads for girder_file_ttl seconds (0 = not shared); a server that
    # ignores Range is downloaded whole into girder_download_dir (default: a
    # "tilecast-downloads" folder in the system temporary directory), bounded by
    # girder_download_cache_bytes, least recently used files deleted first.
    girder_path_map: tuple[str, ...] = ()
    girder_block_size: int = 256 * 1024
    girder_block_cache_bytes: int = 256 * 1024**2
    girder_block_ttl: int = 24 * 3600
    girder_file_ttl: int = 300
    girder_download_dir: str = ""
    girder_download_cache_bytes: int = 20 * 1024**3
    # URL sources (common/remoteurls.py, workers/remote/): comma-separated URL prefixes
    # that may be registered (s3://bucket/, https://host/path/; empty: none); the
    # http(s) endpoints a source may name as its endpoint_url (S3-compatible stores);
    # seconds a request to a store may take to connect and between bytes; retries of a
    # throttled, failing or unreachable store (exponential backoff from
    # remote_backoff seconds) before a 503; blocks of remote_block_size bytes, each
    # process keeping remote_block_cache_bytes of them, the blocks holding a file's
    # directories shared in the cache Redis for remote_block_ttl seconds (0 = not
    # shared); formats whose library reads only local files (OpenSlide, CZI) are
    # downloaded whole into remote_download_dir (default: a "tilecast-remote" folder in
    # the system temporary directory), bounded by remote_download_cache_bytes, least
    # recently used files deleted first; a larger object is refused (422).
    remote_allow: str = ""
    remote_endpoints: str = ""
    remote_timeout: float = 10.0
    remote_retries: int = 3
    remote_backoff: float = 0.2
    remote_block_size: int = 256 * 1024
    remote_block_cache_bytes: int = 256 * 1024**2
    remote_block_ttl: int = 24 * 3600
    remote_download_dir: str = ""
    remote_download_cache_bytes: int = 20 * 1024**3
    # DICOMweb sources (dicomweb+https://..., workers/remote/dicomweb.py): the credentials
    # sent to every DICOMweb server the allow-list names with a dicomweb+ scheme, and to
    # no other URL: a bearer token ("Authorization: Bearer ..."), else HTTP basic with a
    # user and password; all empty: no credentials. Never echoed in answers or logs.
    dicomweb_token: str = ""
    dicomweb_user: str = ""
    dicomweb_password: str = ""
    # Redis sockets (common/redisconn.py), both roles and the Redis broker: seconds to
    # connect, and to wait for any one reply; a timed-out command is not retried, so a
    # frozen Redis costs a request one timeout, then a 503 with Retry-After. /readyz
    # answers within readyz_timeout, naming any check that did not finish by then.
    # The base of every absolute URL the api writes (IIIF ids, redirects, TileJSON),
    # like https://tiles.example.org or https://example.org/tiles; empty: the request's
    # Host when well formed (api/middleware/publicurl.py).
    public_url: str = ""
    redis_connect_timeout: float = 2.0
    redis_timeout: float = 5.0
    readyz_timeout: float = 3.0

    @property
    def remote_allowed(self) -> tuple[RemoteUrl, ...]:
        """``remote_allow`` parsed (checked when the settings were read)."""
        return parse_allow_list(self.remote_allow)

    @property
    def remote_endpoint_urls(self) -> tuple[RemoteUrl, ...]:
        return parse_endpoints(self.remote_endpoints)

    @property
    def redis_timeouts(self) -> dict[str, float]:
        """``connect(url, **settings.redis_timeouts)``: the configured socket timeouts."""
        return {"timeout": self.redis_timeout, "connect_timeout": self.redis_connect_timeout}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        _refuse_unknown_names(env)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, f.type, raw)
        if values.get("signing_keys") and "access_mode" not in values:
            # Keys alone suggest a protected server; the default mode would serve it open.
            raise ConfigurationError(
                f"{PREFIX}SIGNING_KEYS is set but {PREFIX}ACCESS_MODE is not: set "
                f"{PREFIX}ACCESS_MODE=signed to require signed URLs (or =open to serve "
                "without any check)"
            )
        return cls(**values).resolved()

    def resolved(self) -> Settings:
        """Check every value (common/setting_checks.py), then fill the URLs that default
        to other URLs."""
        state = self.state_url or self.cache_url
        broker = self.broker_url or state
        for f in fields(self):
            value = getattr(self, f.name)
            accepts = problem(f.name, value)
            if accepts is not None:
                raise ConfigurationError(f"{PREFIX}{f.name.upper()}={_shown(value)}: {accepts}")
        if self.keeper_low_water >= self.keeper_high_water:
            raise ConfigurationError(
                f"{PREFIX}KEEPER_LOW_WATER={self.keeper_low_water:g} must be below "
                f"{PREFIX}KEEPER_HIGH_WATER={self.keeper_high_water:g}"
            )
        if self.access_mode not in ACCESS_MODES:
            raise ConfigurationError(
                f"{PREFIX}ACCESS_MODE={self.access_mode!r}: one of {', '.join(ACCESS_MODES)}"
            )
        if self.log_format not in LOG_FORMATS:
            raise ConfigurationError(
                f"{PREFIX}LOG_FORMAT={self.log_format!r}: one of {', '.join(LOG_FORMATS)}"
            )
        if self.access_mode == "girder" and not self.girder_url:
            raise ConfigurationError(f"{PREFIX}ACCESS_MODE=girder needs {PREFIX}GIRDER_URL")
        if self.access_mode == "signed" and not self.signing_keys:
            raise ConfigurationError(f"{PREFIX}ACCESS_MODE=signed needs {PREFIX}SIGNING_KEYS")
        if self.signing_keys:
            parse_keys(self.signing_keys)
        parse_allow_list(self.remote_allow)
        parse_endpoints(self.remote_endpoints)
        if self.dicomweb_token and (self.dicomweb_user or self.dicomweb_password):
            raise ConfigurationError(
                f"{PREFIX}DICOMWEB_TOKEN and {PREFIX}DICOMWEB_USER/PASSWORD are both set: "
                "DICOMweb servers get one kind of credentials, a bearer token or HTTP basic"
            )
        if bool(self.dicomweb_user) != bool(self.dicomweb_password):
            raise ConfigurationError(
                f"{PREFIX}DICOMWEB_USER and {PREFIX}DICOMWEB_PASSWORD go together (HTTP basic)"
            )
        _check_cluster_urls(self.cache_url, self.state_url, broker)
        for name in ("redis_connect_timeout", "redis_timeout", "readyz_timeout"):
            if not getattr(self, name) > 0:  # 0 would make Redis sockets non-blocking
                raise ConfigurationError(f"{PREFIX}{name.upper()}: a number of seconds > 0")
        return replace(
            self, state_url=state, broker_url=broker, girder_url=self.girder_url.rstrip("/")
        )


def setting_names() -> frozenset[str]:
    """The environment variable of every setting."""
    return frozenset(PREFIX + f.name.upper() for f in fields(Settings))


def _refuse_unknown_names(env: Mapping[str, str]) -> None:
    """A misspelt variable would otherwise leave its setting at the default silently
    (an open server, say): the first unknown ``TILECAST_*`` name is refused, with the
    nearest real one."""
    names = setting_names()
    for key in sorted(env):
        if not key.startswith(PREFIX) or key in names or key.startswith(TEST_PREFIX):
            continue
        near = difflib.get_close_matches(
            key[len(PREFIX) :], [n[len(PREFIX) :] for n in names], n=1, cutoff=0.5
        )
        hint = f"did you mean {PREFIX}{near[0]}?" if near else "see the README's settings table"
        raise ConfigurationError(f"{key} is not a tilecast setting: {hint}")


def _shown(value: Any) -> str:
    """A refused value as the user wrote it, a URL's password left out (secrets and keys
    themselves are never refused by value here)."""
    text = os.pathsep.join(value) if isinstance(value, tuple) else value
    if isinstance(text, str):
        return repr(re.sub(r"://[^@/]*@", "://...@", text))
    return repr(text)


def _check_cluster_urls(cache_url: str, state_url: str, broker_url: str) -> None:
    """Only the cache Redis may be a Redis Cluster (common/redisconn.py); the state
    Redis, which defaults to the cache URL, must then be named."""
    if is_cluster_url(cache_url):
        parse_cluster_url(cache_url)
        if not state_url:
            raise ConfigurationError(
                f"{PREFIX}CACHE_URL names a Redis Cluster: set {PREFIX}STATE_URL to one "
                "Redis server (sources, generations, in-flight markers, jobs, the broker)"
            )
    for name, url in (("STATE_URL", state_url), ("BROKER_URL", broker_url)):
        if is_cluster_url(url):
            raise ConfigurationError(
                f"{PREFIX}{name} names a Redis Cluster: only {PREFIX}CACHE_URL may be one"
            )


def _parse(name: str, type_name: Any, raw: str) -> Any:
    type_text = str(type_name)
    try:
        if type_text == "tuple[str, ...]":
            return tuple(p for p in raw.split(os.pathsep) if p)
        if type_text == "int":
            return int(raw)
        if type_text == "float":
            return float(raw)
    except ValueError:
        kind = "a whole number" if type_text == "int" else "a number"
        raise ConfigurationError(f"{PREFIX}{name.upper()}={_shown(raw)}: {kind}") from None
    return raw


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings.from_env()
