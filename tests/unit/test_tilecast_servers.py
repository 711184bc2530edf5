"""Choosing the api's HTTP server: options, parsing and the per-server configuration."""

from __future__ import annotations

import pytest
from granian.constants import Interfaces
from granian.http import HTTP1Settings

from tilecast.cli import build_parser
from tilecast.common.errors import BadRequest
from tilecast.common.settings import Settings
from tilecast.gunicorn_app import TilecastApplication, gunicorn_options
from tilecast.servers import (
    APP_FACTORY,
    DEFAULT_SERVER,
    SERVERS,
    ServerOptions,
    app_threads,
    granian_kwargs,
    run_server,
)


def test_server_choice_on_the_command_line() -> None:
    parser = build_parser()
    assert parser.parse_args(["api"]).server == DEFAULT_SERVER == "granian"
    assert parser.parse_args(["api", "--server", "gunicorn"]).server == "gunicorn"
    assert parser.parse_args(["up", "--server", "gunicorn"]).server == "gunicorn"
    assert parser.parse_args(["up"]).server == DEFAULT_SERVER
    with pytest.raises(SystemExit):
        parser.parse_args(["api", "--server", "waitress"])
    assert set(SERVERS) == {"granian", "gunicorn"}


def test_bind_addresses() -> None:
    assert ServerOptions("127.0.0.1:8080", 1, 1).host_port == ("127.0.0.1", 8080)
    assert ServerOptions("[::1]:81", 1, 1).host_port == ("::1", 81)
    assert ServerOptions(":82", 1, 1).host_port == ("0.0.0.0", 82)
    for bad in ("localhost", "host:port", ""):
        with pytest.raises(BadRequest) as err:
            _ = ServerOptions(bad, 1, 1).host_port
        assert err.value.parameter == "bind"


def test_unknown_server_is_refused() -> None:
    with pytest.raises(BadRequest) as err:
        run_server("waitress", ServerOptions("127.0.0.1:1", 1, 1), Settings())
    assert err.value.parameter == "server"


def test_granian_gets_the_same_budget_as_gunicorn() -> None:
    settings = Settings(
        render_timeout=10, max_style_bytes=200_000, log_level="WARNING", max_waiting=100
    )
    kwargs = granian_kwargs(ServerOptions("0.0.0.0:9000", 3, 12), settings)
    assert kwargs["interface"] == Interfaces.WSGI
    assert kwargs["target"] == APP_FACTORY and kwargs["factory"] is True
    assert (kwargs["address"], kwargs["port"]) == ("0.0.0.0", 9000)
    assert kwargs["workers"] == 3
    # 12 threads for the work, and one more for each request that may wait for a render.
    assert kwargs["blocking_threads"] == 112
    assert app_threads(ServerOptions("0.0.0.0:9000", 3, 12), settings) == 112
    # Not bounded to the threads: granian's backpressure counts open connections.
    assert "backpressure" not in kwargs and int(kwargs["backlog"]) >= 1024  # type: ignore[call-overload]
    # Requests waiting for a render get the render timeout to finish on a graceful stop.
    assert kwargs["workers_kill_timeout"] == 15
    http1 = kwargs["http1_settings"]
    assert isinstance(http1, HTTP1Settings) and http1.keep_alive
    # The longest accepted style, percent-encoded, fits in the request head.
    assert http1.max_buffer_size >= 3 * 200_000
    gunicorn = gunicorn_options("0.0.0.0:9000", 3, 12, settings)
    assert (gunicorn["workers"], gunicorn["threads"]) == (3, 12)
    assert gunicorn["graceful_timeout"] == kwargs["workers_kill_timeout"]


def test_gunicorn_application_loads_the_named_factory() -> None:
    options = gunicorn_options("127.0.0.1:1", 1, 1, Settings())
    app = TilecastApplication(options, "tests.bench.bare_app:create_app")
    assert app.app_factory == "tests.bench.bare_app:create_app"
    assert TilecastApplication(options).app_factory == APP_FACTORY
