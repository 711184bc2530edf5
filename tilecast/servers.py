"""The HTTP servers ``tilecast api`` can run the Flask app under, chosen by name.

``granian`` (the default) is a Rust HTTP server: its event loop parses HTTP and holds
keep-alive connections outside the GIL, and a pool of Python threads per worker process
runs the WSGI app, so a request that waits for a render blocks one of those threads and
nothing else -- the same model as gunicorn's ``gthread`` (``gunicorn``, kept as an
option), with less Python per request. ``docs/BENCHMARKS.md`` compares the two.

Both get the same budget: ``workers`` processes of ``threads`` + ``TILECAST_MAX_WAITING``
app threads each (:func:`app_threads`), the app built once per process after the fork
(so every process has its own Redis connections and completion listener), a graceful
stop on SIGTERM that lets requests waiting for a render finish (up to the render
timeout), HTTP/1.1 keep-alive. A request that waits for a render holds an app thread
for as long (WSGI has no other way to wait); at most ``TILECAST_MAX_WAITING`` of them
wait at once per process (api/miss/waitslots.py, a 503 past it), so ``threads`` threads
always remain for hits and everything else, which would otherwise queue behind the
waits. Both servers start threads as requests need them (granian also ends those idle
for ``blocking_threads_idle_timeout``), so the extra threads cost nothing until renders
are waited for; idle keep-alive connections hold no thread under either server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from tilecast.common.errors import BadRequest
from tilecast.common.settings import Settings

SERVERS = ("granian", "gunicorn")
DEFAULT_SERVER = "granian"

# The app every process builds: a factory, called once per worker process.
APP_FACTORY = "tilecast.api.app:create_app"

# Extra seconds granted past the render timeout before a stopping worker is killed.
GRACE_SECONDS = 5
# Pending connections the listening socket holds; granian serves at most this many open
# connections at once, shared out over its processes.
BACKLOG = 2048


@dataclass(frozen=True)
class ServerOptions:
    """What every server is given; the same for both so that they compare fairly."""

    bind: str  # HOST:PORT
    workers: int  # processes
    threads: int  # app threads per process
    app_factory: str = APP_FACTORY  # "module:function" returning the WSGI app
    proc_name: str = "tilecast-api"  # gunicorn's process title (granian has none here)

    @property
    def host_port(self) -> tuple[str, int]:
        host, sep, port = self.bind.rpartition(":")
        if not sep or not port.isdigit():
            raise BadRequest(f"--bind must be HOST:PORT, not {self.bind!r}", parameter="bind")
        return host.strip("[]") or "0.0.0.0", int(port)


def app_threads(options: ServerOptions, settings: Settings) -> int:
    """App threads per process: ``threads`` for the work, plus one per request that may
    wait for a render at once."""
    return options.threads + settings.max_waiting


def run_server(name: str, options: ServerOptions, settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT, under the server called ``name``."""
    runners: dict[str, Callable[[ServerOptions, Settings], None]] = {
        "granian": run_granian,
        "gunicorn": run_gunicorn,
    }
    if name not in runners:
        raise BadRequest(f"unknown server {name!r}; choose from {SERVERS}", parameter="server")
    runners[name](options, settings)


def run_gunicorn(options: ServerOptions, settings: Settings) -> None:
    from tilecast.gunicorn_app import TilecastApplication, gunicorn_options

    threads = app_threads(options, settings)
    config = gunicorn_options(options.bind, options.workers, threads, settings)
    config["proc_name"] = options.proc_name
    TilecastApplication(config, options.app_factory).run()


def granian_kwargs(options: ServerOptions, settings: Settings) -> dict[str, object]:
    """The keyword arguments of ``granian.server.Server`` for ``options``."""
    from granian.constants import Interfaces, Loops, RuntimeModes
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    from tilecast.common.logs import dictconfig_formatters

    host, port = options.host_port
    level = settings.log_level.lower()
    return {
        "target": options.app_factory,
        "factory": True,
        "address": host,
        "port": port,
        "interface": Interfaces.WSGI,
        "workers": options.workers,
        # The Python threads that run the app: a request waiting for a render holds one,
        # and up to TILECAST_MAX_WAITING of them wait at once beside ``threads`` others.
        "blocking_threads": app_threads(options, settings),
        # One Rust event-loop thread per process parses HTTP and holds idle keep-alive
        # connections; the app threads do the rest.
        "runtime_threads": 1,
        "runtime_mode": RuntimeModes.st,
        "loop": Loops.asyncio,
        # granian's backpressure bounds *connections* per process (each keep-alive
        # connection holds a permit while open, idle or not), not requests: bounded to
        # the thread count, a viewer's idle keep-alive connections would lock every other
        # client out. It stays at granian's default (the backlog shared out over the
        # processes); requests beyond the app threads queue for a thread, as in gunicorn
        # gthread (whose ``worker_connections`` is the same kind of bound).
        "backlog": BACKLOG,
        # A style rides in the query string: room for the longest accepted one,
        # percent-encoded, so that an oversized style gets tilecast's JSON 400.
        "http1_settings": HTTP1Settings(
            max_buffer_size=max(HTTP1Settings.max_buffer_size, 3 * settings.max_style_bytes + 8192)
        ),
        "log_enabled": True,
        "log_level": LogLevels(level) if level in LogLevels.__members__ else LogLevels.info,
        "log_access": False,
        # granian's own lines in TILECAST_LOG_FORMAT too (common/logs.py).
        "log_dictconfig": {
            "formatters": dictconfig_formatters(settings.log_format, ("generic", "access"))
        },
        # Requests waiting for a render may finish on a graceful stop, then the kill.
        "workers_kill_timeout": int(settings.render_timeout) + GRACE_SECONDS,
        "respawn_failed_workers": True,
        "websockets": False,
    }


class _DropThreadCountWarning(logging.Filter):
    """granian warns when app threads outnumber twice the cores; here most of them wait
    (for renders), which is why there are that many: the warning would only mislead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Python threads" not in record.getMessage()


def run_granian(options: ServerOptions, settings: Settings) -> None:
    from granian.server import Server

    server = Server(**granian_kwargs(options, settings))  # type: ignore[arg-type]
    logging.getLogger("_granian").addFilter(_DropThreadCountWarning())
    server.serve()
