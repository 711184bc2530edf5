"""The viewer's pages in-process (Flask test client) against a real Redis: HTML for
browsers, the api's JSON errors for every other client."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from tests.unit.fakes import METADATA
from tests.unit.test_viewer_assets import GOOD, SCRIPT, integrity_of
from tilecast.api.app import create_app
from tilecast.api.routes import viewer
from tilecast.api.services import EXTENSION, Services
from tilecast.api.viewer import assets
from tilecast.common.registry import SourceRecord, SourceRegistry
from tilecast.common.settings import Settings
from tilecast.redis_server import free_port

BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    app = create_app(settings)
    yield app
    stop(app)


def stop(app: Flask) -> None:
    services: Services = app.extensions[EXTENSION]
    services.listener.stop()
    services.counters.flush()  # while the test Redis still runs


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def source(state: redis.Redis) -> str:
    source_id = uuid.uuid4().hex[:24]
    SourceRegistry(state).add(SourceRecord(source_id, "/x/a.tiff", "a.tiff", dict(METADATA)))
    return source_id


@pytest.fixture
def osd_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    # The route asks whether the files are there; the files themselves are the build's.
    monkeypatch.setattr(viewer.assets, "is_installed", lambda: True)


def test_index_is_a_page_that_lists_sources_by_script(client: FlaskClient) -> None:
    response = client.get("/", headers=BROWSER)
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert 'id="sources"' in page
    assert "/static/index.js" in page


@pytest.mark.usefixtures("osd_installed")
def test_viewer_page_of_a_known_source(client: FlaskClient, source: str) -> None:
    response = client.get(f"/viewer/{source}", headers=BROWSER)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert f'data-item-id="{source}"' in page
    assert "/static/openseadragon/openseadragon.min.js" in page
    assert "/static/viewer.js" in page


def test_unknown_source_is_a_page_for_browsers(client: FlaskClient) -> None:
    response = client.get("/viewer/<b>nope", headers=BROWSER)
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    assert "unknown_source" in page
    assert "&lt;b&gt;nope" in page and "<b>nope" not in page


def test_unknown_source_is_json_for_other_clients(client: FlaskClient) -> None:
    response = client.get("/viewer/nope", headers={"Accept": "*/*"})
    assert response.status_code == 404
    assert response.get_json()["error"] == "unknown_source"


def test_missing_openseadragon_is_a_503_naming_the_fix(
    client: FlaskClient, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(viewer.assets, "is_installed", lambda: False)
    page = client.get(f"/viewer/{source}", headers=BROWSER)
    assert page.status_code == 503
    assert "python -m tilecast.api.viewer.assets" in page.get_data(as_text=True)
    as_json = client.get(f"/viewer/{source}")
    assert as_json.status_code == 503
    assert "OpenSeadragon" in as_json.get_json()["message"]
    assert as_json.headers["Retry-After"]


def test_static_files_are_served(client: FlaskClient) -> None:
    for name in ("viewer.js", "index.js", "tilecast.js", "tilecast.css"):
        response = client.get(f"/static/{name}")
        assert response.status_code == 200, name
        response.close()
    assert client.get("/static/nothing.js").status_code == 404


def test_fetched_openseadragon_is_served(
    client: FlaskClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What assets.extract unpacks is served under /static/openseadragon/: a tarball of
    npm's layout made here (no network; the real one is drawn by the browser test)."""
    static = tmp_path / "static"
    shutil.copytree(assets.STATIC_DIR, static, ignore=shutil.ignore_patterns("openseadragon"))
    assets.extract(GOOD, static / "openseadragon", integrity_of(GOOD))
    monkeypatch.setattr(viewer.bp, "static_folder", str(static))
    response = client.get("/static/openseadragon/openseadragon.min.js")
    assert response.status_code == 200
    assert response.data == SCRIPT
    response.close()
    image = client.get("/static/openseadragon/images/zoomin_rest.png")
    assert image.status_code == 200 and image.mimetype == "image/png"
    image.close()


def test_girder_mode_checks_the_viewer_page_like_the_item(settings: Settings, source: str) -> None:
    # Girder is unreachable here: a page that asked it would answer 503.
    girder = replace(settings, access_mode="girder", girder_url=f"http://127.0.0.1:{free_port()}")
    app = create_app(girder)
    try:
        client = app.test_client()
        assert client.get("/", headers=BROWSER).status_code == 200
        static = client.get("/static/viewer.js")
        assert static.status_code == 200
        static.close()
        page = client.get(f"/viewer/{source}?token=abc", headers=BROWSER)
        assert page.status_code == 503
        assert page.mimetype == "text/html"
        assert "girder_unavailable" in page.get_data(as_text=True)
    finally:
        stop(app)
