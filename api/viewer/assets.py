"""OpenSeadragon for the viewer, from its npm package, verified and unpacked at build time.

Standard library only: scripts/bootstrap.sh runs it before tilecast is installed
(``python -m tilecast.api.viewer.assets``) and setup.py's build step loads it by file path, so
that ``pip install .`` ships the files as package data without a CDN or an npm binary.
The tarball is pinned by version and by the sha512 ``integrity`` the npm registry
publishes for it; anything else is refused before a byte is written.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path, PurePosixPath

OSD_VERSION = "6.1.1"
OSD_INTEGRITY = (
    "sha512-g4iKe2q8B642SaBT3+x4ZF3/8b1TxPPydyjmtrOLgDrlYWMKd9ZX"
    "M+1Cb/xa9DVySkvs/7l6HR1nHKfD5F3Tsw=="
)
OSD_TARBALL_URL = f"https://registry.npmjs.org/openseadragon/-/openseadragon-{OSD_VERSION}.tgz"
# Where the package's files sit inside the tarball, and which of them the viewer needs.
PACKAGE_BUILD = PurePosixPath("package/build/openseadragon")
LICENSE_MEMBER = PurePosixPath("package/LICENSE.txt")
SCRIPT_NAME = "openseadragon.min.js"
IMAGES_DIR = "images"
LICENSE_NAME = "LICENSE.txt"
# Written last, so a directory holding it holds every other file of that tarball.
STAMP_NAME = "INTEGRITY"
DOWNLOAD_TIMEOUT = 60.0
MAX_TARBALL_BYTES = 64 * 1024 * 1024

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_TARGET = STATIC_DIR / "openseadragon"


class AssetError(Exception):
    """The tarball could not be fetched, did not verify, or lacks a needed file."""


def verify_integrity(data: bytes, integrity: str) -> None:
    """Raise AssetError unless ``data`` matches an npm ``sha512-<base64>`` integrity."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512" or not expected:
        raise AssetError(f"unsupported integrity {integrity!r}: expected sha512-<base64>")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")
    if not hmac.compare_digest(actual, expected):
        raise AssetError(f"integrity mismatch: expected {integrity}, got sha512-{actual}")


def wanted_name(member: str) -> str | None:
    """The file's name below the target directory, or None for files the viewer skips."""
    path = PurePosixPath(member)
    if path == LICENSE_MEMBER:
        return LICENSE_NAME
    if path == PACKAGE_BUILD / SCRIPT_NAME:
        return SCRIPT_NAME
    if path.parent == PACKAGE_BUILD / IMAGES_DIR and path.suffix == ".png":
        return f"{IMAGES_DIR}/{path.name}"
    return None


def extract(data: bytes, target: Path, integrity: str = OSD_INTEGRITY) -> list[str]:
    """Unpack the viewer's files of a verified tarball into ``target`` (replacing what
    was there); the names written. Files go to a sibling temporary directory first,
    so ``target`` never holds half a version."""
    verify_integrity(data, integrity)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".osd-") as scratch:
        staging = Path(scratch) / "files"
        names = _unpack(data, staging)
        if SCRIPT_NAME not in names:
            raise AssetError(f"the tarball has no {PACKAGE_BUILD / SCRIPT_NAME}")
        (staging / STAMP_NAME).write_text(integrity + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return sorted(names)


def _unpack(data: bytes, staging: Path) -> set[str]:
    names: set[str] = set()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for member in archive:
            name = wanted_name(member.name)
            if name is None or not member.isfile():
                continue
            source = archive.extractfile(member)
            if source is None:
                continue
            # Names come from wanted_name, never from the archive: no path can escape.
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(source.read())
            names.add(name)
    return names


def is_installed(target: Path = DEFAULT_TARGET, integrity: str = OSD_INTEGRITY) -> bool:
    """Whether ``target`` holds the files of the pinned tarball."""
    stamp = target / STAMP_NAME
    try:
        return stamp.read_text().strip() == integrity and (target / SCRIPT_NAME).is_file()
    except OSError:
        return False


def download(url: str = OSD_TARBALL_URL, timeout: float = DOWNLOAD_TIMEOUT) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read(MAX_TARBALL_BYTES + 1)
    except OSError as exc:
        raise AssetError(f"could not download {url}: {exc}") from exc
    if len(data) > MAX_TARBALL_BYTES:
        raise AssetError(f"{url} is larger than {MAX_TARBALL_BYTES} bytes")
    return data


def ensure(
    target: Path = DEFAULT_TARGET, url: str = OSD_TARBALL_URL, integrity: str = OSD_INTEGRITY
) -> bool:
    """Download and unpack the pinned OpenSeadragon unless it is there; True when fetched."""
    if is_installed(target, integrity):
        return False
    extract(download(url), target, integrity)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tilecast.api.viewer.assets",
        description=f"Fetch OpenSeadragon {OSD_VERSION} from the npm registry for the viewer.",
    )
    parser.add_argument("--target", type=Path, default=DEFAULT_TARGET)
    parser.add_argument("--check", action="store_true", help="only say whether it is there")
    args = parser.parse_args(argv)
    if args.check:
        present = is_installed(args.target)
        print(f"openseadragon {OSD_VERSION}: {'present' if present else 'missing'}")
        return 0 if present else 1
    try:
        fetched = ensure(args.target)
    except AssetError as exc:
        print(f"viewer assets: {exc}", file=sys.stderr)
        return 1
    if fetched:
        print(f"openseadragon {OSD_VERSION} unpacked into {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
