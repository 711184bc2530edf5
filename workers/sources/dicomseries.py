"""Reading a DICOM whole-slide series with wsidicom: the opened DICOM reader.

workers/sources/dicom.py recognises a DICOM file (cheaply, without importing wsidicom or
pydicom, which take most of a second to load) and opens it with :class:`DicomSeries`.
What follows about levels, frames, tiles and associated images is :class:`DicomImage`'s,
which a series on a DICOMweb server shares (workers/sources/dicomweb.py); finding and
checking the files is the local series' own.

A DICOM slide is a *series*: one instance (file) per pyramid level, focal-plane set or
optical path, plus label, overview and thumbnail instances, a large level sometimes split
over several files (a concatenation). A source names the series by any one of its files
-- the others are found beside it by their SeriesInstanceUID, reading headers only, among
the folder's first ``MAX_FOLDER_ENTRIES`` entries, below the source roots -- or by its
directory (a directory source holding the instances of one series). A file read from
elsewhere than a local folder (a Girder item) is its series alone. A DICOM file of another
kind (CT, MR, ...) is a 415 naming its SOP class.

What is reported follows large_image's dicom source (``large_image_source_dicom``, which
reads through wsidicom too): size, tile size (the instances' Columns x Rows), levels, and
``mm_x``/``mm_y`` from the base level's pixel spacing with ``magnification = 0.01 / mm_x``;
the associated images it names ``label`` and ``macro`` (the overview), plus ``thumbnail``
when the series stores one. wsidicom's pyramid levels are served as tilecast's native
levels (the others are synthesized); large_image shows one plane (wsidicom's default
focal plane and optical path), where every focal plane and optical path is a frame here
(``IndexZ``, ``IndexC``), so a single-plane series lists no frames, as large_image's.

Tiles are read frame by frame: a JPEG baseline frame that declares the tile size is the
tile, passed through undecoded; a frame at the right or bottom edge is decoded and what
lies past the image is black, as large_image crops and pads it; JPEG 2000 frames are
decoded by workers/sources/codecs.py, uncompressed ones here, anything else by wsidicom's
decoder. A TILED_SPARSE instance's missing tiles are wsidicom's blank (white, black for
MONOCHROME2), as large_image shows them.

Bounds, checked when the series is opened: the image within ``max_decode_pixels``, tiles
of 64 to 4096 pixels a side, every frame's offset and length inside its file and within
what any encoding of a tile could take (a truncated instance is a 422), a tiled-full
instance holding every frame its size needs, a sparse instance's tile index of bounded
size. wsidicom reads frames under a lock per file; frame caches are off (tilecast caches
tiles), and wsidicom's own decoders run under this reader's lock.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.uid import UID
from wsidicom import WsiDicom
from wsidicom.errors import WsiDicomNotFoundError
from wsidicom.file.io.wsidicom_io import WsiDicomIO
from wsidicom.file.wsidicom_file_source import WsiDicomFileSource
from wsidicom.geometry import Point
from wsidicom.group.group import Instances
from wsidicom.instance.dataset import TileType
from wsidicom.instance.image_data import ImageData

from tilecast.common.errors import TilecastError, UnsupportedFormat, UnsupportedImage
from tilecast.common.grid import level_count
from tilecast.common.localpaths import MAX_FOLDER_ENTRIES, folder_files, within_roots
from tilecast.common.settings import Settings
from tilecast.workers.codecheaders import JPEG, check_tile
from tilecast.workers.rawtile import RawTile
from tilecast.workers.sources import codecs
from tilecast.workers.sources.dicom import DICOM_MAGIC, DICOM_MAGIC_OFFSET, DicomReader
from tilecast.workers.sources.files import FileStream, ImageFile, LocalFile

log = logging.getLogger(__name__)

WSI_SOP_CLASS = UID("1.2.840.10008.5.1.4.1.1.77.1.6")  # VL Whole Slide Microscopy Image
JPEG_BASELINE = UID("1.2.840.10008.1.2.4.50")
# Other JPEG processes: the same frame header (checked) before wsidicom decodes them.
JPEG_OTHER = frozenset(
    UID(uid)
    for uid in (
        "1.2.840.10008.1.2.4.51",  # extended (12-bit)
        "1.2.840.10008.1.2.4.57",  # lossless
        "1.2.840.10008.1.2.4.70",  # lossless, first-order prediction
    )
)
JPEG2000 = frozenset(
    UID(uid)
    for uid in (
        "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
        "1.2.840.10008.1.2.4.91",  # JPEG 2000
        "1.2.840.10008.1.2.4.201",  # HTJ2K lossless
        "1.2.840.10008.1.2.4.202",  # HTJ2K lossless RPCL
        "1.2.840.10008.1.2.4.203",  # HTJ2K
    )
)
RLE = UID("1.2.840.10008.1.2.5")  # decoded into the tile size the instance declares
# Tilecast's tiles are the instances' own frames: large_image clamps its tile size to
# 64 .. 4096, so a series with frames outside that is refused rather than misdescribed.
MIN_TILE, MAX_TILE = 64, 4096
# No encoding of a frame's pixels takes more than twice their raw size plus headers
# (the TIFF reader's bound): a longer frame is a corrupt or hostile offset table.
MAX_FRAME_EXPANSION, MAX_FRAME_OVERHEAD = 2, 1024 * 1024
# A TILED_SPARSE instance's tile index holds one integer per tile position and plane.
MAX_SPARSE_INDEX = 1 << 23
MAX_ASSOCIATED_SIZE = 8192  # large_image's _maxAssociatedImageSize
HEADER_TAGS = ("SOPClassUID", "SeriesInstanceUID")
# pydicom parses a header in reads of a few bytes each: a stream's small reads are
# served from blocks of this many bytes (workers/sources/files.py FileStream).
READ_AHEAD = 64 * 1024


@dataclass(frozen=True)
class Layout:
    """How one stored image (a level at one plane, or an associated image) keeps its
    frames: what reading a tile of it needs."""

    tile_width: int
    tile_height: int
    syntax: UID
    photometric: str
    bands: int
    dtype: np.dtype

    @classmethod
    def of(cls, data: ImageData) -> Layout:
        bits = int(data.bits)
        return cls(
            tile_width=int(data.tile_size.width),
            tile_height=int(data.tile_size.height),
            syntax=UID(str(data.transfer_syntax)),
            photometric=str(data.photometric_interpretation),
            bands=int(data.samples_per_pixel),
            dtype=np.dtype(np.uint8 if bits <= 8 else np.uint16),
        )

    @property
    def longest_frame(self) -> int:
        """The most bytes any encoding of one frame's pixels takes."""
        raw = self.tile_width * self.tile_height * self.bands * self.dtype.itemsize
        return MAX_FRAME_EXPANSION * raw + MAX_FRAME_OVERHEAD


class DicomImage(DicomReader):
    """wsidicom's view of a series as tilecast's reader: levels, frames, tiles and
    associated images. What a series read from files (:class:`DicomSeries`) and one read
    from a DICOMweb server (workers/sources/dicomweb.py) share; each opens its
    ``WsiDicom`` and hands it to :meth:`_start`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()  # around wsidicom's own decoders
        self._closed = False
        self._wsi: WsiDicom | None = None
        self._sparse_index = 0  # entries of the sparse tile indices held
        self._instance_count = 0

    def _start(self, wsi: WsiDicom, settings: Settings) -> None:
        """Read the series' geometry from ``wsi`` (owned from here on) and check every
        instance this reader may read."""
        self._wsi = wsi
        self._init_geometry(settings)
        self._check_frames()

    # -- opening ----------------------------------------------------------------------
    def _init_geometry(self, settings: Settings) -> None:
        assert self._wsi is not None
        try:
            pyramid = self._wsi.pyramids[0]
            base = pyramid.base_level
            layout = Layout.of(base.default_instance.image_data)
            # Before anything asks an instance for its planes, which builds a sparse
            # instance's tile index: one integer per tile position and plane.
            self._sparse_index = sum(_sparse_entries(i) for i in _reachable_instances(self._wsi))
        except Exception as exc:
            raise _unreadable("the series has no usable pyramid", exc) from None
        self.size_x, self.size_y = int(base.size.width), int(base.size.height)
        self.tile_width, self.tile_height = layout.tile_width, layout.tile_height
        if self.size_x <= 0 or self.size_y <= 0:
            raise UnsupportedImage("the image has no pixels")
        if not (
            MIN_TILE <= self.tile_width <= MAX_TILE and MIN_TILE <= self.tile_height <= MAX_TILE
        ):
            raise UnsupportedImage(
                f"frames of {self.tile_width}x{self.tile_height} pixels: this server "
                f"reads frames of {MIN_TILE} to {MAX_TILE} pixels a side"
            )
        if self.size_x * self.size_y > settings.max_decode_pixels:
            raise UnsupportedImage("the image has more pixels than this server decodes")
        if self._sparse_index > MAX_SPARSE_INDEX:
            raise UnsupportedImage("the sparse tile index of the series is too large to hold")
        if layout.bands not in (1, 3):
            raise UnsupportedImage(f"{layout.bands} samples per pixel are not read")
        self.levels = level_count(self.size_x, self.size_y, self.tile_width, self.tile_height)
        self.dtype = layout.dtype
        self.band_count = layout.bands
        # What lies past the image in a synthesized level's edge: large_image pads
        # wsidicom's cropped regions with black.
        self.black_padding = True
        self._init_pixel_size(base)
        self._init_frames(base)
        self._layouts: dict[int, Layout] = {}  # id(image data) -> its layout
        self._stored = self._find_levels(pyramid, layout)
        self._associated = self._find_associated()

    def _init_pixel_size(self, base: Instances) -> None:
        spacing = base.pixel_spacing
        mm_x = float(spacing.width) if spacing is not None and spacing.width else None
        mm_y = float(spacing.height) if spacing is not None and spacing.height else None
        self.mm_x, self.mm_y = mm_x, mm_y
        self.magnification = 0.01 / mm_x if mm_x else None

    def _init_frames(self, base: Instances) -> None:
        """Frames: every optical path (``IndexC``) times every focal plane (``IndexZ``) of
        the base level, focal planes innermost, as DICOM orders a tiled-full instance."""
        first = declared_paths(base.default_instance)
        self._paths = first + sorted(set(base.optical_paths) - set(first))
        self._focal_planes = sorted(base.focal_planes)
        self.frame_count = len(self._paths) * len(self._focal_planes)
        if self.frame_count > 1:
            self.frame_info = [
                {
                    **({"IndexC": c} if len(self._paths) > 1 else {}),
                    **({"IndexZ": z} if len(self._focal_planes) > 1 else {}),
                }
                for c in range(len(self._paths))
                for z in range(len(self._focal_planes))
            ]
            if len(self._paths) > 1:
                self.channel_names = list(self._paths)

    def _find_levels(self, pyramid: Any, base: Layout) -> dict[int, Instances]:
        """tilecast level -> wsidicom level, for the stored levels laid out as the base
        level whose size is the full size halved as often as their scale says (rounded
        either way)."""
        stored: dict[int, Instances] = {}
        for level in pyramid.levels:
            scale = int(level.level)
            z = self.levels - 1 - scale
            width, height = int(level.size.width), int(level.size.height)
            if z < 0 or scale < 0:
                continue
            if (
                abs(width * (1 << scale) - self.size_x) >= 2 << scale
                or abs(height * (1 << scale) - self.size_y) >= 2 << scale
            ):
                log.info("DICOM level %dx%d of %s is no halving: skipped", width, height, self.path)
                continue
            layouts = {Layout.of(data) for data in level.image_data_map.values()}
            if any(
                (lay.tile_width, lay.tile_height, lay.bands, lay.dtype)
                != (base.tile_width, base.tile_height, base.bands, base.dtype)
                for lay in layouts
            ):
                log.info(
                    "DICOM level %dx%d of %s is laid out otherwise: skipped",
                    width,
                    height,
                    self.path,
                )
                continue
            self._remember_layouts(level)
            stored[z] = level
        return stored

    def _find_associated(self) -> dict[str, Instances]:
        assert self._wsi is not None
        found: dict[str, Instances] = {}
        for name, series in (
            ("label", self._wsi.labels),
            ("macro", self._wsi.overviews),
            ("thumbnail", self._wsi.pyramids[0].thumbnails),
        ):
            if series is None or len(series) == 0:
                continue
            group = series[0]
            if max(group.size.width, group.size.height) > MAX_ASSOCIATED_SIZE:
                continue
            layout = self._remember_layouts(group)
            if layout.bands not in (1, 3) or not _bounded_tile(layout):
                continue
            found[name] = group
        return found

    def _remember_layouts(self, group: Instances) -> Layout:
        """Record the layout of each of ``group``'s images; the default one's."""
        for data in group.image_data_map.values():
            self._layouts[id(data)] = Layout.of(data)
        return self._layouts[id(group.default_instance.image_data)]

    def _check_frames(self) -> None:
        """Every tiled-full instance read here holding the frames its size needs,
        sparse indices bounded, and what :meth:`_check_instance` checks of each. Checked
        once, here, so that a truncated or hostile instance is refused when it is opened
        and nothing read later is sized by a header's claim."""
        try:
            for group in self._groups():
                for instance in group.instances.values():
                    self._check_instance(instance)
                    _check_tile_index(instance)
                    self._instance_count += 1
        except TilecastError:
            raise
        except Exception as exc:
            raise _unreadable("the pixel data of an instance cannot be read", exc) from None

    def _check_instance(self, instance: Any) -> None:
        """What else an instance's source must check of it when it is opened."""

    def _groups(self) -> Iterator[Instances]:
        yield from self._stored.values()
        yield from self._associated.values()

    # -- the reader interface ------------------------------------------------------------
    def _plane(self, frame: int) -> tuple[str, float]:
        """The (optical path, focal plane) of ``frame``."""
        per_path = len(self._focal_planes)
        return self._paths[frame // per_path], self._focal_planes[frame % per_path]

    def _image_data(self, z: int, frame: int) -> ImageData | None:
        level = self._stored.get(z)
        if level is None or not 0 <= frame < self.frame_count:
            return None
        return level.image_data_map.get(self._plane(frame))

    def native_level_size(self, z: int, frame: int = 0) -> tuple[int, int] | None:
        data = self._image_data(z, frame)
        if data is None:
            return None
        return int(data.image_size.width), int(data.image_size.height)

    def read_tile(self, z: int, x: int, y: int, frame: int = 0) -> RawTile:
        data = self._image_data(z, frame)
        if data is None:
            raise ValueError(f"level {z} of frame {frame} is not stored in the series")
        path, focal_plane = self._plane(frame)
        tile = self._read_frame(
            data, x, y, focal_plane, path, f"tile z={z} x={x} y={y}", pass_jpeg=True
        )
        return tile if isinstance(tile, RawTile) else RawTile.from_pixels(tile)

    def _read_frame(
        self,
        data: ImageData,
        x: int,
        y: int,
        focal_plane: float,
        path: str,
        where: str,
        *,
        pass_jpeg: bool,
    ) -> RawTile | np.ndarray:
        """Tile (x, y) of one stored image: the frame's own JPEG when it may pass through
        (``pass_jpeg``, a whole tile inside the image), else a full tile of pixels with
        black past the image."""
        layout = self._layouts[id(data)]
        tw, th = layout.tile_width, layout.tile_height
        content_w = min(tw, int(data.image_size.width) - x * tw)
        content_h = min(th, int(data.image_size.height) - y * th)
        if content_w <= 0 or content_h <= 0:
            # large_image's range rule can name a tile one past a floor-halved level.
            return np.zeros((th, tw, layout.bands), dtype=layout.dtype)
        point = Point(x, y)
        try:
            if data.is_sparse(point, focal_plane, path):
                return self._blank(data, layout, content_w, content_h)
            frame = data.get_encoded_tile(point, focal_plane, path)
        except TilecastError:
            raise
        except Exception as exc:
            log.warning("DICOM %s of %s cannot be read: %r", where, self.path, exc)
            raise UnsupportedImage(f"{where} cannot be read: the file is corrupt") from None
        if len(frame) > layout.longest_frame:
            # Files are checked when opened; a server's frames only as they come.
            raise UnsupportedImage(
                f"{where} is {len(frame)} bytes, more than any encoding of its pixels takes"
            )
        if layout.syntax == JPEG_BASELINE:
            check_tile(JPEG, frame, tw, th, where)
            jpeg = RawTile.from_jpeg(frame)
            if pass_jpeg and content_w == tw and content_h == th:
                return jpeg
            pixels = jpeg.array()
        elif layout.syntax in JPEG2000:
            pixels = codecs.decode_jpeg2000(frame, tw, th, where)
        elif not layout.syntax.is_encapsulated and layout.photometric in ("RGB", "MONOCHROME2"):
            pixels = _native_pixels(frame, layout, where)
        else:
            pixels = self._wsidicom_decode(data, layout, frame, where)
        return _cropped(pixels, layout, content_w, content_h, where)

    def _wsidicom_decode(
        self, data: ImageData, layout: Layout, frame: bytes, where: str
    ) -> np.ndarray:
        """Transfer syntaxes decoded by wsidicom: the JPEG processes after their frame
        header is checked, RLE and uncompressed data, whose decoders size their output
        from the instance's tile size. JPEG-LS and JPEG XL streams declare sizes of
        their own, which nothing here checks: refused."""
        if layout.syntax in JPEG_OTHER:
            check_tile(JPEG, frame, layout.tile_width, layout.tile_height, where)
        elif layout.syntax != RLE and layout.syntax.is_encapsulated:
            raise UnsupportedImage(f"frames in {layout.syntax.name} are not decoded by this server")
        try:
            with self._lock:  # pydicom-based decoders keep state between frames
                image = data.decoder.decode(frame)
            return np.asarray(image)
        except Exception as exc:
            log.warning("DICOM %s of %s does not decode: %r", where, self.path, exc)
            raise UnsupportedImage(f"{where} does not decode") from None

    def _blank(self, data: ImageData, layout: Layout, width: int, height: int) -> np.ndarray:
        """A sparse instance's missing tile: wsidicom's background colour over the image,
        black past it."""
        color = np.asarray(data.blank_color, dtype=layout.dtype).reshape(-1)[: layout.bands]
        tile = np.zeros((layout.tile_height, layout.tile_width, layout.bands), layout.dtype)
        tile[:height, :width] = color
        return tile

    # -- associated images ----------------------------------------------------------------
    def associated_names(self) -> list[str]:
        return sorted(self._associated)

    def associated_image(self, name: str) -> np.ndarray:
        group = self._associated.get(name)
        if group is None:
            return super().associated_image(name)
        instance = group.default_instance
        data = instance.image_data
        layout = self._layouts[id(data)]
        tw, th = layout.tile_width, layout.tile_height
        width, height = int(group.size.width), int(group.size.height)
        image = np.zeros((height, width, layout.bands), dtype=layout.dtype)
        for y in range(-(-height // th)):
            for x in range(-(-width // tw)):
                tile = self._read_frame(
                    data,
                    x,
                    y,
                    instance.default_z,
                    instance.default_path,
                    f"{name} tile x={x} y={y}",
                    pass_jpeg=False,
                )
                assert isinstance(tile, np.ndarray)
                h, w = min(th, height - y * th), min(tw, width - x * tw)
                image[y * th : y * th + h, x * tw : x * tw + w] = tile[:h, :w]
        return image

    # -- resources ----------------------------------------------------------------------------
    @property
    def estimated_bytes(self) -> int:
        # Each instance's parsed header (pydicom), plus the sparse tile indices.
        return 256 * 1024 * max(1, self._instance_count) + 8 * self._sparse_index

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._release()

    def _release(self) -> None:
        if self._wsi is not None:
            try:
                self._wsi.close()
            except Exception:
                log.exception("closing the DICOM series of %s failed", self.path)
            self._wsi = None
        self._release_source()

    def _release_source(self) -> None:
        """Release what the series was read from."""


class DicomSeries(DicomImage):
    """A DICOM series read from files, opened."""

    def __init__(self, file: ImageFile, settings: Settings) -> None:
        """Reads the series of ``file`` -- a file of it, or a directory holding it --,
        which the source closes when it is closed (and its opener closes when this
        raises); the series' other files are opened and closed here."""
        super().__init__(file.name)
        self.file = file
        self._files: list[ImageFile] = []  # the files read (``file`` unless a directory)
        try:
            self._files = series_files(file, settings)
            wsi, self._source = _open_series(self._files)
            self._sizes = {_token(index): f.size for index, f in enumerate(self._files)}
            self._start(wsi, settings)
        except BaseException:
            self._release()
            raise

    def _check_instance(self, instance: Any) -> None:
        """Every frame of the instance's files inside its file and of a bounded length."""
        data = instance.image_data
        used = {str(path) for path in data.files}
        for reader in (r for r in self._source.readers if str(r.filepath) in used):
            _check_reader(reader, self._sizes, self._layouts[id(data)].longest_frame)

    def _release_source(self) -> None:
        for file in self._files:
            if file is not self.file:
                file.close()
        self._files = []
        self.file.close()


def _native_pixels(frame: bytes, layout: Layout, where: str) -> np.ndarray:
    """An uncompressed frame (little-endian samples, interleaved) as pixels."""
    count = layout.tile_width * layout.tile_height * layout.bands
    wanted = count * layout.dtype.itemsize
    if len(frame) < wanted:
        raise UnsupportedImage(f"{where} holds fewer bytes than its pixels")
    pixels = np.frombuffer(frame[:wanted], dtype=layout.dtype.newbyteorder("<"))
    shape = (layout.tile_height, layout.tile_width, layout.bands)
    return pixels.reshape(shape).astype(layout.dtype, copy=False)


def _cropped(pixels: np.ndarray, layout: Layout, width: int, height: int, where: str) -> np.ndarray:
    """A decoded frame as a full tile: its content (width x height) kept, black past it,
    as large_image crops wsidicom's regions at the image and pads them."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if pixels.shape != (layout.tile_height, layout.tile_width, layout.bands):
        raise UnsupportedImage(f"{where} decodes to another size or band count")
    pixels = pixels.astype(layout.dtype, copy=False)
    if width == layout.tile_width and height == layout.tile_height:
        return pixels
    tile = np.zeros_like(pixels)
    tile[:height, :width] = pixels[:height, :width]
    return tile


def _bounded_tile(layout: Layout) -> bool:
    return 0 < layout.tile_width * layout.tile_height <= MAX_TILE * MAX_TILE


def _check_reader(reader: Any, sizes: dict[str, int], longest: int) -> None:
    """One file's frames: listed in full, inside the file, of a bounded length."""
    size = sizes.get(str(reader.filepath))
    if size is None:
        raise UnsupportedImage("an instance of the series has no file")
    index = reader.frame_index
    if len(index) < reader.frame_count:
        raise UnsupportedImage(
            f"an instance lists {len(index)} frames of its {reader.frame_count}: it is corrupt"
        )
    for position, length in index:
        if position < 0 or position + length > size:
            raise UnsupportedImage(
                "an instance is cut short: its frames run past the end of its file"
            )
        if length > longest:
            raise UnsupportedImage(
                f"a frame claims {length} bytes, more than any encoding of its "
                "pixels takes: the file is corrupt or hostile"
            )


# -- finding the series ------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    sop_class: UID
    series: str


def read_header(file: ImageFile) -> Header:
    """The SOP class and series of a DICOM file, from its header alone; UnsupportedImage
    when the header does not parse."""
    try:
        dataset = pydicom.dcmread(
            FileStream(file, read_ahead=READ_AHEAD),
            stop_before_pixels=True,
            specific_tags=list(HEADER_TAGS),
        )
        sop_class = dataset.file_meta.get("MediaStorageSOPClassUID") or dataset.SOPClassUID
        series = str(dataset.SeriesInstanceUID)
    except TilecastError:
        raise
    except Exception as exc:
        raise _unreadable("the file's header cannot be read", exc) from None
    return Header(UID(str(sop_class)), series)


def series_files(file: ImageFile, settings: Settings) -> list[ImageFile]:
    """The files of the series ``file`` names, opened (all but ``file`` closed by the
    caller): ``file`` and the other instances of its series in its folder, or the
    instances of the one series a directory source holds."""
    if file.is_directory:
        return _open_files(_directory_series(file, settings), file)
    header = read_header(file)
    if header.sop_class != WSI_SOP_CLASS:
        raise UnsupportedFormat(
            f"unsupported format: the file is a DICOM {_sop_class_name(header.sop_class)} "
            "object, not a VL Whole Slide Microscopy Image: only whole-slide images are read"
        )
    if file.local_path is None:
        return [file]  # a file from elsewhere (a Girder item) is its series alone
    own = os.path.realpath(file.local_path)
    siblings = [
        path
        for path, sibling in _folder_instances(os.path.dirname(own), settings, skip=own)
        if sibling.series == header.series
    ]
    return [file, *_open_files(siblings, file)]


def _directory_series(directory: ImageFile, settings: Settings) -> list[str]:
    """The paths of the instances of the one series a directory source holds."""
    assert directory.local_path is not None
    if folder_files(directory.local_path) is None:
        raise UnsupportedImage(
            f"the directory holds more than {MAX_FOLDER_ENTRIES} entries: too many to look "
            "through for a series"
        )
    found = list(_folder_instances(directory.local_path, settings))
    if not found:
        raise UnsupportedFormat(
            "unsupported format: a directory whose DICOM files hold no VL Whole Slide "
            "Microscopy Image instance"
        )
    series = {header.series for _path, header in found}
    if len(series) > 1:
        raise UnsupportedImage(
            f"the directory holds instances of {len(series)} series: register one of its "
            "files to read that file's series"
        )
    return [path for path, _header in found]


def _open_files(paths: list[str], near: ImageFile) -> list[ImageFile]:
    opened: list[ImageFile] = []
    try:
        for path in paths:
            try:
                opened.append(LocalFile(path))
            except OSError as exc:
                log.warning("DICOM: an instance of %s's series does not open: %s", near.name, exc)
    except BaseException:
        for file in opened:
            file.close()
        raise
    return opened


def _folder_instances(
    folder: str, settings: Settings, skip: str | None = None
) -> Iterator[tuple[str, Header]]:
    """(real path, header) of each whole-slide instance among the folder's first
    ``MAX_FOLDER_ENTRIES`` entries that lies below the source roots (but ``skip``), by
    name."""
    names = folder_files(folder)
    if names is None:
        log.warning(
            "DICOM: %s holds more than %d entries: no instances are looked for in it",
            folder,
            MAX_FOLDER_ENTRIES,
        )
        return
    for name in names:
        real = os.path.realpath(name)
        if real == skip or (
            settings.source_roots and not within_roots(real, settings.source_roots)
        ):
            continue
        header = _instance_header(real)
        if header is not None and header.sop_class == WSI_SOP_CLASS:
            yield real, header


def _instance_header(path: str) -> Header | None:
    """The header of the DICOM file at ``path``; None for anything else."""
    try:
        file = LocalFile(path)
    except OSError:
        return None
    try:
        if file.read(DICOM_MAGIC_OFFSET, len(DICOM_MAGIC)) != DICOM_MAGIC:
            return None
        return read_header(file)
    except (UnsupportedImage, OSError) as exc:
        log.info("DICOM: %s is not read as an instance: %s", path, exc)
        return None
    finally:
        file.close()


def _open_series(files: list[ImageFile]) -> tuple[WsiDicom, WsiDicomFileSource]:
    """wsidicom's view of the series, and the source it reads: one stream per file,
    frame caches off."""
    try:
        streams = [
            WsiDicomIO(FileStream(file, read_ahead=READ_AHEAD), filepath=_token(index))
            for index, file in enumerate(files)
        ]
        source = WsiDicomFileSource(streams)
        wsi = WsiDicom(source, source_owned=True)
    except TilecastError:
        raise
    except WsiDicomNotFoundError:
        raise UnsupportedImage(
            "the series has no pyramid level (VOLUME instance) this server reads"
        ) from None
    except Exception as exc:
        raise _unreadable("the series cannot be read", exc) from None
    wsi.resize_cache(0)  # tilecast caches tiles itself: no frame is held twice
    return wsi, source


def _token(index: int) -> str:
    """The name a file of the series goes by inside wsidicom (never a path)."""
    return f"dicom-instance-{index}"


def _check_tile_index(instance: Any) -> None:
    """A tiled-full instance holds every frame its size, focal planes and optical paths
    need; a sparse one's index (bounded before) is built here, before any thread reads."""
    data = instance.image_data
    tiled = data.tiled_size
    if _is_sparse(instance):
        data.tiles.planes  # noqa: B018  (built now: cached, then read by many threads)
        return
    _keep_declared_path_order(instance)
    planes = len(data.focal_planes) * len(data.optical_paths)
    frames = sum(int(dataset.frame_count) for dataset in instance.datasets)
    if tiled.width * tiled.height * planes > frames:
        raise UnsupportedImage(
            f"an instance holds {frames} frames where its size needs "
            f"{tiled.width * tiled.height * planes}: it is corrupt"
        )


def declared_paths(instance: Any) -> list[str]:
    """An instance's optical path identifiers in the order its OpticalPathSequence lists
    them: the order of a tiled-full instance's frames."""
    order: list[str] = []
    for dataset in instance.datasets:
        for item in dataset.get("OpticalPathSequence") or []:
            identifier = str(item.get("OpticalPathIdentifier", "0"))
            if identifier not in order:
                order.append(identifier)
    known = list(instance.optical_paths)
    if set(order) != set(known):
        return sorted(known)
    return order


def _keep_declared_path_order(instance: Any) -> None:
    """wsidicom 0.31 lists a tiled-full instance's optical paths from a set, whose order
    changes with each process's string hashing, and locates a path's frames by its place
    in that list: two workers would serve one path's tiles from another's frames. The
    list is put back in the instance's declared order before any frame is read (later
    wsidicom keeps that order: nothing to do there)."""
    tiles = instance.image_data.tiles
    order = declared_paths(instance)
    if hasattr(tiles, "_optical_paths") and list(tiles.optical_paths) != order:
        tiles._optical_paths = order


def _reachable_instances(wsi: WsiDicom) -> Iterator[Any]:
    """The instances this reader may read: the first pyramid's levels and thumbnails,
    the labels and overviews."""
    pyramid = wsi.pyramids[0]
    groups = list(pyramid.levels)
    for series in (pyramid.thumbnails, wsi.labels, wsi.overviews):
        if series is not None:
            groups += series.groups
    for group in groups:
        yield from group.instances.values()


def _is_sparse(instance: Any) -> bool:
    return instance.datasets[0].tile_type != TileType.FULL


def _sparse_entries(instance: Any) -> int:
    """How many positions a sparse instance's tile index will hold -- tiles of one plane
    times its distinct (focal plane, optical path) pairs, counted from its frames'
    positions as wsidicom reads them -- without building it (0 for a tiled-full one)."""
    if not _is_sparse(instance):
        return 0
    tiled = instance.image_data.tiled_size
    area = max(1, int(tiled.width) * int(tiled.height))
    planes: set[tuple[Any, str]] = set()
    for dataset in instance.datasets:
        for frame in dataset.frame_sequence:
            position = frame.get("PlanePositionSlideSequence")
            z = position[0].get("ZOffsetInSlideCoordinateSystem") if position else None
            planes.add((z, dataset.read_optical_path_identifier(frame)))
            if area * len(planes) > MAX_SPARSE_INDEX:
                return area * len(planes)  # enough to refuse it
    return area * max(1, len(planes))


def _sop_class_name(uid: UID) -> str:
    name = uid.name
    return name if name and name != str(uid) else f"SOP class {uid}"


def _unreadable(what: str, exc: BaseException) -> UnsupportedImage:
    """A 422 for a series wsidicom or pydicom could not read; the library's own words
    are logged, not sent (they may name files)."""
    log.info("DICOM: %s: %r", what, exc)
    return UnsupportedImage(f"{what} ({type(exc).__name__})")
