"""Fixtures of the worker-side unit tests (tests/unit/test_workers_*.py).

The real redis-server and the common test images come from tests/conftest.py
(``redis_url``, ``state``, ``settings``, ``images``); this adds the extra image kinds
the readers must handle and a Renderer wired to the test Redis.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import redis

from tilecast.common.registry import SourceRecord
from tilecast.common.settings import Settings

if TYPE_CHECKING:  # the engine (pyvips, numpy) loads only for the worker tests
    from tilecast.workers.engine import Renderer


@pytest.fixture(scope="session")
def wk_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Images beyond tests/images.py's set: layouts, band counts, dtypes, resolutions."""
    import pyvips

    from tilecast.sample import sample_image, write_tiff

    root = tmp_path_factory.mktemp("wk-images")
    small = sample_image(700, 500).copy_memory()
    out: dict[str, Path] = {}
    out["subifd"] = root / "subifd.tiff"
    small.tiffsave(
        str(out["subifd"]),
        tile=True,
        pyramid=True,
        subifd=True,
        compression="jpeg",
        Q=85,
        tile_width=128,
        tile_height=128,
    )
    out["bigtiff"] = write_tiff(
        small, root / "bigtiff.tiff", pyramid=True, bigtiff=True, compression="deflate"
    )
    out["inch"] = root / "inch.tiff"
    small.tiffsave(
        str(out["inch"]), tile=True, pyramid=True, compression="jpeg", xres=11.811, yres=11.811,
        resunit="inch",
    )  # fmt: skip
    out["lowres"] = root / "lowres.tiff"
    small.tiffsave(str(out["lowres"]), tile=True, compression="lzw", xres=2.835, yres=2.835)
    # Odd sizes: the last pixel of every synthesized level is only partly covered.
    out["odd_lzw"] = write_tiff(
        sample_image(1499, 999).copy_memory(), root / "odd.tiff", pyramid=False, compression="lzw"
    )
    out["gray"] = write_tiff(sample_image(600, 400, bands=1), root / "gray.tiff", pyramid=False)
    out["rgba"] = write_tiff(
        sample_image(600, 400, bands=4), root / "rgba.tiff", pyramid=False, compression="lzw"
    )
    wide = (sample_image(600, 400, bands=1).cast("float") * 200).cast("ushort")
    out["uint16"] = root / "uint16.tiff"
    wide.tiffsave(str(out["uint16"]), tile=True, compression="deflate", tile_width=256,
                  tile_height=256)  # fmt: skip
    # Two full-resolution pages: two frames (each with its own pyramid levels).
    frames = small.join(small.invert(), "vertical").copy()
    frames.set_type(pyvips.GValue.gint_type, "page-height", small.height)
    out["frames"] = root / "frames.tiff"
    frames.tiffsave(str(out["frames"]), tile=True, compression="deflate", tile_width=256,
                    tile_height=256)  # fmt: skip
    # Striped and wider than large_image's TIFF source takes: read by libvips regions.
    out["wide_striped"] = write_tiff(
        sample_image(4200, 300).copy_memory(),
        root / "wide-striped.tiff",
        pyramid=False,
        tile=False,
        compression="deflate",
    )
    out["webp"] = root / "image.webp"
    small.webpsave(str(out["webp"]), Q=90)
    out["not_image"] = root / "notes.txt"
    out["not_image"].write_text("not an image\n")
    out["garbage_tiff"] = root / "garbage.tiff"
    noise = np.random.default_rng(1).integers(0, 255, 4000, dtype=np.uint8)
    out["garbage_tiff"].write_bytes(b"II*\x00" + noise.tobytes())
    return out


@pytest.fixture
def wk_settings(redis_url: str) -> Settings:
    return Settings(cache_url=redis_url, tile_ttl=600).resolved()


@pytest.fixture
def renderer(wk_settings: Settings) -> Iterator[Renderer]:
    from tilecast.workers.engine import Renderer

    instance = Renderer(wk_settings)
    yield instance
    instance.close()


@pytest.fixture
def installed(renderer: Renderer) -> Iterator[Renderer]:
    """``renderer`` as the tasks' process Renderer, tasks run eagerly (in this process)."""
    from tilecast.workers import process_renderer, tasks  # noqa: F401  (registers the tasks)
    from tilecast.workers.celeryapp import app

    app.conf.task_always_eager = True
    process_renderer.use_renderer(renderer)
    yield renderer
    process_renderer.use_renderer(None)
    app.conf.task_always_eager = False


@pytest.fixture
def done(installed: Renderer) -> Iterator[redis.client.PubSub]:
    """A subscription to the completion channel, open before the test sends anything."""
    from tilecast.common.inflight import DONE_CHANNEL

    pubsub = installed.state.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(DONE_CHANNEL)
    pubsub.get_message(timeout=1.0)
    yield pubsub
    pubsub.close()


def register_source(renderer: Renderer, path: Path) -> str:
    """Describe ``path`` and add it to the registry under a fresh id (so tests never share
    cache keys); returns the id."""
    from tilecast.workers.describe import describe_path

    source_id = uuid.uuid4().hex[:24]
    record = SourceRecord(source_id, str(path), path.name, describe_path(str(path)))
    renderer.registry.add(record)
    return source_id


def generation_of(renderer: Renderer, source_id: str) -> int:
    """The generation ``source_id`` is registered under (workers refuse older ones)."""
    return renderer.registry.generation(source_id) or 0
