"""Associated images of a TIFF (a slide's label, macro and thumbnail), found and named
the way large_image's TIFF source finds and names them.

Candidates are the main-chain pages that are not image data: untiled pages, and -- in
files whose levels live in SubIFDs -- tiled pages that are no level. A page's name is the
first word of the second line of its ImageDescription (Aperio writes ``label 387x463``),
else of the first line, else its NewSubfileType (1 label, 9 macro); names must be 4 to
20 letters or digits, and images at most 8192 pixels a side.

One deliberate difference: Aperio's thumbnail page is described ``46920x33014 -> 1024x732``,
so large_image's rule names it by the slide's size (``46920x33014``); it is named
``thumbnail`` here, as OpenSlide and the viewers that ask for it name it.
"""

from __future__ import annotations

import re

import numpy as np

from tilecast.workers.sources import tiffdir
from tilecast.workers.sources.files import ImageFile
from tilecast.workers.sources.tiffdir import TiffDirectory
from tilecast.workers.vipsutil import to_numpy

MAX_ASSOCIATED_SIZE = 8192  # large_image's _maxAssociatedImageSize
SUBFILE_NAMES = {1: "label", 9: "macro"}
NEW_SUBFILE_TYPE = 254
# Aperio's thumbnail description: "<full size> -> <thumbnail size>".
APERIO_THUMBNAIL = re.compile(rb"^\d+x\d+\s*->\s*\d+x\d+")
SUPPORTED_PHOTOMETRIC = {
    tiffdir.PHOTOMETRIC_MINISBLACK,
    tiffdir.PHOTOMETRIC_RGB,
    tiffdir.PHOTOMETRIC_YCBCR,
}


def find_associated(
    directories: list[TiffDirectory], level_directories: set[int], uses_subifds: bool
) -> dict[str, TiffDirectory]:
    """name -> page of each associated image. ``level_directories`` holds the main-chain
    indices already used as frames or levels."""
    found: dict[str, TiffDirectory] = {}
    for directory in directories:
        if directory.index in level_directories:
            continue
        if directory.is_tiled and not (directory.index and uses_subifds):
            continue
        if not _readable(directory):
            continue
        name = _name(directory, tiled=directory.is_tiled, first=not found)
        if (
            name
            and name.isalnum()
            and name.isascii()
            and 3 < len(name) <= 20
            and directory.width <= MAX_ASSOCIATED_SIZE
            and directory.height <= MAX_ASSOCIATED_SIZE
            and name not in found
        ):
            found[name] = directory
    return found


def _readable(directory: TiffDirectory) -> bool:
    """large_image's validation of a page it decodes as an associated image."""
    if directory.samples_per_pixel < 1 or directory.bits_per_sample not in (8, 16, 32, 64):
        return False
    if (directory.sample_format or 1) not in (1, 2, 3):
        return False
    if directory.planar_config != 1 and directory.photometric != tiffdir.PHOTOMETRIC_MINISBLACK:
        return False
    if directory.photometric not in SUPPORTED_PHOTOMETRIC:
        return False
    return directory.orientation in (None, *range(1, 9))


def _name(directory: TiffDirectory, *, tiled: bool, first: bool) -> str:
    description = directory.image_description
    name = b""
    try:
        if description:
            name = description.strip().split(None, 1)[0].lower()
            if b"\n" in description:
                second = description.split(b"\n", 1)[1].strip()
                aperio = not tiled and description.startswith(b"Aperio")
                if aperio and APERIO_THUMBNAIL.match(second):
                    return "thumbnail"
                name = second.split(None, 1)[0].lower() or name
        elif tiled:
            name = b"macro" if first else f"dir{directory.index}".encode()
    except IndexError:
        return ""  # an empty line where the name belongs: large_image skips the page
    if not name and not tiled:
        subfile = directory.scalar(NEW_SUBFILE_TYPE)
        return SUBFILE_NAMES.get(int(subfile), "") if subfile is not None else ""
    return name.decode(errors="replace")


def read_associated(file: ImageFile, directory: TiffDirectory) -> np.ndarray:
    """The page's pixels as (height, width, bands), turned upright per its Orientation."""
    # The page is decoded top to bottom once (libvips reads the strips of a page after
    # a tiled first page in order, whatever access is asked). Such an image can be read
    # once: revalidate keeps libvips' operation cache from handing a consumed one to
    # the next read of the same page ("out of order read").
    image = file.load_tiff(page=directory.index, access="sequential", revalidate=True)
    pixels = to_numpy(image)
    return reorient(pixels, directory.orientation)


def reorient(pixels: np.ndarray, orientation: int | None) -> np.ndarray:
    """Top-left orientation for any TIFF Orientation (large_image's
    ``_reorient_numpy_image``)."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if orientation in (5, 6, 7, 8):  # left-top, right-top, right-bottom, left-bottom
        pixels = pixels.transpose(1, 0, 2)
    if orientation in (4, 3, 8, 7):  # bottom-left, bottom-right, left-bottom, right-bottom
        pixels = pixels[::-1, :, :]
    if orientation in (2, 3, 6, 7):  # top-right, bottom-right, right-top, right-bottom
        pixels = pixels[:, ::-1, :]
    return np.ascontiguousarray(pixels)
