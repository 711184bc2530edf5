"""Source affinity: which interactive worker node should render a source's tiles.

Each interactive node consumes its own queue (:func:`affinity_queue`) besides the
shared ``interactive`` queue. The api sends a source's work to the node that
rendezvous hashing (highest random weight) picks among the live nodes, so that node
keeps the source open in its cache; when a node joins or dies, only the sources it
gains or held move. Weights are the nodes' pool sizes: a node with twice the processes
is picked for about twice the sources.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import redis

from tilecast.common.redisconn import connect
from tilecast.common.taskprotocol import QUEUE_INTERACTIVE
from tilecast.common.workers_live import ROLE_INTERACTIVE, WorkerInfo

AFFINITY_PREFIX = f"{QUEUE_INTERACTIVE}."
_SCALE = float(1 << 64)


def affinity_queue(node: str) -> str:
    """The node's own queue: ``interactive.{node}``."""
    return AFFINITY_PREFIX + node


def is_affinity_queue(queue: str) -> bool:
    return queue.startswith(AFFINITY_PREFIX)


def candidates(workers: Sequence[WorkerInfo]) -> list[WorkerInfo]:
    """The live nodes that take routed work: interactive ones with their own queue."""
    return [w for w in workers if w.role == ROLE_INTERACTIVE and w.queue]


def _score(key: str, worker: WorkerInfo) -> float:
    digest = hashlib.blake2b(f"{worker.node}\0{key}".encode(), digest_size=8).digest()
    # A uniform number in (0, 1); -w / ln(u) is the weighted rendezvous score.
    u = (int.from_bytes(digest, "big") + 0.5) / _SCALE
    return -worker.concurrency / math.log(u)


def pick(key: str, workers: Sequence[WorkerInfo]) -> WorkerInfo | None:
    """The node that owns ``key`` (a source id) among ``workers``, or None if empty."""
    best: WorkerInfo | None = None
    best_score = -1.0
    for worker in workers:
        score = _score(key, worker)
        # Ties (practically never) go to the smaller name, so every api agrees.
        if score > best_score or (
            score == best_score and best is not None and worker.node < best.node
        ):
            best, best_score = worker, score
    return best


def broker_client(url: str, **timeouts: float) -> redis.Redis | None:
    """A client of the broker's Redis (queue lists: LLEN, LMOVE), or None for another
    kind of broker."""
    if url.split("://", 1)[0] in ("redis", "rediss", "unix"):
        return connect(url, **timeouts)
    return None


def binding_key(queue: str) -> str:
    """Where kombu's Redis transport keeps the bindings of the queue's own exchange
    (Celery names a queue it creates on demand after its exchange)."""
    return f"_kombu.binding.{queue}"
