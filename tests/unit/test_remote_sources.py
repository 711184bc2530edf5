"""URL sources (workers/remote/) against real servers on free loopback ports: moto's S3
in server mode and an HTTP server that answers Range (tests/remoteservers.py).

For each: tiles equal the same image read locally; what the first tile and a 64-tile
viewport cost (requests, bytes) is recorded and bounded; another worker process opening
the same object reads its directories from the blocks shared in Redis; and each way a
store fails is a clear tilecast error.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from tests.remoteservers import (
    Place,
    RangeServer,
    S3Server,
    closed_port,
    placed,
    s3_serving,
    upload,
)
from tests.unit.test_girder_files import assert_same_tiles, noise_pyramid
from tilecast.common.errors import (
    RemoteForbidden,
    RemoteNotFound,
    RemoteThrottled,
    RemoteTruncated,
    RemoteUnavailable,
    UnsupportedImage,
)
from tilecast.common.remoteurls import RemoteOptions, RemoteSource, parse_url
from tilecast.common.settings import Settings
from tilecast.workers.describe import open_path
from tilecast.workers.remote.objects import ObjectChanged, ObjectFile
from tilecast.workers.remote.opening import RemoteReader, forget_readers
from tilecast.workers.sources import open_source

KIB = 1024
BUCKET = "slides"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, images: dict[str, Path]) -> Path:
    """The folder both servers serve: a 4096 x 4096 JPEG pyramid (16x16 tiles at full size)."""
    root = tmp_path_factory.mktemp("served")
    noise_pyramid(root / "big.tiff", 4096, "jpeg")
    shutil.copyfile(images["deflate"], root / "deflate.tiff")
    return root


@pytest.fixture(scope="module")
def http(served: Path) -> Iterator[RangeServer]:
    server = RangeServer(served)
    yield server
    server.close()


@pytest.fixture(scope="module")
def s3(served: Path) -> Iterator[S3Server]:
    with s3_serving(served, BUCKET, "images") as server:
        yield server


@pytest.fixture(params=["http", "s3"])
def place(
    request: pytest.FixtureRequest, redis_url: str, state: redis.Redis, tmp_path: Path
) -> Iterator[Place]:
    server: RangeServer | S3Server = request.getfixturevalue(request.param)
    with placed(server, BUCKET, "images", redis_url, tmp_path / "downloads", state) as place:
        yield place


def reader_of(place: Place, **changes: object) -> RemoteReader:
    return RemoteReader(replace(place.settings, **changes))  # type: ignore[arg-type]


# -- reading -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["big.tiff", "deflate.tiff"])
def test_tiles_equal_the_local_file(name: str, place: Place, served: Path) -> None:
    opened = open_path(place.locator(name), place.settings)
    with open_source(str(served / name), Settings()) as local:
        assert opened.source.metadata == local.metadata
    opened.source.close()
    assert opened.name == name and opened.identity["size"] == (served / name).stat().st_size
    reader = reader_of(place)
    found = reader.open(place.source(name))
    assert found.how == "range"
    assert_same_tiles(found.file, served / name)
    assert all(r.status == 206 for r in place.log.requests if r.method == "GET")
    reader.close()


def test_first_tile_and_viewport_cost_few_requests(
    place: Place, served: Path, record_property: pytest.RecordProperty
) -> None:
    size = (served / "big.tiff").stat().st_size
    reader = reader_of(place)
    mark = place.log.mark()
    found = reader.open(place.source("big.tiff"))
    with open_source(found.file, Settings()) as source:
        opened = (len(place.log.since(mark)), place.log.bytes_since(mark))
        top = source.levels - 1
        mark = place.log.mark()
        source.read_tile(0, 0, 0)  # what a viewer asks first: the whole image in one tile
        first = (len(place.log.since(mark)), place.log.bytes_since(mark))
        mark = place.log.mark()
        source.read_tile(top, 14, 15)  # a full-resolution tile far from the directories
        native = (len(place.log.since(mark)), place.log.bytes_since(mark))
        mark = place.log.mark()
        for y in range(4, 12):  # an 8x8 viewport of full-resolution tiles
            for x in range(4, 12):
                source.read_tile(top, x, y)
        viewport = (len(place.log.since(mark)), place.log.bytes_since(mark))
    reader.close()
    costs = {
        "open": opened,
        "first_tile": first,
        "full_resolution_tile": native,
        "viewport_64": viewport,
        "size": size,
    }
    record_property(f"{place.kind}_costs", costs)
    print(f"\n{place.kind}: requests, bytes: {costs}")
    # Opening reads the directories in a few coalesced requests, never the file.
    assert opened[0] <= 4 and opened[1] < size / 4
    # One tile: its level's tile offsets (read when first needed) and its own blocks
    # (256 KiB each), or nothing when opening fetched them already.
    for tile in (first, native):
        assert tile[0] <= 2 and tile[1] <= 4 * 256 * KIB
    # 64 tiles: a run per row at most, never more bytes than their blocks span.
    assert viewport[0] <= 16 and viewport[1] < size / 2


def _open_in_another_process(locator: str, settings: Settings) -> str:
    """What a second worker process does: open the object, describe it."""
    opened = open_path(locator, settings)
    with opened.source:
        return str(opened.source.metadata["sizeX"])


def test_another_process_reads_the_directories_from_redis(place: Place) -> None:
    mark = place.log.mark()
    opened = open_path(place.locator("big.tiff"), place.settings)
    opened.source.close()
    first = len(place.log.since(mark))
    mark = place.log.mark()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        size = pool.apply(_open_in_another_process, (place.locator("big.tiff"), place.settings))
    second = len(place.log.since(mark))
    assert size == "4096"
    # The first process fetched the directories; the second found them in Redis.
    assert first >= 1 and second < first, (first, second)
    # Not shared when switched off: a process alone fetches them again.
    forget_readers()
    mark = place.log.mark()
    open_path(place.locator("big.tiff"), replace(place.settings, remote_block_ttl=0)).source.close()
    assert len(place.log.since(mark)) > second


def test_a_replaced_object_is_never_read_through_its_old_blocks(
    place: Place, served: Path, images: dict[str, Path], s3: S3Server
) -> None:
    reader = reader_of(place)
    shutil.copyfile(images["pyramid"], served / "replaced.tiff")
    _upload(place, served / "replaced.tiff")
    old = reader.open(place.source("replaced.tiff"))
    assert isinstance(old.file, ObjectFile)
    old.file.read(0, 16)
    time.sleep(0.01)  # another modification time, on a file system that keeps seconds
    shutil.copyfile(images["deflate"], served / "replaced.tiff")
    os.utime(served / "replaced.tiff", (time.time() + 5, time.time() + 5))
    _upload(place, served / "replaced.tiff")
    new = reader.open(place.source("replaced.tiff"))
    assert new.identity != old.identity
    assert_same_tiles(new.file, images["deflate"])
    # The old version's reads are refused by the store (If-Match): never mixed.
    with pytest.raises(ObjectChanged):
        old.file.read(old.file.size - 10, 10)
    assert old.replaced()
    reader.close()


def _upload(place: Place, path: Path) -> None:
    if place.kind == "s3":
        assert isinstance(place.server, S3Server)
        upload(place.server, BUCKET, f"images/{path.name}", path)


# -- what needs a local file ------------------------------------------------------------------


def test_openslide_formats_are_downloaded_once_into_the_bounded_cache(
    place: Place, served: Path, s3: S3Server
) -> None:
    from tests.slidewriters import write_philips

    write_philips(served / "philips.tiff", 512, 512)
    _upload(place, served / "philips.tiff")
    opened = open_path(place.locator("philips.tiff"), place.settings)
    with opened.source, open_source(str(served / "philips.tiff"), Settings()) as local:
        assert type(opened.source).__name__ == "OpenSlideSource"
        assert opened.source.metadata == local.metadata
        assert opened.source.read_tile(1, 0, 0).to_bytes() == local.read_tile(1, 0, 0).to_bytes()
    downloads = Path(place.settings.remote_download_dir)
    assert len([p for p in downloads.iterdir() if not p.name.startswith(".")]) >= 1
    small = replace(place.settings, remote_download_cache_bytes=1024)
    forget_readers()
    with pytest.raises(UnsupportedImage, match="download cache"):
        open_path(place.locator("philips.tiff"), small)


def test_a_server_ignoring_range_is_downloaded_whole(http: RangeServer, served: Path) -> None:
    settings = Settings(remote_allow=f"{http.url}/", remote_block_ttl=0).resolved()
    source = RemoteSource(parse_url(f"{http.url}/big.tiff"))
    http.ranges = False
    try:
        reader = RemoteReader(replace(settings, remote_download_dir=str(served / "dl")))
        found = reader.open(source)
        assert found.how == "download"
        assert_same_tiles(found.file, served / "big.tiff")
    finally:
        http.ranges = True
        shutil.rmtree(served / "dl", ignore_errors=True)


# -- errors ---------------------------------------------------------------------------------


def test_a_missing_object_or_bucket_is_not_found(place: Place) -> None:
    with pytest.raises(RemoteNotFound):
        reader_of(place).open(place.source("nothing.tiff"))
    if place.kind == "s3":
        other = RemoteSource(parse_url("s3://no-such-bucket/images/x.tiff"), place.options)
        settings = replace(place.settings, remote_allow="s3://no-such-bucket/")
        with pytest.raises(RemoteNotFound):
            RemoteReader(settings).open(other)


def test_an_unreachable_store_is_unavailable_quickly(tmp_path: Path) -> None:
    port = closed_port()
    settings = Settings(
        remote_allow=f"http://127.0.0.1:{port}/,s3://{BUCKET}/",
        remote_endpoints=f"http://127.0.0.1:{port}",
        remote_block_ttl=0,
        remote_backoff=0.01,
        remote_retries=2,
    ).resolved()
    started = time.monotonic()
    for source in (
        RemoteSource(parse_url(f"http://127.0.0.1:{port}/a.tiff")),
        RemoteSource(
            parse_url(f"s3://{BUCKET}/a.tiff"),
            RemoteOptions(endpoint_url=f"http://127.0.0.1:{port}", anonymous=True),
        ),
    ):
        with pytest.raises(RemoteUnavailable, match="unreachable") as caught:
            RemoteReader(settings).open(source)
        assert caught.value.status == 503
    assert time.monotonic() - started < 10


def test_a_throttling_store_is_retried_then_a_503_with_retry_after(
    http: RangeServer, served: Path
) -> None:
    settings = Settings(
        remote_allow=f"{http.url}/,s3://{BUCKET}/",
        remote_endpoints=http.url,
        remote_block_ttl=0,
        remote_backoff=0.01,
        remote_retries=2,
    ).resolved()
    http_source = RemoteSource(parse_url(f"{http.url}/big.tiff"))
    # The HTTP server as an S3 endpoint: it answers "503 SlowDown" to every GET.
    s3_source = RemoteSource(
        parse_url(f"s3://{BUCKET}/deflate.tiff"),
        RemoteOptions(endpoint_url=http.url, anonymous=True),
    )
    reader = RemoteReader(settings)
    file = reader.open(http_source).file
    http.throttle = (503, 2)
    try:
        mark = http.log.mark()
        with pytest.raises(RemoteThrottled) as caught:
            file.read(file.size // 2, 100)
        assert caught.value.status == 503 and caught.value.retry_after == 2
        assert len(http.log.since(mark)) == 3  # the first attempt and two retries
        http.throttle = (429, 1)
        with pytest.raises(RemoteThrottled):
            file.read(file.size // 3, 100)
        with pytest.raises((RemoteThrottled, RemoteNotFound, RemoteUnavailable)):
            reader.open(s3_source).file.read(0, 10)
    finally:
        http.throttle = None


def test_a_forbidden_object_is_a_403(http: RangeServer, served: Path) -> None:
    secret = served / "secret.tiff"
    secret.write_bytes(b"II*\x00")
    secret.chmod(0)
    settings = Settings(remote_allow=f"{http.url}/", remote_block_ttl=0).resolved()
    try:
        http.forbidden = {"/secret.tiff"}
        with pytest.raises(RemoteForbidden) as caught:
            RemoteReader(settings).open(RemoteSource(parse_url(f"{http.url}/secret.tiff")))
        assert caught.value.status == 403
    finally:
        http.forbidden = set()
        secret.chmod(0o644)


def test_a_truncated_answer_is_never_used(http: RangeServer) -> None:
    settings = Settings(
        remote_allow=f"{http.url}/", remote_block_ttl=0, remote_backoff=0.01, remote_retries=1
    ).resolved()
    file = RemoteReader(settings).open(RemoteSource(parse_url(f"{http.url}/big.tiff"))).file
    http.truncate = True
    try:
        with pytest.raises(RemoteTruncated) as caught:
            file.read(file.size // 2, 1000)
        assert caught.value.status == 503
    finally:
        http.truncate = False
    assert len(file.read(file.size // 2, 1000)) == 1000  # nothing short was cached
