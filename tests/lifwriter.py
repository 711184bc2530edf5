"""Leica LIF files for the tests, laid out as Leica's "LIF, XLEF, XLLF, LOF" format
description (version 3.2) and LAS X write them: a 0x70 / 0x2A header holding the
UTF-16 XML, then one memory block per image (0x70, 0x2A, a 64-bit size, 0x2A, the
block's UTF-16 id, the raw pixels). Images are stored as LAS X stores them: X fastest,
then Y, channels planar one after the other (RGB: B, G, R interleaved per pixel), then
Z, then T. No LIF writer exists in Python; liffile and readlif read these files back
(tests/unit/test_workers_lif.py checks both agree with what was written).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

DIM_X, DIM_Y, DIM_Z, DIM_T, DIM_M = 1, 2, 3, 4, 10


@dataclass
class LifImage:
    name: str
    # (T, Z, C, Y, X) gray channels, or (T, Z, Y, X, 3) RGB (rgb=True)
    pixels: np.ndarray
    rgb: bool = False
    pixel_size_m: float = 0.5e-6
    magnification: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


def _dimension(dim_id: int, count: int, step_m: float, bytes_inc: int) -> str:
    length = step_m * (count - 1) if dim_id in (DIM_X, DIM_Y, DIM_Z) else float(count - 1)
    unit = "m" if dim_id in (DIM_X, DIM_Y, DIM_Z) else "s"
    return (f'<DimensionDescription DimID="{dim_id}" NumberOfElements="{count}" Origin="0" '
            f'Length="{length!r}" Unit="{unit}" BitInc="0" BytesInc="{bytes_inc}"/>')  # fmt: skip


def _channel(tag: int, resolution: int, data_type: int, bytes_inc: int, lut: str) -> str:
    top = 2**resolution - 1 if data_type == 0 else 1
    return (f'<ChannelDescription DataType="{data_type}" ChannelTag="{tag}" '
            f'Resolution="{resolution}" NameOfMeasuredQuantity="" Min="0" Max="{top}" Unit="" '
            f'LUTName="{lut}" IsLUTInverted="0" BytesInc="{bytes_inc}" BitInc="0"/>')  # fmt: skip


def _image_xml(image: LifImage, block_id: str) -> tuple[str, bytes]:
    pixels = image.pixels
    item = pixels.dtype.itemsize
    data_type = 1 if pixels.dtype.kind == "f" else 0
    resolution = item * 8
    if image.rgb:
        t_count, z_count, height, width, _ = pixels.shape
        stored = [(3, "Blue"), (2, "Green"), (1, "Red")]
        channels = [
            _channel(tag, resolution, data_type, index * item, lut)
            for index, (tag, lut) in enumerate(stored)
        ]
        x_inc, plane = 3 * item, width * height * 3 * item
        data = pixels[..., ::-1]  # stored B, G, R
        c_count = 1
    else:
        t_count, z_count, c_count, height, width = pixels.shape
        plane = width * height * item
        luts = ["Red", "Green", "Blue", "Gray"]
        channels = [_channel(0, resolution, data_type, c * plane, luts[c % 4])
                    for c in range(c_count)]  # fmt: skip
        x_inc = item
        plane *= c_count
        data = pixels
    dims = [_dimension(DIM_X, width, image.pixel_size_m, x_inc),
            _dimension(DIM_Y, height, image.pixel_size_m, x_inc * width)]  # fmt: skip
    if z_count > 1:
        dims.append(_dimension(DIM_Z, z_count, 1e-6, plane))
    if t_count > 1:
        dims.append(_dimension(DIM_T, t_count, 1.0, plane * z_count))
    settings = ""
    if image.magnification:
        settings = (f'<Attachment Name="HardwareSetting"><ATLConfocalSettingDefinition '
                    f'Magnification="{image.magnification:g}" ObjectiveName="HC PL APO"/>'
                    f"</Attachment>")  # fmt: skip
    raw = np.ascontiguousarray(data).astype(pixels.dtype.newbyteorder("<")).tobytes()
    xml = (f"<Element Name={quoteattr(image.name)} Visibility=\"1\" CopyOption=\"1\">"
           f"<Data><Image TextDescription=\"\"><ImageDescription>"
           f"<Channels>{''.join(channels)}</Channels>"
           f"<Dimensions>{''.join(dims)}</Dimensions>"
           f"</ImageDescription>{settings}</Image></Data>"
           f"<Memory Size=\"{len(raw)}\" MemoryBlockID=\"{block_id}\"/>"
           f"<Children/></Element>")  # fmt: skip
    return xml, raw


def write_lif(path: Path, images: Sequence[LifImage], *, truncate: int = 0) -> Path:
    """A LIF file of ``images``, children of one experiment element (as LAS X writes a
    project); ``truncate`` bytes cut off the end."""
    blocks: list[tuple[str, bytes]] = [("MemBlock_0", b"")]
    children = []
    for number, image in enumerate(images, start=1):
        block_id = f"MemBlock_{number}"
        xml, raw = _image_xml(image, block_id)
        children.append(xml)
        blocks.append((block_id, raw))
    header = (
        '<LMSDataContainerHeader Version="2"><Element Name="project" Visibility="1" '
        'CopyOption="1" UniqueID="2c7a3e2c-0000-4000-8000-000000000000"><Data><Experiment '
        'Path="C:\\data" IsSavedFlag="1"/></Data><Memory Size="0" MemoryBlockID="MemBlock_0"/>'
        f"<Children>{''.join(children)}</Children></Element></LMSDataContainerHeader>"
    )
    text = header.encode("utf-16-le")
    out = bytearray(struct.pack("<IIBI", 0x70, len(text) + 5, 0x2A, len(header)) + text)
    for block_id, raw in blocks:
        name = block_id.encode("utf-16-le")
        out += struct.pack("<IIBQBI", 0x70, 0, 0x2A, len(raw), 0x2A, len(block_id))
        out += name + raw
    if truncate:
        del out[-truncate:]
    path.write_bytes(bytes(out))
    return path
