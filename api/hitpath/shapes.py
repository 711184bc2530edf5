"""The tile URL shapes the hit path answers, read in one pass over the path and query.

A shape is one of the Flask tile routes (api/routes/tiles.py), at the root or under
Girder's API root; :func:`routes_of` checks at startup that the app still has each of
them, with the same rule, so that a changed route cannot leave the hit path answering
URLs Flask no longer would. Anything the shapes do not match exactly -- another
parameter, an empty or dot segment, a non-ASCII id, a coordinate Flask would refuse --
is not matched: Flask answers it as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_plus

from flask import Flask

from tilecast.api.openapi import path_template
from tilecast.api.parsing import path_coordinate
from tilecast.api.tilerange import path_frame
from tilecast.common.errors import TilecastError
from tilecast.common.query import GENERATION

# (URL prefix, path kind) -> (endpoint, rule) of the Flask route the shape stands for.
ROOT, GIRDER_ROOT = "", "/api/v1"
ZXY, FZXY = "zxy", "fzxy"
SHAPES: dict[tuple[str, str], tuple[str, str]] = {
    (ROOT, ZXY): ("tiles.tile", "/item/<item_id>/tiles/zxy/<z>/<x>/<y>"),
    (ROOT, FZXY): ("tiles.tile_with_frame", "/item/<item_id>/tiles/fzxy/<frame>/<z>/<x>/<y>"),
    (GIRDER_ROOT, ZXY): ("girder_api_tiles.tile", "/api/v1/item/<item_id>/tiles/zxy/<z>/<x>/<y>"),
    (GIRDER_ROOT, FZXY): (
        "girder_api_tiles.tile_with_frame",
        "/api/v1/item/<item_id>/tiles/fzxy/<frame>/<z>/<x>/<y>",
    ),
}
# versioned.py reads at most this many digits of ``gen``.
MAX_GEN_DIGITS = 18


@dataclass(frozen=True)
class Route:
    """A matched shape: its route template (the HTTP counters' label)."""

    template: str


@dataclass(frozen=True)
class Target:
    """A tile URL the hit path may answer."""

    route: Route
    item_id: str
    frame: int
    z: int
    x: int
    y: int
    gen: str | None  # the ``gen`` query value (digits), when there is one
    args: dict[str, str]  # the query's parameters


def routes_of(app: Flask) -> dict[tuple[str, str], Route]:
    """Every shape's route, checked against the app's URL map (RuntimeError when one
    is missing or has another rule: the hit path must be changed with the routes)."""
    rules = {rule.endpoint: rule.rule for rule in app.url_map.iter_rules()}
    routes: dict[tuple[str, str], Route] = {}
    for shape, (endpoint, rule) in SHAPES.items():
        if rules.get(endpoint) != rule:
            raise RuntimeError(
                f"api/hitpath: route {endpoint} is {rules.get(endpoint)!r}, not {rule!r}; "
                "change api/hitpath/shapes.py with the route"
            )
        routes[shape] = Route(path_template(rule))
    return routes


def match(
    routes: dict[tuple[str, str], Route], path: str, query: str, names: frozenset[str]
) -> Target | None:
    """The tile a GET of ``path?query`` names, when it has one of the shapes and its
    query only parameters of ``names`` (``gen`` and what the access mode reads)."""
    args = query_args(query, names)
    if args is None:
        return None
    gen = args.get(GENERATION.name)
    if gen is not None and not (gen.isascii() and gen.isdigit() and len(gen) <= MAX_GEN_DIGITS):
        return None
    parts = path.split("/")
    prefix = ROOT
    if len(parts) > 3 and parts[1] == "api" and parts[2] == "v1":
        prefix, parts = GIRDER_ROOT, parts[2:]
    # ["", "item", id, "tiles", kind, ...]: 3 coordinates after zxy, 4 after fzxy.
    if len(parts) < 8 or parts[1] != "item" or parts[3] != "tiles":
        return None
    kind = parts[4]
    item_id = parts[2]
    if not (item_id.isascii() and item_id not in (".", "..") and plain(item_id)):
        return None
    try:
        if kind == ZXY and len(parts) == 8:
            frame, (z, x, y) = 0, parts[5:]
        elif kind == FZXY and len(parts) == 9:
            frame, z, x, y = path_frame(parts[5]), *parts[6:]
        else:
            return None
        return Target(
            routes[(prefix, kind)],
            item_id,
            frame,
            path_coordinate(z, "z"),
            path_coordinate(x, "x"),
            path_coordinate(y, "y"),
            gen,
            args,
        )
    except TilecastError:
        return None  # Flask answers the 400 or 404


def query_args(query: str, names: frozenset[str]) -> dict[str, str] | None:
    """``name=value`` pairs of ``names``, each at most once, decoded as Flask decodes
    them; None for anything else (Flask reads it)."""
    args: dict[str, str] = {}
    if not query:
        return args
    for pair in query.split("&"):
        name, equals, value = pair.partition("=")
        if not equals or name not in names or name in args:
            return None
        args[name] = unquote_plus(value) if "%" in value or "+" in value else value
    return args


def plain(segment: str) -> bool:
    """No character the size bounds refuse (api/middleware/limits.py) and none that
    is empty: an id Flask would route as it is."""
    return bool(segment) and "\\" not in segment and "\x00" not in segment
