"""N concurrent askers of one cold tile cause exactly one render, counted by the worker."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from tests.conftest import ApiServer
from tilecast.common import counters

pytestmark = pytest.mark.integration


def rendered(state: redis.Redis) -> int:
    return counters.read(state).get(counters.TILES_RENDERED, 0)


def test_twenty_concurrent_requests_one_render(
    api: ApiServer, sources: dict[str, str], state: redis.Redis
) -> None:
    # An encoding no other test asks for: this tile is certainly cold.
    path = f"/item/{sources['single']}/tiles/zxy/4/5/3?encoding=JPEG&jpegQuality=61"
    before = rendered(state)
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: api.get(path), range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    assert len({r.content for r in responses}) == 1
    assert rendered(state) - before == 1
    # And a hit renders nothing more.
    assert api.get(path).status_code == 200
    assert rendered(state) - before == 1
