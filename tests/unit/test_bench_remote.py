"""The remote benchmark's bookkeeping: Girder's access log read into requests and bytes,
tilecast's look-ups of the item and its file counted, and each read path checked to have
read the way it claims."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.bench_remote import (
    Fetched,
    GirderLog,
    Samples,
    check_read_paths,
    fetched_cell,
    level_count,
)
from tests.bench.harness import BenchError
from tests.bench.remote_setup import GirderItem

FILE = "6b0d1472869ba799343d9143"
ITEM = "6b0d1472869ba799343d9142"


def _line(path: str, status: int, size: int) -> str:
    return (
        "INFO:cherrypy.access.1:127.0.0.1 - - [30/Nov/2026:06:15:19] "
        f'"GET /api/v1/{path} HTTP/1.1" {status} {size} "" "python-requests/2.34.2"\n'
    )


def test_the_log_counts_only_this_files_downloads_since_the_mark(tmp_path: Path) -> None:
    log_path = tmp_path / "girder.log"
    log_path.write_text(_line(f"file/{FILE}/download", 206, 999))
    log = GirderLog(log_path, GirderItem(ITEM, FILE, "token"), settle=0)
    log.mark()
    with log_path.open("a") as out:
        out.write(_line(f"item/{ITEM}", 200, 392))
        out.write(_line(f"item/{ITEM}/files?limit=0", 200, 332))
        out.write(_line(f"file/{FILE}/download", 206, 524288))
        out.write(_line("file/ffffffffffffffffffffffff/download", 206, 7))
        out.write(_line("item/ffffffffffffffffffffffff", 200, 392))
        out.write(_line(f"file/{FILE}/download", 200, 1095497166))
    expected = Fetched(requests=2, bytes=524288 + 1095497166, whole_files=1, lookups=2)
    assert log.since_mark() == expected
    assert log.since_mark() == Fetched()


def test_read_paths_that_did_not_read_as_claimed_fail() -> None:
    good = Samples()
    good.add("range:native", 0.4, Fetched(9, 4 * 1024**2))
    good.add("range:second", 0.03, Fetched(0, 0))  # its block may already be cached
    good.add("path:native", 0.3, Fetched())
    good.add("download:transfer", 4.0, Fetched(1, 10, whole_files=1))
    check_read_paths(good)
    for name, fetched in (
        ("range:native", Fetched(1, 10, whole_files=1)),
        ("range:overview", Fetched()),
        ("other:alone", Fetched(1, 10, whole_files=1)),
        ("path:native", Fetched(1, 524288)),
        ("download:transfer", Fetched(3, 30)),
    ):
        bad = Samples()
        bad.add(name, 1.0, fetched)
        with pytest.raises(BenchError):
            check_read_paths(bad)


def test_fetched_cells_show_the_median_and_the_range() -> None:
    same = [Fetched(9, 4 * 1024**2, lookups=1)] * 3
    assert fetched_cell(same) == "4.00 MiB in 9 requests + 1 look-up"
    varied = [Fetched(1, 1024**2), Fetched(2, 2 * 1024**2, lookups=3), Fetched(1, 1024**2)]
    assert fetched_cell(varied) == ("1.00 MiB (1.00 MiB-2.00 MiB) in 1-2 requests + 0-3 look-ups")


def test_level_count_matches_a_libvips_pyramid() -> None:
    assert level_count(47104, 40960) == 9  # 47104 x 40960 down to 184 x 160
    assert level_count(256, 256) == 1
    assert level_count(257, 10) == 2
