"""Single-flight dispatch and the completion listener against a real Redis."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tilecast.api.miss.completion import CompletionListener
from tilecast.api.miss.dispatch import Dispatcher
from tilecast.common.cache import TileCache
from tilecast.common.errors import RenderTimeout, TooManyWaiting, UnsupportedImage
from tilecast.common.inflight import Completion, announce, inflight_key, is_inflight
from tilecast.common.keys import waiting_key
from tilecast.common.redisconn import connect
from tilecast.redis_server import RedisServer


@pytest.fixture
def listener(redis_url: str) -> Iterator[CompletionListener]:
    listener = CompletionListener(lambda: connect(redis_url))
    yield listener
    listener.stop()


def dispatcher(state: redis.Redis, listener: CompletionListener, **kw: float) -> Dispatcher:
    options = {"inflight_ttl": 10.0, "timeout": 5.0, **kw}
    # The values live in ``state`` here: the sweep looks for them there.
    return Dispatcher(state, listener, present=TileCache(state).exists_many, **options)  # type: ignore[arg-type]


class Worker:
    """Renders ``key`` in a thread: write, then announce (or less, to test safety nets)."""

    def __init__(self, state: redis.Redis, key: str, *, announce: bool = True) -> None:
        self.state = state
        self.key = key
        self.announce = announce
        self.sends = 0
        self.lock = threading.Lock()

    def send(self) -> None:
        with self.lock:
            self.sends += 1
        threading.Thread(target=self._render, daemon=True).start()

    def _render(self) -> None:
        time.sleep(0.2)
        self.state.set(self.key, b"done", ex=60)
        if self.announce:
            announce(self.state, Completion(self.key))

    def lookup(self) -> bytes | None:
        return self.state.get(self.key)  # type: ignore[return-value]


def new_key() -> str:
    return f"tc:test:{uuid.uuid4().hex}"


def run_many(fetch: Callable[[], bytes], count: int) -> list[bytes]:
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(fetch())) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_many_askers_one_send(state: redis.Redis, listener: CompletionListener) -> None:
    worker = Worker(state, new_key())
    d = dispatcher(state, listener)
    results = run_many(lambda: d.fetch(worker.key, worker.lookup, worker.send), 25)
    assert results == [b"done"] * 25
    assert worker.sends == 1
    assert not is_inflight(state, worker.key)


def test_hit_sends_nothing(state: redis.Redis, listener: CompletionListener) -> None:
    worker = Worker(state, new_key())
    state.set(worker.key, b"cached")
    assert dispatcher(state, listener).fetch(worker.key, worker.lookup, worker.send) == b"cached"
    assert worker.sends == 0


def test_missed_completion_is_caught_by_the_recheck(
    state: redis.Redis, listener: CompletionListener
) -> None:
    """No completion is announced and the marker stays (the announcement failed): only
    the sweep's look at the cache can answer before the (generous) timeout, which would
    raise RenderTimeout, and before the marker's TTL."""
    worker = Worker(state, new_key(), announce=False)
    d = dispatcher(state, listener, timeout=60.0, inflight_ttl=60.0)
    started = time.monotonic()
    assert d.fetch(worker.key, worker.lookup, worker.send) == b"done"
    assert worker.sends == 1
    assert time.monotonic() - started < 10, "found only when the marker expired"


def test_expired_marker_is_claimed_again(state: redis.Redis, listener: CompletionListener) -> None:
    key = new_key()
    sends: list[float] = []

    def send() -> None:  # the first task is lost (its worker died); the second works
        sends.append(time.monotonic())
        if len(sends) == 2:
            state.set(key, b"second")
            announce(state, Completion(key))

    d = dispatcher(state, listener, inflight_ttl=0.5)
    assert d.fetch(key, lambda: state.get(key), send) == b"second"  # type: ignore[arg-type,return-value]
    assert len(sends) == 2


def test_timeout(state: redis.Redis, listener: CompletionListener) -> None:
    key = new_key()
    started = time.monotonic()
    with pytest.raises(RenderTimeout):
        dispatcher(state, listener, timeout=0.5).fetch(key, lambda: None, lambda: None)
    waited = time.monotonic() - started
    # Never before the timeout; after it, soon (generously: a loaded machine is slow).
    assert 0.5 <= waited < 10, waited


def test_error_completion_reaches_every_waiter(
    state: redis.Redis, listener: CompletionListener
) -> None:
    key = new_key()
    error = UnsupportedImage("truncated file").to_payload()

    def send() -> None:
        def fail() -> None:
            time.sleep(0.3)
            announce(state, Completion(key, error=error))

        threading.Thread(target=fail, daemon=True).start()

    d = dispatcher(state, listener)
    caught: list[Exception] = []

    def ask() -> bytes:
        try:
            return d.fetch(key, lambda: None, send)
        except UnsupportedImage as exc:
            caught.append(exc)
            return b""

    run_many(ask, 5)
    assert len(caught) == 5 and all(exc.message == "truncated file" for exc in caught)


def test_failed_send_releases_the_marker(state: redis.Redis, listener: CompletionListener) -> None:
    key = new_key()

    def send() -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        dispatcher(state, listener).fetch(key, lambda: None, send)
    assert not is_inflight(state, key)


def test_listener_reconnects_after_redis_restarts(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "r", maxmemory="64mb")
    url = server.start()
    port = server.port
    listener = CompletionListener(lambda: connect(url))
    try:
        listener.register("k1")
        assert listener.subscribed.wait(2)
        server.stop()
        server = RedisServer(tmp_path / "r", maxmemory="64mb", port=port)
        server.start()
        assert listener.subscribed.wait(10), "the listener did not subscribe again"
        waiter = listener.register("k2")
        announce(connect(url), Completion("k2"))
        woken, completion = waiter.wait(2)
        assert woken and completion is not None and completion.key == "k2"
    finally:
        listener.stop()
        server.stop()


def hold_marker(state: redis.Redis, key: str) -> None:
    """As if another process had sent ``key``'s render: askers wait for it."""
    assert state.set(inflight_key(key), "test-holder", nx=True, px=60_000)


def start_fetches(
    d: Dispatcher, keys: list[str], sends: list[str]
) -> tuple[list[threading.Thread], list[object]]:
    """One thread per key asking it (its marker is held, so each waits)."""
    results: list[object] = []
    state = d.state

    def ask(key: str) -> None:
        try:
            results.append(d.fetch(key, lambda: state.get(key), lambda: sends.append(key)))  # type: ignore[arg-type,return-value]
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=ask, args=(key,), daemon=True) for key in keys]
    for thread in threads:
        thread.start()
    return threads, results


def test_waiting_costs_no_round_trip_per_waiter(
    state: redis.Redis, listener: CompletionListener
) -> None:
    """20 requests wait 3 s for renders still in flight: the process's sweep reads their
    markers and values once a second (a round trip each), and no waiter looks itself
    -- where each used to look at the cache and the marker every second (60 x 3 round
    trips)."""
    keys = [new_key() for _ in range(20)]
    for key in keys:
        hold_marker(state, key)
    d = dispatcher(state, listener, timeout=30.0)
    sends: list[str] = []
    threads, results = start_fetches(d, keys, sends)
    wait_until_waiting(listener, keys)
    before = commands(state)
    time.sleep(3)
    spent = commands(state) - before
    for key in keys:  # every render finishes: each waiter gets its value
        state.set(key, b"done", ex=60)
        announce(state, Completion(key))
    for thread in threads:
        thread.join(10)
    assert results == [b"done"] * len(keys) and sends == []
    # About 3 sweeps of 2 commands (MGET, the EXISTS pipeline of 20), plus INFO itself.
    assert spent <= 3 * (1 + len(keys)) + 10, spent


def test_waits_past_the_bound_are_refused_at_once(
    state: redis.Redis, listener: CompletionListener
) -> None:
    keys = [new_key() for _ in range(3)]
    for key in keys:
        hold_marker(state, key)
    d = dispatcher(state, listener, timeout=30.0, max_waiting=2)
    sends: list[str] = []
    threads, results = start_fetches(d, keys[:2], sends)
    wait_until_waiting(listener, keys[:2])
    assert d.slots.used == 2
    started = time.monotonic()
    with pytest.raises(TooManyWaiting) as refused:
        d.fetch(keys[2], lambda: None, lambda: sends.append(keys[2]))  # type: ignore[arg-type,return-value]
    assert time.monotonic() - started < 1
    assert refused.value.status == 503 and refused.value.retry_after > 0
    assert refused.value.code == "too_many_waiting"
    assert not state.exists(waiting_key(keys[2])), "a refused request joined a wait"
    # A hit needs no slot.
    state.set(keys[2], b"cached", ex=60)
    assert d.fetch(keys[2], lambda: state.get(keys[2]), lambda: None) == b"cached"  # type: ignore[arg-type,return-value]
    for key in keys[:2]:
        state.set(key, b"done", ex=60)
        announce(state, Completion(key))
    for thread in threads:
        thread.join(10)
    assert results == [b"done", b"done"] and sends == [] and d.slots.used == 0


def test_a_failing_sweep_leaves_waiters_to_look_themselves(
    state: redis.Redis, listener: CompletionListener
) -> None:
    """The sweep's Redis fails: the waiter notices it is not healthy and looks at the
    cache itself, as before the sweep existed."""
    d = dispatcher(state, listener, timeout=30.0)

    def broken(keys: object) -> list[bool]:
        raise redis.exceptions.ConnectionError("down")

    d.sweeper.present = broken
    worker = Worker(state, new_key(), announce=False)
    started = time.monotonic()
    assert d.fetch(worker.key, worker.lookup, worker.send) == b"done"
    assert time.monotonic() - started < 10


def wait_until_waiting(listener: CompletionListener, keys: list[str]) -> None:
    deadline = time.monotonic() + 10
    while set(keys) - set(listener.waited_keys()):
        assert time.monotonic() < deadline, "the requests did not start waiting"
        time.sleep(0.05)
    time.sleep(0.2)  # past registration: inside the wait


def commands(state: redis.Redis) -> int:
    return int(state.info("stats")["total_commands_processed"])
