"""A render that does not finish in time is a 504 with Retry-After, never a hung request.

The second api sends its tasks to a broker database that no worker consumes (the
production knob TILECAST_BROKER_URL), so its renders never happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import pytest

from tests.conftest import ApiServer

pytestmark = pytest.mark.integration


def test_render_timeout_is_504(
    api: ApiServer,
    sources: dict[str, str],
    redis_url: str,
    start_api: Callable[[Mapping[str, str]], ApiServer],
) -> None:
    unserved = start_api(
        {
            "TILECAST_BROKER_URL": redis_url.rsplit("/", 1)[0] + "/7",
            "TILECAST_RENDER_TIMEOUT": "1",
            "TILECAST_INFLIGHT_TTL": "2",
        }
    )
    started = time.monotonic()
    response = unserved.get(f"/item/{sources['pyramid']}/tiles/zxy/4/9/6?jpegQuality=17")
    elapsed = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert response.json()["error"] == "render_timeout"
    assert int(response.headers["Retry-After"]) > 0
    assert elapsed < 5
    # Hits still work on that api: it shares the cache.
    hit_path = f"/item/{sources['pyramid']}/tiles/zxy/0/0/0"
    assert api.get(hit_path).status_code == 200
    assert unserved.get(hit_path).status_code == 200
