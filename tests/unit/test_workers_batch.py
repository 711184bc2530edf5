"""The render_tiles task (eager) against a real Redis: a block rendered once, skips, failures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from tests.unit.conftest import register_source
from tilecast.common import counters
from tilecast.common.inflight import claim, is_inflight
from tilecast.common.style import canonical_style
from tilecast.common.taskprotocol import (
    prefetch_payload,
    render_tiles_payload,
    tile_requests_from_payload,
)
from tilecast.common.tiles import TileRequest
from tilecast.workers import tasks
from tilecast.workers.engine import Renderer


def announced(pubsub: redis.client.PubSub, wait: float = 1.0) -> dict[str, dict | None]:
    """key -> error of every completion heard until ``wait`` passes without one."""
    found: dict[str, dict | None] = {}
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message and message["type"] == "message":
            body = json.loads(message["data"])
            found[body["key"]] = body["error"]
            deadline = time.monotonic() + wait
    return found


def block(source: str, z: int, coords: list[tuple[int, int]], **kw: object) -> list[TileRequest]:
    return [TileRequest(source, z, x, y, **kw) for x, y in coords]  # type: ignore[arg-type]


def test_payload_round_trip_keeps_every_field() -> None:
    style = canonical_style('{"min": 10, "max": 200}', max_bytes=1000)
    requests = block("s", 3, [(0, 0), (1, 0), (2, 5)], frame=2, style=style)
    payload = json.loads(json.dumps(render_tiles_payload(requests, 4)))
    assert tile_requests_from_payload(payload) == requests
    assert payload["generation"] == 4


def test_payload_refuses_tiles_that_differ_beyond_x_and_y() -> None:
    with pytest.raises(ValueError):
        render_tiles_payload([TileRequest("s", 3, 0, 0), TileRequest("s", 4, 0, 0)], 1)


def test_a_block_is_rendered_once_stored_and_announced(
    installed: Renderer, done: redis.client.PubSub, images: dict[str, Path]
) -> None:
    source = register_source(installed, images["single"])
    requests = block(source, 3, [(x, y) for y in range(2) for x in range(3)])
    keys = [r.key(1) for r in requests]
    claim(installed.state, keys[0], "test", 30)
    before = counters.read(installed.state).get(counters.TILES_RENDERED, 0)
    tasks.render_tiles(render_tiles_payload(requests, 1))
    heard = announced(done)
    assert heard == {key: None for key in keys}
    assert all(installed.cache.get(key) for key in keys)
    assert not is_inflight(installed.state, keys[0])
    assert counters.read(installed.state)[counters.TILES_RENDERED] - before == len(keys)
    # Again: every tile is cached, so nothing is rendered, and every waiter still hears.
    tasks.render_tiles(render_tiles_payload(requests, 1))
    assert announced(done) == {key: None for key in keys}
    assert counters.read(installed.state)[counters.TILES_RENDERED] - before == len(keys)


def test_a_failing_tile_fails_alone(
    installed: Renderer, done: redis.client.PubSub, images: dict[str, Path]
) -> None:
    source = register_source(installed, images["single"])
    # (99, 0) is outside level 3: it fails, its neighbours render.
    requests = block(source, 3, [(0, 0), (99, 0), (1, 0)])
    tasks.render_tiles(render_tiles_payload(requests, 1))
    heard = announced(done)
    good, bad, other = (r.key(1) for r in requests)
    assert heard[good] is None and heard[other] is None
    assert heard[bad] is not None and heard[bad]["parameter"] == "x"
    assert installed.cache.get(good) and installed.cache.get(other)
    assert installed.cache.get(bad) is None


def test_a_malformed_payload_is_dropped(installed: Renderer) -> None:
    tasks.render_tiles({"tiles": "nonsense"})  # logged, never raised


def test_a_prefetch_renders_only_tiles_nobody_claimed_and_not_once_expired(
    installed: Renderer, done: redis.client.PubSub, images: dict[str, Path]
) -> None:
    source = register_source(installed, images["single"])
    requests = block(source, 3, [(x, 0) for x in range(3)])
    free, waited, other = (r.key(1) for r in requests)
    claim(installed.state, waited, "viewer", 30)  # a viewer's miss: its render is coming
    before = counters.read(installed.state)
    tasks.render_tiles(prefetch_payload(requests, 1, expires=time.time() + 60))
    assert installed.cache.get(free) and installed.cache.get(other)
    assert installed.cache.get(waited) is None  # left to the viewer's own render
    assert is_inflight(installed.state, waited)  # and its marker untouched
    assert waited not in announced(done)
    after = counters.read(installed.state)
    assert after[counters.PREFETCH_RENDERED] - before.get(counters.PREFETCH_RENDERED, 0) == 2
    assert after[counters.PREFETCH_DROPPED] - before.get(counters.PREFETCH_DROPPED, 0) == 1
    # Expired before it ran (the viewer moved on): nothing is rendered.
    late = block(source, 3, [(x, 1) for x in range(3)])
    tasks.render_tiles(prefetch_payload(late, 1, expires=time.time() - 1))
    assert not any(installed.cache.get(r.key(1)) for r in late)
