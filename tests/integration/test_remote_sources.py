"""URL sources end to end: ``POST /sources {"url": ...}`` to a real api and worker
processes, which read the image by range from moto's S3 and from a Range HTTP server
(tests/remoteservers.py); their tiles are the bytes the same image gives registered as a
local file (TIFFs, and OME-Zarr stores named by their prefix), URLs outside the
allow-list are refused with a 400, and a throttling store's own Retry-After reaches the
client."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ApiServer, Child, launch_api, launch_worker
from tests.images_omezarr import write_omezarr_image
from tests.remoteservers import RangeServer, S3Server
from tests.unit.test_girder_files import noise_pyramid
from tilecast.redis_server import RedisServer

pytestmark = pytest.mark.integration

BUCKET = "tiles"
# OME-Zarr stores served as prefixes: NGFF 0.4 (zarr v2) and 0.5 (zarr v3).
STORES = ("ngff04_czyx", "ngff05_czyx")
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
}


@pytest.fixture(scope="module")
def servers(images: dict[str, Path]) -> Iterator[tuple[RangeServer, S3Server]]:
    import boto3

    http = RangeServer(images["pyramid"].parent)
    s3 = S3Server()
    client = boto3.client(
        "s3", endpoint_url=s3.url, aws_access_key_id="testing", aws_secret_access_key="testing",
        region_name="us-east-1",
    )  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="img/pyramid.tiff", Body=images["pyramid"].read_bytes())
    yield http, s3
    http.close()
    s3.close()


@pytest.fixture(scope="module")
def served(source_root: Path) -> Path:
    """Below the source roots (so each is also registered as a local file): a 4096 x 4096
    JPEG pyramid and the OME-Zarr stores of STORES."""
    folder = source_root / "remote-served"
    folder.mkdir(exist_ok=True)
    noise_pyramid(folder / "big.tiff", 4096, "jpeg")
    for name in STORES:
        write_omezarr_image(folder, name)
    return folder


@pytest.fixture(scope="module")
def stores_http(served: Path) -> Iterator[RangeServer]:
    server = RangeServer(served)
    yield server
    server.close()


@pytest.fixture(scope="module")
def stores_s3(servers: tuple[RangeServer, S3Server], served: Path) -> S3Server:
    """The OME-Zarr stores' files as objects below ``s3://tiles/img/``."""
    import boto3

    s3 = servers[1]
    client = boto3.client(
        "s3", endpoint_url=s3.url, aws_access_key_id="testing", aws_secret_access_key="testing",
        region_name="us-east-1",
    )  # fmt: skip
    for name in STORES:
        for path in sorted((served / f"{name}.zarr").rglob("*")):
            if path.is_file():
                key = f"img/{path.relative_to(served).as_posix()}"
                client.put_object(Bucket=BUCKET, Key=key, Body=path.read_bytes())
    return s3


@pytest.fixture(scope="module")
def remote_api(
    servers: tuple[RangeServer, S3Server],
    stores_http: RangeServer,
    tilecast_env: dict[str, str],
    logs_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ApiServer]:
    http, s3 = servers
    # A Redis of its own: on the session's, the session's worker (which allows no URL)
    # could take this api's tasks.
    redis = RedisServer(tmp_path_factory.mktemp("remote-redis"), maxmemory="256mb")
    redis.start()
    env = {
        **tilecast_env,
        "TILECAST_CACHE_URL": redis.url,
        **AWS,
        "TILECAST_REMOTE_ALLOW": f"{http.url}/,{stores_http.url}/,s3://{BUCKET}/img/",
        "TILECAST_REMOTE_ENDPOINTS": s3.url,
        # Retries quickly: a throttling store's Retry-After is waited for at most four
        # times the backoff between attempts.
        "TILECAST_REMOTE_BACKOFF": "0.01",
        "TILECAST_REMOTE_RETRIES": "2",
    }
    worker: Child = launch_worker(env, logs_dir, "remote-worker")
    api = launch_api(env, logs_dir, "remote-api")
    yield api
    api.http.close()
    api.child.stop()
    worker.stop()
    redis.stop()


def test_url_sources_serve_the_local_files_tiles(
    remote_api: ApiServer, servers: tuple[RangeServer, S3Server], images: dict[str, Path]
) -> None:
    http, s3 = servers
    local = remote_api.register(images["pyramid"])
    bodies = [
        {"url": f"{http.url}/pyramid.tiff"},
        {"url": f"s3://{BUCKET}/img/pyramid.tiff", "endpoint_url": s3.url},
    ]
    for body in bodies:
        created = remote_api.http.post(remote_api.url("/sources"), json=body, timeout=90)
        assert created.status_code == 201, created.text
        source = created.json()["id"]
        again = remote_api.http.post(remote_api.url("/sources"), json=body, timeout=90)
        assert again.status_code == 200 and again.json()["id"] == source
        metadata = remote_api.get(f"/item/{source}/tiles").json()
        assert metadata == remote_api.get(f"/item/{local}/tiles").json()
        top = metadata["levels"] - 1
        for z, x, y in ((0, 0, 0), (top, 1, 1), (top - 1, 0, 1)):
            path = f"/tiles/zxy/{z}/{x}/{y}"
            remote = remote_api.get(f"/item/{source}{path}")
            assert remote.status_code == 200, remote.text
            assert remote.content == remote_api.get(f"/item/{local}{path}").content


def test_urls_outside_the_allow_list_are_400s(
    remote_api: ApiServer, servers: tuple[RangeServer, S3Server]
) -> None:
    http, s3 = servers
    port = int(http.url.rsplit(":", 1)[1])
    for body in (
        {"url": f"http://127.0.0.1:{port + 1 if port < 65535 else 1}/pyramid.tiff"},
        {"url": f"{http.url}/../etc/passwd"},
        {"url": "http://169.254.169.254/latest/meta-data/"},
        {"url": f"s3://{BUCKET}/other/pyramid.tiff", "endpoint_url": s3.url},
        {"url": f"s3://{BUCKET}/img/pyramid.tiff", "endpoint_url": "http://127.0.0.1:1"},
    ):
        response = remote_api.http.post(remote_api.url("/sources"), json=body, timeout=30)
        assert response.status_code == 400, body
        assert response.json()["error"] == "source_refused"


def test_a_missing_object_is_a_clear_404(
    remote_api: ApiServer, servers: tuple[RangeServer, S3Server]
) -> None:
    http, _s3 = servers
    response = remote_api.http.post(
        remote_api.url("/sources"), json={"url": f"{http.url}/missing.tiff"}, timeout=90
    )
    assert response.status_code == 404
    assert response.json()["error"] == "remote_not_found"


def _register(api: ApiServer, body: dict[str, object]) -> str:
    created = api.http.post(api.url("/sources"), json=body, timeout=90)
    assert created.status_code in (200, 201), created.text
    return str(created.json()["id"])


def test_a_throttling_store_is_a_503_with_its_own_retry_after(
    remote_api: ApiServer, stores_http: RangeServer, served: Path
) -> None:
    """429 with ``Retry-After: 7`` through every retry: the worker's RemoteThrottled
    carries the store's 7 s across the task boundary to the client."""
    shutil.copyfile(served / "big.tiff", served / "unregistered.tiff")
    source = _register(remote_api, {"url": f"{stores_http.url}/big.tiff"})
    top = remote_api.get(f"/item/{source}/tiles").json()["levels"] - 1
    stores_http.throttle = (429, 7)
    try:
        # A full-resolution tile far from the directories: blocks nobody fetched yet.
        tile = remote_api.get(f"/item/{source}/tiles/zxy/{top}/14/15")
        assert tile.status_code == 503, tile.text
        assert tile.json()["error"] == "remote_throttled"
        assert tile.headers["Retry-After"] == "7"
        # Registering while it throttles: the same answer from the describing worker.
        body = {"url": f"{stores_http.url}/unregistered.tiff"}
        created = remote_api.http.post(remote_api.url("/sources"), json=body, timeout=90)
        assert created.status_code == 503 and created.headers["Retry-After"] == "7"
        stores_http.throttle = (503, 4000)  # beyond any sensible wait: bounded
        tile = remote_api.get(f"/item/{source}/tiles/zxy/{top}/13/15")
        assert tile.status_code == 503 and tile.headers["Retry-After"] == "300"
    finally:
        stores_http.throttle = None
    assert remote_api.get(f"/item/{source}/tiles/zxy/{top}/14/15").status_code == 200


@pytest.mark.parametrize("name", STORES)
@pytest.mark.parametrize("kind", ["http", "s3"])
def test_omezarr_prefixes_serve_the_local_stores_tiles(
    remote_api: ApiServer,
    stores_http: RangeServer,
    stores_s3: S3Server,
    served: Path,
    kind: str,
    name: str,
) -> None:
    body: dict[str, object] = (
        {"url": f"{stores_http.url}/{name}.zarr/"}
        if kind == "http"
        else {"url": f"s3://{BUCKET}/img/{name}.zarr/", "endpoint_url": stores_s3.url}
    )
    source = _register(remote_api, body)
    local = remote_api.register(served / f"{name}.zarr")
    metadata = remote_api.get(f"/item/{source}/tiles").json()
    assert metadata == remote_api.get(f"/item/{local}/tiles").json()
    frames = len(metadata.get("frames", [])) or 1
    assert frames == 6  # 2 channels x 3 z
    top = metadata["levels"] - 1
    # The last full-resolution tile: the edge of the image, and of its chunks.
    last = (
        (metadata["sizeX"] - 1) // metadata["tileWidth"],
        (metadata["sizeY"] - 1) // metadata["tileHeight"],
    )
    for frame in (0, frames - 1):
        for z, x, y in ((0, 0, 0), (top, 1, 1), (top, *last), (top - 1, 0, 1)):
            path = f"/tiles/fzxy/{frame}/{z}/{x}/{y}?encoding=PNG"
            remote = remote_api.get(f"/item/{source}{path}")
            assert remote.status_code == 200, (path, remote.text)
            assert remote.content == remote_api.get(f"/item/{local}{path}").content, path
