"""Access control: the one check every request passes before anything is read.

``open`` mode registers no check at all (the hit path stays as it is); ``signed``
mode checks HMAC-signed URL grants (api/middleware/signed.py). ``girder``
mode runs :func:`check_request` before every view: item routes (``/item/{id}/...``)
need a Girder token that may read the item, anonymous requests reach public items
only; management routes (sources, jobs, pre-rendering) need the Girder plugin's
shared secret or a Girder administrator's token. Girder's answers are remembered per
(token, item) for ``girder_access_ttl`` seconds, in this process, so a viewer's
tiles cost one Girder call per item and TTL, and a cache hit is never served without
a decision no older than that.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, Request, request

from tilecast.api.middleware import signed
from tilecast.api.middleware.girder import GirderAuthority
from tilecast.common.errors import Forbidden, TilecastError, Unauthorized
from tilecast.common.girder import SECRET_HEADER, TOKEN_COOKIE, TOKEN_HEADER, TOKEN_PARAMETER
from tilecast.common.settings import Settings

# Endpoints that change or list what the server holds.
MANAGE_ENDPOINTS = frozenset(
    {
        "sources.register",
        "sources.remove",
        "sources.list_sources",
        "jobs.precache",
        "jobs.list_jobs",
        "jobs.job",
        "jobs.cancel",
    }
)
# Endpoints that list every source but change nothing (the DICOMweb searches over
# every study, api/protocols/dicomweb_routes.py): they need management rights in
# ``girder`` and ``signed`` modes, and stay read routes for CORS.
LISTING_ENDPOINTS = frozenset(
    {"dicomweb.search_studies", "dicomweb.search_series", "dicomweb.search_instances"}
)
# The Girder plugin's endpoints check the shared secret themselves.
PLUGIN_BLUEPRINT = "girder."
# Far more (token, item) pairs than a process sees within a TTL; past it the memo
# starts afresh rather than growing without bound.
MAX_DECISIONS = 100_000


def credentials(req: Request) -> str | None:
    """The Girder token where Girder's own clients send it: header, query, cookie."""
    return (
        req.headers.get(TOKEN_HEADER)
        or req.args.get(TOKEN_PARAMETER)
        or req.cookies.get(TOKEN_COOKIE)
        or None
    )


def secret_matches(req: Request, secret: str) -> bool:
    """Whether the request carries the shared secret (compared in constant time)."""
    sent = req.headers.get(SECRET_HEADER, "")
    return bool(secret) and hmac.compare_digest(sent.encode(), secret.encode())


def require_secret(req: Request, secret: str) -> None:
    """401 unless the request carries the Girder plugin's shared secret."""
    if not secret:
        raise Unauthorized("this server has no TILECAST_GIRDER_SECRET: plugin calls are refused")
    if not secret_matches(req, secret):
        raise Unauthorized(f"missing or wrong {SECRET_HEADER} header")


@dataclass
class _Decision:
    error: TilecastError | None  # None: allowed
    expires: float


class DecisionMemo:
    """Girder's answers per key for ``ttl`` seconds; concurrent first askers of one key
    share a single Girder call. Errors that say Girder is unreachable are not kept."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._decisions: dict[tuple[str, str], _Decision] = {}
        self._pending: dict[tuple[str, str], threading.Lock] = {}
        self._lock = threading.Lock()

    def check(self, key: tuple[str, str], ask: Callable[[], None]) -> None:
        """Raise the remembered refusal, or return when allowed; ``ask`` decides (raising
        the refusal) when nothing fresh is remembered."""
        decision = self._fresh(key)
        if decision is None:
            with self._key_lock(key):
                decision = self._fresh(key) or self._decide(key, ask)
        if decision.error is not None:
            raise decision.error

    def _fresh(self, key: tuple[str, str]) -> _Decision | None:
        decision = self._decisions.get(key)
        return decision if decision is not None and decision.expires > self.clock() else None

    def _decide(self, key: tuple[str, str], ask: Callable[[], None]) -> _Decision:
        try:
            ask()
            error = None
        except TilecastError as exc:
            if exc.status >= 500:
                raise  # Girder unreachable: ask again next time
            error = exc
        decision = _Decision(error, self.clock() + self.ttl)
        if len(self._decisions) >= MAX_DECISIONS:
            self._decisions.clear()
        self._decisions[key] = decision
        return decision

    def _key_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            lock = self._pending.get(key)
            if lock is None:
                if len(self._pending) >= MAX_DECISIONS:
                    self._pending.clear()
                lock = self._pending[key] = threading.Lock()
            return lock


class GirderAccess:
    """The ``girder`` access mode."""

    def __init__(self, settings: Settings, authority: GirderAuthority | None = None) -> None:
        self.secret = settings.girder_secret
        self.authority = authority or GirderAuthority(settings)
        self.reads = DecisionMemo(settings.girder_access_ttl)
        self.admins = DecisionMemo(settings.girder_access_ttl)
        # Items registered (or refused: unknown, no image) lately, so a viewer's tiles of
        # an item without an image do not each send a worker to find that out again.
        self.registrations = DecisionMemo(settings.girder_access_ttl)

    def check_item(self, item_id: str, token: str | None) -> None:
        self.reads.check((token or "", item_id), lambda: self.authority.check_read(item_id, token))

    def check_manage(self, req: Request, token: str | None) -> None:
        if secret_matches(req, self.secret):
            return
        if not token:
            raise Unauthorized(f"send the {SECRET_HEADER} header or a Girder administrator's token")
        self.admins.check((token, ""), lambda: self._require_admin(token))

    def _require_admin(self, token: str) -> None:
        if not self.authority.is_admin(token):
            raise Forbidden("only Girder administrators may do this")


def install(app: Flask, settings: Settings, ensure_item: Callable[[str], None]) -> None:
    """Register the access check of the configured mode; ``ensure_item`` runs after an
    item passed it (``girder`` mode registers Girder items on first use)."""
    if settings.access_mode == "signed":
        signed.install(app, settings, MANAGE_ENDPOINTS | LISTING_ENDPOINTS)
        return
    if settings.access_mode != "girder":
        return
    access = GirderAccess(settings)

    @app.before_request
    def check_request() -> None:
        endpoint = request.endpoint
        if endpoint is None or endpoint.startswith(PLUGIN_BLUEPRINT):
            return  # no such route (a 404 follows), or the plugin's calls (own secret)
        if request.method == "OPTIONS":
            return  # a browser's CORS preflight carries no credentials (api/middleware/cors.py)
        token = credentials(request)
        if endpoint in MANAGE_ENDPOINTS or endpoint in LISTING_ENDPOINTS:
            access.check_manage(request, token)
        item_id = (request.view_args or {}).get("item_id")
        if item_id is not None:
            access.check_item(item_id, token)
            access.registrations.check(("", item_id), lambda: ensure_item(item_id))
