"""Per-request observability: the request id and the HTTP request counters.

Each request gets an id (the client's ``X-Request-Id`` when it is a sane one, else a new
one), bound for the request's log lines (common/logs.py) and the tasks it sends
(api/miss/tasks.py), and returned in the ``X-Request-Id`` response header. Every answer is
counted by method, route template and status class (``tilecast_http_requests_total``
in ``/metrics``); the count is a dict update in memory, flushed in the background
(common/counters.py BatchedCounters), so the hit path gains no Redis round trip.
"""

from __future__ import annotations

from flask import Flask, Response, g, request

from tilecast.api.openapi import path_template
from tilecast.common.counters import BatchedCounters, http_request_field
from tilecast.common.logs import (
    REQUEST_ID_HEADER,
    accept_request_id,
    bind_request_id,
    unbind_request_id,
)

# Any other method is counted as OTHER: clients must not be able to add label values.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def install(app: Flask, counters: BatchedCounters) -> None:
    @app.before_request
    def bind_id() -> None:
        g.request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.request_id_token = bind_request_id(g.request_id)

    @app.after_request
    def record(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        rule = request.url_rule
        route = path_template(rule.rule) if rule is not None else None
        method = request.method if request.method in KNOWN_METHODS else "OTHER"
        counters.add(http_request_field(method, response.status_code, route))
        return response

    @app.teardown_request
    def unbind_id(_error: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            unbind_request_id(token)
