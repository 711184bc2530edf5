"""Reading a Girder file straight from a filesystem assetstore the worker can see.

tilecast's Girder plugin tells where a file lives on Girder's side
(``GET tilecast/file/{id}/path``); ``girder_path_map`` says under which local prefix a
worker sees each Girder-side prefix ("GIRDER_PREFIX=LOCAL_PREFIX", longest prefix
wins). The mapped file is used only when it exists with the file's size; otherwise the
caller falls back to HTTP, and says why once per process.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from tilecast.workers.girder.client import GirderConnection, GirderHttpError
from tilecast.workers.girder.items import GirderFileInfo
from tilecast.workers.sources.files import LocalFile

log = logging.getLogger(__name__)

_logged: set[str] = set()
_logged_lock = threading.Lock()


def parse_path_map(pairs: tuple[str, ...]) -> list[tuple[str, str]]:
    """(Girder prefix, local prefix) pairs, longest Girder prefix first."""
    parsed = []
    for pair in pairs:
        girder, sep, local = pair.partition("=")
        if not sep or not girder or not local:
            log_once(f"map:{pair}", "ignoring %r in TILECAST_GIRDER_PATH_MAP (not A=B)", pair)
            continue
        parsed.append((_strip(girder), _strip(local)))
    return sorted(parsed, key=lambda p: len(p[0]), reverse=True)


def map_path(path: str, prefixes: list[tuple[str, str]]) -> str | None:
    """The local path of a Girder-side path, None when no prefix covers it."""
    for girder, local in prefixes:
        if path == girder or path.startswith(girder + "/") or girder == "":
            return local + path[len(girder) :]
    return None


def direct_file(
    connection: GirderConnection, info: GirderFileInfo, prefixes: list[tuple[str, str]]
) -> LocalFile | None:
    """The file opened where the worker sees Girder's assetstore, or None."""
    where = _girder_path(connection, info)
    if where is None:
        return None
    local = map_path(where, prefixes)
    if local is None:
        log_once("unmapped", "no TILECAST_GIRDER_PATH_MAP prefix covers %s", where)
        return None
    try:
        file = LocalFile(local)
    except OSError as exc:
        log_once("missing", "cannot open Girder's file here as %s: %s", local, exc)
        return None
    if file.size != info.size:
        file.close()
        log_once("size", "%s has %d bytes, Girder's file %d", local, file.size, info.size)
        return None
    return file


def _girder_path(connection: GirderConnection, info: GirderFileInfo) -> str | None:
    try:
        answer: Any = connection.get_plugin_json(f"tilecast/file/{info.file_id}/path")
    except GirderHttpError as exc:
        # 404: not in a filesystem assetstore, or no tilecast plugin; 401: wrong secret.
        log_once(f"plugin:{exc.status}", "Girder's file path is not available: %s", exc)
        return None
    path = answer.get("path") if isinstance(answer, dict) else None
    if not isinstance(path, str) or answer.get("size") not in (None, info.size):
        log_once("plugin:answer", "Girder's file path answer is unusable: %r", answer)
        return None
    return path


def log_once(key: str, message: str, *args: object) -> None:
    """Fallbacks happen for every file of a misconfigured site: say so once, then
    quietly."""
    with _logged_lock:
        first = key not in _logged
        _logged.add(key)
    log.log(logging.WARNING if first else logging.DEBUG, message, *args)


def _strip(prefix: str) -> str:
    return prefix.rstrip("/") if prefix != "/" else ""
