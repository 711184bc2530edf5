"""A third-party reader, installed as a site would install it, served end to end.

The toy package of tests/data/toyreader (a made-up format, TOYRGB, with a Reader
registered in the ``tilecast.readers`` entry point group) is pip-installed into a
temporary folder -- never into the shared environment -- that only this module's own
stack (its Redis, workers and api) has on its PYTHONPATH: the session's workers must
not be the ones that answer, since they lack the plugin.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO, ApiServer, launch_api, launch_worker
from tests.integration.test_bad_input import assert_error
from tilecast import procs
from tilecast.redis_server import RedisServer

pytestmark = pytest.mark.integration

TOY_PACKAGE = REPO / "tests" / "data" / "toyreader"
WIDTH, HEIGHT = 600, 300  # three tiles across, two down; levels 3


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy package installed by pip into its own folder, built as pip builds for
    users (an isolated build environment, as tests/integration/test_wheel.py does) from
    a copy, so that the build leaves nothing in the repository."""
    work = tmp_path_factory.mktemp("toyreader")
    source = work / "src"
    shutil.copytree(TOY_PACKAGE, source)
    site = work / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--target", str(site), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    assert any(site.glob("tilecast_toyreader-*.dist-info/entry_points.txt"))
    return site


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory: pytest.TempPathFactory, toy_site: Path) -> Path:
    return tmp_path_factory.mktemp("toy-sources")


def toy_module(site: Path) -> Any:
    """The installed toyreader module, for its writer (imported from ``site``)."""
    sys.path.insert(0, str(site))
    try:
        import toyreader

        return toyreader
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("toyreader", None)


@pytest.fixture(scope="module")
def toy_stack(
    tmp_path_factory: pytest.TempPathFactory, toy_site: Path, toy_root: Path
) -> Iterator[ApiServer]:
    """Redis, workers and an api of their own, with the toy package on the path."""
    redis_server = RedisServer(tmp_path_factory.mktemp("toy-redis"), maxmemory="256mb")
    redis_server.start()
    env = procs.child_environment(
        {
            "TILECAST_CACHE_URL": redis_server.url,
            "TILECAST_SOURCE_ROOTS": str(toy_root),
            "TILECAST_LOG_LEVEL": "INFO",
            "TILECAST_AUTO_PRECACHE": "0",
            "TILECAST_DECODE_CACHE_DIR": str(toy_root.parent / "toy-decoded"),
            "PYTHONPATH": f"{REPO}:{toy_site}",
            "PYTHONUNBUFFERED": "1",
        },
        keep_tilecast=False,
    )
    logs = tmp_path_factory.mktemp("toy-logs")
    worker = None
    try:
        worker = launch_worker(env, logs, "toy-worker", concurrency=1)
        api = launch_api(env, logs, "toy-api")
        try:
            yield api
        finally:
            api.http.close()
            api.child.stop()
    finally:
        if worker is not None:
            worker.stop()
        redis_server.stop()


def gradient() -> np.ndarray:
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    # Smooth, so that any fair 2 x 2 reduction is the mean within rounding.
    red, green = xs * 255 // (WIDTH - 1), ys * 255 // (HEIGHT - 1)
    return np.stack([red, green, (red + green) // 2], axis=-1).astype(np.uint8)


def png_pixels(data: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(image)


def test_a_plugin_reader_serves_metadata_and_tiles(
    toy_stack: ApiServer, toy_site: Path, toy_root: Path
) -> None:
    pixels = gradient()
    path = toy_root / "gradient.img"  # no extension any reader knows: the content decides
    toy_module(toy_site).write_toy(str(path), pixels)
    source = toy_stack.register(path)

    meta = toy_stack.get(f"/item/{source}/tiles")
    assert meta.status_code == 200, meta.text
    body = meta.json()
    assert (body["sizeX"], body["sizeY"], body["levels"]) == (WIDTH, HEIGHT, 3)
    assert (body["tileWidth"], body["tileHeight"]) == (256, 256)
    assert body["dtype"] == "uint8" and body["bandCount"] == 3

    # Native tiles: every stored pixel exactly. Tiles are whole (as large_image's): the
    # edge tile holds its 88 x 44 pixels of content at the top left, padding after.
    for x, y in [(0, 0), (2, 1)]:
        tile = toy_stack.get(f"/item/{source}/tiles/zxy/2/{x}/{y}?encoding=PNG")
        assert tile.status_code == 200, tile.text
        got = png_pixels(tile.content)
        assert got.shape[:2] == (256, 256)
        want = pixels[y * 256 : (y + 1) * 256, x * 256 : (x + 1) * 256]
        assert want.shape[:2] == ((256, 256) if x == 0 else (44, 88))
        assert np.array_equal(got[: want.shape[0], : want.shape[1], :3], want)

    # A synthesized level, from the plugin's native tiles: each pixel the mean of 2x2.
    low = toy_stack.get(f"/item/{source}/tiles/zxy/1/0/0?encoding=PNG")
    assert low.status_code == 200, low.text
    got = png_pixels(low.content)[:150, :, :3].astype(int)
    halved = pixels[:300, :512].reshape(150, 2, 256, 2, 3).mean(axis=(1, 3))
    assert np.abs(got - halved).max() <= 1


def test_a_recognised_unreadable_file_is_422(
    toy_stack: ApiServer, toy_site: Path, toy_root: Path
) -> None:
    path = toy_root / "cut.img"
    path.write_bytes(toy_module(toy_site).MAGIC + b"600 300\n" + bytes(1000))
    response = toy_stack.http.post(toy_stack.url("/sources"), json={"path": str(path)}, timeout=60)
    body = assert_error(response, 422, "unsupported_image")
    assert "size does not match" in body["message"]
