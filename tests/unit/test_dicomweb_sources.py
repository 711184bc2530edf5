"""DICOMweb sources (workers/remote/dicomweb.py, workers/sources/dicomweb.py) against a
real DICOMweb server: Orthanc with its DICOMweb plugin on a free port, basic
authentication on, behind a counting proxy (tests/orthancserver.py), holding DICOM WSI
series written by two independent writers (tests/dicomslides.py).

Tiles equal the same series read from its files (JPEG frames byte for byte); what
opening, the first tile and a 64-tile viewport cost (requests, bytes) is recorded and
bounded; a second process opening the series reads its description from Redis; the
allow-list, credentials, a dead, throttling or missing server are each a clear error.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pydicom
import pytest
import redis
from pydicom.uid import generate_uid

from tests import dicomslides
from tests.orthancserver import DICOMWEB_ROOT, PASSWORD, USER, CountingProxy, OrthancServer
from tests.remoteservers import closed_port
from tilecast.common.errors import (
    ConfigurationError,
    RemoteForbidden,
    RemoteNotFound,
    RemoteThrottled,
    RemoteTruncated,
    RemoteUnavailable,
    SourceRefused,
    UnsupportedImage,
)
from tilecast.common.remoteurls import parse_allow_list, remote_source
from tilecast.common.settings import Settings
from tilecast.workers.describe import open_path, remote_identity
from tilecast.workers.remote.opening import forget_readers
from tilecast.workers.sources import ImageSource, open_source

SIDE = 2048  # the Orthanc series' full resolution: 8 x 8 tiles of 256


@dataclass(frozen=True)
class Series:
    folder: Path  # its instances, as files
    study: str
    series: str


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancServer]:
    server = OrthancServer(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.close()


@pytest.fixture(scope="module")
def proxy(orthanc: OrthancServer) -> Iterator[CountingProxy]:
    server = CountingProxy(orthanc.url)
    yield server
    server.close()


@pytest.fixture(scope="module")
def stored(orthanc: OrthancServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Series]:
    """Five series, written as files and stored into Orthanc; in two of them the levels
    are split over several instances of at most 1 MB (concatenations), as
    OrthancWSIDicomizer splits a large slide's (10 MB by default)."""
    work = tmp_path_factory.mktemp("dicomweb-series")
    tiff = dicomslides.pyramid_tiff(work / "noise.tiff", SIDE, SIDE, noise=True)
    folders = {
        "orthanc-jpeg": dicomslides.orthanc(tiff, work / "orthanc-jpeg"),
        "orthanc-split": dicomslides.orthanc(tiff, work / "orthanc-split", max_size=1),
        "orthanc-split-j2k": dicomslides.orthanc(tiff, work / "orthanc-j2k", jpeg2000=True),
        "wsidicomizer-jpeg": dicomslides.wsidicomizer_svs(work / "wsidicomizer-jpeg"),
        "wsidicomizer-j2k": dicomslides.wsidicomizer_svs(work / "wsidicomizer-j2k", jpeg2000=True),
    }
    found = {}
    for name, folder in folders.items():
        study, series = orthanc.upload(dicomslides.instances(folder))
        found[name] = Series(folder, study, series)
    return found


def settings_for(proxy: CountingProxy, redis_url: str, **changes: object) -> Settings:
    base = Settings(
        cache_url=redis_url,
        remote_allow=f"dicomweb+{proxy.url}{DICOMWEB_ROOT}/",
        remote_backoff=0.01,
        remote_retries=2,
        remote_timeout=5.0,
        dicomweb_user=USER,
        dicomweb_password=PASSWORD,
    )
    return replace(base, **changes).resolved()  # type: ignore[arg-type]


def locator(base: str, series: Series) -> str:
    return f"dicomweb+{base}{DICOMWEB_ROOT}/studies/{series.study}/series/{series.series}"


@pytest.fixture
def fresh(state: redis.Redis) -> Iterator[None]:
    """No series description shared by an earlier test."""
    forget_readers()
    for key in state.scan_iter(match="tc:remote:*"):
        state.delete(key)
    yield
    forget_readers()


# -- reading -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "orthanc-jpeg",
        "orthanc-split",
        "orthanc-split-j2k",
        "wsidicomizer-jpeg",
        "wsidicomizer-j2k",
    ],
)
def test_tiles_equal_the_local_series(
    name: str, stored: dict[str, Series], proxy: CountingProxy, redis_url: str, fresh: None
) -> None:
    series = stored[name]
    opened = open_path(locator(proxy.url, series), settings_for(proxy, redis_url))
    with opened.source as remote, open_source(str(series.folder), Settings()) as local:
        assert remote.metadata == local.metadata
        assert remote.associated_names() == local.associated_names()
        for image in local.associated_names():
            assert np.array_equal(remote.associated_image(image), local.associated_image(image))
        passed = compared = 0
        for z in range(local.levels):
            size = local.native_level_size(z)
            assert remote.native_level_size(z) == size
            if size is None:
                continue
            for y in range(-(-size[1] // local.tile_height)):
                for x in range(-(-size[0] // local.tile_width)):
                    mine, theirs = remote.read_tile(z, x, y), local.read_tile(z, x, y)
                    assert mine.is_jpeg == theirs.is_jpeg, (z, x, y)
                    if theirs.is_jpeg:
                        assert mine.jpeg == theirs.jpeg, (z, x, y)  # the server's own bytes
                        passed += 1
                    else:
                        assert np.array_equal(mine.array(), theirs.array()), (z, x, y)
                    compared += 1
    assert compared > 0
    assert (passed > 0) == (not name.endswith("j2k"))
    assert opened.identity["url"] == locator(proxy.url, series)


def _level_tiles(source: ImageSource) -> tuple[int, int]:
    """The coarsest stored level, the finest."""
    stored = [z for z in range(source.levels) if source.native_level_size(z) is not None]
    return stored[0], stored[-1]


def test_first_tile_and_viewport_cost(
    stored: dict[str, Series],
    proxy: CountingProxy,
    redis_url: str,
    fresh: None,
    record_property: pytest.RecordProperty,
) -> None:
    series = stored["orthanc-jpeg"]
    settings = settings_for(proxy, redis_url)
    log = proxy.log
    mark = log.mark()
    opened = open_path(locator(proxy.url, series), settings)
    with opened.source as source:
        opening = (len(log.since(mark)), log.bytes_since(mark))
        coarsest, finest = _level_tiles(source)
        mark = log.mark()
        source.read_tile(coarsest, 0, 0)  # the first stored tile a viewer needs
        first = (len(log.since(mark)), log.bytes_since(mark))
        mark = log.mark()
        for y in range(8):  # an 8 x 8 viewport at full resolution
            for x in range(8):
                assert source.read_tile(finest, x, y).is_jpeg
        viewport = (len(log.since(mark)), log.bytes_since(mark))
        instances = len(dicomslides.instances(series.folder))
    costs = {"open": opening, "first_tile": first, "viewport_64": viewport}
    record_property("dicomweb_costs", costs)
    print(f"\ndicomweb (Orthanc, {instances} instances): requests, bytes: {costs}")
    # Opening: the instance search, the series' metadata, one frame per instance to
    # learn how it is stored; a tile: one WADO-RS frame request.
    assert opening[0] <= 2 + instances
    assert first[0] == 1
    assert viewport[0] == 64
    # Every answer is the frames asked for and their multipart envelope.
    assert viewport[1] < 64 * 256 * 256 * 3


def _concatenations(folder: Path) -> dict[str, list[str]]:
    """ConcatenationUID (or the instance's own UID) -> the SOP instance UIDs of its
    parts, from the series' files."""
    found: dict[str, list[str]] = {}
    for path in dicomslides.instances(folder):
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        key = str(dataset.get("ConcatenationUID") or dataset.SOPInstanceUID)
        found.setdefault(key, []).append(str(dataset.SOPInstanceUID))
    return found


def test_a_split_level_is_read_from_all_its_instances(
    stored: dict[str, Series],
    proxy: CountingProxy,
    redis_url: str,
    fresh: None,
    record_property: pytest.RecordProperty,
) -> None:
    """A full-resolution level split over four instances: its viewport's frames are
    asked of every part; opening asks one frame per concatenation for its syntax."""
    series = stored["orthanc-split"]
    concatenations = _concatenations(series.folder)
    instances = sum(len(parts) for parts in concatenations.values())
    largest = max(concatenations.values(), key=len)
    assert len(largest) > 2 < instances - len(concatenations)  # what is tested is there
    log = proxy.log
    mark = log.mark()
    opened = open_path(locator(proxy.url, series), settings_for(proxy, redis_url))
    with opened.source as source:
        opening = len(log.since(mark))
        mark = log.mark()
        for y in range(8):
            for x in range(8):
                assert source.read_tile(source.levels - 1, x, y).is_jpeg
        asked = log.since(mark)
    record_property("dicomweb_split_open_requests", opening)
    print(
        f"\ndicomweb split series ({instances} instances, {len(concatenations)} "
        f"concatenations): opening {opening} requests (one syntax request per instance "
        f"would be {2 + instances})"
    )
    # The search, the metadata, one frame of each concatenation.
    assert opening == 2 + len(concatenations)
    assert len(asked) == 64
    assert all(any(f"/instances/{part}/frames/" in r.path for r in asked) for part in largest)


def test_a_concatenation_missing_a_part_is_refused(
    stored: dict[str, Series],
    orthanc: OrthancServer,
    proxy: CountingProxy,
    redis_url: str,
    fresh: None,
    tmp_path: Path,
) -> None:
    """The split series copied as another series without one part of its largest
    level: its frames do not follow each other, a 422 rather than a level with holes."""
    source = stored["orthanc-split"]
    largest = max(_concatenations(source.folder).values(), key=len)
    series_uid = generate_uid()
    copies = []
    for path in dicomslides.instances(source.folder):
        dataset = pydicom.dcmread(path)
        if str(dataset.SOPInstanceUID) == largest[1]:
            continue
        dataset.SeriesInstanceUID = series_uid
        dataset.SOPInstanceUID = generate_uid()
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        dataset.save_as(tmp_path / path.name, enforce_file_format=True)
        copies.append(tmp_path / path.name)
    study, series = orthanc.upload(copies)
    with pytest.raises(UnsupportedImage) as caught:
        open_path(
            locator(proxy.url, Series(tmp_path, study, series)), settings_for(proxy, redis_url)
        )
    assert caught.value.status == 422
    assert "concatenation" in caught.value.message


def _open_in_another_process(path: str, settings: Settings) -> str:
    """What a second worker process does: open the series, describe it."""
    opened = open_path(path, settings)
    with opened.source:
        return str(opened.source.metadata["sizeX"])


def test_another_process_reads_the_description_from_redis(
    stored: dict[str, Series], proxy: CountingProxy, redis_url: str, fresh: None
) -> None:
    path = locator(proxy.url, stored["orthanc-jpeg"])
    settings = settings_for(proxy, redis_url)
    mark = proxy.log.mark()
    open_path(path, settings).source.close()
    first = len(proxy.log.since(mark))
    mark = proxy.log.mark()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        size = pool.apply(_open_in_another_process, (path, settings))
    second = len(proxy.log.since(mark))
    print(f"\ndicomweb opening: first process {first} requests, second process {second}")
    assert size == str(SIDE)
    assert second == 1 < first  # the instance search; the rest came from Redis
    # Not shared when switched off: the description is fetched again.
    forget_readers()
    mark = proxy.log.mark()
    open_path(path, replace(settings, remote_block_ttl=0)).source.close()
    assert len(proxy.log.since(mark)) == first
    # The identity a file check compares: the instances, one search.
    mark = proxy.log.mark()
    assert remote_identity(path, settings) == open_path(path, settings).identity
    assert len(proxy.log.since(mark)) == 2


# -- access ----------------------------------------------------------------------------------


def test_the_allow_list_admits_dicomweb_entries_only(proxy: CountingProxy) -> None:
    url = f"dicomweb+{proxy.url}{DICOMWEB_ROOT}/studies/1.2.3/series/4.5.6"
    allowed = parse_allow_list(f"dicomweb+{proxy.url}{DICOMWEB_ROOT}/")
    assert remote_source({"url": url}, allowed, ()).url.scheme == "dicomweb+http"
    refused = {
        # a plain http(s) entry never admits DICOMweb (nor sends it the credentials)
        url: parse_allow_list(f"{proxy.url}{DICOMWEB_ROOT}/"),
        f"dicomweb+{proxy.url}/other/studies/1.2.3/series/4.5.6": allowed,
        "dicomweb+http://127.0.0.1:1/dicom-web/studies/1.2.3/series/4.5.6": allowed,
        "dicomweb+http://169.254.169.254/dicom-web/studies/1/series/2": allowed,
        f"dicomweb+{proxy.url}{DICOMWEB_ROOT}/studies/1.2.3": allowed,  # no series
        f"dicomweb+{proxy.url}{DICOMWEB_ROOT}/studies/1.2.3/series/4..6": allowed,
    }
    for text, prefixes in refused.items():
        with pytest.raises(SourceRefused) as caught:
            remote_source({"url": text}, prefixes, ())
        assert caught.value.status == 400 and caught.value.parameter == "url", text
    with pytest.raises(SourceRefused) as caught:
        remote_source({"url": url, "anonymous": True}, allowed, ())
    assert caught.value.parameter == "anonymous"


def test_a_record_no_longer_allowed_is_not_read(
    stored: dict[str, Series], proxy: CountingProxy, redis_url: str
) -> None:
    path = locator(proxy.url, stored["orthanc-jpeg"])
    mark = proxy.log.mark()
    with pytest.raises(UnsupportedImage):
        open_path(path, settings_for(proxy, redis_url, remote_allow=f"{proxy.url}/"))
    assert proxy.log.since(mark) == []


def test_wrong_credentials_are_a_403_that_never_shows_them(
    stored: dict[str, Series], proxy: CountingProxy, redis_url: str, fresh: None
) -> None:
    path = locator(proxy.url, stored["orthanc-jpeg"])
    with pytest.raises(RemoteForbidden) as caught:
        open_path(path, settings_for(proxy, redis_url, dicomweb_password="wrong-password"))
    assert caught.value.status == 403
    assert "wrong-password" not in str(caught.value.message)
    with pytest.raises(RemoteForbidden):
        open_path(path, settings_for(proxy, redis_url, dicomweb_user="", dicomweb_password=""))


def test_a_bearer_token_is_sent(
    stored: dict[str, Series], proxy: CountingProxy, redis_url: str, fresh: None
) -> None:
    path = locator(proxy.url, stored["orthanc-jpeg"])
    token = settings_for(proxy, redis_url, dicomweb_user="", dicomweb_password="")
    proxy.token = "a-secret-token"
    try:
        opened = open_path(path, replace(token, dicomweb_token="a-secret-token"))
        with opened.source as source:
            assert source.read_tile(source.levels - 1, 0, 0).is_jpeg
        with pytest.raises(RemoteForbidden) as caught:
            open_path(path, replace(token, dicomweb_token="another-token"))
        assert "another-token" not in caught.value.message
    finally:
        proxy.token = None


# -- failures ---------------------------------------------------------------------------------


def test_a_missing_series_is_not_found(
    stored: dict[str, Series], proxy: CountingProxy, redis_url: str
) -> None:
    missing = replace(stored["orthanc-jpeg"], series="1.2.3.4.5")
    with pytest.raises(RemoteNotFound) as caught:
        open_path(locator(proxy.url, missing), settings_for(proxy, redis_url))
    assert caught.value.status == 404


def test_a_dead_server_is_a_503_quickly(redis_url: str, proxy: CountingProxy) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    settings = settings_for(proxy, redis_url, remote_allow=f"dicomweb+{dead}/")
    started = time.monotonic()
    with pytest.raises(RemoteUnavailable) as caught:
        open_path(locator(dead, Series(Path("."), "1.2.3", "4.5.6")), settings)
    assert caught.value.status == 503 and caught.value.retry_after
    assert time.monotonic() - started < 5


def test_a_throttling_server_is_retried_then_a_503_with_retry_after(
    stored: dict[str, Series], proxy: CountingProxy, redis_url: str, fresh: None
) -> None:
    settings = settings_for(proxy, redis_url)
    opened = open_path(locator(proxy.url, stored["orthanc-jpeg"]), settings)
    with opened.source as source:
        proxy.throttle = (429, 7)
        mark = proxy.log.mark()
        try:
            with pytest.raises(RemoteThrottled) as caught:
                source.read_tile(source.levels - 1, 1, 1)
        finally:
            proxy.throttle = None
        assert len(proxy.log.since(mark)) == settings.remote_retries + 1
        assert caught.value.status == 503 and caught.value.retry_after == 7
        # The server answers again: so does the source.
        assert source.read_tile(source.levels - 1, 1, 1).is_jpeg


def test_a_cut_answer_is_retried_then_a_503_and_never_used(
    stored: dict[str, Series], proxy: CountingProxy, redis_url: str, fresh: None
) -> None:
    settings = settings_for(proxy, redis_url)
    opened = open_path(locator(proxy.url, stored["orthanc-jpeg"]), settings)
    with opened.source as source:
        whole = source.read_tile(source.levels - 1, 2, 2).jpeg
        proxy.truncate = True
        mark = proxy.log.mark()
        try:
            with pytest.raises(RemoteTruncated) as caught:
                source.read_tile(source.levels - 1, 2, 2)
        finally:
            proxy.truncate = False
        assert len(proxy.log.since(mark)) == settings.remote_retries + 1
        assert caught.value.status == 503
        assert source.read_tile(source.levels - 1, 2, 2).jpeg == whole


def test_credentials_are_one_kind_and_complete() -> None:
    for env in (
        {"TILECAST_DICOMWEB_TOKEN": "t", "TILECAST_DICOMWEB_USER": "u"},
        {"TILECAST_DICOMWEB_USER": "u"},
        {"TILECAST_DICOMWEB_PASSWORD": "p"},
    ):
        with pytest.raises(ConfigurationError) as caught:
            Settings.from_env(env)
        assert "TILECAST_DICOMWEB_" in str(caught.value)
    assert Settings.from_env({"TILECAST_DICOMWEB_TOKEN": "t"}).dicomweb_token == "t"


def test_bulk_data_uris_are_left_out_of_the_description() -> None:
    """An ICC profile named by a BulkDataURI (any host's) is never fetched: the
    element, nested or not, is kept without a value."""
    from pydicom import Dataset

    from tilecast.workers.remote.dicomweb import _without_bulk_data

    item = {
        "00282000": {"vr": "OB", "BulkDataURI": "http://169.254.169.254/icc"},
        "00480105": {
            "vr": "SQ",
            "Value": [{"00282000": {"vr": "OB", "BulkDataURI": "http://elsewhere/icc"}}],
        },
        "00280010": {"vr": "US", "Value": [256]},
    }
    kept = _without_bulk_data(item)
    assert "BulkDataURI" not in str(kept)
    dataset = Dataset.from_json(kept)
    assert dataset.Rows == 256
    assert not dataset.ICCProfile
    assert not dataset[0x00480105][0].ICCProfile
