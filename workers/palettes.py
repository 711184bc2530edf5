"""Palettes: a colour, a list of colours, or a named colormap -> an (n, 4) RGBA array.

This is large_image's ``getPaletteColors`` (and ``_arrayToPalette`` /
``_mpl_lsc_to_palette``) step for step, with the same packages, so every name
resolves to the same colours:

1. a list: each entry a colour string (PIL, after large_image's ``R G B RED GREEN
   BLUE`` aliases; else matplotlib's colour names such as ``tab:blue``, without alpha)
   or 3-4 numbers on 0-1;
2. a string that is a colour: ``["#000", colour]``;
3. a palettable dotted name (``colorbrewer.sequential.Blues_9``): its ``hex_colors``;
4. a matplotlib colour name (``xkcd:sky blue``, ``b``): ``["#0000", colour]``;
5. a matplotlib colormap (``viridis``, ``magma_r``, ``gray``): a linear segmented map
   gives its segment end points (``gray`` is ``#000000 #FFFFFF``), any other map its
   ``N`` sampled colours (viridis: 256).

The api refuses names outside ``common/palette_names.txt`` (it cannot import these
packages: they need numpy), a list generated from the packages by
``known_palette_names`` / ``python -m tilecast.workers.palettes`` and checked against them by
tests/unit/test_workers_palettes.py, so it cannot drift unnoticed. Resolution here
uses the packages themselves; a name they do not know raises
``BadRequest(parameter="style")``, which reaches the client as a 400 through the
render's completion (nothing is cached for it). Resolutions are memoized per process.
"""

from __future__ import annotations

import contextlib
import json
from functools import lru_cache
from operator import attrgetter
from typing import Any

import numpy as np
import PIL.ImageColor

from tilecast.common.colors import LARGE_IMAGE_ALIASES
from tilecast.common.errors import BadRequest

DEFAULT_PALETTE = ["#000", "#FFF"]
ALPHA_PALETTE = ["#FFF0", "#FFFF"]


def palette_colors(value: Any) -> np.ndarray:
    """The (n, 4) RGBA palette (on 0-255) of a style's ``palette`` value."""
    colors = _resolve(json.dumps(value, sort_keys=True))
    colors.flags.writeable = False
    return colors


@lru_cache(maxsize=256)
def _resolve(key: str) -> np.ndarray:
    value = json.loads(key)
    try:
        palette = _palette_list(value)
        return _array_to_palette(palette)
    except (ValueError, TypeError):
        raise BadRequest(
            f"style.palette: {value!r} is neither a colour, a list of colours, nor a known "
            "palette name",
            parameter="style",
        ) from None


def _pil_color(value: str) -> tuple[int, ...]:
    return PIL.ImageColor.getcolor(LARGE_IMAGE_ALIASES.get(value, value), "RGBA")  # type: ignore[return-value]


def _palette_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    text = str(value)
    with contextlib.suppress(ValueError):
        _pil_color(text)
        return ["#000", text]
    import palettable

    if "__" not in text:
        with contextlib.suppress(AttributeError):
            return list(attrgetter(text)(palettable).hex_colors)
    import matplotlib as mpl

    if text in mpl.colors.get_named_colors_mapping():
        return ["#0000", mpl.colors.to_hex(text)]
    try:
        cmap = mpl.colormaps.get_cmap(text)
    except (KeyError, ValueError):
        raise ValueError(f"unknown palette {text!r}") from None
    return _mpl_to_palette(cmap)


def _mpl_to_palette(cmap: Any) -> list[str]:
    """large_image's ``_mpl_lsc_to_palette``."""
    import matplotlib as mpl

    if isinstance(cmap, mpl.colors.LinearSegmentedColormap):
        with contextlib.suppress(Exception):  # functional segment data: sample instead
            data = cmap._segmentdata
            reds, greens, blues = data["red"], data["green"], data["blue"]
            alphas = data.get("alpha")
            palette: list[str] = []
            for index in range(len(reds)):
                r = round(float(reds[index][-1]) * 255)
                g = round(float(greens[index][-1]) * 255)
                b = round(float(blues[index][-1]) * 255)
                entry = f"#{r:02X}{g:02X}{b:02X}"
                if alphas is not None:
                    entry += f"{round(float(alphas[index][-1]) * 255):02X}"
                if not palette or palette[-1] != entry:
                    palette.append(entry)
            return palette
    return [mpl.colors.to_hex(cmap(i)) for i in range(cmap.N)]


def _array_to_palette(palette: list[Any]) -> np.ndarray:
    """large_image's ``_arrayToPalette``: int RGBA for colour strings, 0-1 lists scaled."""
    if not palette:
        raise ValueError("an empty palette")
    rows: list[Any] = []
    for color in palette:
        if isinstance(color, list | tuple):
            rows.append(np.array([*list(color), 1, 1, 1][:4]) * 255)
            continue
        try:
            rows.append(_pil_color(str(color)))
        except ValueError:
            import matplotlib as mpl

            rows.append(_pil_color(mpl.colors.to_hex(str(color))))
    return np.array(rows)


def known_palette_names() -> list[str]:
    """Every name ``palette_colors`` resolves by name with the installed packages:
    palettable's palettes (by their dotted path below the package), matplotlib's
    colormaps (with the ``_r`` reversals) and matplotlib's colour names. The api checks
    names against ``common/palette_names.txt``, generated from this list (``python -m
    workers.palettes``; tests/unit/test_workers_palettes.py checks they agree)."""
    import types

    import matplotlib as mpl
    import palettable

    names: set[str] = set(mpl.colormaps) | set(mpl.colors.get_named_colors_mapping())
    seen: set[int] = set()

    def walk(module: types.ModuleType, prefix: str) -> None:
        for attr in dir(module):
            if attr.startswith("_"):
                continue
            try:
                value = getattr(module, attr)
            except Exception:  # a lazy attribute that fails to load is no palette
                continue
            if isinstance(value, types.ModuleType):
                if value.__name__.startswith("palettable.") and id(value) not in seen:
                    seen.add(id(value))
                    walk(value, f"{prefix}{attr}.")
            elif not isinstance(value, type) and hasattr(value, "hex_colors"):
                names.add(prefix + attr)

    walk(palettable, "")
    return sorted(name for name in names if "\n" not in name)


def write_names_file(path: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(known_palette_names()) + "\n")


if __name__ == "__main__":
    import sys

    write_names_file(sys.argv[1] if len(sys.argv) > 1 else "common/palette_names.txt")
