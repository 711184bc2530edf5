"""The state file ``tilecast up`` leaves for the command line (tilecast/stackfile.py), and
the command line's one-line answers when it finds no stack (no Redis is started here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tilecast import cli, stackfile
from tilecast.common.errors import ConfigurationError
from tilecast.common.metrics import Snapshot
from tilecast.common.settings import Settings
from tilecast.redis_server import free_port
from tilecast.stats_command import human

UP_ENV = {
    "TILECAST_CACHE_URL": "redis://127.0.0.1:7001/0",
    "TILECAST_STATE_URL": "redis://127.0.0.1:7002/0",
    "TILECAST_SOURCE_ROOTS": os.pathsep.join(["/data/a", "/data/b"]),
    "TILECAST_LOG_LEVEL": "DEBUG",
    "PATH": "/usr/bin",
}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_write_read_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = stackfile.write(tmp_path, api_url="http://127.0.0.1:9", env=UP_ENV)
    assert [p.name for p in tmp_path.iterdir()] == [stackfile.STACK_FILE]  # renamed into place
    body = json.loads(path.read_text())
    # Every TILECAST_*_URL up passes its children, however many servers: nothing else.
    assert body["urls"] == {k: v for k, v in UP_ENV.items() if k.endswith("_URL")}
    assert body["pid"] == os.getpid()
    monkeypatch.setattr(stackfile, "_is_tilecast", lambda pid: pid == os.getpid())
    stack = stackfile.read(tmp_path)
    assert stack is not None and stack.source_roots == ("/data/a", "/data/b")
    assert stack.api_url == "http://127.0.0.1:9" and stack.path == path.resolve()
    stackfile.remove(tmp_path)
    assert not path.exists()


def test_a_recycled_pid_is_not_a_tilecast_up() -> None:
    sleep = "import time; time.sleep(30)"
    other = subprocess.Popen([sys.executable, "-c", sleep])
    named = subprocess.Popen([sys.executable, "-c", sleep, "tilecast", "up"])
    try:
        assert not stackfile._is_tilecast(other.pid)
        assert stackfile._is_tilecast(named.pid)
    finally:
        for proc in (other, named):
            proc.kill()
            proc.wait()
    assert not stackfile._is_tilecast(named.pid)


def test_remove_keeps_another_ups_file(tmp_path: Path) -> None:
    path = stackfile.write(tmp_path, api_url="http://x", env=UP_ENV)
    body = json.loads(path.read_text())
    path.write_text(json.dumps({**body, "pid": dead_pid()}))
    stackfile.remove(tmp_path)
    assert path.exists()


def test_a_stale_file_is_refused_in_one_sentence(tmp_path: Path) -> None:
    path = stackfile.write(tmp_path, api_url="http://x", env=UP_ENV)
    pid = dead_pid()
    path.write_text(json.dumps({**json.loads(path.read_text()), "pid": pid}))
    with pytest.raises(ConfigurationError, match=rf"stale.*pid {pid}"):
        stackfile.read(tmp_path)
    stackfile.check_free(tmp_path)  # a new up may take the directory over
    path.write_text("{not json")
    with pytest.raises(ConfigurationError, match="cannot be read"):
        stackfile.read(tmp_path)
    assert stackfile.read(tmp_path / "nothing") is None


def live_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A state file whose pid is alive and a tilecast process (this one, as seen)."""
    stackfile.write(tmp_path, api_url="http://127.0.0.1:9", env=UP_ENV)
    me = os.getpid()
    monkeypatch.setattr(stackfile, "_is_tilecast", lambda pid: pid == me)


def test_settings_come_from_the_stack_unless_the_environment_names_a_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live_stack(tmp_path, monkeypatch)
    terminal = {"TILECAST_SOURCE_ROOTS": "/elsewhere", "TILECAST_RENDER_TIMEOUT": "7"}
    settings, origin = stackfile.settings_for(tmp_path, terminal)
    assert (settings.cache_url, settings.state_url) == (
        UP_ENV["TILECAST_CACHE_URL"],
        UP_ENV["TILECAST_STATE_URL"],
    )
    assert settings.broker_url == UP_ENV["TILECAST_STATE_URL"]
    # The workers check paths against up's roots: so does registration.
    assert settings.source_roots == ("/data/a", "/data/b")
    assert settings.render_timeout == 7  # other settings still come from the terminal
    assert origin.endswith(stackfile.STACK_FILE)
    assert stackfile.api_url(tmp_path, terminal) == "http://127.0.0.1:9"

    explicit = {"TILECAST_CACHE_URL": "redis://10.0.0.1:6379/0"}
    settings, origin = stackfile.settings_for(tmp_path, explicit)
    assert settings.cache_url == explicit["TILECAST_CACHE_URL"] and "environment" in origin
    assert stackfile.api_url(tmp_path, explicit) is None
    stackfile.check_free(tmp_path)  # the up that wrote it may check again
    monkeypatch.setattr(stackfile.os, "getpid", lambda: 1)  # another up
    with pytest.raises(ConfigurationError, match="already runs"):
        stackfile.check_free(tmp_path)


def test_no_stack_is_an_error_naming_the_ways_out(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"no tilecast up runs.*--data-dir.*CACHE_URL"):
        stackfile.settings_for(tmp_path, {})
    assert stackfile.api_url(tmp_path, {}) is None


@pytest.mark.parametrize(
    "argv", [["add", "a.tiff"], ["precache", "x", "--wait"], ["jobs"], ["stats", "--json"]]
)
def test_every_stack_command_without_a_stack_is_one_line_and_2(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in [n for n in os.environ if n.startswith("TILECAST_")]:
        monkeypatch.delenv(name)
    assert cli.main([*argv, "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no tilecast up runs" in err
    # A Redis named in the environment that does not answer: one line too.
    monkeypatch.setenv("TILECAST_CACHE_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("TILECAST_SOURCE_ROOTS", str(tmp_path))
    import pyvips

    pyvips.Image.black(8, 8).write_to_file(str(tmp_path / "a.tiff"))  # add describes it
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Redis is unreachable" in err, err


def test_cli_hints_name_the_data_dir_only_when_it_is_not_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    default = stackfile.cli_hints(tmp_path / ".tilecast", ["/data/a"])
    assert "--data-dir" not in default and " add PATH" in default and "/data/a" in default
    other = stackfile.cli_hints(tmp_path / "elsewhere", ["/data/a"])
    assert f"add --data-dir {tmp_path / 'elsewhere'} PATH" in other
    assert "--root DIR" in other


def test_up_parser_takes_roots_and_commands_take_a_data_dir() -> None:
    parser = cli.build_parser()
    up = parser.parse_args(["up", "--root", "/a", "--root", "/b"])
    assert up.roots == [Path("/a"), Path("/b")]
    for argv in (["add", "p"], ["precache", "x"], ["jobs"], ["stats"], ["sign", "x"]):
        assert parser.parse_args([*argv, "--data-dir", "/d"]).data_dir == Path("/d")
        assert parser.parse_args(argv).data_dir == stackfile.DEFAULT_DATA_DIR


def test_stats_columns_line_up() -> None:
    snapshot = Snapshot(
        counters={},
        tile_cache={
            "used_bytes": 3 * 1024**3,
            "max_bytes": 0,
            "keys": 123_456_789_012,
            "active_sources": 2,
            "evicted_by_keeper": 5,
            "evicted_by_redis": 0,
        },
        source_cache={"open": 1, "processes": 2, "bytes": 10},
        queues={"interactive": 3, "interactive.interactive-1@a-long-host-name": 0},
        workers={"interactive": 1, "bulk": 1},
        jobs={"running": 1, "finished": 12},
    )
    counters = {name: 0 for name in _counter_names()}
    counters["tiles_rendered"] = 9_876_543
    snapshot.counters.update(counters)
    text = human(snapshot, Settings())
    rows = [line for line in text.splitlines() if line.startswith("  ")]
    assert len(rows) > 20
    # Every number ends in the same column, however long a label or number is.
    keys = next(line for line in rows if line.split()[0] == "keys")
    end = len(keys)  # a row without a note: its number ends the line
    for line in rows:
        assert line[end - 1] != " " and line[end : end + 2] in ("", "  "), (line, text)
        assert line[2] != " "  # labels start in one column too
    assert "queue interactive.interactive-1@a-long-host-name" in text
    assert "123,456,789,012" in text and "3.0 GiB" in text and "jobs finished" in text


def _counter_names() -> list[str]:
    import tilecast.common.counters

    return [
        v for k, v in vars(tilecast.common.counters).items() if k.isupper() and isinstance(v, str)
    ]
