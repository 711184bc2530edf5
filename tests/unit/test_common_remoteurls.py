"""URL sources' allow-list (common/remoteurls.py): matched on parsed, normalised URLs, so
that no spelling of a URL reaches what the list does not name; and ``POST /sources``
answering every refusal with a 400 JSON body before anything is fetched."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from tests.unit.fakes import FakeSender
from tilecast.api.app import create_app
from tilecast.api.services import EXTENSION, Services
from tilecast.common.errors import ConfigurationError, SourceRefused
from tilecast.common.remoteurls import (
    RemoteOptions,
    RemoteSource,
    check_allowed,
    parse_allow_list,
    parse_locator,
    parse_url,
    remote_source,
)
from tilecast.common.settings import Settings

ALLOW = "s3://bucket/slides/,https://images.example.org/data,http://127.0.0.1:9000/pub/"
ENDPOINT = "http://127.0.0.1:9000"


def allowed(url: str) -> bool:
    try:
        check_allowed(parse_url(url), parse_allow_list(ALLOW))
    except SourceRefused:
        return False
    return True


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/slides/a.tiff",
        "S3://BUCKET/slides/a.tiff",  # scheme and bucket are case-insensitive
        "s3://bucket/slides/deep/er/a.svs",
        "s3://bucket/slides/image.zarr/",
        "https://images.example.org/data",
        "https://images.example.org/data/a.tiff",
        "HTTPS://Images.Example.ORG./data/a.tiff",  # host case, trailing dot
        "https://images.example.org:443/data/a.tiff",  # the default port
        "https://images.example.org/data/a%20b.tiff",
        "http://127.0.0.1:9000/pub/a.tiff",
        # The same address in the spellings the resolver reads: the same host.
        "http://2130706433:9000/pub/a.tiff",
        "http://0x7f.1:9000/pub/a.tiff",
    ],
)
def test_urls_under_an_allowed_prefix_are_allowed(url: str) -> None:
    assert allowed(url)


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/other/a.tiff",
        "s3://bucket/Slides/a.tiff",  # keys are case-sensitive
        "s3://bucket2/slides/a.tiff",
        "s3://bucket/slides/../secret/a.tiff",
        "s3://bucket/slides/%2e%2e/secret/a.tiff",
        "s3://bucket/slides//a.tiff",
        "https://images.example.org/database.tiff",  # a prefix matches whole segments
        "https://images.example.org/data/../admin",
        "https://images.example.org/data/./a.tiff",
        "https://images.example.org/data%2f..%2fadmin",
        "https://images.example.org@evil.example/data/a.tiff",  # userinfo
        "https://user:pw@images.example.org/data/a.tiff",
        "https://images.example.org:8443/data/a.tiff",  # another port
        "http://images.example.org/data/a.tiff",  # another scheme
        "https://images.example.org/data/a.tiff?x=1",
        "https://images.example.org/data/a.tiff#frag",
        "https://images.example.org.evil.example/data/a.tiff",
        "https://images.example.org\\@evil/data",
        "http://127.0.0.1:9001/pub/a.tiff",
        "http://127.0.0.1/pub/a.tiff",
        "http://localhost:9000/pub/a.tiff",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/x",
        "file:///etc/passwd",
        "gopher://images.example.org/data",
        "https://images.example.org/data/a\x00.tiff",
        "https://images.example.org/data/a b.tiff",
        "",
    ],
)
def test_everything_else_is_refused(url: str) -> None:
    assert not allowed(url)


def test_numeric_hosts_are_normalised_and_link_local_ones_never_read() -> None:
    assert str(parse_url("http://2130706433:8000/a")) == "http://127.0.0.1:8000/a"
    assert str(parse_url("http://0x7f.0.0.1/a")) == "http://127.0.0.1/a"
    for url in ("http://169.254.169.254/", "http://0xa9fea9fe/", "http://[fe80::1]/"):
        with pytest.raises(SourceRefused, match="link-local"):
            parse_url(url)
    # Not even when the allow-list names one.
    with pytest.raises(ConfigurationError, match="link-local"):
        parse_allow_list("http://169.254.169.254/")


def test_an_allow_list_that_is_no_list_of_urls_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="TILECAST_REMOTE_ALLOW"):
        Settings(remote_allow="s3://bucket/,/local/dir").resolved()
    with pytest.raises(ConfigurationError, match="TILECAST_REMOTE_ENDPOINTS"):
        Settings(remote_endpoints="s3://bucket").resolved()


def test_a_locator_names_the_url_and_its_options() -> None:
    source = RemoteSource(
        parse_url("s3://bucket/slides/a%20b.tiff"),
        RemoteOptions(endpoint_url=ENDPOINT, anonymous=True, region="eu-west-1"),
    )
    locator = source.locator()
    assert locator.startswith("s3://bucket/slides/a%20b.tiff#")
    assert parse_locator(locator) == source
    assert parse_locator("/data/a.tiff") is None and parse_locator("girder://item/x") is None
    plain = RemoteSource(parse_url("https://images.example.org/data/a.tiff"))
    assert plain.locator() == "https://images.example.org/data/a.tiff"
    assert plain.source_id != source.source_id and len(plain.source_id) == 24


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"url": "s3://bucket/slides/a.tiff", "endpoint_url": "http://127.0.0.1:9999"},
         "endpoint_url"),
        ({"url": "s3://bucket/slides/a.tiff", "endpoint_url": "http://169.254.169.254"},
         "endpoint_url"),
        ({"url": "s3://bucket/slides/a.tiff", "anonymous": "yes"}, "anonymous"),
        ({"url": "s3://bucket/slides/a.tiff", "requester_pays": 1}, "requester_pays"),
        ({"url": "s3://bucket/slides/a.tiff", "region": "eu west"}, "region"),
        ({"url": "s3://bucket/slides/a.tiff", "colour": "red"}, "colour"),
        ({"url": "https://images.example.org/data/a.tiff", "anonymous": True}, "anonymous"),
        ({"url": 7}, "url"),
    ],
)  # fmt: skip
def test_options_are_checked(body: dict[str, object], parameter: str) -> None:
    with pytest.raises(SourceRefused) as caught:
        remote_source(body, parse_allow_list(ALLOW), parse_allow_list(ENDPOINT))
    assert caught.value.parameter == parameter


def test_good_options_are_kept() -> None:
    body = {
        "url": "s3://bucket/slides/a.tiff",
        "endpoint_url": ENDPOINT + "/",
        "anonymous": True,
        "requester_pays": True,
        "region": "eu-west-1",
    }
    source = remote_source(body, parse_allow_list(ALLOW), parse_allow_list(ENDPOINT))
    assert source.options == RemoteOptions(ENDPOINT, True, True, "eu-west-1")


# -- the api ------------------------------------------------------------------------------------


@pytest.fixture
def app(settings: Settings, state: redis.Redis) -> Iterator[Flask]:
    app = create_app(replace(settings, remote_allow=ALLOW, remote_endpoints=ENDPOINT))
    services: Services = app.extensions[EXTENSION]
    services.sender = FakeSender(state)
    yield app
    services.listener.stop()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://127.0.0.1:8080/pub/a.tiff"},
        {"url": "http://127.0.0.1:9000/private/a.tiff"},
        {"url": "http://169.254.169.254/latest/meta-data/iam/"},
        {"url": "https://images.example.org/data/../admin"},
        {"url": "https://images.example.org@127.0.0.1/data/a.tiff"},
        {"url": "s3://bucket/slides/a.tiff", "endpoint_url": "http://169.254.169.254"},
        {"url": "file:///etc/passwd"},
        {"url": ""},
    ],
)
def test_post_sources_refuses_with_a_400_before_fetching(
    app: Flask, client: FlaskClient, body: dict[str, object]
) -> None:
    response = client.post("/sources", json=body)
    assert response.status_code == 400, body
    answer = response.get_json()
    assert answer["error"] == "source_refused" and answer["message"]
    assert answer["parameter"] in ("url", "endpoint_url")
    services: Services = app.extensions[EXTENSION]
    assert services.sender.sent == []  # type: ignore[attr-defined]


def test_without_an_allow_list_no_url_is_registered(settings: Settings) -> None:
    app = create_app(settings)
    response = app.test_client().post("/sources", json={"url": "s3://bucket/slides/a.tiff"})
    app.extensions[EXTENSION].listener.stop()
    assert response.status_code == 400
    assert "TILECAST_REMOTE_ALLOW" in response.get_json()["message"]
