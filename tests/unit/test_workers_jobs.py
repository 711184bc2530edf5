"""A job's batches run in-process (workers/precache.py run_batch) against the test Redis:
skipping what is cached or in flight elsewhere, taking over a killed attempt's markers,
settling once, stopping for a cancelled job, synthesizing unstyled levels ahead.

Everything lives in database 9 of the test server, away from the session worker's job
driver (database 0).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tilecast.common.inflight import claim, inflight_key
from tilecast.common.jobplan import BASE_TILES, RAW, TILES, Batch, LevelTiles, plan
from tilecast.common.jobspec import JobSpec, parse_job_request
from tilecast.common.jobstore import JobStore, tile_owner
from tilecast.common.registry import SourceRecord
from tilecast.common.settings import Settings
from tilecast.common.tiles import raw_tile_key

if TYPE_CHECKING:
    from tilecast.workers.engine import Renderer


@pytest.fixture
def jobs_renderer(redis_url: str) -> Iterator[Renderer]:
    from tilecast.workers.engine import Renderer

    settings = Settings(cache_url=redis_url.rsplit("/", 1)[0] + "/9", tile_ttl=600).resolved()
    renderer = Renderer(settings)
    renderer.cache_client.flushdb()
    yield renderer
    renderer.cache_client.flushdb()
    renderer.close()


def submit(renderer: Renderer, path: Path, args: dict[str, str]) -> tuple[JobStore, str, JobSpec]:
    from tilecast.workers.describe import describe_path

    source = uuid.uuid4().hex[:24]
    metadata = describe_path(str(path))
    renderer.registry.add(SourceRecord(source, str(path), path.name, metadata))
    generation = renderer.registry.generation(source) or 0
    spec = parse_job_request(source, args, metadata, generation, renderer.settings)
    store = JobStore(renderer.state)
    job, _ = store.submit(spec)
    return store, job.id, spec


def test_a_batch_renders_skips_and_settles_once(
    jobs_renderer: Renderer, images: dict[str, Path]
) -> None:
    from tilecast.workers.precache import run_batch

    r = jobs_renderer
    store, job_id, spec = submit(r, images["pyramid"], {"levels": "4", "region": "0,0,1024,256"})
    batch = plan(spec).batch(0)
    assert batch.kind == TILES and len(batch.tiles) == 4
    keys = [t.key(spec.generation) for t in batch.tile_requests(spec)]
    r.cache.put(keys[0], b"cached already")
    # Tile 1 is being rendered by someone else (a viewer's miss).
    assert claim(r.state, keys[1], "viewer", 60)
    # Tile 2's marker was left by a killed attempt of this very batch: taken over.
    r.state.set(inflight_key(keys[2]), tile_owner(job_id, 0))
    outcome = run_batch(r, store, r.settings, job_id, 0)
    assert outcome is not None
    assert (outcome.rendered, outcome.skipped, outcome.failed) == (2, 2, 0)
    assert r.cache.get(keys[0]) == b"cached already"
    assert r.cache.get(keys[1]) is None  # the viewer's render will write it
    assert all(r.cache.exists(key) for key in keys[2:])
    assert not r.state.exists(inflight_key(keys[2]))  # announced
    record = store.get(job_id)
    assert (record.done, record.skipped, record.renders) == (4, 2, 2)
    assert run_batch(r, store, r.settings, job_id, 0) is None  # settled: not again
    assert store.get(job_id).renders == 2


def test_a_cancelled_job_runs_nothing(jobs_renderer: Renderer, images: dict[str, Path]) -> None:
    from tilecast.workers.precache import run_batch

    r = jobs_renderer
    store, job_id, _spec = submit(r, images["pyramid"], {"levels": "4"})
    store.cancel(job_id, retention=60)
    assert run_batch(r, store, r.settings, job_id, 0) is None
    assert store.get(job_id).renders == 0


def test_unstyled_levels_are_synthesized_ahead(
    jobs_renderer: Renderer, images: dict[str, Path]
) -> None:
    """A raw batch caches the unstyled tiles of a level the file lacks; on a level the
    file has, it does nothing. (Level 3 of these images has too few tiles for a plan to
    synthesize it ahead, so the batch is made by hand.)"""
    from tilecast.workers.precache import _BatchRunner

    r = jobs_renderer
    for name, synthesized in (("single", True), ("pyramid", False)):
        store, job_id, spec = submit(r, images[name], {"levels": "3"})
        assert {b.kind for b in plan(spec).batches()} == {TILES}
        batch = Batch(0, RAW, 3, 0, ((0, 0), (1, 0)))
        store.dispatched(job_id, 0, lease_until=1e12)
        outcome = _BatchRunner(r, store, r.settings, job_id, batch, spec).run()
        assert (outcome.rendered, outcome.skipped, outcome.failed) == (0, 0, 0)
        keys = [raw_tile_key(spec.source, spec.generation, 0, 3, x, 0) for x in (0, 1)]
        assert [bool(r.cache_client.exists(key)) for key in keys] == [synthesized] * 2, name


def test_base_batches_read_each_base_tile_once_for_all_levels(
    jobs_renderer: Renderer, images: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A base-tiles batch renders the base level's styled tiles, then makes the level
    under them (cached unstyled where the file lacks it) and its styled tiles, reading
    every base tile from the file once; where the file has the level under, it reads
    that level's tiles instead of synthesizing them."""
    from tilecast.workers.precache import _BatchRunner
    from tilecast.workers.synthesis import RawTiles

    reads: list[tuple[int, int, int, int]] = []
    read_file = RawTiles._read_file

    def counted(self: RawTiles, z: int, x: int, y: int, frame: int) -> Any:
        reads.append((frame, z, x, y))
        return read_file(self, z, x, y, frame)

    monkeypatch.setattr(RawTiles, "_read_file", counted)
    r = jobs_renderer
    for name, synthesized in (("single", True), ("pyramid", False)):
        reads.clear()
        store, job_id, spec = submit(r, images[name], {"levels": "3-4"})
        tiles = ((0, 0), (1, 0), (2, 0), (3, 0), (0, 1), (1, 1), (2, 1), (3, 1))
        under = ((0, 0), (1, 0))
        batch = Batch(0, BASE_TILES, 4, 0, tiles, (LevelTiles(3, under, True),))
        store.dispatched(job_id, 0, lease_until=1e12)
        outcome = _BatchRunner(r, store, r.settings, job_id, batch, spec).run()
        assert (outcome.rendered, outcome.skipped, outcome.failed) == (10, 0, 0), name
        expected = [(0, 4, x, y) for x, y in tiles]
        expected += [] if synthesized else [(0, 3, x, y) for x, y in under]
        assert sorted(reads) == sorted(expected), name
        styled = [t.key(spec.generation) for t in batch.all_tile_requests(spec)]
        assert len(styled) == 10 and all(r.cache.exists(key) for key in styled), name
        raw = [raw_tile_key(spec.source, spec.generation, 0, 3, x, y) for x, y in under]
        assert [bool(r.cache_client.exists(key)) for key in raw] == [synthesized] * 2, name
