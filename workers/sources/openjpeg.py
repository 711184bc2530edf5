"""Decoding an area of a JPEG 2000 image at a reduced resolution, with the system's
OpenJPEG library (libopenjp2) through ctypes.

imagecodecs decodes JPEG 2000 only whole, at full resolution: right for a TIFF tile, a
gigabyte for one 256 x 256 tile of a 20000 x 20000 ``.jp2``. OpenJPEG itself decodes
any area at any of the codestream's resolution levels, touching only the code-blocks
(and, in a tiled codestream, the tiles) under it; glymur, which large_image's openjpeg
source uses, binds the same calls but opens files by path. Here OpenJPEG reads through
a stream whose callbacks land on ``ImageFile.read``, so a file anywhere (a local path,
a Girder file read by ranges) is decoded the same way, with the same library, and so
the same pixels, as large_image's.

Only the handful of calls a decode needs are bound; the structures they hand back
(``opj_image_t``, ``opj_image_comp_t``) have kept their layout since OpenJPEG 2.1.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from tilecast.workers.sources.files import ImageFile

CODEC_J2K, CODEC_JP2 = 0, 2
STREAM_CHUNK = 256 * 1024  # what OpenJPEG asks of the file at a time
PARAMETERS_BYTES = 64 * 1024  # more than opj_dparameters_t's ~8 KiB, in any version
_EOF = ctypes.c_size_t(-1).value  # a read callback's "end of stream"


class OpenJpegError(RuntimeError):
    """OpenJPEG could not decode the data (its own message)."""


class OpenJpegUnavailable(RuntimeError):
    """libopenjp2 is not installed."""


class _Component(ctypes.Structure):
    _fields_ = [
        ("dx", ctypes.c_uint32),
        ("dy", ctypes.c_uint32),
        ("w", ctypes.c_uint32),
        ("h", ctypes.c_uint32),
        ("x0", ctypes.c_uint32),
        ("y0", ctypes.c_uint32),
        ("prec", ctypes.c_uint32),
        ("bpp", ctypes.c_uint32),  # obsolete, kept for the layout
        ("sgnd", ctypes.c_uint32),
        ("resno_decoded", ctypes.c_uint32),
        ("factor", ctypes.c_uint32),
        ("data", ctypes.POINTER(ctypes.c_int32)),
        ("alpha", ctypes.c_uint16),
    ]


class _Image(ctypes.Structure):
    _fields_ = [
        ("x0", ctypes.c_uint32),
        ("y0", ctypes.c_uint32),
        ("x1", ctypes.c_uint32),
        ("y1", ctypes.c_uint32),
        ("numcomps", ctypes.c_uint32),
        ("color_space", ctypes.c_int),
        ("comps", ctypes.POINTER(_Component)),
        ("icc_profile_buf", ctypes.c_void_p),
        ("icc_profile_len", ctypes.c_uint32),
    ]


_READ = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_SKIP = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
_SEEK = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_int64, ctypes.c_void_p)
_MESSAGE = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p)


@lru_cache(maxsize=1)
def _library() -> ctypes.CDLL | None:
    for name in (ctypes.util.find_library("openjp2"), "libopenjp2.so.7", "libopenjp2.dylib"):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        _declare(lib)
        return lib
    return None


def _declare(lib: ctypes.CDLL) -> None:
    p, b, u32, i32 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_uint32, ctypes.c_int32
    image_p = ctypes.POINTER(_Image)
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "opj_version": (ctypes.c_char_p, []),
        "opj_create_decompress": (p, [ctypes.c_int]),
        "opj_set_default_decoder_parameters": (None, [p]),
        "opj_setup_decoder": (b, [p, p]),
        "opj_set_error_handler": (b, [p, _MESSAGE, p]),
        "opj_set_warning_handler": (b, [p, _MESSAGE, p]),
        "opj_stream_create": (p, [ctypes.c_size_t, b]),
        "opj_stream_set_read_function": (None, [p, _READ]),
        "opj_stream_set_skip_function": (None, [p, _SKIP]),
        "opj_stream_set_seek_function": (None, [p, _SEEK]),
        "opj_stream_set_user_data": (None, [p, p, p]),
        "opj_stream_set_user_data_length": (None, [p, ctypes.c_uint64]),
        "opj_read_header": (b, [p, p, ctypes.POINTER(image_p)]),
        "opj_set_decoded_resolution_factor": (b, [p, u32]),
        "opj_set_decode_area": (b, [p, image_p, i32, i32, i32, i32]),
        "opj_decode": (b, [p, p, image_p]),
        "opj_end_decompress": (b, [p, p]),
        "opj_image_destroy": (None, [image_p]),
        "opj_stream_destroy": (None, [p]),
        "opj_destroy_codec": (None, [p]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes


def available() -> bool:
    return _library() is not None


def version() -> str:
    lib = _library()
    return lib.opj_version().decode() if lib is not None else ""


@dataclass(frozen=True)
class Area:
    """A rectangle of the full-resolution image (right and bottom exclusive), decoded
    at ``reduce`` halvings (0: full resolution)."""

    left: int
    top: int
    right: int
    bottom: int
    reduce: int = 0

    @property
    def size(self) -> tuple[int, int]:
        """Width and height of the decoded area: OpenJPEG's ceil(coordinate / 2^reduce)
        on both edges."""
        scale = 1 << self.reduce
        width = -(-self.right // scale) - -(-self.left // scale)
        height = -(-self.bottom // scale) - -(-self.top // scale)
        return width, height


class _Stream:
    """OpenJPEG's view of an ImageFile: callbacks over a position of its own. An error
    of the file (Girder went away) is kept and raised after OpenJPEG gives up."""

    def __init__(self, file: ImageFile) -> None:
        self.file = file
        self.position = 0
        self.error: BaseException | None = None
        self.callbacks = (_READ(self._read), _SKIP(self._skip), _SEEK(self._seek))

    def _read(self, buffer: int, count: int, _user: int) -> int:
        try:
            wanted = min(count, self.file.size - self.position)
            if wanted <= 0:
                return _EOF
            data = self.file.read(self.position, wanted)
        except BaseException as exc:
            self.error = self.error or exc
            return _EOF
        if not data:
            return _EOF
        ctypes.memmove(buffer, data, len(data))
        self.position += len(data)
        return len(data)

    def _skip(self, count: int, _user: int) -> int:
        target = self.position + count
        if target < 0 or target > self.file.size:
            return -1
        self.position = target
        return count

    def _seek(self, offset: int, _user: int) -> int:
        if not 0 <= offset <= self.file.size:
            return 0
        self.position = offset
        return 1


def decode_area(file: ImageFile, codec: int, area: Area, max_pixels: int) -> np.ndarray:
    """``area`` of the JPEG 2000 image in ``file`` (a jp2 file: CODEC_JP2, or a raw
    codestream: CODEC_J2K) as (height, width, components), uint8 / uint16 (int8 /
    int16 when signed). The area is checked against ``max_pixels`` before OpenJPEG
    allocates it; OpenJpegError when the data does not decode to it."""
    lib = _library()
    if lib is None:
        raise OpenJpegUnavailable("JPEG 2000 files need the OpenJPEG library (libopenjp2)")
    width, height = area.size
    if width <= 0 or height <= 0 or width * height > max_pixels:
        raise OpenJpegError(f"an area of {width}x{height} is not decoded")
    messages: list[str] = []
    on_error = _MESSAGE(lambda text, _user: messages.append(text.decode(errors="replace")))
    ignore = _MESSAGE(lambda _text, _user: None)
    stream = _Stream(file)
    handles = _Handles(lib)
    try:
        handles.codec = lib.opj_create_decompress(codec)
        lib.opj_set_error_handler(handles.codec, on_error, None)
        lib.opj_set_warning_handler(handles.codec, ignore, None)
        parameters = ctypes.create_string_buffer(PARAMETERS_BYTES)
        lib.opj_set_default_decoder_parameters(parameters)
        handles.stream = lib.opj_stream_create(STREAM_CHUNK, 1)
        read, skip, seek = stream.callbacks
        lib.opj_stream_set_read_function(handles.stream, read)
        lib.opj_stream_set_skip_function(handles.stream, skip)
        lib.opj_stream_set_seek_function(handles.stream, seek)
        lib.opj_stream_set_user_data(handles.stream, None, None)
        lib.opj_stream_set_user_data_length(handles.stream, file.size)
        image = ctypes.POINTER(_Image)()
        ok = lib.opj_setup_decoder(handles.codec, parameters) and lib.opj_read_header(
            handles.stream, handles.codec, ctypes.byref(image)
        )
        handles.image = image
        _check(ok, "cannot read the codestream's header", messages, stream)
        if area.reduce:
            ok = lib.opj_set_decoded_resolution_factor(handles.codec, area.reduce)
            _check(ok, f"no resolution {area.reduce} levels down", messages, stream)
        x0, y0 = image.contents.x0, image.contents.y0
        ok = lib.opj_set_decode_area(
            handles.codec,
            image,
            x0 + area.left,
            y0 + area.top,
            x0 + area.right,
            y0 + area.bottom,
        )
        _check(ok, "the area lies outside the image", messages, stream)
        ok = lib.opj_decode(handles.codec, handles.stream, image) and lib.opj_end_decompress(
            handles.codec, handles.stream
        )
        _check(ok, "the data does not decode", messages, stream)
        return _pixels(image.contents, width, height)
    finally:
        handles.release()


class _Handles:
    """What one decode allocated in OpenJPEG, released in reverse order."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.codec: int | None = None
        self.stream: int | None = None
        self.image: Any = None

    def release(self) -> None:
        if self.image:
            self.lib.opj_image_destroy(self.image)
        if self.stream:
            self.lib.opj_stream_destroy(self.stream)
        if self.codec:
            self.lib.opj_destroy_codec(self.codec)


def _check(ok: int, what: str, messages: list[str], stream: _Stream) -> None:
    if stream.error is not None:
        raise stream.error
    if not ok:
        detail = messages[-1].strip() if messages else "no detail"
        raise OpenJpegError(f"{what} ({detail})")


def _pixels(image: _Image, width: int, height: int) -> np.ndarray:
    count = image.numcomps
    if count < 1:
        raise OpenJpegError("the image has no components")
    components = [image.comps[i] for i in range(count)]
    first = components[0]
    for component in components:
        if (component.w, component.h) != (width, height) or not component.data:
            raise OpenJpegError("a component decodes to another size (subsampled?)")
        if (component.prec, component.sgnd) != (first.prec, first.sgnd):
            raise OpenJpegError("components of different precisions")
    if not 1 <= first.prec <= 16:
        raise OpenJpegError(f"{first.prec}-bit samples are not read")
    dtype = np.dtype(("i" if first.sgnd else "u") + ("1" if first.prec <= 8 else "2"))
    out = np.empty((height, width, count), dtype=dtype)
    for band, component in enumerate(components):
        plane = np.ctypeslib.as_array(component.data, shape=(height, width))
        out[:, :, band] = plane
    return out
