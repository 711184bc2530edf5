"""``tilecast up``: the embedded default, everything on one machine.

Two redis-servers of its own, as the compose and Kubernetes files run them: the cache
Redis (tiles; ``allkeys-lru`` under ``--cache-memory``, nothing on disk) and the state
Redis (registrations, jobs, worker heartbeats, the broker; ``noeviction``, an
append-only file in the data folder). ``TILECAST_CACHE_URL`` / ``TILECAST_STATE_URL``
name a Redis of the user's instead, and then none is started for that role (the state
role defaults to the cache URL). Then a sample image when none is given, every image
registered, the worker launcher (both pools) and the api as child processes.

It supervises them: a child that exits is started again after a back-off, and the
others keep running meanwhile (the api keeps answering: tiles asked in the gap wait
for the worker, or get their 503/504 in the documented time). Each restart is told
on stdout and in that child's log, as are the worker launcher's restarts of its
nodes. A child that keeps exiting right after its start ends ``up`` with one line
naming it and the last line of its log. Only Ctrl-C, SIGINT or SIGTERM stop it
(SIGINT even when ``up`` was started with it ignored): every child it started --
the api first, so no request outlives its worker -- then Redis.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from tilecast import procs, stackfile
from tilecast.common.errors import ConfigurationError
from tilecast.common.registry import SourceRecord
from tilecast.common.settings import PREFIX, Settings
from tilecast.redis_server import RedisServer
from tilecast.register import register_path

API_START_TIMEOUT = 60.0
SUPERVISE_SECONDS = 0.25
RESTARTS = procs.RestartPolicy()
# The worker launcher's notices (tilecast/worker.py) that ``up`` repeats on its output.
WORKER_NOTICE = "tilecast worker: "


class Shutdown(Exception):
    """Raised by the signal handlers so that cleanup runs wherever startup was."""


class StartFailed(Exception):
    """Something ``up`` needs cannot run; its message is the one line the user sees."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class UpOptions:
    images: list[str]
    host: str
    port: int
    data_dir: Path
    concurrency: int
    api_workers: int
    server: str = "granian"
    cache_memory: str = "1gb"
    roots: tuple[Path, ...] = ()  # --root: more directories images may be added from


@dataclass
class Child:
    """A supervised child and the log where its output (and its restarts) go."""

    process: procs.Supervised
    log: Path


def run_up(options: UpOptions) -> int:
    children: list[Child] = []  # in start order: Redis, the worker, the api
    with _signals_raise():
        try:
            _check_port_free(options.host, options.port)
            stackfile.check_free(options.data_dir)
            env = procs.child_environment()
            _start_redis(options, env, children)
            images = options.images or _sample_images(options.data_dir / "sample")
            roots = env.get(PREFIX + "SOURCE_ROOTS") or _roots_of(images)
            env[PREFIX + "SOURCE_ROOTS"] = _with_roots(roots, options.roots)
            settings = Settings.from_env(env)
            records = [register_path(str(image), settings) for image in images]
            echo = LogEcho(options.data_dir / "logs" / "worker.log", WORKER_NOTICE)
            _start_children(options, env, children)
            base = f"http://{_display_host(options.host)}:{options.port}"
            _wait_for_api(base, children, echo)
            _print_sources(base, records)
            stackfile.write(options.data_dir, api_url=base, env=env)
            print(stackfile.cli_hints(options.data_dir, settings.source_roots), flush=True)
            print(f"tilecast is up at {base}; Ctrl-C stops it", flush=True)
            _supervise(children, echo)
            return 0  # not reached: _supervise returns by an exception
        except (KeyboardInterrupt, Shutdown):
            return 0
        except StartFailed as failed:
            print(f"tilecast up: {failed}", file=sys.stderr, flush=True)
            return failed.code
        finally:
            stackfile.remove(options.data_dir)
            _stop_all(children)


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    def raise_shutdown(signum: int, frame: FrameType | None) -> None:
        raise Shutdown(signal.Signals(signum).name)

    # SIGINT explicitly: a process started in the background from a shell script
    # inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    previous = {sig: signal.signal(sig, raise_shutdown) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_port_free(host: str, port: int) -> None:
    """One clear line now rather than an api that dies at start with a traceback."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            # As the api's server binds: a port held only by closing connections is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise StartFailed(
                f"port {port} on {host} is already in use (another tilecast up?); "
                f"stop what listens there or choose another port with --port",
                code=2,
            ) from err
        raise StartFailed(
            f"cannot listen on {host}:{port} ({err.strerror or err}); check --host and --port",
            code=2,
        ) from err


def _start_redis(options: UpOptions, env: dict[str, str], children: list[Child]) -> None:
    """A cache and a state Redis, each unless the user named one for its role."""
    cache_named = bool(env.get(PREFIX + "CACHE_URL"))
    # The state role defaults to the cache URL (common/settings.py).
    state_named = bool(env.get(PREFIX + "STATE_URL")) or cache_named
    directory = options.data_dir / "redis"
    roles = [
        ("cache", cache_named, RedisServer.cache(directory / "cache", options.cache_memory)),
        ("state", state_named, RedisServer.state(directory / "state")),
    ]
    for role, named, server in roles:
        if named:
            continue
        try:
            url = server.start()
        except RuntimeError as err:
            raise StartFailed(f"the {role} Redis: {err}") from err
        env[f"{PREFIX}{role.upper()}_URL"] = url
        child = Child(procs.Supervised(f"{role} Redis", _restarter(server)), server.log)
        child.process.start()  # takes the server started above
        children.append(child)
        kind = (
            f"allkeys-lru, maxmemory {options.cache_memory}"
            if role == "cache"
            else "noeviction, append-only file"
        )
        print(f"redis      {role} {url} (own server: {kind})", flush=True)


def _restarter(server: RedisServer) -> Callable[[], subprocess.Popen[bytes]]:
    """The running server the first time (already started), a restart afterwards."""
    first = server.proc

    def start() -> subprocess.Popen[bytes]:
        nonlocal first
        if first is not None:
            proc, first = first, None
            return proc
        return server.restart()

    return start


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


def _start_children(options: UpOptions, env: dict[str, str], children: list[Child]) -> None:
    """Start the worker launcher and the api, appending each to ``children``."""
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
        log = logs / f"{name}.log"
        child = Child(procs.Supervised(name, _spawner(argv, env, log), RESTARTS), log)
        child.process.start()
        children.append(child)


def _spawner(
    argv: list[str], env: dict[str, str], log: Path
) -> Callable[[], subprocess.Popen[bytes]]:
    return lambda: procs.spawn(argv, env=env, log=log)


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else host


def _wait_for_api(base: str, children: list[Child], echo: LogEcho) -> None:
    deadline = time.monotonic() + API_START_TIMEOUT
    while time.monotonic() < deadline:
        _check_children(children, echo)
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    api_log = children[-1].log
    raise StartFailed(
        f"the api did not answer at {base} within {API_START_TIMEOUT:g} s "
        f"({procs.last_error_line(api_log)}); see {api_log}"
    )


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


def _supervise(children: list[Child], echo: LogEcho) -> None:
    """Keep every child running until a signal arrives (raised as an exception)."""
    while True:
        _check_children(children, echo)
        time.sleep(SUPERVISE_SECONDS)


def _check_children(children: list[Child], echo: LogEcho) -> None:
    """Restart what exited; tell it on stdout and in the child's log; raise StartFailed
    for a child that keeps exiting at start."""
    for child in children:
        try:
            lines = child.process.check()
        except procs.GaveUp as gave_up:
            _tell(child, f"{gave_up}; stopping", to_stdout=False)  # stderr has it below
            raise StartFailed(
                f"{gave_up} ({procs.last_error_line(child.log)}); see {child.log}"
            ) from gave_up
        for line in lines:
            _tell(child, line)
    for line in echo.new_lines():
        print(line, flush=True)


def _tell(child: Child, line: str, *, to_stdout: bool = True) -> None:
    if to_stdout:
        print(f"tilecast up: {line}", flush=True)
    with contextlib.suppress(OSError), child.log.open("a") as log:
        log.write(f"tilecast up: {line}\n")


class LogEcho:
    """The lines of a log starting with ``prefix`` written since it was last read."""

    def __init__(self, path: Path, prefix: str) -> None:
        self.path = path
        self.prefix = prefix
        self.offset = path.stat().st_size if path.exists() else 0
        self.partial = ""

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except OSError:
            return []
        self.offset += len(data)
        text = self.partial + data.decode("utf-8", "replace")
        *complete, self.partial = text.split("\n")
        return [line for line in complete if line.startswith(self.prefix)]


def _stop_all(children: list[Child]) -> None:
    # A second Ctrl-C must not cut the cleanup short and leave children behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if children:
        print("stopping", flush=True)
    for child in reversed(children):  # the api first, then the worker, then Redis
        child.process.stop(timeout=20)
