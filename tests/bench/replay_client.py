"""Replay viewer sessions (tests/bench/browse_model.py) over real HTTP and time each view.

*Time to full view*: from the moment a viewer lands on a view (the think time before it
is over: it pans or zooms) to the moment the last tile its viewport shows has arrived.
Tiles it already has (the browser cache) cost nothing; a view that needs no new tile
is counted apart (``cached_views``), not as a zero.

One asyncio loop runs every viewer, as tests/bench/load_client.py does: per viewer an
aiohttp session of at most ``CONNECTIONS_PER_VIEWER`` keep-alive connections (a
browser's limit per host), the view's tiles sent in loading order through them. Each
viewer connects from its own loopback address (127.0.x.y; Linux routes all of
127.0.0.0/8 to the loopback) and sends its own User-Agent, as distinct browsers on
distinct machines would: the api tells viewers apart by client address and User-Agent.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import aiohttp

from tests.bench.browse_model import Session
from tests.bench.load_client import CACHE_HEADER, CONNECTIONS_PER_VIEWER, Target, tile_url
from tests.bench.load_viewer import TileId

MAX_ERROR_MESSAGES = 10


@dataclass(frozen=True)
class ViewRecord:
    viewer: int
    index: int
    action: str
    tiles: int  # tiles asked (the view's tiles the viewer did not have)
    misses: int  # answers that waited for a render (X-Tilecast-Cache: miss)
    seconds: float  # time to full view


@dataclass
class ReplayResult:
    viewers: int
    views: list[ViewRecord] = field(default_factory=list)
    cached_views: int = 0  # views whose every tile the viewer had already
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    error_messages: list[str] = field(default_factory=list)
    distinct_tiles: set[tuple[str, TileId]] = field(default_factory=set)
    elapsed: float = 0.0
    client_cpu: float = 0.0

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_messages) < MAX_ERROR_MESSAGES:
            self.error_messages.append(message)

    @property
    def tiles(self) -> int:
        return sum(v.tiles for v in self.views)

    @property
    def misses(self) -> int:
        return sum(v.misses for v in self.views)


def viewer_address(index: int) -> str:
    """A loopback address of its own for viewer ``index`` (127.0.1.1, 127.0.1.2, ...)."""
    n = index + 257
    return f"127.0.{n // 254}.{n % 254 + 1}"


def user_agent(index: int) -> str:
    return f"Mozilla/5.0 (X11; Linux x86_64) tilecast-replay/1 viewer-{index}"


async def _fetch(session: aiohttp.ClientSession, url: str, result: ReplayResult) -> str | None:
    """GET ``url``: its cache header on a 200, else None with the error recorded."""
    try:
        async with session.get(url) as response:
            body = await response.read()
            result.statuses[response.status] += 1
            if response.status != 200:
                result.error(f"{url} -> {response.status}: {body[:200]!r}")
                return None
            return response.headers.get(CACHE_HEADER, "")
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        result.error(f"{url}: {type(exc).__name__}: {exc}")
        return None


async def _lane(
    session: aiohttp.ClientSession,
    target: Target,
    source_id: str,
    pending: Iterator[TileId],
    result: ReplayResult,
    misses: list[int],
) -> None:
    """One of a viewer's connections: the view's next tile until none is left."""
    for tile in pending:
        result.distinct_tiles.add((source_id, tile))
        if await _fetch(session, tile_url(target, source_id, tile), result) == "miss":
            misses[0] += 1


async def _viewer(index: int, plan: Session, target: Target, result: ReplayResult) -> None:
    source_id = target.source_ids[plan.image]
    connector = aiohttp.TCPConnector(
        limit=CONNECTIONS_PER_VIEWER, local_addr=(viewer_address(index), 0)
    )
    timeout = aiohttp.ClientTimeout(total=target.timeout)
    headers = {"User-Agent": user_agent(index)}
    have: set[TileId] = set()  # the browser cache
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers
    ) as session:
        await _fetch(session, f"{target.base_url}/item/{source_id}/tiles", result)
        for number, view in enumerate(plan.views):
            wanted = [tile for tile in view.tiles if tile not in have]
            have.update(wanted)
            if not wanted:
                result.cached_views += 1
            else:
                start = time.perf_counter()
                misses = [0]
                pending = iter(wanted)  # shared by the lanes: each takes the next tile
                await asyncio.gather(
                    *(
                        _lane(session, target, source_id, pending, result, misses)
                        for _ in range(CONNECTIONS_PER_VIEWER)
                    )
                )
                seconds = time.perf_counter() - start
                result.views.append(
                    ViewRecord(index, number, view.action, len(wanted), misses[0], seconds)
                )
            if number + 1 < len(plan.views):
                await asyncio.sleep(view.think)


async def _replay(target: Target, plans: Sequence[Session]) -> ReplayResult:
    result = ReplayResult(viewers=len(plans))
    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(_viewer(i, plan, target, result) for i, plan in enumerate(plans)))
    result.elapsed = time.perf_counter() - start
    result.client_cpu = time.process_time() - cpu
    return result


def replay(target: Target, plans: Sequence[Session]) -> ReplayResult:
    """Every session at once, one viewer each; returns when the last view is loaded."""
    return asyncio.run(_replay(target, plans))
