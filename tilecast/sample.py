"""Synthetic sample images: the demo image of ``tilecast up`` and the test fixtures.

The picture is smooth structure (like tissue at low power) plus fine texture, so that
synthesized levels and lossy encodings are judged on something image-like, and it is
computed lazily by libvips so a 30,000 x 20,000 pyramid streams to disk in bounded memory.
"""

from __future__ import annotations

from pathlib import Path

import pyvips


def sample_image(width: int, height: int, bands: int = 3) -> pyvips.Image:
    """A deterministic uint8 image with ``bands`` bands (1 to 4)."""
    xy = pyvips.Image.xyz(width, height)
    x, y = xy[0], xy[1]
    scale = 2000.0 / max(width, height, 1)
    u, v = x * scale, y * scale
    broad = (u * 0.013).sin() * 70 + (v * 0.011).cos() * 50 + ((u + v) * 0.004).sin() * 40
    fine = (u * 0.37).sin() * 9 + (v * 0.41).cos() * 9
    base = broad + fine + 128
    channels = [
        base,
        broad * -0.8 + (u * 0.05).sin() * 20 + 140,
        (v * 0.021).sin() * 60 + fine * 1.5 + 150,
        (u * 0.002).cos() * 60 + 190,
    ]
    out = channels[0].bandjoin(channels[1:bands]) if bands > 1 else channels[0]
    return out.cast("uchar")


def write_tiff(
    image: pyvips.Image,
    path: str | Path,
    *,
    pyramid: bool,
    compression: str = "jpeg",
    quality: int = 90,
    tile: bool = True,
    tile_size: int = 256,
    pixels_per_mm: float | None = None,
    bigtiff: bool = False,
) -> Path:
    options: dict[str, object] = {
        "tile": tile,
        "pyramid": pyramid,
        "compression": compression,
        "bigtiff": bigtiff,
    }
    if tile:
        options.update(tile_width=tile_size, tile_height=tile_size)
    if compression == "jpeg":
        options["Q"] = quality
    if pixels_per_mm:
        options.update(xres=pixels_per_mm, yres=pixels_per_mm, resunit="cm")
    image.tiffsave(str(path), **options)
    return Path(path)


def make_demo_images(directory: str | Path, width: int = 30000, height: int = 20000) -> list[Path]:
    """The demo pair: a pyramidal JPEG TIFF and a single-level copy of the same pixels."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    image = sample_image(width, height)
    pyramid = directory / f"sample-{width}x{height}-pyramid.tiff"
    single = directory / f"sample-{width}x{height}-single.tiff"
    if not pyramid.exists():
        write_tiff(image, pyramid, pyramid=True, pixels_per_mm=4000, bigtiff=True)
    if not single.exists():
        write_tiff(image, single, pyramid=False, pixels_per_mm=4000, bigtiff=True)
    return [pyramid, single]
