"""Pre-rendering jobs: request parsing, planning, the record in Redis and the driver's
decisions (common/jobspec.py, common/jobplan.py, common/jobstore.py, workers/precache.py's
JobDriver with a recording sender).

The store tests use their own Redis database of the test server, so the session
worker's job driver (which watches database 0) never sees these jobs.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis

from tilecast.common.encoding import EncodingOptions
from tilecast.common.errors import BadRequest, UnknownJob
from tilecast.common.jobplan import BASE_TILES, RAW, THUMBNAIL, TILES, plan
from tilecast.common.jobspec import JobSpec, auto_job_spec, parse_int_list, parse_job_request
from tilecast.common.jobstore import CANCELLED, FINISHED, RUNNING, JobStore
from tilecast.common.keys import job_leases_key as leases_key
from tilecast.common.redisconn import connect
from tilecast.common.settings import Settings

# 3000 x 2000, 256-pixel tiles, 5 levels: 1 + 2 + 6 + 24 + 96 = 129 tiles.
METADATA: dict[str, Any] = {
    "sizeX": 3000,
    "sizeY": 2000,
    "tileWidth": 256,
    "tileHeight": 256,
    "levels": 5,
}
SETTINGS = Settings(job_block=8, job_inflight_batches=3, job_max_attempts=2)


def spec_of(args: dict[str, Any], metadata: dict[str, Any] = METADATA) -> JobSpec:
    return parse_job_request("src", args, metadata, 1, SETTINGS)


# --- parsing ---------------------------------------------------------------------------


def test_level_lists_and_ranges() -> None:
    assert parse_int_list("0-3", "levels", 0, 9) == (0, 1, 2, 3)
    assert parse_int_list("4,1-2,2", "levels", 0, 9) == (1, 2, 4)
    assert parse_int_list([3, 1], "levels", 0, 9) == (1, 3)
    assert parse_int_list(2, "levels", 0, 9) == (2,)


@pytest.mark.parametrize("raw", ["0-9", "5", "a", "3-1", [], [True], 1.5, "-1", {"a": 1}])
def test_bad_levels_are_400_naming_levels(raw: Any) -> None:
    with pytest.raises(BadRequest) as err:
        spec_of({"levels": raw})
    assert err.value.parameter == "levels"


def test_defaults_whole_image_all_levels_frame_zero() -> None:
    spec = spec_of({})
    assert spec.levels == (0, 1, 2, 3, 4)
    assert spec.frames == (0,)
    assert spec.region == (0, 0, 3000, 2000)
    assert spec.style is None and spec.encoding == EncodingOptions()
    assert not spec.thumbnail


@pytest.mark.parametrize(
    ("args", "parameter"),
    [
        ({"region": {"left": 3000}}, "left"),
        ({"left": "100", "right": "100"}, "right"),
        ({"region": "1,2,3"}, "region"),
        ({"region": {"width": 3}}, "region"),
        ({"frames": "1"}, "frames"),
        ({"style": "{bad"}, "style"),
        ({"style": {"frame": 2}}, "style"),
        ({"encoding": "GIF"}, "encoding"),
        ({"jpegQuality": "0"}, "jpegQuality"),
        ({"thumbnail": "maybe"}, "thumbnail"),
    ],
)
def test_bad_input_is_400_naming_the_parameter(args: dict[str, Any], parameter: str) -> None:
    with pytest.raises(BadRequest) as err:
        spec_of(args)
    assert err.value.parameter == parameter


def test_style_and_encoding_are_canonical() -> None:
    a = spec_of({"style": '{"max": 200, "min": 10}', "encoding": "png"})
    b = spec_of({"style": {"min": 10, "max": 200}, "encoding": "PNG"})
    assert a == b and a.hash == b.hash
    assert a.encoding.format == "PNG"
    assert spec_of({"levels": "0-1"}).hash != spec_of({"levels": "0-2"}).hash


def test_spec_round_trip() -> None:
    spec = spec_of({"levels": "1,3", "region": "10,20,900,700", "thumbnail": True})
    assert JobSpec.from_payload(spec.to_payload()) == spec
    assert spec.region == (10, 20, 900, 700)


def test_frames_all() -> None:
    frames = {**METADATA, "frames": [{"Frame": i} for i in range(3)]}
    assert spec_of({"frames": "all"}, frames).frames == (0, 1, 2)
    assert spec_of({"frames": "1-2"}, frames).frames == (1, 2)


def test_auto_job_is_thumbnail_and_coarsest_levels() -> None:
    spec = auto_job_spec("src", METADATA, 3, Settings(auto_precache_levels=2))
    assert spec.levels == (0, 1, 2) and spec.thumbnail and spec.generation == 3
    assert auto_job_spec("src", METADATA, 3, Settings(auto_precache_levels=9)).levels == (
        0, 1, 2, 3, 4,
    )  # fmt: skip


# --- planning --------------------------------------------------------------------------


def test_plan_covers_every_tile_once_coarse_first() -> None:
    the_plan = plan(spec_of({"thumbnail": "true"}))
    assert the_plan.total_tiles == 1 + 129
    batches = list(the_plan.batches())
    # Levels of this size are synthesized on demand: the thumbnail, then the tiles.
    assert [b.kind for b in batches] == [THUMBNAIL] + [TILES] * (len(batches) - 1)
    styled = batches[1:]
    tiles = [(b.z, x, y) for b in styled for x, y in b.tiles]
    assert len(tiles) == len(set(tiles)) == 129
    levels = [b.z for b in styled]
    assert levels == sorted(levels)  # coarse levels first
    assert all(len(b.tiles) <= 64 for b in styled)
    # Level 4 is 12 x 8 tiles: an 8 x 8 block and a 4 x 8 block.
    assert [len(b.tiles) for b in styled if b.z == 4] == [64, 32]
    assert {(x, y) for b in styled if b.z == 4 for x, y in b.tiles} == {
        (x, y) for x in range(12) for y in range(8)
    }
    assert sum(b.size for b in batches) == the_plan.total_tiles
    assert not any(the_plan.waits_before(b.index) for b in batches)


# 8192 x 8192: 32 x 32 base tiles, 6 levels. Blocks of 8 x 8 base tiles make levels 4
# (256 tiles) and 3 (64) under them; levels 2-0 are too small to synthesize ahead.
LARGE = {**METADATA, "sizeX": 8192, "sizeY": 8192, "levels": 6}


def test_plan_makes_the_levels_under_base_blocks_from_the_blocks() -> None:
    the_plan = plan(spec_of({"thumbnail": "true"}, LARGE))
    batches = list(the_plan.batches())
    kinds = [b.kind for b in batches]
    assert kinds == sorted(kinds, key=[BASE_TILES, RAW, THUMBNAIL, TILES].index)
    assert RAW not in kinds
    base = [b for b in batches if b.kind == BASE_TILES]
    assert [b.z for b in base] == [5] * 16
    for z, side, depth in ((5, 32, 0), (4, 16, 1), (3, 8, 2)):
        covered = [t for b in base for t in (b.under[depth - 1].tiles if depth else b.tiles)]
        assert sorted(covered) == sorted((x, y) for x in range(side) for y in range(side)), z
    for b in base:  # each block's levels are the tiles under its own
        assert [lv.z for lv in b.under] == [4, 3] and all(lv.styled for lv in b.under)
        assert {(x // 2, y // 2) for x, y in b.tiles} == set(b.under[0].tiles)
        assert {(x // 4, y // 4) for x, y in b.tiles} == set(b.under[1].tiles)
        assert b.size == 64 + 16 + 4
    assert not any(b.kind == TILES and b.z in (5, 4, 3) for b in batches)
    assert the_plan.total_tiles == 1 + 1024 + 256 + 64 + 16 + 4 + 1
    assert sum(b.size for b in batches) == the_plan.total_tiles
    # The thumbnail (and the tiles after it) wait for the whole unstyled phase.
    waits = [b.index for b in batches if the_plan.waits_before(b.index)]
    assert waits == [16]
    no_thumbnail = plan(spec_of({}, LARGE))
    assert [b.index for b in no_thumbnail.batches() if no_thumbnail.waits_before(b.index)] == [16]


def test_plan_synthesizes_unstyled_levels_finest_first_in_parallel() -> None:
    # Blocks of 2 make one level under the base; level 3 is synthesized ahead.
    the_plan = plan(replace(spec_of({}, LARGE), block=2))
    batches = list(the_plan.batches())
    base = [b for b in batches if b.kind == BASE_TILES]
    assert len(base) == 256 and all([lv.z for lv in b.under] == [4] for b in base)
    raw = [b for b in batches if b.kind == RAW]
    assert [b.z for b in raw] == [3] * 16  # 2 x 2 blocks
    covered = [(x, y) for b in raw for x, y in b.tiles]
    assert sorted(covered) == sorted((x, y) for x in range(8) for y in range(8))
    assert sum(b.size for b in raw) == 0  # a means, not part of the count
    assert sum(b.size for b in batches) == the_plan.total_tiles
    # Level 3 waits for the base blocks; the tiles after it for level 3.
    waits = [b.index for b in batches if the_plan.waits_before(b.index)]
    assert waits == [256, 272]


def test_plan_without_the_base_level_synthesizes_the_levels_under_it_ahead() -> None:
    the_plan = plan(spec_of({"levels": "0-4"}, LARGE))
    batches = list(the_plan.batches())
    assert not any(b.kind == BASE_TILES for b in batches)
    assert [b.z for b in batches if b.kind == RAW] == [4] * 16 + [3] * 16
    assert the_plan.total_tiles == 256 + 64 + 16 + 4 + 1


def test_levels_the_job_skips_are_made_unstyled_only() -> None:
    the_plan = plan(spec_of({"levels": "0-3,5"}, LARGE))
    batches = list(the_plan.batches())
    base = [b for b in batches if b.kind == BASE_TILES]
    assert [(lv.z, lv.styled) for lv in base[0].under] == [(4, False), (3, True)]
    assert all(b.size == 64 + 4 for b in base)
    assert the_plan.total_tiles == 1024 + 64 + 16 + 4 + 1
    assert sum(b.size for b in batches) == the_plan.total_tiles


@pytest.mark.parametrize(
    ("region", "block", "depth"),
    [("0,0,8192,8192", 5, 2), ("256,0,8192,8192", 8, 0), ("512,1024,8192,8192", 8, 1),
     ("2048,1024,5000,7000", 8, 1), ("0,0,8192,8192", 3, 1)],
)  # fmt: skip
def test_base_blocks_are_aligned_to_the_levels_they_make(
    region: str, block: int, depth: int
) -> None:
    the_plan = plan(replace(spec_of({"region": region}, LARGE), block=block))
    batches = list(the_plan.batches())
    base = [b for b in batches if b.kind == BASE_TILES]
    assert {len(b.under) for b in base} == ({depth} if depth else set())
    for b in base:
        xs, ys = {x for x, _ in b.tiles}, {y for _, y in b.tiles}
        assert min(xs) % 2**depth == 0 and min(ys) % 2**depth == 0
    assert sum(b.size for b in batches) == the_plan.total_tiles
    styled = [(b.z, x, y) for b in batches if b.kind == TILES for x, y in b.tiles]
    styled += [(b.z, x, y) for b in base for x, y in b.tiles]
    styled += [(lv.z, x, y) for b in base for lv in b.under for x, y in lv.tiles]
    assert len(styled) == len(set(styled)) == the_plan.total_tiles - the_plan.spec.thumbnail


def test_plan_of_a_region_and_levels() -> None:
    # Base pixels 300-1100 x 0-255: level 4 tiles x 1..4, y 0; level 3 (512-pixel
    # spans): x 0..2, y 0.
    the_plan = plan(spec_of({"levels": "3-4", "region": "300,0,1100,255"}))
    tiles = {(b.z, x, y) for b in the_plan.batches() if b.kind == TILES for x, y in b.tiles}
    assert tiles == {(4, x, 0) for x in range(1, 5)} | {(3, x, 0) for x in range(3)}
    assert the_plan.total_tiles == 7
    # Only the base level: nothing to synthesize.
    assert {b.kind for b in plan(spec_of({"levels": "5"}, LARGE)).batches()} == {TILES}


def test_plan_with_frames_and_small_blocks() -> None:
    metadata = {**METADATA, "frames": [{}, {}]}
    spec = parse_job_request(
        "src", {"levels": "4", "frames": "all"}, metadata, 1, Settings(job_block=4)
    )
    the_plan = plan(spec)
    assert the_plan.total_tiles == 2 * 96
    assert the_plan.total_batches == 2 * 3 * 2
    assert {b.frame for b in the_plan.batches()} == {0, 1}
    with pytest.raises(IndexError):
        the_plan.batch(the_plan.total_batches)


# --- the record and the driver ---------------------------------------------------------


@pytest.fixture
def jobs_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = connect(redis_url.rsplit("/", 1)[0] + "/9")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_submit_deduplicates_while_running(jobs_redis: redis.Redis) -> None:
    store = JobStore(jobs_redis)
    spec = spec_of({"levels": "0-2"})
    first, created = store.submit(spec)
    assert created and first.state == RUNNING and first.total == 9
    again, created_again = store.submit(spec)
    assert not created_again and again.id == first.id
    other, created_other = store.submit(spec_of({"levels": "0-1"}))
    assert created_other and other.id != first.id
    assert {r.id for r in store.list()} == {first.id, other.id}
    # Once it ended, an equal request starts a new job.
    store.cancel(first.id, retention=60)
    third, created_third = store.submit(spec)
    assert created_third and third.id != first.id


def test_cancel_is_a_no_op_on_ended_jobs(jobs_redis: redis.Redis) -> None:
    store = JobStore(jobs_redis)
    job, _ = store.submit(spec_of({"levels": "0"}))
    assert store.cancel(job.id, retention=60).state == CANCELLED
    cancelled = store.get(job.id)
    assert store.cancel(job.id, retention=60) == cancelled
    assert jobs_redis.ttl(f"tc:job:{job.id}") > 0  # ended jobs are kept a while
    with pytest.raises(UnknownJob):
        store.cancel("nope", retention=60)


def test_a_new_job_and_a_settled_batch_wake_the_driver(jobs_redis: redis.Redis) -> None:
    """Each leaves one token on ``tc:jobs:wake`` (never more than one), which the
    driver's wait between its steps takes; a duplicate settle is no news."""
    store = JobStore(jobs_redis)
    jobs_redis.delete("tc:jobs:wake")
    assert not store.wait_for_news(0.01)
    job, _ = store.submit(spec_of({"levels": "0-2"}))
    store.submit(spec_of({"levels": "1-2"}))
    assert jobs_redis.llen("tc:jobs:wake") == 1
    assert store.wait_for_news(0.01)
    assert not store.wait_for_news(0.01)
    store.settle(job.id, 0, done=1, skipped=0, failed=0)
    assert store.wait_for_news(0.01)
    store.settle(job.id, 0, done=1, skipped=0, failed=0)
    assert not store.wait_for_news(0.01)


def test_settle_counts_a_batch_once(jobs_redis: redis.Redis) -> None:
    store = JobStore(jobs_redis)
    job, _ = store.submit(spec_of({"levels": "0-2"}))
    assert store.settle(job.id, 0, done=1, skipped=1, failed=0)
    assert not store.settle(job.id, 0, done=1, skipped=1, failed=0)
    record = store.get(job.id)
    assert (record.done, record.skipped, record.failed) == (1, 1, 0)
    assert record.started is not None
    progress = record.progress(now=record.started + 2)
    assert progress["tilesPerSecond"] == 0.5 and progress["eta"] == 16.0


def base_level_spec() -> JobSpec:
    """Level 4 (native) in 4 x 4 blocks: 6 batches, no phases."""
    return parse_job_request("src", {"levels": "4"}, METADATA, 1, Settings(job_block=4))


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def __call__(self, name: str, payload: dict[str, Any]) -> None:
        self.sent.append(payload)


def test_driver_keeps_a_window_retries_expired_leases_and_finishes(
    jobs_redis: redis.Redis,
) -> None:
    from tilecast.workers.precache import JobDriver

    store = JobStore(jobs_redis)
    job, _ = store.submit(base_level_spec())  # 6 batches of 4 x 4 tiles
    send = Recorder()
    driver = JobDriver(store, SETTINGS, send, "test-driver")
    assert driver.step()
    assert not JobDriver(store, SETTINGS, Recorder(), "other").step()  # one leader
    assert [p["batch"] for p in send.sent] == [0, 1, 2]  # the window
    # Batch 0 finishes; batch 1's worker dies (its lease expires).
    store.settle(job.id, 0, done=1, skipped=0, failed=0)
    jobs_redis.zadd(leases_key(job.id), {"1": 0})
    driver.step()
    assert [(p["batch"], p["attempt"]) for p in send.sent[3:]] == [(1, 2), (3, 1)]
    # Batch 1 is lost again: after its last attempt it is recorded as failed.
    jobs_redis.zadd(leases_key(job.id), {"1": 0})
    driver.step()
    record = store.get(job.id)
    assert record.failed == 16 and store.errors(job.id)[0]["batch"] == 1
    for index in (2, 3, 4):
        store.settle(job.id, index, done=1, skipped=0, failed=0)
    driver.step()
    assert store.get(job.id).state == RUNNING
    store.settle(job.id, 5, done=1, skipped=0, failed=0)
    driver.step()
    assert store.get(job.id).state == FINISHED
    assert job.id not in store.active()
    assert sorted({p["batch"] for p in send.sent}) == [0, 1, 2, 3, 4, 5]


def test_driver_resumes_from_redis_alone(jobs_redis: redis.Redis) -> None:
    """A new driver (after every process was killed) dispatches only what is unsettled."""
    from tilecast.workers.precache import JobDriver

    store = JobStore(jobs_redis)
    job, _ = store.submit(base_level_spec())
    first = Recorder()
    JobDriver(store, SETTINGS, first, "a").step()
    store.settle(job.id, 0, done=1, skipped=0, failed=0)
    store.settle(job.id, 2, done=6, skipped=0, failed=0)
    jobs_redis.delete("tc:jobs:driver")  # the first driver died; its lock expired
    now = time.time() + SETTINGS.job_queue_lease + 1
    second = Recorder()
    driver = JobDriver(store, SETTINGS, second, "b")
    assert store.hold_driver_lock("b", 5)
    driver.advance(job.id, now)
    assert sorted(p["batch"] for p in second.sent) == [1, 3, 4]


def test_driver_waits_at_phase_boundaries(jobs_redis: redis.Redis) -> None:
    from tilecast.workers.precache import JobDriver

    store = JobStore(jobs_redis)
    job, _ = store.submit(spec_of({"levels": "0-4"}, LARGE))  # raw 4: batches 0-15, 3: 16-31
    send = Recorder()
    driver = JobDriver(store, SETTINGS, send, "c")

    def sent() -> list[int]:
        return [p["batch"] for p in send.sent]

    driver.step()
    assert sent() == [0, 1, 2]
    for index in range(15):
        store.settle(job.id, index, done=0, skipped=0, failed=0)
        driver.step()
    assert sent() == list(range(16))  # batch 16 waits for 15, the last of level 4
    store.settle(job.id, 15, done=0, skipped=0, failed=0)
    driver.step()
    assert sent() == list(range(19))
    assert plan(job.spec).batch(16).kind == RAW and plan(job.spec).batch(16).z == 3
