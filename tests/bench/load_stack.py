"""A ``tilecast up``-style deployment for the load tests, started cold for every run.

Its own redis-server on a free port (empty: cold tile cache), the api as ``tilecast api``
with the default server and its default processes and threads, and ``workers`` times
``tilecast worker`` (fresh processes: cold source caches), waited for until their
interactive nodes have registered and answer a ping. The images are registered through
``POST /sources`` and their metadata read as a viewer would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis import Redis

from tests.bench import harness
from tests.bench.harness import HOST, Child, Processes, RedisServer
from tests.bench.load_client import Target
from tests.bench.load_viewer import ImageGeometry
from tilecast.common import counters


@dataclass
class LoadStack:
    redis: RedisServer
    api: Child
    api_port: int
    workers: list[Child]
    env: dict[str, str]
    source_ids: list[str] = field(default_factory=list)
    geometries: list[ImageGeometry] = field(default_factory=list)
    _state: Redis | None = None  # a client of the state Redis, made on first use

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    def target(self, query: str = "") -> Target:
        return Target(self.base_url, self.source_ids, self.geometries, query=query)

    def counters(self) -> dict[str, int]:
        if self._state is None:
            self._state = self.redis.client()
        return counters.read(self._state)

    def check_alive(self) -> None:
        for child in [self.api, *self.workers]:
            child.check_alive()


def start_load_stack(
    procs: Processes,
    source_roots: Sequence[Path],
    images: Sequence[Path],
    *,
    workers: int = 1,
    worker_concurrency: int | None = None,
    worker_queues: str | None = None,
    api_args: Sequence[str] = (),
    settings: Mapping[str, Any] | None = None,
) -> LoadStack:
    server = harness.start_redis(procs)
    # Cold means cold: no pre-rendering of newly registered images either.
    env = harness.tilecast_env(
        server.url, source_roots, **{"auto_precache": 0, **dict(settings or {})}
    )
    nodes = []
    for n in range(workers):
        argv = harness.tilecast_argv("worker")
        if worker_concurrency is not None:
            argv += ["--concurrency", str(worker_concurrency)]
        if worker_queues is not None:
            argv += ["--queues", worker_queues]
        nodes.append(procs.start(f"worker-{n + 1}", argv, env))
    port = harness.free_port()
    argv = harness.tilecast_argv("api", "--bind", f"{HOST}:{port}", *api_args)
    api = procs.start("api", argv, env)
    harness.wait_for(
        f"tilecast api on port {port}", lambda: harness.http_ok(port, "/healthz"), 60, [api]
    )
    wait_workers(env, server, nodes)
    stack = LoadStack(server, api, port, nodes, env)
    for path in images:
        stack.source_ids.append(harness.add_source(_as_stack(stack), path))
    for source_id in stack.source_ids:
        meta = harness.tile_metadata(_as_stack(stack), source_id)
        stack.geometries.append(ImageGeometry.from_metadata(meta))
    return stack


def wait_workers(env: Mapping[str, str], server: RedisServer, nodes: Sequence[Child]) -> None:
    """Until a node answers a ping on the broker and one interactive node per ``tilecast
    worker`` has registered in the state Redis (the api routes tiles among those)."""
    from tilecast.common.settings import Settings
    from tilecast.common.taskprotocol import make_celery
    from tilecast.common.workers_live import ROLE_INTERACTIVE, read_workers

    app = make_celery(Settings.from_env(env))
    state = server.client()
    try:

        def ready() -> bool:
            live = [w for w in read_workers(state) if w.role == ROLE_INTERACTIVE]
            return len(live) >= len(nodes) and bool(app.control.ping(timeout=0.5))

        harness.wait_for(f"{len(nodes)} tilecast worker(s)", ready, 90, list(nodes))
    finally:
        app.close()
        state.close()


def _as_stack(stack: LoadStack) -> harness.Stack:
    return harness.Stack(stack.redis, None, stack.api, stack.api_port, stack.env)


def settled_counters(
    stack: LoadStack, rendered_at_least: int, timeout: float = 15.0
) -> dict[str, int]:
    """The counters once ``tiles_rendered`` reached ``rendered_at_least`` and nothing
    moved for a while (workers count a render just after announcing it); at the timeout
    with fewer, the stack is checked for a dead process and the counts returned."""
    counts = harness.settled(
        stack.counters,
        lambda now: now.get(counters.TILES_RENDERED, 0) >= rendered_at_least,
        timeout,
    )
    if counts.get(counters.TILES_RENDERED, 0) < rendered_at_least:
        stack.check_alive()
    return counts
