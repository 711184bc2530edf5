"""The Girder plugin's pure parts (deploy/girder-plugin): which files are images, the
levels setting, and the background notifier's order, merging and retries."""

from __future__ import annotations

import logging
import threading

import pytest
from tilecast_girder.notifier import Call, Notifier, Outcome
from tilecast_girder.rules import looks_like_image, normalize_levels, parse_bool, parse_levels


@pytest.mark.parametrize(
    ("name", "mime", "expected"),
    [
        ("slide.svs", None, True),
        ("SLIDE.NDPI", "application/octet-stream", True),
        ("cells.ome.tiff", None, True),
        ("photo.JPG", None, True),
        ("scan", "image/tiff", True),
        ("scan", "image/jpeg; charset=binary", True),
        ("notes.txt", "text/plain", False),
        ("archive.tiff.zip", None, False),
        (None, None, False),
        ("drawing.svg", "image/svg+xml", False),
    ],
)
def test_looks_like_image(name: str | None, mime: str | None, expected: bool) -> None:
    assert looks_like_image(name, mime) is expected


def test_levels_are_ranges_and_lists() -> None:
    assert parse_levels("0-3") == [0, 1, 2, 3]
    assert parse_levels("0,1,2") == [0, 1, 2]
    assert parse_levels(" 4, 0-1 ,1") == [0, 1, 4]
    assert normalize_levels(" 0, 2-3 ") == "0,2-3"


@pytest.mark.parametrize("bad", ["", " , ", "x", "1-", "-1", "3-1", "0-41", "1.5", "0;1"])
def test_bad_levels_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"tilecast\.levels"):
        parse_levels(bad)


def test_booleans() -> None:
    assert parse_bool(True) is True
    assert parse_bool("false") is False
    assert parse_bool("ON") is True
    with pytest.raises(ValueError):
        parse_bool("maybe")


class FakeTilecast:
    """A transport that records calls and answers from a script; ``gate`` holds every
    call until released, so tests can queue calls behind a busy one."""

    def __init__(self, *answers: int) -> None:
        self.answers = list(answers)
        self.calls: list[Call] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, call: Call, timeout: float) -> Outcome:
        self.gate.wait(10)
        self.calls.append(call)
        return Outcome(self.answers.pop(0) if self.answers else 201)


def _notifier(fake: FakeTilecast, lanes: int = 1) -> Notifier:
    return Notifier(logging.getLogger("test.tilecast"), lanes=lanes, backoff=0, transport=fake)


def _call(method: str, item: str, file: str = "f") -> Call:
    body = {"fileId": file} if method == "POST" else None
    return Call(method, f"http://tc/girder/items/{item}", "s", item, body)


def test_calls_about_one_item_keep_their_order_and_queued_duplicates_merge() -> None:
    fake = FakeTilecast()
    notifier = _notifier(fake)
    fake.gate.clear()
    notifier.submit(_call("POST", "busy"))  # taken by the lane, held at the gate
    for call in (
        _call("POST", "a", "1"),
        _call("POST", "a", "2"),  # merged into the queued POST: the newer body wins
        _call("DELETE", "a"),
        _call("DELETE", "a"),  # merged
        _call("POST", "a", "3"),  # after a DELETE: kept, in order
    ):
        notifier.submit(call)
    fake.gate.set()
    assert notifier.wait_idle(10)
    seen = [(c.item_id, c.method, (c.body or {}).get("fileId")) for c in fake.calls]
    assert seen == [
        ("busy", "POST", "f"),
        ("a", "POST", "2"),
        ("a", "DELETE", None),
        ("a", "POST", "3"),
    ]


def test_server_errors_and_silence_are_retried_refusals_are_not(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeTilecast(503, 0, 201, 401, 502, 502, 502)
    notifier = _notifier(fake)
    with caplog.at_level(logging.INFO, logger="test.tilecast"):
        for item in ("retried", "refused", "failing"):
            notifier.submit(_call("POST", item))
        assert notifier.wait_idle(10)
    assert [c.item_id for c in fake.calls] == ["retried"] * 3 + ["refused"] + ["failing"] * 3
    assert "refused the shared secret" in caplog.text
    assert "failed after 3 attempt(s): 502" in caplog.text


def test_lanes_spread_items_and_wait_idle_times_out_while_busy() -> None:
    fake = FakeTilecast()
    notifier = _notifier(fake, lanes=4)
    fake.gate.clear()
    notifier.submit(_call("POST", "held"))
    assert not notifier.wait_idle(0.05)
    fake.gate.set()
    for n in range(20):
        notifier.submit(_call("POST", f"item-{n}"))
    assert notifier.wait_idle(10)
    assert len(fake.calls) == 21
