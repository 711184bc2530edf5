"""Where absolute URLs point: the IIIF ``id``, the ``/iiif/{id}`` redirect, TileJSON's
``tiles`` and anything else built with ``_external=True`` or from ``request.host_url``.

- ``TILECAST_PUBLIC_URL`` set (``https://tiles.example.org`` or with a path prefix,
  ``https://example.org/tiles``): every absolute URL starts with it, whatever ``Host``
  or ``X-Forwarded-*`` a request carries, and relative ones (``Location`` of a new job)
  carry its path prefix. Set it behind any proxy or CDN.
- Otherwise the request's own ``Host`` is used, only when it is a host name, an IPv4
  address or a bracketed IPv6 address with an optional port; any other ``Host`` is a 400
  naming it (RFC 9112 3.2: an invalid Host field is a 400), never pasted into a URL.
  ``X-Forwarded-Proto``, ``X-Forwarded-Host`` and ``X-Forwarded-Prefix`` are honoured
  only from a peer in ``TILECAST_TRUSTED_PROXIES`` (the right-most value: the one that
  proxy set), and only when they are well formed; from anyone else they are ignored.

:class:`PublicOrigin` is WSGI middleware, outermost, because Flask binds its URL
adapter to the environ before any request hook runs.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, request

from tilecast.api.middleware.ratelimit import Network, parse_proxies
from tilecast.common.errors import BadRequest, ConfigurationError
from tilecast.common.settings import Settings

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|\[[0-9A-Fa-f:.]{{2,45}}\])(?::[0-9]{{1,5}})?")
PREFIX = re.compile(r"(?:/[A-Za-z0-9._~!$&'()*+,;=:@%-]+)*")
SCHEMES = ("http", "https")
BAD_HOST = "tilecast.bad_host"


def parse_public_url(url: str) -> tuple[str, str, str]:
    """``(scheme, host[:port], path prefix)`` of TILECAST_PUBLIC_URL."""
    parts = urlsplit(url.strip())
    prefix = parts.path.rstrip("/")
    if (
        parts.scheme not in SCHEMES
        or not HOST.fullmatch(parts.netloc)
        or parts.query
        or parts.fragment
        or not PREFIX.fullmatch(prefix)
    ):
        raise ConfigurationError(
            f"TILECAST_PUBLIC_URL={url!r}: an http(s) URL with a host name and an optional "
            "path, like https://tiles.example.org or https://example.org/tiles"
        )
    return parts.scheme, parts.netloc, prefix


class PublicOrigin:
    def __init__(self, app: Any, public_url: str, proxies: Iterable[Network]) -> None:
        self.app = app
        self.public = parse_public_url(public_url) if public_url.strip() else None
        self.proxies = tuple(proxies)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST")
        if host is not None and not HOST.fullmatch(host):
            environ[BAD_HOST] = host
            environ["HTTP_HOST"] = _server_address(environ)
        if self.public is not None:
            scheme, netloc, prefix = self.public
            environ["wsgi.url_scheme"] = scheme
            environ["HTTP_HOST"] = netloc
            environ["SCRIPT_NAME"] = prefix
        elif self.proxies and self._trusted(environ.get("REMOTE_ADDR", "")):
            self._forwarded(environ)
        return self.app(environ, start_response)  # type: ignore[no-any-return]

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.proxies)

    @staticmethod
    def _forwarded(environ: dict[str, Any]) -> None:
        proto = _last(environ.get("HTTP_X_FORWARDED_PROTO"))
        if proto in SCHEMES:
            environ["wsgi.url_scheme"] = proto
        host = _last(environ.get("HTTP_X_FORWARDED_HOST"))
        if host and HOST.fullmatch(host):
            environ["HTTP_HOST"] = host
        prefix = _last(environ.get("HTTP_X_FORWARDED_PREFIX"))
        if prefix and PREFIX.fullmatch(prefix.rstrip("/")):
            environ["SCRIPT_NAME"] = prefix.rstrip("/")


def _last(value: str | None) -> str | None:
    return value.split(",")[-1].strip() if value else None


def _server_address(environ: dict[str, Any]) -> str:
    name = str(environ.get("SERVER_NAME") or "localhost")
    name = f"[{name}]" if ":" in name and not name.startswith("[") else name
    return f"{name}:{environ.get('SERVER_PORT') or 80}"


def install(app: Flask, settings: Settings) -> None:
    """Last of all: the middleware must see the environ first."""
    app.wsgi_app = PublicOrigin(  # type: ignore[method-assign]
        app.wsgi_app, settings.public_url, parse_proxies(settings.trusted_proxies)
    )

    @app.before_request
    def refuse_bad_host() -> None:
        bad = request.environ.get(BAD_HOST)
        if bad is not None:
            raise BadRequest(f"the Host header {bad[:100]!r} is not a host name", parameter="Host")
