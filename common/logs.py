"""Log lines of every tilecast process, and the request id that ties them together.

``TILECAST_LOG_FORMAT=text`` (the default) writes one readable line per record;
``json`` writes one JSON object per line: ``time`` (UTC, ISO 8601), ``level``,
``logger``, ``message``, ``process``, ``request_id`` when one is bound, ``exception``
(the formatted traceback) when there is one.

The api binds a request id to each request (an incoming ``X-Request-Id`` when it is a
sane one, else a new one) and sends it with every task in the Celery header
``tilecast_request_id``; a worker binds it while the task runs (workers/requestids.py),
so the api's and the workers' lines of one request share it. The id lives in a context
variable: a thread (or task) sees only its own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any, TextIO

REQUEST_ID_HEADER = "X-Request-Id"
# The Celery message header carrying the id from the api to a worker.
TASK_HEADER = "tilecast_request_id"
# What an incoming id may look like: ids of proxies and tracing systems (UUIDs, hex,
# base64), never anything that could forge a log line or a header.
_SANE_ID = re.compile(r"[A-Za-z0-9._:+/=@-]{1,128}")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_request_id: ContextVar[str | None] = ContextVar("tilecast_request_id", default=None)


def current_request_id() -> str | None:
    return _request_id.get()


def bind_request_id(value: str | None) -> Token[str | None]:
    return _request_id.set(value)


def unbind_request_id(token: Token[str | None]) -> None:
    _request_id.reset(token)


@contextmanager
def request_id_bound(value: str | None) -> Iterator[None]:
    token = bind_request_id(value)
    try:
        yield
    finally:
        unbind_request_id(token)


def new_request_id() -> str:
    # 128 random bits as 32 hex digits (a uuid4's shape, at a tenth of uuid4's cost: this
    # runs on every request without an id of its own).
    return os.urandom(16).hex()


def accept_request_id(raw: str | None) -> str:
    """A client's id when it is sane, else a new one."""
    if raw and _SANE_ID.fullmatch(raw):
        return raw
    return new_request_id()


class RequestIdFilter(logging.Filter):
    """Puts the bound request id on every record (``None`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        request_id = getattr(record, "request_id", None) or _request_id.get()
        if request_id:
            body["request_id"] = request_id
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            body["exception"] = record.exc_text
        if record.stack_info:
            body["stack"] = self.formatStack(record.stack_info)
        return json.dumps(body, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic line, with ``[request_id=...]`` after the message when one is bound."""

    def __init__(self, fmt: str = TEXT_FORMAT, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        request_id = getattr(record, "request_id", None) or _request_id.get()
        return f"{line} [request_id={request_id}]" if request_id else line


def make_formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(level: str, log_format: str, stream: TextIO | None = None) -> None:
    """The root logger of this process: one stream handler (stderr by default) in
    ``log_format``; the handlers it had are replaced."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Library warnings (Celery's, say) as log lines too, rather than raw text on stderr.
    logging.captureWarnings(log_format == "json")


def dictconfig_formatters(log_format: str, names: tuple[str, ...]) -> dict[str, Any]:
    """``formatters`` for a logging dictConfig (granian's, gunicorn's) that formats as
    tilecast's own lines: the HTTP servers' lines end up in the same format."""
    factory = (
        "tilecast.common.logs.JsonFormatter"
        if log_format == "json"
        else "tilecast.common.logs.TextFormatter"
    )
    return {name: {"()": factory} for name in names}
