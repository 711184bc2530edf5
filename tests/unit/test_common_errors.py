"""Errors cross the task boundary as payloads and come back as the same class."""

from __future__ import annotations

import pytest

from tilecast.common import errors
from tilecast.common.errors import TilecastError, error_from_payload


def all_error_classes() -> list[type[TilecastError]]:
    found: list[type[TilecastError]] = []
    pending: list[type[TilecastError]] = [TilecastError]
    while pending:
        cls = pending.pop()
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


def test_unknown_codes_become_render_failed() -> None:
    rebuilt = error_from_payload({"error": "no_such_code", "message": "m"})
    assert isinstance(rebuilt, errors.RenderFailed) and rebuilt.status == 502


def test_statuses() -> None:
    assert errors.BadRequest.status == errors.SourceRefused.status == 400
    assert errors.UnknownSource.status == errors.TileOutOfRange.status == 404
    assert errors.UnsupportedImage.status == 422
    assert errors.ServiceUnavailable.status == 503 and errors.RenderTimeout.status == 504
    assert "parameter" not in errors.NotFound("x").to_payload()
