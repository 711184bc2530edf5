"""Hostile files through the real stack (issue 8): each is refused with a clear JSON
error within a bounded time -- at registration (422 ``unsupported_image``, or 400 for
what is not a file) or, when its directory is sound, at its tiles (422) -- and the
worker keeps serving other sources, cold tiles included, after each one.

The corpus is written by tests/hostile.py; its expectations are ``HOSTILE``.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import psutil
import pytest
import requests

from tests.conftest import ApiServer, Child
from tests.hostile import CONTROL, HOSTILE, SPARSE, make_hostile_files
from tests.integration.test_bad_input import assert_error

pytestmark = pytest.mark.integration

# Far above what any refusal takes (milliseconds), far below a hang.
REQUEST_TIMEOUT = 60.0
# Growth of the worker's resident memory over the whole corpus: a decoded bomb would
# cost gigabytes.
MAX_MEMORY_GROWTH = 512 * 1024 * 1024
_cold = count(20)  # a new jpegQuality per check: a new cache key, a real render


@pytest.fixture(scope="module")
def hostile(source_root: Path) -> dict[str, Path]:
    return make_hostile_files(source_root / "hostile")


@pytest.fixture(scope="module")
def control_source(api: ApiServer, images: dict[str, Path], source_root: Path) -> str:
    """A good source of this module's own, whose cold tiles prove the worker serves."""
    target = source_root / "hostile-control" / "pyramid.tiff"
    target.parent.mkdir(exist_ok=True)
    shutil.copy(images["pyramid"], target)
    return api.register(target)


@pytest.fixture(scope="module")
def worker_memory(worker: Child) -> Iterator[None]:
    before = _tree_rss(worker.proc.pid)
    yield
    growth = _tree_rss(worker.proc.pid) - before
    assert growth < MAX_MEMORY_GROWTH, f"the worker grew by {growth >> 20} MiB"


def _tree_rss(pid: int) -> int:
    process = psutil.Process(pid)
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # a pool child just recycled
            total += member.memory_info().rss
    return total


def register(api: ApiServer, path: Path) -> requests.Response:
    return api.http.post(api.url("/sources"), json={"path": str(path)}, timeout=REQUEST_TIMEOUT)


def assert_still_serving(api: ApiServer, source: str) -> None:
    quality = next(_cold)
    tile = api.get(
        f"/item/{source}/tiles/zxy/4/{quality % 12}/{quality % 8}?jpegQuality={quality}",
        timeout=REQUEST_TIMEOUT,
    )
    assert tile.status_code == 200, tile.text
    assert tile.headers["X-Tilecast-Cache"] == "miss"


@pytest.mark.usefixtures("worker_memory")
@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_file_is_refused(
    api: ApiServer, hostile: dict[str, Path], control_source: str, name: str
) -> None:
    expected = HOSTILE[name]
    response = register(api, hostile[name])
    if expected.register in (415, 422):
        code = "unsupported_format" if expected.register == 415 else "unsupported_image"
        assert_error(response, expected.register, code)
        assert str(hostile[name].parent) not in response.text  # no internal paths
    elif expected.register == 400:
        assert assert_error(response, 400, "source_refused")["parameter"] == "path"
    else:
        assert response.status_code in (200, 201), response.text
        source = response.json()["id"]
        levels = api.get(f"/item/{source}/tiles", timeout=REQUEST_TIMEOUT).json()["levels"]
        # (1, 1) of the full-resolution level: the tile every defect reaches.
        # JPEG too where the defect is in the shared tables: passed through unchecked,
        # they would reach the viewer as a broken image.
        # So too where a JPEG tile's own header disagrees with the tile size (issue 14).
        passed_through = name.startswith(("jpegtables", "tile-jpeg"))
        encodings = ("PNG", "TIFF", "JPEG") if passed_through else ("PNG", "TIFF")
        for encoding in encodings:
            tile = api.get(
                f"/item/{source}/tiles/zxy/{levels - 1}/1/1?encoding={encoding}",
                timeout=REQUEST_TIMEOUT,
            )
            assert_error(tile, expected.tile or 422, "unsupported_image")
            assert str(hostile[name].parent) not in tile.text
    assert_still_serving(api, control_source)


def test_control_file_serves(api: ApiServer, hostile: dict[str, Path]) -> None:
    """The corpus's builder writes sound TIFFs: the defects alone are refused."""
    source = api.register(hostile[CONTROL])
    for x, y in [(0, 0), (1, 1)]:
        tile = api.get(f"/item/{source}/tiles/zxy/1/{x}/{y}?encoding=PNG", timeout=REQUEST_TIMEOUT)
        assert tile.status_code == 200 and tile.headers["Content-Type"] == "image/png"
    thumbnail = api.get(f"/item/{source}/tiles/thumbnail?width=128", timeout=REQUEST_TIMEOUT)
    assert thumbnail.status_code == 200


def test_sparse_tiles_are_blank(
    api: ApiServer, hostile: dict[str, Path], control_source: str
) -> None:
    """Zero TileByteCounts are a sparse file's absent tiles (libtiff, large_image): served
    blank, never an error."""
    source = api.register(hostile[SPARSE])
    tile = api.get(f"/item/{source}/tiles/zxy/1/1/1?encoding=PNG", timeout=REQUEST_TIMEOUT)
    assert tile.status_code == 200 and tile.headers["Content-Type"] == "image/png"
    assert_still_serving(api, control_source)


# -- issue 14: codec headers declaring another size than the tile's --------------------------

CODEC_HEADER_FILES = sorted(
    name
    for name in HOSTILE
    if name.startswith(("tile-jpeg-", "tile-png-", "tile-webp-", "tile-j2k-", "tile-jp2-"))
)
# A refusal reads a tile's header: milliseconds. Loose, for a loaded machine, and far
# below the seconds (and gigabytes) a decode of the declared size took.
MAX_REFUSAL_SECONDS = 1.0
# Growth of any worker process's peak resident memory (VmHWM) over these files: one
# decoded 30000^2 RGB tile would be 2.6 GB.
MAX_PEAK_GROWTH = 256 * 1024 * 1024


def _peaks(pid: int) -> dict[int, int]:
    """Peak resident bytes (VmHWM) of the worker and every process under it."""
    process = psutil.Process(pid)
    peaks = {}
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(OSError, psutil.NoSuchProcess):
            status = Path(f"/proc/{member.pid}/status").read_text()
            line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
            peaks[member.pid] = int(line.split()[1]) * 1024
    return peaks


@pytest.mark.parametrize("name", CODEC_HEADER_FILES)
def test_codec_header_is_checked_before_decoding(
    api: ApiServer, worker: Child, hostile: dict[str, Path], control_source: str, name: str
) -> None:
    """The tile is a 422 naming its header's size, in well under a second, and no worker
    process's peak memory moves: nothing was decoded, nor passed through as a 200."""
    source = api.register(hostile[name])
    levels = api.get(f"/item/{source}/tiles", timeout=REQUEST_TIMEOUT).json()["levels"]
    before = _peaks(worker.proc.pid)
    assert before, "the worker's processes are readable"
    for encoding in ("PNG", "JPEG"):
        started = time.monotonic()
        tile = api.get(
            f"/item/{source}/tiles/zxy/{levels - 1}/1/1?encoding={encoding}",
            timeout=REQUEST_TIMEOUT,
        )
        elapsed = time.monotonic() - started
        body = assert_error(tile, 422, "unsupported_image")
        assert "header declares" in body["message"] and "in a 256x256 tile" in body["message"]
        assert elapsed < MAX_REFUSAL_SECONDS, f"{encoding}: {elapsed:.2f} s"
    after = _peaks(worker.proc.pid)
    baseline = max(before.values())
    for pid, peak in after.items():
        grown = peak - before.get(pid, baseline)
        assert grown < MAX_PEAK_GROWTH, f"process {pid} peaked {grown >> 20} MiB higher"
    assert_still_serving(api, control_source)


def test_small_png_declaring_a_huge_canvas(
    api: ApiServer, worker: Child, hostile: dict[str, Path], source_root: Path, control_source: str
) -> None:
    """20000^2 declared (1.2 GB decoded, within TILECAST_MAX_DECODE_DISK_BYTES), a few rows
    stored: it registers; its one shared decode (workers/sources/decoded.py) meets the end
    of the data at once: a 422 in well under a second, no worker's peak memory moves, and
    nothing is left on disk."""
    source = api.register(hostile["png-canvas-20000.png"])
    levels = api.get(f"/item/{source}/tiles", timeout=REQUEST_TIMEOUT).json()["levels"]
    before = _peaks(worker.proc.pid)
    started = time.monotonic()
    tile = api.get(f"/item/{source}/tiles/zxy/{levels - 1}/3/3", timeout=REQUEST_TIMEOUT)
    elapsed = time.monotonic() - started
    assert "cannot be decoded" in assert_error(tile, 422, "unsupported_image")["message"]
    assert elapsed < MAX_REFUSAL_SECONDS, f"{elapsed:.2f} s"
    after = _peaks(worker.proc.pid)
    baseline = max(before.values())
    for pid, peak in after.items():
        grown = peak - before.get(pid, baseline)
        assert grown < MAX_PEAK_GROWTH, f"process {pid} peaked {grown >> 20} MiB higher"
    decoded = source_root.parent / "decoded"
    assert not list(decoded.glob("*.tif")) and not list(decoded.glob("*.partial"))
    assert_still_serving(api, control_source)
