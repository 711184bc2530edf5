"""Real Girder servers for the tests in this folder (one of each per session).

- ``girder``: Girder 5 from tilecast's venv, with tilecast's plugin loaded (the test
  extra installs it, editable).
- ``girder3``: Girder 3.2 from the cached venv the compatibility tests use too
  (tests/largeimagevenv.py: Girder 3.2, girder-large-image and tilecast's plugin, as a
  site running large_image's plugin has them; built on first use, about 80 s).

Both use secantusdb unless ``TILECAST_TEST_MONGO_URI`` names a real MongoDB. Select
these tests with ``-m girder``, leave them out with ``-m "not girder"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests import largeimagevenv
from tests.girderserver import GirderServer


def _mongo_uri() -> str | None:
    return os.environ.get("TILECAST_TEST_MONGO_URI") or None


@pytest.fixture(scope="session")
def girder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GirderServer]:
    with GirderServer(tmp_path_factory.mktemp("girder5"), mongo_uri=_mongo_uri()) as server:
        yield server


@pytest.fixture(scope="session")
def girder3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GirderServer]:
    venv = largeimagevenv.ensure()
    directory = tmp_path_factory.mktemp("girder3")
    with GirderServer(directory, bin_dir=venv / "bin", mongo_uri=_mongo_uri()) as server:
        yield server
