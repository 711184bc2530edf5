"""What a JPEG's headers say about its pixels, read without decoding: the frame
header (precision, size, components and their sampling) and the Adobe marker's colour
transform. The DICOMweb view (common/dicomwsi.py) declares from it how a level's
JPEG frames are to be read: DICOM's Photometric Interpretation must match the
compressed data (PS3.5 8.2.1), and a frame passed through from a file keeps whatever
colour space the file stored.
"""

from __future__ import annotations

from dataclasses import dataclass

SOI = b"\xff\xd8"
# Start-of-frame markers: baseline, extended, progressive, lossless (Huffman).
SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3})
ADOBE_MARKER = 0xEE
# Markers without a length field.
STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})


@dataclass(frozen=True)
class JpegHeader:
    """The parts of a JPEG's headers a DICOM header repeats."""

    precision: int
    width: int
    height: int
    component_ids: tuple[int, ...]
    # (horizontal, vertical) sampling factor of each component.
    sampling: tuple[tuple[int, int], ...]
    # The Adobe APP14 marker's transform (0: none, 1: YCbCr, 2: YCCK); None: no marker.
    adobe_transform: int | None = None
    progressive: bool = False

    @property
    def components(self) -> int:
        return len(self.component_ids)

    @property
    def photometric(self) -> str:
        """DICOM's Photometric Interpretation of the compressed pixels: MONOCHROME2
        for one component; RGB when the file says its three components are not
        transformed (the Adobe transform 0, or component ids ``R``, ``G``, ``B`` as
        large_image writes RGB TIFF tiles); else YCbCr: YBR_FULL_422 when chroma is
        subsampled, YBR_FULL when it is not."""
        if self.components == 1:
            return "MONOCHROME2"
        if self.adobe_transform == 0 or self.component_ids == tuple(b"RGB"):
            return "RGB"
        luma = self.sampling[0]
        if any(s != luma for s in self.sampling[1:]):
            return "YBR_FULL_422"
        return "YBR_FULL"


class NotJpeg(ValueError):
    """The bytes are not a JPEG whose frame header could be read."""


def read_header(data: bytes) -> JpegHeader:
    """The header of the JPEG ``data`` (NotJpeg when it has none)."""
    if data[:2] != SOI:
        raise NotJpeg("no JPEG start-of-image marker")
    position, adobe = 2, None
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            raise NotJpeg(f"no marker at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in STANDALONE_MARKERS:
            position += 2
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        payload = data[position + 4 : position + 2 + length]
        if length < 2 or len(payload) != length - 2:
            raise NotJpeg(f"a truncated segment at byte {position}")
        if marker == ADOBE_MARKER and payload[:5] == b"Adobe" and len(payload) >= 12:
            adobe = payload[11]
        if marker in SOF_MARKERS:
            return _frame_header(payload, adobe, progressive=marker == 0xC2)
        if marker == 0xDA:
            break  # scan data before any frame header
        position += 2 + length
    raise NotJpeg("no start-of-frame header")


def _frame_header(payload: bytes, adobe: int | None, progressive: bool) -> JpegHeader:
    if len(payload) < 6:
        raise NotJpeg("a truncated frame header")
    count = payload[5]
    if count == 0 or len(payload) < 6 + 3 * count:
        raise NotJpeg("a frame header without its components")
    ids = tuple(payload[6 + 3 * i] for i in range(count))
    sampling = tuple((payload[7 + 3 * i] >> 4, payload[7 + 3 * i] & 0x0F) for i in range(count))
    return JpegHeader(
        precision=payload[0],
        height=int.from_bytes(payload[1:3], "big"),
        width=int.from_bytes(payload[3:5], "big"),
        component_ids=ids,
        sampling=sampling,
        adobe_transform=adobe,
        progressive=progressive,
    )
