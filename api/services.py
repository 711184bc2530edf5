"""What one api process holds: Redis clients, the generation memo, the completion
listener, the dispatcher and the task sender, built once per process from Settings."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app

from tilecast.api.middleware.ratelimit import parse_proxies
from tilecast.api.miss.completion import CompletionListener
from tilecast.api.miss.dispatch import Dispatcher
from tilecast.api.miss.generations import GenerationMemo
from tilecast.api.miss.prefetch import Budget, Prefetcher
from tilecast.api.miss.routing import Router, build_router
from tilecast.api.miss.tasks import CelerySender, Sender
from tilecast.api.parsing import parse_encoding
from tilecast.common.activity import ActivityMemo
from tilecast.common.cache import TileCache
from tilecast.common.counters import BatchedCounters
from tilecast.common.redisconn import connect, connect_cache
from tilecast.common.registry import SourceRegistry
from tilecast.common.settings import Settings

EXTENSION = "tilecast"


@dataclass
class Services:
    settings: Settings
    cache: TileCache
    state: redis.Redis
    registry: SourceRegistry
    generations: GenerationMemo
    listener: CompletionListener
    dispatcher: Dispatcher
    sender: Sender
    router: Router
    # Activity touches, batched hit/miss counters, optional prefetch (H2, issue 4).
    activity: ActivityMemo
    counters: BatchedCounters
    prefetcher: Prefetcher | None
    # The Cache-Control header of images (api/http.py).
    cache_control: str

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Connections are opened lazily, on first use: building costs no round trip."""
        cache_client = connect_cache(settings.cache_url, **settings.redis_timeouts)
        state = connect(settings.state_url, **settings.redis_timeouts)
        registry = SourceRegistry(state)
        # Completions are published on the state Redis (common.inflight.announce).
        listener = CompletionListener(
            lambda: connect(settings.state_url, **settings.redis_timeouts)
        )
        # Affinity, spill-over and backpressure of interactive sends (api/miss/routing.py).
        router = build_router(settings, state)
        cache = TileCache(cache_client, ttl=settings.tile_ttl)
        dispatcher = Dispatcher(
            state,
            listener,
            inflight_ttl=settings.inflight_ttl,
            timeout=settings.render_timeout,
            routes=router,
            max_waiting=settings.max_waiting,
            present=cache.exists_many,
        )
        sender = CelerySender(settings, router)
        counters = BatchedCounters(state)
        prefetcher = None
        if settings.prefetch:
            prefetcher = Prefetcher(
                cache_client,
                state,
                sender,
                counters,
                Budget(
                    viewer_tiles=settings.prefetch_viewer_tiles,
                    tiles=settings.prefetch_tiles,
                    window=settings.prefetch_window,
                    ttl=settings.prefetch_ttl,
                ),
                proxies=parse_proxies(settings.trusted_proxies),
                same_redis=settings.cache_url == settings.state_url,
                describe=lambda source: registry.readable(source).metadata,
                encoding=parse_encoding({}, settings),
            )
        return cls(
            cache_control=cache_control(settings.http_max_age, settings.access_mode),
            activity=ActivityMemo(),
            counters=counters,
            prefetcher=prefetcher,
            settings=settings,
            cache=cache,
            state=state,
            registry=registry,
            generations=GenerationMemo(registry, settings.generation_ttl),
            listener=listener,
            dispatcher=dispatcher,
            sender=sender,
            router=router,
        )


def cache_control(max_age: int, access_mode: str) -> str:
    """Images anyone may read may sit in shared caches; images behind an access check
    only in the asker's own browser."""
    scope = "public" if access_mode == "open" else "private"
    return f"{scope}, max-age={max_age}"


def services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]
