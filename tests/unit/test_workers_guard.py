"""workers/guard.py: a guarded render stops once nobody waits for its key (real Redis)."""

from __future__ import annotations

import time
import uuid

import pytest
import redis

from tilecast.common import waiting
from tilecast.workers import guard
from tilecast.workers.guard import RenderAbandoned, checkpoint, guarding


def test_checkpoint_raises_once_every_waiter_is_gone(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guard, "CHECK_SECONDS", 0.0)
    client = redis.Redis.from_url(redis_url)
    key = f"g-{uuid.uuid4()}"
    checkpoint()  # outside a guarded render: nothing to check
    waiting.join(client, key, 0.2)
    with guarding(client, key):
        checkpoint()  # someone waits
        time.sleep(0.3)
        with pytest.raises(RenderAbandoned):
            checkpoint()
    checkpoint()  # the guard ended with the block


def test_checks_are_spaced(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    key = f"g-{uuid.uuid4()}"
    waiting.join(client, key, 0.05)
    with guarding(client, key):
        checkpoint()  # asks Redis: still waited for
        time.sleep(0.1)
        checkpoint()  # within CHECK_SECONDS of the last look: no round trip, no raise
