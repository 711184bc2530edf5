"""The viewer's OpenSeadragon fetch step (api/viewer/assets.py) on tarballs made here:
integrity checked before anything is written, only the viewer's files unpacked."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from tilecast.api.viewer import assets

SCRIPT = b"/* openseadragon */ var OpenSeadragon = {};"


def npm_tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def integrity_of(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


GOOD = npm_tarball(
    {
        "package/package.json": b"{}",
        "package/LICENSE.txt": b"BSD-3-Clause",
        "package/build/openseadragon/openseadragon.min.js": SCRIPT,
        "package/build/openseadragon/openseadragon.js": b"unminified",
        "package/build/openseadragon/images/zoomin_rest.png": b"png",
        "package/build/openseadragon/images/notes.txt": b"not an image",
        "package/build/openseadragon/images/../../../../../evil.png": b"escape",
    }
)


def test_integrity_matches_npm_sha512() -> None:
    assets.verify_integrity(GOOD, integrity_of(GOOD))


@pytest.mark.parametrize(
    "integrity",
    [integrity_of(b"other bytes"), "sha1-" + integrity_of(GOOD)[7:], "sha512-", "nonsense"],
)
def test_wrong_or_unsupported_integrity_is_refused(integrity: str) -> None:
    with pytest.raises(assets.AssetError):
        assets.verify_integrity(GOOD, integrity)


def test_extract_writes_only_the_viewer_files(tmp_path: Path) -> None:
    target = tmp_path / "static" / "openseadragon"
    names = assets.extract(GOOD, target, integrity_of(GOOD))
    assert names == ["LICENSE.txt", "images/zoomin_rest.png", "openseadragon.min.js"]
    written = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert written == sorted([*names, assets.STAMP_NAME])
    assert (target / "openseadragon.min.js").read_bytes() == SCRIPT
    assert not list(tmp_path.rglob("evil.png"))
    assert assets.is_installed(target, integrity_of(GOOD))
    assert not assets.is_installed(target)  # another pinned version: fetched again


def test_a_tampered_tarball_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "openseadragon"
    assets.extract(GOOD, target, integrity_of(GOOD))
    tampered = npm_tarball({"package/build/openseadragon/openseadragon.min.js": b"alert(1)"})
    with pytest.raises(assets.AssetError, match="integrity mismatch"):
        assets.extract(tampered, target, integrity_of(GOOD))
    assert (target / "openseadragon.min.js").read_bytes() == SCRIPT


def test_a_tarball_without_the_script_is_refused(tmp_path: Path) -> None:
    empty = npm_tarball({"package/package.json": b"{}"})
    with pytest.raises(assets.AssetError, match=r"openseadragon\.min\.js"):
        assets.extract(empty, tmp_path / "openseadragon", integrity_of(empty))
    assert not (tmp_path / "openseadragon").exists()


def test_ensure_downloads_once(tmp_path: Path) -> None:
    tarball = tmp_path / "openseadragon.tgz"
    tarball.write_bytes(GOOD)
    target = tmp_path / "openseadragon"
    assert assets.ensure(target, tarball.as_uri(), integrity_of(GOOD))
    # Present: no download at all (this URL does not exist).
    assert not assets.ensure(target, (tmp_path / "gone.tgz").as_uri(), integrity_of(GOOD))


def test_a_failed_download_is_an_asset_error(tmp_path: Path) -> None:
    with pytest.raises(assets.AssetError, match="could not download"):
        assets.ensure(tmp_path / "osd", (tmp_path / "gone.tgz").as_uri(), integrity_of(GOOD))


def test_the_pin_names_one_npm_tarball() -> None:
    assert assets.OSD_TARBALL_URL.endswith(f"/openseadragon-{assets.OSD_VERSION}.tgz")
    assert assets.OSD_INTEGRITY.startswith("sha512-")
    assert len(base64.b64decode(assets.OSD_INTEGRITY[7:])) == hashlib.sha512().digest_size
