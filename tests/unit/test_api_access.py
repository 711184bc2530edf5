"""Access control pieces: the decision memo, where tokens are read from, the shared
secret, and how Girder's answers become client errors (a real local HTTP server stands
in for the few Girder answers each test needs)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from flask import Flask, request

from tilecast.api.middleware.access import DecisionMemo, GirderAccess, credentials, require_secret
from tilecast.api.middleware.girder import GirderAuthority
from tilecast.common.errors import (
    ConfigurationError,
    Forbidden,
    GirderUnavailable,
    Unauthorized,
    UnknownSource,
)
from tilecast.common.settings import Settings
from tilecast.redis_server import free_port

ITEM = "0123456789abcdef01234567"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_memo_remembers_allowed_and_refused_for_the_ttl() -> None:
    clock = Clock()
    memo = DecisionMemo(10.0, clock)
    calls: list[str] = []

    def allow() -> None:
        calls.append("allow")

    def refuse() -> None:
        calls.append("refuse")
        raise Forbidden("no")

    memo.check(("t", ITEM), allow)
    memo.check(("t", ITEM), allow)
    with pytest.raises(Forbidden):
        memo.check(("u", ITEM), refuse)
    with pytest.raises(Forbidden):
        memo.check(("u", ITEM), refuse)
    assert calls == ["allow", "refuse"]
    clock.now += 10.5
    memo.check(("t", ITEM), allow)
    assert calls == ["allow", "refuse", "allow"]


def test_memo_never_keeps_girder_being_unreachable() -> None:
    memo = DecisionMemo(10.0, Clock())
    calls = []

    def down() -> None:
        calls.append(1)
        raise GirderUnavailable("down")

    for _ in range(2):
        with pytest.raises(GirderUnavailable):
            memo.check(("t", ITEM), down)
    assert len(calls) == 2


def test_memo_asks_once_for_concurrent_first_askers() -> None:
    memo = DecisionMemo(10.0)
    calls = []
    started = threading.Event()

    def slow_allow() -> None:
        calls.append(1)
        started.set()
        time.sleep(0.2)

    threads = [
        threading.Thread(target=memo.check, args=(("t", ITEM), slow_allow)) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"headers": {"Girder-Token": "h"}, "query_string": "token=q"}, "h"),
        ({"query_string": "token=q", "headers": {"Cookie": "girderToken=c"}}, "q"),
        ({"headers": {"Cookie": "girderToken=c"}}, "c"),
        ({}, None),
    ],
)
def test_credentials_come_from_header_query_or_cookie(kwargs: dict, expected: str | None) -> None:
    app = Flask("t")
    with app.test_request_context("/item/x/tiles", **kwargs):
        assert credentials(request) == expected


def test_the_shared_secret_is_required_and_compared() -> None:
    app = Flask("t")
    with app.test_request_context("/", headers={"Tilecast-Secret": "s3cret"}):
        require_secret(request, "s3cret")
        with pytest.raises(Unauthorized):
            require_secret(request, "other")
        with pytest.raises(Unauthorized, match="TILECAST_GIRDER_SECRET"):
            require_secret(request, "")


# --- Girder's answers -------------------------------------------------------------------


class FakeGirder(BaseHTTPRequestHandler):
    """``/item/{id}`` answers by token: ``ok`` 200, ``other`` 403, none 401 unless the
    item is ``PUBLIC``; ids starting with ``f`` are unknown (400, as Girder answers);
    ``/user/me`` says ``admin`` is an administrator; ``slow`` never answers in time."""

    PUBLIC = "aaaaaaaaaaaaaaaaaaaaaaaa"
    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        token = self.headers.get("Girder-Token")
        if token == "slow":
            time.sleep(2)
        if token == "broken":
            return self._answer(500, b'{"message": "boom"}')
        if self.path.endswith("/user/me"):
            body = b'{"admin": true}' if token == "admin" else b'{"admin": false}'
            return self._answer(200, body)
        item = self.path.rsplit("/", 1)[-1]
        if item.startswith("f"):
            return self._answer(400, b'{"message": "Invalid item id"}')
        if token == "ok" or item == self.PUBLIC:
            return self._answer(200, b"{}")
        if token == "other":
            return self._answer(403, b'{"message": "Read access denied"}')
        return self._answer(401, b'{"message": "You must be logged in."}')

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def girder_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeGirder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v1"
    server.shutdown()


def _authority(url: str, timeout: float = 1.0) -> GirderAuthority:
    settings = Settings(access_mode="girder", girder_url=url, girder_timeout=timeout).resolved()
    return GirderAuthority(settings)


def test_girder_answers_become_client_errors(girder_url: str) -> None:
    authority = _authority(girder_url)
    authority.check_read(ITEM, "ok")
    authority.check_read(FakeGirder.PUBLIC, None)
    with pytest.raises(Unauthorized, match="not public"):
        authority.check_read(ITEM, None)
    with pytest.raises(Unauthorized, match="expired"):
        authority.check_read(ITEM, "stale")
    with pytest.raises(Forbidden):
        authority.check_read(ITEM, "other")
    with pytest.raises(UnknownSource):
        authority.check_read("f" * 24, "ok")
    with pytest.raises(UnknownSource):
        authority.check_read("not-an-object-id", "ok")
    with pytest.raises(GirderUnavailable):
        authority.check_read(ITEM, "broken")
    assert authority.is_admin("admin")
    assert not authority.is_admin("ok")


def test_a_slow_or_absent_girder_is_a_503_not_a_hang(girder_url: str) -> None:
    with pytest.raises(GirderUnavailable):
        _authority(girder_url, timeout=0.3).check_read(ITEM, "slow")
    with pytest.raises(GirderUnavailable):
        _authority(f"http://127.0.0.1:{free_port()}/api/v1").check_read(ITEM, "ok")


def test_managing_needs_the_secret_or_an_admin(girder_url: str) -> None:
    settings = Settings(
        access_mode="girder", girder_url=girder_url, girder_secret="s3cret"
    ).resolved()
    access = GirderAccess(settings)
    app = Flask("t")
    with app.test_request_context("/", headers={"Tilecast-Secret": "s3cret"}):
        access.check_manage(request, None)
    with app.test_request_context("/"):
        access.check_manage(request, "admin")
        with pytest.raises(Forbidden):
            access.check_manage(request, "ok")
        with pytest.raises(Unauthorized):
            access.check_manage(request, None)


def test_girder_mode_needs_a_girder_url() -> None:
    with pytest.raises(ConfigurationError, match="GIRDER_URL"):
        Settings(access_mode="girder").resolved()
    with pytest.raises(ConfigurationError, match="ACCESS_MODE"):
        Settings(access_mode="signed-by-nobody").resolved()
