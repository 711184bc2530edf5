"""Small generated test images of every kind tilecast reads (tilecast.sample's picture)."""

from __future__ import annotations

import random
from pathlib import Path

import PIL.Image

from tests.tiffwriter import write_zstd_tiff
from tilecast.sample import sample_image, write_tiff

# 3000 x 2000 with 256-pixel tiles: 12 x 8 tiles at full resolution, 5 levels.
WIDTH, HEIGHT = 3000, 2000
SMALL_WIDTH, SMALL_HEIGHT = 1000, 700
TILE_OFFSETS, TILE_BYTE_COUNTS = 324, 325


def make_test_images(root: Path) -> dict[str, Path]:
    """name -> path of each image, written into ``root``. ``corrupt`` and ``damaged``
    are bad files: see :func:`truncated_copy` and :func:`damaged_copy`."""
    big = sample_image(WIDTH, HEIGHT).copy_memory()
    small = sample_image(SMALL_WIDTH, SMALL_HEIGHT).copy_memory()
    images = {
        "pyramid": write_tiff(big, root / "pyramid.tiff", pyramid=True, pixels_per_mm=4000),
        "single": write_tiff(big, root / "single.tiff", pyramid=False, pixels_per_mm=4000),
        "lzw": write_tiff(small, root / "lzw.tiff", pyramid=False, compression="lzw"),
        "deflate": write_tiff(small, root / "deflate.tiff", pyramid=True, compression="deflate"),
        # libvips here cannot write ZSTD: tests/tiffwriter.py does.
        "zstd": write_zstd_tiff(small, root / "zstd.tiff"),
        "striped": write_tiff(small, root / "striped.tiff", pyramid=False, tile=False),
    }
    small.pngsave(str(root / "image.png"))
    small.jpegsave(str(root / "image.jpg"), Q=90)
    images["png"] = root / "image.png"
    images["jpeg"] = root / "image.jpg"
    images["corrupt"] = truncated_copy(images["single"], root / "corrupt.tiff")
    images["damaged"] = damaged_copy(images["single"], root / "damaged.tiff")
    return images


def truncated_copy(source: Path, target: Path, fraction: float = 0.5) -> Path:
    """The first ``fraction`` of a file: a TIFF cut short, as an interrupted copy leaves it."""
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])
    return target


def damaged_copy(source: Path, target: Path) -> Path:
    """A tiled TIFF whose directory is intact but whose tile data is noise: it opens and
    describes, and only decoding its tiles fails (bit rot, a bad disk block)."""
    with PIL.Image.open(source) as image:
        offsets = image.tag_v2[TILE_OFFSETS]
        counts = image.tag_v2[TILE_BYTE_COUNTS]
    data = bytearray(source.read_bytes())
    noise = random.Random(7)
    for offset, count in zip(offsets, counts, strict=True):
        data[offset : offset + count] = noise.randbytes(count)
    target.write_bytes(bytes(data))
    return target
