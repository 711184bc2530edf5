"""Local sources stay confined to their roots (issue 8): traversal, absolute paths,
symlinks out of a root (file or directory), a file swapped for a symlink after it was
registered, NUL bytes, very long paths -- each refused with a clear JSON 4xx; the worker
checks again each time it opens a file, not only the api at registration."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import requests

from tests.conftest import ApiServer
from tests.integration.test_bad_input import assert_error

pytestmark = pytest.mark.integration

TIMEOUT = 60.0


@pytest.fixture(scope="module")
def escape_dir(tmp_path_factory: pytest.TempPathFactory, images: dict[str, Path]) -> Path:
    """A directory outside every root, holding a readable image."""
    outside = tmp_path_factory.mktemp("escape")
    shutil.copy(images["png"], outside / "secret.png")
    return outside


@pytest.fixture(scope="module")
def jail(source_root: Path) -> Path:
    """This module's own directory below the source root."""
    path = source_root / "confinement"
    path.mkdir(exist_ok=True)
    return path


def post_source(api: ApiServer, body: object) -> requests.Response:
    return api.http.post(api.url("/sources"), json=body, timeout=TIMEOUT)


def assert_refused(response: requests.Response, status: int = 400) -> None:
    body = assert_error(response, status)
    if status == 400:
        assert body["error"] in ("source_refused", "bad_request"), body
        assert body["parameter"] == "path", body


def test_traversal_and_outside_paths_are_refused(
    api: ApiServer, source_root: Path, jail: Path, escape_dir: Path
) -> None:
    secret = escape_dir / "secret.png"
    for path in [
        f"{jail}/../../{escape_dir.name}/secret.png",
        f"{source_root}/../{escape_dir.name}/secret.png",
        f"{jail}/{'../' * 40}etc/passwd",
        str(secret),
        "/etc/passwd",
        "/proc/self/environ",
        "/dev/zero",
        "secret.png",  # relative: to the api's working directory, never a root
        "~/secret.png",
        "girder://item/0123456789abcdef01234567",
        "file://" + str(secret),
    ]:
        assert_refused(post_source(api, {"path": path}))


def test_symlinks_out_of_a_root_are_refused(
    api: ApiServer, jail: Path, escape_dir: Path, images: dict[str, Path]
) -> None:
    file_link = jail / "link-to-secret.png"
    dir_link = jail / "link-to-escape"
    for link, target in [(file_link, escape_dir / "secret.png"), (dir_link, escape_dir)]:
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    assert_refused(post_source(api, {"path": str(file_link)}))
    assert_refused(post_source(api, {"path": str(dir_link / "secret.png")}))
    assert_refused(post_source(api, {"path": str(dir_link)}))
    # A symlink that stays inside the roots is the file it names: one id for both.
    inner = jail / "inner.png"
    shutil.copy(images["png"], inner)
    alias = jail / "alias.png"
    alias.unlink(missing_ok=True)
    alias.symlink_to(inner)
    assert api.register(alias) == api.register(inner)


def test_malformed_paths_are_refused(api: ApiServer, jail: Path) -> None:
    for path in [
        f"{jail}/a\x00.png",
        f"{jail}/\x00",
        "\x00",
        f"{jail}/{'a' * 300}.png",  # one component past NAME_MAX
        f"{jail}/" + "d/" * 3000 + "x.png",  # past PATH_MAX
        "",
    ]:
        assert_refused(post_source(api, {"path": path}))
    huge = post_source(api, {"path": f"{jail}/" + "a" * 200_000})
    assert 400 <= huge.status_code < 500 and huge.headers["Content-Type"] == "application/json"
    for body in [{"path": 5}, {"path": ["a"]}, {"path": None}, {"path": {"a": 1}}, ["x"], {}]:
        assert_error(post_source(api, body), 400)


def test_a_root_that_is_a_symlink(
    start_api: object, source_root: Path, tmp_path: Path, images: dict[str, Path]
) -> None:
    """A root may itself be a symlink: files below its target are inside, and nothing
    else is. (The target lies below the session's root, which the worker checks.)"""
    target = source_root / "linked-root"
    target.mkdir(exist_ok=True)
    shutil.copy(images["png"], target / "inside.png")
    link = tmp_path / "root-link"
    link.symlink_to(target)
    api = start_api({"TILECAST_SOURCE_ROOTS": str(link)})  # type: ignore[operator]
    assert post_source(api, {"path": str(link / "inside.png")}).status_code in (200, 201)
    assert post_source(api, {"path": str(target / "inside.png")}).status_code in (200, 201)
    assert_refused(post_source(api, {"path": str(images["png"])}))  # in the worker's root only
    assert_refused(post_source(api, {"path": str(link / ".." / "inside.png")}))


def test_file_swapped_for_a_symlink_after_registration(
    api: ApiServer, jail: Path, escape_dir: Path, images: dict[str, Path]
) -> None:
    """The api checked the file when it was registered; the worker checks it again when
    it opens it, so a file (or a directory above it) swapped for a symlink out of the
    roots is never read."""
    folder = jail / "swapped-dir"
    folder.mkdir(exist_ok=True)
    swapped_file, in_folder = jail / "swapped.png", folder / "image.png"
    for path in (swapped_file, in_folder):
        shutil.copy(images["png"], path)
    file_source, folder_source = api.register(swapped_file), api.register(in_folder)
    # Registration opened and closed each file; no worker holds it open yet.
    swapped_file.unlink()
    swapped_file.symlink_to(escape_dir / "secret.png")
    shutil.rmtree(folder)
    os.symlink(escape_dir, folder)
    (escape_dir / "image.png").write_bytes((escape_dir / "secret.png").read_bytes())
    for source in (file_source, folder_source):
        for path in [
            "tiles/zxy/2/0/0",
            "tiles/thumbnail?width=64",
            "tiles/region?right=10&bottom=10",
        ]:
            body = assert_error(api.get(f"/item/{source}/{path}", timeout=TIMEOUT), 422)
            assert body["error"] == "unsupported_image", body
            assert str(escape_dir) not in body["message"]
    # Registering it again is refused at the api.
    assert_refused(post_source(api, {"path": str(swapped_file)}))


def test_item_ids_and_static_paths_do_not_traverse(api: ApiServer) -> None:
    for path in [
        "/item/..%2F..%2Fetc%2Fpasswd/tiles",
        "/item/%2e%2e/tiles/zxy/0/0/0",
        "/iiif/..%2F..%2Fetc%2Fpasswd/info.json",
        "/static/..%2F..%2Fapi%2Fapp.py",
        "/static/../../api/app.py",
        "/viewer/..%2F..%2Fetc%2Fpasswd",
    ]:
        response = api.get(path, headers={"Accept": "application/json"}, timeout=TIMEOUT)
        assert response.status_code in (400, 404), (path, response.status_code)
        assert "import" not in response.text and "root:" not in response.text
