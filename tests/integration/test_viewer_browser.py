"""The viewer pages in headless Chromium (Debian's /usr/bin/chromium driven by Playwright)
against the suite's running stack: tiles are requested and drawn, zooming fetches deeper
levels, the frame slider and the style presets change the tiles, a bad style shows the
api's message, the index lists the sources, and the console stays free of errors.

Screenshots go to tests/artifacts/. One browser serves the whole module; each test has
its own page. Select with ``-m browser``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlparse

import pytest

from tests.conftest import REPO, ApiServer
from tilecast.api.viewer import assets

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "tests" / "artifacts"
VIEWPORT = {"width": 1280, "height": 800}
WAIT_MS = 60_000
TILE_PATH = re.compile(r"/tiles/zxy/(\d+)/(\d+)/(\d+)$")

# Every tiled image drawn in full: OpenSeadragon has nothing left to load.
FULLY_LOADED = """() => {
    const viewer = window.tilecastViewer;
    if (!viewer || viewer.world.getItemCount() !== 1) return false;
    return viewer.world.getItemAt(0).getFullyLoaded();
}"""

# A sample of the drawing canvas: how much of it is painted, and in how many colours.
CANVAS_SAMPLE = """() => {
    const canvas = window.tilecastViewer.drawer.canvas;
    const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
    const colours = new Set();
    let painted = 0, samples = 0;
    for (let i = 0; i < data.length; i += 4 * 101) {
        samples++;
        if (data[i + 3] === 0) continue;
        painted++;
        colours.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    }
    return { painted: painted / samples, colours: colours.size };
}"""


@dataclass
class Tile:
    z: int
    x: int
    y: int
    query: dict[str, str]


def tile_of(url: str) -> Tile | None:
    parsed = urlparse(url)
    match = TILE_PATH.search(parsed.path)
    if match is None:
        return None
    query = {name: values[-1] for name, values in parse_qs(parsed.query).items()}
    return Tile(*(int(v) for v in match.groups()), query=query)


@dataclass
class Tab:
    """A page with what it asked for and what its console said."""

    page: Any
    tiles: list[Tile] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # Console errors a test provoked on purpose, by predicate on (text, resource url).
    expected: list[Callable[[str, str], bool]] = field(default_factory=list)

    def on_console(self, message: Any) -> None:
        if message.type != "error":
            return
        url = str((message.location or {}).get("url", ""))
        if not any(allowed(message.text, url) for allowed in self.expected):
            self.errors.append(f"{message.text} ({url})")

    def on_request(self, request: Any) -> None:
        self.requests.append(request.url)
        tile = tile_of(request.url)
        if tile is not None:
            self.tiles.append(tile)

    def wait_drawn(self) -> dict[str, float]:
        """Wait until OpenSeadragon has drawn every tile it wants; the canvas sample."""
        self.page.wait_for_function(FULLY_LOADED, timeout=WAIT_MS)
        sample: dict[str, float] = self.page.evaluate(CANVAS_SAMPLE)
        return sample

    def wait_shown(self, frame: int | None = None, style: str | None = None) -> dict[str, float]:
        """Wait until the viewer shows that frame and a style containing ``style`` ("" for
        none), then until it is drawn; the canvas sample."""
        self.page.wait_for_function(
            """([frame, style]) => {
                const shown = document.getElementById("viewer-page").dataset;
                if (frame !== null && shown.shownFrame !== String(frame)) return false;
                if (style === null) return shown.shownFrame !== undefined;
                return style === "" ? shown.shownStyle === "" : shown.shownStyle.includes(style);
            }""",
            arg=[frame, style],
            timeout=WAIT_MS,
        )
        return self.wait_drawn()

    def wait_for_tile(self, predicate: Callable[[Tile], bool], since: int = 0) -> Tile:
        """The first tile asked for after the ``since``-th one that matches ``predicate``."""
        deadline = time.monotonic() + WAIT_MS / 1000
        while time.monotonic() < deadline:
            found = next((t for t in self.tiles[since:] if predicate(t)), None)
            if found is not None:
                return found
            self.page.wait_for_timeout(100)  # lets Playwright deliver the request events
        raise AssertionError(f"no such tile requested; the last ones: {self.tiles[-5:]}")

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / name
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # All three are the suite's to provide (scripts/test): missing, the test fails.
    from playwright import sync_api

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium")
    if not assets.is_installed():
        pytest.fail("OpenSeadragon is not fetched: python -m tilecast.api.viewer.assets")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def tab(browser: Any) -> Iterator[Tab]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    tab = Tab(page)
    page.on("console", tab.on_console)
    page.on("pageerror", lambda error: tab.errors.append(f"uncaught: {error}"))
    page.on("request", tab.on_request)
    try:
        yield tab
        assert not tab.errors, "the browser console showed errors:\n" + "\n".join(tab.errors)
    finally:
        context.close()


def open_viewer(tab: Tab, api: ApiServer, source_id: str, query: str = "") -> dict[str, float]:
    response = tab.page.goto(api.url(f"/viewer/{source_id}{query}"))
    assert response is not None and response.status == 200
    tab.page.wait_for_selector("body[data-ready='true']", state="attached")
    return tab.wait_shown()


def assert_painted(sample: dict[str, float], colours: int = 16) -> None:
    assert sample["painted"] > 0.2, sample  # the image covers much of the canvas
    assert sample["colours"] >= colours, sample  # and is no flat colour


def test_viewer_draws_tiles_and_zooms_deeper(
    tab: Tab, api: ApiServer, sources: dict[str, str]
) -> None:
    source = sources["pyramid"]
    levels = api.get(f"/item/{source}/tiles").json()["levels"]
    assert_painted(open_viewer(tab, api, source))
    tab.screenshot("viewer-pyramid.png")
    assert tab.tiles and all(0 <= t.z < levels for t in tab.tiles)
    assert "token" not in tab.tiles[0].query and "style" not in tab.tiles[0].query
    assert tab.page.inner_text("#metadata tr[data-key='sizeX'] td") == "3000"
    assert tab.page.is_hidden("#frame-control")  # a single-frame source has no slider
    shallow = max(t.z for t in tab.tiles)
    assert shallow < levels - 1, "the whole image should fit the view below full resolution"

    before = len(tab.tiles)
    for _ in range(3):
        tab.page.get_by_title("Zoom in").click()
    deeper = tab.wait_for_tile(lambda t: t.z > shallow, since=before)
    assert deeper.z <= levels - 1
    assert_painted(tab.wait_drawn())
    tab.screenshot("viewer-pyramid-zoomed.png")


def test_frame_slider_changes_the_frame_of_the_tiles(
    tab: Tab, api: ApiServer, frame_sources: dict[str, str]
) -> None:
    source = frame_sources["multipage"]
    # A token on the page's URL (girder access mode) goes with every request it makes.
    assert_painted(open_viewer(tab, api, source, "?token=t0ken"))
    assert {t.query.get("frame") for t in tab.tiles} == {"0"}
    assert {t.query.get("token") for t in tab.tiles} == {"t0ken"}
    assert api.url(f"/item/{source}/tiles?token=t0ken") in tab.requests
    assert tab.page.is_visible("#frame-control")
    assert tab.page.get_attribute("#frame", "max") == "2"

    before = len(tab.tiles)
    tab.page.fill("#frame", "2")
    assert_painted(tab.wait_shown(frame=2))
    tab.wait_for_tile(lambda t: t.query.get("frame") == "2", since=before)
    assert tab.page.inner_text("#frame-label") == "2"
    assert "frame=2" in tab.page.url and "token=t0ken" in tab.page.url  # kept for sharing
    assert {t.query.get("token") for t in tab.tiles} == {"t0ken"}
    tab.screenshot("viewer-multipage-frame2.png")


def test_style_presets_change_the_tiles_and_bad_styles_show_the_message(
    tab: Tab, api: ApiServer, sources: dict[str, str]
) -> None:
    open_viewer(tab, api, sources["pyramid"])
    before = len(tab.tiles)
    tab.page.select_option("#preset", "viridis")
    assert_painted(tab.wait_shown(style="viridis"), colours=8)
    # Beyond the one tile the style is checked with, the viewer's own tiles carry it.
    styled = tab.wait_for_tile(
        lambda t: t.z > 0 and "viridis" in t.query.get("style", ""), since=before
    )
    assert '"band":1' in styled.query["style"]
    tab.screenshot("viewer-pyramid-viridis.png")

    tab.page.fill("#style", "{not json")
    tab.page.click("#apply-style")
    tab.page.wait_for_selector("#message:not([hidden])")
    assert "not JSON" in tab.page.inner_text("#message")

    # The api refuses an unknown palette with a 400 naming the style; Chromium logs the
    # failed probe request, which is the one console error this test expects.
    tab.expected.append(lambda text, url: "status of 400" in text and "style=" in url)
    tab.page.fill("#style", '{"band": 1, "palette": "no-such-palette"}')
    with tab.page.expect_response(lambda r: r.status == 400 and tile_of(r.url) is not None):
        tab.page.click("#apply-style")
    tab.page.wait_for_function(
        "() => document.querySelector('#message').textContent.includes('refused')"
    )
    message = tab.page.inner_text("#message")
    assert "400" in message and "palette" in message, message
    # The viewer keeps showing the last good style.
    assert_painted(tab.wait_shown(style="viridis"), colours=8)
    assert "viridis" in tab.page.url

    before = len(tab.tiles)
    tab.page.select_option("#preset", "none")
    # Its tiles were seen before: OpenSeadragon may draw them from its own cache.
    assert_painted(tab.wait_shown(style=""))
    tab.wait_for_tile(lambda t: "style" not in t.query, since=before)
    assert tab.page.is_hidden("#message")

    # A style in the page's URL (a shared view) is applied, or refused with the message.
    shared = quote(styled.query["style"])
    open_viewer(tab, api, sources["pyramid"], f"?style={shared}")
    assert tab.page.input_value("#preset") == "viridis"
    assert_painted(tab.wait_shown(style="viridis"), colours=8)
    open_viewer(tab, api, sources["pyramid"], "?style=" + quote('{"bogus": 1}'))
    assert "unknown style keys: bogus" in tab.page.inner_text("#message")
    assert tab.page.get_attribute("#viewer-page", "data-shown-style") == ""


def test_index_lists_sources_with_thumbnails_linking_to_viewers(
    tab: Tab, api: ApiServer, sources: dict[str, str]
) -> None:
    # Other tests may have left sources whose files are gone: their thumbnails may fail.
    ours = set(sources.values())
    tab.expected.append(
        lambda text, url: "/thumbnail" in url and not any(f"/item/{s}/" in url for s in ours)
    )
    response = tab.page.goto(api.url("/"))
    assert response is not None and response.status == 200
    tab.page.wait_for_selector("body[data-loaded='true']", state="attached")
    listed = tab.page.eval_on_selector_all(
        "li.source", "items => items.map(i => i.dataset.sourceId)"
    )
    assert ours <= set(listed)

    card = tab.page.locator(f"li.source[data-source-id='{sources['pyramid']}']")
    card.scroll_into_view_if_needed()
    thumbnail = card.locator("img")
    thumbnail.evaluate("img => img.complete || new Promise(done => img.onload = done)")
    assert thumbnail.evaluate("img => img.naturalWidth") == 256
    assert "/thumbnail?width=256" in str(thumbnail.get_attribute("src"))
    tab.screenshot("index.png")

    card.locator("a").click()
    tab.page.wait_for_url(f"**/viewer/{sources['pyramid']}")
    tab.page.wait_for_selector("body[data-ready='true']", state="attached")
    assert_painted(tab.wait_shown())


# OpenSeadragon's own tile sources for the standard protocols, in a page of the api's
# origin: the viewer's script tag is reused, the viewer itself is not.
PROTOCOL_VIEWER = """async (tileSource) => {
    const element = document.createElement("div");
    element.style.cssText = "position:fixed;inset:0;z-index:10;background:#000";
    document.body.append(element);
    window.tilecastViewer = OpenSeadragon({
        element, tileSources: tileSource, drawer: "canvas", prefixUrl: "",
        showNavigationControl: false,
    });
}"""


@pytest.mark.parametrize(
    ("protocol", "path", "tile_path"),
    [
        ("dzi", "/item/{id}/tiles/dzi.dzi", "/tiles/dzi_files/"),
        ("iiif", "/iiif/{id}/info.json", "/iiif/"),
    ],
)
def test_openseadragon_protocol_tile_sources_draw(
    tab: Tab, api: ApiServer, sources: dict[str, str], protocol: str, path: str, tile_path: str
) -> None:
    blank = api.url("/protocol-test")  # answered by the browser: an empty page on the api's origin
    tab.page.route(
        blank, lambda route: route.fulfill(body="<!doctype html><body>", content_type="text/html")
    )
    tab.page.goto(blank)
    tab.page.add_script_tag(url=api.url("/static/openseadragon/openseadragon.min.js"))
    tab.page.evaluate(PROTOCOL_VIEWER, api.url(path.format(id=sources["pyramid"])))
    assert_painted(tab.wait_drawn())
    tab.screenshot(f"protocol-{protocol}.png")
    assert any(tile_path in url and sources["pyramid"] in url for url in tab.requests)
