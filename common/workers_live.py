"""Which worker nodes are alive: registration and heartbeats in the state Redis.

Every worker node (one Celery worker process with its pool) refreshes
``tc:worker:{node}`` -- its :class:`WorkerInfo` as JSON -- with a short TTL about once a
second, and keeps its name in the set ``tc:workers``. A node whose key has expired is
dead: it stops being picked within the TTL, and nobody compares clocks across hosts
(the TTL runs on the Redis server). Reading the live set costs two round trips
(SMEMBERS, then MGET), which the api does at most about once a second per process.

Dead nodes are moved to the sorted set ``tc:workers:gone`` (score: when they were found
dead) by whichever live node sweeps first; their own queues are emptied into the shared
queue for a while after that (workers/heartbeat.py), then forgotten.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from tilecast.common.keys import GONE_KEY, WORKERS_KEY, worker_key

ROLE_INTERACTIVE = "interactive"
ROLE_BULK = "bulk"


@dataclass(frozen=True)
class WorkerInfo:
    """What a node says about itself in each heartbeat."""

    node: str
    role: str
    # Its own queue (interactive nodes: tiles of the sources it is picked for), or None.
    queue: str | None
    host: str
    pid: int
    concurrency: int
    started: float
    # Tasks received since start, by the queue (routing key) they came from.
    received: Mapping[str, int] = field(default_factory=dict)

    def encode(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def decode(cls, data: bytes | str) -> WorkerInfo:
        body: dict[str, Any] = json.loads(data)
        return cls(
            node=str(body["node"]),
            role=str(body["role"]),
            queue=None if body.get("queue") is None else str(body["queue"]),
            host=str(body.get("host", "")),
            pid=int(body.get("pid", 0)),
            concurrency=max(1, int(body.get("concurrency", 1))),
            started=float(body.get("started", 0.0)),
            received={str(k): int(v) for k, v in dict(body.get("received") or {}).items()},
        )


def heartbeat(state: redis.Redis, info: WorkerInfo, ttl: float) -> None:
    """Register ``info`` (again) for ``ttl`` seconds; one round trip."""
    pipe = state.pipeline(transaction=False)
    pipe.set(worker_key(info.node), info.encode(), px=max(1, int(ttl * 1000)))
    pipe.sadd(WORKERS_KEY, info.node)
    # A node that was slow enough to be declared dead comes back.
    pipe.zrem(GONE_KEY, info.node)
    pipe.execute()


def unregister(state: redis.Redis, node: str, now: float) -> None:
    """A node that stops on purpose: gone at once, its queue swept by the others."""
    pipe = state.pipeline(transaction=True)
    pipe.delete(worker_key(node))
    pipe.srem(WORKERS_KEY, node)
    pipe.zadd(GONE_KEY, {node: now})
    pipe.execute()


def _registered(state: redis.Redis) -> list[str]:
    return sorted(_text(m) for m in state.smembers(WORKERS_KEY))  # type: ignore[union-attr]


def read_workers(state: redis.Redis) -> list[WorkerInfo]:
    """Every live node, sorted by name."""
    nodes = _registered(state)
    if not nodes:
        return []
    values: Sequence[bytes | None] = state.mget([worker_key(n) for n in nodes])  # type: ignore[assignment]
    live = []
    for value in values:
        if value is None:
            continue
        try:
            live.append(WorkerInfo.decode(value))
        except (ValueError, KeyError, TypeError):
            continue  # a malformed record is no live worker
    return live


def mark_dead(state: redis.Redis, now: float) -> list[str]:
    """Move registered nodes whose heartbeat expired to the gone set; their names."""
    nodes = _registered(state)
    if not nodes:
        return []
    values = state.mget([worker_key(n) for n in nodes])
    dead = [node for node, value in zip(nodes, values, strict=True) if value is None]  # type: ignore[arg-type]
    if dead:
        pipe = state.pipeline(transaction=True)
        pipe.srem(WORKERS_KEY, *dead)
        pipe.zadd(GONE_KEY, dict.fromkeys(dead, now), nx=True)
        pipe.execute()
    return dead


def gone_nodes(state: redis.Redis) -> list[tuple[str, float]]:
    """Nodes found dead or stopped, with when."""
    rows = state.zrange(GONE_KEY, 0, -1, withscores=True)
    return [(_text(node), float(since)) for node, since in rows]  # type: ignore[union-attr]


def forget(state: redis.Redis, node: str) -> None:
    state.zrem(GONE_KEY, node)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
