"""``tilecast api --server gunicorn``: the Flask app under gunicorn, in-process (no shell
command line). ``tilecast.servers`` chooses between this and granian."""

from __future__ import annotations

import importlib
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from tilecast.common.logs import dictconfig_formatters
from tilecast.common.settings import Settings
from tilecast.servers import APP_FACTORY

# gunicorn caps a finite request-line limit at 8190 bytes; 0 means "no limit".
GUNICORN_MAX_REQUEST_LINE = 8190


class TilecastApplication(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any], app_factory: str = APP_FACTORY) -> None:
        self.options = options
        self.app_factory = app_factory  # "module:function", called in each worker
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            # Settings newer than the installed gunicorn are skipped, not fatal.
            if name in self.cfg.settings:
                self.cfg.set(name, value)

    def load(self) -> Flask:
        # Imported here, in each worker after the fork, so that every process gets its
        # own Redis connections and completion listener thread.
        module, _, function = self.app_factory.partition(":")
        app: Flask = getattr(importlib.import_module(module), function)()
        return app


def gunicorn_options(bind: str, workers: int, threads: int, settings: Settings) -> dict[str, Any]:
    return {
        "bind": bind,
        "workers": workers,
        # Requests of a miss wait (mostly idle) for a render: threads, not processes, wait.
        "worker_class": "gthread",
        "threads": threads,
        # Let waiting requests finish their render wait on a graceful stop.
        "graceful_timeout": int(settings.render_timeout) + 5,
        "limit_request_line": request_line_limit(settings.max_style_bytes),
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        # gunicorn's lines (and, as its dictConfig takes the root logger, the app's) in
        # TILECAST_LOG_FORMAT, on stderr like every other process's (common/logs.py).
        "logconfig_dict": {
            "root": {"level": settings.log_level.upper(), "handlers": ["error_console"]},
            "loggers": {
                "gunicorn.error": {"level": settings.log_level.upper(), "propagate": True},
                # A logging config turns gunicorn's access log on: keep it off, as without.
                "gunicorn.access": {"level": "WARNING", "propagate": False},
            },
            "formatters": dictconfig_formatters(settings.log_format, ("generic",)),
        },
        "proc_name": "tilecast-api",
        # gunicorn >= 25 opens a control socket at one per-user path: several api
        # processes on a host (tests, `tilecast up` beside a service) would clobber it.
        "control_socket_disable": True,
    }


def request_line_limit(max_style_bytes: int) -> int:
    """A request line long enough for the longest accepted style, percent-encoded (up to
    3 bytes per byte), so that an oversized style gets tilecast's JSON 400 naming the
    parameter instead of gunicorn's plain-text one. Beyond gunicorn's cap only
    "unlimited" (0) is left; the style bound still applies in the app."""
    needed = 3 * max_style_bytes + 1024
    return needed if needed <= GUNICORN_MAX_REQUEST_LINE else 0
