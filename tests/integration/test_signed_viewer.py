"""Viewers against an api in ``signed`` mode, in headless Chromium: tilecast's viewer
opened with a signed URL (query or path form) passes the grant on to every request;
OpenSeadragon keeps a DZI descriptor's signed query on its tiles, and an IIIF image
service reached by the path form keeps the grant in its ``id``. Select with ``-m browser``.
"""
# ruff: noqa: F811

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlparse

import pytest

from tests.conftest import ApiServer, Child, launch_api

# browser and tab are fixtures, shared by name (parameters named like them use them).
from tests.integration.test_viewer_browser import (  # noqa: F401
    PROTOCOL_VIEWER,
    Tab,
    assert_painted,
    browser,
    open_viewer,
    tab,
)
from tilecast.common import signing

pytestmark = [pytest.mark.integration, pytest.mark.browser]

KEYS_TEXT = "k1:viewer-secret-0123456789"
KEYS = signing.parse_keys(KEYS_TEXT)


@pytest.fixture(scope="module")
def signed_api(tilecast_env: dict[str, str], logs_dir: Path, worker: Child) -> Iterator[ApiServer]:
    env = {**tilecast_env, "TILECAST_ACCESS_MODE": "signed", "TILECAST_SIGNING_KEYS": KEYS_TEXT}
    server = launch_api(env, logs_dir, "api-signed-viewer")
    yield server
    server.http.close()
    server.child.stop()


def grant(item: str) -> dict[str, str]:
    return signing.sign(f"/item/{item}/", int(time.time()) + 3600, KEYS)


def path_grant(item: str) -> str:
    query = grant(item)
    return f"/signed/{query['keyid']}/{query['expires']}/{query['signature']}"


def api_requests(tab: Tab, api: ApiServer) -> list[str]:
    """The page's requests to api routes (not its static files)."""
    return [u for u in tab.requests if u.startswith(api.base) and "/static/" not in u]


def test_viewer_opened_with_a_signed_query_passes_it_on(
    tab: Tab, signed_api: ApiServer, sources: dict[str, str]
) -> None:
    item = sources["pyramid"]
    query = grant(item)
    assert_painted(open_viewer(tab, signed_api, item, "?" + urlencode(query)))
    assert tab.tiles and all(t.query.get("signature") == query["signature"] for t in tab.tiles)
    assert all("signature=" in u for u in api_requests(tab, signed_api))


def test_viewer_opened_with_a_signed_path_keeps_it(
    tab: Tab, signed_api: ApiServer, sources: dict[str, str]
) -> None:
    item = sources["pyramid"]
    signed = path_grant(item)
    response = tab.page.goto(signed_api.url(f"{signed}/viewer/{item}"))
    assert response is not None and response.status == 200
    tab.page.wait_for_selector("body[data-ready='true']", state="attached")
    assert_painted(tab.wait_shown())
    assert tab.tiles
    assert all(urlparse(u).path.startswith(signed) for u in api_requests(tab, signed_api))


@pytest.mark.parametrize("protocol", ["dzi", "iiif"])
def test_openseadragon_protocols_keep_the_grant(
    tab: Tab, signed_api: ApiServer, sources: dict[str, str], protocol: str
) -> None:
    item = sources["pyramid"]
    if protocol == "dzi":  # OpenSeadragon appends the descriptor's query to its tiles
        source = signed_api.url(f"/item/{item}/tiles/dzi.dzi?{urlencode(grant(item))}")
    else:  # IIIF clients drop queries: the grant rides in the path
        source = signed_api.url(f"{path_grant(item)}/iiif/{item}/info.json")
    blank = signed_api.url("/protocol-test")
    tab.page.route(
        blank, lambda route: route.fulfill(body="<!doctype html><body>", content_type="text/html")
    )
    tab.page.goto(blank)
    tab.page.add_script_tag(url=signed_api.url("/static/openseadragon/openseadragon.min.js"))
    tab.page.evaluate(PROTOCOL_VIEWER, source)
    assert_painted(tab.wait_drawn())
    tiles = [u for u in api_requests(tab, signed_api) if "dzi_files" in u or "/0/default" in u]
    assert tiles
