"""Small generated files for frames, data types, band layouts and Aperio SVS (issue 3).

``make_frame_images(root)`` writes every file and returns name -> path. Each file is a
few hundred pixels a side so the whole set is written in about a second, yet has more
than one level (tiles are 256 x 256), so native and synthesized levels both occur.

Numeric TIFFs are written with tifffile (exact control of sample format, extra samples,
SubIFDs and OME-XML); the SVS-like file is assembled with pyvips (JPEG tiles, as an
Aperio scanner writes them) and tifftools (page order, descriptions, subfile types).
See ``FRAME_IMAGES`` for what each name holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyvips
import tifffile
import tifftools

from tilecast.sample import sample_image

# Width and height of the frame / dtype / band files: 3 levels with 256-pixel tiles.
WIDTH, HEIGHT = 600, 450
TILE = 256
# The OME-TIFF: channels x z x t, uint16, stored T, Z, C (OME's XYCZT page order).
OME_CHANNELS, OME_Z, OME_T = 3, 2, 2
OME_CHANNEL_NAMES = ("DAPI", "GFP", "TRITC")
OME_WIDTH, OME_HEIGHT = 520, 400
MULTIPAGE_FRAMES = 3
# The SVS-like slide: full resolution plus a 4x reduction (the 2x level is missing and
# must be synthesized), a stripped thumbnail page, label and macro pages.
SVS_WIDTH, SVS_HEIGHT = 1200, 900
SVS_MAG, SVS_MPP = 20, 0.499
SVS_LABEL_SIZE = (300, 200)
SVS_MACRO_SIZE = (800, 300)
SVS_THUMBNAIL_SIZE = (300, 225)
APERIO_HEAD = "Aperio Image Library v12.0.15"

# name -> what the file holds (mirrored in /tmp/helperA-fixtures.md for other engineers).
FRAME_IMAGES: dict[str, str] = {
    "multipage": "3 full-size pages (frames) of 600x450 uint8 RGB, deflate tiles, no levels",
    "ome": (
        "OME-TIFF, 3 channels (DAPI, GFP, TRITC) x 2 z x 2 t = 12 frames, 520x400 uint16 gray, "
        "deflate tiles, one SubIFD level per page, PhysicalSize 0.25 um"
    ),
    "uint16": "600x450 uint16, 1 band, values 0 to 65535, deflate tiles",
    "uint16_rgb": "600x450 uint16, 3 bands (RGB), values 0 to 65535",
    "int16": "600x450 int16, 1 band, values -20000 to 20000",
    # Past 0 and 255 at both ends, spread between: large_image brings unstyled floats to
    # 8 bits by clipping to [0, 255] (``_imageToPIL``), so values within [0, 1] would make
    # every 8-bit answer 0 or 1, and any near-black answer would pass a parity test.
    "float32": "600x450 float32, 1 band, values about -25 to 325",
    "bands1": "600x450 uint8 gray",
    "bands2": "600x450 uint8 gray + unspecified extra sample (no alpha)",
    "bands2_alpha": "600x450 uint8 gray + alpha (unassociated)",
    "bands3": "600x450 uint8 RGB; resolution tags 40000 px/cm (mm_x 0.00025, magnification 40)",
    "bands4": "600x450 uint8 RGB + unspecified extra sample (no alpha)",
    "bands4_alpha": "600x450 uint8 RGBA (unassociated alpha)",
    "bands6": "600x450 uint8, 6 bands (minisblack, 5 unspecified extra samples)",
    "svs": (
        "Aperio-like SVS, 1200x900 JPEG RGB tiles, AppMag 20, MPP 0.499, a 4x level, "
        "thumbnail / label / macro pages"
    ),
}


def make_frame_images(root: Path) -> dict[str, Path]:
    """Write every file of FRAME_IMAGES into ``root``; name -> path."""
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    out["multipage"] = _multipage(root / "multipage.tiff")
    out["ome"] = _ome(root / "frames.ome.tiff")
    out["uint16"] = _single(root / "uint16.tiff", _scaled(_field(1), 0, 65535, np.uint16))
    out["uint16_rgb"] = _single(
        root / "uint16-rgb.tiff", _scaled(_field(3), 0, 65535, np.uint16), photometric="rgb"
    )
    out["int16"] = _single(root / "int16.tiff", _scaled(_field(1), -20000, 20000, np.int16))
    out["float32"] = _single(root / "float32.tiff", _scaled(_field(1), -80.0, 380.0, np.float32))
    out["bands1"] = _single(root / "bands1.tiff", _u8(1))
    out["bands2"] = _single(root / "bands2.tiff", _u8(2), extrasamples=("unspecified",))
    out["bands2_alpha"] = _single(
        root / "bands2-alpha.tiff", _u8(2, alpha=True), extrasamples=("unassalpha",)
    )
    out["bands3"] = _single(
        root / "bands3.tiff", _u8(3), photometric="rgb", resolution=(40000, 40000, "CENTIMETER")
    )
    out["bands4"] = _single(
        root / "bands4.tiff", _u8(4), photometric="rgb", extrasamples=("unspecified",)
    )
    out["bands4_alpha"] = _single(
        root / "bands4-alpha.tiff",
        _u8(4, alpha=True),
        photometric="rgb",
        extrasamples=("unassalpha",),
    )
    out["bands6"] = _single(root / "bands6.tiff", _u8(6))
    out["svs"] = _svs(root)
    return out


# --- pixels ------------------------------------------------------------------------------


def distinct_values(pixels: np.ndarray) -> int:
    """How many different pixels (band tuples) ``pixels`` holds: what a parity test
    checks of a reference answer first, so that a blank answer on both sides, or one
    its own decoder flattened, cannot pass as equal."""
    return len(np.unique(pixels.reshape(-1, pixels.shape[-1] if pixels.ndim == 3 else 1), axis=0))


def _field(bands: int, width: int = WIDTH, height: int = HEIGHT, seed: int = 0) -> np.ndarray:
    """(height, width, bands) float64 in [0, 1]: smooth structure plus fine texture, a
    different picture per band and per ``seed`` (so frames and channels differ)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = []
    for band in range(bands):
        k = band + 3 * seed
        broad = np.sin(x * (0.011 + 0.002 * k) + k) * np.cos(y * (0.009 + 0.0015 * k) - k)
        ramp = (x / width * (1 + k % 3) + y / height * (2 - k % 2)) / 3
        fine = np.sin(x * 0.37 + y * 0.11 * (k + 1))
        # 0.05 to 0.95: no clipped plateaus, whose kinks make resampling filters disagree.
        planes.append(0.25 * broad + 0.3 * ramp + 0.05 * fine + 0.35)
    return np.clip(np.stack(planes, axis=-1), 0.0, 1.0)


def _scaled(unit: np.ndarray, low: float, high: float, dtype: type) -> np.ndarray:
    return (unit * (high - low) + low).astype(dtype)


def _u8(bands: int, *, alpha: bool = False) -> np.ndarray:
    pixels = _scaled(_field(bands), 0, 255, np.uint8)
    if alpha:
        # An alpha band with fully transparent, partly and fully opaque areas.
        y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
        pixels[..., -1] = np.where(x < WIDTH // 4, 0, np.minimum(255, (y * 255) // (HEIGHT // 2)))
    return pixels


# --- writers -----------------------------------------------------------------------------


def _tiff_options(**extra: Any) -> dict[str, Any]:
    # metadata=None: no tifffile JSON description, as most scanners' files have none.
    options: dict[str, Any] = {
        "tile": (TILE, TILE),
        "compression": "zlib",
        "metadata": None,
        "planarconfig": "contig",
    }
    options.update({key: value for key, value in extra.items() if value is not None})
    return options


def _single(
    path: Path,
    pixels: np.ndarray,
    *,
    photometric: str = "minisblack",
    extrasamples: tuple[str, ...] | None = None,
    resolution: tuple[float, float, str] | None = None,
) -> Path:
    data = pixels[..., 0] if pixels.shape[-1] == 1 else pixels
    options = _tiff_options(photometric=photometric, extrasamples=extrasamples)
    if resolution is not None:
        options.update(resolution=resolution[:2], resolutionunit=resolution[2])
    tifffile.imwrite(path, data, **options)
    return path


def _multipage(path: Path) -> Path:
    with tifffile.TiffWriter(path) as tif:
        for frame in range(MULTIPAGE_FRAMES):
            pixels = _scaled(_field(3, seed=frame + 1), 0, 255, np.uint8)
            tif.write(pixels, **_tiff_options(photometric="rgb"))
    return path


def _ome(path: Path) -> Path:
    """Pages in T, Z, C order (OME's XYCZT), each with a half-size level in a SubIFD and
    one TiffData and Plane element per page, as Bio-Formats' bfconvert writes them."""
    options = {
        "tile": (TILE, TILE),
        "compression": "zlib",
        "photometric": "minisblack",
        "metadata": None,
    }
    with tifffile.TiffWriter(path) as tif:
        index = 0
        for t in range(OME_T):
            for z in range(OME_Z):
                for c in range(OME_CHANNELS):
                    page = ome_plane(c, z, t)
                    extra = {"description": ome_xml().encode()} if index == 0 else {}
                    tif.write(page, subifds=1, **options, **extra)
                    tif.write(page[::2, ::2], subfiletype=1, **options)
                    index += 1
    return path


def ome_plane(c: int, z: int, t: int) -> np.ndarray:
    """The uint16 pixels of one OME plane (each channel has its own value range)."""
    unit = _field(1, OME_WIDTH, OME_HEIGHT, seed=1 + c + 3 * z + 6 * t)[..., 0]
    return _scaled(unit, 0, 4000 + 9000 * c, np.uint16)


def ome_xml() -> str:
    channels = "".join(
        f'<Channel ID="Channel:0:{c}" Name="{name}" SamplesPerPixel="1"><LightPath/></Channel>'
        for c, name in enumerate(OME_CHANNEL_NAMES)
    )
    tiffdata, planes = [], []
    index = 0
    for t in range(OME_T):
        for z in range(OME_Z):
            for c in range(OME_CHANNELS):
                tiffdata.append(
                    f'<TiffData FirstC="{c}" FirstT="{t}" FirstZ="{z}" IFD="{index}" '
                    'PlaneCount="1"/>'
                )
                planes.append(
                    f'<Plane TheC="{c}" TheT="{t}" TheZ="{z}" ExposureTime="{50 + 25 * c}.0"/>'
                )
                index += 1
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'Creator="tilecast tests">'
        '<Image ID="Image:0" Name="frames">'
        f'<Pixels BigEndian="false" DimensionOrder="XYCZT" ID="Pixels:0" '
        f'PhysicalSizeX="0.25" PhysicalSizeXUnit="\u00b5m" '
        f'PhysicalSizeY="0.25" PhysicalSizeYUnit="\u00b5m" '
        f'SizeC="{OME_CHANNELS}" SizeT="{OME_T}" SizeX="{OME_WIDTH}" SizeY="{OME_HEIGHT}" '
        f'SizeZ="{OME_Z}" Type="uint16">'
        f"{channels}{''.join(tiffdata)}{''.join(planes)}"
        "</Pixels></Image></OME>"
    )


def _svs(root: Path) -> Path:
    """An SVS laid out as Aperio writes it: full resolution (tiled JPEG), thumbnail
    (stripped), reduced levels (tiled JPEG), label (stripped LZW, subfile type 1) and
    macro (stripped JPEG, subfile type 9), each with Aperio's ImageDescription."""
    work = root / "svs-parts"
    work.mkdir(exist_ok=True)
    picture = sample_image(SVS_WIDTH, SVS_HEIGHT).copy_memory()
    pyramid = work / "pyramid.tiff"
    # Aperio stores RGB (not YCbCr) JPEG data and says so (Photometric RGB): rgbjpeg.
    picture.tiffsave(
        str(pyramid), tile=True, pyramid=True, compression="jpeg", Q=85, rgbjpeg=True,
        tile_width=TILE, tile_height=TILE,
    )  # fmt: skip
    thumb = work / "thumbnail.tiff"
    picture.thumbnail_image(SVS_THUMBNAIL_SIZE[0], height=SVS_THUMBNAIL_SIZE[1]).tiffsave(
        str(thumb), compression="jpeg", Q=85, rgbjpeg=True
    )
    label = work / "label.tiff"
    _label_picture().tiffsave(str(label), compression="lzw")
    macro = work / "macro.tiff"
    sample_image(*SVS_MACRO_SIZE).invert().tiffsave(
        str(macro), compression="jpeg", Q=85, rgbjpeg=True
    )

    levels = tifftools.read_tiff(str(pyramid))["ifds"]
    full, quarter = levels[0], levels[2]  # 1200x900 and 300x225: the 600x450 is left out
    common = f"|AppMag = {SVS_MAG}|StripeWidth = 2040|ScanScope ID = SS1234|Filename = 1234"
    common += f"|Date = 01/02/26|Time = 10:11:12|MPP = {SVS_MPP}|Left = 25.5|Top = 18.2"
    size = f"{SVS_WIDTH}x{SVS_HEIGHT}"
    _describe(
        full,
        f"{APERIO_HEAD}\r\n{size} [0,100 {size}] ({TILE}x{TILE}) JPEG/RGB Q=85{common}",
    )
    thumb_ifd = tifftools.read_tiff(str(thumb))["ifds"][0]
    tw, th = SVS_THUMBNAIL_SIZE
    _describe(thumb_ifd, f"{APERIO_HEAD}\r\n{size} -> {tw}x{th} - {common}")
    q_w, q_h = (
        quarter["tags"][tifftools.Tag.ImageWidth.value]["data"][0],
        quarter["tags"][tifftools.Tag.ImageLength.value]["data"][0],
    )
    _describe(
        quarter,
        f"{APERIO_HEAD}\r\n{size} [0,0 {size}] ({TILE}x{TILE}) -> {q_w}x{q_h} JPEG/RGB Q=85",
    )
    label_ifd = tifftools.read_tiff(str(label))["ifds"][0]
    _describe(label_ifd, f"{APERIO_HEAD}\r\nlabel {SVS_LABEL_SIZE[0]}x{SVS_LABEL_SIZE[1]}")
    _subfile(label_ifd, 1)
    macro_ifd = tifftools.read_tiff(str(macro))["ifds"][0]
    _describe(macro_ifd, f"{APERIO_HEAD}\r\nmacro {SVS_MACRO_SIZE[0]}x{SVS_MACRO_SIZE[1]}")
    _subfile(macro_ifd, 9)
    path = root / "slide.svs"
    tifftools.write_tiff(
        {"ifds": [full, thumb_ifd, quarter, label_ifd, macro_ifd]}, str(path), allowExisting=True
    )
    return path


def _label_picture() -> pyvips.Image:
    width, height = SVS_LABEL_SIZE
    y, x = np.mgrid[0:height, 0:width]
    stripes = np.where(((x // 20) + (y // 20)) % 2 == 0, 230, 40).astype(np.uint8)
    rgb = np.stack([stripes, stripes // 2 + 60, 255 - stripes], axis=-1)
    return pyvips.Image.new_from_array(np.ascontiguousarray(rgb), interpretation="srgb")


def _describe(ifd: dict[str, Any], text: str) -> None:
    ifd["tags"][tifftools.Tag.ImageDescription.value] = {
        "datatype": tifftools.Datatype.ASCII,
        "data": text,
    }


def _subfile(ifd: dict[str, Any], value: int) -> None:
    ifd["tags"][tifftools.Tag.NewSubfileType.value] = {
        "datatype": tifftools.Datatype.LONG,
        "data": [value],
    }
