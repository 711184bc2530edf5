"""Errors cross the task boundary as payloads and come back as the same class."""

from __future__ import annotations

import pytest

from tilecast.common import errors
from tilecast.common.errors import TilecastError, error_from_payload


def all_error_classes() -> list[type[TilecastError]]:
    """The wire vocabulary: the classes of tilecast.common.errors. Subclasses elsewhere
    (workers/girder/remote.py's RangeNotSupported) keep their parent's code and cross
    as that parent; which of them are loaded depends on which tests were collected
    first, so they are not listed here (test_subclasses_cross_as_their_code's class)."""
    found: list[type[TilecastError]] = []
    pending: list[type[TilecastError]] = [TilecastError]
    while pending:
        cls = pending.pop()
        if cls.__module__ == errors.__name__:
            found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", all_error_classes(), ids=lambda c: c.__name__)
def test_round_trip(cls: type[TilecastError]) -> None:
    original = cls("what happened", parameter="p")
    rebuilt = error_from_payload(original.to_payload())
    assert type(rebuilt) is cls
    assert (rebuilt.message, rebuilt.parameter, rebuilt.status) == (
        "what happened",
        "p",
        cls.status,
    )


def test_subclasses_cross_as_their_code() -> None:
    class Refinement(errors.GirderUnavailable):
        """A worker-side refinement without a code of its own."""

    rebuilt = error_from_payload(Refinement("m").to_payload())
    assert type(rebuilt) is errors.GirderUnavailable and rebuilt.message == "m"


def test_every_code_names_one_class() -> None:
    codes = [cls.code for cls in all_error_classes()]
    assert len(codes) == len(set(codes))


def test_unknown_codes_become_render_failed() -> None:
    rebuilt = error_from_payload({"error": "no_such_code", "message": "m"})
    assert isinstance(rebuilt, errors.RenderFailed) and rebuilt.status == 502


def test_statuses() -> None:
    assert errors.BadRequest.status == errors.SourceRefused.status == 400
    assert errors.UnknownSource.status == errors.TileOutOfRange.status == 404
    assert errors.UnsupportedImage.status == 422
    assert errors.ServiceUnavailable.status == 503 and errors.RenderTimeout.status == 504
    assert "parameter" not in errors.NotFound("x").to_payload()


def test_a_task_error_payload_carries_the_instance_retry_after() -> None:
    throttled = errors.RemoteThrottled("slow down")
    throttled.retry_after = 7  # the store's Retry-After, set by the worker
    payload = errors.task_error_payload(throttled)
    assert payload == {"error": "remote_throttled", "message": "slow down", "retry_after": 7}
    assert "retry_after" not in errors.task_error_payload(errors.NotFound("x"))
    # The response body a client sees is unchanged.
    assert "retry_after" not in throttled.to_payload()
