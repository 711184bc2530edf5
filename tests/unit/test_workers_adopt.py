"""A node names itself in the marker of a task it reserves from the shared queue, at
receipt, so a node killed before the task starts is rescued too (workers/adopt.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis

from tilecast.common.inflight import inflight_key
from tilecast.common.routing import affinity_queue
from tilecast.common.taskprotocol import QUEUE_INTERACTIVE, TASK_RENDER_TILE, render_tile_payload
from tilecast.common.tiles import TileRequest
from tilecast.workers.adopt import adopt_received

NODE = "interactive-4242@host"


@dataclass
class Received:
    name: str
    args: list[Any]
    delivery_info: dict[str, Any] = field(default_factory=dict)


def _tile(x: int) -> tuple[TileRequest, str]:
    request = TileRequest(source="a" * 24, z=3, x=x, y=1)
    return request, inflight_key(request.key(5))


def test_a_task_from_the_shared_queue_is_adopted_at_receipt(state: redis.Redis) -> None:
    request, marker = _tile(1)
    state.set(marker, "owner-1", ex=60)
    task = Received(
        TASK_RENDER_TILE, [render_tile_payload(request, 5)], {"routing_key": QUEUE_INTERACTIVE}
    )
    adopt_received(state, NODE, task)
    assert state.get(marker) == f"{affinity_queue(NODE)} owner-1".encode()
    assert 0 < state.ttl(marker) <= 60


def test_routed_tasks_bulk_nodes_and_finished_renders_are_left_alone(
    state: redis.Redis,
) -> None:
    request, marker = _tile(2)
    payload = [render_tile_payload(request, 5)]
    state.set(marker, "owner-2", ex=60)
    adopt_received(
        state, NODE, Received(TASK_RENDER_TILE, payload, {"routing_key": affinity_queue(NODE)})
    )
    adopt_received(state, "bulk-1@host", Received(TASK_RENDER_TILE, payload))
    assert state.get(marker) == b"owner-2"
    state.delete(marker)
    adopt_received(state, NODE, Received(TASK_RENDER_TILE, payload))
    assert state.get(marker) is None  # finished meanwhile: not marked again
    adopt_received(state, NODE, Received(TASK_RENDER_TILE, [{"bogus": 1}]))  # logged only
