"""A pre-rendering job survives SIGKILL of every worker and the api: restarted, they
resume it where it stopped, without redoing settled batches.

This test runs its own redis-server, workers and api (the session's processes serve
the other tests and must not be killed, nor take this job's batches).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    PROCESS_START_TIMEOUT,
    ApiServer,
    Child,
    launch_api,
    start_child,
    wait_until,
)
from tests.integration.jobsupport import (
    big_image,
    missing_keys,
    scope_keys,
    wait_for,
    wait_until_ended,
)
from tilecast import procs
from tilecast.common.jobplan import BASE_TILES, plan
from tilecast.common.jobstore import FINISHED, RUNNING, JobStore
from tilecast.common.keys import job_leases_key as leases_key
from tilecast.common.keys import job_settled_key as settled_key
from tilecast.common.redisconn import connect
from tilecast.common.settings import Settings
from tilecast.common.taskprotocol import make_celery
from tilecast.redis_server import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", maxmemory="512mb")
    server.start()
    yield server
    server.stop()


class Processes:
    """Workers and an api on the private Redis, started and killed by the test."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.children: list[Child] = []
        self.api: ApiServer | None = None
        self.round = 0

    def start(self) -> ApiServer:
        self.round += 1
        argv = [sys.executable, "-m", "tilecast", "worker", "--concurrency", "2"]
        worker = start_child(f"resume-worker-{self.round}", argv, self.env, self.logs)
        self.children.append(worker)
        celery = make_celery(Settings.from_env(self.env))
        try:
            wait_until(
                "the worker to answer a ping",
                lambda: celery.control.ping(timeout=0.5),
                worker,
                PROCESS_START_TIMEOUT,
            )
        finally:
            celery.close()
        self.api = launch_api(self.env, self.logs, f"resume-api-{self.round}")
        self.children.append(self.api.child)
        return self.api

    def kill_all(self) -> None:
        """SIGKILL every process group: the Celery parents, their pool processes, the
        api's server and its workers -- nothing gets to clean up."""
        for child in self.children:
            if child.proc.poll() is None:
                os.killpg(child.proc.pid, signal.SIGKILL)
        for child in self.children:
            child.proc.wait(timeout=30)
        if self.api is not None:
            self.api.http.close()
        self.children.clear()

    def stop(self) -> None:
        for child in self.children:
            procs.stop(child.proc, timeout=20)
        if self.api is not None:
            self.api.http.close()


def test_a_job_resumes_after_every_process_is_killed(
    private_redis: RedisServer, source_root: Path, logs_dir: Path, tilecast_env: dict[str, str]
) -> None:
    env = {
        **tilecast_env,
        "TILECAST_CACHE_URL": private_redis.url,
        # Small batches, a short lease: the killed batches are dispatched again soon.
        "TILECAST_JOB_BLOCK": "4",
        "TILECAST_JOB_INFLIGHT_BATCHES": "4",
        "TILECAST_JOB_LEASE": "3",
        "TILECAST_JOB_QUEUE_LEASE": "3",
    }
    image = big_image(source_root)
    state = connect(private_redis.url)
    store = JobStore(state)
    processes = Processes(env, logs_dir)
    try:
        api = processes.start()
        source = api.register(image)
        response = api.http.post(
            api.url(f"/item/{source}/tiles/precache"), json={"encoding": "PNG"}, timeout=30
        )
        assert response.status_code == 201, response.text
        job_id = response.json()["id"]
        the_plan = plan(store.get(job_id).spec)
        # 36 batches of base tiles, each also making the level-4 tiles under its 4 x 4
        # block (the file has only its base), then 7 of the other levels' tiles.
        assert the_plan.total_tiles == 770 and the_plan.total_batches == 36 + 7
        assert {the_plan.batch(i).kind for i in range(36)} == {BASE_TILES}

        wait_for(
            "a few batches to settle while others run",
            lambda: store.settled_count(job_id) >= 18 and state.zcard(leases_key(job_id)) > 0,
        )
        processes.kill_all()

        # What the job had when everything died.
        before = store.get(job_id)
        settled_before = {int(b) for b in state.smembers(settled_key(job_id))}
        in_flight = [int(b) for b in state.zrange(leases_key(job_id), 0, -1)]
        in_flight_tiles = sum(the_plan.batch(b).size for b in in_flight)
        assert before.state == RUNNING
        assert 18 <= len(settled_before) < the_plan.total_batches
        assert len(in_flight) <= 4

        api = processes.start()
        ended = wait_until_ended(api, job_id)
        after = store.get(job_id)
        assert ended["state"] == FINISHED
        assert (after.done, after.failed) == (after.total, 0)
        # Settled batches were not redone: the only tiles rendered twice or skipped
        # are those of the batches in flight at the kill (partly written, retried).
        assert after.renders <= after.total + in_flight_tiles
        assert after.skipped <= in_flight_tiles
        assert settled_before <= {int(b) for b in state.smembers(settled_key(job_id))}
        assert missing_keys(state, scope_keys(state, job_id)) == []
    finally:
        processes.stop()
        state.close()
