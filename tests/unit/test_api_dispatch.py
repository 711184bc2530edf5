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
from tilecast.common.errors import RenderTimeout, UnsupportedImage
from tilecast.common.inflight import Completion, announce, is_inflight
from tilecast.common.redisconn import connect
from tilecast.redis_server import RedisServer


@pytest.fixture
def listener(redis_url: str) -> Iterator[CompletionListener]:
    listener = CompletionListener(lambda: connect(redis_url))
    yield listener
    listener.stop()


def dispatcher(state: redis.Redis, listener: CompletionListener, **kw: float) -> Dispatcher:
    options = {"inflight_ttl": 10.0, "timeout": 5.0, **kw}
    return Dispatcher(state, listener, **options)


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
    """No completion is announced: only the dispatcher's own re-reading of the cache
    can answer before the (generous) timeout, which would raise RenderTimeout."""
    worker = Worker(state, new_key(), announce=False)
    value = dispatcher(state, listener, timeout=60.0).fetch(worker.key, worker.lookup, worker.send)
    assert value == b"done"
    assert worker.sends == 1


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
        completion = waiter.wait(2)
        assert completion is not None and completion.key == "k2"
    finally:
        listener.stop()
        server.stop()
