"""``tilecast up``: the embedded default, everything on one machine.

Its own redis-server (unless ``TILECAST_CACHE_URL`` names one), a sample image when none
is given, every image registered, one worker and the api as child processes. Ctrl-C or
SIGTERM stops every child it started -- the api first, so no request outlives its
worker -- then Redis.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from common.errors import ConfigurationError
from common.registry import SourceRecord
from common.settings import PREFIX, Settings
from tilecast import procs, stackfile
from tilecast.redis_server import RedisServer
from tilecast.register import register_path

API_START_TIMEOUT = 60.0


class Shutdown(Exception):
    """Raised by the SIGTERM handler so that cleanup runs wherever startup was."""


@dataclass(frozen=True)
class UpOptions:
    images: list[str]
    host: str
    port: int
    data_dir: Path
    concurrency: int
    api_workers: int
    server: str = "granian"
    roots: tuple[Path, ...] = ()  # --root: more directories images may be added from


def run_up(options: UpOptions) -> int:
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    redis_server: RedisServer | None = None
    with _signals_raise():
        try:
            stackfile.check_free(options.data_dir)
            env = procs.child_environment()
            if not env.get(PREFIX + "CACHE_URL"):
                redis_server = RedisServer(options.data_dir / "redis", persistent=True)
                env[PREFIX + "CACHE_URL"] = redis_server.start()
                print(f"redis      {env[PREFIX + 'CACHE_URL']} (own server)", flush=True)
            images = options.images or _sample_images(options.data_dir / "sample")
            roots = env.get(PREFIX + "SOURCE_ROOTS") or _roots_of(images)
            env[PREFIX + "SOURCE_ROOTS"] = _with_roots(roots, options.roots)
            settings = Settings.from_env(env)
            records = [register_path(str(image), settings) for image in images]
            _start_children(options, env, children)
            base = f"http://{_display_host(options.host)}:{options.port}"
            _wait_for_api(base, children)
            _print_sources(base, records)
            stackfile.write(options.data_dir, api_url=base, env=env)
            print(stackfile.cli_hints(options.data_dir, settings.source_roots), flush=True)
            print(f"tilecast is up at {base}; Ctrl-C stops it", flush=True)
            return _supervise(children)
        except (KeyboardInterrupt, Shutdown):
            return 0
        finally:
            stackfile.remove(options.data_dir)
            _stop_all(children, redis_server)


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    def raise_shutdown(signum: int, frame: FrameType | None) -> None:
        raise Shutdown(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, raise_shutdown)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sample_images(directory: Path) -> list[Path]:
    # Imported here: only this path needs libvips in the parent process.
    from tilecast.sample import make_demo_images

    print(f"sample     {directory} (generated once, reused later)", flush=True)
    return make_demo_images(directory)


def _roots_of(images: list[str] | list[Path]) -> str:
    return os.pathsep.join(sorted({os.path.dirname(os.path.realpath(i)) for i in images}))


def _with_roots(roots: str, extra: tuple[Path, ...]) -> str:
    """``roots`` (os.pathsep-separated) and the ``--root`` directories, each once."""
    for directory in extra:
        if not directory.is_dir():
            raise ConfigurationError(f"--root {directory}: not a directory")
    listed = [r for r in roots.split(os.pathsep) if r] + [os.path.realpath(d) for d in extra]
    return os.pathsep.join(dict.fromkeys(listed))


def _start_children(
    options: UpOptions, env: dict[str, str], children: list[tuple[str, subprocess.Popen[bytes]]]
) -> None:
    """Start the worker and the api, appending each to ``children`` as soon as it runs."""
    logs = options.data_dir / "logs"
    python = [sys.executable, "-m", "tilecast"]
    commands = {
        "worker": [*python, "worker", "--concurrency", str(options.concurrency)],
        "api": [
            *python,
            "api",
            *["--bind", f"{options.host}:{options.port}"],
            *["--workers", str(options.api_workers)],
            *["--server", options.server],
        ],
    }
    print(f"logs       {logs}", flush=True)
    for name, argv in commands.items():
        children.append((name, procs.spawn(argv, env=env, log=logs / f"{name}.log")))


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def _wait_for_api(base: str, children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    deadline = time.monotonic() + API_START_TIMEOUT
    while time.monotonic() < deadline:
        _check_alive(children)
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise SystemExit(f"the api did not answer at {base} within {API_START_TIMEOUT:g} s")


def _check_alive(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for name, proc in children:
        if proc.poll() is not None:
            raise SystemExit(f"the {name} exited with status {proc.returncode}; see its log")


def _print_sources(base: str, records: list[SourceRecord]) -> None:
    for record in records:
        meta = record.metadata
        item = f"{base}/item/{record.id}"
        print(f"\n{record.name}  id {record.id}", flush=True)
        print(
            f"  {meta.get('sizeX')} x {meta.get('sizeY')} px, {meta.get('levels')} levels, "
            f"{meta.get('tileWidth')}x{meta.get('tileHeight')} tiles, "
            f"{meta.get('bandCount')} x {meta.get('dtype')}"
        )
        print(f"  metadata   {item}/tiles")
        print(f"  thumbnail  {item}/tiles/thumbnail?width=512")
        print(f"  tile       {item}/tiles/zxy/0/0/0")
        print(f"  viewer     {base}/viewer/{record.id}", flush=True)
    print(f"\nindex      {base}/ (every registered source)", flush=True)


def _supervise(children: list[tuple[str, subprocess.Popen[bytes]]]) -> int:
    """Wait until a signal arrives (raised as an exception) or a child dies."""
    while True:
        for name, proc in children:
            if proc.poll() is not None:
                print(f"the {name} exited with status {proc.returncode}; stopping", flush=True)
                return 1
        time.sleep(0.5)


def _stop_all(
    children: list[tuple[str, subprocess.Popen[bytes]]], redis_server: RedisServer | None
) -> None:
    # A second Ctrl-C must not cut the cleanup short and leave children behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if children:
        print("stopping", flush=True)
    for _name, proc in reversed(children):  # the api first, then the worker
        procs.stop(proc, timeout=20)
    if redis_server is not None:
        redis_server.stop()
