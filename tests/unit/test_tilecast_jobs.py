"""``tilecast precache --wait`` output: a live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest

from tilecast import jobs_command as cli_jobs
from tilecast.common.jobspec import parse_job_request
from tilecast.common.jobstore import FINISHED, RUNNING, JobRecord
from tilecast.common.settings import Settings

METADATA = {"sizeX": 3000, "sizeY": 2000, "tileWidth": 256, "tileHeight": 256, "levels": 5}


def record(state: str, done: int, started: float = 1000.0) -> JobRecord:
    spec = parse_job_request("src", {}, METADATA, 1, Settings())
    return JobRecord(
        id="j1",
        spec=spec,
        state=state,
        created=started,
        total=129,
        batches=6,
        started=started,
        finished=None if state == RUNNING else started + 10,
        done=done,
        failed=1 if state == FINISHED else 0,
    )


class FakeStore:
    def __init__(self, records: list[JobRecord]) -> None:
        self.records = records

    def get(self, job_id: str) -> JobRecord:
        return self.records.pop(0) if len(self.records) > 1 else self.records[0]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli_jobs.time, "sleep", lambda _s: None)


def test_bar_on_a_terminal() -> None:
    out = Terminal()
    store = FakeStore([record(RUNNING, 40), record(RUNNING, 80), record(FINISHED, 128)])
    final = cli_jobs.follow(store, "j1", out)  # type: ignore[arg-type]
    assert final.state == FINISHED
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n")
    assert "[#########-" in text and "40/129" in text and "129/129" in text
    assert "tiles/s" in text and "ETA" in text and "1 failed" in text


def test_plain_lines_otherwise() -> None:
    out = io.StringIO()
    store = FakeStore([record(RUNNING, 40), record(FINISHED, 128)])
    cli_jobs.follow(store, "j1", out)  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("job j1 running: 40/129 tiles")
    assert lines[-1].startswith("job j1 finished: 129/129 tiles (0 skipped, 1 failed)")
    assert "12.9 tiles/s" in lines[-1]


def test_eta_formatting() -> None:
    assert cli_jobs._eta(None) == "--:--"
    assert cli_jobs._eta(75) == "01:15"
    assert cli_jobs._eta(3725) == "1:02:05"
    running = replace(record(RUNNING, 64), started=0.0)
    assert running.progress(now=64.0)["eta"] == 65.0
