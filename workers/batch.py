"""Render a block of tiles in one task: the bulk path (pre-rendering, prefetch).

One task per tile costs a broker round trip, an EXISTS, a SET, a PUBLISH and a counter
update each; for a block of neighbours those become one pipelined round trip per flush,
and the worker keeps what it decoded (the open source, synthesized parents in the raw
cache) between the tiles. The source is told which of its tiles the block reads
(``Renderer.bulk_read``), so that a reader may decode several at once. Tiles already
cached are announced and skipped, never rendered twice. A tile that fails is announced
with its error; the rest of the block still renders.

Rendered tiles are written and announced in flushes, every ``FLUSH_TILES`` tiles or
``FLUSH_SECONDS``, whichever comes first, so a viewer waiting on one tile of a large
block is not kept waiting for the whole block.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tilecast.common import counters
from tilecast.common.inflight import Completion, announce_many
from tilecast.common.tiles import KIND_TILE, TileRequest
from tilecast.workers.engine import Renderer
from tilecast.workers.outcome import failure

log = logging.getLogger(__name__)

FLUSH_TILES = 16
FLUSH_SECONDS = 0.25


@dataclass
class BatchResult:
    rendered: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass
class _Pending:
    """Tiles rendered (or failed) since the last flush."""

    tiles: dict[str, bytes] = field(default_factory=dict)
    completions: list[Completion] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def due(self) -> bool:
        return len(self.completions) >= FLUSH_TILES or (
            bool(self.completions) and time.monotonic() - self.started >= FLUSH_SECONDS
        )


# Called after each flush with the number of tiles written and the completions just
# announced (pre-rendering jobs count renders, renew their lease and collect errors; an
# exception it raises, such as a cancelled job, stops the batch).
FlushHook = Callable[[int, Sequence[Completion]], None]
# Asked just before each tile is rendered (a prefetch's, workers/prefetching.py): False
# skips the tile unannounced -- nobody waits for it, or someone else renders it.
WantedHook = Callable[[str], bool]


def render_batch(
    renderer: Renderer,
    requests: Sequence[TileRequest],
    generation: int,
    on_flush: FlushHook | None = None,
    still_wanted: WantedHook | None = None,
    *,
    checked: bool = False,
) -> BatchResult:
    """Render every tile of ``requests`` not yet cached (and ``still_wanted``, when
    given); never raises for one tile. ``checked``: the caller holds their markers and
    found none of them cached after taking them (a job's batch), so the cache is not
    asked again."""
    result = BatchResult()
    keys = [request.key(generation) for request in requests]
    present: set[str] = set() if checked else _existing(renderer, keys)
    pending = _Pending(completions=[Completion(key) for key in keys if key in present])
    result.skipped = len(pending.completions)
    wanted = [request for request, key in zip(requests, keys, strict=True) if key not in present]
    with renderer.bulk_read(wanted, generation):
        for request, key in zip(requests, keys, strict=True):
            if key in present:
                continue
            if still_wanted is not None and not still_wanted(key):
                result.skipped += 1
                continue
            try:
                with renderer.latency.timed(KIND_TILE):
                    pending.tiles[key] = renderer.render_tile(request, generation)
                pending.completions.append(Completion(key))
                result.rendered += 1
            except Exception as exc:  # one bad tile must not lose the rest of the block
                pending.completions.append(failure(key, exc))
                result.failed += 1
            if pending.due():
                _flush(renderer, pending, on_flush)
                pending = _Pending()
    _flush(renderer, pending, on_flush)
    renderer.flush_counters(
        **{counters.TILES_RENDERED: result.rendered, counters.RENDER_ERRORS: result.failed}
    )
    return result


def _existing(renderer: Renderer, keys: Sequence[str]) -> set[str]:
    pipe = renderer.cache_client.pipeline(transaction=False)
    for key in keys:
        pipe.exists(key)
    return {key for key, found in zip(keys, pipe.execute(), strict=True) if found}


def _flush(renderer: Renderer, pending: _Pending, on_flush: FlushHook | None = None) -> None:
    """Store the rendered tiles, then tell their waiters (store first: a waiter that
    hears the completion reads the cache at once)."""
    renderer.cache.put_many(pending.tiles)
    announce_many(renderer.state, pending.completions)
    if on_flush is not None and pending.completions:
        on_flush(len(pending.tiles), pending.completions)
