"""The raw-tile path: cache, else native read, else synthesis from the level above.

A tile of a level the file lacks is made from the (up to) four tiles of the next
higher-resolution level, each fetched through this same path, and every tile made
or read is put in the cache. Asking for the coarsest tile of a single-level file
therefore computes each level once, and the whole pyramid costs about one read of
the base level; later requests at any level are cache hits.

Downsampling follows large_image's ``_getTileFromEmptyLevel``: it pastes the
higher-resolution tiles, padding and all, into a mosaic and resizes it with PIL's
LANCZOS; here the 2x2 mosaic is reduced by libvips with a lanczos3 kernel. What lies
beyond the image's content in that mosaic decides how its last, partly covered
pixels look, so it is imitated: a natively read JPEG tile brings the file's own
padding (black in libvips-written files); other tiles are extended with black where
the file's JPEG tiles are padded black, else by repeating the edge (what libvips
writes into LZW / deflate / uncompressed tiles). Tiles past the end of a level are
absent in large_image (transparent, so they add nothing); here the edge is repeated
into them. Every synthesized tile is zero beyond its level's content area.

Measured against large_image on generated single-level files, PSNR over the content
of every tile of every synthesized level, worst tile per level: 49-64 dB for a
3000 x 2000 JPEG TIFF, 48-57 dB for a 2999 x 1999 LZW TIFF. As in large_image, data that is
not uint8 (or has more than four bands) is subsampled (nearest neighbour), not
filtered.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import numpy as np

from tilecast.common.cache import TileCache
from tilecast.common.errors import UnsupportedImage
from tilecast.common.tiles import raw_tile_key
from tilecast.workers.guard import checkpoint
from tilecast.workers.rawtile import RawTile, RawTileError
from tilecast.workers.sources.base import ImageSource
from tilecast.workers.sources.reader import Reader, naming_format
from tilecast.workers.vipsutil import halve_many

log = logging.getLogger(__name__)


# Raw tiles read or synthesized during one pre-rendering batch, kept so that a tile read
# for its own styled render is not read (and decoded) again to synthesize the level under
# it, nor a synthesized one fetched back from the cache for its styled render:
# (source, generation, frame, z, x, y) -> tile. The batch owns it and drops it at its end.
KeptTiles = dict[tuple[str, int, int, int, int, int], RawTile]


@dataclass
class WorkCounters:
    """Raw tiles read from files and synthesized, flushed to common.counters per task."""

    read: int = 0
    synthesized: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, *, read: int = 0, synthesized: int = 0) -> None:
        with self._lock:
            self.read += read
            self.synthesized += synthesized

    def take(self) -> tuple[int, int]:
        """The counts so far, reset to zero."""
        with self._lock:
            counts = (self.read, self.synthesized)
            self.read = self.synthesized = 0
            return counts


class RawTiles:
    """Unstyled tiles of one source at one generation, through the tile cache."""

    def __init__(
        self,
        cache: TileCache,
        source: ImageSource,
        source_id: str,
        generation: int,
        counters: WorkCounters | None = None,
        kept: KeptTiles | None = None,
    ) -> None:
        self.cache = cache
        self.source = source
        self.source_id = source_id
        self.generation = generation
        self.counters = counters if counters is not None else WorkCounters()
        self.kept = kept
        # Whether tiles this makes are put in the cache: a pre-rendering batch keeps the
        # intermediates of its block in memory and caches only what others read.
        self.store_made = True

    def key(self, z: int, x: int, y: int, frame: int = 0) -> str:
        return raw_tile_key(self.source_id, self.generation, frame, z, x, y)

    def get(self, z: int, x: int, y: int, frame: int = 0) -> RawTile:
        return self.get_many(z, [(x, y)], frame)[0]

    def get_many(self, z: int, coords: list[tuple[int, int]], frame: int = 0) -> list[RawTile]:
        """Tiles (x, y) of level ``z``. A native level is read from the file: the open
        source and the OS page cache make that as cheap as a Redis round trip, and
        copying the file into Redis would only crowd out rendered tiles. A synthesized
        level costs one cache round trip for all of them (none for tiles a batch kept),
        then a synthesis for each one that was missing, and one round trip to cache
        those."""
        if self.source.is_native_level(z, frame):
            self.counters.add(read=len(coords))
            return [self._read(z, x, y, frame) for x, y in coords]
        found = self._kept_tiles(z, coords, frame)
        missing = [coord for coord in coords if coord not in found]
        keys = [self.key(z, x, y, frame) for x, y in missing]
        absent: dict[tuple[int, int], str] = {}
        for coord, key, data in zip(missing, keys, self.cache.get_many(keys), strict=True):
            tile = _cached_tile(key, data)
            if tile is None:
                absent[coord] = key
            else:
                found[coord] = self._keep(z, *coord, frame, tile)
        made: dict[str, bytes] = {}
        for coord, tile in zip(absent, self._synthesize_many(z, list(absent), frame), strict=True):
            if self.store_made:
                made[absent[coord]] = tile.to_bytes()
            found[coord] = self._keep(z, *coord, frame, tile)
        if made:
            self.cache.put_many(made)
        return [found[coord] for coord in coords]

    def _kept_tiles(
        self, z: int, coords: list[tuple[int, int]], frame: int
    ) -> dict[tuple[int, int], RawTile]:
        if not self.kept:
            return {}
        kept = ((coord, self.kept.get(self._kept_key(z, *coord, frame))) for coord in coords)
        return {coord: tile for coord, tile in kept if tile is not None}

    def _keep(self, z: int, x: int, y: int, frame: int, tile: RawTile) -> RawTile:
        if self.kept is not None:
            self.kept[self._kept_key(z, x, y, frame)] = tile
        return tile

    def _kept_key(self, z: int, x: int, y: int, frame: int) -> tuple[str, int, int, int, int, int]:
        return (self.source_id, self.generation, frame, z, x, y)

    def _read(self, z: int, x: int, y: int, frame: int) -> RawTile:
        checkpoint()  # between reads: stop when nobody waits any more (workers/guard.py)
        return self._read_native(z, x, y, frame)

    def _read_native(self, z: int, x: int, y: int, frame: int) -> RawTile:
        if self.kept is None:
            return self._read_file(z, x, y, frame)
        tile = self.kept.get(self._kept_key(z, x, y, frame))
        if tile is None:
            tile = self._keep(z, x, y, frame, self._read_file(z, x, y, frame))
        return tile

    def _read_file(self, z: int, x: int, y: int, frame: int) -> RawTile:
        try:
            return self.source.read_tile(z, x, y, frame)
        except UnsupportedImage as exc:
            if isinstance(self.source, Reader):
                raise naming_format(exc, self.source) from None
            raise

    def _synthesize_many(self, z: int, coords: list[tuple[int, int]], frame: int) -> list[RawTile]:
        """Tiles ``coords`` of a level the file lacks, each from the (up to) four tiles
        of the level above; their mosaics are halved together (vipsutil.halve_many)."""
        if not coords:
            return []
        checkpoint()
        mosaics = [self._mosaic(z, x, y, frame) for x, y in coords]
        halved = iter(halve_many([mosaic for mosaic in mosaics if mosaic is not None]))
        tiles: list[RawTile] = []
        for (x, y), mosaic in zip(coords, mosaics, strict=True):
            if mosaic is None:
                tiles.append(RawTile.from_pixels(self.source.empty_tile()))
                continue
            own_w, own_h = self.source.tile_content(z, x, y, frame)
            reduced = next(halved)
            tile = np.zeros_like(reduced)
            tile[:own_h, :own_w] = reduced[:own_h, :own_w]
            tiles.append(RawTile.from_pixels(tile))
        self.counters.add(synthesized=len(coords))
        return tiles

    def _mosaic(self, z: int, x: int, y: int, frame: int) -> np.ndarray | None:
        """The 2 x 2 tiles under tile (x, y) of level ``z`` as one array, padded as
        large_image pads them (see the module's docstring); None for a tile with no
        content."""
        source = self.source
        tw, th = source.tile_width, source.tile_height
        child_z = z + 1
        coords = source.grid.children(z, x, y)
        children = self.get_many(child_z, coords, frame)
        own_w, own_h = source.tile_content(z, x, y, frame)
        if not children or own_w == 0 or own_h == 0:
            return None
        arrays = [child.array() for child in children]
        bands = arrays[0].shape[2]
        mosaic = np.zeros((2 * th, 2 * tw, bands), dtype=arrays[0].dtype)
        for (cx, cy), child, array in zip(coords, children, arrays, strict=True):
            ox, oy = (cx - 2 * x) * tw, (cy - 2 * y) * th
            w, h = source.tile_content(child_z, cx, cy, frame)
            if child.is_jpeg:
                block = array  # the file's own tile, padding included, as large_image sees it
            elif source.black_padding:
                block = np.zeros((th, tw, bands), dtype=array.dtype)
                block[:h, :w] = array[:h, :w, :bands]
            else:
                block = _extend(array[:h, :w, :bands], tw, th)
            mosaic[oy : oy + th, ox : ox + tw] = block[:th, :tw, :bands]
        # Children past the level's last tile do not exist: large_image leaves them
        # transparent (they add nothing to its premultiplied resize); repeat the edge.
        present_w = tw * len({cx for cx, _cy in coords})
        present_h = th * len({cy for _cx, cy in coords})
        return _extend(mosaic[:present_h, :present_w], 2 * tw, 2 * th)


def _extend(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """``pixels`` grown to width x height by repeating its last column and row."""
    h, w = pixels.shape[:2]
    if (w, h) == (width, height):
        return pixels
    if w == 0 or h == 0:
        return np.zeros((height, width, pixels.shape[2]), dtype=pixels.dtype)
    return np.pad(pixels, ((0, height - h), (0, width - w), (0, 0)), mode="edge")


def _cached_tile(key: str, data: bytes | None) -> RawTile | None:
    if data is None:
        return None
    try:
        return RawTile.from_bytes(data)
    except RawTileError as exc:
        log.warning("discarding unreadable cached raw tile %s: %s", key, exc)
        return None
