"""The one lease (common/lease.py) behind the leader locks and the in-flight markers,
against a real Redis: only one holder, renewal and release only by the holder (each one
atomic step), expiry when the holder is gone."""

from __future__ import annotations

import time
import uuid

import redis

from tilecast.common import inflight, lease
from tilecast.common.lease import Lease


def key() -> str:
    return f"tc:test:lease:{uuid.uuid4().hex}"


def test_one_holder_at_a_time(state: redis.Redis) -> None:
    name = key()
    first, second = Lease(state, name, "a", 10), Lease(state, name, "b", 10)
    assert first.take() is True
    assert second.take() is False
    assert second.is_held() is True
    assert state.get(name) == b"a"


def test_renewal_only_by_the_holder(state: redis.Redis) -> None:
    name = key()
    first, second = Lease(state, name, "a", 10), Lease(state, name, "b", 1)
    assert second.renew() is False  # nobody holds it: renewing does not take it
    assert not state.exists(name)
    assert first.take()
    state.pexpire(name, 500)
    assert first.renew() is True
    assert 9_000 < state.pttl(name) <= 10_000
    assert second.renew() is False
    assert state.get(name) == b"a" and state.pttl(name) > 9_000


def test_hold_renews_ours_or_takes_a_free_one(state: redis.Redis) -> None:
    name = key()
    assert lease.hold(state, name, "a", 5) is True
    assert lease.hold(state, name, "b", 5) is False
    state.pexpire(name, 100)
    assert lease.hold(state, name, "a", 5) is True  # renewed, not lost
    assert state.pttl(name) > 4_000
    state.delete(name)  # expired
    assert lease.hold(state, name, "b", 5) is True
    assert state.get(name) == b"b"


def test_release_never_drops_another_holders_lease(state: redis.Redis) -> None:
    """The holder whose lease expired and was taken by another must not drop the new
    holder's (the GET-then-DEL race the job driver's release had)."""
    name = key()
    old, new = Lease(state, name, "old", 10), Lease(state, name, "new", 10)
    assert old.take()
    state.delete(name)  # old's lease expired
    assert new.take()
    assert old.release() is False
    assert state.get(name) == b"new"
    assert new.release() is True
    assert not state.exists(name)


def test_a_lease_expires_with_its_ttl(state: redis.Redis) -> None:
    name = key()
    assert Lease(state, name, "a", 0.05).take()
    time.sleep(0.15)
    assert Lease(state, name, "b", 10).take() is True


def test_replace_is_compare_and_set(state: redis.Redis) -> None:
    name = key()
    assert lease.take(state, name, "a", 10)
    assert lease.replace(state, name, b"b", "c", 10) is False  # not what is there
    assert lease.replace(state, name, b"a", "c", 5) is True
    assert state.get(name) == b"c" and 0 < state.pttl(name) <= 5_000
    state.delete(name)
    assert lease.replace(state, name, b"c", "d", 5) is False  # gone: not recreated
    assert not state.exists(name)


def test_ttl_ms_is_at_least_one() -> None:
    assert lease.ttl_ms(0) == 1 and lease.ttl_ms(0.0004) == 1 and lease.ttl_ms(2.5) == 2500


# --- in-flight markers over the lease -----------------------------------------------------


def test_marker_claim_take_over_and_queue_naming(state: redis.Redis) -> None:
    work = key()
    assert inflight.claim(state, work, "api:1", 10) is True
    assert inflight.claim(state, work, "api:2", 10) is False
    inflight.name_queue(state, work, "api:1", "interactive.n@h")
    seen = inflight.read(state, work)
    assert inflight.marker_queue(seen) == "interactive.n@h"
    assert inflight.take_over(state, work, b"something else", "api:2", 10) is False
    assert seen is not None and inflight.take_over(state, work, seen, "api:2", 10) is True
    assert inflight.read(state, work) == b"api:2"
    assert inflight.adopt(state, work, "interactive.m@h") is True
    assert inflight.read(state, work) == b"interactive.m@h api:2"
    inflight.release(state, work)
    assert inflight.adopt(state, work, "interactive.m@h") is False  # finished: stays gone
    inflight.name_queue(state, work, "api:1", "interactive.n@h")
    assert inflight.read(state, work) is None


def test_markers_claimed_and_released_by_a_batch(state: redis.Redis) -> None:
    keys = [key() for _ in range(3)]
    assert inflight.claim(state, keys[1], "someone", 10)
    assert inflight.claim_many(state, keys, "job:1:0", 10) == [True, False, True]
    # A retry of the same batch keeps its own markers.
    assert inflight.claim_many(state, keys, "job:1:0", 10) == [True, False, True]
    assert inflight.release_owned(state, keys, "job:1:0") == 2
    assert [inflight.is_inflight(state, k) for k in keys] == [False, True, False]
