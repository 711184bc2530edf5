"""workers/girder/: Girder items read the cheapest way available, against a stand-in for
Girder's REST endpoints served over real HTTP (tests/unit/girder_standin.py): item
resolution, HTTP range reads through the block cache, the download cache for servers
that ignore Range, the direct assetstore path, and error mapping."""

from __future__ import annotations

import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from tests.unit.girder_standin import (
    API_KEY,
    SECRET,
    GirderStandin,
    closed_port,
    running_standin,
)
from tilecast.common.errors import GirderUnavailable, UnknownSource, UnsupportedImage
from tilecast.common.girder import girder_source_path
from tilecast.common.settings import Settings
from tilecast.workers.girder import forget_readers, open_girder_file
from tilecast.workers.girder.opening import GirderReader
from tilecast.workers.girder.pathmap import map_path, parse_path_map
from tilecast.workers.remote.blocks import BlockCache
from tilecast.workers.sources import open_source
from tilecast.workers.sources.tiffdir import DIRECTORY_READAHEAD, TiffFile

KIB = 1024


def noise_pyramid(path: Path, side: int, compression: str) -> Path:
    import pyvips

    noise = pyvips.Image.gaussnoise(side, side, sigma=60, mean=128).cast("uchar")
    image = noise.bandjoin([noise.rot180(), noise.fliphor()]).copy(interpretation="srgb")
    image.tiffsave(str(path), tile=True, pyramid=True, compression=compression, bigtiff=True)
    return path


@pytest.fixture(scope="module")
def big_tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JPEG pyramid of noise, tens of megabytes: what a first tile must not download."""
    return noise_pyramid(tmp_path_factory.mktemp("girder-big") / "big.tiff", 4096, "jpeg")


@pytest.fixture(scope="module")
def big_deflate_tiff(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deflate pyramid: its tiles are decoded by libvips reading through the block cache."""
    return noise_pyramid(tmp_path_factory.mktemp("girder-big") / "deflate.tiff", 2048, "deflate")


@pytest.fixture
def girder() -> Iterator[GirderStandin]:
    with running_standin() as server:
        yield server


@pytest.fixture
def no_range_girder() -> Iterator[GirderStandin]:
    with running_standin(ranges=False) as server:
        yield server


# The suite's Redis (never the machine's): where readers share blocks.
TEST_REDIS: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _test_redis(redis_url: str, state: redis.Redis) -> Iterator[None]:
    TEST_REDIS["url"] = redis_url
    yield
    for key in state.scan_iter(match="tc:girder:*"):
        state.delete(key)


def girder_settings(girder: GirderStandin, tmp_path: Path, **changes: object) -> Settings:
    base = Settings(
        cache_url=TEST_REDIS["url"],
        girder_url=girder.api_url,
        girder_api_key=API_KEY,
        girder_secret=SECRET,
        girder_timeout=5.0,
        # Smaller than the test images, so reads span several blocks.
        girder_block_size=64 * KIB,
        girder_download_dir=str(tmp_path / "downloads"),
    )
    return replace(base, **changes).resolved()  # type: ignore[arg-type]


@pytest.fixture
def readers() -> Iterator[list[GirderReader]]:
    made: list[GirderReader] = []
    yield made
    for reader in made:
        reader.close()


def new_reader(readers: list[GirderReader], settings: Settings) -> GirderReader:
    reader = GirderReader(settings)
    readers.append(reader)
    return reader


def directory_count(path: Path) -> int:
    with TiffFile(str(path)) as tiff:
        return len(tiff.directories) + sum(len(d.subifds) for d in tiff.directories)


def assert_same_tiles(remote_file: object, path: Path, *, limit: int = 4) -> None:
    with (
        open_source(str(path), Settings()) as local,
        open_source(remote_file, Settings()) as remote,
    ):  # type: ignore[arg-type]
        assert remote.metadata == local.metadata
        for z in range(local.levels):
            if not local.is_native_level(z):
                continue
            across, down = local.grid.tiles_at(z)
            for x, y in list({(0, 0), (across - 1, down - 1), (across // 2, down // 2)})[:limit]:
                assert remote.read_tile(z, x, y).to_bytes() == local.read_tile(z, x, y).to_bytes()


# -- range reads ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pyramid", "deflate", "png"])
def test_tiles_read_by_range_requests_equal_local_tiles(
    name: str,
    girder: GirderStandin,
    images: dict[str, Path],
    tmp_path: Path,
    readers: list[GirderReader],
) -> None:
    path = images[name]
    item = girder.add_item(f"{name} item", (path.name, path))
    opened = new_reader(readers, girder_settings(girder, tmp_path)).open(item)
    assert opened.how == "range" and opened.item_name == f"{name} item"
    assert opened.file.local_path is None and opened.file.size == path.stat().st_size
    assert_same_tiles(opened.file, path)
    assert girder.full_downloads() == 0
    assert all(d.status == 206 for d in girder.downloads)


@pytest.mark.parametrize("kind", ["jpeg", "deflate"])
def test_a_first_tile_of_a_big_file_fetches_only_the_blocks_it_needs(
    kind: str,
    girder: GirderStandin,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    readers: list[GirderReader],
) -> None:
    big_tiff = request.getfixturevalue("big_tiff" if kind == "jpeg" else "big_deflate_tiff")
    block = 64 * KIB
    size = big_tiff.stat().st_size
    item = girder.add_item("big", ("big.tiff", big_tiff))
    reader = new_reader(readers, girder_settings(girder, tmp_path, girder_block_size=block))
    opened = reader.open(item)
    with open_source(opened.file, Settings()) as source:
        source.read_tile(0, 0, 0)
        top = source.levels - 1
        source.read_tile(top, 5, 7)
        sent = girder.bytes_sent()
        # Directories are read with DIRECTORY_READAHEAD, large beside this small file.
        bound = size / 20 + directory_count(big_tiff) * DIRECTORY_READAHEAD
        assert sent < min(bound, size / 3), f"{sent} of {size} bytes fetched for two tiles"
        for download in girder.downloads:  # aligned blocks, coalesced per run
            assert download.range is not None
            start, end = (int(v) for v in download.range.removeprefix("bytes=").split("-"))
            assert start % block == 0 and ((end + 1) % block == 0 or end == size - 1)
        assert reader.blocks.stats.misses * block >= sent
        # A second read of the same tiles is served from the block cache.
        requests = len(girder.downloads)
        source.read_tile(top, 5, 7)
    with open_source(reader.open(item).file, Settings()) as again:
        again.read_tile(0, 0, 0)
    assert len(girder.downloads) == requests


def test_the_block_cache_bound_holds(
    girder: GirderStandin, big_tiff: Path, tmp_path: Path, readers: list[GirderReader]
) -> None:
    block, capacity = 32 * KIB, 8 * 32 * KIB
    item = girder.add_item("big", ("big.tiff", big_tiff))
    settings = girder_settings(
        girder, tmp_path, girder_block_size=block, girder_block_cache_bytes=capacity
    )
    reader = new_reader(readers, settings)
    with (
        open_source(reader.open(item).file, Settings()) as remote,
        open_source(str(big_tiff), Settings()) as local,
    ):
        top = remote.levels - 1
        for x in range(0, 16):
            assert remote.read_tile(top, x, 3).to_bytes() == local.read_tile(top, x, 3).to_bytes()
            assert reader.blocks.cached_bytes <= capacity
    assert reader.blocks.stats.evictions > 0


def test_a_replaced_file_is_never_read_through_its_old_blocks(
    girder: GirderStandin, images: dict[str, Path], tmp_path: Path, readers: list[GirderReader]
) -> None:
    served = tmp_path / "served.tiff"
    shutil.copyfile(images["pyramid"], served)
    item = girder.add_item("replaced", ("slide.tiff", served))
    reader = new_reader(readers, girder_settings(girder, tmp_path))
    with open_source(reader.open(item).file, Settings()) as source:
        source.read_tile(0, 0, 0)
    # Girder replaces the file's content (same file id, a new upload time).
    shutil.copyfile(images["deflate"], served)
    girder.item_files(item)[0].created = "replaced"
    assert_same_tiles(reader.open(item).file, images["deflate"])


def test_threads_reading_one_remote_source_get_the_local_tiles(
    girder: GirderStandin, big_deflate_tiff: Path, tmp_path: Path, readers: list[GirderReader]
) -> None:
    item = girder.add_item("big", ("deflate.tiff", big_deflate_tiff))
    settings = girder_settings(girder, tmp_path, girder_block_size=32 * KIB)
    opened = new_reader(readers, settings).open(item)
    failures: list[str] = []
    with (
        open_source(opened.file, Settings()) as remote,
        open_source(str(big_deflate_tiff), Settings()) as local,
    ):
        top = local.levels - 1
        barrier = threading.Barrier(8)

        def read_row(y: int) -> None:
            barrier.wait()
            for x in range(8):
                if remote.read_tile(top, x, y).to_bytes() != local.read_tile(top, x, y).to_bytes():
                    failures.append(f"{x},{y}")

        threads = [threading.Thread(target=read_row, args=(y,)) for y in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert failures == []


def test_a_directory_and_its_arrays_cost_one_request(
    girder: GirderStandin, big_tiff: Path, tmp_path: Path, readers: list[GirderReader]
) -> None:
    item = girder.add_item("big", ("big.tiff", big_tiff))
    # Blocks smaller than a directory's arrays: read piece by piece, each would cost several.
    reader = new_reader(readers, girder_settings(girder, tmp_path, girder_block_size=4 * KIB))
    with open_source(reader.open(item).file, Settings()):
        pass
    assert 1 <= len(girder.downloads) <= 1 + directory_count(big_tiff)


# -- blocks shared in the cache Redis ----------------------------------------------------------


def test_another_process_finds_the_blocks_in_redis(
    girder: GirderStandin, big_tiff: Path, tmp_path: Path, readers: list[GirderReader]
) -> None:
    item = girder.add_item("big", ("big.tiff", big_tiff))
    settings = girder_settings(girder, tmp_path)
    first = new_reader(readers, settings)
    with open_source(first.open(item).file, Settings()) as source:
        expected = source.read_tile(source.levels - 1, 3, 4).to_bytes()
    fetched = len(girder.downloads)
    # A second reader is what another worker process (or host) has: its own block cache.
    second = new_reader(readers, settings)
    with open_source(second.open(item).file, Settings()) as source:
        assert len(girder.downloads) == fetched  # the directories came from Redis
        assert source.read_tile(source.levels - 1, 3, 4).to_bytes() == expected
    assert second.shared is not None and second.shared.stats.hits > 0
    # Tiles' blocks are not shared: they would only fill the cache with file content.
    assert len(girder.downloads) == fetched + 1
    # Not shared when switched off.
    alone = new_reader(readers, replace(settings, girder_block_ttl=0))
    with open_source(alone.open(item).file, Settings()):
        pass
    assert len(girder.downloads) > fetched + 1


def test_shared_blocks_expire(
    girder: GirderStandin, images: dict[str, Path], tmp_path: Path, readers: list[GirderReader],
    state: redis.Redis,
) -> None:  # fmt: skip
    item = girder.add_item("slide", ("slide.tiff", images["pyramid"]))
    reader = new_reader(readers, girder_settings(girder, tmp_path, girder_block_ttl=600))
    reader.open(item)
    keys = list(state.scan_iter(match="tc:girder:block:*"))
    assert keys and all(0 < state.ttl(key) <= 600 for key in keys)


def test_a_replaced_file_is_never_read_from_shared_blocks(
    girder: GirderStandin, images: dict[str, Path], tmp_path: Path, readers: list[GirderReader]
) -> None:
    served = tmp_path / "served.tiff"
    shutil.copyfile(images["pyramid"], served)
    item = girder.add_item("replaced", ("slide.tiff", served))
    settings = girder_settings(girder, tmp_path)
    assert_same_tiles(new_reader(readers, settings).open(item).file, images["pyramid"])
    # Girder replaces the file's content (same file id, a new upload time); another
    # process opens it: none of the older content's blocks in Redis may be read.
    shutil.copyfile(images["deflate"], served)
    girder.item_files(item)[0].created = "replaced"
    assert_same_tiles(new_reader(readers, settings).open(item).file, images["deflate"])


def test_a_redis_outage_falls_back_to_http(
    girder: GirderStandin, images: dict[str, Path], tmp_path: Path, readers: list[GirderReader]
) -> None:
    item = girder.add_item("slide", ("slide.tiff", images["pyramid"]))
    settings = girder_settings(girder, tmp_path, cache_url=f"redis://127.0.0.1:{closed_port()}/0")
    reader = new_reader(readers, settings)
    assert_same_tiles(reader.open(item).file, images["pyramid"])
    assert reader.shared is not None
    # One failure, then Redis rests: no read waits on a Redis that is down.
    assert reader.shared.stats.failures == 1 and reader.shared.stats.hits == 0


def item_lookups(girder: GirderStandin) -> int:
    return sum(1 for r in girder.requests if r.startswith(("GET item/", "GET file/")) and
               not r.endswith("/download"))  # fmt: skip


def test_renders_of_a_registration_read_its_file_without_asking_girder_again(
    girder: GirderStandin, images: dict[str, Path], tmp_path: Path, readers: list[GirderReader]
) -> None:
    item = girder.add_item("slide", ("slide.tiff", images["pyramid"]))
    settings = girder_settings(girder, tmp_path)
    describer = new_reader(readers, settings)
    described = describer.open(item)  # describing asks Girder, always
    describer.remember_registration(item, 4)
    asked = item_lookups(girder)
    for reader in (describer, new_reader(readers, settings)):  # this process and another
        opened = reader.open(item, 4)
        assert opened.info == described.info and opened.item_name == "slide"
    assert item_lookups(girder) == asked
    # A generation nobody remembered is resolved once, then shared too.
    new_reader(readers, settings).open(item, 5)
    new_reader(readers, settings).open(item, 5)
    assert item_lookups(girder) == asked + 2  # GET item, GET item/files


def test_a_replaced_file_is_read_under_its_new_generation(
    girder: GirderStandin, images: dict[str, Path], tmp_path: Path, readers: list[GirderReader]
) -> None:
    served = tmp_path / "served.tiff"
    shutil.copyfile(images["pyramid"], served)
    item = girder.add_item("replaced", ("slide.tiff", served))
    settings = girder_settings(girder, tmp_path)
    describer = new_reader(readers, settings)
    describer.open(item)
    describer.remember_registration(item, 1)
    assert_same_tiles(new_reader(readers, settings).open(item, 1).file, images["pyramid"])
    # The plugin reports the replaced file; it is described again under generation 2.
    shutil.copyfile(images["deflate"], served)
    girder.item_files(item)[0].created = "replaced"
    describer.open(item)
    describer.remember_registration(item, 2)
    for reader in (describer, new_reader(readers, settings)):
        assert_same_tiles(reader.open(item, 2).file, images["deflate"])


def test_a_redis_outage_still_resolves_items(
    girder: GirderStandin, images: dict[str, Path], tmp_path: Path, readers: list[GirderReader]
) -> None:
    item = girder.add_item("slide", ("slide.tiff", images["pyramid"]))
    down = f"redis://127.0.0.1:{closed_port()}/0"
    reader = new_reader(readers, girder_settings(girder, tmp_path, cache_url=down))
    reader.open(item)
    reader.remember_registration(item, 1)
    assert reader.open(item, 1).info.item_id == item


# -- the block cache ------------------------------------------------------------------------


def _fetcher(calls: list[tuple[int, int]]):  # type: ignore[no-untyped-def]
    def fetch(first: int, stop: int) -> list[bytes]:
        calls.append((first, stop))
        return [bytes([i]) * 4 for i in range(first, stop)]

    return fetch


def test_missing_blocks_are_fetched_in_runs_and_then_served_from_memory() -> None:
    cache = BlockCache(1024)
    calls: list[tuple[int, int]] = []
    fetch = _fetcher(calls)
    assert cache.blocks("f:1", 3, 4, fetch) == [b"\x03" * 4, b"\x04" * 4]
    assert cache.blocks("f:1", 0, 7, fetch)[5] == b"\x05" * 4
    assert calls == [(3, 5), (0, 3), (5, 8)]
    cache.blocks("f:1", 0, 7, fetch)
    cache.blocks("f:2", 0, 0, fetch)  # another version of the file: its own blocks
    assert calls[3:] == [(0, 1)]


def test_concurrent_reads_of_a_missing_block_fetch_it_once() -> None:
    cache = BlockCache(1024)
    entered, release = threading.Event(), threading.Event()
    calls: list[tuple[int, int]] = []

    def slow_fetch(first: int, stop: int) -> list[bytes]:
        calls.append((first, stop))
        entered.set()
        release.wait(10)
        return [b"x" * 4 for _ in range(first, stop)]

    results: list[list[bytes]] = []
    first = threading.Thread(target=lambda: results.append(cache.blocks("f", 0, 3, slow_fetch)))
    first.start()
    assert entered.wait(10)
    others = [
        threading.Thread(target=lambda: results.append(cache.blocks("f", 1, 2, slow_fetch)))
        for _ in range(4)
    ]
    for thread in others:
        thread.start()
    deadline = time.monotonic() + 10
    while cache.stats.waits < 8 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    for thread in [first, *others]:
        thread.join(10)
    assert calls == [(0, 4)] and len(results) == 5


def test_a_failed_fetch_fails_its_waiters_and_is_retried_later() -> None:
    cache = BlockCache(1024)

    def broken(first: int, stop: int) -> list[bytes]:
        raise GirderUnavailable("Girder is unreachable")

    with pytest.raises(GirderUnavailable):
        cache.blocks("f", 0, 1, broken)
    calls: list[tuple[int, int]] = []
    assert cache.blocks("f", 0, 1, _fetcher(calls)) == [b"\x00" * 4, b"\x01" * 4]
    assert calls == [(0, 2)]


# -- servers that ignore Range: the download cache -------------------------------------------


def test_a_server_without_range_support_is_downloaded_once(
    no_range_girder: GirderStandin,
    images: dict[str, Path],
    tmp_path: Path,
    readers: list[GirderReader],
) -> None:
    girder = no_range_girder
    item = girder.add_item("pyramid", ("pyramid.tiff", images["pyramid"]))
    # Blocks smaller than the file: the first range request is a real one.
    settings = girder_settings(girder, tmp_path, girder_block_size=16 * KIB)
    opened = new_reader(readers, settings).open(item)
    assert opened.how == "download"
    assert opened.file.local_path is not None
    assert Path(opened.file.local_path).parent == tmp_path / "downloads"
    assert_same_tiles(opened.file, images["pyramid"])
    # Other readers (other processes) with the same directory use the same copy.
    again = new_reader(readers, settings).open(item)
    assert again.file.local_path == opened.file.local_path
    assert girder.full_downloads() == 1
    assert not [n for n in os.listdir(tmp_path / "downloads") if n.startswith(".partial")]


def test_concurrent_openers_download_a_file_once(
    no_range_girder: GirderStandin, big_tiff: Path, tmp_path: Path, readers: list[GirderReader]
) -> None:
    girder = no_range_girder
    item = girder.add_item("big", ("big.tiff", big_tiff))
    settings = girder_settings(girder, tmp_path)
    openers = [new_reader(readers, settings) for _ in range(4)]
    barrier = threading.Barrier(len(openers))
    paths: list[str | None] = []

    def open_item(reader: GirderReader) -> None:
        barrier.wait()
        opened = reader.open(item)
        paths.append(opened.file.local_path)
        opened.file.close()

    threads = [threading.Thread(target=open_item, args=(r,)) for r in openers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(paths) == 4 and len(set(paths)) == 1
    assert girder.full_downloads() == 1
    assert os.path.getsize(paths[0]) == big_tiff.stat().st_size  # type: ignore[arg-type]


def _open_in_a_process(settings: Settings, item: str) -> str | None:
    reader = GirderReader(settings)
    try:
        opened = reader.open(item)
        opened.file.close()
        return opened.file.local_path
    finally:
        reader.close()


def test_processes_download_a_file_once(
    no_range_girder: GirderStandin, big_tiff: Path, tmp_path: Path
) -> None:
    import multiprocessing

    item = no_range_girder.add_item("big", ("big.tiff", big_tiff))
    settings = girder_settings(no_range_girder, tmp_path)
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        paths = pool.starmap(_open_in_a_process, [(settings, item)] * 3)
    assert len(set(paths)) == 1 and paths[0] is not None
    assert no_range_girder.full_downloads() == 1


def test_the_download_cache_evicts_least_recently_used_files(
    no_range_girder: GirderStandin,
    images: dict[str, Path],
    tmp_path: Path,
    readers: list[GirderReader],
) -> None:
    girder = no_range_girder
    names = ["pyramid", "deflate", "lzw"]
    items = {name: girder.add_item(name, (images[name].name, images[name])) for name in names}
    sizes = {name: images[name].stat().st_size for name in names}
    capacity = sum(sizes.values()) - 1  # all three never fit
    reader = new_reader(
        readers, girder_settings(girder, tmp_path, girder_download_cache_bytes=capacity)
    )
    paths = {name: reader.open(items[name]).file.local_path for name in names[:2]}
    # pyramid was used more recently than deflate.
    os.utime(paths["deflate"], (1000, 1000))  # type: ignore[arg-type]
    os.utime(paths["pyramid"], (2000, 2000))  # type: ignore[arg-type]
    # Opening a cached file marks it used.
    reader.open(items["deflate"])
    assert os.path.getmtime(paths["deflate"]) > 2000  # type: ignore[arg-type]
    os.utime(paths["deflate"], (1000, 1000))  # type: ignore[arg-type]
    # Partial downloads: one a dead process left long ago, one being written.
    dead, live = tmp_path / "downloads" / ".partial-dead", tmp_path / "downloads" / ".partial-live"
    dead.write_bytes(b"x")
    live.write_bytes(b"x")
    os.utime(dead, (1000, 1000))
    reader.open(items["lzw"])
    assert not dead.exists() and live.exists()
    left = sorted(reader.downloads.cached_files())
    assert len(left) == 2 and os.path.basename(paths["deflate"]) not in left  # type: ignore[arg-type]
    assert os.path.basename(paths["pyramid"]) in left  # type: ignore[arg-type]
    # A file larger than the whole cache is refused.
    small = new_reader(readers, girder_settings(girder, tmp_path, girder_download_cache_bytes=1000))
    with pytest.raises(UnsupportedImage, match="larger than"):
        small.open(items["pyramid"])


# -- the direct assetstore path ----------------------------------------------------------------


def test_path_map_resolution() -> None:
    prefixes = parse_path_map(("/girder=/mnt/g", "/girder/assetstore/=/fast/", "broken"))
    assert map_path("/girder/assetstore/ab/cd/f", prefixes) == "/fast/ab/cd/f"
    assert map_path("/girder/other/f", prefixes) == "/mnt/g/other/f"
    assert map_path("/girderx/f", prefixes) is None
    assert map_path("/elsewhere/f", prefixes) is None
    assert map_path("/any/f", parse_path_map(("/=/root",))) == "/root/any/f"


def test_a_file_the_worker_sees_is_read_directly(
    girder: GirderStandin, images: dict[str, Path], tmp_path: Path, readers: list[GirderReader]
) -> None:
    store = tmp_path / "store"
    (store / "ab" / "cd").mkdir(parents=True)
    copy = store / "ab" / "cd" / "abcdef"
    shutil.copyfile(images["pyramid"], copy)
    item = girder.add_item("direct", ("slide.tiff", images["pyramid"]))
    girder.item_files(item)[0].girder_path = "/opt/girder/assetstore/ab/cd/abcdef"
    path_map = (f"/opt/girder/assetstore={store}",)
    reader = new_reader(readers, girder_settings(girder, tmp_path, girder_path_map=path_map))
    opened = reader.open(item)
    assert opened.how == "path" and opened.file.local_path == str(copy)
    assert_same_tiles(opened.file, images["pyramid"])
    assert girder.downloads == []
    # A copy of another size is not the file: read over HTTP instead.
    copy.write_bytes(copy.read_bytes()[:1000])
    assert reader.open(item).how == "range"
    # So is a path no prefix maps, and a file the plugin has no path for.
    girder.item_files(item)[0].girder_path = "/elsewhere/abcdef"
    assert reader.open(item).how == "range"
    girder.item_files(item)[0].girder_path = None
    assert reader.open(item).how == "range"
    # A wrong shared secret (the plugin answers 401) falls back too.
    wrong = new_reader(
        readers, girder_settings(girder, tmp_path, girder_path_map=path_map, girder_secret="no")
    )
    girder.item_files(item)[0].girder_path = "/opt/girder/assetstore/ab/cd/abcdef"
    assert wrong.open(item).how == "range"


# -- resolution and errors ---------------------------------------------------------------------


def test_an_item_resolves_to_its_large_image_file_or_its_one_image(
    girder: GirderStandin, images: dict[str, Path], tmp_path: Path, readers: list[GirderReader]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    reader = new_reader(readers, girder_settings(girder, tmp_path))
    both = girder.add_item("both", ("a.tiff", images["lzw"]), ("b.png", images["png"]))
    chosen = girder.add_item(
        "chosen", ("a.tiff", images["lzw"]), ("b.png", images["png"]), large_image=1
    )
    with_notes = girder.add_item("notes", ("notes.txt", notes), ("slide.TIFF", images["lzw"]))
    only_notes = girder.add_item("just notes", ("notes.txt", notes), ("more.txt", notes))
    empty = girder.add_item("empty")
    assert reader.open(chosen).info.name == "b.png"
    assert reader.open(with_notes).info.name == "slide.TIFF"
    for item in (both, only_notes, empty):
        with pytest.raises(UnsupportedImage, match="no image file"):
            reader.open(item)


def test_unknown_items_are_unknown_sources(
    girder: GirderStandin, tmp_path: Path, readers: list[GirderReader]
) -> None:
    reader = new_reader(readers, girder_settings(girder, tmp_path))
    with pytest.raises(UnknownSource):
        reader.open(uuid.uuid4().hex[:24])  # Girder: 400 "Invalid item id"
    with pytest.raises(UnknownSource):
        reader.open("not-an-object-id")


def test_an_unreachable_or_failing_girder_is_unavailable(
    girder: GirderStandin, images: dict[str, Path], tmp_path: Path, readers: list[GirderReader]
) -> None:
    refused = Settings(girder_url=f"http://127.0.0.1:{closed_port()}/api/v1", girder_api_key="k")
    with pytest.raises(GirderUnavailable):
        new_reader(readers, refused).open(uuid.uuid4().hex[:24])
    item = girder.add_item("slide", ("slide.tiff", images["lzw"]))
    girder.fail_status = 502
    with pytest.raises(GirderUnavailable):
        new_reader(readers, girder_settings(girder, tmp_path)).open(item)
    girder.fail_status = None
    girder.delay = 1.0  # longer than the timeout: a hung Girder
    with pytest.raises(GirderUnavailable, match="timed out"):
        new_reader(readers, girder_settings(girder, tmp_path, girder_timeout=0.2)).open(item)
    girder.delay = 0.0
    with pytest.raises(GirderUnavailable, match="API key"):
        new_reader(readers, girder_settings(girder, tmp_path, girder_api_key="wrong")).open(item)


def test_an_expired_token_is_renewed_once(
    girder: GirderStandin, images: dict[str, Path], tmp_path: Path, readers: list[GirderReader]
) -> None:
    item = girder.add_item("slide", ("slide.tiff", images["lzw"]))
    reader = new_reader(readers, girder_settings(girder, tmp_path))
    opened = reader.open(item)
    assert girder.token_requests == 1
    girder.expire_tokens()
    with open_source(opened.file, Settings()) as source:  # range reads renew it too
        source.read_tile(source.levels - 1, 0, 0)
    assert girder.token_requests == 2
    girder.expire_tokens()
    assert reader.open(item).item_name == "slide"
    assert girder.token_requests == 3


# -- wiring: describe and render girder:// records -----------------------------------------------


def test_girder_records_describe_and_render(
    girder: GirderStandin,
    images: dict[str, Path],
    tmp_path: Path,
    wk_settings: Settings,
) -> None:
    from tilecast.common.keys import describe_key
    from tilecast.common.taskprotocol import describe_source_payload
    from tilecast.common.tiles import TileRequest
    from tilecast.workers import process_renderer, tasks
    from tilecast.workers.celeryapp import app
    from tilecast.workers.describe import describe_named, describe_path
    from tilecast.workers.encode import encode_tile
    from tilecast.workers.engine import Renderer

    item = girder.add_item("Slide 7", ("slide.tiff", images["pyramid"]))
    settings = girder_settings(girder, tmp_path, cache_url=wk_settings.cache_url)
    path = girder_source_path(item)
    name, metadata = describe_named(path, settings)
    assert name == "Slide 7" and metadata == describe_path(str(images["pyramid"]), settings)
    renderer = Renderer(settings)
    app.conf.task_always_eager = True
    process_renderer.use_renderer(renderer)
    try:
        tasks.describe_source.apply(args=[describe_source_payload(item, path, describe_key(item))])
        record = renderer.registry.get(item)
        assert record.name == "Slide 7" and record.path == path
        generation = renderer.registry.generation(item) or 0
        request = TileRequest(item, 2, 1, 1)
        with open_source(str(images["pyramid"]), Settings()) as local:
            expected = encode_tile(local.read_tile(2, 1, 1), request.encoding)
        asked = item_lookups(girder)
        assert renderer.render_tile(request, generation) == expected
        # The render read the file the describe task registered: no look-up of the item.
        assert item_lookups(girder) == asked
    finally:
        process_renderer.use_renderer(None)
        app.conf.task_always_eager = False
        renderer.close()
        forget_readers()


def test_open_girder_file_keeps_one_reader_per_process(
    girder: GirderStandin, images: dict[str, Path], tmp_path: Path
) -> None:
    item = girder.add_item("slide", ("slide.tiff", images["lzw"]))
    settings = girder_settings(girder, tmp_path)
    try:
        open_girder_file(item, settings).file.close()
        open_girder_file(item, settings).file.close()
        assert girder.token_requests == 1
    finally:
        forget_readers()
