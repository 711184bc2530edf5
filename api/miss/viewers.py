"""Telling viewers apart without cookies, and what each one asked for lately.

A viewer is its client address (behind ``TILECAST_TRUSTED_PROXIES``, the forwarded one,
as the rate limiter reads it) and its User-Agent, looking at one image in one frame,
style and encoding: distinct browsers on distinct machines differ in one of these. Two
people behind one NAT with the same browser build count as one viewer (their prefetch
shares one budget and its direction is a blend of theirs); one person in two tabs
on one image too. Nothing is stored but a hash of that identity.

Each viewer's last ``HISTORY`` asked tiles (hits and misses), oldest first, live in the
state Redis under ``tc:pf:viewer:{hash}`` for ``IDLE_SECONDS`` after its last one: every
api process sees them (a browser's six connections land on several processes), in one
round trip per batch of the prefetch thread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import redis
from werkzeug import Request

from tilecast.api.middleware.ratelimit import Network, client_address
from tilecast.api.miss.prefetchplan import HISTORY, TileId
from tilecast.common.keys import prefetch_viewer_key
from tilecast.common.tiles import TileRequest

IDLE_SECONDS = 120


def viewer_id(req: Request, request: TileRequest, proxies: Sequence[Network]) -> str:
    """The viewer behind ``req`` asking ``request``'s image (a hash)."""
    identity = "\x1f".join(
        (
            client_address(req, proxies),
            req.headers.get("User-Agent", ""),
            request.source,
            str(request.frame),
            request.style or "",
            request.encoding.key_part,
        )
    )
    return hashlib.blake2b(identity.encode(errors="replace"), digest_size=12).hexdigest()


def record_asked(state: redis.Redis, viewer: str, tiles: Sequence[TileId]) -> list[TileId]:
    """Append ``tiles`` to what the viewer asked; its last HISTORY, oldest first."""
    key = prefetch_viewer_key(viewer)
    pipe = state.pipeline(transaction=False)
    pipe.rpush(key, *(",".join(str(n) for n in tile) for tile in tiles[-HISTORY:]))
    pipe.ltrim(key, -HISTORY, -1)
    pipe.expire(key, IDLE_SECONDS)
    pipe.lrange(key, 0, -1)
    entries = pipe.execute()[-1]
    history: list[TileId] = []
    for entry in entries:
        z, x, y = (int(part) for part in entry.split(b","))
        history.append((z, x, y))
    return history
