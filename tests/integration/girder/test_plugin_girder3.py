"""tilecast's Girder plugin inside Girder 3.2 (what sites running girder-large-image use),
run from its own venv (tests/girder3venv.py): it loads, an upload is announced, and the
path endpoint answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pyvips
import requests

from tests.girderserver import GirderServer
from tests.integration.girder.receiver import Receiver

pytestmark = pytest.mark.girder

SECRET = "girder3-secret"


@pytest.fixture(scope="module")
def stub(girder3: GirderServer) -> Iterator[Receiver]:
    with Receiver() as receiver:
        girder3.set_setting("tilecast.url", receiver.url)
        girder3.set_setting("tilecast.secret", SECRET)
        yield receiver


def test_the_plugin_loads_in_girder_3_2(girder3: GirderServer) -> None:
    version = requests.get(f"{girder3.api_url}/system/version", timeout=30).json()
    assert version["release"].startswith("3.2.")
    plugins = girder3.client().get("system/plugins")
    assert "tilecast" in plugins["all"]
    assert "tilecast" in plugins["loaded"]


def test_an_upload_is_announced_and_its_path_served(
    girder3: GirderServer, stub: Receiver, tmp_path: Path
) -> None:
    image = tmp_path / "slide.tiff"
    pyvips.Image.black(64, 48).cast("uchar").tiffsave(str(image), tile=True)
    client, _token = girder3.create_user("girder3-owner")
    me = client.get("user/me")
    folder = next(f for f in client.listFolder(me["_id"], "user") if f["name"] == "Private")
    item = client.createItem(folder["_id"], image.name)
    file = client.uploadFileToItem(item["_id"], str(image))

    (post,) = stub.wait_for(lambda r: r.item_id == item["_id"])
    assert post.method == "POST"
    assert post.headers["Tilecast-Secret"] == SECRET
    assert post.body == {
        "fileId": file["_id"],
        "levels": "0-2",
        "thumbnail": True,
        "reason": "upload",
    }

    answer = requests.get(
        f"{girder3.api_url}/tilecast/file/{file['_id']}/path",
        headers={"Tilecast-Secret": SECRET},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert Path(answer.json()["path"]).read_bytes() == image.read_bytes()
    refused = requests.get(f"{girder3.api_url}/tilecast/file/{file['_id']}/path", timeout=30)
    assert refused.status_code == 401
