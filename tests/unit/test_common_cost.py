"""The per-request cost estimate and budget (common/cost.py), and the Redis scripts of
the pool share, waiters and refusals (common/share.py, common/waiting.py,
common/refusals.py) against the real test Redis."""

from __future__ import annotations

import json
import time
import uuid

import pytest
import redis

from tilecast.common import share, waiting
from tilecast.common.cost import check_budget, codec_units, estimate, fitted_pixels, layers
from tilecast.common.encoding import EncodingOptions
from tilecast.common.errors import OverBudget, TooCostly
from tilecast.common.refusals import check_refused, refuse

BUDGET = 2 * 10**9
SIDE = 4096 * 4096


def style(entries: int) -> str:
    return json.dumps({"bands": [{"band": 1, "palette": "#ff0000"}] * entries})


def test_codec_units_grow_with_avif_quality() -> None:
    assert codec_units(EncodingOptions(format="JPEG")) == 1
    assert codec_units(EncodingOptions(format="AVIF", avif_quality=50)) == 85
    assert codec_units(EncodingOptions(format="AVIF", avif_quality=100)) == pytest.approx(850)
    assert codec_units(EncodingOptions(format="WEBP", webp_lossless=True)) == 60


def test_layers_count_bands_or_style_entries() -> None:
    assert layers(None, 3) == 3
    assert layers(None, 0) == 1
    assert layers(style(64), 3) == 256


def test_budget_refuses_expensive_requests_and_names_the_setting() -> None:
    jpeg = EncodingOptions(format="JPEG")
    with pytest.raises(OverBudget) as refused:
        check_budget(SIDE, style(64), 3, jpeg, BUDGET)
    assert refused.value.status == 400
    assert "TILECAST_MAX_REQUEST_COST" in refused.value.message
    with pytest.raises(OverBudget):
        check_budget(SIDE, None, 3, EncodingOptions(format="AVIF", avif_quality=100), BUDGET)
    # Legal and accepted: plain 4096^2 in every codec at default quality, 16 style entries.
    for encoding in ("JPEG", "PNG", "WEBP", "AVIF"):
        check_budget(SIDE, None, 4, EncodingOptions(format=encoding), BUDGET)
    assert check_budget(SIDE, style(16), 3, jpeg, BUDGET) == estimate(SIDE, style(16), 3, jpeg)
    assert check_budget(SIDE, style(64), 3, jpeg, 0) > BUDGET  # 0 = no budget


def test_fitted_pixels_keep_the_aspect() -> None:
    assert fitted_pixels(256, 256, 3000, 2000) == 256 * 171
    assert fitted_pixels(300, 0, 3000, 2000) == 300 * 200
    assert fitted_pixels(0, 0, 30, 20) == 600


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_share_defers_only_while_another_source_waits(client: redis.Redis) -> None:
    a, b = f"a-{uuid.uuid4()}", f"b-{uuid.uuid4()}"
    ttl = {"running_ttl": 60.0, "pending_ttl": 60.0}
    assert share.admit(client, a, "a1", 1, **ttl)
    # Alone on the pool: never deferred, however many it runs.
    assert share.admit(client, a, "a2", 1, **ttl)
    share.note_pending(client, b, "b1", 60.0)
    assert not share.admit(client, a, "a3", 1, **ttl)  # b waits: a is over its share
    assert share.admit(client, b, "b1", 1, **ttl)  # b's own task starts
    assert share.admit(client, a, "a3", 1, **ttl)  # nobody else waits now
    for task in ("a1", "a2", "a3"):
        share.finish(client, a, task)
    share.finish(client, b, "b1")
    assert client.zcard(share.running_key(a)) == 0
    assert share.share_limit(0.5, 2) == 1 and share.share_limit(0.5, 8) == 4
    assert share.share_limit(0.1, 2) == 1


def test_stale_pending_entries_do_not_defer_for_ever(client: redis.Redis) -> None:
    a, b = f"a-{uuid.uuid4()}", f"b-{uuid.uuid4()}"
    share.note_pending(client, b, "lost", 60.0)
    assert share.admit(client, a, "a1", 1, running_ttl=60.0, pending_ttl=60.0)
    time.sleep(0.05)
    # b's entry is older than the pending ttl: its message expired in the queue.
    assert share.admit(client, a, "a2", 1, running_ttl=60.0, pending_ttl=0.01)


def test_waiting_key_lives_until_the_last_deadline(client: redis.Redis) -> None:
    key = f"k-{uuid.uuid4()}"
    assert not waiting.is_waited(client, key)
    waiting.join(client, key, 5.0)
    waiting.join(client, key, 0.5)  # a shorter wait never cuts a longer one
    assert client.pttl(waiting.waiting_key(key)) > 4000
    waiting.join(client, key, 0.001)
    assert waiting.is_waited(client, key)
    short = f"s-{uuid.uuid4()}"
    waiting.join(client, short, 0.05)
    time.sleep(0.1)
    assert not waiting.is_waited(client, short)


def test_refusal_is_raised_with_its_remaining_time(client: redis.Redis) -> None:
    key = f"r-{uuid.uuid4()}"
    check_refused(client, key)  # nothing remembered: no error
    refuse(client, key, TooCostly("too slow"), 30)
    with pytest.raises(TooCostly) as refused:
        check_refused(client, key)
    assert refused.value.status == 503 and 0 < refused.value.retry_after <= 30


def test_a_running_task_past_the_share_yields_only_while_another_source_waits(
    client: redis.Redis,
) -> None:
    a, b = f"a-{uuid.uuid4()}", f"b-{uuid.uuid4()}"
    ttl = {"running_ttl": 60.0, "pending_ttl": 60.0}
    assert share.admit(client, a, "first", 1, **ttl)
    time.sleep(0.002)  # start times order the running set
    assert share.admit(client, a, "second", 1, **ttl)  # alone: both run
    assert not share.should_yield(client, a, "second", 1, pending_ttl=60.0)
    share.note_pending(client, b, "b1", 60.0)
    assert not share.should_yield(client, a, "first", 1, pending_ttl=60.0)  # within share
    assert share.should_yield(client, a, "second", 1, pending_ttl=60.0)
    assert client.zrange(share.running_key(a), 0, -1) == [b"first"]
    share.finish(client, a, "first")
    client.delete(share.pending_key(b))
