"""OME-Zarr read from URL sources (workers/remote/prefix.py, workers/sources/zarrprefix.py):
stores written by ome-zarr-py and zarr (tests/images_omezarr.py) served as prefixes by
moto's S3 and by a Range HTTP server (tests/remoteservers.py), and a zipped store read by
range.

Tiles equal the local store's; what opening and the first tile cost (requests, bytes) is
counted by the servers and bounded; another worker process reads the metadata documents
from Redis; keys cannot leave the prefix; the store's failures are tilecast's errors.
"""

from __future__ import annotations

import multiprocessing
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import redis

from tests.images_omezarr import make_omezarr_images
from tests.remoteservers import (
    Place,
    RangeServer,
    S3Server,
    delete,
    placed,
    s3_serving,
    upload,
)
from tilecast.common.errors import RemoteForbidden, UnsupportedImage
from tilecast.common.settings import Settings
from tilecast.workers.describe import open_path
from tilecast.workers.remote.opening import RemoteReader, forget_readers
from tilecast.workers.remote.prefix import RemotePrefix
from tilecast.workers.sources import ImageSource, open_source
from tilecast.workers.sources.omezarr import OmeZarrSource

BUCKET = "stores"
# The stores served, with how many datasets (arrays) each opens.
STORES = {"ngff04_czyx": 4, "ngff05_czyx": 4, "sharded05": 2, "plate04": 16}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("zarr-served")
    stores = make_omezarr_images(root / "written")
    for name in STORES:
        shutil.copytree(stores[name], root / f"{name}.zarr")
    shutil.copyfile(stores["zip_folder"], root / "image.zip")
    # A store whose chunk objects misbehave (tests below change them).
    shutil.copytree(stores["ngff04_czyx"], root / "damaged.zarr")
    shutil.rmtree(root / "written")
    return root


@pytest.fixture(scope="module")
def http(served: Path) -> Iterator[RangeServer]:
    server = RangeServer(served)
    yield server
    server.close()


@pytest.fixture(scope="module")
def s3(served: Path) -> Iterator[S3Server]:
    with s3_serving(served, BUCKET, "zarr") as server:
        yield server


@pytest.fixture(params=["http", "s3"])
def place(
    request: pytest.FixtureRequest, redis_url: str, state: redis.Redis, tmp_path: Path
) -> Iterator[Place]:
    server: RangeServer | S3Server = request.getfixturevalue(request.param)
    with placed(server, BUCKET, "zarr", redis_url, tmp_path / "downloads", state) as place:
        yield place


def assert_same_native_tiles(remote: ImageSource, local: ImageSource) -> None:
    """Every native tile of the first and last frames."""
    assert remote.metadata == local.metadata
    for z in range(remote.levels):
        if remote.native_level_size(z) is None:
            continue
        across, down = remote.grid.tiles_at(z)
        for frame in sorted({0, remote.frame_count - 1}):
            for y in range(down):
                for x in range(across):
                    got = remote.read_tile(z, x, y, frame).pixels
                    expected = local.read_tile(z, x, y, frame).pixels
                    assert np.array_equal(got, expected), (z, x, y, frame)


@pytest.mark.parametrize("name", sorted(STORES))
def test_tiles_equal_the_local_store(name: str, place: Place, served: Path) -> None:
    opened = open_path(place.locator(f"{name}.zarr/"), place.settings)
    assert isinstance(opened.source, OmeZarrSource)
    assert opened.name == f"{name}.zarr" and len(opened.identity["documents"]) == 32
    with opened.source as remote, open_source(str(served / f"{name}.zarr"), Settings()) as local:
        assert_same_native_tiles(remote, local)


def test_opening_and_the_first_tile_cost_few_requests(
    place: Place, record_property: pytest.RecordProperty
) -> None:
    """ngff04_czyx (zarr v2, 4 datasets, chunks of 256 x 300 uint16): opening reads the
    4 root documents and each array's .zarray and .zattrs; a tile within one chunk is
    one request for that chunk."""
    reader = RemoteReader(place.settings)
    mark = place.log.mark()
    found = reader.open(place.source("ngff04_czyx.zarr/"))
    assert found.how == "prefix"
    with open_source(found.file, place.settings) as source:
        opened = (len(place.log.since(mark)), place.log.bytes_since(mark))
        mark = place.log.mark()
        source.read_tile(source.levels - 1, 0, 0, 0)
        first = (len(place.log.since(mark)), place.log.bytes_since(mark))
        mark = place.log.mark()
        source.read_tile(source.levels - 1, 0, 0, 0)
        source.read_tile(0, 0, 0, 0)  # level 0: the 4x reduced dataset, one chunk
        after = (len(place.log.since(mark)), place.log.bytes_since(mark))
    reader.close()
    costs = {"open": opened, "first_tile": first, "again_and_overview": after}
    record_property(f"{place.kind}_zarr_costs", costs)
    print(f"\n{place.kind}: requests, bytes: {costs}")
    assert opened[0] == 4 + 2 * STORES["ngff04_czyx"] and opened[1] < 20_000
    assert first[0] == 1 and first[1] <= 256 * 300 * 2 + 1024  # the chunk, compressed
    assert after[0] == 1  # the repeated tile came from the chunk cache


def test_a_shard_is_read_by_range(place: Place, served: Path) -> None:
    """sharded05: shards of 3 x 3 inner chunks; a tile reads the shard index and inner
    chunks through the block cache (one HEAD, then one ranged request per shard)."""
    reader = RemoteReader(place.settings)
    found = reader.open(place.source("sharded05.zarr/"))
    with open_source(found.file, place.settings) as source:
        mark = place.log.mark()
        source.read_tile(source.levels - 1, 0, 0, 0)
        requests = place.log.since(mark, "GET")
        heads = place.log.since(mark, "HEAD")
    reader.close()
    # The 512 x 512 tile spans 2 x 2 shards of 300 x 300, each smaller than a block.
    assert len(heads) == 4 and len(requests) == 4
    assert all(r.range is not None for r in requests)


def _open_in_another_process(locator: str, settings: Settings) -> int:
    """What a second worker process does: open the store, describe it."""
    opened = open_path(locator, settings)
    with opened.source:
        return int(opened.source.metadata["sizeX"])


def test_another_process_reads_the_metadata_documents_from_redis(place: Place) -> None:
    mark = place.log.mark()
    open_path(place.locator("ngff04_czyx.zarr/"), place.settings).source.close()
    first = len(place.log.since(mark))
    mark = place.log.mark()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        size = pool.apply(
            _open_in_another_process, (place.locator("ngff04_czyx.zarr/"), place.settings)
        )
    second = place.log.since(mark)
    assert size == 900
    # Only the root documents (which name the store's version) are fetched again.
    assert first == 12 and len(second) == 4, (first, [r.path for r in second])
    assert {r.path.rsplit("/", 1)[-1] for r in second} == {
        ".zattrs",
        ".zgroup",
        ".zmetadata",
        "zarr.json",
    }


def test_a_zipped_store_is_read_by_range(place: Place, served: Path) -> None:
    reader = RemoteReader(place.settings)
    mark = place.log.mark()
    found = reader.open(place.source("image.zip"))
    assert found.how == "range"
    with open_source(found.file, place.settings) as remote:
        opened = len(place.log.since(mark))
        mark = place.log.mark()
        remote.read_tile(remote.levels - 1, 1, 1, 0)
        first = place.log.since(mark)
        with open_source(str(served / "image.zip"), Settings()) as local:
            assert_same_native_tiles(remote, local)
    reader.close()
    size = (served / "image.zip").stat().st_size
    # The zip (about 2 MB) is read in 256 KiB blocks: its end and central directory
    # to open it, then a block or two per chunk.
    assert opened <= 4 and len(first) <= 2, (opened, len(first))
    assert sum(r.sent for r in first) <= 2 * 256 * 1024 < size


# -- confinement and errors -------------------------------------------------------------


def test_keys_never_leave_the_prefix(place: Place) -> None:
    prefix = RemoteReader(place.settings).open(place.source("ngff04_czyx.zarr/")).file
    assert isinstance(prefix, RemotePrefix)
    assert prefix.key("s0/.zarray") == f"{prefix.url.key}s0/.zarray"
    for hostile in ("../damaged.zarr/.zattrs", "s0/../../x", "/etc/passwd", "a//b", "", "."):
        with pytest.raises(UnsupportedImage, match="outside its store"):
            prefix.key(hostile)
    # The prefix itself must be under the allow-list, as an object is.
    narrow = replace(place.settings, remote_allow=f"{place.base}/damaged.zarr/")
    with pytest.raises(UnsupportedImage, match="cannot be read"):
        RemoteReader(narrow).open(place.source("ngff04_czyx.zarr/"))


def test_a_missing_chunk_is_its_fill_value(place: Place, served: Path, s3: S3Server) -> None:
    key = "damaged.zarr/s0/0/0/0/0"
    saved = (served / key).read_bytes()
    (served / key).unlink()
    delete(s3, BUCKET, f"zarr/{key}")
    try:
        with open_path(place.locator("damaged.zarr/"), place.settings).source as source:
            tile = source.read_tile(source.levels - 1, 0, 0, 0).pixels
            assert tile is not None and not tile.any()  # zarr's fill value: 0
    finally:
        (served / key).write_bytes(saved)
        upload(s3, BUCKET, f"zarr/{key}", served / key)


def test_a_forbidden_chunk_is_a_403(http: RangeServer, redis_url: str, tmp_path: Path) -> None:
    forget_readers()
    place = Place.of(http, BUCKET, "zarr", redis_url, tmp_path)
    http.forbidden = {"/damaged.zarr/s0/0/0/0/1"}
    try:
        with open_path(place.locator("damaged.zarr/"), place.settings).source as source:
            with pytest.raises(RemoteForbidden) as caught:
                source.read_tile(source.levels - 1, 1, 0, 0)
            assert caught.value.status == 403
    finally:
        http.forbidden = set()
        forget_readers()


def test_an_oversized_chunk_is_refused_on_its_announced_size(
    place: Place, served: Path, s3: S3Server
) -> None:
    """A 256 x 300 uint16 chunk is at most twice its 153,600 bytes plus 1 MiB encoded."""
    chunk = served / "damaged.zarr" / "s0" / "0" / "0" / "1" / "1"
    saved = chunk.read_bytes()
    chunk.write_bytes(b"\0" * (3 * 1024 * 1024))
    upload(s3, BUCKET, "zarr/damaged.zarr/s0/0/0/1/1", chunk)
    try:
        source = open_path(place.locator("damaged.zarr/"), place.settings).source
        with source, pytest.raises(UnsupportedImage, match="larger than any encoding"):
            source.read_tile(source.levels - 1, 1, 1, 0)
    finally:
        chunk.write_bytes(saved)
        upload(s3, BUCKET, "zarr/damaged.zarr/s0/0/0/1/1", chunk)
