"""A stand-in for the worker pool in unit tests: renders instantly, in a thread, by
the same contract as the real one (write the key, then announce it on tc:done)."""

from __future__ import annotations

import threading
import time
from typing import Any

import redis

from tilecast.common.errors import UnsupportedImage
from tilecast.common.inflight import Completion, announce
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.taskprotocol import (
    TASK_DESCRIBE_SOURCE,
    TASK_RENDER_THUMBNAIL,
    TASK_RENDER_TILE,
    TASK_RENDER_TILES,
)
from tilecast.common.tiles import ThumbnailRequest, TileRequest

METADATA = {
    "levels": 3,
    "sizeX": 1000,
    "sizeY": 700,
    "tileWidth": 256,
    "tileHeight": 256,
    "magnification": None,
    "mm_x": None,
    "mm_y": None,
    "dtype": "uint8",
    "bandCount": 3,
}


class FakeSender:
    """Counts what it was sent and "renders" after ``delay`` seconds."""

    def __init__(self, client: redis.Redis, *, delay: float = 0.05) -> None:
        self.client = client
        self.delay = delay
        self.sent: list[tuple[str, dict[str, Any], str]] = []
        self.fail_with: dict[str, Any] | None = None
        self.silent = False  # True: never answer (a lost task)
        self._lock = threading.Lock()

    def send(self, name: str, payload: dict[str, Any], queue: str = "interactive") -> str:
        with self._lock:
            self.sent.append((name, payload, queue))
        if not self.silent:
            threading.Thread(target=self._work, args=(name, payload), daemon=True).start()
        return queue

    def _work(self, name: str, payload: dict[str, Any]) -> None:
        if name == TASK_RENDER_TILES:
            return  # a prefetch's bulk batch: recorded only, nobody waits for it
        time.sleep(self.delay)
        if name == TASK_DESCRIBE_SOURCE:
            self._describe(payload)
            return
        key = _key(name, payload)
        if self.fail_with is not None:
            announce(self.client, Completion(key, error=self.fail_with))
            return
        self.client.set(key, render_bytes(key))
        announce(self.client, Completion(key))

    def _describe(self, payload: dict[str, Any]) -> None:
        done = payload["done_key"]
        if payload["path"].endswith(".txt"):
            error = UnsupportedImage("no reader opens this file").to_payload()
            announce(self.client, Completion(done, error=error))
            return
        record = SourceRecord(payload["source"], payload["path"], "name", dict(METADATA))
        SourceRegistry(self.client).add(record)
        announce(self.client, Completion(done))


def render_bytes(key: str) -> bytes:
    return b"\xff\xd8fake:" + key.encode()


def _key(name: str, payload: dict[str, Any]) -> str:
    if name == TASK_RENDER_TILE:
        return TileRequest.from_payload(payload["request"]).key(payload["generation"])
    assert name == TASK_RENDER_THUMBNAIL
    return ThumbnailRequest.from_payload(payload["request"]).key(payload["generation"])
