"""What one api process holds: Redis clients, the generation memo, the completion
listener, the dispatcher and the task sender, built once per process from Settings."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app

from api.completion import CompletionListener
from api.dispatch import Dispatcher
from api.generations import GenerationMemo
from api.tasks import CelerySender, Sender
from common.cache import TileCache
from common.redisconn import connect
from common.registry import SourceRegistry
from common.settings import Settings

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

    @classmethod
    def build(cls, settings: Settings) -> Services:
        """Connections are opened lazily, on first use: building costs no round trip."""
        cache_client = connect(settings.cache_url)
        state = connect(settings.state_url)
        registry = SourceRegistry(state)
        # Completions are published on the state Redis (common.inflight.announce).
        listener = CompletionListener(lambda: connect(settings.state_url))
        dispatcher = Dispatcher(
            state,
            listener,
            inflight_ttl=settings.inflight_ttl,
            timeout=settings.render_timeout,
        )
        return cls(
            settings=settings,
            cache=TileCache(cache_client, ttl=settings.tile_ttl),
            state=state,
            registry=registry,
            generations=GenerationMemo(registry, settings.generation_ttl),
            listener=listener,
            dispatcher=dispatcher,
            sender=CelerySender(settings),
        )


def services() -> Services:
    """The services of the app handling the current request."""
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]
