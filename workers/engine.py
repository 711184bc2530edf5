"""The rendering engine a worker process holds: sources, caches, style, encode.

``Renderer.render_tile`` / ``render_thumbnail`` return the bytes a client receives;
the Celery tasks (workers/tasks.py) put them in the cache and announce completion.
One Renderer lives in each worker process, so its source cache outlives tasks.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pyvips
import redis

from tilecast.common import latency
from tilecast.common.associated import AssociatedRequest
from tilecast.common.cache import TileCache
from tilecast.common.counters import RAW_TILES_READ, RAW_TILES_SYNTHESIZED, incr, write_gauges
from tilecast.common.errors import BadRequest
from tilecast.common.redisconn import CacheClient, connect, connect_cache
from tilecast.common.regions import RegionRequest
from tilecast.common.registry import SourceRegistry
from tilecast.common.settings import Settings
from tilecast.common.tiles import ThumbnailRequest, TileRequest
from tilecast.workers import associated
from tilecast.workers.bandstats import BandStats, BandStatsCache
from tilecast.workers.encode import encode_pixels, encode_tile, to_uint8
from tilecast.workers.filechanges import open_registered, still_current
from tilecast.workers.region import letterbox
from tilecast.workers.sourcecache import (
    OpenedSource,
    SourceCache,
    StyledSource,
    source_cache_counts,
    source_cache_gauges,
)
from tilecast.workers.sources import ImageSource
from tilecast.workers.style import compile_style
from tilecast.workers.synthesis import KeptTiles, RawTiles, WorkCounters
from tilecast.workers.thumbnail import assemble_level, resize, thumbnail_level

log = logging.getLogger(__name__)


class Renderer:
    def __init__(
        self,
        settings: Settings,
        *,
        cache_client: CacheClient | None = None,
        state_client: redis.Redis | None = None,
    ) -> None:
        self.settings = settings
        # libvips' operation cache would keep every reduced mosaic and cropped tile
        # alive (up to 100 operations) though none is asked twice: the source cache
        # and the tile cache already hold what is reused. Measured: same speed,
        # ~100 MB less resident memory after a pyramid. (Process-wide, like the
        # Renderer itself.)
        pyvips.cache_set_max(0)
        self.cache_client = (
            cache_client
            if cache_client is not None
            else connect_cache(settings.cache_url, **settings.redis_timeouts)
        )
        if state_client is not None:
            self.state = state_client
        elif settings.state_url in ("", settings.cache_url):
            self.state = self.cache_client
        else:
            self.state = connect(settings.state_url, **settings.redis_timeouts)
        self.cache = TileCache(self.cache_client, ttl=settings.tile_ttl)
        self.registry = SourceRegistry(self.state)
        self.sources = SourceCache(
            settings.source_cache_count,
            settings.source_cache_bytes,
            window=settings.active_window,
            check_interval=settings.file_check_interval,
        )
        # Whole-image band statistics for styles, shared by every worker via Redis.
        self.band_stats = BandStatsCache(self.cache)
        self.counters = WorkCounters()
        self._batch_local = threading.local()  # the running batch's kept tiles, per thread
        # Render durations, written with the counters (common/latency.py).
        self.latency = latency.LatencyRecorder()

    # -- sources ----------------------------------------------------------------------------
    def open(self, source_id: str, generation: int) -> ImageSource:
        """The unstyled source (opened from the registry's path on a miss)."""
        return self.sources.unstyled(
            source_id, generation, lambda: self._open(source_id, generation)
        )

    def styled(
        self, request: TileRequest | ThumbnailRequest | RegionRequest, generation: int
    ) -> StyledSource:
        return self.sources.styled(
            request.source,
            generation,
            request.style,
            request.encoding,
            lambda: self._open(request.source, generation),
            compile_style,
        )

    def _open(self, source_id: str, generation: int) -> OpenedSource:
        """The registered file of ``generation``, checked against its registration
        (workers/filechanges.py): UnknownSource, SourceChanged or SourceGone else."""
        opened = open_registered(self.registry, source_id, generation, self.settings)
        log.info("opened source %s (%s)", source_id, opened.name)
        return OpenedSource(opened.source, lambda: still_current(opened))

    def raw_tiles(self, source: ImageSource, source_id: str, generation: int) -> RawTiles:
        kept: KeptTiles | None = getattr(self._batch_local, "kept", None)
        return RawTiles(self.cache, source, source_id, generation, self.counters, kept)

    @contextlib.contextmanager
    def keeping_tiles(self) -> Iterator[None]:
        """Within: raw tiles read from the file or synthesized are kept
        (workers/synthesis.py ``KeptTiles``), for a pre-rendering batch that makes a
        block's levels one from the other: each tile read, decoded or made once, no
        cache round trip for the ones it made. Bounded by the batch's block."""
        self._batch_local.kept = {}
        try:
            yield
        finally:
            self._batch_local.kept = None

    @contextlib.contextmanager
    def bulk_read(self, requests: Sequence[TileRequest], generation: int) -> Iterator[None]:
        """Around the rendering of a block of tiles: tells each source which tiles of a
        native level are about to be read (``ImageSource.bulk_read``), so that a reader
        may decode several at once. Never raises for the hint itself: a source that does
        not open is each tile's error to report."""
        groups: dict[tuple[str, int, int], list[tuple[int, int]]] = {}
        for request in requests:
            groups.setdefault((request.source, request.z, request.frame), []).append(
                (request.x, request.y)
            )
        with contextlib.ExitStack() as hints:
            for (source_id, z, frame), coords in groups.items():
                try:
                    source = self.open(source_id, generation)
                    if source.is_native_level(z, frame):
                        hints.enter_context(source.bulk_read(z, coords, frame))
                except Exception as exc:
                    log.debug("no bulk read of source %s: %s", source_id, exc)
            yield

    # -- rendering --------------------------------------------------------------------------
    def render_tile(self, request: TileRequest, generation: int) -> bytes:
        styled = self.styled(request, generation)
        source = styled.source
        source.check_tile(request.z, request.x, request.y, request.frame)
        tiles = self.raw_tiles(source, request.source, generation)
        raw = tiles.get(request.z, request.x, request.y, request.frame)
        if styled.style is None:
            return encode_tile(raw, styled.encoding)

        def read(frame: int) -> np.ndarray:
            return (
                raw.array()
                if frame == request.frame
                else tiles.get(request.z, request.x, request.y, frame).array()
            )

        pixels = self.style_pixels(styled, tiles, request.frame, read)
        return encode_pixels(pixels, styled.encoding)

    def style_pixels(
        self,
        styled: StyledSource,
        tiles: RawTiles,
        frame: int,
        read: Callable[[int], np.ndarray],
    ) -> np.ndarray:
        """The pixels a client receives for one area (a tile, a region, a thumbnail's
        level) of ``frame``, styled; unstyled pixels pass through to 8 bits.

        ``read(f)`` returns the unstyled (height, width, bands) pixels of that same area
        in frame ``f``: a style may need other frames than the one asked for. Every
        caller styles through here, so tiles, regions and thumbnails agree.

        The result is uint8, or uint16 / float32 (0-1) when the style's ``dtype`` asks
        for it. A style naming a frame the source lacks is a 400 naming ``style``;
        whole-image statistics come from ``self.band_stats`` (shared through Redis).
        """
        style = styled.style
        if style is None:
            return to_uint8(read(frame))
        frames = style.frames(frame)
        count = styled.source.frame_count
        for wanted in frames:
            if not 0 <= wanted < count:
                raise BadRequest(
                    f"style reads frame {wanted}, which does not exist (0 to {count - 1})",
                    parameter="style",
                )
        pixels: dict[int, np.ndarray] = {}

        def read_once(wanted: int) -> np.ndarray:
            if wanted not in pixels:
                pixels[wanted] = read(wanted)
            return pixels[wanted]

        def stats(wanted: int, histogram: bool) -> BandStats:
            return self.band_stats.get(tiles, wanted, histogram)

        return style.apply(read_once(frame), frame, read_once, stats)

    def render_thumbnail(self, request: ThumbnailRequest, generation: int) -> bytes:
        limit = self.settings.max_thumbnail_size
        if not (0 <= request.width <= limit and 0 <= request.height <= limit):
            raise BadRequest(f"thumbnail width and height must be between 0 and {limit}")
        styled = self.styled(request, generation)
        source = styled.source
        source.check_tile(source.levels - 1, 0, 0, request.frame)
        tiles = self.raw_tiles(source, request.source, generation)
        z, out_w, out_h = thumbnail_level(source, request.width, request.height)
        pixels = self.style_pixels(
            styled, tiles, request.frame, lambda frame: assemble_level(tiles, z, frame)
        )
        pixels = resize(pixels, out_w, out_h)
        if request.fill is not None:
            fmt = styled.encoding.format
            pixels = letterbox(pixels, request.width, request.height, request.fill, fmt)
        return encode_pixels(pixels, styled.encoding)

    def render_associated(self, request: AssociatedRequest, generation: int) -> bytes:
        """An associated image (label, macro, ...) or the JSON list of their names."""
        source = self.open(request.source, generation)
        return associated.render_associated(source, request, self.settings.max_thumbnail_size)

    # -- bookkeeping ------------------------------------------------------------------------
    def flush_counters(self, **extra: int) -> None:
        """Add the raw-tile counts gathered since the last flush (and ``extra``
        counters) to common.counters, in one round trip."""
        read, synthesized = self.counters.take()
        counts = {RAW_TILES_READ: read, RAW_TILES_SYNTHESIZED: synthesized, **extra}
        counts.update(source_cache_counts(self.sources))
        counts = {name: amount for name, amount in counts.items() if amount}
        gauges = source_cache_gauges(self.sources)
        durations = self.latency.take()
        if not counts and gauges is None and not durations:
            return
        pipe = self.state.pipeline(transaction=False)
        for name, amount in counts.items():
            incr(pipe, name, amount)
        latency.write(pipe, durations)
        if gauges is not None:  # open sources and bytes (summed by /metrics); same trip
            write_gauges(pipe, gauges)
        pipe.execute()

    def close(self) -> None:
        self.sources.clear()
