"""common/logs.py: the JSON and text line formats and the request id binding."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from tilecast.common.logs import (
    JsonFormatter,
    accept_request_id,
    configure_logging,
    current_request_id,
    request_id_bound,
)


@pytest.fixture
def restored_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


def _lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_time_level_logger_message_and_request_id(restored_root: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    log = logging.getLogger("tilecast.test")
    with request_id_bound("req-1"):
        log.info("rendered %s", "tile")
    log.info("outside")
    log.debug("below the level")
    first, second = (json.loads(line) for line in _lines(stream))
    assert first["message"] == "rendered tile"
    assert first["level"] == "INFO" and first["logger"] == "tilecast.test"
    assert first["request_id"] == "req-1"
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert "request_id" not in second


def test_json_lines_carry_the_exception(restored_root: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    try:
        raise ValueError('bad "quote"\nand a newline')
    except ValueError:
        logging.getLogger("x").exception("failed")
    (line,) = _lines(stream)  # one line, whatever the message holds
    record = json.loads(line)
    assert record["message"] == "failed"
    assert "ValueError" in record["exception"] and "Traceback" in record["exception"]


def test_text_lines_add_the_request_id_when_bound(restored_root: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", "text", stream)
    with request_id_bound("abc"):
        logging.getLogger("t").warning("hello")
    logging.getLogger("t").warning("plain")
    first, second = _lines(stream)
    assert first.endswith("WARNING t: hello [request_id=abc]")
    assert second.endswith("WARNING t: plain")


def test_formatter_reads_an_explicit_request_id() -> None:
    record = logging.LogRecord("n", logging.INFO, __file__, 1, "m", None, None)
    record.request_id = "given"
    assert json.loads(JsonFormatter().format(record))["request_id"] == "given"


def test_incoming_ids_are_kept_only_when_sane() -> None:
    assert accept_request_id("0af7651916cd43dd8448eb211c80319c") == (
        "0af7651916cd43dd8448eb211c80319c"
    )
    for bad in (None, "", "a b", "x" * 200, "evil\nline", 'quo"te'):
        fresh = accept_request_id(bad)
        assert fresh != bad and len(fresh) == 32


def test_binding_is_scoped() -> None:
    assert current_request_id() is None
    with request_id_bound("outer"):
        with request_id_bound("inner"):
            assert current_request_id() == "inner"
        assert current_request_id() == "outer"
    assert current_request_id() is None
