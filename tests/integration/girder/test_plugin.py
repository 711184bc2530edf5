"""tilecast's Girder plugin inside a real Girder 5: what it tells tilecast (a recording
stand-in here) on uploads, replaced contents, deletions and imports; that tilecast
refusing or missing never fails Girder's own request; and the file-path endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import girder_client
import pytest
import pyvips
import requests

from tests.girderserver import GirderServer
from tests.integration.girder.receiver import Receiver
from tilecast.redis_server import free_port

pytestmark = pytest.mark.girder

SECRET = "stub-secret"
SECRET_HEADER = "Tilecast-Secret"
LEVELS = "0-1"
DEFAULT_SETTINGS = {
    "tilecast.url": "",
    "tilecast.secret": "",
    "tilecast.levels": "0-2",
    "tilecast.precache_on_import": False,
}


@pytest.fixture(scope="module")
def stub(girder: GirderServer) -> Iterator[Receiver]:
    with Receiver() as receiver:
        girder.set_setting("tilecast.url", receiver.url)
        girder.set_setting("tilecast.secret", SECRET)
        girder.set_setting("tilecast.levels", LEVELS)
        try:
            yield receiver
        finally:
            for key, value in DEFAULT_SETTINGS.items():
                girder.set_setting(key, value)


@pytest.fixture
def tilecast(stub: Receiver) -> Receiver:
    stub.reset()
    return stub


@dataclass
class Owner:
    client: Any
    folder: str


@pytest.fixture(scope="module")
def owner(girder: GirderServer) -> Owner:
    client, _token = girder.create_user("plugin-owner")
    me = client.get("user/me")
    folders = {f["name"]: f["_id"] for f in client.listFolder(me["_id"], "user")}
    return Owner(client, folders["Private"])


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plugin-files")
    # A 3-band image: black plus a per-band constant.
    image = pyvips.Image.black(64, 48, bands=3).linear(1, (30, 90, 150))
    image.cast("uchar").pngsave(str(root / "small.png"))
    (image + 50).cast("uchar").tiffsave(str(root / "small.tiff"), tile=True)
    (root / "notes.txt").write_text("not an image\n")
    return {path.name: path for path in root.iterdir()}


def _upload(owner: Owner, path: Path, item_id: str | None = None) -> tuple[str, str]:
    """Upload ``path`` into a new item (or ``item_id``): (item id, file id)."""
    if item_id is None:
        item_id = str(owner.client.createItem(owner.folder, path.name)["_id"])
    file = owner.client.uploadFileToItem(item_id, str(path))
    return item_id, str(file["_id"])


def _posts(item_id: str) -> Any:
    return lambda r: r.method == "POST" and r.item_id == item_id


def _deletes(item_id: str) -> Any:
    return lambda r: r.method == "DELETE" and r.item_id == item_id


def test_settings_are_validated_and_normalized(girder: GirderServer) -> None:
    for key, bad in (
        ("tilecast.levels", "x"),
        ("tilecast.levels", "3-1"),
        ("tilecast.levels", "0-99"),
        ("tilecast.url", "ftp://tilecast"),
        ("tilecast.precache_on_import", "maybe"),
    ):
        with pytest.raises(girder_client.HttpError) as raised:
            girder.set_setting(key, bad)
        assert raised.value.status == 400, (key, bad)
    girder.set_setting("tilecast.levels", " 0, 2-3 ")
    assert girder.get_setting("tilecast.levels") == "0,2-3"
    girder.set_setting("tilecast.levels", DEFAULT_SETTINGS["tilecast.levels"])
    assert girder.get_setting("tilecast.precache_on_import") is False


def test_an_image_upload_is_announced(
    tilecast: Receiver, owner: Owner, files: dict[str, Path]
) -> None:
    item_id, file_id = _upload(owner, files["small.png"])
    (post,) = tilecast.wait_for(_posts(item_id))
    assert post.path == f"/girder/items/{item_id}"
    assert post.headers[SECRET_HEADER] == SECRET
    assert post.headers["Content-Type"] == "application/json"
    assert post.body == {"fileId": file_id, "levels": LEVELS, "thumbnail": True, "reason": "upload"}


def test_a_non_image_upload_is_not_announced(
    tilecast: Receiver, owner: Owner, files: dict[str, Path]
) -> None:
    item_id, _text_id = _upload(owner, files["notes.txt"])
    # Calls about one item keep their order: had the text file been announced, its POST
    # would arrive before the image's.
    _item, image_id = _upload(owner, files["small.tiff"], item_id)
    tilecast.wait_for(_posts(item_id))
    assert [r.body["fileId"] for r in tilecast.about(item_id)] == [image_id]


def test_replacing_a_files_contents_announces_it_again(
    tilecast: Receiver, owner: Owner, files: dict[str, Path]
) -> None:
    item_id, file_id = _upload(owner, files["small.png"])
    tilecast.wait_for(_posts(item_id))
    replacement = files["small.tiff"]
    with replacement.open("rb") as stream:
        owner.client.uploadFileContents(file_id, stream, replacement.stat().st_size)
    second = tilecast.wait_for(_posts(item_id), count=2)[1]
    assert second.body == {
        "fileId": file_id,
        "levels": LEVELS,
        "thumbnail": True,
        "reason": "upload",
    }


def test_deleting_an_image_file_or_an_item_is_announced(
    tilecast: Receiver, owner: Owner, files: dict[str, Path]
) -> None:
    item_id, image_id = _upload(owner, files["small.png"])
    _item, text_id = _upload(owner, files["notes.txt"], item_id)
    tilecast.wait_for(_posts(item_id))
    owner.client.delete(f"file/{text_id}")
    owner.client.delete(f"file/{image_id}")
    (delete,) = tilecast.wait_for(_deletes(item_id))
    assert delete.path == f"/girder/items/{item_id}"
    assert delete.headers[SECRET_HEADER] == SECRET
    assert delete.body is None
    # Only the image's removal was announced (the text file's came first, in order).
    assert [r.method for r in tilecast.about(item_id)] == ["POST", "DELETE"]

    other, _file = _upload(owner, files["small.tiff"])
    tilecast.wait_for(_posts(other))
    owner.client.delete(f"item/{other}")
    tilecast.wait_for(_deletes(other))


def test_imports_are_announced_only_when_turned_on(
    girder: GirderServer,
    tilecast: Receiver,
    files: dict[str, Path],
    tmp_path: Path,
) -> None:
    source = tmp_path / "to-import"
    source.mkdir()
    for name in ("small.tiff", "notes.txt"):
        (source / name).write_bytes(files[name].read_bytes())
    admin = girder.client()

    quiet = _import(girder, source, "import-off")
    # An upload into the imported image's item is a barrier: an import POST would precede it.
    _upload(Owner(admin, ""), files["small.png"], quiet["small.tiff"])
    tilecast.wait_for(_posts(quiet["small.tiff"]))
    assert [r.body["reason"] for r in tilecast.about(quiet["small.tiff"])] == ["upload"]

    girder.set_setting("tilecast.precache_on_import", True)
    try:
        loud = _import(girder, source, "import-on")
    finally:
        girder.set_setting("tilecast.precache_on_import", False)
    (post,) = tilecast.wait_for(_posts(loud["small.tiff"]))
    (imported,) = admin.listFile(loud["small.tiff"])
    assert post.body == {
        "fileId": imported["_id"],
        "levels": LEVELS,
        "thumbnail": True,
        "reason": "import",
    }
    assert tilecast.about(loud["notes.txt"]) == []


def _import(girder: GirderServer, source: Path, folder_name: str) -> dict[str, str]:
    """Import ``source`` into a new folder of the admin: file name -> item id."""
    admin = girder.client()
    me = admin.get("user/me")
    folder = admin.createFolder(me["_id"], folder_name, parentType="user")
    admin.post(
        f"assetstore/{girder.assetstore_id}/import",
        parameters={
            "importPath": str(source),
            "destinationId": folder["_id"],
            "destinationType": "folder",
            "progress": "false",
        },
    )
    return {item["name"]: str(item["_id"]) for item in admin.listItem(folder["_id"])}


def test_a_refusing_or_failing_tilecast_never_fails_girder(
    girder: GirderServer, tilecast: Receiver, owner: Owner, files: dict[str, Path]
) -> None:
    tilecast.reset(default=401)
    item_id, _file = _upload(owner, files["small.png"])
    tilecast.wait_for(_posts(item_id))
    # 401 is not retried: the next call about the item is the next POST, not a retry.
    tilecast.reset(default=201)
    _upload(owner, files["small.tiff"], item_id)
    second = tilecast.wait_for(_posts(item_id))
    assert len(second) == 1
    assert "refused the shared secret" in girder.log_text()

    # 5xx is retried, with backoff, until tilecast answers.
    tilecast.reset(503, 503)
    retried, _file = _upload(owner, files["small.png"])
    posts = tilecast.wait_for(_posts(retried), count=3)
    assert len({repr(p.body) for p in posts}) == 1

    girder.set_setting("tilecast.url", f"http://127.0.0.1:{free_port()}")
    try:
        _upload(owner, files["small.png"])  # raises if Girder's upload failed
    finally:
        girder.set_setting("tilecast.url", tilecast.url)


def test_the_path_endpoint_needs_the_secret(
    girder: GirderServer, tilecast: Receiver, owner: Owner, files: dict[str, Path]
) -> None:
    item_id, file_id = _upload(owner, files["small.png"])
    url = f"{girder.api_url}/tilecast/file/{file_id}/path"
    for headers in ({}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: SECRET + "x"}):
        refused = requests.get(url, headers=headers, timeout=30)
        assert refused.status_code == 401
        assert SECRET_HEADER in refused.json()["message"]

    answer = requests.get(url, headers={SECRET_HEADER: SECRET}, timeout=30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    path = Path(body["path"])
    assert path.is_absolute()
    assert path.is_relative_to(girder.assetstore_root)
    assert path.read_bytes() == files["small.png"].read_bytes()
    assert body["size"] == files["small.png"].stat().st_size
    assert body["fileId"] == file_id

    for missing in ("5" * 24, "not-an-id"):
        response = _path(girder, missing)
        assert response.status_code == 404
        assert response.json()["message"]
    link = owner.client.post(
        "file",
        parameters={
            "parentType": "item",
            "parentId": item_id,
            "name": "elsewhere.png",
            "linkUrl": "http://127.0.0.1:9/elsewhere.png",
        },
    )
    assert _path(girder, link["_id"]).status_code == 404


def test_the_path_of_an_imported_file_is_where_it_was_imported_from(
    girder: GirderServer, tilecast: Receiver, files: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "imported"
    source.mkdir()
    (source / "small.tiff").write_bytes(files["small.tiff"].read_bytes())
    items = _import(girder, source, "import-path")
    (file,) = girder.client().listFile(items["small.tiff"])
    answer = _path(girder, file["_id"])
    assert answer.status_code == 200
    assert answer.json()["path"] == str(source / "small.tiff")


def test_an_empty_secret_opens_nothing(
    girder: GirderServer, tilecast: Receiver, owner: Owner, files: dict[str, Path]
) -> None:
    _item, file_id = _upload(owner, files["small.png"])
    girder.set_setting("tilecast.secret", "")
    try:
        response = requests.get(
            f"{girder.api_url}/tilecast/file/{file_id}/path",
            headers={SECRET_HEADER: ""},
            timeout=30,
        )
    finally:
        girder.set_setting("tilecast.secret", SECRET)
    assert response.status_code == 401


def _path(girder: GirderServer, file_id: str) -> requests.Response:
    return requests.get(
        f"{girder.api_url}/tilecast/file/{file_id}/path",
        headers={SECRET_HEADER: SECRET},
        timeout=30,
    )
