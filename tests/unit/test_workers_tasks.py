"""The Celery tasks (eager) against a real Redis: cache writes, completions, errors, stats."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from celery import Task

from tests.unit.conftest import register_source
from tilecast.common import counters, taskprotocol
from tilecast.common.encoding import EncodingOptions
from tilecast.common.inflight import claim, is_inflight
from tilecast.common.keys import describe_key
from tilecast.common.taskprotocol import (
    TASK_DESCRIBE_SOURCE,
    TASK_RENDER_THUMBNAIL,
    TASK_RENDER_TILE,
    describe_source_payload,
    render_thumbnail_payload,
    render_tile_payload,
)
from tilecast.common.tiles import ThumbnailRequest, TileRequest
from tilecast.workers import process_renderer, tasks
from tilecast.workers.celeryapp import app
from tilecast.workers.engine import Renderer
from tilecast.workers.sources.tiffdir import TiffFile


def completions(pubsub: redis.client.PubSub, key: str, wait: float = 2.0) -> list[dict]:
    found = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message and message["type"] == "message":
            body = json.loads(message["data"])
            if body["key"] == key:
                found.append(body)
                wait = 0.2  # drain briefly for duplicates, then stop
                deadline = min(deadline, time.monotonic() + wait)
    return found


def run(task: Task, payload: object) -> None:
    """``task`` run eagerly. Eager ``.apply()`` stores a task's exception in its result
    instead of raising it: a task that failed fails the test here."""
    result = task.apply(args=[payload])
    assert result.successful(), result.traceback
    assert result.result is None  # every task reports through Redis, never a return value


def test_the_app_registers_the_contract_names() -> None:
    named = {value for name, value in vars(taskprotocol).items() if name.startswith("TASK_")}
    assert {TASK_RENDER_TILE, TASK_RENDER_THUMBNAIL, TASK_DESCRIBE_SOURCE} <= named
    assert named <= set(app.tasks)
    assert "tilecast.workers.tasks" in app.conf.include


def test_a_worker_process_registers_every_task_from_the_apps_includes() -> None:
    """What a fresh worker loads (the app and its ``include``), not what this test session
    happened to import: a task module nobody imports is a task no worker runs."""
    code = (
        "from tilecast.common import taskprotocol\n"
        "from tilecast.workers.celeryapp import app\n"
        "app.loader.import_default_modules()\n"
        "named = {v for k, v in vars(taskprotocol).items() if k.startswith('TASK_')}\n"
        "print(','.join(sorted(named - set(app.tasks))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == ""


def test_render_tile_writes_the_key_and_announces(
    installed: Renderer, done: redis.client.PubSub, images: dict[str, Path]
) -> None:
    source_id = register_source(installed, images["pyramid"])
    request = TileRequest(source_id, 4, 3, 2)
    key = request.key(7)
    assert claim(installed.state, key, "test", 30)
    before = counters.read(installed.state)
    run(tasks.render_tile, render_tile_payload(request, 7))
    assert completions(done, key) == [{"key": key, "error": None}]
    assert not is_inflight(installed.state, key)
    # A native JPEG tile asked as JPEG: the file's own bytes.
    with TiffFile(str(images["pyramid"])) as tiff:
        base = tiff.directories[0]
        index = 3 + 2 * 12
        frame = tiff.read(int(base.tile_offsets[index]), int(base.tile_byte_counts[index]))
    served = installed.cache.get(key)
    assert served is not None and frame[-500:-2] in served
    assert installed.cache_client.ttl(key) > 0
    after = counters.read(installed.state)
    assert after.get(counters.TILES_RENDERED, 0) - before.get(counters.TILES_RENDERED, 0) == 1
    assert after.get(counters.RAW_TILES_READ, 0) - before.get(counters.RAW_TILES_READ, 0) == 1

    # A duplicate only announces.
    run(tasks.render_tile, render_tile_payload(request, 7))
    assert completions(done, key) == [{"key": key, "error": None}]
    again = counters.read(installed.state)
    assert again.get(counters.TILES_RENDERED, 0) == after.get(counters.TILES_RENDERED, 0)


def test_styled_and_synthesized_tiles(
    installed: Renderer, done: redis.client.PubSub, images: dict[str, Path]
) -> None:
    source_id = register_source(installed, images["single"])
    request = TileRequest(
        source_id, 0, 0, 0, style='{"band":2,"palette":"#0f0"}', encoding=EncodingOptions("PNG")
    )
    before = counters.read(installed.state)
    run(tasks.render_tile, render_tile_payload(request, 1))
    assert completions(done, request.key(1))[0]["error"] is None
    data = installed.cache.get(request.key(1))
    assert data is not None and data[:8] == b"\x89PNG\r\n\x1a\n"
    after = counters.read(installed.state)
    synthesized = after.get(counters.RAW_TILES_SYNTHESIZED, 0) - before.get(
        counters.RAW_TILES_SYNTHESIZED, 0
    )
    assert synthesized == 33


@pytest.mark.parametrize(
    ("z", "x", "y", "code"),
    [(9, 0, 0, "tile_out_of_range"), (4, 12, 0, "tile_out_of_range"), (0, 0, 0, "unknown_source")],
)
def test_errors_are_announced(
    installed: Renderer,
    done: redis.client.PubSub,
    images: dict[str, Path],
    z: int,
    x: int,
    y: int,
    code: str,
) -> None:
    source_id = (
        uuid.uuid4().hex[:24]
        if code == "unknown_source"
        else register_source(installed, images["pyramid"])
    )
    request = TileRequest(source_id, z, x, y)
    before = counters.read(installed.state).get(counters.RENDER_ERRORS, 0)
    run(tasks.render_tile, render_tile_payload(request, 1))
    [completion] = completions(done, request.key(1))
    assert completion["error"]["error"] == code
    assert installed.cache.get(request.key(1)) is None
    assert counters.read(installed.state).get(counters.RENDER_ERRORS, 0) == before + 1


def test_a_corrupt_file_fails_its_tile_and_the_worker_goes_on(
    installed: Renderer, done: redis.client.PubSub, images: dict[str, Path], tmp_path: Path
) -> None:
    damaged = tmp_path / "damaged.tiff"
    data = bytearray(images["pyramid"].read_bytes())
    with TiffFile(str(images["pyramid"])) as tiff:
        base = tiff.directories[0]
        offset, count = int(base.tile_offsets[0]), int(base.tile_byte_counts[0])
    data[offset : offset + count] = bytes(count)
    damaged.write_bytes(bytes(data))
    bad = TileRequest(register_source(installed, damaged), 4, 0, 0)
    run(tasks.render_tile, render_tile_payload(bad, 1))
    [completion] = completions(done, bad.key(1))
    assert completion["error"]["error"] == "unsupported_image"
    assert str(damaged) not in completion["error"]["message"]
    assert completion["error"]["message"].startswith("TIFF: ")  # the format it was read as
    good = TileRequest(bad.source, 4, 1, 0, encoding=EncodingOptions("PNG"))
    run(tasks.render_tile, render_tile_payload(good, 1))
    assert completions(done, good.key(1))[0]["error"] is None


def test_unexpected_failures_become_render_failed(
    installed: Renderer,
    done: redis.client.PubSub,
    images: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def explode(*_args: object) -> bytes:
        raise RuntimeError("boom in /secret/internal/path")

    monkeypatch.setattr(installed, "render_tile", explode)
    request = TileRequest(register_source(installed, images["png"]), 0, 0, 0)
    run(tasks.render_tile, render_tile_payload(request, 1))
    [completion] = completions(done, request.key(1))
    assert completion["error"]["error"] == "render_failed"
    assert "secret" not in completion["error"]["message"]


def test_render_thumbnail(
    installed: Renderer, done: redis.client.PubSub, images: dict[str, Path]
) -> None:
    request = ThumbnailRequest(register_source(installed, images["deflate"]), 64, 64)
    before = counters.read(installed.state).get(counters.THUMBNAILS_RENDERED, 0)
    run(tasks.render_thumbnail, render_thumbnail_payload(request, 3))
    assert completions(done, request.key(3)) == [{"key": request.key(3), "error": None}]
    data = installed.cache.get(request.key(3))
    assert data is not None and data[:2] == b"\xff\xd8"
    assert counters.read(installed.state).get(counters.THUMBNAILS_RENDERED, 0) == before + 1


def test_describe_source_registers_the_file(
    installed: Renderer, done: redis.client.PubSub, images: dict[str, Path]
) -> None:
    source_id = uuid.uuid4().hex[:24]
    payload = describe_source_payload(source_id, str(images["lzw"]), describe_key(source_id))
    run(tasks.describe_source, payload)
    assert completions(done, describe_key(source_id))[0]["error"] is None
    record = installed.registry.get(source_id)
    assert record.path == str(images["lzw"]) and record.name == "lzw.tiff"
    assert record.metadata["sizeX"] == 1000 and record.metadata["levels"] == 3
    assert installed.registry.generation(source_id) == 1
    # A duplicate dispatch does not bump the generation.
    run(tasks.describe_source, payload)
    assert completions(done, describe_key(source_id))[0]["error"] is None
    assert installed.registry.generation(source_id) == 1


def test_describe_source_reports_unreadable_files(
    installed: Renderer, done: redis.client.PubSub, wk_images: dict[str, Path]
) -> None:
    source_id = uuid.uuid4().hex[:24]
    key = describe_key(source_id)
    run(tasks.describe_source, describe_source_payload(source_id, str(wk_images["not_image"]), key))
    assert completions(done, key)[0]["error"]["error"] == "unsupported_format"
    assert not installed.registry.exists(source_id)


def test_malformed_payloads_are_dropped_without_raising(
    installed: Renderer, done: redis.client.PubSub, caplog: pytest.LogCaptureFixture
) -> None:
    """A payload the tasks cannot parse is logged and dropped: the task succeeds (no
    retry storm), writes nothing and announces nothing (no key to announce)."""
    malformed = [
        (tasks.render_tile, TASK_RENDER_TILE, {"request": {"source": "x"}}),
        (tasks.render_thumbnail, TASK_RENDER_THUMBNAIL, {}),
        (tasks.describe_source, TASK_DESCRIBE_SOURCE, {"path": "/nowhere"}),
    ]
    keys_before = set(installed.state.scan_iter(count=1000))
    before = counters.read(installed.state)
    with caplog.at_level(logging.ERROR, logger=tasks.log.name):
        for task, _name, payload in malformed:
            run(task, payload)
    dropped = [r.getMessage() for r in caplog.records if r.name == tasks.log.name]
    assert [m.split(" payload")[0] for m in dropped] == [
        f"malformed {name}" for _task, name, _payload in malformed
    ]
    assert set(installed.state.scan_iter(count=1000)) == keys_before
    assert counters.read(installed.state) == before
    assert done.get_message(timeout=0.2) is None


def test_one_renderer_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    process_renderer.use_renderer(None)
    made: list[object] = []

    class Fake:
        def __init__(self, settings: object) -> None:
            made.append(self)

    monkeypatch.setattr(process_renderer, "Renderer", Fake)
    assert tasks.get_renderer() is process_renderer.get_renderer()
    assert len(made) == 1
    process_renderer._forget_inherited_renderer()
    process_renderer.get_renderer()
    assert len(made) == 2
    process_renderer.use_renderer(None)
    assert len(made) == 2
