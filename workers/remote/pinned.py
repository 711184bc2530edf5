"""Connections to HTTP(S) and DICOMweb servers made to an address checked as it is
connected to: what the allow-list cannot see, a listed host name whose DNS answer is (or
becomes) an internal address -- DNS rebinding.

Each new connection resolves its host and connects only to an address :class:`AddressPolicy`
accepts, that very address (never a second resolution between the check and the
connect); TLS still sends the host name (SNI) and checks the certificate against it,
since only the socket underneath is made here. Refused:

- link-local addresses (``169.254.0.0/16``, ``fe80::/10``: cloud metadata services),
  always;
- loopback, multicast, unspecified (``0.0.0.0/8``, ``::``) and reserved addresses, unless
  an allow-list entry names that exact address and port (``http://127.0.0.1:8080/``: a
  server on the worker's own host is read only when the operator lists it by number);
- private ranges are accepted: sites keep their stores on private networks.

A name whose every address is refused is ``SourceRefused`` (400 naming ``url``). Not
covered: requests through a proxy from the worker's environment (``HTTPS_PROXY``: the
proxy resolves the name), and object stores read through obstore (S3, GCS, Azure).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from collections.abc import Iterable
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

from tilecast.common.errors import SourceRefused
from tilecast.common.remoteurls import DEFAULT_PORTS, LINK_LOCAL, RemoteUrl
from tilecast.common.settings import Settings

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # "this host": connects to the loopback


class AddressPolicy:
    """Which addresses a connection may be made to (see the module's text)."""

    def __init__(self, listed: Iterable[tuple[Address, int]] = ()) -> None:
        self.listed = frozenset((_unmapped(address), port) for address, port in listed)

    @classmethod
    def of(cls, allowed: Iterable[RemoteUrl]) -> AddressPolicy:
        """The policy of an allow-list: its entries that name a host by address."""
        listed = []
        for url in allowed:
            port = url.port or DEFAULT_PORTS.get(url.scheme)
            try:
                address = ipaddress.ip_address(url.host)
            except ValueError:
                continue  # a name (or a bucket): it lists no address
            if port is not None:
                listed.append((address, port))
        return cls(listed)

    def refusal(self, address: Address, port: int) -> str | None:
        """None when ``address:port`` may be connected to; else what kind of address it
        is, for the refusal's message."""
        address = _unmapped(address)
        if any(address in network for network in LINK_LOCAL):
            return "link-local"
        if (address, port) in self.listed:
            return None
        if address.is_loopback:
            return "loopback"
        if address.is_multicast:
            return "multicast"
        if address.is_unspecified or address in THIS_NETWORK:
            return "unspecified"
        if address.is_reserved:
            return "reserved"
        return None


def _unmapped(address: Address) -> Address:
    """``::ffff:127.0.0.1`` is 127.0.0.1 to the kernel: checked as such."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def pinned_socket(connection: HTTPConnection, policy: AddressPolicy) -> socket.socket:
    """A socket connected to an address of ``connection``'s host the policy accepts (the
    first that answers); SourceRefused when it accepts none of them."""
    host, port = connection._dns_host, connection.port  # the name asked of the resolver
    try:
        answers = socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise NameResolutionError(connection.host, connection, exc) from exc
    usable = []
    refusals = []
    for family, kind, proto, _name, sockaddr in answers:
        address = ipaddress.ip_address(sockaddr[0])
        reason = policy.refusal(address, port)
        if reason is None:
            usable.append((family, kind, proto, sockaddr))
        else:
            refusals.append(reason)
            log.warning("%s resolves to %s (%s): not connected to", host, address, reason)
    if not usable:
        raise _refused(host, refusals)
    error: OSError | None = None
    for family, kind, proto, sockaddr in usable:
        sock = socket.socket(family, kind, proto)
        try:
            for option in connection.socket_options or ():
                sock.setsockopt(*option)
            if isinstance(connection.timeout, int | float):
                sock.settimeout(connection.timeout)
            if connection.source_address:
                sock.bind(connection.source_address)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        sys.audit("http.client.connect", connection, connection.host, port)
        return sock
    if isinstance(error, TimeoutError):
        message = f"Connection to {connection.host} timed out"
        raise ConnectTimeoutError(connection, message) from error
    raise NewConnectionError(connection, f"Failed to establish a new connection: {error}")


def _refused(host: str, refusals: list[str]) -> SourceRefused:
    kinds = " and ".join(sorted(set(refusals))) or "no"
    why = (
        "which is never read"
        if kinds == "link-local"
        else "read only when TILECAST_REMOTE_ALLOW names that address and port"
    )
    return SourceRefused(f"url's host {host} resolves to {kinds} addresses, {why}", parameter="url")


class PinnedHTTPConnection(HTTPConnection):
    policy = AddressPolicy()

    def _new_conn(self) -> socket.socket:
        return pinned_socket(self, self.policy)


class PinnedHTTPSConnection(HTTPSConnection):
    policy = AddressPolicy()

    def _new_conn(self) -> socket.socket:
        return pinned_socket(self, self.policy)


class PinnedAdapter(HTTPAdapter):
    """A ``requests`` transport adapter whose direct connections are pinned (proxied ones,
    made by ``requests``' proxy managers, are not)."""

    def __init__(self, policy: AddressPolicy, **kwargs: Any) -> None:
        self.policy = policy  # before HTTPAdapter's __init__ makes the pool manager
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        attributes = {"policy": self.policy}
        http = type("PolicyHTTPConnection", (PinnedHTTPConnection,), attributes)
        https = type("PolicyHTTPSConnection", (PinnedHTTPSConnection,), attributes)
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("PinnedPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            "https": type("PinnedTLSPool", (HTTPSConnectionPool,), {"ConnectionCls": https}),
        }


def pinned_session(settings: Settings, connections: int, pool_size: int) -> requests.Session:
    """A session whose connections are checked against ``settings``' allow-list."""
    session = requests.Session()
    mount_pinned(session, settings, connections, pool_size)
    return session


def mount_pinned(
    session: requests.Session, settings: Settings, connections: int, pool_size: int
) -> None:
    adapter = PinnedAdapter(
        AddressPolicy.of(settings.remote_allowed),
        pool_connections=connections,
        pool_maxsize=pool_size,
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
