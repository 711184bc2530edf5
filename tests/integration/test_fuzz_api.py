"""Property-based fuzzing of every endpoint over the running stack (issue 8).

Schemathesis generates requests -- valid and invalid -- from the api's own
``/openapi.json`` and sends them to the real api and worker processes. Properties:

- no 5xx other than the documented 503/504 (and 501 for IIIF features tilecast
  declares it lacks);
- every error is JSON ``{"error", "message"}`` (the viewer's HTML 404 aside);
- no request hangs: each must answer within ``REQUEST_TIMEOUT``.

Requests about an item go to a private copy of a test image, so the fuzzer reaches the
parsers and renderers, not only the unknown-item 404, without warming other tests'
tiles. The budget is fixed and derandomized for CI (``-m fuzz`` selects these tests);
``TILECAST_TEST_FUZZ_EXAMPLES=300`` runs a longer, randomized search (the ``/api/v1``
copies included; about 3-6 minutes).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ApiServer
from tilecast.api.app import create_app
from tilecast.api.openapi import build as build_openapi
from tilecast.common.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.fuzz]

# Harness code may read the environment: the budget of a longer, local run.
DEFAULT_EXAMPLES = 6
EXAMPLES = int(os.environ.get("TILECAST_TEST_FUZZ_EXAMPLES", str(DEFAULT_EXAMPLES)))
# Above TILECAST_RENDER_TIMEOUT (30 s): a render that long is answered 504, not hung.
REQUEST_TIMEOUT = 45.0
ALLOWED_5XX = {503, 504}


def fuzz_settings(examples: int) -> settings:
    """A fixed, derandomized budget: CI runs the same cases every time; a longer run
    draws new ones each time (Hypothesis prints how to reproduce a failure)."""
    return settings(
        max_examples=examples,
        derandomize=EXAMPLES == DEFAULT_EXAMPLES,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )


# Operations that would change the shared stack for other tests: they are fuzzed with
# the generated (unknown) ids only.
DESTRUCTIVE = {("DELETE", "/sources/{source_id}"), ("POST", "/item/{item_id}/tiles/precache")}


@pytest.fixture(scope="module")
def fuzz_item(api: ApiServer, images: dict[str, Path], source_root: Path) -> str:
    """A source of the fuzzer's own: a copy of the pyramid under another path."""
    target = source_root / "fuzz" / "fuzz-pyramid.tiff"
    target.parent.mkdir(exist_ok=True)
    shutil.copy(images["pyramid"], target)
    return api.register(target)


def _openapi_document() -> dict[str, Any]:
    """The document the api serves, built from the same routes at collection time (the
    operations become separate tests); ``test_served_document_is_the_fuzzed_one``
    checks the running api serves exactly this."""
    # A closed port: building the routes must not touch any Redis (nor the machine's).
    settings = Settings(cache_url="redis://127.0.0.1:9/0", source_roots=("/nonexistent",))
    app = create_app(settings.resolved())
    return build_openapi(app)


OPENAPI = _openapi_document()
schema = schemathesis.openapi.from_dict(OPENAPI)
if EXAMPLES <= DEFAULT_EXAMPLES:
    # The same views again under Girder's API root: left to the longer run.
    schema = schema.exclude(path_regex=r"^/api/v1/")


def test_served_document_is_the_fuzzed_one(api: ApiServer) -> None:
    served = api.get("/openapi.json").json()
    assert served["paths"] == OPENAPI["paths"]


@pytest.fixture(scope="module")
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    yield session
    session.close()


def assert_sane(status: int, content_type: str, text: str, route: str) -> None:
    """The fuzzing properties of one answer."""
    allowed = ALLOWED_5XX | ({501} if route.startswith("/iiif/") else set())
    assert status < 500 or status in allowed, f"{status} for {route}: {text[:500]}"
    if status < 400:
        return
    if route.startswith("/viewer/") and content_type.startswith("text/html"):
        return  # the viewer's 404 page for browsers
    assert content_type == "application/json", f"{status} {content_type!r} for {route}"
    body = json.loads(text)
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    assert "Traceback" not in text


@schema.parametrize()
@fuzz_settings(EXAMPLES)
def test_every_endpoint(
    case: schemathesis.Case, api: ApiServer, fuzz_item: str, http: requests.Session
) -> None:
    route = case.operation.path
    if "item_id" in (case.path_parameters or {}) and (case.method, route) not in DESTRUCTIVE:
        case.path_parameters["item_id"] = fuzz_item
    try:
        response = case.call(base_url=api.base, session=http, timeout=REQUEST_TIMEOUT)
    except requests.Timeout:
        pytest.fail(
            f"{case.method} {route} hung past {REQUEST_TIMEOUT} s: {case.as_curl_command()}"
        )
    content_type = (response.headers.get("content-type") or [""])[0]
    assert_sane(response.status_code, content_type, response.text_lossy(), route)


# -- styles and tile parameters, structured: deeper than random strings reach ----------

# Mostly values the style language accepts, with hostile numbers and a few typos, so
# that most styles reach the worker's style code rather than the api's 400.
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 255, 65535, 1e308, -1e-308]),
)
LIMITS = st.one_of(
    NUMBERS,
    st.sampled_from(["auto", "min", "max", "full", "min:0.02", "max:2", "auto:-1", "auto:1e9"]),
)
PALETTES = st.one_of(
    st.sampled_from(["viridis", "#ff0000", "rgba(1,2,3,400)", "gray", "#0f0", "nope"]),
    st.lists(st.sampled_from(["#000", "#fff", "red", "rgb(0,0,255)"]), min_size=1, max_size=5),
    st.lists(st.lists(st.floats(0, 1), min_size=3, max_size=4), min_size=1, max_size=4),
)
ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "band": st.one_of(
            st.integers(1, 4), st.sampled_from([-1, "red", "green", "blue", "alpha", "gray"])
        ),
        "frame": st.integers(0, 1),
        "framedelta": st.integers(-3, 3),
        "min": LIMITS,
        "max": LIMITS,
        "palette": PALETTES,
        "scheme": st.sampled_from(["linear", "discrete"]),
        "nodata": NUMBERS,
        "composite": st.sampled_from(["lighten", "multiply"]),
        "clamp": st.booleans(),
        "dtype": st.sampled_from(["uint8", "uint16", "float", "source"]),
        "axis": st.integers(-1, 3),
    },
)
STYLES = st.one_of(
    ENTRY,
    st.fixed_dictionaries(
        {"bands": st.lists(ENTRY, min_size=1, max_size=4)},
        optional={"dtype": st.sampled_from(["uint8", "uint16", "float", "source"])},
    ),
)
TILE_QUERIES = st.fixed_dictionaries(
    {"style": STYLES.map(json.dumps)},
    optional={
        "encoding": st.sampled_from(["JPEG", "PNG", "WEBP", "TIFF", "AVIF"]),
        "frame": st.integers(0, 1),
        "jpegQuality": st.integers(1, 100),
        "tiffCompression": st.sampled_from(["raw", "lzw", "deflate", "jpeg", "zstd"]),
        "webpLossless": st.sampled_from(["true", "false"]),
    },
)
# The fuzzed image is 3000 x 2000: levels 0-4, 12 x 8 tiles at level 4.
ZXY = st.integers(0, 4).flatmap(
    lambda z: st.tuples(
        st.just(z),
        st.integers(0, -(-12 // 2 ** (4 - z)) - 1),
        st.integers(0, -(-8 // 2 ** (4 - z)) - 1),
    )
)


@given(query=TILE_QUERIES, zxy=ZXY)
@fuzz_settings(EXAMPLES * 10)
def test_styled_tiles(
    api: ApiServer, fuzz_item: str, http: requests.Session, query: dict[str, Any], zxy: tuple
) -> None:
    route = f"/item/{fuzz_item}/tiles/zxy/{zxy[0]}/{zxy[1]}/{zxy[2]}"
    try:
        response = http.get(api.url(route), params=query, timeout=REQUEST_TIMEOUT)
    except requests.Timeout:
        pytest.fail(f"{route} {query} hung past {REQUEST_TIMEOUT} s")
    content_type = response.headers.get("Content-Type", "")
    assert_sane(response.status_code, content_type, response.text, route)
    if response.status_code == 400:
        assert response.json().get("parameter"), response.text


# 500s the fuzzer found (common/regionplan.py: a scale whose level overflowed 2 ** steps,
# whose ratio underflowed to 0, or whose output rounded to no pixel), kept as cases.
@pytest.mark.parametrize(
    "query",
    [
        "histogram?mm_x=2048",
        "histogram?magnification=1e-320&unitsWH=km",
        "histogram?mm_x=1e-320&left=348359&units=mag_pixels",
        "region?magnification=5e-324",
        "region?mm_x=1e308",
        "region?right=1&bottom=1&magnification=2.5&encoding=PNG",
    ],
)
def test_found_cases(api: ApiServer, fuzz_item: str, query: str) -> None:
    response = api.get(f"/item/{fuzz_item}/tiles/{query}", timeout=REQUEST_TIMEOUT)
    content_type = response.headers.get("Content-Type", "")
    assert_sane(response.status_code, content_type, response.text, "/item/{item_id}/tiles")
