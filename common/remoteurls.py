"""URL sources (``s3://``, ``gs://``, ``az://``, ``http(s)://``): how a URL is parsed and
normalised, checked against the allow-list (``TILECAST_REMOTE_ALLOW``), and named in a
source record.

The allow-list is matched on the parsed, normalised URL, never on the text a client
sent, so that no spelling reaches what the list does not name:

- scheme and host are compared lowercased (a trailing dot dropped), ports compared as
  numbers with the scheme's default port omitted; numeric IPv4 hosts in any spelling
  ``inet_aton`` accepts (``2130706433``, ``0x7f.1``) become dotted quads first;
- the path is percent-decoded once; ``.`` and ``..`` segments (also as ``%2e``), empty
  segments, an encoded ``/``, backslashes and control characters are refused, not
  resolved; the path is compared case-sensitively (keys and paths are);
- user information (``user@host``), query strings and fragments are refused;
- a prefix matches whole segments: ``https://h/data`` covers ``https://h/data/a.tif``,
  never ``https://h/database.tif``; ``https://h/data/`` covers what is below it;
- link-local hosts (``169.254.0.0/16``, ``fe80::/10``: cloud metadata endpoints) are
  refused even when an allow-list entry names them.

A record's path is the normalised URL, followed, when the source has options (endpoint,
anonymous access, requester-pays, region), by ``#`` and the options form-encoded in
name order: a client's URL never has a fragment, so the two cannot be confused.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from tilecast.common.errors import ConfigurationError, SourceRefused

OBJECT_STORE_SCHEMES = ("s3", "gs", "az")
HTTP_SCHEMES = ("http", "https")
# A study's series on a DICOMweb server: the service's http(s) URL behind "dicomweb+",
# so that only allow-list entries written with that scheme admit DICOMweb sources (and
# the DICOMweb credentials are sent to no other URL).
DICOMWEB_SCHEMES = ("dicomweb+http", "dicomweb+https")
SCHEMES = OBJECT_STORE_SCHEMES + HTTP_SCHEMES + DICOMWEB_SCHEMES
DEFAULT_PORTS = {"http": 80, "https": 443, "dicomweb+http": 80, "dicomweb+https": 443}
# .../studies/{StudyInstanceUID}/series/{SeriesInstanceUID}: UIDs are digits and dots,
# at most 64 characters (DICOM PS3.5 9.1).
DICOMWEB_SERIES = re.compile(r"^(.*)/studies/([0-9.]{1,64})/series/([0-9.]{1,64})$")
MAX_URL_LENGTH = 2048
# What quote() leaves as it is in a path: RFC 3986's sub-delims, ":" and "@".
PATH_SAFE = "/~!$&'()*+,;=:@"
# Bucket, container: what S3, GCS and Azure accept (lowercase after parsing).
BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]$")
REGION = re.compile(r"^[a-z0-9-]{1,32}$")
# Options each scheme takes in a POST /sources body (besides "url").
OPTIONS_BY_SCHEME: dict[str, frozenset[str]] = {
    "s3": frozenset({"endpoint_url", "anonymous", "requester_pays", "region"}),
    "gs": frozenset({"anonymous"}),
    "az": frozenset({"endpoint_url", "anonymous"}),
    "http": frozenset(),
    "https": frozenset(),
    "dicomweb+http": frozenset(),
    "dicomweb+https": frozenset(),
}
LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))


@dataclass(frozen=True)
class RemoteUrl:
    """A parsed, normalised URL. ``path`` is percent-decoded and starts with ``/``."""

    scheme: str
    host: str  # the bucket or container for object stores
    port: int | None
    path: str

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{host}{port}{quote(self.path, safe=PATH_SAFE)}"

    @property
    def is_prefix(self) -> bool:
        """A URL ending with ``/`` names what is below it (an OME-Zarr store)."""
        return self.path.endswith("/")

    @property
    def key(self) -> str:
        """The object's key (or a prefix's) in its bucket: the path without its ``/``."""
        return self.path[1:]

    def covers(self, other: RemoteUrl) -> bool:
        """Whether ``other`` is this prefix or below it (whole segments)."""
        if (self.scheme, self.host, self.port) != (other.scheme, other.host, other.port):
            return False
        if self.path.endswith("/"):
            return other.path.startswith(self.path)
        return other.path == self.path or other.path.startswith(self.path + "/")

    def child(self, key: str) -> RemoteUrl:
        """The URL of ``key`` below this prefix (``key`` checked as a path is)."""
        return parse_url(str(self) + quote(key, safe=PATH_SAFE))


@dataclass(frozen=True)
class DicomWebSeries:
    """The series a ``dicomweb+http(s)://`` URL names: the DICOMweb service's root
    (an http(s) URL, without a trailing ``/``), the study and the series."""

    root: str
    study: str
    series: str


def dicomweb_series(url: RemoteUrl) -> DicomWebSeries:
    """The series ``url`` names; SourceRefused (400, ``url``) unless its path ends with
    ``/studies/{study}/series/{series}``."""
    match = DICOMWEB_SERIES.match(url.path)
    if url.scheme not in DICOMWEB_SCHEMES or match is None:
        raise refuse(
            "a DICOMweb url names a series: dicomweb+https://host/{service}/studies/"
            "{StudyInstanceUID}/series/{SeriesInstanceUID}"
        )
    service, study, series = match.groups()
    for uid in (study, series):
        if uid.startswith(".") or uid.endswith(".") or ".." in uid:
            raise refuse("a DICOMweb url's study and series are UIDs (digits and dots)")
    plain = RemoteUrl(url.scheme.removeprefix("dicomweb+"), url.host, url.port, service or "/")
    return DicomWebSeries(str(plain).rstrip("/"), study, series)


@dataclass(frozen=True)
class RemoteOptions:
    """Per-source options of an object store (validated by :func:`parse_options`)."""

    endpoint_url: str | None = None
    anonymous: bool = False
    requester_pays: bool = False
    region: str | None = None

    def encoded(self) -> str:
        """The options that differ from the defaults, form-encoded in name order."""
        pairs = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                pairs.append((f.name, "1" if value is True else str(value)))
        return urlencode(sorted(pairs))


@dataclass(frozen=True)
class RemoteSource:
    """What a URL source's record names: the URL and how to read it."""

    url: RemoteUrl
    options: RemoteOptions = RemoteOptions()

    def locator(self) -> str:
        """The record's path (see the module's text)."""
        encoded = self.options.encoded()
        return f"{self.url}#{encoded}" if encoded else str(self.url)

    @property
    def source_id(self) -> str:
        """A stable 24-hex id: one URL with one set of options, one id."""
        return hashlib.sha256(("url:" + self.locator()).encode()).hexdigest()[:24]


def refuse(message: str, parameter: str = "url") -> SourceRefused:
    return SourceRefused(message, parameter=parameter)


def parse_url(text: Any) -> RemoteUrl:
    """``text`` parsed and normalised; SourceRefused (400, naming ``url``) when it is not
    a URL tilecast reads or cannot be named unambiguously."""
    if not isinstance(text, str) or not text:
        raise refuse("url must be a non-empty string")
    if len(text) > MAX_URL_LENGTH:
        raise refuse(f"url is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in text) or "\\" in text:
        raise refuse("url holds spaces, control characters or backslashes")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise refuse(f"url is malformed ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise refuse(f"url must start with one of {', '.join(s + '://' for s in SCHEMES)}")
    if "@" in parts.netloc:
        raise refuse("url may not carry user information (user@host)")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise refuse("url may not carry a query string or a fragment")
    host = _host(parts.hostname or "", scheme)
    if scheme in OBJECT_STORE_SCHEMES and port is not None:
        raise refuse(f"a {scheme}:// url names a bucket, not a host and port")
    if port is not None and not 0 < port < 65536:
        raise refuse("url's port is out of range")
    if port == DEFAULT_PORTS.get(scheme):
        port = None
    return RemoteUrl(scheme, host, port, _path(parts.path))


def _host(host: str, scheme: str) -> str:
    host = host.lower().rstrip(".")
    if not host or not host.isascii():
        raise refuse("url must name a host (ASCII; internationalised names in punycode)")
    if scheme in OBJECT_STORE_SCHEMES:
        if not BUCKET.match(host):
            raise refuse(f"url must name a bucket after {scheme}://")
        return host
    address = _address(host)
    if address is None:
        if not re.fullmatch(r"[a-z0-9.-]+", host) or ".." in host:
            raise refuse("url's host is not a valid host name")
        return host
    if any(address in network for network in LINK_LOCAL):
        raise refuse("url names a link-local address, which is never read")
    return str(address)


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a numeric host names (every spelling the resolver accepts)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if re.fullmatch(r"[0-9a-fx.]+", host) and not re.search(r"[g-wyz]", host):
        try:  # 2130706433, 0x7f.1, 127.1: what inet_aton (and so the resolver) reads
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _path(raw: str) -> str:
    if re.search(r"%2f|%5c|%00", raw, re.IGNORECASE):
        raise refuse("url's path may not hold an encoded '/', '\\' or NUL")
    path = unquote(raw, errors="strict") if raw else "/"
    if not path.startswith("/"):
        path = "/" + path
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in path) or "\\" in path:
        raise refuse("url's path holds control characters or backslashes")
    segments = path[1:].split("/")
    inner = segments[:-1] if path.endswith("/") else segments
    if path != "/" and any(s in ("", ".", "..") for s in inner):
        raise refuse("url's path may not hold '.', '..' or empty segments")
    return path


def parse_allow_list(text: str) -> tuple[RemoteUrl, ...]:
    """``TILECAST_REMOTE_ALLOW``: comma-separated URL prefixes; ConfigurationError for
    one that is no URL tilecast reads."""
    prefixes = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            prefixes.append(parse_url(entry))
        except SourceRefused as exc:
            raise ConfigurationError(
                f"TILECAST_REMOTE_ALLOW entry {entry!r}: {exc.message}"
            ) from None
    return tuple(prefixes)


def parse_endpoints(text: str) -> tuple[RemoteUrl, ...]:
    """``TILECAST_REMOTE_ENDPOINTS``: the endpoints a source may name (http(s) URLs)."""
    endpoints = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            url = parse_url(entry)
        except SourceRefused as exc:
            raise ConfigurationError(
                f"TILECAST_REMOTE_ENDPOINTS entry {entry!r}: {exc.message}"
            ) from None
        if url.scheme not in HTTP_SCHEMES:
            raise ConfigurationError(f"TILECAST_REMOTE_ENDPOINTS entry {entry!r}: not http(s)")
        endpoints.append(_endpoint_root(url))
    return tuple(endpoints)


def _endpoint_root(url: RemoteUrl) -> RemoteUrl:
    return RemoteUrl(url.scheme, url.host, url.port, url.path.rstrip("/") or "/")


def check_allowed(url: RemoteUrl, allowed: tuple[RemoteUrl, ...]) -> None:
    """SourceRefused (400) unless an allow-list prefix covers ``url``."""
    if not allowed:
        raise refuse("URL sources are not enabled on this server (TILECAST_REMOTE_ALLOW)")
    if not any(prefix.covers(url) for prefix in allowed):
        raise refuse("url is not under any prefix this server may read (TILECAST_REMOTE_ALLOW)")


def parse_options(
    body: dict[str, Any], url: RemoteUrl, endpoints: tuple[RemoteUrl, ...]
) -> RemoteOptions:
    """The options of a ``POST /sources`` body beside ``url``, checked for its scheme;
    SourceRefused (400) naming the option at fault."""
    accepted = OPTIONS_BY_SCHEME[url.scheme]
    for name in body:
        if name == "url":
            continue
        if name not in OPTIONS_BY_SCHEME["s3"]:
            raise refuse(f"unknown option {name!r} of a URL source", parameter=name)
        if name not in accepted:
            raise refuse(f"{name} does not apply to {url.scheme}:// sources", parameter=name)
    for name in ("anonymous", "requester_pays"):
        if not isinstance(body.get(name, False), bool):
            raise refuse(f"{name} must be true or false", parameter=name)
    region = body.get("region")
    if region is not None and (not isinstance(region, str) or not REGION.match(region)):
        raise refuse("region must be a region name such as eu-west-1", parameter="region")
    endpoint = body.get("endpoint_url")
    if endpoint is not None:
        endpoint = _checked_endpoint(endpoint, endpoints)
    return RemoteOptions(
        endpoint_url=endpoint,
        anonymous=body.get("anonymous", False),
        requester_pays=body.get("requester_pays", False),
        region=region,
    )


def _checked_endpoint(text: Any, endpoints: tuple[RemoteUrl, ...]) -> str:
    """An endpoint is where requests go (and where signed credentials are sent): only
    the operator's list may name one, or any client could aim the server anywhere."""
    try:
        url = _endpoint_root(parse_url(text))
    except SourceRefused as exc:
        raise refuse(f"endpoint_url: {exc.message}", parameter="endpoint_url") from None
    if url.scheme not in HTTP_SCHEMES:
        raise refuse("endpoint_url must be an http(s) URL", parameter="endpoint_url")
    if url not in endpoints:
        raise refuse(
            "endpoint_url is not one this server may use (TILECAST_REMOTE_ENDPOINTS)",
            parameter="endpoint_url",
        )
    return str(url).rstrip("/")


def remote_source(
    body: dict[str, Any], allowed: tuple[RemoteUrl, ...], endpoints: tuple[RemoteUrl, ...]
) -> RemoteSource:
    """The URL source a ``POST /sources`` body names, allowed and with checked options."""
    url = parse_url(body.get("url"))
    if url.scheme in DICOMWEB_SCHEMES:
        dicomweb_series(url)  # a series, or a 400 before anything is fetched
    check_allowed(url, allowed)
    return RemoteSource(url, parse_options(body, url, endpoints))


def parse_locator(path: str) -> RemoteSource | None:
    """The URL source a record's path names; None for any other path (a local file,
    ``girder://item/...``). A locator is written by tilecast: a malformed one is
    refused like a client's URL."""
    if not is_remote_path(path):
        return None
    text, _, encoded = path.partition("#")
    url = parse_url(text)
    values = dict(parse_qsl(encoded, keep_blank_values=True))
    return RemoteSource(
        url,
        RemoteOptions(
            endpoint_url=values.get("endpoint_url"),
            anonymous=values.get("anonymous") == "1",
            requester_pays=values.get("requester_pays") == "1",
            region=values.get("region"),
        ),
    )


def is_remote_path(path: str) -> bool:
    """Whether a record's path names a URL source (by its scheme alone)."""
    return "://" in path and path.split("://", 1)[0].lower() in SCHEMES
