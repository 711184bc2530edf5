"""Activity: the per-process touch memo and the ``tc:active`` sorted set."""

from __future__ import annotations

import threading
import time
import uuid

import redis

from tilecast.common import activity
from tilecast.common.activity import ActivityMemo


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_memo_is_due_once_per_interval_per_source() -> None:
    clock = Clock()
    memo = ActivityMemo(interval=5.0, clock=clock)
    assert memo.due("a") is True
    assert memo.due("a") is False
    assert memo.due("b") is True  # sources are independent
    clock.now += 4.9
    assert memo.due("a") is False
    clock.now += 0.2
    assert memo.due("a") is True
    assert memo.due("a") is False


def test_forget_makes_the_next_touch_due() -> None:
    memo = ActivityMemo(interval=60.0, clock=Clock())
    assert memo.due("a")
    memo.forget("a")
    assert memo.due("a")


def test_concurrent_hits_claim_one_touch() -> None:
    memo = ActivityMemo(interval=60.0)
    results: list[bool] = []
    barrier = threading.Barrier(16)

    def hit() -> None:
        barrier.wait()
        results.append(memo.due("s"))

    threads = [threading.Thread(target=hit) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1


def test_get_and_touch_reads_and_records_in_one_pipeline(state: redis.Redis) -> None:
    source = uuid.uuid4().hex
    state.set(f"tc:tile:{source}:1:0:0:0:0:none:PNG", b"bytes")
    before = time.time()
    assert activity.get_and_touch(state, f"tc:tile:{source}:1:0:0:0:0:none:PNG", source) == b"bytes"
    assert activity.get_and_touch(state, f"tc:tile:{source}:1:0:0:0:1:none:PNG", source) is None
    seen = activity.last_seen(state)
    assert before <= seen[source] <= time.time()
    assert activity.active_count(state, 60.0) >= 1


def test_active_count_and_forget_before(state: redis.Redis) -> None:
    old, new = uuid.uuid4().hex, uuid.uuid4().hex
    now = time.time()
    activity.touch(state, old, now - 3600)
    activity.touch(state, new, now)
    seen = activity.last_seen(state)
    assert seen[old] == now - 3600 and seen[new] == now
    assert activity.forget_before(state, now - 1800) >= 1
    seen = activity.last_seen(state)
    assert old not in seen and new in seen
