"""The command line finds the stack ``tilecast up`` started (issue 13), with real processes.

A "fresh clone" here is a directory holding ``.venv`` (a link to this checkout's) and
some images, with no ``TILECAST_*`` variable set: ``tilecast up`` runs there as
``scripts/up`` runs it (``.venv/bin/tilecast up``), and the commands it prints are run
as printed, from a second "terminal" (another process, same or another directory).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests

from tests.conftest import REPO
from tilecast import procs, stackfile
from tilecast.common.localpaths import source_id_for_path
from tilecast.common.registry import SOURCES_KEY
from tilecast.redis_server import free_port

pytestmark = pytest.mark.integration

STACK_COMMANDS = ("add", "precache", "jobs", "stats")
UP_TIMEOUT = 60.0


@dataclass
class Up:
    """A running ``tilecast up`` in ``home`` and what it printed up to "tilecast is up"."""

    home: Path
    proc: subprocess.Popen[str]
    lines: list[str]
    children: set[int]

    def printed(self, first_word: str) -> str:
        """The command of the hint line that runs ``first_word`` (``add``, ``jobs``...)."""
        for line in self.lines:
            words = line.split()
            if len(words) > 1 and words[0].endswith("tilecast") and words[1] == first_word:
                return line.strip().split("  ")[0]
        raise AssertionError(f"up printed no `tilecast {first_word}` hint:\n" + self.text)

    def url(self, label: str) -> str:
        return next(line.split()[1] for line in self.lines if line.startswith(label + " "))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        deadline = time.monotonic() + 15
        while any(procs.alive(pid) for pid in self.children) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.children:  # a SIGKILLed up leaves its children to die with it
            if procs.alive(pid):
                os.kill(pid, signal.SIGKILL)


def clean_env(**extra: str) -> dict[str, str]:
    """A terminal with no TILECAST_* variable; this checkout's code in every process."""
    return procs.child_environment(
        {"PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **extra}, keep_tilecast=False
    )


def make_home(root: Path, images: dict[str, Path]) -> Path:
    """A fresh clone's point of view: .venv, an image to start with, and two more
    folders of images that are not yet allowed."""
    home = root / "clone"
    for folder, name in (("img", "deflate"), ("extra", "lzw"), ("elsewhere", "zstd")):
        (home / folder).mkdir(parents=True)
        shutil.copy(images[name], home / folder / f"{name}.tiff")
    shutil.copy(images["single"], home / "extra" / "single.tiff")
    (home / ".venv").symlink_to(REPO / ".venv")
    return home


def start_up(home: Path, *extra: str) -> Up:
    argv = [".venv/bin/tilecast", "up", "img/deflate.tiff", "--port", str(free_port())]
    argv += ["--concurrency", "1", "--api-workers", "1", *extra]
    proc = subprocess.Popen(
        argv, cwd=home, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    deadline = time.monotonic() + UP_TIMEOUT
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if "tilecast is up" in line:
            return Up(home, proc, lines, procs.descendants(proc.pid))
    proc.kill()
    proc.wait()
    raise AssertionError("tilecast up did not get ready:\n" + "\n".join(lines))


def run(command: str | list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    argv = shlex.split(command) if isinstance(command, str) else command
    return subprocess.run(
        argv, cwd=cwd, env=clean_env(**extra), capture_output=True, text=True, timeout=60
    )


def assert_one_line_refusal(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


def stack_redis(home: Path) -> redis.Redis:
    """A client of the Redis the stack in ``home`` records (every URL it passes names
    the same data here: sources live in the state Redis, the broker's or the cache's
    when only one is given)."""
    urls = json.loads((home / ".tilecast" / stackfile.STACK_FILE).read_text())["urls"]
    url = urls.get("TILECAST_STATE_URL") or urls["TILECAST_CACHE_URL"]
    return redis.Redis.from_url(url)


def keys_naming(client: redis.Redis, source_id: str) -> list[bytes]:
    found = list(client.scan_iter(match=f"*{source_id}*", count=1000))
    if client.hexists(SOURCES_KEY, source_id):
        found.append(SOURCES_KEY.encode())
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, images: dict[str, Path]) -> Iterator[Up]:
    """``tilecast up`` in a fresh clone, with ``extra/`` allowed by ``--root``."""
    home = make_home(tmp_path_factory.mktemp("quickstart"), images)
    up = start_up(home, "--root", "extra")
    try:
        yield up
    finally:
        up.stop()


def test_the_printed_commands_work_from_a_fresh_clone(stack: Up) -> None:
    """README's quick start: the hints up prints, run as printed (PATH and ID filled in),
    act on that stack: add, precache --wait, jobs, stats, and the printed URLs answer."""
    home = stack.home
    added = run(stack.printed("add").replace("PATH", "extra/lzw.tiff"), home)
    assert added.returncode == 0, added.stderr
    new_id = added.stdout.strip()
    assert new_id == source_id_for_path(os.path.realpath(home / "extra" / "lzw.tiff"))

    base = stack.url("index").rstrip("/")
    listed = requests.get(base + "/sources", timeout=10).json()
    assert new_id in {source["id"] for source in listed}  # the api of this stack knows it
    assert requests.get(f"{base}/item/{new_id}/tiles", timeout=30).json()["sizeX"] > 0

    precache = run(stack.printed("precache").replace("ID", new_id), home)
    assert precache.returncode == 0, precache.stderr
    job_id = precache.stdout.split()[1]
    assert "finished" in precache.stdout.splitlines()[-1]
    assert requests.get(f"{base}/jobs/{job_id}", timeout=10).json()["state"] == "finished"

    jobs = run(stack.printed("jobs"), home)
    assert jobs.returncode == 0, jobs.stderr
    assert job_id in jobs.stdout

    stats = run(stack.printed("stats"), home)
    assert stats.returncode == 0, stats.stderr
    assert "tiles rendered" in stats.stdout and "interactive nodes" in stats.stdout

    readme = (REPO / "README.md").read_text()
    for word in STACK_COMMANDS:  # the quick start shows the very commands up prints
        assert stack.printed(word) in readme, stack.printed(word)
    printed = [w[1] for w in map(str.split, stack.lines) if len(w) == 2 and "://" in w[1]]
    assert len(printed) == 4  # metadata, thumbnail, tile, viewer
    for url in [*printed, stack.url("index")]:  # every URL up printed answers
        assert requests.get(url, headers={"Accept": "text/html,*/*"}, timeout=60).ok, url


def test_another_directory_names_the_data_dir(stack: Up, tmp_path: Path) -> None:
    """From anywhere, ``--data-dir`` finds the stack: the CLI's jobs and stats are the
    api's jobs and the stack's workers."""
    data_dir = str(stack.home / ".tilecast")
    exe = str(stack.home / ".venv" / "bin" / "tilecast")
    jobs = run([exe, "jobs", "--json", "--data-dir", data_dir], tmp_path)
    assert jobs.returncode == 0, jobs.stderr
    base = stack.url("index").rstrip("/")
    api_jobs = requests.get(base + "/jobs", timeout=10).json()
    assert api_jobs and {j["id"] for j in json.loads(jobs.stdout)} == {j["id"] for j in api_jobs}
    stats = run([exe, "stats", "--json", "--data-dir", data_dir], tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["workers"].get("interactive", 0) >= 1
    # Nothing answers from the default data dir there: one line, not another Redis.
    assert_one_line_refusal(run([exe, "jobs"], tmp_path), "no tilecast up runs")
    signed = run([exe, "sign", "x", "--data-dir", data_dir], tmp_path,
                 TILECAST_ACCESS_MODE="signed",
                 TILECAST_SIGNING_KEYS="k:0123456789abcdef0123456789abcdef")  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    assert signed.stdout.startswith(base + "/viewer/x?")


def test_a_path_outside_the_roots_is_refused_and_nothing_is_stored(stack: Up) -> None:
    home = stack.home
    outside = home / "elsewhere" / "zstd.tiff"
    source_id = source_id_for_path(os.path.realpath(outside))
    refused = run(stack.printed("add").replace("PATH", str(outside)), home)
    assert_one_line_refusal(refused, "outside", "--root")
    base = stack.url("index").rstrip("/")
    answer = requests.post(base + "/sources", json={"path": str(outside)}, timeout=30)
    assert answer.status_code == 400 and answer.json()["parameter"] == "path"
    assert keys_naming(stack_redis(home), source_id) == []
    # The api of the stack takes a file below a --root directory.
    inside = home / "extra" / "single.tiff"
    answer = requests.post(base + "/sources", json={"path": str(inside)}, timeout=60)
    assert answer.status_code in (200, 201), answer.text
    assert answer.json()["id"] == source_id_for_path(os.path.realpath(inside))


def test_an_unreachable_redis_named_in_the_environment_is_one_line(stack: Up) -> None:
    """The environment wins over the state file; a Redis that does not answer is one
    line naming it, for every command."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    for argv in (["add", "extra/lzw.tiff"], ["precache", "x"], ["jobs"], ["stats"]):
        roots = str(stack.home / "extra")
        done = run(
            [".venv/bin/tilecast", *argv],
            stack.home,
            TILECAST_CACHE_URL=url,
            TILECAST_SOURCE_ROOTS=roots,
        )
        assert_one_line_refusal(done, "Redis is unreachable", "TILECAST_")


def test_stopped_killed_and_widened_stacks(tmp_path: Path, images: dict[str, Path]) -> None:
    """After up stops, and after up is killed (its state file stale), every command says
    so in one line; a path refused by one up is let in by an up started with --root."""
    home = make_home(tmp_path, images)
    exe = ".venv/bin/tilecast"
    argvs = [["add", "extra/lzw.tiff"], ["precache", "x", "--wait"], ["jobs"], ["stats"]]
    for argv in argvs:  # nothing ever ran here
        assert_one_line_refusal(run([exe, *argv], home), "no tilecast up runs")

    up = start_up(home)
    try:
        extra_id = source_id_for_path(os.path.realpath(home / "extra" / "lzw.tiff"))
        assert_one_line_refusal(run([exe, "add", "extra/lzw.tiff"], home), "outside")
        assert keys_naming(stack_redis(home), extra_id) == []
    finally:
        up.stop()
    assert not (home / ".tilecast" / stackfile.STACK_FILE).exists()
    for argv in argvs:
        assert_one_line_refusal(run([exe, *argv], home), "no tilecast up runs")

    up = start_up(home, "--root", "extra")
    try:
        added = run([exe, "add", "extra/lzw.tiff"], home)
        assert added.returncode == 0 and added.stdout.strip() == extra_id, added.stderr
        up.stop(signal.SIGKILL)  # the state file stays behind, naming a dead pid
    finally:
        up.stop()
    assert (home / ".tilecast" / stackfile.STACK_FILE).exists()
    for argv in argvs:
        assert_one_line_refusal(run([exe, *argv], home), "stale", str(up.proc.pid))
