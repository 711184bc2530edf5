"""No request can monopolize the render pool (issue 14), with real processes.

- A tall one-pixel-wide striped TIFF (1 x 9,000,000, tens of thousands of strip reads and
  syntheses for its z=0 tile), asked many times at once, does not make another source's
  cold tiles wait past the render timeout: its renders hold at most their source's share
  of the two-process pool while other sources wait (deferred), and stop once nobody
  waits for them (abandoned).
- A render past its hard time limit is killed; its waiter, and the next asker at once,
  are answered 503 ``too_costly``, not after the marker's TTL.
- The per-request cost budget refuses with a 400 naming it, and accepts below it.

Each stack here (api + worker) runs in a Redis database of its own (cache, state and
broker), so the session's worker never takes its tasks.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from tests.conftest import ApiServer, launch_api, launch_worker
from tilecast.common import counters

pytestmark = pytest.mark.integration

TALL_HEIGHT = 9_000_000
RENDER_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def tall_tiff(source_root: Path) -> Path:
    import pyvips

    path = source_root / "budget" / "tall-1x9000000.tiff"
    path.parent.mkdir(exist_ok=True)
    if not path.exists():
        # Noise, so no strip compresses away; striped (not tiled), uncompressed, 9 MB.
        image = pyvips.Image.gaussnoise(1, TALL_HEIGHT, mean=128, sigma=40).cast("uchar")
        image.tiffsave(str(path), tile=False)
    return path


@pytest.fixture(scope="module")
def control_copy(images: dict[str, Path], source_root: Path) -> Path:
    target = source_root / "budget" / "control.tiff"
    target.parent.mkdir(exist_ok=True)
    shutil.copy(images["single"], target)
    return target


Stack = tuple[ApiServer, redis.Redis]


@pytest.fixture
def start_stack(
    tilecast_env: dict[str, str], logs_dir: Path, redis_url: str
) -> Iterator[Callable[[int, Mapping[str, str]], Stack]]:
    """An api and a two-process worker on Redis database ``db`` with these settings."""
    started: list[tuple[ApiServer, object, redis.Redis]] = []

    def start(db: int, overrides: Mapping[str, str]) -> Stack:
        url = f"{redis_url.rsplit('/', 1)[0]}/{db}"
        client = redis.Redis.from_url(url)
        client.flushdb()
        env = {**tilecast_env, "TILECAST_CACHE_URL": url, **overrides}
        worker = launch_worker(env, logs_dir, f"budget-worker-{db}", concurrency=2)
        api = launch_api(env, logs_dir, f"budget-api-{db}")
        started.append((api, worker, client))
        return api, client

    yield start
    for api, worker, client in started:
        api.http.close()
        api.child.stop()
        worker.stop()  # type: ignore[attr-defined]
        client.flushdb()
        client.close()


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_tall_striped_tiff_does_not_starve_other_sources(
    start_stack: Callable[[int, Mapping[str, str]], Stack],
    tall_tiff: Path,
    control_copy: Path,
) -> None:
    api, client = start_stack(
        13,
        {
            "TILECAST_RENDER_TIMEOUT": str(RENDER_TIMEOUT),
            "TILECAST_SOURCE_SHARE": "0.5",
            "TILECAST_AFFINITY_QUEUE_DEPTH": "0",
        },
    )
    tall, control = api.register(tall_tiff), api.register(control_copy)
    meta = api.get(f"/item/{tall}/tiles").json()
    assert meta["sizeX"] == 1 and meta["sizeY"] == TALL_HEIGHT
    with ThreadPoolExecutor(max_workers=8) as pool:
        # Six z=0 renders of the tall file (distinct keys), one after another...
        flood = [
            pool.submit(api.get, f"/item/{tall}/tiles/zxy/0/0/0?jpegQuality={q}")
            for q in range(50, 56)
        ]
        time.sleep(0.5)
        # ...and meanwhile another source's cold tiles, each served within the timeout.
        slowest = 0.0
        for i in range(8):
            started = time.monotonic()
            response = api.get(f"/item/{control}/tiles/zxy/3/{i % 4}/{i // 4}?jpegQuality=61")
            elapsed = time.monotonic() - started
            assert response.status_code == 200, response.text
            assert response.headers["X-Tilecast-Cache"] == "miss"
            slowest = max(slowest, elapsed)
        answers = [f.result().status_code for f in flood]
    print(f"control cold tiles: slowest {slowest:.2f} s; tall answers {answers}")
    assert slowest < RENDER_TIMEOUT
    # The tall renders outlast their waiters' timeout: 504, never a hang or a 500.
    assert set(answers) <= {200, 504}, answers
    assert 504 in answers
    # Their work stopped once nobody waited, and they gave way to the other source.
    wait_for(
        "a render abandoned",
        lambda: counters.read(client).get(counters.RENDERS_ABANDONED, 0) >= 1,
    )
    counts = counters.read(client)
    print({k: v for k, v in counts.items() if k.startswith("renders_")})
    assert counts.get(counters.RENDERS_DEFERRED, 0) >= 1
    # Once abandoned, the pool is free: a fresh cold tile of the control source at once.
    started = time.monotonic()
    assert api.get(f"/item/{control}/tiles/zxy/2/1/1?jpegQuality=62").status_code == 200
    assert time.monotonic() - started < RENDER_TIMEOUT


def test_render_past_its_hard_limit_is_killed_and_refused_at_once(
    start_stack: Callable[[int, Mapping[str, str]], Stack],
    tall_tiff: Path,
    control_copy: Path,
) -> None:
    api, client = start_stack(
        14,
        {
            "TILECAST_RENDER_TIMEOUT": "30",
            "TILECAST_INFLIGHT_TTL": "60",
            "TILECAST_RENDER_SOFT_TIME_LIMIT": "0",  # only the hard limit: a kill
            "TILECAST_RENDER_TIME_LIMIT": "2",
        },
    )
    tall, control = api.register(tall_tiff), api.register(control_copy)
    path = f"/item/{tall}/tiles/zxy/0/0/0?jpegQuality=70"
    started = time.monotonic()
    first = api.get(path)
    elapsed = time.monotonic() - started
    assert first.status_code == 503, first.text
    assert first.json()["error"] == "too_costly"
    assert int(first.headers["Retry-After"]) > 0
    assert elapsed < 10, elapsed  # the hard limit and the kill, not the 30 s timeout
    assert not client.keys("tc:inflight:*")  # the marker was released
    started = time.monotonic()
    again = api.get(path)
    assert again.status_code == 503 and again.json()["error"] == "too_costly"
    assert time.monotonic() - started < 1.0  # at once: no render, no TTL
    assert counters.read(client).get(counters.RENDERS_KILLED, 0) == 1
    # The pool got a fresh process: other work is served.
    assert api.get(f"/item/{control}/tiles/zxy/3/1/1").status_code == 200


def test_cost_budget_refuses_with_400_and_accepts_below_it(
    api: ApiServer, sources: dict[str, str]
) -> None:
    source = sources["pyramid"]
    many = json.dumps({"bands": [{"band": 1, "palette": "#ff0000"}] * 64})
    over = api.get(
        f"/item/{source}/tiles/region",
        params={"width": 4096, "height": 4096, "fill": "black", "style": many},
    )
    assert over.status_code == 400, over.text
    body = over.json()
    assert body["error"] == "over_budget"
    assert "TILECAST_MAX_REQUEST_COST" in body["message"]
    avif = api.get(
        f"/item/{source}/tiles/region",
        params={"width": 4096, "height": 4096, "encoding": "AVIF", "avifQuality": 100},
    )
    assert avif.status_code == 400 and avif.json()["error"] == "over_budget", avif.text
    few = json.dumps({"bands": [{"band": 1, "palette": "#ff0000"}] * 4})
    under = api.get(
        f"/item/{source}/tiles/region",
        params={"width": 512, "height": 512, "style": few},
    )
    assert under.status_code == 200, under.text
    assert under.headers["Content-Type"] == "image/jpeg"


def test_render_past_its_soft_limit_stops_and_is_refused(
    start_stack: Callable[[int, Mapping[str, str]], Stack],
    tall_tiff: Path,
) -> None:
    api, client = start_stack(
        15,
        {
            "TILECAST_RENDER_TIMEOUT": "30",
            "TILECAST_RENDER_SOFT_TIME_LIMIT": "2",
            "TILECAST_RENDER_TIME_LIMIT": "20",
        },
    )
    tall = api.register(tall_tiff)
    path = f"/item/{tall}/tiles/zxy/0/0/0?jpegQuality=71"
    started = time.monotonic()
    first = api.get(path)
    assert first.status_code == 503, first.text
    assert first.json()["error"] == "too_costly"
    assert time.monotonic() - started < 10
    # Asked again: refused from the record of the first, not rendered again (the counters
    # below); how fast is the benchmarks' business, a loaded machine only bounds it loosely.
    started = time.monotonic()
    assert api.get(path).json()["error"] == "too_costly"
    assert time.monotonic() - started < 10
    counts = counters.read(client)
    assert counts.get(counters.RENDERS_TOO_COSTLY, 0) == 1
    assert counts.get(counters.RENDERS_KILLED, 0) == 0  # stopped in the process, not killed
