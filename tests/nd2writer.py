"""Nikon ND2 files for the tests, in the modern (version 3, NIS-Elements 5+) layout.

No ND2 writer exists and no real ND2 file is fetchable here, so this writes the format
as the ``nd2`` package's reader documents it: a file signature chunk; metadata chunks
(``ImageAttributesLV!``, ``ImageMetadataLV!`` -- the experiment's loops --,
``ImageMetadataSeqLV|0!`` -- channels, calibration, objective) in the "CLX lite
variant" binary encoding; one ``ImageDataSeq|<n>!`` chunk per frame (an 8-byte time
stamp, then the pixels of every channel interleaved, rows of ``uiWidthBytes``),
uncompressed or zlib-compressed ("lossless"); and the chunk map at the end.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_MAGIC = 0x0ABECEDA
FILE_SIGNATURE = b"ND2 FILE SIGNATURE CHUNK NAME01!"
FILEMAP_SIGNATURE = b"ND2 FILEMAP SIGNATURE NAME 0001!"
CHUNKMAP_SIGNATURE = b"ND2 CHUNK MAP SIGNATURE 0000001!"
IMAGE_NAME_BYTES = 4072  # frame pixels start 4096 bytes into their chunk (+ 8: time stamp)
TIME_LOOP, XY_LOOP, Z_LOOP = 1, 2, 4
BOOL, INT32, UINT32, DOUBLE, STRING, LEVEL = 1, 2, 3, 6, 8, 11


def _header(kind: int, name: str) -> bytes:
    return bytes([kind, len(name) + 1]) + (name + "\0").encode("utf-16-le")


def clx_lite(name: str, value: Any) -> bytes:
    """One item in the lite variant: type, name (UTF-16), value; a dict is a level
    (its children, then an offset table), a list a level of unnamed children."""
    if isinstance(value, bool):
        return _header(BOOL, name) + struct.pack("<B", value)
    if isinstance(value, int):
        kind = UINT32 if name.startswith("ui") else INT32
        return _header(kind, name) + struct.pack("<I" if kind == UINT32 else "<i", value)
    if isinstance(value, float):
        return _header(DOUBLE, name) + struct.pack("<d", value)
    if isinstance(value, str):
        return _header(STRING, name) + (value + "\0").encode("utf-16-le")
    items = list(value.items()) if isinstance(value, dict) else [("", item) for item in value]
    body = b"".join(clx_lite(key, item) for key, item in items)
    head = _header(LEVEL, name)
    length = len(head) + 12 + len(body)
    return head + struct.pack("<IQ", len(items), length) + body + bytes(8 * len(items))


def _probe(wavelength: float) -> dict[str, Any]:
    """A fluorescent probe's excitation and emission peaks (each one spectrum point)."""

    def spectrum(nm: float) -> dict[str, Any]:
        return {"uiCount": 1, "pPoint": {"Point0": {"dWavelength": nm, "dTValue": 1.0,
                                                    "eType": 1}}}  # fmt: skip

    return {"m_ExcitationSpectrum": spectrum(wavelength),
            "m_EmissionSpectrum": spectrum(wavelength + 40)}  # fmt: skip


def _chunk(name: bytes, data: bytes, name_bytes: int | None = None) -> bytes:
    padded = name.ljust(name_bytes or len(name), b"\0")
    return struct.pack("<IIQ", CHUNK_MAGIC, len(padded), len(data)) + padded + data


def _loops(loops: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """The experiment's nested loops, outermost first: ("T" | "P" | "Z", count)."""
    level: dict[str, Any] = {}
    for axis, count in reversed(loops):
        if axis == "T":
            kind, pars = TIME_LOOP, {"uiCount": count, "dStart": 0.0, "dPeriod": 1000.0,
                                     "dDuration": 1000.0 * count}  # fmt: skip
        elif axis == "P":
            points = [{"dPosX": 100.0 * n, "dPosY": 0.0, "dPosZ": 0.0, "pPosName": f"pos{n}"}
                      for n in range(count)]  # fmt: skip
            kind, pars = XY_LOOP, {"uiCount": count, "Points": points}
        else:
            kind, pars = Z_LOOP, {"uiCount": count, "dZLow": 0.0, "dZHigh": float(count - 1),
                                  "dZStep": 1.0, "dZHome": 0.0, "bZInverted": False,
                                  "iType": 0}  # fmt: skip
        node: dict[str, Any] = {"eType": kind, "uLoopPars": pars}
        if level:
            node["ppNextLevelEx"] = [level]
        level = node
    return level


def write_nd2(
    path: Path,
    frames: np.ndarray,
    loops: Sequence[tuple[str, int]],
    *,
    channel_names: Sequence[str] = (),
    rgb: bool = False,
    compressed: bool = False,
    um_per_pixel: float = 0.325,
    objective: float = 20.0,
    row_padding: int = 0,
) -> Path:
    """An ND2 of ``frames``: (sequence, channels, Y, X) gray or (sequence, Y, X, 3) RGB,
    sequence frames in the order of ``loops`` (outermost first, last fastest);
    ``row_padding`` bytes after each row (NIS pads rows to 4 bytes)."""
    if rgb:
        count, height, width, _ = frames.shape
        channels, components = 1, 3
        interleaved = frames
    else:
        count, channels, height, width = frames.shape
        components = channels
        interleaved = np.moveaxis(frames, 1, -1)  # (sequence, Y, X, channels)
    item = frames.dtype.itemsize
    width_bytes = width * components * item + row_padding
    attributes = {
        "uiWidth": width, "uiWidthBytes": width_bytes, "uiHeight": height,
        "uiComp": components, "uiBpcInMemory": item * 8, "uiBpcSignificant": item * 8,
        "uiSequenceCount": count, "uiTileWidth": width, "uiTileHeight": height,
        "eCompression": 0 if compressed else 2, "dCompressionParam": 0.0,
        "uiVirtualComponents": components,
    }  # fmt: skip
    names = list(channel_names) or [f"Channel {n}" for n in range(channels)]
    planes = {f"a{n}": {"sDescription": names[n], "uiCompCount": components // channels,
                        "uiColor": 0xFF00FF, "uiSampleIndex": n,
                        "pFluorescentProbe": _probe(405.0 + 80 * n)}
              for n in range(channels)}  # fmt: skip
    picture = {
        "bCalibrated": True, "dCalibration": um_per_pixel, "dObjectiveMag": objective,
        "wsObjectiveName": f"Plan Apo {objective:g}x", "dObjectiveNA": 0.75,
        "sPicturePlanes": {"uiCount": channels, "sPlaneNew": planes},
    }  # fmt: skip
    chunks: list[tuple[bytes, bytes, int | None]] = [
        (b"ImageAttributesLV!", clx_lite("SLxImageAttributes", attributes), None),
        (b"ImageMetadataLV!", clx_lite("SLxExperiment", _loops(loops)), None),
        (b"ImageMetadataSeqLV|0!", clx_lite("SLxPictureMetadata", picture), None),
    ]
    for index in range(count):
        rows = np.zeros((height, width_bytes), dtype=np.uint8)
        pixels = np.ascontiguousarray(interleaved[index]).view(np.uint8).reshape(height, -1)
        rows[:, : pixels.shape[1]] = pixels
        data = rows.tobytes()
        if compressed:
            data = zlib.compress(data)
        stamp = struct.pack("<d", 1000.0 * index)
        chunks.append((f"ImageDataSeq|{index}!".encode(), stamp + data, IMAGE_NAME_BYTES))
    out = bytearray(_chunk(FILE_SIGNATURE, b"Ver3.0".ljust(64, b"\0")))
    entries = bytearray()
    for name, data, name_bytes in chunks:
        entries += name + struct.pack("<QQ", len(out), len(data))
        out += _chunk(name, data, name_bytes)
    location = len(out)
    entries += CHUNKMAP_SIGNATURE + struct.pack("<Q", location)
    out += _chunk(FILEMAP_SIGNATURE, bytes(entries))
    path.write_bytes(bytes(out))
    return path
