"""The dimensions a compressed image declares in its own header, read without decoding.

A tile's bytes carry a header of their own (a JPEG start-of-frame, a PNG IHDR, a WebP
VP8/VP8L/VP8X header, a JPEG 2000 SIZ marker or jp2 ``ihdr`` box), and a decoder
allocates its output from that header, not from the file's tile size: a 256 x 256
tile whose JPEG says 30000 x 30000 costs gigabytes before the first scan line fails.
Every place a stored tile is decoded or passed through calls :func:`check_tile` first
(workers/sources/tiff.py, workers/rawtile.py), so a disagreeing header is refused in
microseconds, before any pixel buffer exists, and is never handed to a viewer.

A codec is one parser in ``PARSERS``: a function from the encoded bytes to every size
the stream declares (a WebP VP8X canvas and its image; a jp2 ``ihdr`` and its
codestream's SIZ). A codec added later registers its parser there and its TIFF
compression codes in ``TIFF_CODECS``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from tilecast.common.errors import UnsupportedImage

JPEG, PNG, WEBP, JPEG2000 = "JPEG", "PNG", "WebP", "JPEG 2000"


Size = tuple[int, int]  # width, height


def _jpeg_sizes(data: bytes) -> list[Size]:
    """The start-of-frame's size: marker segments walked from SOI, so a byte pair that
    looks like a frame marker inside a table or APP segment is never taken for one. A
    TIFF tile stream abbreviated against JPEGTables has its SOF in the tile itself."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("no start-of-image marker")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("bytes between marker segments")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                break
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return [(width, height)]
        if marker in (0xDA, 0xD9):
            raise ValueError("scan data before any frame header")
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    raise ValueError("no frame header")


def _png_sizes(data: bytes) -> list[Size]:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR" or len(data) < 24:
        raise ValueError("no PNG signature and IHDR")
    width, height = struct.unpack_from(">II", data, 16)
    return [(width, height)]


def _webp_sizes(data: bytes) -> list[Size]:
    """Every size a WebP declares: the VP8X canvas (what libwebp allocates for) and the
    VP8 or VP8L bitstream's own frame."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("no RIFF WebP header")
    sizes: list[Size] = []
    pos = 12
    while pos + 8 <= len(data):
        kind = data[pos : pos + 4]
        length = int.from_bytes(data[pos + 4 : pos + 8], "little")
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"VP8X":
            if len(body) < 10:
                raise ValueError("a short VP8X chunk")
            sizes.append(
                (
                    1 + int.from_bytes(body[4:7], "little"),
                    1 + int.from_bytes(body[7:10], "little"),
                )
            )
        elif kind == b"VP8 ":
            if len(body) < 10 or body[3:6] != b"\x9d\x01\x2a":
                raise ValueError("a VP8 chunk without its frame header")
            width, height = struct.unpack_from("<HH", body, 6)
            sizes.append((width & 0x3FFF, height & 0x3FFF))
            return sizes
        elif kind == b"VP8L":
            if len(body) < 5 or body[0] != 0x2F:
                raise ValueError("a VP8L chunk without its header")
            bits = int.from_bytes(body[1:5], "little")
            sizes.append((1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)))
            return sizes
        elif kind == b"ANMF":
            raise ValueError("an animated WebP is not a tile")
        pos += 8 + length + (length & 1)
    raise ValueError("no VP8 or VP8L bitstream")


_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


def _jpeg2000_sizes(data: bytes) -> list[Size]:
    """A raw codestream's SIZ, or for a jp2 file its ``ihdr`` box and the SIZ of its
    ``jp2c`` codestream (the decoder trusts the latter)."""
    if data[:4] == b"\xff\x4f\xff\x51":
        return [_siz_size(data)]
    if not data.startswith(_JP2_SIGNATURE):
        raise ValueError("neither a JPEG 2000 codestream nor a jp2 file")
    sizes: list[Size] = []
    for kind, body in _boxes(data, len(_JP2_SIGNATURE)):
        if kind == b"jp2h":
            for inner, content in _boxes(body, 0):
                if inner == b"ihdr" and len(content) >= 8:
                    height, width = struct.unpack_from(">II", content, 0)
                    sizes.append((width, height))
        elif kind == b"jp2c":
            sizes.append(_siz_size(body))
            if len(sizes) < 2:
                raise ValueError("a jp2 codestream before its image header")
            return sizes
    raise ValueError("a jp2 file without its codestream")


def _boxes(data: bytes, pos: int) -> list[tuple[bytes, bytes]]:
    boxes = []
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        start = pos + 8
        if length == 1:  # a 64-bit length follows
            length = int.from_bytes(data[start : start + 8], "big")
            start += 8
        elif length == 0:  # the box runs to the end
            length = len(data) - pos
        if length < start - pos:
            raise ValueError("a jp2 box shorter than its header")
        boxes.append((kind, data[start : pos + length]))
        pos += length
    return boxes


def _siz_size(codestream: bytes) -> Size:
    """SIZ: Xsiz, Ysiz (the reference grid) less XOsiz, YOsiz (the image offset)."""
    if codestream[:4] != b"\xff\x4f\xff\x51" or len(codestream) < 24:
        raise ValueError("a codestream without its SIZ marker")
    xsiz, ysiz, xosiz, yosiz = struct.unpack_from(">IIII", codestream, 8)
    return max(0, xsiz - xosiz), max(0, ysiz - yosiz)


PARSERS: dict[str, Callable[[bytes], list[Size]]] = {
    JPEG: _jpeg_sizes,
    PNG: _png_sizes,
    WEBP: _webp_sizes,
    JPEG2000: _jpeg2000_sizes,
}
# TIFF compression codes whose tiles are streams of a codec above (tifffile's names).
TIFF_CODECS: dict[int, str] = {
    7: JPEG,  # JPEG (TIFF 6 technote 2)
    33003: JPEG2000,  # Aperio JPEG 2000, YCbCr
    33004: JPEG2000,  # JPEG 2000 lossy
    33005: JPEG2000,  # Aperio JPEG 2000, RGB
    34712: JPEG2000,
    34933: PNG,
    50001: WEBP,
}


def declared_sizes(codec: str, data: bytes, where: str = "a tile") -> list[Size]:
    """Every size the ``codec`` stream ``data`` declares; UnsupportedImage (422) when its
    header cannot be read."""
    try:
        return PARSERS[codec](data)
    except (ValueError, IndexError, struct.error) as exc:
        raise UnsupportedImage(f"{where}: its {codec} header cannot be read ({exc})") from None


def check_tile(
    codec: str,
    data: bytes,
    width: int,
    height: int,
    where: str = "a tile",
    *,
    heights: tuple[int, ...] = (),
) -> None:
    """Refuse (UnsupportedImage, a 422) a ``codec`` tile unless every size its header
    declares is the file's ``width`` x ``height`` tile size (or one of ``heights``: a
    TIFF's last strip may declare its own rows or the full strip's)."""
    for declared in declared_sizes(codec, data, where):
        if declared[0] != width or (declared[1] != height and declared[1] not in heights):
            raise UnsupportedImage(
                f"{where}: its {codec} header declares {declared[0]}x{declared[1]} pixels "
                f"in a {width}x{height} tile; the file is corrupt or hostile"
            )


def check_at_most(codec: str, data: bytes, max_pixels: int, where: str = "a tile") -> None:
    """Refuse a ``codec`` stream whose header declares more than ``max_pixels``: the
    bound for bytes whose tile size is not known where they are decoded (a cached tile)."""
    for width, height in declared_sizes(codec, data, where):
        if width * height > max_pixels:
            raise UnsupportedImage(
                f"{where}: its {codec} header declares {width}x{height} pixels, more than "
                f"the {max_pixels} a tile may hold"
            )
