"""dicom-microscopy-viewer (npm) in headless Chromium against tilecast's DICOMweb: a page
served from another origin loads a series' metadata with the dicomweb-client package,
hands it to the viewer's VolumeImageViewer, and the viewer fetches frames from
``/dicomweb`` and draws them (the viewport's pixels sampled from a screenshot: the
viewer draws with WebGL, whose canvas 2D reads cannot see). Select with ``-m browser``.
"""

from __future__ import annotations

import functools
import http.server
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests import dmvassets
from tests.conftest import REPO, ApiServer
from tests.integration.test_dicomweb import series_of, study_of
from tilecast.redis_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "tests" / "artifacts"
WAIT_S = 60
OVERVIEW_WIDTH = 160  # the viewer's overview map, left of this
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>dicom-microscopy-viewer over tilecast</title>
<style>html, body { margin: 0; background: #fff; }
#viewport { width: 800px; height: 600px; }</style>
<script src="client/dicomweb-client.js"></script>
<script src="viewer/dicomMicroscopyViewer.bundle.min.js"></script>
</head><body><div id="viewport"></div>
<script>
window.showSeries = async (url, study, series) => {
  const client = new DICOMwebClient.api.DICOMwebClient({ url });
  const metadata = await client.retrieveSeriesMetadata({
    studyInstanceUID: study, seriesInstanceUID: series });
  const images = metadata.map(
    (m) => new dicomMicroscopyViewer.metadata.VLWholeSlideMicroscopyImage({ metadata: m }));
  const viewer = new dicomMicroscopyViewer.viewer.VolumeImageViewer({ client, metadata: images });
  viewer.render({ container: document.getElementById("viewport") });
  window.dmv = viewer;
  return images.length;
};
</script></body></html>
"""


class StaticHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".wasm": "application/wasm",
    }

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A static server on another port (another origin than the api) with the page,
    the viewer's bundle and the DICOMweb client."""
    root = tmp_path_factory.mktemp("dmv-page")
    (root / "index.html").write_text(PAGE)
    viewer = dmvassets.ensure(dmvassets.VIEWER)
    (root / "viewer").symlink_to(viewer)
    (root / "client").symlink_to(dmvassets.ensure(dmvassets.CLIENT))
    # The bundle starts its data loader worker from /static/js/ (Slim's layout), and
    # the worker fetches its WebAssembly codecs beside itself.
    scripts = root / "static" / "js"
    scripts.mkdir(parents=True)
    for path in viewer.iterdir():
        (scripts / path.name).symlink_to(path)
    (scripts / "dataLoader.worker.min.js").symlink_to(viewer / "dataLoader.worker.bundle.min.js")
    port = free_port("127.0.0.1")
    handler = functools.partial(StaticHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/test installs Debian's chromium")
    with sync_playwright() as playwright:
        # WebGL in headless Chromium: SwiftShader, the software renderer it ships.
        args = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=args
        )
        yield chromium
        chromium.close()


def viewport_sample(png: bytes) -> tuple[float, int]:
    """(fraction of the viewport not white, distinct colours) of a screenshot."""
    with Image.open(io.BytesIO(png)) as image:
        pixels = np.asarray(image.convert("RGB"))[::7, ::7].reshape(-1, 3)
    painted = np.any(pixels < 245, axis=1).mean()
    colours = len({tuple(p) for p in pixels.tolist()})
    return float(painted), colours


def test_dicom_microscopy_viewer_draws_tilecast_frames(
    browser: Any, page_origin: str, api: ApiServer, sources: dict[str, str]
) -> None:
    source = sources["pyramid"]
    study = study_of(api, source)
    (series,) = series_of(api, study)
    page = browser.new_page(viewport={"width": 800, "height": 600})
    errors: list[str] = []
    frames: list[str] = []
    failed: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on(
        "response",
        lambda r: frames.append(r.url) if "/frames/" in r.url and r.status == 200 else None,
    )
    try:
        page.goto(page_origin + "/index.html")
        levels = page.evaluate(
            "([u, s, r]) => window.showSeries(u, s, r)", [api.url("/dicomweb"), study, series]
        )
        assert levels == 5
        deadline = time.monotonic() + WAIT_S
        painted, colours = 0.0, 0
        while time.monotonic() < deadline:
            painted, colours = viewport_sample(page.locator("#viewport").screenshot())
            if frames and painted > 0.2 and colours > 50:
                break
            time.sleep(0.5)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dicomweb-dicom-microscopy-viewer.png"))
        assert frames, f"no frame was fetched; errors: {errors}; failed: {failed}"
        assert painted > 0.2 and colours > 50, (painted, colours, errors, failed)
        assert not failed, failed
        # The whole slide fits the view: its painted band is tilecast's thumbnail of the
        # same size, upright (ImageOrientationSlide, common/dicomwsi.py; measured: a
        # mean difference of 0.1 per channel).
        shot = np.asarray(
            Image.open(io.BytesIO(page.locator("#viewport").screenshot())).convert("RGB")
        ).astype(float)
        # The slide's rows, found down the middle (the overview map sits top left).
        rows = np.flatnonzero(np.any(shot[:, shot.shape[1] // 2] < 245, axis=1))
        band = shot[rows[0] : rows[-1] + 1]
        thumbnail = api.get(
            f"/item/{source}/tiles/thumbnail",
            params={"width": band.shape[1], "height": band.shape[0], "encoding": "PNG"},
        )
        reference = np.asarray(Image.open(io.BytesIO(thumbnail.content)).convert("RGB"))
        assert abs(band.shape[0] - reference.shape[0]) <= 2, (band.shape, reference.shape)
        height = min(band.shape[0], reference.shape[0])
        beside = np.s_[:height, OVERVIEW_WIDTH:]
        difference = np.abs(band[beside] - reference[beside].astype(float)).mean()
        assert difference < 8, difference
    finally:
        page.close()
