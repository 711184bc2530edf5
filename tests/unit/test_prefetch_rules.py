"""The prefetch's rules (api/miss/prefetch.py, api/miss/prefetchplan.py,
workers/prefetching.py), against a real Redis: it follows the direction of travel, it
never claims or renders a tile someone waits for, and it stops at its budget."""

from __future__ import annotations

import ipaddress
import itertools
import uuid
from collections.abc import Iterator

import pytest
import redis
from werkzeug import Request

from tests.unit.fakes import FakeSender
from tilecast.api.miss.prefetch import Asked, Budget, Prefetcher, RawHit
from tilecast.api.miss.prefetchplan import TileId, heading, plan
from tilecast.common import inflight
from tilecast.common.counters import BatchedCounters
from tilecast.common.grid import Grid
from tilecast.common.keys import prefetch_queued_key, prefetch_viewer_key
from tilecast.common.taskprotocol import (
    QUEUE_BULK,
    TASK_RENDER_TILES,
    prefetch_expiry,
    tile_requests_from_payload,
)
from tilecast.common.tiles import TileRequest
from tilecast.workers.prefetching import PrefetchGuard

GRID = Grid.for_image(20000, 15000, 256, 256)  # 8 levels; level 6 is 40 x 30 tiles
META = {
    "sizeX": GRID.size_x,
    "sizeY": GRID.size_y,
    "tileWidth": 256,
    "tileHeight": 256,
    "levels": GRID.levels,
}
LEVEL = 6
VIEW = (10, 10, 17, 14)  # x0, y0, x1, y1: an 8 x 5 tile view at LEVEL


def centre_out(z: int, x0: int, y0: int, x1: int, y1: int) -> list[TileId]:
    """A view's tiles as OpenSeadragon asks for them: nearest the centre first."""
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    tiles = [(z, x, y) for y in range(y0, y1 + 1) for x in range(x0, x1 + 1)]
    return sorted(tiles, key=lambda t: (t[1] - cx) ** 2 + (t[2] - cy) ** 2)


def zoomed_in() -> list[TileId]:
    """A viewer that zoomed in from the level above onto VIEW: coarse tiles, then all of
    the view's tiles at LEVEL, centre first."""
    return [(LEVEL - 1, 6, 6), (LEVEL - 1, 7, 6), *centre_out(LEVEL, *VIEW)]


def panned_east(history: list[TileId], steps: int = 2) -> list[TileId]:
    """Pans of 3 tiles to the east after ``history``: each misses the band it uncovers."""
    x0, y0, x1, y1 = VIEW
    out = list(history)
    for _ in range(steps):
        band = centre_out(LEVEL, x1 + 1, y0, x1 + 3, y1)
        out += band
        x0, x1 = x0 + 3, x1 + 3
    return out


# --- the direction of travel (pure) ----------------------------------------------------


def test_a_fresh_view_has_no_direction_and_a_dive_prefetches_the_finer_level() -> None:
    h = heading(zoomed_in())
    assert h is not None and h.level == LEVEL and not h.travelling and h.diving
    wanted = plan(zoomed_in(), GRID)
    assert wanted and {z for z, _x, _y in wanted} == {LEVEL + 1}
    # Under the middle of the view (level LEVEL + 1 doubles the coordinates).
    assert all(2 * 11 <= x <= 2 * 17 and 2 * 11 <= y <= 2 * 14 for _z, x, y in wanted)
    first = wanted[0]
    assert (first[1], first[2]) in {(27, 24), (28, 24), (27, 25), (28, 25)}  # centre first


@pytest.mark.parametrize(
    ("flip", "axis"),
    [(False, "east"), (True, "west")],
)
def test_a_pan_prefetches_ahead_in_its_direction(flip: bool, axis: str) -> None:
    history = panned_east(zoomed_in())
    if flip:  # mirror the pan: x -> 39 - x (the level is 40 tiles wide)
        history = [(z, (39 if z == LEVEL else 19) - x, y) for z, x, y in history]
    h = heading(history)
    assert h is not None and h.travelling
    wanted = plan(history, GRID)
    assert wanted
    xs = [x for z, x, _y in wanted if z == LEVEL]
    assert len(xs) == len(wanted)  # the same level: a pan, not a zoom
    newest = history[-1][1]
    if axis == "east":
        assert h.dx > 0 and min(xs) > newest - 3  # nothing behind the view
        assert wanted[0][1] == min(xs)  # the band next to the view first
    else:
        assert h.dx < 0 and max(xs) < newest + 3
        assert wanted[0][1] == max(xs)


def test_a_pan_south_prefetches_below() -> None:
    transpose = [(z, y, x) for z, x, y in panned_east(zoomed_in())]  # east becomes south
    wanted = plan(transpose, GRID)
    assert wanted
    last_rows = max(y for z, _x, y in transpose if z == LEVEL)
    assert all(y > last_rows - 3 for _z, _x, y in wanted)
    assert max(y for _z, _x, y in wanted) > last_rows


def test_a_pan_at_a_level_does_not_dive() -> None:
    # A viewer that only ever panned at one level: no finer level is prefetched.
    history = centre_out(LEVEL, *VIEW)
    assert heading(history) is not None and not heading(history).diving  # type: ignore[union-attr]
    assert plan(history, GRID) == []
    assert plan(history[:3], GRID) == []  # too few misses say nothing


# --- against Redis: claims, markers, budget ---------------------------------------------

_windows = itertools.count(1)


class Clock:
    """A fixed time in a window of its own (budget windows are shared in Redis)."""

    def __init__(self) -> None:
        self.now = 1e9 + next(_windows) * 1000.0 + uuid.uuid4().int % 100

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sender(state: redis.Redis) -> FakeSender:
    fake = FakeSender(state)
    fake.silent = True  # record only: nothing renders
    return fake


def make_prefetcher(
    state: redis.Redis,
    sender: FakeSender,
    viewer_tiles: int = 48,
    tiles: int = 1000,
    plan_every: int = 1,
) -> Prefetcher:
    budget = Budget(viewer_tiles=viewer_tiles, tiles=tiles, window=10.0, ttl=5.0)
    return Prefetcher(
        state,
        state,
        sender,
        BatchedCounters(state),
        budget,
        same_redis=True,
        clock=Clock(),
        plan_every=plan_every,
        describe=lambda _source: META,
    )


def sent_tiles(sender: FakeSender) -> list[TileRequest]:
    out = []
    for name, payload, queue in sender.sent:
        assert name == TASK_RENDER_TILES and queue == QUEUE_BULK
        assert prefetch_expiry(payload) is not None
        out += tile_requests_from_payload(payload)
    return out


def replay(prefetcher: Prefetcher, source: str, viewer: str, misses: list[TileId]) -> None:
    for z, x, y in misses:
        prefetcher.prefetch(TileRequest(source, z, x, y), 1, META, viewer)


@pytest.fixture
def source() -> Iterator[str]:
    yield uuid.uuid4().hex[:24]


def test_prefetch_never_claims_a_tile_someone_waits_for(
    state: redis.Redis, sender: FakeSender, source: str
) -> None:
    prefetcher = make_prefetcher(state, sender)
    history = panned_east(zoomed_in())
    wanted = plan(history, GRID)
    waited = TileRequest(source, *wanted[0]).key(1)  # a viewer's miss claimed it
    cached = TileRequest(source, *wanted[1]).key(1)
    assert inflight.claim(state, waited, "viewer", 60)
    state.set(cached, b"tile")
    replay(prefetcher, source, "v1", history)
    sent = sent_tiles(sender)
    keys = {r.key(1) for r in sent}
    assert sent and waited not in keys and cached not in keys
    # What it sent carries a queued marker of its own, never an in-flight marker.
    assert all(not inflight.is_inflight(state, key) for key in keys)
    assert all(state.exists(prefetch_queued_key(key)) for key in keys)
    assert inflight.read(state, waited) == b"viewer"  # the viewer's marker is untouched
    # Another miss plans the same tiles: nothing queued is sent twice.
    before = len(sent)
    prefetcher.prefetch(TileRequest(source, *history[-1]), 1, META, "v1")
    assert len(sent_tiles(sender)) == before


def test_the_worker_skips_a_prefetched_tile_claimed_or_cached_meanwhile_or_expired(
    state: redis.Redis, source: str
) -> None:
    now = [100.0]
    guard = PrefetchGuard(state, state, expires=105.0, clock=lambda: now[0])
    free, waited, cached = (TileRequest(source, LEVEL, x, 3).key(1) for x in (1, 2, 3))
    inflight.claim(state, waited, "viewer", 60)
    state.set(cached, b"tile")
    assert guard.wanted(free)
    assert not guard.wanted(waited)  # a viewer waits: its own render is on its way
    assert not guard.wanted(cached)
    now[0] = 105.0
    assert not guard.wanted(free)  # expired: the viewer moved on
    assert guard.dropped == 3


def test_prefetch_stops_at_the_viewers_budget(
    state: redis.Redis, sender: FakeSender, source: str
) -> None:
    prefetcher = make_prefetcher(state, sender, viewer_tiles=10)
    replay(prefetcher, source, "v1", panned_east(zoomed_in(), steps=4))
    assert len(sent_tiles(sender)) == 10
    # Another viewer has a budget of its own.
    replay(prefetcher, source, "v2", [(z, x, y + 12) for z, x, y in panned_east(zoomed_in())])
    assert len(sent_tiles(sender)) == 20
    # The next window gives the first viewer a budget again.
    prefetcher.clock.now += 10.0  # type: ignore[attr-defined]
    replay(prefetcher, source, "v1", [(LEVEL, 26 + x, y) for x in range(3) for y in (10, 11)])
    assert 20 < len(sent_tiles(sender)) <= 30


def test_prefetch_stops_at_the_global_budget(
    state: redis.Redis, sender: FakeSender, source: str
) -> None:
    prefetcher = make_prefetcher(state, sender, viewer_tiles=48, tiles=15)
    for n in range(3):  # three viewers on three parts of the image
        misses = [(z, x, y + 5 * n) for z, x, y in panned_east(zoomed_in())]
        replay(prefetcher, source, f"v{n}", misses)
    assert len(sent_tiles(sender)) == 15


def test_hits_keep_the_prefetch_following_a_pan(
    state: redis.Redis, sender: FakeSender, source: str
) -> None:
    """A viewer whose next pans all hit (prefetch was right) is still followed: what it
    asked for moves the plan on, hit or miss."""
    prefetcher = make_prefetcher(state, sender)
    history = panned_east(zoomed_in())
    replay(prefetcher, source, "v1", history)  # misses: the band ahead is queued
    first = sent_tiles(sender)
    assert first and max(r.x for r in first) > max(x for _z, x, _y in history)
    # The prefetch rendered: the viewer's next two pans east hit the cache, every tile.
    x_end = max(x for z, x, _y in history if z == LEVEL)
    hits = []
    for step in range(2):
        band = centre_out(LEVEL, x_end + 1 + 3 * step, VIEW[1], x_end + 3 + 3 * step, VIEW[3])
        hits += band
    for z, x, y in hits:
        state.set(TileRequest(source, z, x, y).key(1), b"tile")
    before = len(first)
    prefetcher.clock.now += 10.0  # type: ignore[attr-defined]  # a budget window of its own
    prefetcher.handle([Asked("v1", TileRequest(source, z, x, y), 1) for z, x, y in hits])
    later = sent_tiles(sender)[before:]
    assert later, "hits moved the plan on"
    assert min(r.x for r in later) > x_end + 3  # further east than what was hit
    assert all(r.z == LEVEL for r in later)


def test_a_batch_records_each_viewer_once_and_plans_once_per_viewer(
    state: redis.Redis, sender: FakeSender, source: str
) -> None:
    prefetcher = make_prefetcher(state, sender, plan_every=4)
    tiles = panned_east(zoomed_in())
    other = [(z, x, y + 12) for z, x, y in tiles]
    batch = [
        Asked(viewer, TileRequest(source, z, x, y), 1)
        for pair in zip(tiles, other, strict=True)
        for viewer, (z, x, y) in zip(("v1", "v2"), pair, strict=True)
    ]
    prefetcher.handle(batch)
    for viewer, asked in (("v1", tiles), ("v2", other)):
        recorded = state.lrange(prefetch_viewer_key(viewer), 0, -1)
        assert recorded == [f"{z},{x},{y}".encode() for z, x, y in asked[-64:]]
    # One plan per viewer: one render_tiles task per level, here one level each.
    assert len(sender.sent) == 2
    assert {r.y >= 22 for r in sent_tiles(sender)} == {True, False}


@pytest.mark.parametrize(("count", "asked", "plans"), [(0, 1, True), (1, 3, False), (1, 4, True)])
def test_one_tile_in_plan_every_plans(
    state: redis.Redis, sender: FakeSender, count: int, asked: int, plans: bool
) -> None:
    prefetcher = make_prefetcher(state, sender, plan_every=4)
    if count:
        assert prefetcher._plans_now("v", count)
    assert prefetcher._plans_now("v", asked) is plans


def test_a_hit_path_hit_is_the_same_viewer_as_its_flask_request(
    state: redis.Redis, sender: FakeSender, source: str
) -> None:
    prefetcher = make_prefetcher(state, sender)
    prefetcher.proxies = (ipaddress.ip_network("10.0.0.0/8"),)
    headers = {"User-Agent": "viewer/1", "X-Forwarded-For": "192.0.2.7, 10.1.2.3"}
    environ = {"REMOTE_ADDR": "10.9.9.9"} | {
        "HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()
    }
    prefetcher.after_raw_hit(
        RawHit(source, 0, LEVEL, 3, 4, 1, "10.9.9.9", headers["X-Forwarded-For"], "viewer/1")
    )
    prefetcher.drain()
    viewer = prefetcher.viewer(Request(environ), TileRequest(source, LEVEL, 3, 4))
    assert state.lrange(prefetch_viewer_key(viewer), 0, -1) == [f"{LEVEL},3,4".encode()]
