"""``/metrics``: this process's pending counts first, then one snapshot of everything."""

from __future__ import annotations

from urllib.parse import urlsplit

from tilecast.api.services import Services
from tilecast.common import metrics
from tilecast.common.redisconn import connect


def snapshot(svc: Services) -> metrics.Snapshot:
    # The other api processes flush within common.counters.FLUSH_SECONDS; this one's
    # counts are made current now so a scrape right after a request sees it.
    svc.counters.flush()
    settings = svc.settings
    broker = None
    if settings.broker_url == settings.state_url:
        broker = svc.state
    elif urlsplit(settings.broker_url).scheme in ("redis", "rediss", "unix"):
        broker = connect(settings.broker_url, **settings.redis_timeouts)
    try:
        return metrics.collect(svc.cache.client, svc.state, broker, window=settings.active_window)
    finally:
        if broker is not None and broker is not svc.state:
            broker.close()


def prometheus(svc: Services) -> str:
    return metrics.prometheus_text(snapshot(svc))
