"""A smoke test of the load generator (tests/bench/load_client.py) against the test stack.

A few simulated viewers for a few seconds over two fresh images: no request fails, every
answer says hit or miss, and every distinct tile asked was rendered exactly once (the
workers' ``tiles_rendered`` counter). The api is one of its own with automatic
pre-rendering off, so that nothing but the viewers causes renders; before the run the
test waits until the broker queues are empty, no pre-rendering job runs and the counter
is still, so that work left by earlier tests is not counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import redis

from tests.bench.load_client import Target, run_load
from tests.bench.load_viewer import ImageGeometry, ViewerConfig
from tests.conftest import ApiServer
from tilecast.common import counters
from tilecast.common.taskprotocol import QUEUES

pytestmark = pytest.mark.integration

USERS = 4
SECONDS = 4.0
QUICK_VIEWER = ViewerConfig(think_min=0.05, think_max=0.2, steps_min=3, steps_max=6)


def make_images(folder: Path) -> list[Path]:
    from tilecast.sample import sample_image, write_tiff

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, width, height, pyramid in (
        ("smoke-pyramid.tiff", 4100, 3000, True),
        ("smoke-single.tiff", 2600, 1900, False),
    ):
        path = folder / name
        if not path.exists():
            write_tiff(sample_image(width, height), path, pyramid=pyramid)
        paths.append(path)
    return paths


def rendered(state: redis.Redis) -> int:
    return counters.read(state).get(counters.TILES_RENDERED, 0)


def busy(state: redis.Redis) -> bool:
    """Whether tasks wait in the broker or a pre-rendering job (of images other tests
    registered) is still running."""
    if any(state.llen(queue) for queue in QUEUES):
        return True
    try:
        from tilecast.common.jobstore import JobStore
    except ImportError:  # no pre-rendering jobs in this tree
        return False
    return bool(JobStore(state).active())


def wait_quiet(state: redis.Redis, timeout: float = 90.0) -> int:
    """The render count once nothing is queued or running and the count held still for a
    second (or, at the timeout, whatever it is: the test then reports the difference)."""
    deadline = time.monotonic() + timeout
    last, since = rendered(state), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = rendered(state)
        if now != last or busy(state):
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 1.0:
            break
    return last


def wait_rendered(state: redis.Redis, at_least: int, timeout: float = 30.0) -> int:
    """Workers count a render just after announcing it: poll a little, then once more
    after a pause so that a surplus render would show too."""
    deadline = time.monotonic() + timeout
    while rendered(state) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)
    return rendered(state)


def test_simulated_viewers_no_errors_one_render_per_tile(
    state: redis.Redis,
    source_root: Path,
    worker: object,
    start_api: Callable[[Mapping[str, str]], ApiServer],
) -> None:
    api = start_api({"TILECAST_AUTO_PRECACHE": "0", "TILECAST_PREFETCH": "0"})
    ids = [api.register(path) for path in make_images(source_root / "load-smoke")]
    geometries = [ImageGeometry.from_metadata(api.get(f"/item/{i}/tiles").json()) for i in ids]
    target = Target(api.base, ids, geometries)  # images of this test alone: all cold

    before = wait_quiet(state)
    result = run_load(target, USERS, SECONDS, seed=7, config=QUICK_VIEWER)
    distinct = len(result.distinct_tiles)
    renders = wait_rendered(state, before + distinct) - before

    assert result.errors == 0, result.error_messages
    assert result.tile_requests > 0 and result.metadata_requests > 0
    assert result.unclassified == 0, "tile answers without the X-Tilecast-Cache header"
    assert len(result.hit_seconds) + len(result.miss_seconds) == result.tile_requests
    assert renders == distinct, f"{renders} renders for {distinct} distinct tiles"
