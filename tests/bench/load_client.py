"""The load generator: simulated viewers (tests/bench/load_viewer.py) over real HTTP.

One asyncio loop runs every viewer. Each viewer has its own aiohttp session with at
most ``CONNECTIONS_PER_VIEWER`` keep-alive connections, as a browser has per host, and
sends a step's tiles in order through them (coarse levels first); the next step comes
after the think time. Nothing is cancelled at the end: past the deadline no viewer sends
another request, and the run ends when the last answer is in.

Each tile answer is classified by the api's ``X-Tilecast-Cache`` header (``hit`` or
``miss``); anything but a 200 (or an exception: refused, reset, timed out) is an error.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import aiohttp

from tests.bench.load_viewer import ImageGeometry, TileId, Viewer, ViewerConfig
from tests.bench.report import percentile

CACHE_HEADER = "X-Tilecast-Cache"
# Browsers open at most 6 HTTP/1.1 connections per host; OSD's own loader is unlimited.
CONNECTIONS_PER_VIEWER = 6
MAX_ERROR_MESSAGES = 10


@dataclass
class LoadResult:
    users: int
    duration: float  # seconds the viewers were started for
    elapsed: float = 0.0  # from the start to the last answer
    hit_seconds: list[float] = field(default_factory=list)
    miss_seconds: list[float] = field(default_factory=list)
    unclassified: int = 0  # tile answers without the cache header
    metadata_requests: int = 0
    steps: int = 0
    opens: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    error_messages: list[str] = field(default_factory=list)
    distinct_tiles: set[tuple[str, TileId]] = field(default_factory=set)
    bytes_received: int = 0
    client_cpu: float = 0.0  # CPU seconds the load generator itself used

    @property
    def client_cores(self) -> float:
        """The load generator's average CPU use, in cores (it shares the machine)."""
        return self.client_cpu / self.elapsed if self.elapsed else 0.0

    @property
    def tile_requests(self) -> int:
        return len(self.hit_seconds) + len(self.miss_seconds) + self.unclassified

    @property
    def requests(self) -> int:
        """Every request sent, answered or failed (tiles and metadata)."""
        return self.tile_requests + self.metadata_requests + self.errors

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    @property
    def hit_ratio(self) -> float:
        classified = len(self.hit_seconds) + len(self.miss_seconds)
        return len(self.hit_seconds) / classified if classified else float("nan")

    def latency(self, kind: str, q: float) -> float:
        values = self.hit_seconds if kind == "hit" else self.miss_seconds
        return percentile(values, q)

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_messages) < MAX_ERROR_MESSAGES:
            self.error_messages.append(message)


@dataclass(frozen=True)
class Target:
    """The server and the images, ranked by popularity (the first the most viewed)."""

    base_url: str
    source_ids: Sequence[str]
    geometries: Sequence[ImageGeometry]
    query: str = ""  # appended to every tile URL (e.g. "?encoding=PNG")
    timeout: float = 120.0  # per request; the api's own render timeout is shorter


def tile_url(target: Target, source_id: str, tile: TileId) -> str:
    z, x, y = tile
    return f"{target.base_url}/item/{source_id}/tiles/zxy/{z}/{x}/{y}{target.query}"


async def _fetch(
    session: aiohttp.ClientSession, url: str, result: LoadResult
) -> tuple[float, str] | None:
    """GET ``url``; (seconds, cache header) of a 200, else None with the error recorded."""
    start = time.perf_counter()
    try:
        async with session.get(url) as response:
            body = await response.read()
            seconds = time.perf_counter() - start
            result.statuses[response.status] += 1
            if response.status != 200:
                result.error(f"{url} -> {response.status}: {body[:200]!r}")
                return None
            result.bytes_received += len(body)
            return seconds, response.headers.get(CACHE_HEADER, "")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        result.error(f"{url}: {type(exc).__name__}: {exc}")
        return None


async def _viewer(
    index: int,
    seed: int,
    target: Target,
    config: ViewerConfig,
    deadline: float,
    result: LoadResult,
) -> None:
    viewer = Viewer(seed * 1_000_003 + index, target.geometries, config)
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=CONNECTIONS_PER_VIEWER, force_close=False)
    timeout = aiohttp.ClientTimeout(total=target.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        while True:
            step = viewer.next_step()
            await asyncio.sleep(min(step.think, max(0.0, deadline - loop.time())))
            if loop.time() >= deadline:
                return
            source_id = target.source_ids[step.image]
            if step.opens:
                result.opens += 1
                url = f"{target.base_url}/item/{source_id}/tiles"
                if await _fetch(session, url, result) is not None:
                    result.metadata_requests += 1
            result.steps += 1
            pending = iter(step.tiles)  # shared by the lanes: each takes the next tile
            lanes = (
                _lane(session, target, source_id, pending, deadline, result)
                for _ in range(CONNECTIONS_PER_VIEWER)
            )
            await asyncio.gather(*lanes)


async def _lane(
    session: aiohttp.ClientSession,
    target: Target,
    source_id: str,
    pending: Iterator[TileId],
    deadline: float,
    result: LoadResult,
) -> None:
    """One of a viewer's connections: the step's next tile until none is left."""
    loop = asyncio.get_running_loop()
    for tile in pending:
        if loop.time() >= deadline:
            return
        result.distinct_tiles.add((source_id, tile))
        answer = await _fetch(session, tile_url(target, source_id, tile), result)
        if answer is None:
            continue
        seconds, cache = answer
        if cache == "hit":
            result.hit_seconds.append(seconds)
        elif cache == "miss":
            result.miss_seconds.append(seconds)
        else:
            result.unclassified += 1


async def _run(
    target: Target, users: int, duration: float, seed: int, config: ViewerConfig
) -> LoadResult:
    result = LoadResult(users=users, duration=duration)
    loop = asyncio.get_running_loop()
    start, cpu = loop.time(), time.process_time()
    deadline = start + duration
    await asyncio.gather(
        *(_viewer(i, seed, target, config, deadline, result) for i in range(users))
    )
    result.elapsed = loop.time() - start
    result.client_cpu = time.process_time() - cpu
    return result


def run_load(
    target: Target,
    users: int,
    duration: float,
    *,
    seed: int = 1,
    config: ViewerConfig | None = None,
) -> LoadResult:
    """``users`` simulated viewers for ``duration`` seconds (then the answers still due)."""
    return asyncio.run(_run(target, users, duration, seed, config or ViewerConfig()))
