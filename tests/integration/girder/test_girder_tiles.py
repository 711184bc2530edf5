"""tilecast in ``girder`` access mode against a real Girder server with tilecast's plugin:
uploads are registered and pre-rendered, tiles are served to whoever Girder lets read
the item and to nobody else, replaced files change the tiles, deleted items are gone,
and bad input (unknown items, items without an image, expired tokens, a wrong secret,
an unreachable Girder) gets a clear JSON error.

tilecast's processes here use their own Redis database, so the session's worker (which
knows no Girder) never takes their tasks.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pyvips
import requests

from tests.conftest import ApiServer, launch_api, launch_worker
from tilecast.common.settings import Settings
from tilecast.redis_server import free_port

pytestmark = pytest.mark.girder

SECRET = "plugin-shared-secret"
ACCESS_TTL = "1"


@dataclass
class Deployment:
    api: ApiServer
    girder: Any  # tests/girderserver.GirderServer
    env: dict[str, str]

    def tile(self, item_id: str, path: str = "zxy/0/0/0", **kwargs: Any) -> requests.Response:
        return self.api.get(f"/item/{item_id}/tiles/{path}", **kwargs)

    def manage(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Tilecast-Secret": SECRET, **kwargs.pop("headers", {})}
        return self.api.http.request(
            method, self.api.url(path), headers=headers, timeout=90, **kwargs
        )


def _image(path: Path, colour: tuple[int, int, int]) -> Path:
    """A 1000 x 700 pyramidal JPEG TIFF of one colour with a gradient (3 levels)."""
    gradient = pyvips.Image.xyz(1000, 700)[0] / 4
    image = (gradient + list(colour)).cast("uchar")
    image.tiffsave(str(path), tile=True, pyramid=True, compression="jpeg", Q=90)
    return path


@pytest.fixture(scope="module")
def deployment(
    girder: Any, tilecast_env: dict[str, str], logs_dir: Path, redis_url: str
) -> Iterator[Deployment]:
    girder.set_setting("tilecast.secret", SECRET)
    girder.set_setting("tilecast.levels", "0-1")
    env = {
        **tilecast_env,
        "TILECAST_CACHE_URL": redis_url.rsplit("/", 1)[0] + "/7",
        "TILECAST_ACCESS_MODE": "girder",
        "TILECAST_GIRDER_URL": girder.api_url,
        "TILECAST_GIRDER_API_KEY": girder.api_key(),
        "TILECAST_GIRDER_SECRET": SECRET,
        "TILECAST_GIRDER_ACCESS_TTL": ACCESS_TTL,
        "TILECAST_AUTO_PRECACHE": "1",
    }
    worker = launch_worker(env, logs_dir, "worker-girder", concurrency=1)
    api = launch_api(env, logs_dir, "api-girder")
    girder.set_setting("tilecast.url", api.base)
    try:
        yield Deployment(api, girder, env)
    finally:
        girder.set_setting("tilecast.url", "")
        api.http.close()
        api.child.stop()
        worker.stop()


@dataclass
class Owner:
    client: Any
    token: str
    private: str  # folder ids
    public: str


@pytest.fixture(scope="module")
def alice(girder: Any) -> Owner:
    client, token = girder.create_user("alice")
    me = client.get("user/me")
    folders = {f["name"]: f["_id"] for f in client.listFolder(me["_id"], "user")}
    return Owner(client, token, folders["Private"], folders["Public"])


@pytest.fixture(scope="module")
def bob_token(girder: Any) -> str:
    _client, token = girder.create_user("bobby")
    return token


def _upload(owner: Owner, folder: str, path: Path) -> str:
    item = owner.client.createItem(folder, path.name)
    owner.client.uploadFileToItem(item["_id"], str(path))
    return str(item["_id"])


def _wait_registered(deployment: Deployment, item_id: str, timeout: float = 60) -> dict:
    """The job the plugin's upload hook started for ``item_id``, once it finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = deployment.manage("GET", "/jobs")
        jobs = [j for j in response.json() if j["source"] == item_id]
        if jobs and all(j["state"] == "finished" for j in jobs):
            return jobs[0]
        time.sleep(0.2)
    pytest.fail(f"no finished pre-rendering job for {item_id}: {response.text}")


@pytest.fixture(scope="module")
def uploaded(deployment: Deployment, alice: Owner, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("uploads")
    private = _upload(alice, alice.private, _image(folder / "private.tiff", (10, 60, 120)))
    public = _upload(alice, alice.public, _image(folder / "public.tiff", (120, 60, 10)))
    return {"private": private, "public": public, "folder": folder}


def test_an_upload_is_registered_and_prerendered(deployment: Deployment, uploaded) -> None:
    job = _wait_registered(deployment, uploaded["private"])
    assert job["levels"] == [0, 1]
    assert job["thumbnail"] is True
    assert job["failed"] == 0
    assert deployment.tile(uploaded["public"]).status_code == 200


def test_owner_is_served_other_users_and_anonymous_are_refused(
    deployment: Deployment, uploaded, alice: Owner, bob_token: str
) -> None:
    private = uploaded["private"]
    _wait_registered(deployment, private)
    by_header = deployment.tile(private, headers={"Girder-Token": alice.token})
    assert by_header.status_code == 200, by_header.text
    assert by_header.headers["Content-Type"] == "image/jpeg"
    assert by_header.headers["Cache-Control"].startswith("private")
    by_query = deployment.tile(private, params={"token": alice.token})
    assert by_query.status_code == 200
    assert by_query.content == by_header.content
    by_cookie = deployment.tile(private, cookies={"girderToken": alice.token})
    assert by_cookie.status_code == 200
    metadata = deployment.api.get(f"/item/{private}/tiles", params={"token": alice.token})
    assert metadata.json()["sizeX"] == 1000

    refused = deployment.tile(private, headers={"Girder-Token": bob_token})
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"
    anonymous = deployment.tile(private)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "unauthorized"
    # Every item endpoint is behind the same check, under both URL roots.
    for path in ("", "/thumbnail", "/region?right=100&bottom=100", "/images"):
        assert deployment.api.get(f"/item/{private}/tiles{path}").status_code == 401
        assert deployment.api.get(f"/api/v1/item/{private}/tiles{path}").status_code == 401


def test_public_items_are_served_to_anonymous(deployment: Deployment, uploaded) -> None:
    public = uploaded["public"]
    assert deployment.tile(public).status_code == 200
    assert deployment.api.get(f"/api/v1/item/{public}/tiles/zxy/2/1/1").status_code == 200
    assert deployment.api.get(f"/item/{public}/tiles/thumbnail").status_code == 200


def test_an_item_uploaded_without_the_hook_is_registered_on_first_view(
    deployment: Deployment, alice: Owner, tmp_path: Path
) -> None:
    deployment.girder.set_setting("tilecast.url", "")
    try:
        item = _upload(alice, alice.private, _image(tmp_path / "quiet.tiff", (200, 200, 0)))
    finally:
        deployment.girder.set_setting("tilecast.url", deployment.api.base)
    response = deployment.tile(item, path="zxy/1/0/0", headers={"Girder-Token": alice.token})
    assert response.status_code == 200, response.text


def test_replacing_the_file_changes_the_tiles(
    deployment: Deployment, alice: Owner, tmp_path: Path
) -> None:
    item = _upload(alice, alice.private, _image(tmp_path / "before.tiff", (0, 0, 0)))
    _wait_registered(deployment, item)
    token = {"Girder-Token": alice.token}
    before = deployment.tile(item, headers=token)
    assert before.status_code == 200
    (file,) = alice.client.listFile(item)
    after_path = _image(tmp_path / "after.tiff", (250, 250, 250))
    with after_path.open("rb") as stream:
        alice.client.uploadFileContents(file["_id"], stream, after_path.stat().st_size)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        after = deployment.tile(item, headers=token)
        if after.status_code == 200 and after.content != before.content:
            break
        time.sleep(0.2)
    assert _digest(after.content) != _digest(before.content)


def test_deleted_items_are_never_served_again(
    deployment: Deployment, alice: Owner, tmp_path: Path
) -> None:
    item = _upload(alice, alice.public, _image(tmp_path / "doomed.tiff", (5, 5, 5)))
    _wait_registered(deployment, item)
    assert deployment.tile(item).status_code == 200
    alice.client.delete(f"item/{item}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and deployment.tile(item).status_code == 200:
        time.sleep(0.2)
    gone = deployment.tile(item)
    assert gone.status_code == 404
    assert gone.json()["error"] == "unknown_source"


def test_unknown_items_and_items_without_an_image(
    deployment: Deployment, alice: Owner, tmp_path: Path
) -> None:
    unknown = deployment.tile("5" * 24, headers={"Girder-Token": alice.token})
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_source"
    assert deployment.tile("not-an-id").status_code == 404
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    item = _upload(alice, alice.private, text)
    response = deployment.tile(item, headers={"Girder-Token": alice.token})
    assert response.status_code == 415, response.text
    assert response.json()["error"] == "unsupported_format"
    assert "the file is text" in response.json()["message"]


def test_an_expired_token_is_refused(
    deployment: Deployment, girder: Any, uploaded, alice: Owner
) -> None:
    private = uploaded["private"]
    _client, token = girder.create_user("alice-again", login_as=alice)
    assert deployment.tile(private, headers={"Girder-Token": token}).status_code == 200
    requests.delete(f"{girder.api_url}/token/session", headers={"Girder-Token": token}, timeout=10)
    time.sleep(float(ACCESS_TTL) + 0.2)
    response = deployment.tile(private, headers={"Girder-Token": token})
    assert response.status_code == 401
    assert "expired" in response.json()["message"]


def test_plugin_calls_need_the_secret(deployment: Deployment, uploaded) -> None:
    item = uploaded["public"]
    for headers in ({}, {"Tilecast-Secret": "wrong"}):
        response = deployment.api.http.post(
            deployment.api.url(f"/girder/items/{item}"), headers=headers, json={}, timeout=30
        )
        assert response.status_code == 401
        assert response.json()["error"] == "unauthorized"
    # Management needs the secret (or an admin's token) too.
    assert deployment.api.get("/jobs").status_code == 401
    assert deployment.api.get("/sources").status_code == 401
    assert deployment.manage("GET", "/jobs").status_code == 200


def test_an_unreachable_girder_is_a_503_with_retry_after(
    deployment: Deployment, uploaded, logs_dir: Path
) -> None:
    env = {**deployment.env, "TILECAST_GIRDER_URL": f"http://127.0.0.1:{free_port()}/api/v1"}
    api = launch_api(env, logs_dir, "api-girder-down")
    try:
        response = api.get(f"/item/{uploaded['public']}/tiles/zxy/0/0/0", timeout=30)
        assert response.status_code == 503
        assert response.json()["error"] == "girder_unavailable"
        assert int(response.headers["Retry-After"]) > 0
    finally:
        api.http.close()
        api.child.stop()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_workers_that_see_the_assetstore_read_files_in_place(
    deployment: Deployment, uploaded, girder: Any
) -> None:
    """The plugin's path endpoint and the path map, against the real Girder: a worker
    mounting the assetstore (here at the same path) opens the file directly."""
    from tilecast.workers.girder.opening import forget_readers, open_girder_file

    root = str(girder.assetstore_root)
    settings = Settings.from_env({**deployment.env, "TILECAST_GIRDER_PATH_MAP": f"{root}={root}"})
    try:
        direct = open_girder_file(uploaded["public"], settings)
        assert direct.how == "path"
        assert direct.file.local_path is not None
        assert direct.file.local_path.startswith(root)
        direct.file.close()
        remote = open_girder_file(uploaded["public"], Settings.from_env(deployment.env))
        assert remote.how == "range"
        assert remote.file.read(0, 4) == direct_header(direct.file.local_path)
        remote.file.close()
    finally:
        forget_readers()


def direct_header(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(4)
