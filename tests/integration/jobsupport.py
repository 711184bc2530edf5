"""Helpers of the pre-rendering job tests: a larger generated image, waiting on a job,
and the cache keys of a job's scope."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tests.conftest import ApiServer
from tilecast.common.jobplan import THUMBNAIL, TILES, plan
from tilecast.common.jobstore import JobStore

# A single-level 6000 x 6000 image: 24 x 24 base tiles, 770 tiles in its 6 levels, so a
# job over it lasts long enough to be cancelled or killed half way.
BIG_SIZE = 6000
JOB_TIMEOUT = 90.0


def big_image(root: Path) -> Path:
    """Written once per session (the path is reused when it exists)."""
    path = root / "jobs-big.tiff"
    if not path.exists():
        from tilecast.sample import sample_image, write_tiff

        picture = sample_image(BIG_SIZE, BIG_SIZE).copy_memory()
        write_tiff(picture, root / "jobs-big.partial.tiff", pyramid=False)
        (root / "jobs-big.partial.tiff").rename(path)
    return path


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = JOB_TIMEOUT) -> Any:
    """Poll ``predicate`` until it is truthy (a bound against hangs, not a timing test)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def job_of(api: ApiServer, job_id: str) -> dict[str, Any]:
    response = api.get(f"/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def wait_until_ended(api: ApiServer, job_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        body = job_of(api, job_id)
        return body if body["state"] != "running" else None

    return wait_for(f"job {job_id} to end", ended)  # type: ignore[no-any-return]


def scope_keys(state: redis.Redis, job_id: str) -> list[str]:
    """The cache key of every tile (and thumbnail) a job covers."""
    spec = JobStore(state).get(job_id).spec
    keys: list[str] = []
    for batch in plan(spec).batches():
        if batch.kind == THUMBNAIL:
            keys.append(batch.thumbnail_request(spec).key(spec.generation))
        elif batch.kind == TILES:
            keys.extend(r.key(spec.generation) for r in batch.all_tile_requests(spec))
    return keys


def missing_keys(client: redis.Redis, keys: list[str]) -> list[str]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.exists(key)
    return [key for key, found in zip(keys, pipe.execute(), strict=True) if not found]
