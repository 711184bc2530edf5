"""One listener per api process: one pubsub connection to ``tc:done`` for every waiter.

Requests that wait for a render register a :class:`Waiter` for their key; the listener
thread reads each :class:`~common.inflight.Completion` once and wakes the waiters of its
key. If Redis drops the connection the thread reconnects with a growing pause; a
completion published meanwhile is missed, which is why one sweep a second looks at the
in-flight markers of every waited key and nudges the waiters whose marker is gone
(api/miss/sweep.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from tilecast.common.inflight import DONE_CHANNEL, Completion

log = logging.getLogger(__name__)

# How long the listener blocks for a message before checking whether it should stop.
POLL_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 5.0
SUBSCRIBE_WAIT_SECONDS = 2.0


class Waiter:
    """One request waiting for one key: woken by its completion, or nudged to look for
    itself (api/miss/sweep.py), else asleep -- no CPU, no Redis."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.completion: Completion | None = None
        self._event = threading.Event()

    def deliver(self, completion: Completion) -> None:
        self.completion = completion
        self._event.set()

    def nudge(self) -> None:
        """Wake the waiter with no completion: something it should look at changed."""
        self._event.set()

    def wait(self, timeout: float) -> tuple[bool, Completion | None]:
        """Whether the waiter was woken within ``timeout`` seconds, and the completion
        that woke it (None when it was nudged).

        Each completion is returned once, so a waiter that must go on waiting (the value
        was evicted before it could be read) does not spin on an old one."""
        if not self._event.wait(timeout):
            return False, None
        self._event.clear()
        completion, self.completion = self.completion, None
        return True, completion


class CompletionListener:
    """Subscribes lazily, on the first waiter, so that idle processes hold no connection."""

    def __init__(self, connect: Callable[[], redis.Redis]) -> None:
        self._connect = connect
        self._waiters: dict[str, set[Waiter]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.subscribed = threading.Event()
        self._had_subscription = False

    def register(self, key: str) -> Waiter:
        self._ensure_started()
        waiter = Waiter(key)
        with self._lock:
            self._waiters.setdefault(key, set()).add(waiter)
        return waiter

    def unregister(self, waiter: Waiter) -> None:
        with self._lock:
            waiters = self._waiters.get(waiter.key)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[waiter.key]

    def waited_keys(self) -> list[str]:
        """Every key some request of this process waits for."""
        with self._lock:
            return list(self._waiters)

    def nudge(self, key: str) -> None:
        """Wake every waiter of ``key`` to look for itself."""
        with self._lock:
            waiters = list(self._waiters.get(key, ()))
        for waiter in waiters:
            waiter.nudge()

    def dispatch(self, completion: Completion) -> None:
        with self._lock:
            waiters = list(self._waiters.get(completion.key, ()))
        for waiter in waiters:
            waiter.deliver(completion)

    def stop(self, wait: bool = False) -> None:
        """Ask the thread to end (within POLL_SECONDS); ``wait`` joins it."""
        self._stopping.set()
        if wait and self._thread is not None:
            self._thread.join(timeout=POLL_SECONDS * 3)

    def _ensure_started(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="tilecast-completions", daemon=True
                )
                self._thread.start()
        # The first waiters of a process would otherwise miss completions published
        # before the subscription holds, and wait for the once-a-second re-check.
        self.subscribed.wait(SUBSCRIBE_WAIT_SECONDS)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                self._listen()
                backoff = 0.1
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                if self._had_subscription:
                    backoff = 0.1  # it worked until now: retry soon
                log.warning("completion listener lost redis (%s); reconnecting", exc)
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            except Exception:
                # A bug here must not silently end completions for the whole process.
                log.exception("completion listener failed; restarting")
                self._stopping.wait(MAX_BACKOFF_SECONDS)

    def _listen(self) -> None:
        self._had_subscription = False
        client = self._connect()
        pubsub = client.pubsub()
        try:
            pubsub.subscribe(DONE_CHANNEL)
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=POLL_SECONDS)
                if message is None:
                    continue
                if message.get("type") == "subscribe":
                    # Confirmed by the server: from here on no completion is missed.
                    self.subscribed.set()
                    self._had_subscription = True
                elif message.get("type") == "message":
                    self._handle(message["data"])
        finally:
            self.subscribed.clear()
            pubsub.close()
            client.close()

    def _handle(self, data: bytes | str) -> None:
        try:
            completion = Completion.decode(data)
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed completion message")
            return
        self.dispatch(completion)
