"""Bounded zarr stores: what the OME-Zarr reader (workers/sources/omezarr.py) hands the
``zarr`` library, so that a hostile store cannot make a worker read or decode more than
its arrays declare.

Two places: a local directory (:class:`DirectoryStore`, zarr's ``LocalStore`` confined to
the registered directory: no ``..``, no symlink out of it, regular files only) and a
``.zip`` file (:class:`ZipFileStore`, zarr's ``ZipStore`` over an ``ImageFile``, so the
zip may live anywhere tilecast reads files from). Both refuse, before reading it:

- a metadata document (``.zattrs``, ``.zarray``, ``.zgroup``, ``.zmetadata``,
  ``zarr.json``) larger than ``MAX_METADATA_BYTES``;
- a chunk of an array the reader has not registered (:meth:`ChunkLimits.register`), or one
  whose stored bytes exceed what any encoding of its pixels takes;

and, after reading it and before zarr decodes it, a compressed chunk whose stream declares
(or, for zlib/gzip/bz2/lzma, decodes to) more bytes than its chunk holds -- a
decompression bomb. Each is an ``UnsupportedImage`` (422) naming the array.

:func:`zip_zarr_root` recognises a zipped store by a bounded look at its central
directory.
"""

from __future__ import annotations

import asyncio
import bz2
import lzma
import math
import os
import stat
import struct
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import imagecodecs
import numpy as np
from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.storage import LocalStore, ZipStore

from tilecast.common.errors import UnsupportedImage
from tilecast.workers.sources.files import FileStream, ImageFile

METADATA_NAMES = frozenset({".zattrs", ".zarray", ".zgroup", ".zmetadata", "zarr.json"})
# A plate of 1536 wells lists them in well under a megabyte.
MAX_METADATA_BYTES = 16 * 1024 * 1024
# No encoding of a chunk takes more than twice its pixels' bytes plus headers (the TIFF
# reader's bound for a tile).
MAX_EXPANSION, MAX_OVERHEAD = 2, 1024 * 1024
# Compressors whose stream is checked before zarr decodes it (see ``_declared_size``).
COMPRESSORS = frozenset({"blosc", "zstd", "gzip", "zlib", "lz4", "bz2", "lzma"})
# The zip's central directory is looked at in two windows this large (its start and
# its end): metadata documents are written first or last.
ZIP_SCAN_BYTES = 1024 * 1024
# zipfile keeps a few hundred bytes per entry in memory for as long as the store is open.
MAX_ZIP_ENTRIES = 1 << 20
ZIP_ENTRY_BYTES = 400
EMPTY_SHARD_SLOT = (1 << 64) - 1
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class ShardLayout:
    """A sharded array's shards: inner chunks per shard, where the index is, its size."""

    chunks_per_shard: int
    index_at_end: bool
    index_bytes: int


@dataclass(frozen=True)
class ChunkCodec:
    """How one array's chunks are stored, as far as bounding them needs: the bytes an
    (inner) chunk decodes to, its compressor (None when stored raw), whether a crc32c
    follows the compressed bytes, and the shard layout of a sharded array."""

    decoded_bytes: int
    compressor: str | None = None
    checksum: bool = False
    shard: ShardLayout | None = None

    @property
    def stored_limit(self) -> int:
        """The most bytes one stored object of the array may hold."""
        inner = self.decoded_bytes * MAX_EXPANSION + MAX_OVERHEAD
        if self.shard is None:
            return inner
        return inner * self.shard.chunks_per_shard + self.shard.index_bytes


class ChunkLimits:
    """The arrays a reader opened, by their path in the store, and the checks every
    read of theirs passes (see the module's docstring). Thread-safe."""

    def __init__(self) -> None:
        self._arrays: dict[str, ChunkCodec] = {}
        self._lock = threading.Lock()

    def register(self, path: str, codec: ChunkCodec) -> None:
        with self._lock:
            self._arrays[path.strip("/")] = codec

    def limit(self, key: str, byte_range: ByteRequest | None) -> int:
        """The most bytes a read of ``key`` may return."""
        name = key.rsplit("/", 1)[-1]
        if name in METADATA_NAMES:
            return MAX_METADATA_BYTES
        _, codec = self._array_of(key)
        if codec.shard is not None and byte_range is not None:
            inner = codec.decoded_bytes * MAX_EXPANSION + MAX_OVERHEAD
            return max(inner, codec.shard.index_bytes)
        return codec.stored_limit

    def check(self, key: str, data: bytes, byte_range: ByteRequest | None) -> None:
        """Refuse ``data`` read for ``key`` when its stream declares more bytes than its
        chunk holds (a metadata document passes)."""
        if key.rsplit("/", 1)[-1] in METADATA_NAMES:
            return
        path, codec = self._array_of(key)
        if codec.shard is None:
            _check_chunk(codec, data, path)
        elif byte_range is None:
            _check_shard(codec, codec.shard, data, path)
        elif not _is_index_read(codec.shard, byte_range):
            _check_chunk(codec, data, path)

    def _array_of(self, key: str) -> tuple[str, ChunkCodec]:
        with self._lock:
            path = key
            while "/" in path:
                path = path.rsplit("/", 1)[0]
                codec = self._arrays.get(path)
                if codec is not None:
                    return path, codec
        raise UnsupportedImage("a chunk outside the arrays the image's metadata names")


def _is_index_read(shard: ShardLayout, byte_range: ByteRequest) -> bool:
    if shard.index_at_end:
        return isinstance(byte_range, SuffixByteRequest)
    return (
        isinstance(byte_range, RangeByteRequest)
        and byte_range.start == 0
        and byte_range.end == shard.index_bytes
    )


def _check_shard(codec: ChunkCodec, shard: ShardLayout, data: bytes, path: str) -> None:
    """Every inner chunk of a whole shard, by its index (offset, length pairs)."""
    if len(data) < shard.index_bytes:
        raise UnsupportedImage(f"a shard of array {path!r} is shorter than its index")
    index = data[-shard.index_bytes :] if shard.index_at_end else data[: shard.index_bytes]
    for number in range(shard.chunks_per_shard):
        offset, length = struct.unpack_from("<QQ", index, number * 16)
        if offset == EMPTY_SHARD_SLOT and length == EMPTY_SHARD_SLOT:
            continue
        if offset + length > len(data):
            raise UnsupportedImage(f"a shard of array {path!r} indexes bytes it does not hold")
        _check_chunk(codec, data[offset : offset + length], path)


def _check_chunk(codec: ChunkCodec, data: bytes, path: str) -> None:
    stream = data[:-4] if codec.checksum else data
    if codec.compressor is None:
        return
    size = _declared_size(codec.compressor, stream, codec.decoded_bytes)
    if size is not None and size > codec.decoded_bytes:
        raise UnsupportedImage(
            f"a chunk of array {path!r} decodes to more than the {codec.decoded_bytes} "
            "bytes its metadata declares"
        )


def _declared_size(compressor: str, stream: bytes, expected: int) -> int | None:
    """How many bytes ``stream`` decodes to, at most ``expected + 1`` of them decoded to
    learn it (None when it cannot tell: zarr's decoder reports the damage)."""
    if compressor == "blosc":
        # Blosc's header: version, versionlz, flags, typesize, then nbytes (uint32 LE).
        return struct.unpack_from("<I", stream, 4)[0] if len(stream) >= 16 else None
    if compressor == "lz4":
        # numcodecs' LZ4 prefixes the block with its decoded size (int32 LE).
        return struct.unpack_from("<i", stream, 0)[0] if len(stream) >= 4 else None
    if compressor == "zstd":
        if stream[:4] != ZSTD_MAGIC:
            return None
        declared = _zstd_content_size(stream)
        if declared is not None:
            return declared
        try:
            return len(imagecodecs.zstd_decode(stream, out=bytearray(expected)))
        except imagecodecs.ZstdError as exc:
            return expected + 1 if "too small" in str(exc) else None
    decoder: zlib._Decompress | bz2.BZ2Decompressor | lzma.LZMADecompressor
    if compressor in ("gzip", "zlib"):
        decoder = zlib.decompressobj(47)  # zlib or gzip header, found by zlib
    elif compressor == "bz2":
        decoder = bz2.BZ2Decompressor()
    else:
        decoder = lzma.LZMADecompressor()
    try:
        return len(decoder.decompress(stream, max_length=expected + 1))
    except (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError):
        return None


def _zstd_content_size(stream: bytes) -> int | None:
    """The decoded size a zstd frame's header states, when it states one."""
    if len(stream) < 6 or stream[:4] != ZSTD_MAGIC:
        return None
    descriptor = stream[4]
    size_flag, single_segment, dictionary_flag = (
        descriptor >> 6,
        descriptor >> 5 & 1,
        descriptor & 3,
    )
    position = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dictionary_flag]
    width = (1 if single_segment else 0, 2, 4, 8)[size_flag]
    if width == 0 or len(stream) < position + width:
        return None
    value = int.from_bytes(stream[position : position + width], "little")
    return value + 256 if width == 2 else value


def chunk_codec(array_metadata: object, chunk_shape: tuple[int, ...], itemsize: int) -> ChunkCodec:
    """What bounding the chunks of an array with this (zarr v2 or v3) metadata needs;
    UnsupportedImage for filters and codecs tilecast does not bound."""
    decoded = math.prod(chunk_shape) * itemsize
    if getattr(array_metadata, "zarr_format", None) == 2:
        if getattr(array_metadata, "filters", None):
            raise UnsupportedImage("zarr v2 filters are not read")
        compressor = getattr(array_metadata, "compressor", None)
        name = getattr(compressor, "codec_id", None) if compressor is not None else None
        if name is not None and name not in COMPRESSORS:
            raise UnsupportedImage(f"the zarr compressor {name!r} is not read")
        return ChunkCodec(decoded, name)
    return _v3_codec(tuple(getattr(array_metadata, "codecs", ())), decoded, itemsize)


def _v3_codec(codecs: tuple[object, ...], decoded: int, itemsize: int) -> ChunkCodec:
    from zarr.codecs import (
        BloscCodec,
        BytesCodec,
        Crc32cCodec,
        GzipCodec,
        ShardingCodec,
        TransposeCodec,
        ZstdCodec,
    )

    names = {BloscCodec: "blosc", GzipCodec: "gzip", ZstdCodec: "zstd"}
    compressor: str | None = None
    checksum = False
    shard: ShardLayout | None = None
    for codec in codecs:
        kind = type(codec)
        if kind in (BytesCodec, TransposeCodec):
            continue
        if kind is ShardingCodec and shard is None and compressor is None:
            inner = _v3_codec(tuple(codec.codecs), 1, itemsize)  # type: ignore[attr-defined]
            if inner.shard is not None:
                raise UnsupportedImage("nested zarr shards are not read")
            inner_shape = tuple(codec.chunk_shape)  # type: ignore[attr-defined]
            per_shard = decoded // itemsize // max(1, math.prod(inner_shape))
            index_crc = any(isinstance(c, Crc32cCodec) for c in codec.index_codecs)  # type: ignore[attr-defined]
            shard = ShardLayout(
                chunks_per_shard=max(1, per_shard),
                index_at_end=str(codec.index_location.value) == "end",  # type: ignore[attr-defined]
                index_bytes=16 * max(1, per_shard) + (4 if index_crc else 0),
            )
            compressor, checksum = inner.compressor, inner.checksum
            decoded = math.prod(inner_shape) * itemsize
        elif kind in names and compressor is None and shard is None:
            compressor = names[kind]
        elif kind is Crc32cCodec and shard is None:
            checksum = True
        else:
            name = getattr(codec, "codec_name", None) or kind.__name__
            raise UnsupportedImage(f"the zarr codec {name!r} is not read here")
    return ChunkCodec(decoded, compressor, checksum, shard)


@dataclass(frozen=True)
class PlainChunks:
    """An array whose every chunk is one buffer -- raw, or compressed by one compressor --
    of its pixels in C or F order: read and decoded here, without zarr's selection and
    asynchronous machinery (two to three times faster per chunk). Any other layout
    (sharding, transposes, checksums, filters) is read through zarr."""

    metadata: Any  # zarr's ArrayV2Metadata / ArrayV3Metadata
    dtype: np.dtype  # as stored, byte order included
    order: str  # "C" or "F"
    decode: Callable[[bytes], Any] | None  # None: stored raw

    def key(self, path: str, coords: tuple[int, ...]) -> str:
        return f"{path}/{self.metadata.encode_chunk_key(coords)}"

    def fill(self, shape: tuple[int, ...]) -> np.ndarray:
        """A chunk the store lacks: zarr's fill value."""
        return np.full(shape, self.metadata.fill_value, dtype=self.dtype)

    def pixels(self, data: bytes, shape: tuple[int, ...]) -> np.ndarray:
        """A stored chunk of ``shape``, decoded; ValueError when it does not decode to
        exactly that many pixels."""
        decoded = self.decode(data) if self.decode is not None else data
        buffer = np.frombuffer(memoryview(decoded).cast("B"), dtype=np.uint8)
        expected = math.prod(shape) * self.dtype.itemsize
        if buffer.size != expected:
            raise ValueError(f"it decodes to {buffer.size} bytes, not {expected}")
        return buffer.view(self.dtype).reshape(shape, order=self.order)  # type: ignore[call-overload]


def plain_chunks(metadata: Any) -> PlainChunks | None:
    """How to read an array's chunks without zarr, when they are that simple (else None)."""
    try:
        if getattr(metadata, "zarr_format", None) == 2:
            if metadata.filters:
                return None
            compressor = metadata.compressor
            if compressor is not None and compressor.codec_id not in COMPRESSORS:
                return None
            dtype = np.dtype(metadata.dtype.to_native_dtype())
            decode = compressor.decode if compressor is not None else None
            return PlainChunks(metadata, dtype, str(metadata.order), decode)
        return _plain_v3(metadata)
    except (AttributeError, TypeError, ValueError):
        return None


def _plain_v3(metadata: Any) -> PlainChunks | None:
    import numcodecs
    from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec

    codecs = tuple(metadata.codecs)
    if not codecs or type(codecs[0]) is not BytesCodec or len(codecs) > 2:
        return None
    dtype = np.dtype(metadata.dtype.to_native_dtype())
    if codecs[0].endian is not None and dtype.itemsize > 1:
        dtype = dtype.newbyteorder("<" if codecs[0].endian.value == "little" else ">")
    if len(codecs) == 1:
        return PlainChunks(metadata, dtype, "C", None)
    decoders = {
        ZstdCodec: numcodecs.Zstd(),
        GzipCodec: numcodecs.GZip(),
        BloscCodec: numcodecs.Blosc(),
    }
    decoder = decoders.get(type(codecs[1]))
    return PlainChunks(metadata, dtype, "C", decoder.decode) if decoder is not None else None


def _slice(data: bytes, byte_range: ByteRequest | None) -> bytes:
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeByteRequest):
        return data[byte_range.start : byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return data[byte_range.offset :]
    if isinstance(byte_range, SuffixByteRequest):
        return data[max(0, len(data) - byte_range.suffix) :]
    raise TypeError(f"unexpected byte range {byte_range!r}")


def range_length(byte_range: ByteRequest | None, size: int) -> int:
    """How many bytes ``byte_range`` selects of an object of ``size`` bytes."""
    if byte_range is None:
        return size
    if isinstance(byte_range, RangeByteRequest):
        return max(0, min(size, byte_range.end) - byte_range.start)
    if isinstance(byte_range, OffsetByteRequest):
        return max(0, size - byte_range.offset)
    if isinstance(byte_range, SuffixByteRequest):
        return min(size, byte_range.suffix)
    raise TypeError(f"unexpected byte range {byte_range!r}")


def range_start(byte_range: ByteRequest | None, size: int) -> int:
    """Where ``byte_range`` starts in an object of ``size`` bytes."""
    if isinstance(byte_range, RangeByteRequest):
        return byte_range.start
    if isinstance(byte_range, OffsetByteRequest):
        return byte_range.offset
    if isinstance(byte_range, SuffixByteRequest):
        return max(0, size - byte_range.suffix)
    return 0


def safe_key(key: str) -> list[str]:
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise UnsupportedImage("the image's metadata names a path outside its store")
    if "\\" in key or "\x00" in key:
        raise UnsupportedImage("the image's metadata names a path outside its store")
    return parts


class ThreadedReads:
    """zarr's ``get`` over a store's blocking ``read(key, byte_range)`` (the bounds and
    confinement live there), run in a thread so zarr's event loop is not held."""

    def read(self, key: str, byte_range: ByteRequest | None) -> bytes | None:
        raise NotImplementedError

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        if prototype is None:
            prototype = default_buffer_prototype()
        data = await asyncio.to_thread(self.read, key, byte_range)
        return None if data is None else prototype.buffer.from_bytes(data)


class DirectoryStore(ThreadedReads, LocalStore):
    """zarr's LocalStore, read-only, confined to ``root`` and bounded by ``limits``."""

    def __init__(self, root: str, limits: ChunkLimits) -> None:
        super().__init__(root, read_only=True)
        self.limits = limits
        self._real_root = os.path.realpath(root)

    def with_read_only(self, read_only: bool = False) -> DirectoryStore:
        return DirectoryStore(str(self.root), self.limits)

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._regular_file, key)

    def _regular_file(self, key: str) -> bool:
        try:
            return stat.S_ISREG(os.stat(self._path(key)).st_mode)
        except OSError:
            return False

    def _path(self, key: str) -> str:
        path = os.path.join(self._real_root, *safe_key(key))
        real = os.path.realpath(path)
        if os.path.commonpath([real, self._real_root]) != self._real_root:
            raise UnsupportedImage("the image's store links to a file outside it")
        return real

    def _open_chunk(self, key: str) -> int | None:
        """A descriptor of ``key``'s file inside the store (None when absent).

        The file is opened without following a link in its last component, and kept
        when the kernel's own name for what it opened (``/proc/self/fd``) is the path
        asked: no link anywhere on the way. Any other case (a link, no ``/proc``) is
        resolved and checked before it is opened, as ``_path`` does: ``realpath``
        costs a ``lstat`` per component, a quarter of a chunk's read without decoding.
        """
        path = os.path.join(self._real_root, *safe_key(key))
        try:
            # O_NONBLOCK: opening a FIFO planted in the store must not wait for a writer.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError:  # ELOOP: the last component is a link
            return self._open_resolved(key)
        try:
            opened = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            opened = ""
        if opened == path:
            return fd
        os.close(fd)
        return self._open_resolved(key)

    def _open_resolved(self, key: str) -> int | None:
        try:
            return os.open(self._path(key), os.O_RDONLY | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    def read(self, key: str, byte_range: ByteRequest | None) -> bytes | None:
        """The bytes of ``key`` (None when absent), within the bounds."""
        fd = self._open_chunk(key)
        if fd is None:
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return None
            wanted = range_length(byte_range, info.st_size)
            if wanted > self.limits.limit(key, byte_range):
                raise UnsupportedImage(too_large(key))
            data = _pread_all(fd, range_start(byte_range, info.st_size), wanted)
        finally:
            os.close(fd)
        self.limits.check(key, data, byte_range)
        return data


def too_large(key: str) -> str:
    if key.rsplit("/", 1)[-1] in METADATA_NAMES:
        return f"a metadata document is larger than {MAX_METADATA_BYTES} bytes"
    return "a stored chunk is larger than any encoding of its pixels"


def _pread_all(fd: int, start: int, count: int) -> bytes:
    parts: list[bytes] = []
    while count > 0:
        part = os.pread(fd, count, start)
        if not part:
            break
        parts.append(part)
        start += len(part)
        count -= len(part)
    return b"".join(parts)


class ZipFileStore(ZipStore):
    """zarr's ZipStore, read-only, over an ImageFile, bounded by ``limits``: an entry is
    read only when its declared size is within them (zipfile never inflates past it)."""

    def __init__(self, file: ImageFile, limits: ChunkLimits) -> None:
        super().__init__(file.name, mode="r")
        self.file = file
        self.limits = limits

    def read_directory(self) -> None:
        """Open the zip now (zipfile reads its central directory): its damage is then a
        failure to open the store, not of the first read."""
        self._sync_open()

    def _sync_open(self) -> None:
        if self._is_open:
            raise ValueError("store is already open")
        self._lock = threading.RLock()
        self._zf = zipfile.ZipFile(FileStream(self.file), mode="r")  # type: ignore[arg-type]
        self._is_open = True

    def with_read_only(self, read_only: bool = False) -> ZipFileStore:
        return self

    def _get(
        self,
        key: str,
        prototype: BufferPrototype,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        if not self._is_open:
            self._sync_open()
        safe_key(key)
        try:
            info = self._zf.getinfo(key)
        except KeyError:
            return None
        if range_length(byte_range, info.file_size) > self.limits.limit(key, byte_range):
            raise UnsupportedImage(too_large(key))
        try:
            with self._zf.open(info) as member:
                if isinstance(byte_range, RangeByteRequest | OffsetByteRequest):
                    start = getattr(byte_range, "start", getattr(byte_range, "offset", 0))
                    member.seek(start)
                    data = member.read(range_length(byte_range, info.file_size))
                else:
                    data = _slice(member.read(), byte_range)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise UnsupportedImage(f"a member of the zip cannot be read ({exc})") from None
        self.limits.check(key, data, byte_range)
        return prototype.buffer.from_bytes(data)

    def read(self, key: str, byte_range: ByteRequest | None) -> bytes | None:
        """The bytes of ``key`` (None when absent), within the bounds."""
        with self._lock:
            buffer = self._get(key, default_buffer_prototype(), byte_range)
        return None if buffer is None else buffer.to_bytes()

    def close(self) -> None:
        if self._is_open:
            super().close()


# -- recognising a zipped store -------------------------------------------------------


@dataclass(frozen=True)
class ZipLayout:
    """A zip holding a zarr store: the folder the store is in ("" for the zip's root)
    and how many entries the zip has."""

    root: str
    entries: int


EOCD = b"PK\x05\x06"
EOCD64_LOCATOR = b"PK\x06\x07"
EOCD64 = b"PK\x06\x06"
CENTRAL_ENTRY = b"PK\x01\x02"
ZIP_MAGIC = b"PK\x03\x04"
EOCD_SEARCH = 22 + 65535  # the record plus the longest comment


def zip_zarr_root(file: ImageFile) -> ZipLayout | None:
    """The layout of a zip whose central directory lists zarr metadata at its root or one
    folder down (None otherwise). Reads the end-of-directory records and at most two
    ``ZIP_SCAN_BYTES`` windows of the central directory."""
    directory = _central_directory(file)
    if directory is None:
        return None
    offset, size, entries = directory
    names = set(_entry_names(file.read(offset, min(size, ZIP_SCAN_BYTES))))
    if size > ZIP_SCAN_BYTES:
        tail_start = offset + size - ZIP_SCAN_BYTES
        names |= set(_entry_names(file.read(tail_start, ZIP_SCAN_BYTES), resync=True))
    if names & METADATA_NAMES:
        return ZipLayout("", entries)
    folders = sorted(
        name.split("/", 1)[0]
        for name in names
        if name.count("/") == 1 and name.split("/", 1)[1] in METADATA_NAMES
    )
    return ZipLayout(folders[0], entries) if folders else None


def _central_directory(file: ImageFile) -> tuple[int, int, int] | None:
    """(offset, size, entry count) of the zip's central directory, or None."""
    if file.size < 22:
        return None
    tail_start = max(0, file.size - EOCD_SEARCH)
    tail = file.read(tail_start, file.size - tail_start)
    at = tail.rfind(EOCD)
    if at < 0 or len(tail) < at + 22:
        return None
    _, _, _, entries, size, offset, _ = struct.unpack_from("<HHHHIIH", tail, at + 4)
    if 0xFFFFFFFF in (size, offset) or entries == 0xFFFF:
        locator_at = tail_start + at - 20
        if locator_at < 0:
            return None
        locator = file.read(locator_at, 20)
        if len(locator) < 20 or locator[:4] != EOCD64_LOCATOR:
            return None
        (record_at,) = struct.unpack_from("<Q", locator, 8)
        record = file.read(record_at, 56)
        if len(record) < 56 or record[:4] != EOCD64:
            return None
        entries, size, offset = struct.unpack_from("<QQQ", record, 32)
    if offset + size > file.size:
        return None
    return offset, size, entries


def _entry_names(window: bytes, resync: bool = False) -> list[str]:
    """The names of the central-directory entries in ``window``: parsed in order from its
    start, or (``resync``, a window cut at an unknown place) from every entry signature."""
    names: list[str] = []
    starts: Iterable[int]
    if resync:
        found: list[int] = []
        at = window.find(CENTRAL_ENTRY)
        while at >= 0:
            found.append(at)
            at = window.find(CENTRAL_ENTRY, at + 4)
        starts = found
    else:
        starts = _sequential_entries(window)
    for at in starts:
        if at + 46 > len(window):
            break
        (name_length,) = struct.unpack_from("<H", window, at + 28)
        name = window[at + 46 : at + 46 + name_length]
        if len(name) == name_length:
            names.append(name.decode("utf-8", "replace"))
    return names


def _sequential_entries(window: bytes) -> Iterable[int]:
    at = 0
    while at + 46 <= len(window) and window[at : at + 4] == CENTRAL_ENTRY:
        yield at
        name_length, extra_length, comment_length = struct.unpack_from("<HHH", window, at + 28)
        at += 46 + name_length + extra_length + comment_length
