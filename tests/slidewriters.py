"""Vendor slide files OpenSlide recognises, written with tifffile for the OpenSlide reader's
tests: a Philips TIFF, a Leica SCN and a Ventana BIF, each with the markers and metadata
OpenSlide 4's drivers look for (src/openslide-vendor-{philips-tiff,leica,ventana}.c), and a
Hamamatsu VMS (a key file and JPEGs with restart markers, written with libvips).

No vendor software wrote these: they exercise the detection, level, region and
associated-image paths of OpenSlide's drivers on small files, and what tilecast's TIFF
reader would make of them.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pyvips
import tifffile
from PIL import Image

TILE = 256
PHILIPS_SPACING_MM = 0.00025  # 0.25 um per pixel at full resolution
LEICA_NAMESPACE = "http://www.leica-microsystems.com/scn/2010/10/01"


def slide_pixels(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth RGB picture with some edges: gradients, discs and bars, so that level
    reductions are fair to compare (no noise) and misplaced tiles show."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 40 + 180 * xs / max(1, width - 1)
    green = 40 + 180 * ys / max(1, height - 1)
    blue = 120 + 80 * np.sin((xs + ys + seed * 37) / 53.0)
    image = np.stack([red, green, blue], axis=-1)
    for cx, cy, r in ((0.3, 0.4, 0.12), (0.7, 0.6, 0.18), (0.5, 0.2, 0.07)):
        disc = (xs - cx * width) ** 2 + (ys - cy * height) ** 2 < (r * min(width, height)) ** 2
        image[disc] = image[disc] * 0.4 + np.array([230, 60, 90]) * 0.6
    image[(xs.astype(int) // 97) % 5 == 0] *= 0.85
    return np.clip(image, 0, 255).astype(np.uint8)


def halve(pixels: np.ndarray) -> np.ndarray:
    """A 2x2 mean reduction (the last odd row and column dropped)."""
    h, w = pixels.shape[0] // 2 * 2, pixels.shape[1] // 2 * 2
    blocks = pixels[:h, :w].astype(np.float64).reshape(h // 2, 2, w // 2, 2, -1)
    return np.round(blocks.mean(axis=(1, 3))).astype(np.uint8)


def jpeg_bytes(pixels: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _pad_to_tiles(pixels: np.ndarray, fill: int = 255) -> np.ndarray:
    height = -(-pixels.shape[0] // TILE) * TILE
    width = -(-pixels.shape[1] // TILE) * TILE
    padded = np.full((height, width, pixels.shape[2]), fill, dtype=np.uint8)
    padded[: pixels.shape[0], : pixels.shape[1]] = pixels
    return padded


def _write_abbreviated_jpeg(
    tiff: tifffile.TiffWriter, pixels: np.ndarray, *, rgb: bool, **options: object
) -> None:
    """``pixels`` as tiled JPEG whose tiles hold no tables, the tables in JPEGTables."""
    import imagecodecs

    space = {"outcolorspace": "rgb"} if rgb else {"outcolorspace": "ycbcr", "subsampling": (2, 2)}
    tiles, tables = [], b""
    for top in range(0, pixels.shape[0], TILE):
        for left in range(0, pixels.shape[1], TILE):
            tile = np.ascontiguousarray(pixels[top : top + TILE, left : left + TILE])
            whole = bytes(imagecodecs.jpeg8_encode(tile, level=90, colorspace="rgb", **space))
            tables, frame = _split_tables(whole)
            tiles.append(frame)
    tiff.write(
        iter(tiles),
        shape=pixels.shape,
        dtype=np.uint8,
        compression=7,
        compressionargs={"outcolorspace": "rgb" if rgb else "ycbcr"},  # the photometric tag
        photometric="rgb",
        extratags=[(347, 7, len(tables), tables, True)],
        **options,
    )


def _split_tables(jpeg: bytes) -> tuple[bytes, bytes]:
    """A JPEG's DQT and DHT segments as a tables-only stream, and the JPEG without them."""
    tables, frame = [b"\xff\xd8"], [b"\xff\xd8"]
    position = 2
    while jpeg[position + 1] != 0xDA:
        length = int.from_bytes(jpeg[position + 2 : position + 4], "big")
        segment = jpeg[position : position + 2 + length]
        (tables if jpeg[position + 1] in (0xDB, 0xC4) else frame).append(segment)
        position += 2 + length
    return b"".join(tables) + b"\xff\xd9", b"".join(frame) + jpeg[position:]


# -- Philips TIFF --------------------------------------------------------------------------
def write_philips(
    path: Path,
    width: int = 1024,
    height: int = 768,
    *,
    shared_tables: bool = False,
    rgb: bool = False,
    label_jpeg: bytes | None = None,
) -> np.ndarray:
    """A Philips TIFF: three tiled JPEG levels padded to whole tiles (as Philips pads
    them), the XML ImageDescription with one pixel spacing per level, a macro page and
    a label in the XML. ``width`` and ``height`` should be multiples of 256. Returns
    the full-resolution pixels. ``shared_tables``: the tiles' quantization and Huffman
    tables in the levels' JPEGTables tag (what libtiff writes) instead of in each
    tile; ``rgb``: the JPEG data in RGB (photometric RGB, an Adobe marker), not YCbCr;
    ``label_jpeg``: the label's JPEG bytes (default: a JPEG of 120 x 90 pixels)."""
    full = slide_pixels(width, height)
    levels = [full, halve(full), halve(halve(full))]
    if label_jpeg is None:
        label_jpeg = jpeg_bytes(slide_pixels(120, 90, seed=3))
    spacings = "".join(
        '<DataObject ObjectType="PixelDataRepresentation">'
        f'<Attribute Name="DICOM_PIXEL_SPACING" Group="0x0028" Element="0x0030" '
        f'PMSVR="IDoubleArray">&quot;{PHILIPS_SPACING_MM * 2**n:g}&quot; '
        f"&quot;{PHILIPS_SPACING_MM * 2**n:g}&quot;</Attribute>"
        f'<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_NUMBER" PMSVR="IUInt16">{n}'
        "</Attribute></DataObject>"
        for n in range(len(levels))
    )
    xml = (
        '<?xml version="1.0" encoding="UTF-8" ?>'
        '<DataObject ObjectType="DPUfsImport">'
        '<Attribute Name="DICOM_MANUFACTURER" PMSVR="IString">PHILIPS</Attribute>'
        '<Attribute Name="DICOM_DERIVATION_DESCRIPTION" PMSVR="IString">'
        "tiff-useBigTIFF=1-useRgb=0-levels=40,20,10-processing=0-q80</Attribute>"
        '<Attribute Name="PIM_DP_SCANNED_IMAGES" PMSVR="IDataObjectArray"><Array>'
        '<DataObject ObjectType="DPScannedImage">'
        '<Attribute Name="PIM_DP_IMAGE_TYPE" PMSVR="IString">WSI</Attribute>'
        f'<Attribute Name="DICOM_PIXEL_SPACING" PMSVR="IDoubleArray">&quot;{PHILIPS_SPACING_MM:g}'
        f"&quot; &quot;{PHILIPS_SPACING_MM:g}&quot;</Attribute>"
        '<Attribute Name="PIIM_PIXEL_DATA_REPRESENTATION_SEQUENCE" PMSVR="IDataObjectArray">'
        f"<Array>{spacings}</Array></Attribute>"
        "</DataObject>"
        '<DataObject ObjectType="DPScannedImage">'
        '<Attribute Name="PIM_DP_IMAGE_TYPE" PMSVR="IString">LABELIMAGE</Attribute>'
        '<Attribute Name="PIM_DP_IMAGE_DATA" PMSVR="IString">'
        f"{base64.b64encode(label_jpeg).decode()}</Attribute>"
        "</DataObject>"
        "</Array></Attribute>"
        "</DataObject>"
    )
    with tifffile.TiffWriter(path, bigtiff=False) as tiff:
        for number, level in enumerate(levels):
            common = {
                "tile": (TILE, TILE),
                "subfiletype": 1 if number else 0,
                "description": xml if number == 0 else None,
                "software": "Philips DP v1.0",
                "metadata": None,
            }
            if shared_tables:
                _write_abbreviated_jpeg(tiff, _pad_to_tiles(level), rgb=rgb, **common)
                continue
            tiff.write(
                _pad_to_tiles(level),
                compression="jpeg",
                compressionargs={"level": 90, **({"outcolorspace": "rgb"} if rgb else {})},
                photometric="rgb",
                **common,
            )
        tiff.write(
            slide_pixels(200, 80, seed=5),
            photometric="rgb",
            description="Macro",
            software="Philips DP v1.0",
            metadata=None,
        )
    return full


# -- Leica SCN ----------------------------------------------------------------------------
def write_leica(path: Path, width: int = 800, height: int = 600) -> np.ndarray:
    """A Leica SCN (2010/10/01 schema): a collection 1 x 0.8 mm holding a macro image of
    the whole collection (page 0) and one brightfield main image of ``width`` x
    ``height`` at 0.5 um per pixel, placed inside it, stored as three levels. Returns the
    main image's full-resolution pixels."""
    nm_per_pixel = 500
    main = slide_pixels(width, height)
    levels = [main, halve(main), halve(halve(main))]
    collection_nm = (1_000_000, 800_000)  # 2000 x 1600 main-image pixels
    macro_size = (400, 320)  # 2.5 um per pixel
    offset_nm = (200_000, 100_000)
    dimensions = "".join(
        f'<dimension sizeX="{level.shape[1]}" sizeY="{level.shape[0]}" r="{n}" ifd="{n + 1}"/>'
        for n, level in enumerate(levels)
    )
    xml = (
        '<?xml version="1.0"?>'
        f'<scn xmlns="{LEICA_NAMESPACE}">'
        f'<collection name="tilecast" uuid="c0" sizeX="{collection_nm[0]}" '
        f'sizeY="{collection_nm[1]}">'
        f"<barcode>{base64.b64encode(b'TC-0001').decode()}</barcode>"
        '<image name="macro" uuid="i0">'
        "<creationDate>2026-01-01T00:00:00.00Z</creationDate>"
        '<device model="Leica SCN400;Leica SCN" version="1.5"/>'
        f'<pixels sizeX="{macro_size[0]}" sizeY="{macro_size[1]}">'
        f'<dimension sizeX="{macro_size[0]}" sizeY="{macro_size[1]}" r="0" ifd="0"/></pixels>'
        f'<view sizeX="{collection_nm[0]}" sizeY="{collection_nm[1]}" offsetX="0" '
        'offsetY="0" spacingZ="0"/>'
        "<scanSettings><objectiveSettings><objective>0.1</objective></objectiveSettings>"
        "<illuminationSettings><numericalAperture>0.01</numericalAperture>"
        "<illuminationSource>brightfield</illuminationSource></illuminationSettings>"
        "</scanSettings></image>"
        '<image name="main" uuid="i1">'
        "<creationDate>2026-01-01T00:00:00.00Z</creationDate>"
        '<device model="Leica SCN400;Leica SCN" version="1.5"/>'
        f'<pixels sizeX="{width}" sizeY="{height}">{dimensions}</pixels>'
        f'<view sizeX="{width * nm_per_pixel}" sizeY="{height * nm_per_pixel}" '
        f'offsetX="{offset_nm[0]}" offsetY="{offset_nm[1]}" spacingZ="0"/>'
        "<scanSettings><objectiveSettings><objective>20</objective></objectiveSettings>"
        "<illuminationSettings><numericalAperture>0.4</numericalAperture>"
        "<illuminationSource>brightfield</illuminationSource></illuminationSettings>"
        "</scanSettings></image>"
        "</collection></scn>"
    )
    with tifffile.TiffWriter(path, bigtiff=False) as tiff:
        tiff.write(
            slide_pixels(macro_size[0], macro_size[1], seed=7),
            tile=(TILE, TILE),
            compression="jpeg",
            photometric="rgb",
            description=xml,
            metadata=None,
        )
        for number, level in enumerate(levels):
            per_cm = 1e7 / (nm_per_pixel * 2**number)
            tiff.write(
                level,
                tile=(TILE, TILE),
                compression="jpeg",
                compressionargs={"level": 90},
                photometric="rgb",
                resolution=(per_cm, per_cm),
                resolutionunit="CENTIMETER",
                metadata=None,
            )
    return main


# -- Ventana BIF --------------------------------------------------------------------------
def write_ventana(
    path: Path, width: int = 1024, height: int = 768, reductions: tuple[int, ...] = (0, 1, 2)
) -> np.ndarray:
    """A Ventana TIFF (BIF without area stitching): the label page first with the
    ``iScan`` XMP packet, a thumbnail, then levels described ``level=N mag=M``, one per
    halving count in ``reductions``. Returns the full-resolution pixels."""
    full = slide_pixels(width, height)
    halvings = [full]
    for _ in range(max(reductions)):
        halvings.append(halve(halvings[-1]))
    xmp = (
        b'<?xml version="1.0" encoding="utf-8"?>'
        b'<iScan BuildDate="2026" BuildVersion="1.0" Magnification="40" ScanRes="0.25" '
        b'UnitNumber="tilecast" ScannerModel="VENTANA DP 200"/>'
    )
    with tifffile.TiffWriter(path, bigtiff=False) as tiff:
        tiff.write(
            slide_pixels(300, 100, seed=9),
            photometric="rgb",
            description="Label_Image",
            extratags=[(700, 1, len(xmp), xmp, True)],
            metadata=None,
        )
        tiff.write(
            halve(halve(halve(full))), photometric="rgb", description="Thumbnail", metadata=None
        )
        for number, reduction in enumerate(reductions):
            tiff.write(
                halvings[reduction],
                tile=(TILE, TILE),
                compression="jpeg",
                compressionargs={"level": 90},
                photometric="rgb",
                description=f"level={number} mag={40 / 2**reduction:g} quality=90",
                metadata=None,
            )
    return full


# -- Hamamatsu VMS ------------------------------------------------------------------------
def write_vms(folder: Path, width: int = 1024, height: int = 512) -> tuple[Path, np.ndarray]:
    """A Hamamatsu VMS: the key file, one JPEG image (with restart markers, which
    OpenSlide indexes to read it tile by tile), its quarter-size map and a macro JPEG.
    ``width`` should be a multiple of 1024. Returns the key file's
    path and the image's pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    pixels = slide_pixels(width, height)
    # A restart every 16 MCUs (256 pixels at 4:2:0): OpenSlide's tiles; both the image
    # and its map must be whole multiples of it across.
    for name, image in (("slide-0.jpg", pixels), ("slide-map.jpg", halve(halve(pixels)))):
        vips = pyvips.Image.new_from_array(image, interpretation="srgb")
        vips.jpegsave(str(folder / name), Q=90, restart_interval=16)
    Image.fromarray(slide_pixels(256, 128, seed=11)).save(folder / "slide-macro.jpg", "JPEG")
    key_file = folder / "slide.vms"
    key_file.write_text(
        "[Virtual Microscope Specimen]\n"
        "NoLayers=1\n"
        "NoJpegColumns=1\n"
        "NoJpegRows=1\n"
        "ImageFile=slide-0.jpg\n"
        "MacroImage=slide-macro.jpg\n"
        "MapFile=slide-map.jpg\n"
        "SourceLens=20\n"
        f"PhysicalWidth={width * 460}\n"
        f"PhysicalHeight={height * 460}\n"
    )
    return key_file, pixels
