"""DNS rebinding (workers/remote/pinned.py): a listed host name whose DNS answer is an
internal address is not connected to, for plain HTTP(S) objects and DICOMweb servers,
unless the allow-list names that address and port; the address checked is the one
connected to, and TLS still checks the certificate against the host name.

The resolver is patched at ``socket.getaddrinfo``: a made-up name answers the tests'
loopback servers' address (or a link-local one)."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.remoteservers import RangeServer
from tilecast.common.errors import SourceRefused
from tilecast.common.remoteurls import RemoteSource, parse_allow_list, parse_url
from tilecast.common.settings import Settings
from tilecast.workers.remote.dicomweb import GuardedSession
from tilecast.workers.remote.opening import RemoteReader
from tilecast.workers.remote.pinned import AddressPolicy, pinned_session

NAME = "tiles.example.test"


@pytest.fixture
def answers(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """What the resolver answers for NAME (other names resolve as usual)."""
    table: dict[str, list[str]] = {NAME: ["127.0.0.1"]}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host in table:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port) if ":" not in a else (a, port, 0, 0))
                for a in table[host]
            ]  # fmt: skip
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RangeServer]:
    root = tmp_path_factory.mktemp("pinned")
    (root / "a.bin").write_bytes(bytes(range(256)) * 64)
    server = RangeServer(root)
    yield server
    server.close()


def _port(server: RangeServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def settings(allow: str) -> Settings:
    return Settings(remote_allow=allow, remote_block_ttl=0, remote_retries=0).resolved()


def open_object(url: str, allow: str) -> bytes:
    reader = RemoteReader(settings(allow))
    try:
        file = reader.open(RemoteSource(parse_url(url))).file
        return bytes(file.read(0, 16))
    finally:
        reader.close()


# -- the policy -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "port", "refusal"),
    [
        ("127.0.0.1", 8080, None),  # listed by address and port
        ("127.0.0.1", 8081, "loopback"),
        ("127.0.0.2", 8080, "loopback"),
        ("::1", 443, "loopback"),
        ("::ffff:127.0.0.1", 8081, "loopback"),
        ("::ffff:127.0.0.1", 8080, None),
        ("169.254.169.254", 80, "link-local"),
        ("fe80::1", 80, "link-local"),
        ("0.0.0.0", 80, "unspecified"),
        ("0.1.2.3", 80, "unspecified"),
        ("::", 80, "unspecified"),
        ("224.0.0.1", 80, "multicast"),
        ("ff02::1", 80, "multicast"),
        ("255.255.255.255", 80, "reserved"),
        ("10.1.2.3", 80, None),  # private ranges: stores on a site's network
        ("192.168.1.10", 9000, None),
        ("fd00::5", 80, None),
        ("93.184.216.34", 443, None),
        ("10.0.0.7", 443, None),  # listed by name: nothing special
    ],
)
def test_the_policy_of_an_allow_list(address: str, port: int, refusal: str | None) -> None:
    allowed = parse_allow_list(
        "http://127.0.0.1:8080/data/,https://store.lan/,s3://bucket/,"
        "dicomweb+http://[::1]:8042/dicom-web/"
    )
    policy = AddressPolicy.of(allowed)
    assert policy.refusal(ipaddress.ip_address(address), port) == refusal
    assert policy.refusal(ipaddress.ip_address("::1"), 8042) is None


# -- plain HTTP objects ---------------------------------------------------------------------


def test_a_listed_name_resolving_to_the_loopback_is_refused(
    http: RangeServer, answers: dict[str, list[str]]
) -> None:
    url = f"http://{NAME}:{_port(http)}/a.bin"
    mark = http.log.mark()
    with pytest.raises(SourceRefused, match="loopback") as caught:
        open_object(url, f"http://{NAME}:{_port(http)}/")
    assert caught.value.status == 400 and caught.value.parameter == "url"
    assert http.log.since(mark, "HEAD") == []  # never connected
    # Listed by address and port as well: the server on the loopback is read.
    allow = f"http://{NAME}:{_port(http)}/,{http.url}/"
    assert open_object(url, allow) == bytes(range(16))


def test_localhost_is_refused_unless_listed_by_address(http: RangeServer) -> None:
    url = f"http://localhost:{_port(http)}/a.bin"
    with pytest.raises(SourceRefused, match="loopback"):
        open_object(url, f"http://localhost:{_port(http)}/")
    # Another port of the same address listed: not this one.
    with pytest.raises(SourceRefused):
        open_object(url, f"http://localhost:{_port(http)}/,http://127.0.0.1:{_port(http) ^ 1}/")


def test_a_name_turning_link_local_is_refused_even_beside_a_listed_address(
    http: RangeServer, answers: dict[str, list[str]]
) -> None:
    answers[NAME] = ["169.254.169.254"]
    allow = f"http://{NAME}:{_port(http)}/,{http.url}/"
    with pytest.raises(SourceRefused, match=r"link-local.*never read"):
        open_object(f"http://{NAME}:{_port(http)}/a.bin", allow)


def test_the_address_connected_to_is_the_address_checked(
    http: RangeServer, answers: dict[str, list[str]]
) -> None:
    """An answer mixing a refused address with an accepted one: only the accepted one
    is connected to (the link-local one first would otherwise time out)."""
    answers[NAME] = ["169.254.169.254", "127.0.0.1"]
    session = pinned_session(settings(f"http://{NAME}:{_port(http)}/,{http.url}/"), 1, 1)
    with session:
        answer = session.get(f"http://{NAME}:{_port(http)}/a.bin", timeout=2)
        assert answer.status_code == 200
        # The rebinding: the name now answers an unlisted loopback address. A new
        # connection checks it again.
        answers[NAME] = ["127.0.0.2"]
        session.close()
        with pytest.raises(SourceRefused):
            session.get(f"http://{NAME}:{_port(http)}/a.bin", timeout=2)


# -- DICOMweb -------------------------------------------------------------------------------


def test_a_dicomweb_server_name_resolving_to_the_loopback_is_refused(
    http: RangeServer, answers: dict[str, list[str]]
) -> None:
    place = f"http://{NAME}:{_port(http)}"
    listed = f"dicomweb+{place}/dicom-web/"
    with GuardedSession(place, settings(listed)) as session, pytest.raises(SourceRefused):
        session.get(f"{place}/a.bin")
    # The same server listed by its address too: read.
    with GuardedSession(place, settings(f"{listed},dicomweb+{http.url}/")) as session:
        assert session.get(f"{place}/a.bin").content[:4] == bytes(range(4))


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, list[str]]]:
    """An HTTPS server on the loopback whose certificate names NAME only; the URL's
    port, the certificate (to trust), and the SNI names clients sent."""
    folder = tmp_path_factory.mktemp("tls")
    certificate, key = _self_signed(folder, NAME)
    names: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    context.sni_callback = lambda sock, name, ctx: names.append(str(name))  # type: ignore[assignment,misc]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield str(server.server_address[1]), certificate, names
    server.shutdown()
    server.server_close()


def test_tls_checks_the_host_name_on_the_pinned_address(
    tls: tuple[str, Path, list[str]], answers: dict[str, list[str]]
) -> None:
    port, certificate, names = tls
    allow = f"https://{NAME}:{port}/,https://127.0.0.1:{port}/"
    with pinned_session(settings(allow), 1, 1) as session:
        answer = session.get(f"https://{NAME}:{port}/x", verify=str(certificate), timeout=5)
        assert answer.content == b"ok" and names[-1] == NAME
        # The certificate names NAME, not the address: asked by address, it is refused.
        with pytest.raises(requests.exceptions.SSLError):
            session.get(f"https://127.0.0.1:{port}/x", verify=str(certificate), timeout=5)


def _self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certificate_path, key_path = folder / "cert.pem", folder / "key.pem"
    certificate_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate_path, key_path
