"""A real Girder server for the test suite, on free loopback ports.

MongoDB is played by ``secantusdb`` (a MongoDB wire-protocol server from PyPI, a
test-time tool only; see ``shared/notes/girder.md``) unless a real MongoDB is named
(``mongo_uri``, from ``TILECAST_TEST_MONGO_URI``): then a database of its own per run,
dropped at the end. Girder's config, logs, ``HOME`` and filesystem assetstore all live in
the directory given, so nothing leaks into the developer's ``~/.girder``. Girder's worker
tasks run eagerly and its notification Redis points at a socket that does not exist: the
machine's own Redis and RabbitMQ are never touched.

The same class runs Girder 5 from tilecast's venv (the default) and Girder 3.2 from the
venv of ``tests/girder3venv.py`` (``bin_dir``).

    with GirderServer(tmp_path) as girder:
        client = girder.client()              # admin girder_client.GirderClient
        user_client, token = girder.create_user("alice")
        girder.set_setting("tilecast.url", "http://127.0.0.1:8080")
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from tilecast import procs
from tilecast.redis_server import free_port

HOST = "127.0.0.1"
ADMIN_LOGIN = "tcadmin"
ADMIN_PASSWORD = "tilecast-admin-password-1"
DB_START_TIMEOUT = 60.0
GIRDER_START_TIMEOUT = 120.0
# secantusdb flushes its storage on SIGTERM; it takes a few seconds.
DB_STOP_TIMEOUT = 30.0


class GirderStartError(RuntimeError):
    pass


def user_password(login: str) -> str:
    return f"{login}-password-1"


class GirderServer:
    def __init__(
        self,
        directory: Path,
        *,
        bin_dir: Path | None = None,
        mongo_uri: str | None = None,
        start_timeout: float = GIRDER_START_TIMEOUT,
    ) -> None:
        self.directory = Path(directory)
        self.bin_dir = Path(bin_dir) if bin_dir else Path(sys.executable).parent
        self.start_timeout = start_timeout
        self.admin_login = ADMIN_LOGIN
        self.admin_password = ADMIN_PASSWORD
        self.assetstore_root = self.directory / "assets"
        self.log = self.directory / "girder.log"
        self.db_log = self.directory / "secantusdb.log"
        self.database = f"girder_{secrets.token_hex(6)}"
        self._real_mongo = bool(mongo_uri)
        self.mongo_uri = _with_database(mongo_uri, self.database) if mongo_uri else ""
        self.port = 0
        self.api_url = ""
        self.assetstore_id = ""
        self._db: subprocess.Popen[bytes] | None = None
        self._girder: subprocess.Popen[bytes] | None = None
        self._admin: Any = None

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> GirderServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> GirderServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.assetstore_root.mkdir(exist_ok=True)
        try:
            if not self._real_mongo:
                self._start_db()
            self._start_girder()
            self._bootstrap()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Girder first (it holds connections), then the database, which is waited for
        before its data folder goes."""
        if self._girder is not None:
            procs.stop(self._girder, timeout=15)
            self._girder = None
        if self._db is not None:
            procs.stop(self._db, timeout=DB_STOP_TIMEOUT)
            self._db = None
            shutil.rmtree(self.directory / "db", ignore_errors=True)
        if self._real_mongo and self.mongo_uri:
            self._drop_database()

    def _start_db(self) -> None:
        port = free_port(HOST)
        config = self.directory / "secantusd.toml"
        # An explicit (empty) config turns off secantusdb's search of ./, ~ and /etc.
        config.write_text("")
        argv = [
            str(self.bin_dir / "secantusd-py"),
            *("--config", str(config), "--host", HOST, "--port", str(port)),
            *("--storage-path", str(self.directory / "db"), "--log-level", "WARNING"),
        ]
        self._db = procs.spawn(argv, env=self._env(), log=self.db_log, cwd=self.directory)
        self.mongo_uri = f"mongodb://{HOST}:{port}/{self.database}"
        self._wait("secantusdb", lambda: _port_open(port), DB_START_TIMEOUT, self._db, self.db_log)

    def _start_girder(self) -> None:
        self.port = free_port(HOST)
        self.api_url = f"http://{HOST}:{self.port}/api/v1"
        config = self.directory / "girder.cfg"
        # Read by Girder 3.2 (Girder 5 logs to stdout and ignores it).
        config.write_text(
            "[logging]\n"
            f'log_root = "{self.directory / "logs"}"\n'
            "log_access = []\n"
            'log_level = "INFO"\n'
        )
        argv = [str(self.bin_dir / "girder"), "serve", "--mode", "production"]
        argv += ["-H", HOST, "-p", str(self.port)]
        env = {
            **self._env(),
            "GIRDER_CONFIG": str(config),
            "GIRDER_MONGO_URI": self.mongo_uri,
            "GIRDER_WORKER_TASK_ALWAYS_EAGER": "true",
            "GIRDER_WORKER_BROKER": "memory://",
            "GIRDER_WORKER_BACKEND": "cache+memory://",
            "GIRDER_NOTIFICATION_REDIS_URL": f"unix://{self.directory / 'no-redis.sock'}",
        }
        self._girder = procs.spawn(argv, env=env, log=self.log, cwd=self.directory)
        self._wait(
            f"Girder on port {self.port}",
            lambda: requests.get(f"{self.api_url}/system/version", timeout=2).ok,
            self.start_timeout,
            self._girder,
            self.log,
        )

    def _env(self) -> dict[str, str]:
        home = self.directory / "home"
        home.mkdir(exist_ok=True)
        env = procs.child_environment(
            {"HOME": str(home), "PATH": f"{self.bin_dir}:/usr/local/bin:/usr/bin:/bin"},
            keep_tilecast=False,
        )
        for name in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"):
            env.pop(name, None)
        return env

    def _wait(
        self,
        what: str,
        ready: Callable[[], bool],
        timeout: float,
        proc: subprocess.Popen[bytes],
        log: Path,
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise GirderStartError(f"{what} exited with {proc.returncode}:\n{_tail(log)}")
            try:
                if ready():
                    return
            except (OSError, requests.RequestException):
                pass  # not listening yet
            time.sleep(0.1)
        raise GirderStartError(f"{what} did not answer within {timeout:.0f} s:\n{_tail(log)}")

    def _bootstrap(self) -> None:
        """The first user (who becomes admin) and a filesystem assetstore."""
        response = requests.post(
            f"{self.api_url}/user",
            data={
                "login": self.admin_login,
                "password": self.admin_password,
                "email": f"{self.admin_login}@example.com",
                "firstName": "Tilecast",
                "lastName": "Admin",
            },
            timeout=60,
        )
        if not response.ok or not response.json().get("admin"):
            raise GirderStartError(f"creating Girder's admin failed: {response.text[:500]}")
        assetstore = self.client().post(
            "assetstore",
            parameters={"name": "tilecast-test", "type": 0, "root": str(self.assetstore_root)},
        )
        self.assetstore_id = str(assetstore["_id"])

    def _drop_database(self) -> None:
        try:
            import pymongo
        except ImportError:
            return
        with pymongo.MongoClient(self.mongo_uri, serverSelectionTimeoutMS=5000) as client:
            client.drop_database(self.database)

    # --- use -----------------------------------------------------------------------------

    def client(self) -> Any:
        """An admin ``girder_client.GirderClient`` (one per server, reused)."""
        if self._admin is None:
            self._admin = self.login(self.admin_login, self.admin_password)
        return self._admin

    def login(self, login: str, password: str | None = None) -> Any:
        """A new session (a new token) of an existing user."""
        import girder_client

        client = girder_client.GirderClient(apiUrl=self.api_url)
        client.authenticate(login, password or user_password(login))
        return client

    def create_user(self, login: str, *, login_as: Any = None) -> tuple[Any, str]:
        """A new user ``login`` (password :func:`user_password`), logged in: its client
        and token. With ``login_as`` (a login, a GirderClient, or anything with a
        ``client`` attribute) no user is created: a new session of that user is opened
        instead, e.g. a token a test may revoke without logging the user out."""
        if login_as is not None:
            existing = _login_of(login_as)
            client = self.login(existing)
            return client, str(client.token)
        self.client().post(
            "user",
            parameters={
                "login": login,
                "password": user_password(login),
                "email": f"{login}@example.com",
                "firstName": login,
                "lastName": "Test",
            },
        )
        client = self.login(login)
        return client, str(client.token)

    def api_key(self, name: str = "tilecast") -> str:
        """A new admin API key with full scope (what tilecast's workers use)."""
        doc = self.client().post("api_key", parameters={"name": name, "active": "true"})
        return str(doc["key"])

    def set_setting(self, key: str, value: Any) -> Any:
        """``PUT /system/setting``; ``value`` is sent as JSON so a string stays a string."""
        return self.client().put(
            "system/setting", parameters={"key": key, "value": json.dumps(value)}
        )

    def get_setting(self, key: str) -> Any:
        return self.client().get("system/setting", parameters={"key": key})

    def log_text(self) -> str:
        """What Girder has logged so far (Girder 5: its output; Girder 3.2: its logs too)."""
        parts = [self.log, *sorted((self.directory / "logs").glob("*.log"))]
        return "\n".join(p.read_text(errors="replace") for p in parts if p.is_file())


def _login_of(who: Any) -> str:
    if isinstance(who, str):
        return who
    client = getattr(who, "client", who)
    return str(client.get("user/me")["login"])


def _with_database(uri: str, database: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _tail(log: Path, lines: int = 60) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {log})"
