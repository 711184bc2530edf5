"""Calls to tilecast, made off the Girder request that caused them.

Each call runs on one of a few background "lanes" (one thread each), chosen by item id:
calls about one item keep their order (a DELETE then a POST must not arrive swapped),
calls about different items do not wait for each other. A call not yet started is merged
with a newer one of the same method for the same item, so removing an item with three
files makes one DELETE, not four. Stdlib only: it runs inside Girder 3.2 and 5.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

SECRET_HEADER = "Tilecast-Secret"
USER_AGENT = "tilecast-girder/0.1"
# tilecast sits next to Girder: calls go straight to it, not through an environment proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    secret: str
    item_id: str
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Outcome:
    """What tilecast answered: ``status`` 0 when no HTTP answer came at all."""

    status: int
    detail: str = ""

    @property
    def retryable(self) -> bool:
        return self.status == 0 or self.status >= 500


Transport = Callable[[Call, float], Outcome]


def http_transport(call: Call, timeout: float) -> Outcome:
    data = json.dumps(call.body).encode() if call.body is not None else None
    headers = {SECRET_HEADER: call.secret, "User-Agent": USER_AGENT}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(call.url, data=data, headers=headers, method=call.method)
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Outcome(response.status)
    except urllib.error.HTTPError as exc:
        return Outcome(exc.code, exc.read(500).decode("utf-8", "replace"))
    except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
        return Outcome(0, str(exc))


class Notifier:
    def __init__(
        self,
        logger: logging.Logger,
        *,
        lanes: int = 4,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.5,
        transport: Transport = http_transport,
    ) -> None:
        self._logger = logger
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._transport = transport
        self._lanes = [_Lane(f"tilecast-notify-{n}", self._deliver) for n in range(lanes)]

    def submit(self, call: Call) -> None:
        """Queue ``call``; never blocks on tilecast."""
        lane = zlib.crc32(call.item_id.encode()) % len(self._lanes)
        self._lanes[lane].put(call)

    def wait_idle(self, timeout: float) -> bool:
        """Whether every queued call finished within ``timeout`` seconds (for tests)."""
        deadline = time.monotonic() + timeout
        return all(lane.wait_idle(deadline) for lane in self._lanes)

    def _deliver(self, call: Call) -> None:
        for attempt in range(self._retries + 1):
            outcome = self._transport(call, self._timeout)
            if not outcome.retryable or attempt == self._retries:
                break
            time.sleep(self._backoff * 2**attempt)
        self._report(call, outcome, attempt + 1)

    def _report(self, call: Call, outcome: Outcome, attempts: int) -> None:
        what = f"tilecast {call.method} {call.url}"
        if outcome.status == 401:
            self._logger.error(
                "%s: 401, tilecast refused the shared secret; "
                "set tilecast.secret to tilecast's Girder secret",
                what,
            )
        elif call.method == "DELETE" and outcome.status == 404:
            self._logger.debug("%s: tilecast did not know the item", what)
        elif outcome.status == 0 or outcome.status >= 400:
            self._logger.warning(
                "%s failed after %d attempt(s): %s %s",
                what,
                attempts,
                outcome.status or "no answer",
                outcome.detail[:300],
            )
        else:
            self._logger.info("%s: %d", what, outcome.status)


class _Lane:
    """One thread working through its calls in order, started on first use (so that a
    Girder that forks after loading plugins gets its threads in the right process)."""

    def __init__(self, name: str, deliver: Callable[[Call], None]) -> None:
        self._name = name
        self._deliver = deliver
        self._pending: list[Call] = []
        self._busy = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def put(self, call: Call) -> None:
        with self._cond:
            if not self._merge(call):
                self._pending.append(call)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _merge(self, call: Call) -> bool:
        for index in range(len(self._pending) - 1, -1, -1):
            queued = self._pending[index]
            if queued.item_id == call.item_id:
                if queued.method != call.method:
                    return False
                self._pending[index] = call
                return True
        return False

    def wait_idle(self, deadline: float) -> bool:
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                call = self._pending.pop(0)
                self._busy = True
            try:
                self._deliver(call)
            except Exception:  # a lane must outlive any one call
                logging.getLogger(__name__).exception("tilecast call %s failed", call.url)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
