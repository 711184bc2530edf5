"""Tiled TIFF / BigTIFF sources, pyramidal or single-level, plus small striped TIFFs.

Which directories are levels mirrors large_image_source_tiff (``_initWithTiffTools``
and ``_levelFromIfd``): the first directory is the full-resolution image; another
tiled directory (or a SubIFD) is a level when its layout tags equal the first
one's and its size is a power-of-two reduction of it (floor, ceil or tile-rounded
halvings); a further full-size directory starts a new frame. A striped (untiled)
TIFF is handled here only when large_image's TIFF source would take it (one
directory, at most 4096 pixels a side); larger ones go to the generic libvips reader.

OME-TIFF files are the same reader with the OME-XML's frames and channels
(workers/sources/ometiff.py), tried first.

Reads: JPEG tiles come back as the file's own bytes spliced with JPEGTables into a
standalone JPEG (what large_image passes through); ZSTD and JPEG 2000 tiles (Aperio's
33003 YCbCr and 33005 RGB, 33004, 34712) are decoded by workers/sources/codecs.py (the
bundled libvips cannot); every other compression is decoded by libvips from a
per-directory image kept open in this object.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pyvips

from tilecast.common.errors import UnsupportedImage
from tilecast.common.grid import level_count
from tilecast.common.settings import Settings
from tilecast.workers import codecheaders
from tilecast.workers.rawtile import RawTile
from tilecast.workers.sources import codecs, slidevendors, tiffdir
from tilecast.workers.sources.dicom import is_dicom
from tilecast.workers.sources.files import ImageFile
from tilecast.workers.sources.reader import PRIORITIES, Probe, Reader, ReaderDeclined
from tilecast.workers.sources.tiffassociated import find_associated, read_associated
from tilecast.workers.sources.tiffdir import TiffDirectory, TiffFile, TiffFormatError
from tilecast.workers.vipsutil import to_numpy

log = logging.getLogger(__name__)

MAX_UNTILED_SIZE = 4096  # large_image's _maxUntiledImage
MAX_TILE_PIXELS = 4096 * 4096  # a hostile tile size must not cost gigabytes per read
# No encoding of a tile's pixels takes more than twice their raw size plus headers (JPEG
# of noise at quality 100, LZW's worst case stay well below): a larger byte count is a
# hostile or corrupt directory, refused before the bytes are read.
MAX_TILE_EXPANSION, MAX_TILE_OVERHEAD = 2, 1024 * 1024
SUPPORTED_PHOTOMETRIC = {
    tiffdir.PHOTOMETRIC_MINISBLACK,
    tiffdir.PHOTOMETRIC_RGB,
    tiffdir.PHOTOMETRIC_YCBCR,
}
SAMPLE_FORMAT_NAMES = {1: "uint", 2: "int", 3: "float"}
# Tags whose presence and value must equal the base directory's for a level.
LAYOUT_TAGS = (
    tiffdir.SAMPLES_PER_PIXEL,
    tiffdir.BITS_PER_SAMPLE,
    tiffdir.PLANAR_CONFIG,
    tiffdir.PHOTOMETRIC,
    tiffdir.ORIENTATION,
    tiffdir.COMPRESSION,
    tiffdir.TILE_WIDTH,
    tiffdir.TILE_LENGTH,
)
RESOLUTION_UNIT_MM = {2: 25.4, 3: 10.0}  # inch, centimetre
SOI, EOI, SOF0, SOF2, SOS = b"\xff\xd8", b"\xff\xd9", b"\xff\xc0", b"\xff\xc2", b"\xff\xda"
TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class NotATiffPyramid(ReaderDeclined):
    """A readable TIFF that large_image's TIFF source would not take: the registry
    passes it on to the generic libvips reader."""


def parsed_tiff(probe: Probe) -> TiffFile:
    """The probed file's TIFF structure, parsed once for every TIFF reader that looks."""
    return probe.shared("tiff", TiffFile)


class TiffSource(Reader):
    name = "tiff"
    priority = PRIORITIES["tiff"]
    format_name = "TIFF"

    @classmethod
    def can_read(cls, probe: Probe) -> bool:
        # A DICOM file may carry a TIFF header in its preamble ("dual personality"): it
        # is the DICOM reader's, which reads its series.
        return probe.startswith(*TIFF_MAGICS) and not is_dicom(probe.head)

    @classmethod
    def open(cls, probe: Probe, settings: Settings) -> TiffSource:
        try:
            tiff = parsed_tiff(probe)
        except TiffFormatError as exc:
            raise UnsupportedImage(f"not a readable TIFF: {exc}") from None
        except OSError as exc:
            raise UnsupportedImage(f"cannot open the file: {exc.strerror}") from None
        return cls(probe.file, settings, tiff)

    def __init__(self, file: ImageFile, settings: Settings, tiff: TiffFile | None = None) -> None:
        """Reads ``file`` (whose directories ``tiff`` holds when they were already
        parsed), which the source closes when it is closed (and its opener closes when
        this raises)."""
        self.file = file
        self.path = file.name
        try:
            self._tiff = tiff if tiff is not None else TiffFile(file)
        except TiffFormatError as exc:
            raise UnsupportedImage(f"not a readable TIFF: {exc}") from None
        except OSError as exc:
            raise UnsupportedImage(f"cannot open the file: {exc.strerror}") from None
        self._init_geometry(settings)
        self._vips: dict[tuple[int, int | None], pyvips.Image] = {}

    # -- opening ------------------------------------------------------------------------
    def _init_geometry(self, settings: Settings) -> None:
        directories = self._tiff.directories
        base = directories[0]
        vendor = slidevendors.tiff_vendor(base)
        if vendor in slidevendors.OPENSLIDE_ONLY_TIFF:
            # Their levels, regions and associated images are not a plain pyramid.
            raise ReaderDeclined(f"{slidevendors.FORMAT_NAMES[vendor]}: OpenSlide reads it")
        reason = _unsupported_reason(base)
        if reason:
            # libvips still reads many of these (palette, 1-bit, rotated, planar).
            raise NotATiffPyramid(reason)
        if base.width <= 0 or base.height <= 0:
            raise UnsupportedImage("the image has no pixels")
        self.size_x, self.size_y = base.width, base.height
        if base.is_tiled:
            self.tile_width = base.tile_width or 0
            self.tile_height = base.tile_height or 0
        else:
            description = base.image_description or b""
            if (
                self.size_x > MAX_UNTILED_SIZE
                or self.size_y > MAX_UNTILED_SIZE
                or len(directories) != 1
                or base.subifds
                or b"ImageJ" in description
            ):
                raise NotATiffPyramid("a striped TIFF beyond large_image's TIFF source")
            # large_image serves whole-width tiles of strips, at least 256 rows tall.
            rows = base.rows_per_strip
            self.tile_width = self.size_x
            self.tile_height = rows * max(1, math.ceil(256 / rows))
        if self.tile_width <= 0 or self.tile_height <= 0:
            raise UnsupportedImage("the TIFF has an invalid tile size")
        if self.tile_width * self.tile_height > MAX_TILE_PIXELS:
            raise UnsupportedImage("the TIFF's tiles are too large to decode")
        if self.size_x * self.size_y > settings.max_decode_pixels:
            raise UnsupportedImage("the image has more pixels than this server decodes")
        self.levels = level_count(self.size_x, self.size_y, self.tile_width, self.tile_height)
        fmt = SAMPLE_FORMAT_NAMES.get(base.sample_format or 1)
        if fmt is None:
            raise UnsupportedImage("unsupported TIFF sample format")
        self.dtype = np.dtype(f"{fmt}{base.bits_per_sample}")
        self.band_count = base.samples_per_pixel
        self._frames = self._find_levels(directories) if base.is_tiled else [self._single(base)]
        self.frame_count = len(self._frames)
        self.black_padding = base.compression == tiffdir.COMPRESSION_JPEG
        self._pixel_info(base)
        self._frame_axes(base)
        self._associated = self._find_associated(directories) if base.is_tiled else {}

    def _single(self, base: TiffDirectory) -> list[TiffDirectory | None]:
        levels: list[TiffDirectory | None] = [None] * self.levels
        levels[-1] = base
        return levels

    def _find_levels(self, directories: list[TiffDirectory]) -> list[list[TiffDirectory | None]]:
        base = directories[0]
        frames: list[list[TiffDirectory | None]] = []
        for directory in directories:
            if not directory.is_tiled:
                continue  # an associated image (label, macro)
            level = self._level_of(directory, base)
            if level is None:
                continue  # large_image treats it as associated or falls back; skip it
            if level == self.levels - 1:
                frames.append([None] * self.levels)
                frames[-1][-1] = directory
            elif any(frame[level] is None for frame in frames):
                next(frame for frame in frames if frame[level] is None)[level] = directory
            else:
                continue
            for sub in directory.subifds:
                if not sub.is_tiled:
                    break
                sub_level = self._level_of(sub, base)
                if sub_level is None:
                    break
                if sub_level < self.levels - 1 and frames[-1][sub_level] is None:
                    frames[-1][sub_level] = sub
        if not frames:
            raise UnsupportedImage("the TIFF has no usable full-resolution directory")
        for frame in frames:
            for directory in frame:
                if directory is not None:
                    self._check_tile_arrays(directory)
        return frames

    def _check_tile_arrays(self, directory: TiffDirectory) -> None:
        """A level must list every one of its tiles, as libtiff requires; else a file
        declaring a huge size over a few stored tiles would register and fail tile by
        tile."""
        across = -(-directory.width // self.tile_width)
        down = -(-directory.height // self.tile_height)
        listed = min(len(directory.tile_offsets), len(directory.tile_byte_counts))
        if listed < across * down:
            raise UnsupportedImage(
                f"the TIFF lists {listed} tiles for a level of {across * down}: it is corrupt"
            )

    def _level_of(self, directory: TiffDirectory, base: TiffDirectory) -> int | None:
        """The level ``directory`` holds, or None (large_image's ``_levelFromIfd``)."""
        for tag in LAYOUT_TAGS:
            mine, theirs = directory.tags.get(tag), base.tags.get(tag)
            if (mine is None) != (theirs is None):
                return None
            if mine is not None and not np.array_equal(np.asarray(mine), np.asarray(theirs)):
                return None
        if _unsupported_reason(directory):
            return None
        tile_w, tile_h = self.tile_width, self.tile_height
        target = (directory.width, directory.height)
        sizes = [(self.size_x, self.size_y)]
        for level in range(self.levels - 1, -1, -1):
            if target in sizes:
                return level
            halves: list[tuple[int, int]] = []
            for w, h in sizes:
                w2f, h2f = w // 2, h // 2
                w2c, h2c = (w + 1) // 2, (h + 1) // 2
                w2t = math.floor((w / 2 + tile_w - 1) / tile_w) * tile_w
                h2t = math.floor((h / 2 + tile_h - 1) / tile_h) * tile_h
                for pair in ((w2f, h2f), (w2f, h2c), (w2c, h2f), (w2c, h2c), (w2t, h2t)):
                    if pair not in halves:
                        halves.append(pair)
            sizes = halves
        return None

    def _pixel_info(self, base: TiffDirectory) -> None:
        """Magnification and pixel size the way large_image's TIFF reader finds them."""
        info = _description_pixel_info(base.image_description)
        xres, yres, unit = base.resolution()
        unit_mm = RESOLUTION_UNIT_MM.get(unit) if unit is not None else None
        # Resolutions below 100 per unit are usually meaningless defaults (72 dpi).
        if not info.get("mm_x") and xres and unit_mm and xres >= 100:
            info["mm_x"] = unit_mm / xres
        if not info.get("mm_y") and yres and unit_mm and yres >= 100:
            info["mm_y"] = unit_mm / yres
        mm_x, mm_y = info.get("mm_x"), info.get("mm_y")
        self.mm_x = mm_x
        self.mm_y = mm_y
        # large_image: ``mag or 0.01 / mm_x if mm_x else None`` -- None without mm_x.
        self.magnification = (info.get("magnification") or 0.01 / mm_x) if mm_x else None

    def _frame_axes(self, base: TiffDirectory) -> None:
        """Axes and channel names of the frames (OmeTiffSource reads them from OME-XML)."""
        self._described_frames()

    def _described_frames(self) -> None:
        """Per-frame axes from JSON ImageDescriptions (``{"frame": {...}, "channels":
        [...]}``, as large_image writes multi-frame TIFFs), or PerkinElmer QPTIFF
        biomarkers as channels -- large_image's TIFF source's two sources of axes."""
        if self.frame_count <= 1:
            return
        infos: list[dict[str, Any]] = []
        channels: list[str] | None = None
        found = False
        for number, frame in enumerate(self._frames):
            record = _json_description(frame[-1])
            info = record.get("frame") if record is not None else None
            infos.append(dict(info) if isinstance(info, dict) else {})
            found = found or isinstance(info, dict)
            if number == 0 and record is not None and isinstance(record.get("channels"), list):
                channels = [str(name) for name in record["channels"]]
        if not infos[0].get("IndexC"):
            biomarkers = [_biomarker(frame[-1]) for frame in self._frames]
            if all(biomarkers):
                channels = [str(name) for name in biomarkers]
                for number, info in enumerate(infos):
                    info["IndexC"] = number
                found = True
        if found or channels:
            self.frame_info = infos
            self.channel_names = channels

    def _find_associated(self, directories: list[TiffDirectory]) -> dict[str, TiffDirectory]:
        used = {d.index for frame in self._frames for d in frame if d is not None}
        uses_subifds = any(
            d is not None and d.subifd is not None for frame in self._frames for d in frame
        )
        return find_associated(directories, used, uses_subifds)

    # -- associated images ------------------------------------------------------------------
    def associated_names(self) -> list[str]:
        return sorted(self._associated)

    def associated_image(self, name: str) -> np.ndarray:
        directory = self._associated.get(name)
        if directory is None:
            return super().associated_image(name)
        try:
            return read_associated(self.file, directory)
        except pyvips.Error as exc:
            self.file.raise_read_error()
            log.warning("cannot read associated image %s of %s: %s", name, self.path, exc)
            raise UnsupportedImage(f"the associated image {name!r} cannot be read") from None

    # -- the reader interface -------------------------------------------------------------
    def native_level_size(self, z: int, frame: int = 0) -> tuple[int, int] | None:
        directory = self._directory(z, frame)
        if directory is None:
            return None
        return directory.width, directory.height

    def _directory(self, z: int, frame: int) -> TiffDirectory | None:
        if not 0 <= frame < len(self._frames) or not 0 <= z < self.levels:
            return None
        return self._frames[frame][z]

    def read_tile(self, z: int, x: int, y: int, frame: int = 0) -> RawTile:
        directory = self._directory(z, frame)
        if directory is None:
            raise ValueError(f"level {z} of frame {frame} is not stored in the file")
        tw, th = self.tile_width, self.tile_height
        if x * tw >= directory.width or y * th >= directory.height:
            # large_image's range rule can name a tile one past a floor-halved level.
            return RawTile.from_pixels(self.empty_tile())
        try:
            if directory.is_tiled:
                return self._read_tiled(directory, x, y, whole=self._rounded_down(directory, z))
            return RawTile.from_pixels(self.pad_tile(self._read_region(directory, x, y)))
        except (TiffFormatError, codecs.CodecError, pyvips.Error) as exc:
            self.file.raise_read_error()
            log.warning("corrupt tile z=%d x=%d y=%d in %s: %s", z, x, y, self.path, exc)
            raise UnsupportedImage(
                f"tile z={z} x={x} y={y} cannot be read: the file is corrupt"
            ) from None

    def _rounded_down(self, directory: TiffDirectory, z: int) -> bool:
        """Whether level ``z`` is stored smaller than the grid's halving rounded up (a
        scanner's 37 x 31 where the grid counts 38 x 32): the grid's sliver past the
        stored content is the file's tile padding, which large_image serves as stored."""
        width, height = self.grid.level_size(z)
        return directory.width < width or directory.height < height

    def _read_tiled(self, directory: TiffDirectory, x: int, y: int, *, whole: bool) -> RawTile:
        """Tile (x, y) of ``directory``; ``whole``: with the padding the file stores past
        the level's content (as decoded) where this server decodes the tile itself."""
        across = (directory.width + self.tile_width - 1) // self.tile_width
        index = x + y * across
        offsets, counts = directory.tile_offsets, directory.tile_byte_counts
        if index >= len(offsets) or index >= len(counts):
            raise TiffFormatError("the tile index is beyond the tile offsets")
        offset, count = int(offsets[index]), int(counts[index])
        if count == 0:
            return RawTile.from_pixels(self.empty_tile())  # a sparse file's absent tile
        if offset + count > self._tiff.size:
            # libvips decodes a tile cut off by a truncated file as black instead of failing.
            raise TiffFormatError(f"tile x={x} y={y} runs past the end of the file")
        raw_size = self.tile_width * self.tile_height * self.band_count * self.dtype.itemsize
        if count > MAX_TILE_EXPANSION * raw_size + MAX_TILE_OVERHEAD:
            raise UnsupportedImage(
                f"tile x={x} y={y} claims {count} bytes, more than any encoding of its "
                f"{raw_size} bytes of pixels: the file is corrupt or hostile"
            )
        compression = directory.compression
        codec = codecheaders.TIFF_CODECS.get(compression)
        if compression == tiffdir.COMPRESSION_JPEG and _jpeg_passes_through(directory):
            jpeg = _standalone_jpeg(directory, self._tiff.read(offset, count))
            # What a viewer would be handed as is, and what a decoder would size its
            # output from: the tile size or nothing.
            codecheaders.check_tile(
                codecheaders.JPEG, jpeg, self.tile_width, self.tile_height, f"tile x={x} y={y}"
            )
            return RawTile.from_jpeg(jpeg)
        if codec is not None:
            # The stream's own header sizes the decoder's output: checked before libvips
            # (or any decoder) allocates anything from it.
            data = self._tiff.read(offset, count)
            codecheaders.check_tile(
                codec, data, self.tile_width, self.tile_height, f"tile x={x} y={y}"
            )
            if codec == codecheaders.JPEG2000:
                return RawTile.from_pixels(self._jpeg2000_tile(directory, data, x, y, whole))
            if not _vips_decodes(codec):
                raise UnsupportedImage(
                    f"tiles compressed as {codec} (TIFF compression {compression}) are not "
                    "decoded by this server"
                )
        if compression == tiffdir.COMPRESSION_ZSTD or _decodes_blocks(directory):
            data = self._tiff.read(offset, count)
            pixels = codecs.decode_block(
                data,
                compression=compression,
                predictor=directory.predictor,
                width=self.tile_width,
                height=self.tile_height,
                bands=self.band_count,
                dtype=self._file_dtype(),
            )
            return RawTile.from_pixels(
                pixels if whole else self._zero_outside(pixels, directory, x, y)
            )
        return RawTile.from_pixels(self.pad_tile(self._read_region(directory, x, y)))

    def _jpeg2000_tile(
        self, directory: TiffDirectory, data: bytes, x: int, y: int, whole: bool
    ) -> np.ndarray:
        """A JPEG 2000 tile (Aperio's 33003 / 33005, or 33004 / 34712), decoded here: the
        bundled libvips has no OpenJPEG and its libtiff answers them black."""
        where = f"tile x={x} y={y}"
        pixels = codecs.decode_tiff_jpeg2000(
            data, directory.compression, self.tile_width, self.tile_height, where
        )
        if pixels.shape[2] != self.band_count or pixels.dtype != self.dtype:
            raise UnsupportedImage(
                f"{where}: its JPEG 2000 data holds {pixels.shape[2]} bands of "
                f"{pixels.dtype}, the TIFF {self.band_count} of {self.dtype}"
            )
        return pixels if whole else self._zero_outside(pixels, directory, x, y)

    def _read_region(self, directory: TiffDirectory, x: int, y: int) -> np.ndarray:
        """Tile (x, y) of ``directory`` cropped to its content, decoded by libvips (or,
        for striped ZSTD data, strip by strip here)."""
        x0, y0 = x * self.tile_width, y * self.tile_height
        w = min(self.tile_width, directory.width - x0)
        h = min(self.tile_height, directory.height - y0)
        if not directory.is_tiled and directory.compression == tiffdir.COMPRESSION_ZSTD:
            return self._read_zstd_strips(directory, y0, h)
        if not directory.is_tiled:
            self._check_strip_headers(directory, y0, h)
        image = self._vips_image(directory)
        return to_numpy(image.crop(x0, y0, w, h))

    def _check_strip_headers(self, directory: TiffDirectory, y0: int, h: int) -> None:
        """The strips libvips is about to decode for rows y0 .. y0 + h, when they are
        streams of a codec with its own header: each must declare the strip's size."""
        codec = codecheaders.TIFF_CODECS.get(directory.compression)
        if codec is None:
            return
        rows = directory.rows_per_strip
        offsets, counts = directory.strip_offsets, directory.strip_byte_counts
        raw_size = directory.width * rows * self.band_count * self.dtype.itemsize
        for strip in range(y0 // rows, (y0 + h - 1) // rows + 1):
            if strip >= len(offsets) or strip >= len(counts):
                raise TiffFormatError("the strip index is beyond the strip offsets")
            count = int(counts[strip])
            if count > MAX_TILE_EXPANSION * raw_size + MAX_TILE_OVERHEAD:
                raise UnsupportedImage(
                    f"strip {strip} claims {count} bytes, more than any encoding of its "
                    f"{raw_size} bytes of pixels: the file is corrupt or hostile"
                )
            codecheaders.check_tile(
                codec,
                self._tiff.read(int(offsets[strip]), count),
                directory.width,
                rows,
                f"strip {strip}",
                heights=(min(rows, directory.height - strip * rows),),
            )

    def _read_zstd_strips(self, directory: TiffDirectory, y0: int, h: int) -> np.ndarray:
        rows = directory.rows_per_strip
        offsets, counts = directory.strip_offsets, directory.strip_byte_counts
        parts = []
        for strip in range(y0 // rows, (y0 + h - 1) // rows + 1):
            if strip >= len(offsets) or strip >= len(counts):
                raise TiffFormatError("the strip index is beyond the strip offsets")
            strip_rows = min(rows, directory.height - strip * rows)
            parts.append(
                codecs.decode_block(
                    self._tiff.read(int(offsets[strip]), int(counts[strip])),
                    compression=directory.compression,
                    predictor=directory.predictor,
                    width=directory.width,
                    height=strip_rows,
                    bands=self.band_count,
                    dtype=self._file_dtype(),
                )
            )
        block = np.concatenate(parts, axis=0)
        start = y0 - (y0 // rows) * rows
        return block[start : start + h]

    def _file_dtype(self) -> np.dtype:
        return self.dtype.newbyteorder(self._tiff.byteorder)

    def _zero_outside(
        self, pixels: np.ndarray, directory: TiffDirectory, x: int, y: int
    ) -> np.ndarray:
        w = directory.width - x * self.tile_width
        h = directory.height - y * self.tile_height
        if w >= self.tile_width and h >= self.tile_height:
            return pixels
        pixels = pixels.copy()
        pixels[:, max(0, w) :] = 0
        pixels[max(0, h) :, :] = 0
        return pixels

    def _vips_image(self, directory: TiffDirectory) -> pyvips.Image:
        key = (directory.index, directory.subifd)
        image = self._vips.get(key)
        if image is None:
            options: dict[str, Any] = {"page": directory.index, "access": "random"}
            if directory.subifd is not None:
                options["subifd"] = directory.subifd
            # fail_on="error": a damaged tile raises instead of coming back black.
            image = self.file.load_tiff(fail_on="error", **options)
            if image.width != directory.width or image.height != directory.height:
                raise TiffFormatError("libvips and the directory disagree on the image size")
            self._vips[key] = image
        return image

    @property
    def estimated_bytes(self) -> int:
        arrays = 0
        for frame in self._frames:
            for directory in frame:
                if directory is not None:
                    arrays += directory.tile_offsets.nbytes + directory.tile_byte_counts.nbytes
        # Each libvips image open on a directory keeps a few decoded tiles around.
        per_image = self.tile_width * self.tile_height * self.band_count * self.dtype.itemsize
        return 64 * 1024 + arrays + len(self._vips) * 4 * per_image

    def close(self) -> None:
        self._vips.clear()
        self._tiff.close()
        self.file.close()


def _vips_decodes(codec: str) -> bool:
    """Whether libvips decodes these tiles. Its libtiff hands back black pixels, without
    an error, for PNG tiles (JPEG 2000 tiles, likewise answered black, are decoded by
    ``TiffSource._jpeg2000_tile`` instead)."""
    return codec != codecheaders.PNG


def _decodes_blocks(directory: TiffDirectory) -> bool:
    """Whether this reader inflates the tiles itself (codecs.decode_block) rather than
    through libvips: deflate, LZW or no compression, grey or RGB samples, no predictor or
    integer horizontal differencing. The same pixels, two to five times faster per tile
    (libvips pays a region and a pipeline per tile), and bounded like libvips' buffers."""
    predictor = directory.predictor or 1
    return (
        directory.compression in codecs.BLOCK_COMPRESSIONS
        and directory.photometric in (tiffdir.PHOTOMETRIC_MINISBLACK, tiffdir.PHOTOMETRIC_RGB)
        and (predictor == 1 or (predictor == 2 and (directory.sample_format or 1) in (1, 2)))
    )


def _unsupported_reason(directory: TiffDirectory) -> str | None:
    """large_image's ``_validate`` rules for a directory it reads as image data (plus
    orientation, which this reader does not rotate)."""
    if directory.samples_per_pixel < 1:
        return "the TIFF has no samples per pixel"
    if directory.bits_per_sample not in (8, 16, 32, 64):
        return "only 8, 16, 32 and 64 bits per sample are read as a pyramid"
    if (directory.sample_format or 1) not in SAMPLE_FORMAT_NAMES:
        return "unsupported TIFF sample format"
    if directory.planar_config != 1 and directory.samples_per_pixel > 1:
        return "only contiguous (chunky) samples are read as a pyramid"
    if directory.photometric not in SUPPORTED_PHOTOMETRIC:
        return "only greyscale, RGB and YCbCr TIFFs are read as a pyramid"
    if directory.orientation not in (None, 1):
        return "rotated TIFF orientations are not read as a pyramid"
    return None


def _json_description(directory: TiffDirectory | None) -> dict[str, Any] | None:
    description = directory.image_description if directory is not None else None
    if not description:
        return None
    try:
        record = json.loads(description.decode(errors="ignore"))
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _biomarker(directory: TiffDirectory | None) -> str | None:
    """The ``Biomarker`` of a PerkinElmer QPTIFF page's XML description."""
    description = directory.image_description if directory is not None else None
    if not description or b"PerkinElmer-QPI-ImageDescription" not in description:
        return None
    try:
        root = ElementTree.fromstring(description.decode(errors="ignore"))
    except ElementTree.ParseError:
        return None
    if root.tag != "PerkinElmer-QPI-ImageDescription":
        return None
    marker = root.find("Biomarker")
    return marker.text.strip() if marker is not None and marker.text else None


def _jpeg_passes_through(directory: TiffDirectory) -> bool:
    """large_image hands out the stored bytes for 8-bit unsigned JPEG tiles."""
    return directory.bits_per_sample == 8 and (directory.sample_format or 1) == 1


# What a JPEGTables segment may hold, and the least payload of its tables: a DQT carries
# at least one 64-entry table and its id byte, a DHT 16 counts and its id byte.
_TABLE_MARKERS = {0xDB: 65, 0xC4: 17, 0xDD: 2, 0xFE: 0, **{m: 0 for m in range(0xE0, 0xF0)}}


@functools.lru_cache(maxsize=64)
def _well_formed_tables(tables: bytes) -> bool:
    """Whether ``tables`` (SOI ... EOI) is a chain of well-formed table segments: checked
    once per distinct tables blob, as a file shares one per level."""
    position, end = 2, len(tables) - 2
    while position < end:
        if position + 4 > end or tables[position] != 0xFF:
            return False
        least = _TABLE_MARKERS.get(tables[position + 1])
        length = int.from_bytes(tables[position + 2 : position + 4], "big")
        if least is None or length < 2 + least or position + 2 + length > end:
            return False
        position += 2 + length
    return position == end


def _standalone_jpeg(directory: TiffDirectory, frame: bytes) -> bytes:
    """The tile's own JPEG data made standalone, byte for byte as large_image's
    ``TiledTiffDirectory.getTile`` builds it: SOI, the shared tables, the frame from
    its start-of-frame marker on, EOI."""
    tables = directory.jpeg_tables
    if frame[:2] != SOI or frame[-2:] != EOI:
        raise TiffFormatError("a JPEG tile lacks its start or end marker")
    if not tables:
        return frame  # the tile is already a complete JPEG
    if tables[:2] != SOI or tables[-2:] != EOI:
        raise TiffFormatError("the JPEG tables lack their start or end marker")
    if not _well_formed_tables(tables):
        # Passed through as they are, bogus tables would reach viewers as a broken JPEG.
        raise TiffFormatError("the JPEG tables are malformed")
    if frame[2:4] in (SOF0, SOF2):
        start = 2
    else:
        # libvips repeats quantization tables (and an APP14 marker) in every tile;
        # they are dropped, as large_image does, in favour of the shared tables.
        start = frame.find(SOF0, 2, -2)
        if start == -1:
            start = frame.find(SOF2, 2, -2)
        if start == -1:
            raise TiffFormatError("a JPEG tile has no start-of-frame marker")
    data = bytearray(frame)
    if directory.photometric == tiffdir.PHOTOMETRIC_RGB:
        # Component ids 0, 1, 2 would make a decoder assume YCbCr; large_image renames
        # them R, G, B so the colours survive.
        sof = data.find(SOF0)
        if sof == -1:
            sof = data.find(SOF2)
        sos = data.find(SOS)
        if (
            sof >= start
            and sos >= start
            and data[sof + 2 : sof + 4] == b"\x00\x11"
            and data[sof + 10 : sof + 19 : 3] == b"\x00\x01\x02"
            and data[sos + 5 : sos + 11 : 2] == b"\x00\x01\x02"
        ):
            for i, value in enumerate(b"RGB"):
                data[sof + 10 + i * 3] = value
                data[sos + 5 + i * 2] = value
    return SOI + tables[2:-2] + bytes(data[start:-2]) + EOI


def _description_pixel_info(description: bytes | None) -> dict[str, float]:
    """Magnification / pixel size from an ImageDescription: Aperio's ``AppMag = ``
    and ``MPP = `` fields, or Philips' XML pixel spacing (large_image's parsers)."""
    if not description:
        return {}
    text = description.decode(errors="ignore")
    try:
        if isinstance(json.loads(text), dict):
            return {}
    except ValueError:
        pass
    try:
        xml = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        info: dict[str, float] = {}
        if "AppMag = " in text:
            try:
                info["magnification"] = float(text.split("AppMag = ")[1].split("|")[0].strip())
                mpp = float(text.split("|MPP = ", 1)[1].split("|")[0].strip())
                info["mm_x"] = info["mm_y"] = mpp * 0.001
            except (IndexError, ValueError):
                pass
        return info
    try:
        image = xml.find(".//DataObject[@ObjectType='DPScannedImage']")
        assert image is not None
        spacing_node = image.find(".//*[@Name='DICOM_PIXEL_SPACING']")
        assert spacing_node is not None and spacing_node.text
        spacing = [float(v.strip('"')) for v in spacing_node.text.split()]
        return {"mm_x": spacing[0], "mm_y": spacing[1]}
    except (AssertionError, IndexError, ValueError):
        return {}
