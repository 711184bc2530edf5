"""large_image as the reference the TIFF-family parity tests were written against.

Two optional packages installed for other tests change what ``large_image.open`` does:
large-image-source-openslide (the OpenSlide parity tests) takes ``.svs`` files away from
its tiff source, the one tilecast's TIFF reader mirrors; scikit-image (arriving with the
OME-Zarr tools) makes it resample non-8-bit tiles with ``skimage`` instead of PIL's
LANCZOS (``tiledict._resample``). :func:`pin` puts both back for one test.
"""

from __future__ import annotations

import sys

import pytest


def pin(monkeypatch: pytest.MonkeyPatch) -> None:
    import large_image.cache_util
    import large_image.tilesource

    large_image.tilesource.loadTileSources()
    monkeypatch.delitem(large_image.tilesource.AvailableTileSources, "openslide", raising=False)
    monkeypatch.setitem(sys.modules, "skimage.transform", None)
    large_image.cache_util.cachesClear()  # no source opened by another reader survives
