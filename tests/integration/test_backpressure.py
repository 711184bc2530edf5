"""Backpressure and in-flight markers.

- A full interactive queue answers new misses 503 with ``Retry-After`` at once, and
  leaves nothing claimed for them; hits and joiners of work already queued are served
  as before.
- A marker whose claimer died expires with its TTL and the next asker renders; a
  request that gives up (render timeout, client disconnect) leaves its marker no longer
  than the TTL; a failed render is retried by the next asker, never cached as a failure.

The unserved apis send to a broker database that no worker consumes (the production
knob ``TILECAST_BROKER_URL``), so their tasks wait in the queue.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import ApiServer
from tilecast.common import counters
from tilecast.common.encoding import EncodingOptions
from tilecast.common.inflight import claim, inflight_key
from tilecast.common.registry import generation_key
from tilecast.common.taskprotocol import QUEUE_INTERACTIVE
from tilecast.common.tiles import TileRequest

pytestmark = pytest.mark.integration

UNSERVED_DB = 11


@pytest.fixture
def unserved_broker(redis_url: str) -> Iterator[tuple[str, redis.Redis]]:
    url = f"{redis_url.rsplit('/', 1)[0]}/{UNSERVED_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url, client
    client.flushdb()
    client.close()


def tile_key(state: redis.Redis, source: str, z: int, x: int, y: int, quality: int) -> str:
    """The cache key of ``/zxy/{z}/{x}/{y}?encoding=WEBP&webpQuality={quality}``."""
    generation = int(state.get(generation_key(source)) or 0)
    encoding = EncodingOptions(format="WEBP", webp_quality=quality)
    return TileRequest(source, z, x, y, encoding=encoding).key(generation)


def webp(source: str, z: int, x: int, y: int, quality: int) -> str:
    return f"/item/{source}/tiles/zxy/{z}/{x}/{y}?encoding=WEBP&webpQuality={quality}"


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_full_queue_is_503_at_once(
    api: ApiServer,
    sources: dict[str, str],
    state: redis.Redis,
    unserved_broker: tuple[str, redis.Redis],
    start_api: Callable[[Mapping[str, str]], ApiServer],
) -> None:
    url, broker = unserved_broker
    unserved = start_api(
        {
            "TILECAST_BROKER_URL": url,
            "TILECAST_MAX_QUEUE_DEPTH": "3",
            "TILECAST_AFFINITY_QUEUE_DEPTH": "0",  # everything to the shared queue
            "TILECAST_RENDER_TIMEOUT": "2",
        }
    )
    source, quality = sources["pyramid"], 23
    with ThreadPoolExecutor(max_workers=4) as pool:
        queued = [pool.submit(unserved.get, webp(source, 4, x, 0, quality)) for x in range(3)]
        wait_for("three queued tasks", lambda: broker.llen(QUEUE_INTERACTIVE) == 3)
        # Each api process reads the depth at most every 0.25 s (api/miss/routing.py): the
        # bound holds once every reading is newer than the third task.
        time.sleep(0.3)
        # Asking again for queued work joins its wait: no new task, no refusal.
        joiner = pool.submit(unserved.get, webp(source, 4, 0, 0, quality))

        refused = unserved.get(webp(source, 4, 3, 0, quality))
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "overloaded"
        assert int(refused.headers["Retry-After"]) > 0
        assert refused.headers["Cache-Control"] == "no-store"
        # Nothing is left claimed for it: the next asker is not kept waiting.
        assert not state.exists(inflight_key(tile_key(state, source, 4, 3, 0, quality)))
        assert broker.llen(QUEUE_INTERACTIVE) == 3

        # Hits are served as ever by the same api (the served api renders this one).
        assert api.get(f"/item/{source}/tiles/zxy/0/0/0").status_code == 200
        assert unserved.get(f"/item/{source}/tiles/zxy/0/0/0").status_code == 200

        # The queued ones were never rendered: they time out as any unserved render.
        assert [f.result().status_code for f in queued] == [504] * 3
        assert joiner.result().status_code == 504
    # Once the queue drains, the refused tile is accepted again.
    broker.delete(QUEUE_INTERACTIVE)
    time.sleep(0.3)  # longer than the api's depth reading lives
    with ThreadPoolExecutor(max_workers=1) as pool:
        again = pool.submit(unserved.get, webp(source, 4, 3, 0, quality))
        wait_for("the task queued", lambda: broker.llen(QUEUE_INTERACTIVE) == 1)
        assert again.result().status_code == 504  # queued, not refused


def test_dead_claimers_marker_expires_and_next_asker_renders(
    api: ApiServer, sources: dict[str, str], state: redis.Redis
) -> None:
    source, quality = sources["single"], 27
    key = tile_key(state, source, 3, 1, 1, quality)
    # A claimer that died before sending anything: only its marker is left.
    assert claim(state, key, "dead-claimer", ttl=2.0)
    rendered = counters.read(state).get(counters.TILES_RENDERED, 0)
    response = api.get(webp(source, 3, 1, 1, quality))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "image/webp"
    assert not state.exists(inflight_key(key))
    wait_for(
        "the render to be counted",
        lambda: counters.read(state).get(counters.TILES_RENDERED, 0) >= rendered + 1,
    )


def test_given_up_requests_leave_markers_only_until_their_ttl(
    api: ApiServer,
    sources: dict[str, str],
    state: redis.Redis,
    unserved_broker: tuple[str, redis.Redis],
    start_api: Callable[[Mapping[str, str]], ApiServer],
) -> None:
    url, _broker = unserved_broker
    unserved = start_api(
        {"TILECAST_BROKER_URL": url, "TILECAST_RENDER_TIMEOUT": "1", "TILECAST_INFLIGHT_TTL": "3"}
    )
    source, quality = sources["single"], 29
    timed_out, disconnected = (tile_key(state, source, 4, x, 2, quality) for x in (1, 2))
    response = unserved.get(webp(source, 4, 1, 2, quality))
    assert response.status_code == 504
    with pytest.raises(requests.exceptions.ReadTimeout):
        unserved.get(webp(source, 4, 2, 2, quality), timeout=0.3)  # the client goes away
    for key in (timed_out, disconnected):
        assert 0 < state.pttl(inflight_key(key)) <= 3000
    wait_for(
        "the markers to expire",
        lambda: not state.exists(inflight_key(timed_out), inflight_key(disconnected)),
    )
    # The next asker (through a served api) renders both.
    for x in (1, 2):
        assert api.get(webp(source, 4, x, 2, quality)).status_code == 200


def test_failed_render_is_retried_by_the_next_asker(
    api: ApiServer, images: dict[str, Path], state: redis.Redis
) -> None:
    damaged = api.register(images["damaged"])  # its tiles fail to decode
    path = webp(damaged, 4, 5, 5, 31)
    errors = counters.read(state).get(counters.RENDER_ERRORS, 0)
    first, second = api.get(path), api.get(path)
    assert first.status_code == second.status_code
    assert first.status_code >= 400 and first.json()["error"] == second.json()["error"]
    # Both asks reached a worker: the failure was not remembered as an answer.
    wait_for(
        "both failures to be counted",
        lambda: counters.read(state).get(counters.RENDER_ERRORS, 0) >= errors + 2,
    )
