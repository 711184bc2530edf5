"""A task runs with the request id of the api request that sent it (Celery header)."""

from __future__ import annotations

import logging

import pytest

from tilecast.common.logs import TASK_HEADER, RequestIdFilter, current_request_id
from tilecast.workers import requestids  # noqa: F401  (connects the signals)
from tilecast.workers.celeryapp import app

seen: list[str | None] = []


@app.task(name="tests.requestids.probe")
def probe() -> None:
    seen.append(current_request_id())
    logging.getLogger("tests.requestids").info("inside the task")


def test_a_task_logs_with_the_id_it_was_sent_with(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    seen.clear()
    with caplog.at_level(logging.INFO, logger="tests.requestids"):
        sent = probe.apply(headers={TASK_HEADER: "req-42"})
        unsent = probe.apply()  # an old api, or the job driver: no id, nothing bound
    # Eager .apply() keeps a task's exception in its result rather than raising it.
    assert sent.successful() and unsent.successful()
    assert seen == ["req-42", None]
    ids = [getattr(r, "request_id", None) for r in caplog.records if r.name == "tests.requestids"]
    assert ids == ["req-42", None]
    assert current_request_id() is None  # unbound after the task
