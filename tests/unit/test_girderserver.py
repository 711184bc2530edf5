"""The Girder test harness's own small rules (tests/girderserver.py)."""

from __future__ import annotations

from tests.girderserver import _with_database


def test_a_real_mongodb_gets_a_database_of_its_own() -> None:
    assert _with_database("mongodb://db:27017", "girder_1") == "mongodb://db:27017/girder_1"
    assert _with_database("mongodb://u:p@db/other?authSource=admin", "g") == (
        "mongodb://u:p@db/g?authSource=admin"
    )
