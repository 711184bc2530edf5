"""Which slide scanner wrote a file, from the markers OpenSlide 4 itself detects formats by
(its ``*_detect`` functions): tags of a TIFF's first directory, or the first bytes of the
non-TIFF formats. Shared by tilecast's TIFF reader (which leaves the vendor TIFFs it
cannot read correctly to OpenSlide) and the OpenSlide reader (which recognises them).

Nothing here decodes or parses XML: substring and prefix checks only, as cheap as a
reader's ``can_read`` must be. OpenSlide's own ``detect_format`` has the last word when
the file is opened.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tilecast.workers.sources.tiffdir import IMAGE_DESCRIPTION, TiffDirectory

MAKE = 271
SOFTWARE = 305
XMLPACKET = 700
ARGOS_METADATA = 65000
NDPI_FORMAT_FLAG = 65420  # present in every NDPI file, and in no other
NDPI_SOURCELENS = 65421  # -1 on the macro page, -2 on the "non-empty region" map

LEICA_NAMESPACES = (
    b"http://www.leica-microsystems.com/scn/2010/03/10",
    b"http://www.leica-microsystems.com/scn/2010/10/01",
)
VMS_GROUPS = (b"[Virtual Microscope Specimen]", b"[Uncompressed Virtual Microscope Specimen]")
SQLITE_MAGIC = b"SQLite format 3\x00"  # Sakura SVSlide is an SQLite database
MIRAX_SUFFIX = ".mrxs"
MIRAX_INDEX = "Slidedat.ini"

# OpenSlide's vendor names (``detect_format``) as a client reads them in a message.
FORMAT_NAMES = {
    "aperio": "Aperio SVS",
    "argos": "ARGOS AVS",
    "dicom": "DICOM",
    "generic-tiff": "tiled TIFF",
    "hamamatsu": "Hamamatsu NDPI",
    "hamamatsu-vms": "Hamamatsu VMS/VMU",
    "huron": "Huron TIFF",
    "leica": "Leica SCN",
    "mirax": "MIRAX MRXS",
    "philips": "Philips TIFF",
    "sakura": "Sakura SVSlide",
    "synthetic": "OpenSlide synthetic slide",
    "trestle": "Trestle TIFF",
    "ventana": "Ventana BIF",
    "zeiss": "Zeiss CZI",
}

# Vendor TIFFs tilecast's TIFF reader would read wrongly, left to OpenSlide: NDPI (huge
# striped JPEG pages, levels as separate pages), Philips (levels padded to whole tiles,
# label and macro in the XML), Leica SCN (the first page is the macro, the slide is a
# collection of placed images), Ventana BIF (the first page is the label, tiles overlap)
# and Trestle (tiles overlap).
OPENSLIDE_ONLY_TIFF = frozenset({"hamamatsu", "philips", "leica", "ventana", "trestle"})


def tiff_vendor(directory: TiffDirectory) -> str | None:
    """OpenSlide's vendor name for a TIFF whose first directory is ``directory``, tried in
    OpenSlide's order; None for a TIFF of no vendor (OpenSlide's generic TIFF, when tiled)."""
    description = _text(directory.tags.get(IMAGE_DESCRIPTION))
    software = _text(directory.tags.get(SOFTWARE))
    if NDPI_FORMAT_FLAG in directory.tags:
        return "hamamatsu"
    if directory.is_tiled and software.startswith(b"MedScan") and description:
        return "trestle"
    if directory.is_tiled and description.startswith(b"Aperio"):
        return "aperio"
    if directory.is_tiled and _text(directory.tags.get(MAKE)).startswith(b"Huron"):
        return "huron"
    if directory.is_tiled and b"Argos.Scan.Metadata" in _text(directory.tags.get(ARGOS_METADATA)):
        return "argos"
    if directory.is_tiled and any(space in description for space in LEICA_NAMESPACES):
        return "leica"
    if software.startswith(b"Philips") and b"DPUfsImport" in description:
        return "philips"
    if b"iScan" in _text(directory.tags.get(XMLPACKET)):
        return "ventana"
    return None


def head_vendor(head: bytes, local_path: str | None) -> str | None:
    """The vendor of a file that is not a TIFF, from its first bytes -- or, for MIRAX,
    whose ``.mrxs`` file holds no marker at all, from what OpenSlide itself requires: the
    ``.mrxs`` name and a folder of the same name beside it holding ``Slidedat.ini``.
    Not Zeiss CZI, which OpenSlide reads too: that is the CZI reader's
    (workers/sources/czi.py), whose libCZI decodes every CZI OpenSlide's driver does."""
    if head.startswith(SQLITE_MAGIC):
        return "sakura"
    if any(group in head for group in VMS_GROUPS):
        return "hamamatsu-vms"
    if local_path is not None and mirax_folder(local_path) is not None:
        return "mirax"
    return None


def mirax_folder(path: str) -> str | None:
    """The data folder of a MIRAX slide whose ``.mrxs`` file is ``path``, if it exists."""
    if not path.endswith(MIRAX_SUFFIX):
        return None
    folder = path[: -len(MIRAX_SUFFIX)]
    return folder if os.path.isfile(os.path.join(folder, MIRAX_INDEX)) else None


def _text(value: Any) -> bytes:
    """An ASCII, BYTE or UNDEFINED tag's bytes (b"" when absent)."""
    if value is None:
        return b""
    if isinstance(value, np.ndarray):
        return value.astype(np.uint8, copy=False).tobytes() if value.dtype.itemsize == 1 else b""
    return bytes(value)
