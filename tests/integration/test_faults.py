"""Faults survived with real processes (docs/RELIABILITY.md, the failure matrix).

Each test runs a private stack -- its own worker nodes and api, its state in a database
of the suite's redis-server no other test uses -- puts it under load, breaks something
for real (SIGKILL, a Redis stopped, a Redis filled past maxmemory, a damaged file), and
prints the requests sent, answered and failed. Answered means a tile, or a 503/504 with
``Retry-After`` and a JSON error within the render timeout; failed is anything else,
and must be zero. Afterwards every tile asked is served: nothing promised is lost.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import redis

from tests.conftest import ApiServer, Child, launch_worker
from tests.integration.faultsupport import (
    ANSWER_SLACK,
    copy_image,
    launch_api_on,
    launch_node,
    redis_db,
    run_load,
    tile_paths,
)
from tests.integration.jobsupport import big_image, wait_for, wait_until_ended
from tilecast import procs
from tilecast.common.jobstore import FINISHED, RUNNING, JobStore, job_keys
from tilecast.common.redisconn import connect
from tilecast.common.routing import affinity_queue, candidates, pick
from tilecast.common.workers_live import read_workers
from tilecast.redis_server import RedisServer, free_port

pytestmark = pytest.mark.integration

RENDER_TIMEOUT = 8.0
LIMIT = RENDER_TIMEOUT + ANSWER_SLACK
# The pyramid test image (3000 x 2000): its two finest levels, 24 + 96 tiles.
PYRAMID_LEVELS = [(3, 6, 4), (4, 12, 8)]


def stack_settings(state_url: str, **overrides: str) -> dict[str, str]:
    return {
        "TILECAST_STATE_URL": state_url,
        "TILECAST_RENDER_TIMEOUT": str(RENDER_TIMEOUT),
        "TILECAST_INFLIGHT_TTL": "10",
        "TILECAST_WORKER_TTL": "2",
        **overrides,
    }


@pytest.fixture
def private_db(redis_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A clean database of the suite's redis-server for one test's state (and cache).
    Databases 9, 10, 12 and 13 are these tests' (7, 8, 11, 14 and 15 are other tests')."""
    url = redis_db(redis_url, request.param)
    client = connect(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def node_env(tilecast_env: Mapping[str, str], settings: Mapping[str, str]) -> dict[str, str]:
    return {**tilecast_env, **settings}


def assert_markers_expire(state: redis.Redis, ttl: float) -> int:
    """Every in-flight marker carries a TTL no longer than ``ttl``; their count."""
    keys = list(state.scan_iter(match="tc:inflight:*", count=1000))
    for key in keys:
        left = state.pttl(key)
        assert left == -2 or 0 < left <= ttl * 1000, (key, left)
    return len(keys)


@pytest.mark.parametrize("private_db", [10], indirect=True)
def test_killed_pool_process_task_is_redelivered(
    private_db: str,
    tilecast_env: dict[str, str],
    logs_dir: Path,
    source_root: Path,
    start_api: Callable[[Mapping[str, str]], ApiServer],
) -> None:
    """SIGKILL of the pool process rendering a tile: the node requeues the unacked task
    (``task_reject_on_worker_lost``) and a fresh pool process renders it; the viewer
    waiting for it gets the tile."""
    settings = stack_settings(private_db, TILECAST_CACHE_URL=private_db)
    state = connect(private_db)
    node = launch_node(node_env(tilecast_env, settings), logs_dir, state, "faults-pool")
    try:
        api = start_api(settings)
        image = copy_image(big_image(source_root), source_root, "faults-pool.tiff")
        source = api.register(image)
        (victim,) = procs.descendants(node.pid)
        # Level 0 of a single-level 6000 x 6000 file: synthesized from all 576 base tiles,
        # long enough to be killed half way.
        answer: dict[str, object] = {}

        def ask() -> None:
            started = time.monotonic()
            response = api.get(f"/item/{source}/tiles/zxy/0/0/0?encoding=PNG")
            answer.update(status=response.status_code, seconds=time.monotonic() - started)

        asker = threading.Thread(target=ask)
        asker.start()
        wait_for(
            "the render to be half way (raw tiles cached)",
            lambda: any(state.scan_iter(match=f"tc:raw:{source}:*", count=1000)),
            timeout=30,
        )
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        assert asker.is_alive(), "the render ended before the kill: nothing was tested"
        asker.join(timeout=LIMIT + 30)
        print(
            f"pool process {victim} killed mid-render: answered {answer.get('status')} "
            f"{time.monotonic() - killed:.1f} s after the kill ({answer.get('seconds', 0):.1f} s "
            "in all)"
        )
        assert answer.get("status") == 200
        assert procs.descendants(node.pid) - {victim}, "no new pool process"
        node.child.check_alive()
        # Nothing left unacknowledged on the broker: the requeued delivery is acked once
        # its task returns (acks_late), just after it announced the tile.
        wait_for("the broker's unacked messages to be acked", lambda: not state.hlen("unacked"))
    finally:
        node.child.stop()
        state.close()


@pytest.mark.parametrize("private_db", [9], indirect=True)
@pytest.mark.parametrize("affinity", ["4", "0"], ids=["own-queues", "shared-queue"])
def test_killed_node_under_load(
    private_db: str,
    affinity: str,
    tilecast_env: dict[str, str],
    logs_dir: Path,
    images: dict[str, Path],
    source_root: Path,
    start_api: Callable[[Mapping[str, str]], ApiServer],
) -> None:
    """SIGKILL of a whole worker node (its main process and pool) under load: every
    request is answered; the dead node's tiles are rendered by the other, soon -- also
    a task it took from the shared queue (no source affinity: every task goes there),
    which it named itself in the marker for (workers/adopt.py), or was killed before it
    could (then the marker names no node, and the waiters send it again on seeing a node
    lost: api/miss/dispatch.py). The kill follows a delivery closely (the poll of the broker's
    ``unacked`` hash), so that window is hit in some runs."""
    settings = stack_settings(
        private_db, TILECAST_CACHE_URL=private_db, TILECAST_AFFINITY_QUEUE_DEPTH=affinity
    )
    env = node_env(tilecast_env, settings)
    state = connect(private_db)
    nodes = [launch_node(env, logs_dir, state, f"faults-node-{n}") for n in "ab"]
    try:
        api = start_api(settings)
        sources = [
            api.register(copy_image(images["pyramid"], source_root, f"faults-node-{i}.tiff"))
            for i in range(2)
        ]
        live = candidates(read_workers(state))
        owner = pick(sources[0], live)
        assert owner is not None
        victim = next(n for n in nodes if n.node == owner.node)
        paths = [p for s in sources for p in tile_paths(s, PYRAMID_LEVELS, "?encoding=PNG")]
        unacked: list[int] = []

        def holds_a_task() -> bool:
            """An unacked delivery from the victim's own queue: it is rendering it; with
            the shared queue only, both nodes holding one."""
            held = [json.loads(v)[2] for v in state.hvals("unacked")]
            if affinity == "0":
                return len(held) >= 2
            return affinity_queue(victim.node) in held

        def kill() -> None:
            wait_for("the victim to hold a task", holds_a_task, timeout=20)
            os.killpg(victim.pid, signal.SIGKILL)
            time.sleep(0.5)
            unacked.append(state.hlen("unacked"))

        tally = run_load(api.base, paths, limit=LIMIT, during=kill)
        print(tally.line(f"node {victim.node} SIGKILLed under load"))
        print(f"unacked messages on the broker after the kill: {unacked}")
        assert tally.failed == 0, tally.failures
        assert tally.sent == len(paths)
        assert unacked[0] >= 1  # what the victim held stays unacked on the broker
        # Rescued, not timed out: the waiters re-sent the victim's tasks, also one it took
        # from the shared queue and was killed before naming itself in its marker.
        assert tally.statuses[504] == 0 and tally.slowest < RENDER_TIMEOUT
        assert tally.ok == len(paths)
        assert_markers_expire(state, 10)
        # Nothing lost: every tile is served now (rendered by the surviving node).
        again = run_load(api.base, paths, limit=LIMIT)
        print(again.line("every tile asked again"))
        assert again.ok == len(paths), again.failures
        survivor = next(n for n in nodes if n is not victim)
        survivor.child.check_alive()
        # The broker does not hand a dead consumer's unacked messages back before its
        # visibility timeout (an hour): the waiters' rescue sent them again instead.
        print(f"unacked messages on the broker at the end: {state.hlen('unacked')}")
    finally:
        for node in nodes:
            node.child.stop()
        state.close()


@pytest.fixture
def cache_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A cache Redis of its own, on a fixed port so that it comes back where it was."""
    server = RedisServer(tmp_path / "cache-redis", maxmemory="256mb", port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("private_db", [12], indirect=True)
@pytest.mark.parametrize("server", ["granian", "gunicorn"])
def test_cache_redis_restart_under_load(
    private_db: str,
    server: str,
    cache_redis: RedisServer,
    tilecast_env: dict[str, str],
    logs_dir: Path,
    images: dict[str, Path],
    source_root: Path,
) -> None:
    """The cache Redis stops for a few seconds under load and comes back empty: 503 with
    ``Retry-After`` meanwhile, tiles again afterwards, no process restarted, under
    either HTTP server (no app thread wedged on a dead connection)."""
    settings = stack_settings(private_db, TILECAST_CACHE_URL=cache_redis.url)
    env = node_env(tilecast_env, settings)
    state = connect(private_db)
    node = launch_node(env, logs_dir, state, f"faults-cache-{server}")
    api = launch_api_on(env, logs_dir, f"faults-cache-api-{server}", server)
    try:
        name = f"faults-cache-{server}.tiff"
        source = api.register(copy_image(images["pyramid"], source_root, name))
        paths = tile_paths(source, PYRAMID_LEVELS, "?encoding=PNG")
        before = {child.name: child.proc.pid for child in (node.child, api.child)}
        readiness: list[dict[str, object]] = []

        def outage() -> None:
            time.sleep(2.0)
            cache_redis.stop()
            time.sleep(1.0)
            readiness.append(api.get("/readyz", timeout=10).json())
            time.sleep(2.0)
            cache_redis.start()

        tally = run_load(api.base, paths, limit=LIMIT, seconds=10.0, during=outage)
        print(tally.line(f"{server}: cache Redis stopped for 3 s under load"))
        assert tally.failed == 0, tally.failures
        assert tally.statuses[503] > 0, "the outage was not seen"
        assert readiness and "cache" in readiness[0]["failed"]  # type: ignore[operator]
        # Recovered without restarting anything: every tile served, readiness back.
        again = run_load(api.base, paths, limit=LIMIT)
        print(again.line("every tile asked again"))
        assert again.ok == len(paths), again.failures
        assert api.get("/readyz").status_code == 200
        for child in (node.child, api.child):
            child.check_alive()
            assert child.proc.pid == before[child.name]
    finally:
        api.http.close()
        api.child.stop()
        node.child.stop()
        state.close()


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """One Redis for both roles, as ``tilecast up`` runs it (volatile-lru), but small."""
    server = RedisServer(tmp_path / "small-redis", maxmemory="32mb")
    server.start()
    yield server
    server.stop()


def test_cache_past_maxmemory_during_a_job(
    small_redis: RedisServer,
    tilecast_env: dict[str, str],
    logs_dir: Path,
    source_root: Path,
    start_api: Callable[[Mapping[str, str]], ApiServer],
) -> None:
    """One Redis serves both roles under volatile-lru and fills past maxmemory while a
    pre-rendering job runs: tiles (with a TTL) are evicted, the job's record and progress
    (without one) are not, and the job finishes with every tile done."""
    settings = {
        "TILECAST_CACHE_URL": small_redis.url,
        # Redis's own eviction is what is tested, not the keeper's earlier trimming.
        "TILECAST_KEEPER_INTERVAL": "0",
    }
    env = node_env(tilecast_env, settings)
    client = connect(small_redis.url)
    worker = launch_worker(env, logs_dir, "faults-evict-worker")
    try:
        api = start_api(settings)
        source = api.register(copy_image(big_image(source_root), source_root, "faults-evict.tiff"))
        created = api.http.post(
            api.url(f"/item/{source}/tiles/precache"),
            json={"levels": "0-4", "encoding": "PNG"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        job_id = created.json()["id"]
        progress = ProgressWatch(JobStore(client), job_id)
        filled = fill(client, megabytes=48)
        record = wait_until_ended(api, job_id)
        progress.stop()
        evicted = int(client.info("stats")["evicted_keys"])
        print(
            f"job {job_id}: {record['done']}/{record['total']} done, {record['failed']} failed; "
            f"{filled} MB of tiles written beside it, {evicted} keys evicted; progress read "
            f"{len(progress.seen)} times"
        )
        assert evicted > 0, "the cache never reached maxmemory"
        assert record["state"] == FINISHED
        assert (record["done"], record["failed"]) == (record["total"], 0)
        assert progress.seen == sorted(progress.seen), "the job's progress went backwards"
        # While it ran, the job's keys carried no TTL (never evictable); tiles do.
        assert progress.ttls and set(progress.ttls) - {-2} == {-1}, set(progress.ttls)
        tiles = list(client.scan_iter(match=f"tc:tile:{source}:*", count=1000))
        assert tiles and all(client.ttl(key) > 0 for key in tiles[:50])
        assert client.hexists("tc:sources", source)
        worker.check_alive()
    finally:
        worker.stop()
        client.close()


class ProgressWatch:
    """Reads a job's ``done`` count, and the TTLs of its keys while it runs, every 0.1 s
    in a thread, until stopped."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.seen: list[int] = []
        self.ttls: list[int] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(store, job_id), daemon=True)
        self._thread.start()

    def _run(self, store: JobStore, job_id: str) -> None:
        while not self._stopping.wait(0.1):
            record = store.get(job_id)
            self.seen.append(record.done)
            if record.state == RUNNING:
                # -2: a set not made yet (no batch settled or leased).
                self.ttls.extend(store.state.ttl(key) for key in job_keys(job_id)[:3])

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)


def fill(client: redis.Redis, megabytes: int) -> int:
    """Write ``megabytes`` of tile-shaped keys with a TTL, as viewers' tiles would."""
    block = os.urandom(1024 * 1024)
    for i in range(megabytes):
        client.set(f"tc:tile:filler:0:0:0:{i}:0:none:png", block, ex=3600)
    return megabytes


def test_damaged_file_does_not_stop_other_sources(
    api: ApiServer,
    worker: Child,
    images: dict[str, Path],
    sources: dict[str, str],
) -> None:
    """A damaged file's tiles fail (422/502, clearly) while other sources' cold tiles,
    asked at the same time from the same workers, are all served."""
    damaged = api.register(images["damaged"])
    bad = tile_paths(damaged, PYRAMID_LEVELS[:1], "?encoding=PNG&jpegQuality=31")
    good = tile_paths(sources["pyramid"], PYRAMID_LEVELS[:1], "?encoding=WEBP&webpQuality=31")
    mixed = [path for pair in zip(bad, good, strict=True) for path in pair]
    tally = run_load(api.base, mixed, limit=LIMIT + 30, allowed=frozenset({422, 502}))
    print(tally.line("damaged and good tiles at once"))
    assert tally.failed == 0, tally.failures
    assert set(good) <= tally.served
    assert not set(bad) & tally.served
    worker.check_alive()


@pytest.mark.parametrize("private_db", [13], indirect=True)
def test_pool_processes_are_recycled(
    private_db: str,
    tilecast_env: dict[str, str],
    logs_dir: Path,
    images: dict[str, Path],
    source_root: Path,
    start_api: Callable[[Mapping[str, str]], ApiServer],
) -> None:
    """Past TILECAST_WORKER_MAX_MEMORY_MB of resident memory (1 MiB here: after every
    task) a pool process is replaced by a fresh one, which makes its own Renderer and
    serves on. (TILECAST_WORKER_MAX_TASKS uses the same replacement; its mapping onto
    Celery is tests/unit/test_common_protocol_config.py.)"""
    settings = stack_settings(
        private_db, TILECAST_CACHE_URL=private_db, TILECAST_WORKER_MAX_MEMORY_MB="1"
    )
    state = connect(private_db)
    env = node_env(tilecast_env, settings)
    node = launch_node(env, logs_dir, state, "faults-recycle", concurrency=2)
    try:
        api = start_api(settings)
        source = api.register(copy_image(images["pyramid"], source_root, "faults-recycle.tiff"))
        pids = set(procs.descendants(node.pid))
        started = time.monotonic()
        for path in tile_paths(source, PYRAMID_LEVELS[:1])[:4]:
            response = api.get(path)
            assert response.status_code == 200, response.text
            pids |= procs.descendants(node.pid)
        print(
            f"4 tiles in {time.monotonic() - started:.1f} s, rendered by {len(pids)} pool "
            "processes in turn"
        )
        assert len(pids) >= 4
        node.child.check_alive()
    finally:
        node.child.stop()
        state.close()
