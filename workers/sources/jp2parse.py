"""The structure of a JPEG 2000 file, read without decoding: its jp2 boxes and its
codestream's main header (ISO/IEC 15444-1, annexes A and I).

Everything here reads with ``file.read(offset, count)`` and trusts nothing it reads:
every box and marker segment must lie inside the file, and the walks are bounded by a
fixed number of boxes and segments, so a hostile file costs microseconds and kilobytes.
The jpeg2000 reader (workers/sources/jpeg2000.py) decides what the numbers mean.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from tilecast.workers.sources.files import ImageFile

JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
SOC_SIZ = b"\xff\x4f\xff\x51"  # a raw codestream (.j2k, .j2c) starts with SOC then SIZ
MAX_BOXES = 1024  # top-level boxes, and boxes inside one superbox
MAX_SEGMENTS = 4096  # marker segments in a main header
MAX_SEGMENT_READ = 64 * 1024  # the segments whose content is read: SIZ, COD, COM
MAX_COMPONENTS = 16384  # SIZ's Csiz limit
MAX_TILES = 65535  # a tile-part's index (Isot) has 16 bits
MAX_PARTS_PER_TILE = 255  # and its part number (TPsot) 8
SOT, COD, COM, SIZ, EOC = 0xFF90, 0xFF52, 0xFF64, 0xFF51, 0xFFD9


class Jp2FormatError(ValueError):
    """The file's structure is not a readable JPEG 2000 file."""


@dataclass(frozen=True)
class Box:
    kind: bytes  # the four-character box type, e.g. b"jp2c"
    offset: int  # of the box's header in the file
    start: int  # of its content
    end: int  # of its content (exclusive)


@dataclass(frozen=True)
class Component:
    precision: int  # bits
    signed: bool
    dx: int  # horizontal subsampling (XRsiz)
    dy: int


@dataclass(frozen=True)
class Codestream:
    """What the main header says: the SIZ, the default decomposition levels (COD), and
    the text of comment (COM) segments."""

    offset: int  # of SOC in the file
    width: int  # Xsiz - XOsiz
    height: int
    tile_width: int  # XTsiz
    tile_height: int
    components: tuple[Component, ...]
    decompositions: int  # COD's number of decomposition levels
    comments: tuple[bytes, ...] = ()
    tile_count: int = 1


@dataclass(frozen=True)
class Jp2Structure:
    """A jp2 file's boxes (none for a raw codestream) and its codestream."""

    codestream: Codestream
    boxes: tuple[Box, ...] = ()
    # The image header box's width and height, when the file is a jp2.
    header_size: tuple[int, int] | None = None
    # The channels a palette maps the components to (the cmap box's entries), when the
    # jp2 header has a palette: what a decoder hands back instead of the components.
    palette_channels: int | None = None


def is_jpeg2000(head: bytes) -> bool:
    return head.startswith((JP2_SIGNATURE, SOC_SIZ))


def parse(file: ImageFile) -> Jp2Structure:
    """The structure of ``file``, a jp2 file or a raw codestream; Jp2FormatError when
    it is neither or is cut short."""
    head = file.read(0, 12)
    if head.startswith(SOC_SIZ):
        return Jp2Structure(codestream=parse_codestream(file, 0, file.size))
    if not head.startswith(JP2_SIGNATURE):
        raise Jp2FormatError("neither a jp2 file nor a JPEG 2000 codestream")
    boxes = read_boxes(file, len(JP2_SIGNATURE), file.size)
    header = next((box for box in boxes if box.kind == b"jp2h"), None)
    stream = next((box for box in boxes if box.kind == b"jp2c"), None)
    if header is None or stream is None:
        raise Jp2FormatError("a jp2 file without its header or codestream box")
    size, palette_channels = _image_header(file, header)
    return Jp2Structure(
        codestream=parse_codestream(file, stream.start, stream.end),
        boxes=tuple(boxes),
        header_size=size,
        palette_channels=palette_channels,
    )


def read_boxes(file: ImageFile, start: int, end: int) -> list[Box]:
    """The boxes laid end to end from ``start`` to ``end``."""
    boxes: list[Box] = []
    position = start
    while position + 8 <= end:
        if len(boxes) >= MAX_BOXES:
            raise Jp2FormatError("more boxes than any jp2 file holds")
        length, kind = struct.unpack(">I4s", _exactly(file, position, 8))
        content = position + 8
        if length == 1:  # a 64-bit length follows the type
            length = struct.unpack(">Q", _exactly(file, content, 8))[0]
            content += 8
        elif length == 0:  # the last box: to the end
            length = end - position
        if length < content - position or position + length > end:
            raise Jp2FormatError(f"a {kind!r} box runs past its container")
        boxes.append(Box(kind, position, content, position + length))
        position += length
    return boxes


def box_content(file: ImageFile, box: Box) -> bytes:
    return _exactly(file, box.start, box.end - box.start)


def _image_header(file: ImageFile, header: Box) -> tuple[tuple[int, int], int | None]:
    """The ``ihdr`` box's width and height and, when there is a palette (``pclr``), the
    number of channels its component mapping (``cmap``) makes, inside ``jp2h``."""
    size = None
    palette = False
    mapped = None
    for box in read_boxes(file, header.start, header.end):
        if box.kind == b"ihdr" and box.end - box.start >= 14:
            height, width = struct.unpack(">II", _exactly(file, box.start, 8))
            size = (width, height)
        elif box.kind == b"pclr":
            palette = True
        elif box.kind == b"cmap":
            mapped = (box.end - box.start) // 4  # one 4-byte entry per channel
    if size is None:
        raise Jp2FormatError("a jp2 header without its image header box")
    return size, mapped if palette else None


def parse_codestream(file: ImageFile, start: int, end: int) -> Codestream:
    """The main header of the codestream at ``start``: marker segments walked from SOC
    to the first tile-part (SOT)."""
    if _exactly(file, start, 4) != SOC_SIZ:
        raise Jp2FormatError("the codestream does not start with SOC and SIZ")
    position = start + 2
    siz: bytes | None = None
    decompositions: int | None = None
    comments: list[bytes] = []
    for _ in range(MAX_SEGMENTS):
        if position + 4 > end:
            raise Jp2FormatError("the codestream ends inside its main header")
        marker, length = struct.unpack(">HH", _exactly(file, position, 4))
        if marker in (SOT, EOC):
            break
        if marker >> 8 != 0xFF or length < 2 or position + 2 + length > end:
            raise Jp2FormatError("a malformed marker segment in the main header")
        if marker in (SIZ, COD, COM):
            body = _exactly(file, position + 4, min(length - 2, MAX_SEGMENT_READ))
            if marker == SIZ:
                siz = body
            elif marker == COD and len(body) >= 6:
                decompositions = body[5]  # Scod, SGcod (4 bytes), then SPcod's levels
            elif marker == COM and len(body) >= 2 and body[:2] == b"\x00\x01":
                comments.append(body[2:])  # Rcme 1: Latin-1 text
        position += 2 + length
    else:
        raise Jp2FormatError("more marker segments than any main header holds")
    if siz is None or decompositions is None:
        raise Jp2FormatError("the main header lacks its SIZ or COD segment")
    codestream = _codestream(start, siz, decompositions, tuple(comments))
    _check_tile_parts(file, position, end, codestream.tile_count)
    return codestream


def _check_tile_parts(file: ImageFile, position: int, end: int, tiles: int) -> None:
    """Every one of the codestream's ``tiles`` has a tile-part, and each lies inside the
    codestream: else a header declaring a huge image over a few stored tiles (or a file
    cut short) would open and then fail -- or decode black -- tile by tile. The walk
    follows the tile-parts' own lengths (Psot), one 12-byte read each."""
    seen: set[int] = set()
    for _ in range(tiles * MAX_PARTS_PER_TILE):
        if position + 12 > end:
            break
        marker, length, index, part_length = struct.unpack(">HHHI", _exactly(file, position, 10))
        if marker == EOC:
            break
        if marker != SOT or length != 10 or index >= tiles:
            raise Jp2FormatError("a malformed tile-part header")
        if part_length == 0:  # the last tile-part: it runs to the end
            seen.add(index)
            break
        if part_length < 14 or position + part_length > end:
            raise Jp2FormatError("a tile-part runs past the end of the codestream")
        seen.add(index)
        position += part_length
    if len(seen) < tiles:
        raise Jp2FormatError(
            f"the codestream holds {len(seen)} of its {tiles} tiles: it is cut short or "
            "its header declares a larger image than it holds"
        )


def _codestream(
    offset: int, siz: bytes, decompositions: int, comments: tuple[bytes, ...]
) -> Codestream:
    if len(siz) < 36:
        raise Jp2FormatError("a SIZ segment cut short")
    xsiz, ysiz, xosiz, yosiz, xtsiz, ytsiz, xtosiz, ytosiz = struct.unpack_from(">8I", siz, 2)
    count = struct.unpack_from(">H", siz, 34)[0]
    if not 1 <= count <= MAX_COMPONENTS or len(siz) < 36 + 3 * count:
        raise Jp2FormatError("a SIZ segment with an impossible component count")
    components = tuple(
        Component(
            precision=(siz[36 + 3 * i] & 0x7F) + 1,
            signed=bool(siz[36 + 3 * i] & 0x80),
            dx=siz[37 + 3 * i],
            dy=siz[38 + 3 * i],
        )
        for i in range(count)
    )
    if xsiz <= xosiz or ysiz <= yosiz or xtsiz == 0 or ytsiz == 0:
        raise Jp2FormatError("a SIZ segment declaring no pixels")
    if xtosiz > xosiz or ytosiz > yosiz or xtosiz + xtsiz <= xosiz or ytosiz + ytsiz <= yosiz:
        raise Jp2FormatError("a SIZ segment whose tiles miss the image")
    tile_count = -(-(xsiz - xtosiz) // xtsiz) * -(-(ysiz - ytosiz) // ytsiz)
    if tile_count > MAX_TILES:
        raise Jp2FormatError(f"a SIZ segment declaring {tile_count} tiles")
    return Codestream(
        offset=offset,
        width=xsiz - xosiz,
        height=ysiz - yosiz,
        tile_width=xtsiz,
        tile_height=ytsiz,
        components=components,
        decompositions=decompositions,
        comments=comments,
        tile_count=tile_count,
    )


def _exactly(file: ImageFile, offset: int, count: int) -> bytes:
    data = file.read(offset, count)
    if len(data) != count:
        raise Jp2FormatError("the file ends inside its structure")
    return data
