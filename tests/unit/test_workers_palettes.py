"""Palettes resolve to large_image's colours; the api's name list matches the packages."""

from __future__ import annotations

import numpy as np
import pytest

from tilecast.common.errors import BadRequest
from tilecast.common.style import palette_names
from tilecast.workers.palettes import known_palette_names, palette_colors

pytest.importorskip("matplotlib")
utilities = pytest.importorskip("large_image.tilesource.utilities")

VALUES = [
    "#f00", "#0f08", "R", "GREEN", "rgba(1, 2, 3, 4)", "hsl(120, 50%, 50%)", "gray",
    "viridis", "magma", "inferno", "plasma", "cividis", "jet", "hot", "Greys", "Greys_r",
    "gist_earth", "gnuplot", "gnuplot2", "cubehelix", "terrain", "hsv", "coolwarm",
    "twilight", "tab10", "tab20c", "Set1", "spring", "bwr", "seismic", "nipy_spectral",
    "b", "xkcd:sky blue", "tab:orange", "colorbrewer.sequential.Blues_9",
    "colorbrewer.diverging.RdBu_11_r", "matplotlib.Viridis_20", "cmocean.sequential.Algae_8",
    "cartocolors.qualitative.Bold_5", "scientific.sequential.Batlow_10",
    ["#000", "#fff"], ["#f00", "tab:blue", [0.5, 0.2, 0.1], [0, 0, 1, 0.5]], ["C1", "0.25"],
    ["red"], ["lime", "navy", "xkcd:robin's egg blue", "#12345678"],
]  # fmt: skip


@pytest.mark.parametrize("value", VALUES, ids=[str(v) for v in VALUES])
def test_palettes_match_large_image(value: object) -> None:
    ours = palette_colors(value)
    theirs = utilities.getPaletteColors(value)
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)


@pytest.mark.parametrize("value", ["no_such_map", "viridis.__class__", ["#fff", "viridis"], 7])
def test_unknown_palettes_are_bad_requests(value: object) -> None:
    with pytest.raises(BadRequest) as caught:
        palette_colors(value)
    assert caught.value.parameter == "style"


def test_the_apis_name_list_matches_the_packages() -> None:
    """common/palette_names.txt is generated from the packages: regenerate it with
    ``python -m tilecast.workers.palettes`` when they change."""
    assert set(known_palette_names()) == palette_names()


def test_every_listed_name_resolves() -> None:
    for name in sorted(palette_names())[::7]:  # a spread sample: resolving all takes seconds
        assert palette_colors(name).shape[1] == 4
