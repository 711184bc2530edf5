"""The inputs of the remote benchmark: a whole-slide-like pyramidal TIFF of more than
1 GiB, and a real Girder 5 that serves it from a filesystem assetstore.

The picture is tilecast's sample image (smooth structure) plus luminance noise, so its
256 x 256 JPEG tiles weigh what a scanned slide's do (about 30 KB) and the file has the
tile count of one (about 30,000 native tiles, so directories of a few hundred KB).
The noise is one 2048-pixel block repeated: generation costs JPEG encoding only.

Girder gets the file by a filesystem import of its folder, which records the file where
it lies (no copy, no 1 GB upload).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from tests.bench.harness import BenchError
from tests.girderserver import GirderServer

WIDTH, HEIGHT = 47104, 40960  # 184 x 160 tiles of 256
NOISE_BLOCK = 2048
NOISE_SIGMA = 16
MIN_BYTES = 1024**3
FOLDER = "remote"  # under the bench's image folder; Girder imports this folder whole


@dataclass(frozen=True)
class RemoteImage:
    path: Path
    size: int
    generated_in: float | None  # seconds, when this run generated it


@dataclass(frozen=True)
class GirderItem:
    item_id: str
    file_id: str
    token: str  # an administrator's token: may read the item


def make_image(image_dir: Path) -> RemoteImage:
    """The image, generated on first use into ``image_dir/remote/``."""
    import pyvips

    from tilecast.sample import sample_image

    path = image_dir / FOLDER / f"slide-{WIDTH}x{HEIGHT}-jpeg.tiff"
    if path.exists():
        return RemoteImage(path, path.stat().st_size, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    block = sample_image(WIDTH, HEIGHT).crop(0, 0, NOISE_BLOCK, NOISE_BLOCK)
    noise = pyvips.Image.gaussnoise(NOISE_BLOCK, NOISE_BLOCK, sigma=NOISE_SIGMA)
    block = (block + noise).cast("uchar").copy_memory()
    image = block.replicate(WIDTH // NOISE_BLOCK, HEIGHT // NOISE_BLOCK)
    # Outside the imported folder until complete: Girder never sees half a file.
    partial = path.parent.parent / f"{path.name}.partial"
    image.tiffsave(
        str(partial),
        tile=True,
        tile_width=256,
        tile_height=256,
        pyramid=True,
        compression="jpeg",
        Q=90,
        bigtiff=True,
    )
    size = partial.stat().st_size
    if size < MIN_BYTES:
        partial.unlink()
        raise BenchError(f"the generated image has {size:,} bytes, fewer than 1 GiB")
    partial.rename(path)
    return RemoteImage(path, size, time.monotonic() - started)


def import_into_girder(girder: GirderServer, image: RemoteImage) -> GirderItem:
    """The image's folder imported into the admin's Private folder; the item of the image."""
    admin = girder.client()
    me = admin.get("user/me")
    folder = next(f for f in admin.listFolder(me["_id"], "user") if f["name"] == "Private")
    admin.post(
        f"assetstore/{girder.assetstore_id}/import",
        parameters={
            "importPath": str(image.path.parent),
            "destinationId": folder["_id"],
            "destinationType": "folder",
            "fileIncludeRegex": f"^{image.path.name}$",
        },
    )
    items = [i for i in admin.listItem(folder["_id"]) if i["name"] == image.path.name]
    if len(items) != 1:
        raise BenchError(f"Girder's import made {len(items)} items named {image.path.name}")
    files = list(admin.listFile(items[0]["_id"]))
    if len(files) != 1 or int(files[0]["size"]) != image.size:
        raise BenchError(f"Girder's imported file is not the image: {files}")
    return GirderItem(str(items[0]["_id"]), str(files[0]["_id"]), str(admin.token))
