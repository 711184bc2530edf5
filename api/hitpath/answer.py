"""The hit path's WSGI middleware: a cached tile, or a 304, answered without Flask.

What the Flask path does on a hit, and where it is done here:

- size bounds and path checks (api/middleware/limits.py): the path's length, and the
  shapes (api/hitpath/shapes.py) match no empty, dot or backslash segment;
- the Host check (api/middleware/publicurl.py): a Host that is not a host name goes to
  Flask (its 400); valid ones are remembered;
- access (api/middleware/access.py): ``open`` mode, or ``signed`` with the grant in the
  query (one HMAC, api/middleware/signed.py ``verify_path``; max-age cut to the grant's
  time left); a missing or refused grant goes to Flask (its 401/403), as does the grant
  in the path. ``girder`` mode and rate limits stay on the Flask path: :func:`install`
  does not put the hit path in front then;
- the request id and the HTTP counters (api/middleware/observe.py): the client's sane
  ``X-Request-Id`` or a new one, counted in memory by route template and status class;
- the generation (api/miss/generations.py memo) and ``gen`` (api/middleware/versioned.py):
  an old ``gen`` goes to Flask (its 404), the current one makes the answer immutable;
- the key, ETag, If-None-Match and 304 (api/http.py), the GET that also records the
  viewing now and then (api/miss/answers.py ``cached``), the hit counter;
- the CORS headers of read routes (api/middleware/cors.py ``read_headers``);
- with prefetch on, the hit handed to the prefetch thread (api/miss/prefetch.py), which
  names the viewer there: a queue put on the request's path.

A miss, an unknown item or any error (Redis down) goes to Flask, which answers it as before
(a miss costs the hit path's GET once more; a render costs far more).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.http import parse_etags

from tilecast.api.hitpath.shapes import Route, match, routes_of
from tilecast.api.http import CACHE_HEADER, etag_for
from tilecast.api.middleware.cors import read_headers
from tilecast.api.middleware.publicurl import HOST
from tilecast.api.middleware.signed import cut_max_age, raw_path, verify_path
from tilecast.api.middleware.versioned import GENERATION_HEADER, gone, immutable
from tilecast.api.miss.answers import HIT, cached, not_modified
from tilecast.api.miss.prefetch import RawHit
from tilecast.api.parsing import parse_encoding
from tilecast.api.services import EXTENSION, Services
from tilecast.common import counters, signing
from tilecast.common.counters import http_request_field
from tilecast.common.errors import TilecastError
from tilecast.common.keys import cache_key
from tilecast.common.logs import REQUEST_ID_HEADER, accept_request_id
from tilecast.common.query import GENERATION
from tilecast.common.settings import Settings
from tilecast.common.style import style_hash
from tilecast.common.tiles import KIND_TILE

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
Headers = list[tuple[str, str]]
OPEN, SIGNED = "open", "signed"
MODES = (OPEN, SIGNED)  # the access modes the hit path decides by itself
# Valid Host headers seen (one or a few per deployment); past this the set starts afresh.
MAX_HOSTS = 64


class HitPath:
    """WSGI middleware answering tile hits of ``app`` itself, the rest through ``inner``."""

    def __init__(self, app: Flask, inner: WsgiApp, settings: Settings) -> None:
        self.inner = inner
        self.svc: Services = app.extensions[EXTENSION]
        self.routes = routes_of(app)
        self.max_path = settings.max_path_bytes
        encoding = parse_encoding({}, settings)  # a plain tile URL asks the default
        self.content_type = encoding.content_type
        self.key_tail = (style_hash(None), encoding.key_part)
        self.cache_control = self.svc.cache_control
        self.immutable = immutable(self.svc.cache_control)
        self.cors = read_headers(settings.cors_origins)
        # signed mode: the keys grants are verified with, and the grant's parameters.
        signed = settings.access_mode == SIGNED
        self.keys = signing.parse_keys(settings.signing_keys) if signed else None
        self.names = frozenset({GENERATION.name, *(signing.PARAMETERS if signed else ())})
        self.hosts: set[str] = set()
        self.hits = counters.api_hits(counters.KIND_TILE)
        self.prefetcher = self.svc.prefetcher
        self.counted = {
            (route, status): http_request_field("GET", status, route.template)
            for route in self.routes.values()
            for status in (200, 304)
        }

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") == "GET":
            try:
                answer = self.answer(environ)
            except Exception:
                # Redis down or any failure: Flask answers (its error mapping, its log),
                # never a bare server error from here. Nothing was counted yet.
                answer = None
            if answer is not None:
                status, headers, body = answer
                start_response(status, headers)
                return body
        return self.inner(environ, start_response)

    def answer(self, environ: dict[str, Any]) -> tuple[str, Headers, list[bytes]] | None:
        path = environ.get("PATH_INFO", "")
        if len(path) > self.max_path:
            return None
        target = match(self.routes, path, environ.get("QUERY_STRING", ""), self.names)
        if target is None or not self.host_ok(environ.get("HTTP_HOST")):
            return None
        svc = self.svc
        source = target.item_id
        expires = None
        if self.keys is not None:
            try:
                grant = verify_path(path, raw_path(environ), source, False, target.args, self.keys)
            except TilecastError:
                return None  # Flask's 400, 401 or 403
            expires = grant.expires
        try:
            current = svc.generations.get(source)
        except TilecastError:
            return None  # an unknown item: Flask's 404
        if target.gen is not None and gone(target.gen, current):
            return None  # generation_gone: Flask's 404
        generation = str(current)
        style, encoding = self.key_tail
        key = cache_key(
            KIND_TILE, source, current, target.frame, target.z, target.x, target.y, style, encoding
        )
        etag = etag_for(key)
        control = self.immutable if target.gen == generation else self.cache_control
        if expires is not None:
            control = cut_max_age(control, expires)
        head = [("ETag", f'"{etag}"'), ("Cache-Control", control)]
        tail = [
            (GENERATION_HEADER, generation),
            *self.cors(environ.get("HTTP_ORIGIN")),
            (REQUEST_ID_HEADER, accept_request_id(environ.get("HTTP_X_REQUEST_ID"))),
        ]
        if self.client_has(environ, etag):
            not_modified(svc, source)
            self.count(target.route, 304)
            return "304 NOT MODIFIED", head + tail, []
        data = cached(svc, key, source)
        if data is None:
            return None  # a miss: Flask dispatches the render
        svc.counters.add(self.hits)
        self.count(target.route, 200)
        if self.prefetcher is not None:
            self.prefetcher.after_raw_hit(
                RawHit(
                    source,
                    target.frame,
                    target.z,
                    target.x,
                    target.y,
                    current,
                    environ.get("REMOTE_ADDR", ""),
                    environ.get("HTTP_X_FORWARDED_FOR"),
                    environ.get("HTTP_USER_AGENT", ""),
                )
            )
        body = [
            (CACHE_HEADER, HIT),
            ("Content-Type", self.content_type),
            ("Content-Length", str(len(data))),
        ]
        return "200 OK", head + body + tail, [data]

    def count(self, route: Route, status: int) -> None:
        self.svc.counters.add(self.counted[(route, status)])

    def host_ok(self, host: str | None) -> bool:
        """Whether the Host is one publicurl.py lets through (absent, or a host name)."""
        if host is None or host in self.hosts:
            return True
        if not HOST.fullmatch(host):
            return False
        if len(self.hosts) >= MAX_HOSTS:
            self.hosts.clear()
        self.hosts.add(host)
        return True

    @staticmethod
    def client_has(environ: dict[str, Any], etag: str) -> bool:
        """api/http.py's test: the ETag among If-None-Match's, ``*`` ignored."""
        sent = environ.get("HTTP_IF_NONE_MATCH")
        if sent is None:
            return False
        tags = parse_etags(sent)
        return not tags.star_tag and tags.contains_weak(etag)


def install(app: Flask, settings: Settings) -> None:
    """Put the hit path in front of everything (after publicurl.install, which must see
    the environ before Flask), in the modes it answers exactly as Flask would."""
    if not settings.hit_path or settings.access_mode not in MODES or settings.rate_limit > 0:
        return
    app.wsgi_app = HitPath(app, app.wsgi_app, settings)  # type: ignore[method-assign]
