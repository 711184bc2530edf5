"""URL sources end to end: ``POST /sources {"url": ...}`` to a real api and worker
processes, which read the image by range from moto's S3 and from a Range HTTP server
(tests/remoteservers.py); their tiles are the bytes the same image gives registered as a
local file, and URLs outside the allow-list are refused with a 400."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ApiServer, Child, launch_api, launch_worker
from tests.remoteservers import RangeServer, S3Server
from tilecast.redis_server import RedisServer

pytestmark = pytest.mark.integration

BUCKET = "tiles"
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
def remote_api(
    servers: tuple[RangeServer, S3Server],
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
        "TILECAST_REMOTE_ALLOW": f"{http.url}/,s3://{BUCKET}/img/",
        "TILECAST_REMOTE_ENDPOINTS": s3.url,
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
