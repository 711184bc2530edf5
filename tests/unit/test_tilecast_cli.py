"""The command line's pieces that run without a worker: parsing, options, processes."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import redis

from tilecast import procs
from tilecast.cli import build_parser
from tilecast.common.settings import Settings
from tilecast.gunicorn_app import gunicorn_options, request_line_limit
from tilecast.redis_server import RedisServer
from tilecast.worker import node_queues, parse_queues, worker_argv


def test_parser_commands() -> None:
    parser = build_parser()
    up = parser.parse_args(["up", "a.tiff", "b.tiff", "--port", "9000", "--data-dir", "/d"])
    assert (up.images, up.port, up.data_dir) == (["a.tiff", "b.tiff"], 9000, Path("/d"))
    api = parser.parse_args(["api", "--bind", "0.0.0.0:1", "--workers", "3", "--threads", "4"])
    assert (api.bind, api.workers, api.threads) == ("0.0.0.0:1", 3, 4)
    worker = parser.parse_args(["worker", "--queues", "bulk", "--concurrency", "2"])
    assert (worker.queues, worker.concurrency) == ("bulk", 2)
    assert parser.parse_args(["add", "/x.tiff"]).path == "/x.tiff"
    with pytest.raises(SystemExit):
        parser.parse_args([])


def test_worker_argv() -> None:
    assert parse_queues("interactive, bulk") == ["interactive", "bulk"]
    with pytest.raises(SystemExit):
        parse_queues("fast")
    node = "interactive-1@h"
    argv = worker_argv(node_queues("interactive", node), node, 3, "INFO")
    assert argv[:5] == [
        "worker",
        "--queues=interactive.interactive-1@h,interactive",  # its own queue first
        "--concurrency=3",
        "--loglevel=INFO",
        "--hostname=interactive-1@h",
    ]
    assert node_queues("bulk", "bulk-2@h") == ["bulk"]


def test_gunicorn_options() -> None:
    options = gunicorn_options("127.0.0.1:1", 2, 8, Settings(render_timeout=10))
    assert options["worker_class"] == "gthread" and options["threads"] == 8
    assert options["graceful_timeout"] == 15
    # The default 16 KiB style does not fit gunicorn's finite cap: unlimited, bound in-app.
    assert request_line_limit(16 * 1024) == 0
    assert request_line_limit(1000) == 4024


def test_redis_server_policy(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", maxmemory="64mb")
    url = server.start()
    try:
        client = redis.Redis.from_url(url)
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
        assert server.port != 6379
    finally:
        server.stop()
    assert server.proc is None


def test_a_persistent_redis_keeps_the_state_across_a_restart(tmp_path: Path) -> None:
    """What ``tilecast up`` runs: registrations, generations and jobs survive a restart
    of its Redis (an append-only file in its data folder)."""
    from tilecast.common.keys import JOBS_KEY
    from tilecast.common.registry import SOURCES_KEY, generation_key

    server = RedisServer(tmp_path / "redis", maxmemory="64mb", persistent=True)
    url = server.start()
    try:
        client = redis.Redis.from_url(url)
        client.hset(SOURCES_KEY, "abc", "{}")
        client.set(generation_key("abc"), 3)
        client.zadd(JOBS_KEY, {"job-1": 1.0})
        client.close()
        time.sleep(1.2)  # appendfsync everysec
    finally:
        server.stop()
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        assert client.hget(SOURCES_KEY, "abc") == b"{}"
        assert client.get(generation_key("abc")) == b"3"
        assert client.zscore(JOBS_KEY, "job-1") == 1.0
        client.close()
    finally:
        server.stop()


def test_spawn_and_stop_whole_group(tmp_path: Path) -> None:
    # A parent that forks a child which ignores SIGTERM: both must be gone after stop().
    script = (
        "import os, signal, time\n"
        "if os.fork() == 0:\n"
        "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "    time.sleep(60)\n"
        "else:\n"
        "    time.sleep(60)\n"
    )
    proc = procs.spawn([sys.executable, "-c", script], log=tmp_path / "log")
    deadline = time.monotonic() + 5
    while len(procs.descendants(os.getpid()) & ({proc.pid} | procs.descendants(proc.pid))) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    family = {proc.pid} | procs.descendants(proc.pid)
    assert os.getpgid(proc.pid) == proc.pid  # its own group
    procs.stop(proc, timeout=1)
    assert not any(procs.alive(pid) for pid in family)
    assert not procs.group_alive(proc.pid)


def test_child_environment_can_drop_tilecast_variables() -> None:
    env = procs.child_environment({"TILECAST_X": "1"}, keep_tilecast=False)
    assert env["TILECAST_X"] == "1"
    assert all(not k.startswith("TILECAST_") or k == "TILECAST_X" for k in env)
    assert "PATH" in env


def test_an_unusable_setting_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tilecast.cli import main
    from tilecast.common.settings import get_settings

    monkeypatch.setenv("TILECAST_ACCESS_MODE", "bogus")
    get_settings.cache_clear()
    try:
        assert main(["stats"]) == 2
    finally:
        get_settings.cache_clear()
    assert "TILECAST_ACCESS_MODE='bogus'" in capsys.readouterr().err


def test_up_runs_a_cache_and_a_state_redis(tmp_path: Path) -> None:
    """The cache role evicts any key (LRU) and keeps nothing on disk; the state role
    never evicts and keeps an append-only file."""
    cache = RedisServer.cache(tmp_path / "cache", "32mb")
    state = RedisServer.state(tmp_path / "state")
    try:
        for server, policy, aof in ((cache, "allkeys-lru", "no"), (state, "noeviction", "yes")):
            client = redis.Redis.from_url(server.start())
            assert client.config_get("maxmemory-policy")["maxmemory-policy"] == policy
            assert client.config_get("appendonly")["appendonly"] == aof
            client.close()
        port = state.port
        assert state.proc is not None
        state.proc.kill()
        state.proc.wait()
        state.restart()  # on the port its clients know
        assert state.port == port and redis.Redis.from_url(state.url).ping()
    finally:
        cache.stop()
        state.stop()
