"""A task's request id, bound while it runs, so that every line it logs carries it.

The api sends the id of the request that caused a task in the Celery header
``tilecast_request_id`` (common/logs.py); tasks sent without one (the job driver's
batches, tasks of older api versions) run unbound. Celery logs a task's "succeeded"
line between these two signals, so that line carries the id too.
"""

from __future__ import annotations

from contextvars import Token
from typing import Any

from celery.signals import task_postrun, task_prerun

from tilecast.common.logs import TASK_HEADER, bind_request_id, unbind_request_id

_tokens: dict[str, Token[str | None]] = {}


def request_id_of(task_request: Any) -> str | None:
    """The id in a task's request context: a message header becomes an attribute of it
    (a worker), or stays in ``headers`` (``apply`` in tests, eager runs)."""
    value = getattr(task_request, TASK_HEADER, None)
    if value is None:
        headers = getattr(task_request, "headers", None) or {}
        value = headers.get(TASK_HEADER) if isinstance(headers, dict) else None
    return str(value) if value else None


@task_prerun.connect
def _bind(task_id: str | None = None, task: Any = None, **_kwargs: Any) -> None:
    request_id = request_id_of(getattr(task, "request", None))
    if task_id and request_id:
        _tokens[task_id] = bind_request_id(request_id)


@task_postrun.connect
def _unbind(task_id: str | None = None, **_kwargs: Any) -> None:
    token = _tokens.pop(task_id, None) if task_id else None
    if token is not None:
        unbind_request_id(token)
