"""Generated JPEG 2000 files (issue 16): Aperio-like SVS whose tiles are JPEG 2000, and
plain jp2 / j2k files.

- ``write_jp2k_svs``: an SVS laid out as Aperio writes one (full resolution, a stripped
  thumbnail, 4x and 16x levels, label and macro, Aperio ImageDescriptions), its tiles
  JPEG 2000 codestreams written by tifffile with imagecodecs. Compression 33005 holds
  RGB (the codestream's own colour transform on, as Kakadu writes it); 33003 holds Y,
  Cb, Cr components without a codestream colour transform, as OpenSlide reads them.
  The reduced levels are the halvings rounded down, as scanners store them.
- ``write_jp2``: a jp2 (or raw codestream) by glymur, with an Optrascan XML box and
  macro / label boxes when asked.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pyvips
import tifffile

from tilecast.sample import sample_image

SVS_WIDTH, SVS_HEIGHT = 2500, 1800
SVS_MAG, SVS_MPP = 20, 0.499
TILE = 256
APERIO_HEAD = "Aperio Image Library v10.2.41"
COMPRESSION_YCBCR, COMPRESSION_RGB = 33003, 33005
JP2K_QUALITY = 48  # imagecodecs' level: the target PSNR in dB of its lossy encoding
JP2_MAG, JP2_MICRONS = 40.0, 0.25


def pixels(width: int, height: int, bands: int = 3) -> np.ndarray:
    image = sample_image(width, height, bands)
    return np.ndarray((height, width, bands), np.uint8, image.write_to_memory())


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """JFIF's full-range YCbCr, what an Aperio 33003 tile's components hold."""
    r, g, b = (rgb[:, :, i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return np.clip(np.rint(np.stack([y, cb, cr], axis=-1)), 0, 255).astype(np.uint8)


def _reduced(picture: np.ndarray, factor: int) -> np.ndarray:
    """``picture`` reduced ``factor`` times, its size rounded down as a scanner's."""
    height, width = picture.shape[0] // factor, picture.shape[1] // factor
    image = pyvips.Image.new_from_array(np.ascontiguousarray(picture), interpretation="srgb")
    small = image.resize(width / image.width, vscale=height / image.height, kernel="lanczos3")
    small = small.crop(0, 0, min(width, small.width), min(height, small.height))
    if (small.width, small.height) != (width, height):
        small = small.embed(0, 0, width, height, extend="copy")
    return np.ndarray((height, width, 3), np.uint8, small.write_to_memory())


def write_jp2k_svs(
    path: Path, compression: int, width: int = SVS_WIDTH, height: int = SVS_HEIGHT
) -> Path:
    """The SVS-like slide at ``path``, tiles compressed as ``compression`` (33003 or 33005)."""
    picture = pixels(width, height)
    size = f"{width}x{height}"
    kind = "J2K/YUV16" if compression == COMPRESSION_YCBCR else "J2K/KDU"
    common = f"|AppMag = {SVS_MAG}|StripeWidth = 2040|ScanScope ID = SS1234|Filename = 1234"
    common += f"|Date = 01/02/26|Time = 10:11:12|MPP = {SVS_MPP}|Left = 25.5|Top = 18.2"
    args = {"level": JP2K_QUALITY, "mct": compression == COMPRESSION_RGB}
    stored = rgb_to_ycbcr if compression == COMPRESSION_YCBCR else (lambda rgb: rgb)
    tiled = {"tile": (TILE, TILE), "compression": compression, "compressionargs": args,
             "photometric": "rgb", "metadata": None}  # fmt: skip
    with tifffile.TiffWriter(path) as tif:
        tif.write(
            stored(picture),
            description=f"{APERIO_HEAD}\r\n{size} [0,100 {size}] ({TILE}x{TILE}) {kind} Q=70"
            + common,
            **tiled,
        )
        thumbnail = _reduced(picture, 8)
        tif.write(
            thumbnail,
            description=f"{APERIO_HEAD}\r\n{size} -> {thumbnail.shape[1]}x{thumbnail.shape[0]} - "
            + common,
            photometric="rgb",
            metadata=None,
        )
        for factor in (4, 16):
            level = _reduced(picture, factor)
            reduced = f"{level.shape[1]}x{level.shape[0]}"
            tif.write(
                stored(level),
                description=f"{APERIO_HEAD}\r\n{size} [0,0 {size}] ({TILE}x{TILE}) -> {reduced} "
                f"{kind} Q=70",
                **tiled,
            )
        tif.write(
            pixels(300, 200)[:, ::-1].copy(),
            description=f"{APERIO_HEAD}\r\nlabel 300x200",
            subfiletype=1,
            photometric="rgb",
            compression="lzw",
            metadata=None,
        )
        tif.write(
            pixels(800, 300)[::-1].copy(),
            description=f"{APERIO_HEAD}\r\nmacro 800x300",
            subfiletype=9,
            photometric="rgb",
            compression="jpeg",
            metadata=None,
        )
    return path


def write_jp2(
    path: Path,
    width: int,
    height: int,
    *,
    resolutions: int,
    tile: tuple[int, int] | None = None,
    scan_info: bool = False,
    associated: bool = False,
) -> Path:
    """A lossy jp2 (a raw codestream when ``path`` ends in .j2k) of ``resolutions``
    resolution levels; ``scan_info``: an Optrascan ``mxl `` box (magnification 40,
    0.25 µm pixels); ``associated``: ``mig `` (macro) and ``mag `` (label) boxes."""
    import glymur  # large_image's openjpeg source's library; test-only here

    options = {"tilesize": tile} if tile else {}
    glymur.Jp2k(
        str(path),
        data=pixels(width, height),
        numres=resolutions,
        irreversible=True,
        cratios=[10],
        **options,
    )
    extra = b""
    if scan_info:
        xml = (
            f"<ScanInfo><ScanDetails><Magnification>{JP2_MAG:g}</Magnification>"
            f"<PixelResolution>{JP2_MICRONS}</PixelResolution></ScanDetails></ScanInfo>"
        )
        extra += xl_box(b"mxl ", xml.encode())
    if associated:
        extra += xl_box(b"mig ", associated_jpeg(640, 240, flip=False))
        extra += xl_box(b"mag ", associated_jpeg(200, 200, flip=True))
    if extra:
        with path.open("ab") as out:
            out.write(extra)
    return path


def xl_box(kind: bytes, content: bytes) -> bytes:
    """A box with a 64-bit length (a 16-byte header, where large_image reads from)."""
    return struct.pack(">I4sQ", 1, kind, 16 + len(content)) + content


def associated_jpeg(width: int, height: int, *, flip: bool) -> bytes:
    picture = pixels(width, height)
    if flip:
        picture = np.ascontiguousarray(picture[::-1])
    image = pyvips.Image.new_from_array(picture, interpretation="srgb")
    return bytes(image.jpegsave_buffer(Q=90))
