"""Colour strings as large_image reads them, without PIL (the api imports this).

large_image's getPaletteColors parses a colour with PIL.ImageColor.getcolor(
colormap.get(value, value), "RGBA"), where colormap maps R G B RED GREEN BLUE
(upper case only) to pure colours. This module is that grammar, rule for rule
(tests/unit/test_common_colors.py checks it against PIL on many strings):

- #rgb, #rgba, #rrggbb, #rrggbbaa (hex digits, any case);
- rgb(r, g, b) with integers, rgb(r%, g%, b%) with integer percentages;
- rgba(r, g, b, a) with *integers*: the alpha is on 0-255, like the colour
  channels, not CSS's 0-1 (rgba(255, 0, 0, 0.5) is not a colour to PIL);
- hsl(h, s%, l%), hsv(h, s%, v%) / hsb(...) with decimal numbers;
- the 148 CSS colour names, case-insensitively.

A missing alpha is 255. One deliberate difference: PIL accepts rgb() and
rgba() components past 255 (rgb(300, 0, 0)); large_image would then push
palette values past 255 and clip them at encoding. Here they are not colours, so a
style holding one is a 400.
"""

from __future__ import annotations

import colorsys
import re

MAX_COLOR_LENGTH = 100  # PIL refuses longer colour strings

# large_image.tilesource.utilities.colormap: consulted before PIL, case-sensitively.
LARGE_IMAGE_ALIASES = {
    "R": "#ff0000",
    "G": "#00ff00",
    "B": "#0000ff",
    "RED": "#ff0000",
    "GREEN": "#00ff00",
    "BLUE": "#0000ff",
}

# PIL.ImageColor.colormap (the CSS colour names).
CSS_COLORS = {
    "aliceblue": "#f0f8ff",
    "antiquewhite": "#faebd7",
    "aqua": "#00ffff",
    "aquamarine": "#7fffd4",
    "azure": "#f0ffff",
    "beige": "#f5f5dc",
    "bisque": "#ffe4c4",
    "black": "#000000",
    "blanchedalmond": "#ffebcd",
    "blue": "#0000ff",
    "blueviolet": "#8a2be2",
    "brown": "#a52a2a",
    "burlywood": "#deb887",
    "cadetblue": "#5f9ea0",
    "chartreuse": "#7fff00",
    "chocolate": "#d2691e",
    "coral": "#ff7f50",
    "cornflowerblue": "#6495ed",
    "cornsilk": "#fff8dc",
    "crimson": "#dc143c",
    "cyan": "#00ffff",
    "darkblue": "#00008b",
    "darkcyan": "#008b8b",
    "darkgoldenrod": "#b8860b",
    "darkgray": "#a9a9a9",
    "darkgreen": "#006400",
    "darkgrey": "#a9a9a9",
    "darkkhaki": "#bdb76b",
    "darkmagenta": "#8b008b",
    "darkolivegreen": "#556b2f",
    "darkorange": "#ff8c00",
    "darkorchid": "#9932cc",
    "darkred": "#8b0000",
    "darksalmon": "#e9967a",
    "darkseagreen": "#8fbc8f",
    "darkslateblue": "#483d8b",
    "darkslategray": "#2f4f4f",
    "darkslategrey": "#2f4f4f",
    "darkturquoise": "#00ced1",
    "darkviolet": "#9400d3",
    "deeppink": "#ff1493",
    "deepskyblue": "#00bfff",
    "dimgray": "#696969",
    "dimgrey": "#696969",
    "dodgerblue": "#1e90ff",
    "firebrick": "#b22222",
    "floralwhite": "#fffaf0",
    "forestgreen": "#228b22",
    "fuchsia": "#ff00ff",
    "gainsboro": "#dcdcdc",
    "ghostwhite": "#f8f8ff",
    "gold": "#ffd700",
    "goldenrod": "#daa520",
    "gray": "#808080",
    "green": "#008000",
    "greenyellow": "#adff2f",
    "grey": "#808080",
    "honeydew": "#f0fff0",
    "hotpink": "#ff69b4",
    "indianred": "#cd5c5c",
    "indigo": "#4b0082",
    "ivory": "#fffff0",
    "khaki": "#f0e68c",
    "lavender": "#e6e6fa",
    "lavenderblush": "#fff0f5",
    "lawngreen": "#7cfc00",
    "lemonchiffon": "#fffacd",
    "lightblue": "#add8e6",
    "lightcoral": "#f08080",
    "lightcyan": "#e0ffff",
    "lightgoldenrodyellow": "#fafad2",
    "lightgray": "#d3d3d3",
    "lightgreen": "#90ee90",
    "lightgrey": "#d3d3d3",
    "lightpink": "#ffb6c1",
    "lightsalmon": "#ffa07a",
    "lightseagreen": "#20b2aa",
    "lightskyblue": "#87cefa",
    "lightslategray": "#778899",
    "lightslategrey": "#778899",
    "lightsteelblue": "#b0c4de",
    "lightyellow": "#ffffe0",
    "lime": "#00ff00",
    "limegreen": "#32cd32",
    "linen": "#faf0e6",
    "magenta": "#ff00ff",
    "maroon": "#800000",
    "mediumaquamarine": "#66cdaa",
    "mediumblue": "#0000cd",
    "mediumorchid": "#ba55d3",
    "mediumpurple": "#9370db",
    "mediumseagreen": "#3cb371",
    "mediumslateblue": "#7b68ee",
    "mediumspringgreen": "#00fa9a",
    "mediumturquoise": "#48d1cc",
    "mediumvioletred": "#c71585",
    "midnightblue": "#191970",
    "mintcream": "#f5fffa",
    "mistyrose": "#ffe4e1",
    "moccasin": "#ffe4b5",
    "navajowhite": "#ffdead",
    "navy": "#000080",
    "oldlace": "#fdf5e6",
    "olive": "#808000",
    "olivedrab": "#6b8e23",
    "orange": "#ffa500",
    "orangered": "#ff4500",
    "orchid": "#da70d6",
    "palegoldenrod": "#eee8aa",
    "palegreen": "#98fb98",
    "paleturquoise": "#afeeee",
    "palevioletred": "#db7093",
    "papayawhip": "#ffefd5",
    "peachpuff": "#ffdab9",
    "peru": "#cd853f",
    "pink": "#ffc0cb",
    "plum": "#dda0dd",
    "powderblue": "#b0e0e6",
    "purple": "#800080",
    "rebeccapurple": "#663399",
    "red": "#ff0000",
    "rosybrown": "#bc8f8f",
    "royalblue": "#4169e1",
    "saddlebrown": "#8b4513",
    "salmon": "#fa8072",
    "sandybrown": "#f4a460",
    "seagreen": "#2e8b57",
    "seashell": "#fff5ee",
    "sienna": "#a0522d",
    "silver": "#c0c0c0",
    "skyblue": "#87ceeb",
    "slateblue": "#6a5acd",
    "slategray": "#708090",
    "slategrey": "#708090",
    "snow": "#fffafa",
    "springgreen": "#00ff7f",
    "steelblue": "#4682b4",
    "tan": "#d2b48c",
    "teal": "#008080",
    "thistle": "#d8bfd8",
    "tomato": "#ff6347",
    "turquoise": "#40e0d0",
    "violet": "#ee82ee",
    "wheat": "#f5deb3",
    "white": "#ffffff",
    "whitesmoke": "#f5f5f5",
    "yellow": "#ffff00",
    "yellowgreen": "#9acd32",
}

_HEX = re.compile(r"#([a-f0-9]{3}|[a-f0-9]{4}|[a-f0-9]{6}|[a-f0-9]{8})$")
_RGB = re.compile(r"rgb\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)$")
_RGB_PERCENT = re.compile(r"rgb\(\s*(\d+)%\s*,\s*(\d+)%\s*,\s*(\d+)%\s*\)$")
_HSL = re.compile(r"hsl\(\s*(\d+\.?\d*)\s*,\s*(\d+\.?\d*)%\s*,\s*(\d+\.?\d*)%\s*\)$")
_HSV = re.compile(r"hs[bv]\(\s*(\d+\.?\d*)\s*,\s*(\d+\.?\d*)%\s*,\s*(\d+\.?\d*)%\s*\)$")
_RGBA = re.compile(r"rgba\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*\)$")

RGBA = tuple[int, int, int, int]


def parse_color(text: str) -> RGBA:
    """The RGBA of a colour string, as PIL.ImageColor.getcolor(text, "RGBA") after
    large_image's aliases. Raises ValueError when text is not a colour."""
    text = LARGE_IMAGE_ALIASES.get(text, text)
    if len(text) > MAX_COLOR_LENGTH:
        raise ValueError("colour specifier is too long")
    color = text.lower()
    if color in CSS_COLORS:
        color = CSS_COLORS[color]
    match = _HEX.match(color)
    if match:
        digits = match.group(1)
        if len(digits) <= 4:
            digits = "".join(c * 2 for c in digits)
        values = [int(digits[i : i + 2], 16) for i in range(0, len(digits), 2)]
        return _rgba(values)
    match = _RGB.match(color) or _RGBA.match(color)
    if match:
        return _rgba([int(v) for v in match.groups()])
    match = _RGB_PERCENT.match(color)
    if match:
        return _rgba([int(int(v) * 255 / 100.0 + 0.5) for v in match.groups()])
    match = _HSL.match(color)
    if match:
        h, s, lightness = (float(v) for v in match.groups())
        floats = colorsys.hls_to_rgb(h / 360.0, lightness / 100.0, s / 100.0)
        return _rgba([int(v * 255 + 0.5) for v in floats])
    match = _HSV.match(color)
    if match:
        h, s, v = (float(v) for v in match.groups())
        floats = colorsys.hsv_to_rgb(h / 360.0, s / 100.0, v / 100.0)
        return _rgba([int(v * 255 + 0.5) for v in floats])
    raise ValueError(f"not a colour: {text!r}")


def is_color(text: str) -> bool:
    try:
        parse_color(text)
    except ValueError:
        return False
    return True


def _rgba(values: list[int]) -> RGBA:
    if any(v > 255 for v in values):
        raise ValueError("colour components must be at most 255")
    if len(values) == 3:
        values = [*values, 255]
    return (values[0], values[1], values[2], values[3])
