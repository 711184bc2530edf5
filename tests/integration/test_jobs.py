"""Pre-rendering jobs through the real api and worker: completion and cache hits,
deduplication, cancelling, bad input, per-tile failures, the job every new source gets,
and the command line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import redis

from tests.conftest import REPO, ApiServer
from tests.integration.jobsupport import (
    big_image,
    job_of,
    missing_keys,
    scope_keys,
    wait_for,
    wait_until_ended,
)
from tilecast.common import counters
from tilecast.common.jobstore import CANCELLED, FINISHED, JobStore

pytestmark = pytest.mark.integration


def precache(api: ApiServer, source: str, body: object, **params: str) -> tuple[int, dict]:
    response = api.http.post(
        api.url(f"/item/{source}/tiles/precache"), json=body, params=params, timeout=30
    )
    return response.status_code, response.json()


@pytest.fixture(scope="module")
def big_source(api: ApiServer, source_root: Path) -> str:
    return api.register(big_image(source_root))


def test_a_job_completes_and_every_tile_is_then_a_cache_hit(
    api: ApiServer, sources: dict[str, str], state: redis.Redis
) -> None:
    # A quality no other test asks for: every tile of the scope starts cold.
    body = {"levels": "0-4", "jpegQuality": 71, "thumbnail": True}
    status, job = precache(api, sources["single"], body)
    assert status == 201, job
    assert job["state"] == "running" and job["total"] == 1 + 129
    assert job["levels"] == [0, 1, 2, 3, 4] and job["thumbnail"] is True
    ended = wait_until_ended(api, job["id"])
    assert ended["state"] == FINISHED
    assert (ended["done"], ended["failed"], ended["skipped"]) == (130, 0, 0)
    assert ended["rendered"] == 130
    assert ended["started"] and ended["finished"] >= ended["started"]
    assert ended["eta"] == 0 and ended["tilesPerSecond"] > 0
    assert missing_keys(state, scope_keys(state, job["id"])) == []
    # Served from the cache: nothing more is rendered.
    before = counters.read(state).get(counters.TILES_RENDERED, 0)
    for z, x, y in ((0, 0, 0), (3, 5, 3), (4, 11, 7)):
        tile = api.get(f"/item/{sources['single']}/tiles/zxy/{z}/{x}/{y}?jpegQuality=71")
        assert tile.status_code == 200
    assert counters.read(state).get(counters.TILES_RENDERED, 0) == before
    # A finished job is listed, and cancelling it changes nothing.
    assert job["id"] in [j["id"] for j in api.get("/jobs").json()]
    cancelled = api.http.delete(api.url(f"/jobs/{job['id']}"))
    assert cancelled.status_code == 200 and cancelled.json()["state"] == FINISHED
    # The same request again is a new job whose tiles are all skipped.
    status, again = precache(api, sources["single"], body)
    assert status == 201 and again["id"] != job["id"]
    done = wait_until_ended(api, again["id"])
    assert (done["state"], done["skipped"], done["rendered"]) == (FINISHED, 130, 0)


def test_resubmission_deduplicates_and_cancel_stops_the_job(
    api: ApiServer, big_source: str, state: redis.Redis
) -> None:
    status, job = precache(api, big_source, None, encoding="PNG")
    assert status == 201 and job["total"] == 770
    status, same = precache(api, big_source, {"encoding": "png"})
    assert status == 200 and same["id"] == job["id"]
    response = api.http.delete(api.url(f"/jobs/{job['id']}"))
    assert response.status_code == 200 and response.json()["state"] == CANCELLED
    # Cancelling again is a no-op.
    again = api.http.delete(api.url(f"/jobs/{job['id']}"))
    assert again.status_code == 200 and again.json()["state"] == CANCELLED
    # Batches already taken stop at their next flush; queued ones never start.
    wait_for("the bulk queue to drain", lambda: state.llen("bulk") == 0)
    settled = _wait_until_renders_stop(state, job["id"])
    assert settled.state == CANCELLED and settled.done + settled.failed < settled.total
    assert settled.renders < settled.total
    # An equal request after the cancel is a new job.
    status, fresh = precache(api, big_source, {"encoding": "PNG", "levels": "0-2"})
    assert status == 201
    assert wait_until_ended(api, fresh["id"])["state"] == FINISHED


def _wait_until_renders_stop(state: redis.Redis, job_id: str):  # type: ignore[no-untyped-def]
    store = JobStore(state)
    seen: list[int] = []

    def stable() -> bool:
        seen.append(store.get(job_id).renders)
        return len(seen) > 20 and len(set(seen[-20:])) == 1  # unchanged for ~1 s

    wait_for("the cancelled job's batches to stop", stable)
    return store.get(job_id)


@pytest.mark.parametrize(
    ("body", "params", "status", "parameter"),
    [
        ({"levels": "0-9"}, {}, 400, "levels"),
        (None, {"levels": "x"}, 400, "levels"),
        ({"region": {"left": 5000}}, {}, 400, "left"),
        (None, {"left": "10", "right": "10"}, 400, "right"),
        ({"frames": [3]}, {}, 400, "frames"),
        ({"style": "{not json"}, {}, 400, "style"),
        ({"style": {"band": "purple"}}, {}, 400, "style"),
        ({"encoding": "GIF"}, {}, 400, "encoding"),
        ({"jpegQuality": 500}, {}, 400, "jpegQuality"),
        ([1, 2], {}, 400, "body"),
    ],
)
def test_bad_input_is_refused_up_front(
    api: ApiServer,
    sources: dict[str, str],
    body: object,
    params: Mapping[str, str],
    status: int,
    parameter: str,
) -> None:
    got, answer = precache(api, sources["single"], body, **params)
    assert (got, answer.get("parameter")) == (status, parameter), answer


def test_unknown_sources_and_jobs_are_404(api: ApiServer) -> None:
    status, answer = precache(api, "0" * 24, {"levels": "0"})
    assert (status, answer["error"]) == (404, "unknown_source")
    assert api.get("/jobs/nope").status_code == 404
    assert api.http.delete(api.url("/jobs/nope")).status_code == 404


def test_per_tile_failures_are_recorded_and_the_job_finishes(
    api: ApiServer, images: dict[str, Path]
) -> None:
    damaged = api.register(images["damaged"])  # describes fine; its tiles do not decode
    status, job = precache(api, damaged, {"levels": "4", "region": "0,0,1024,512"})
    assert status == 201 and job["total"] == 8
    ended = wait_until_ended(api, job["id"])
    assert ended["state"] == FINISHED
    assert ended["failed"] > 0 and ended["done"] + ended["failed"] == 8
    assert ended["errors"] and {"z", "x", "y", "error"} <= set(ended["errors"][0])
    assert ended["errors"][0]["error"]["error"] in ("unsupported_image", "render_failed")


def test_new_sources_get_their_thumbnail_and_coarsest_levels(
    start_api: Callable[[Mapping[str, str]], ApiServer],
    images: dict[str, Path],
    source_root: Path,
    state: redis.Redis,
) -> None:
    path = source_root / "auto-precache.png"
    shutil.copy(images["png"], path)
    server = start_api({"TILECAST_AUTO_PRECACHE": "1", "TILECAST_AUTO_PRECACHE_LEVELS": "1"})
    source = server.register(path)
    jobs = [j for j in server.get("/jobs").json() if j["source"] == source]
    assert len(jobs) == 1
    job = jobs[0]
    assert job["thumbnail"] is True and job["levels"] == [0, 1]
    ended = wait_until_ended(server, job["id"])
    assert ended["state"] == FINISHED and ended["failed"] == 0
    assert missing_keys(state, scope_keys(state, job["id"])) == []
    assert job_of(server, job["id"])["done"] == job["total"]


def test_command_line_precache_wait_and_jobs(
    tilecast_env: dict[str, str], sources: dict[str, str], worker: object
) -> None:
    argv = [sys.executable, "-m", "tilecast"]
    run = subprocess.run(
        [*argv, "precache", sources["lzw"], "--levels", "0-2", "--jpeg-quality", "67", "--wait"],
        env=tilecast_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("job ") and "started" in lines[0]
    job_id = lines[0].split()[1]
    assert f"job {job_id} finished:" in lines[-1] and "tiles/s" in lines[-1]
    listing = subprocess.run(
        [*argv, "jobs"], env=tilecast_env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert listing.returncode == 0 and job_id in listing.stdout
    bad = subprocess.run(
        [*argv, "precache", sources["lzw"], "--levels", "0-40"],
        env=tilecast_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "levels" in bad.stderr
