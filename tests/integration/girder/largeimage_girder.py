"""Girder 3.2 with girder-large-image and tilecast's plugin, and tilecast in ``girder``
mode in front of the same Girder: the two sides of test_large_image_compat.py.

- :func:`start_girder`: the venv of tests/largeimagevenv.py (built on first use, ~80 s
  clean), a :class:`~tests.girderserver.GirderServer` from it, and large_image's ICC
  correction off, so its JPEG tiles are the file's own bytes (large-image facts note).
- :func:`make_images`: small generated files of the kinds viewers meet.
- :func:`upload`: a file uploaded as a user, returned once girder_large_image made the
  item a large image (``largeImage.fileId``).
- :func:`start_tilecast`: a worker and an api in ``girder`` mode, service account = an
  admin API key, on their own Redis database (the session's worker knows no Girder).
- :class:`Pair`: the same request to both hosts (only the host differs).
"""

from __future__ import annotations

import mimetypes
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests import largeimagevenv
from tests.conftest import (
    ApiServer,
    Child,
    launch_api,
    launch_worker,
)
from tests.girderserver import GirderServer
from tests.images_frames import make_frame_images
from tilecast.sample import sample_image, write_tiff

SECRET = "largeimage-compat-secret"
# The lead's girder tests use database 7; the session's worker uses 0.
REDIS_DB = 8
LARGE_IMAGE_TIMEOUT = 60.0
# Its upload handler sets the large image before the upload request returns.
AUTO_SET_WAIT = 1.0

# name -> what it is; all small, none a power of two in size.
IMAGES: dict[str, str] = {
    "jpeg_pyramid": "1000x700 RGB, pyramidal tiled TIFF, JPEG Q90 tiles, 4000 px/mm",
    "png": "600x450 8-bit RGB PNG (no levels, no tiles)",
    "uint16": "600x450 uint16 single-band tiled TIFF (deflate), no levels",
    "svs": "Aperio-like 1200x900 SVS: JPEG tiles, a 4x level, thumbnail/label/macro",
    "multipage": "3 frames (TIFF pages) of 600x450 RGB, deflate tiles, no levels",
}


def start_girder(directory: Path, mongo_uri: str | None = None) -> GirderServer:
    """Girder 3.2 + girder-large-image + tilecast's plugin, ICC correction off (sites
    default to on: see test_with_icc_correction_on_pixels_still_match)."""
    venv = largeimagevenv.ensure()
    server = GirderServer(directory, bin_dir=venv / "bin", mongo_uri=mongo_uri).start()
    try:
        server.set_setting("large_image.icc_correction", False)
    except BaseException:
        server.stop()
        raise
    return server


def make_images(directory: Path) -> dict[str, Path]:
    """The files of :data:`IMAGES` in ``directory``: name -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    frames = make_frame_images(directory / "frames")
    png = directory / "rgb.png"
    sample_image(600, 450).pngsave(str(png))
    pyramid = sample_image(1000, 700).copy_memory()
    return {
        "jpeg_pyramid": write_tiff(
            pyramid, directory / "pyramid.tiff", pyramid=True, pixels_per_mm=4000
        ),
        "png": png,
        "uint16": frames["uint16"],
        "svs": frames["svs"],
        "multipage": frames["multipage"],
    }


def upload(client: Any, folder_id: str, path: Path) -> str:
    """Upload ``path`` into a new item of ``folder_id``; its id once girder_large_image
    has made it a large image: on upload for the files its sources claim by extension or
    MIME type (the TIFFs), else when the user asks for it, as its web client's "make large
    image" button does (a PNG with only the PIL source installed)."""
    item_id = str(client.createItem(folder_id, path.name)["_id"])
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    file = client.uploadFileToItem(item_id, str(path), mimeType=mime)
    if not _large_image_file(client, item_id, AUTO_SET_WAIT):
        client.post(f"item/{item_id}/tiles", parameters={"fileId": file["_id"]})
    if not _large_image_file(client, item_id, LARGE_IMAGE_TIMEOUT):
        raise AssertionError(f"girder_large_image did not make {path.name} a large image")
    return item_id


def _large_image_file(client: Any, item_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        file_id = str(client.getItem(item_id).get("largeImage", {}).get("fileId", ""))
        if file_id or time.monotonic() > deadline:
            return file_id
        time.sleep(0.1)


@dataclass
class Tilecast:
    api: ApiServer
    worker: Child

    def stop(self) -> None:
        self.api.http.close()
        self.api.child.stop()
        self.worker.stop()


def start_tilecast(
    girder: GirderServer, base_env: Mapping[str, str], redis_url: str, logs: Path
) -> Tilecast:
    """A worker and an api in ``girder`` mode against ``girder``; its plugin is pointed at
    the api, as a site would set it up."""
    girder.set_setting("tilecast.secret", SECRET)
    girder.set_setting("tilecast.levels", "0")
    env = {
        **base_env,
        "TILECAST_CACHE_URL": f"{redis_url.rsplit('/', 1)[0]}/{REDIS_DB}",
        "TILECAST_ACCESS_MODE": "girder",
        # The viewer origin the CORS test uses (test_large_image_compat.VIEWER_ORIGIN).
        "TILECAST_CORS_ORIGINS": "http://viewer.example",
        "TILECAST_GIRDER_URL": girder.api_url,
        "TILECAST_GIRDER_API_KEY": girder.api_key("tilecast-compat"),
        "TILECAST_GIRDER_SECRET": SECRET,
    }
    worker = launch_worker(env, logs, "worker-largeimage-compat", concurrency=1)
    try:
        api = launch_api(env, logs, "api-largeimage-compat")
    except BaseException:
        worker.stop()
        raise
    girder.set_setting("tilecast.url", api.base)
    return Tilecast(api, worker)


@dataclass
class Answers:
    girder: requests.Response
    tilecast: requests.Response


@dataclass
class Pair:
    """girder_large_image at ``girder`` and tilecast at ``tilecast`` (both ``http://host:
    port``), asked the same ``/api/v1/item/{id}/tiles...`` path."""

    girder: str
    tilecast: str

    def get(self, item_id: str, path: str = "", **kwargs: Any) -> Answers:
        # No shared session: cookies ignore ports, so one host's would reach the other.
        kwargs.setdefault("timeout", 90)
        url = f"/api/v1/item/{item_id}/tiles{path}"
        return Answers(
            requests.get(self.girder + url, **kwargs),
            requests.get(self.tilecast + url, **kwargs),
        )
