"""Compile a canonical style (validated by common/style.py) into a pixel operation.

The semantics are large_image's ``_applyStyle`` for the keys tilecast accepts (band,
min, max, palette, and ``bands`` lists of those), step for step, so styled pixels
match it:

- ``band``: a 1-based band number, or a name. ``red`` and ``blue`` pick bands 1 and
  3 of a 3+ band image, ``alpha`` the last band of a 2 or 4 band image (composited by
  multiplication). Anything else -- absent, -1, ``gray``, ``green`` or a number past
  the last band -- picks large_image's default: band 1 of a 1-2 band image, band 2
  of a 3+ band image.
- ``min`` / ``max``: the values mapped to the palette's ends; absent means large_image's
  ``auto``: 0 / 255 when every band's range lies in [0, 255] (within its thresholds),
  else the band's minimum / maximum over a ~1024 pixel overview.
- ``palette``: one colour means ``['#000', colour]``; a list is interpolated linearly.
- several entries (``bands``) are composited with ``lighten`` (per-channel maximum).

The output is float32 RGBA (or one grey channel for a single-band image with the
default palette); workers/encode.py turns it into 8-bit pixels the way large_image
does (clip to [0, 255], truncate).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.style import parse_color

DEFAULT_PALETTE = ("#000", "#FFF")
ALPHA_PALETTE = ("#FFF0", "#FFFF")


@dataclass(frozen=True)
class BandRanges:
    """Per-band minimum and maximum over an overview of the frame (large_image's
    ``_bandRanges`` entry)."""

    min: np.ndarray
    max: np.ndarray


@dataclass(frozen=True)
class StyleEntry:
    band: int | str | None
    min: float | None
    max: float | None
    palette: np.ndarray  # (n, 4) int64 RGBA on 0-255, as large_image's getPaletteColors


def palette_colors(value: Any) -> np.ndarray:
    """large_image's ``getPaletteColors`` for colour strings and lists of them."""
    colors = list(value) if isinstance(value, list | tuple) else [DEFAULT_PALETTE[0], value]
    return np.array([parse_color(str(color)) for color in colors], dtype=np.int64)


_GREY_PALETTE = palette_colors(list(DEFAULT_PALETTE))


class CompiledStyle:
    """A style ready to apply to (height, width, bands) arrays."""

    def __init__(self, canonical: str) -> None:
        spec = json.loads(canonical)
        raw_entries = spec.get("bands", [spec])
        self.canonical = canonical
        self.entries: tuple[StyleEntry, ...] = tuple(_entry(raw) for raw in raw_entries)

    @property
    def needs_ranges(self) -> bool:
        """Whether applying needs whole-frame band statistics (an ``auto`` min/max)."""
        return any(entry.min is None or entry.max is None for entry in self.entries)

    def apply(self, image: np.ndarray, ranges: BandRanges | None = None) -> np.ndarray:
        if image.ndim == 2:
            image = image[:, :, np.newaxis]
        height, width, bands = image.shape
        out_bands = 4
        if (
            len(self.entries) == 1
            and self.entries[0].band != "alpha"
            and bands == 1
            and np.array_equal(self.entries[0].palette, _GREY_PALETTE)
        ):
            out_bands = 1
        output = np.zeros(
            (height, width, out_bands), np.float32 if image.dtype != np.float64 else image.dtype
        )
        for index, entry in enumerate(self.entries):
            self._apply_entry(image, entry, index, output, ranges)
        return output

    def _apply_entry(
        self,
        image: np.ndarray,
        entry: StyleEntry,
        index: int,
        output: np.ndarray,
        ranges: BandRanges | None,
    ) -> None:
        bands = image.shape[2]
        band_index: int | None = 0 if bands <= 2 else 1
        band: np.ndarray | None = None
        composite = "lighten"
        if isinstance(entry.band, int) and 1 <= entry.band <= bands:
            band_index = entry.band - 1
        if entry.band == "red" and bands > 2:
            band_index = 0
        elif entry.band == "blue" and bands > 2:
            band_index = 2
            band = image[:, :, 2]
        elif entry.band == "alpha":
            band_index = bands - 1 if bands in (2, 4) else None
            band = image[:, :, -1] if bands in (2, 4) else np.full(image.shape[:2], 255, np.uint8)
            composite = "multiply"
        if band is None:
            band = image[:, :, band_index if band_index is not None and band_index < bands else 0]
        palette = entry.palette
        palette_base = np.linspace(0, 1, len(palette), endpoint=True)
        low = _min_max("min", entry.min, image.dtype, band_index, ranges)
        high = _min_max("max", entry.max, image.dtype, band_index, ranges)
        delta = high - low if high != low else 1
        scaled = (band - low) / delta
        colors: np.ndarray | None = None
        for channel in range(output.shape[2]):
            column = palette[:, channel]
            if np.all(column == column[0]):
                if (column[0] == 0 and composite != "multiply") or (
                    column[0] == 255 and composite == "multiply"
                ):
                    continue
                colors = np.full(scaled.shape, column[0], dtype=scaled.dtype)
            elif not channel or np.any(column != palette[:, channel - 1]) or colors is None:
                if len(palette) == 2 and column[0] == 0:
                    colors = scaled * column[1]
                else:
                    colors = np.interp(scaled, palette_base, column)
            if composite == "multiply":
                if index:
                    output[:, :, channel] = np.multiply(output[:, :, channel], colors / 255)
            elif not index:
                output[:, :, channel] = colors
            else:
                output[:, :, channel] = np.maximum(output[:, :, channel], colors)


def _entry(raw: dict[str, Any]) -> StyleEntry:
    band = raw.get("band")
    default = ALPHA_PALETTE if band == "alpha" else DEFAULT_PALETTE
    return StyleEntry(
        band=band,
        min=None if raw.get("min") is None else float(raw["min"]),
        max=None if raw.get("max") is None else float(raw["max"]),
        palette=palette_colors(raw.get("palette", list(default))),
    )


def _min_max(
    which: str,
    value: float | None,
    dtype: np.dtype,
    band_index: int | None,
    ranges: BandRanges | None,
) -> float:
    """large_image's ``_getMinMax`` for a number or ``auto`` (None)."""
    if value is not None:
        return float(value)
    if (
        ranges is not None
        and np.all(ranges.min >= 0)
        and np.all(ranges.min <= 254)
        and np.all(ranges.max >= 2)
        and np.all(ranges.max <= 255)
    ):
        return 0.0 if which == "min" else 255.0
    have = ranges is not None and band_index is not None and band_index < len(ranges.min)
    if which == "min":
        return float(ranges.min[band_index]) if have else 0.0  # type: ignore[index,union-attr]
    if have:
        return float(ranges.max[band_index])  # type: ignore[index,union-attr]
    if dtype == np.uint16:
        return 65535.0
    if dtype.kind == "f":
        return 1.0
    return 255.0


def compile_style(canonical: str | None) -> CompiledStyle | None:
    return None if canonical is None else CompiledStyle(canonical)


def band_ranges(pixels: np.ndarray) -> BandRanges:
    """Per-band min / max of (height, width, bands) pixels."""
    flat = pixels.reshape(-1, pixels.shape[2])
    return BandRanges(min=flat.min(axis=0), max=flat.max(axis=0))
