"""Request parameters, declared once as data: :class:`Param` names a query (or header,
or cookie) parameter with its type, bounds, default and meaning. The parsers read
their parameters through these declarations, and ``/openapi.json`` (api/openapi.py)
documents the same declarations, so what the document promises is what is enforced.
Each parameter is declared beside the code that owns its meaning (common/encoding.py,
common/regionparams.py, ...); common/query.py names the groups every endpoint reads.

Parsing errors have one shape for all: a :class:`BadRequest` naming the parameter.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tilecast.common.errors import BadRequest

# What the kinds are called in a JSON schema.
INTEGER = "integer"
NUMBER = "number"
BOOLEAN = "boolean"
STRING = "string"
JSON_TEXT = "json"  # a string holding JSON (the ``style`` parameter)
KINDS = frozenset({INTEGER, NUMBER, BOOLEAN, STRING, JSON_TEXT})
LOCATIONS = frozenset({"query", "header", "cookie"})
# large_image's girder plugin's spellings of a boolean; absent or empty is the default.
TRUE_WORDS = ("true", "on", "yes", "1")
FALSE_WORDS = ("false", "off", "no", "0")


@dataclass(frozen=True)
class Param:
    """One request parameter: what a parser reads and ``/openapi.json`` documents.

    ``low``/``high`` bound integers (inclusive) and numbers (numbers: their magnitude
    may not pass the larger of the two); ``choices`` are the spellings a string takes.
    A bound or default a deployment sets names its Settings field (``high_setting``,
    ``default_setting``): :meth:`resolved` puts the configured value in its place."""

    name: str
    doc: str
    kind: str = STRING
    default: Any = None
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    location: str = "query"
    high_setting: str | None = None
    default_setting: str | None = None

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind
        assert self.location in LOCATIONS, self.location

    def resolved(self, settings: Any) -> Param:
        """This parameter with the bound and default ``settings`` configure."""
        if self.high_setting is None and self.default_setting is None:
            return self
        return replace(self, high=self.high_in(settings), default=self.default_in(settings))

    def high_in(self, settings: Any) -> Any:
        """The upper bound in force under ``settings`` (a Settings)."""
        if self.high_setting is None:
            return self.high
        return getattr(settings, self.high_setting)

    def default_in(self, settings: Any) -> Any:
        """The default in force under ``settings`` (a Settings)."""
        if self.default_setting is None:
            return self.default
        return getattr(settings, self.default_setting)

    def described(self, doc: str) -> Param:
        """The same parameter, said otherwise where an endpoint gives it another role."""
        return replace(self, doc=doc)

    def integer(
        self,
        args: Mapping[str, str],
        settings: Any = None,
        *,
        default: Any = ...,
        high: int | None = None,
    ) -> int | None:
        """The integer within [low, high]; the default when absent or empty. A bound or
        default a Settings field sets is read from ``settings``; ``default`` and ``high``
        stand in for one the request itself sets (another parameter, say)."""
        raw = args.get(self.name)
        if raw is None or raw == "":
            return self.default_in(settings) if default is ... else default  # type: ignore[no-any-return]
        top = high if high is not None else self.high_in(settings)
        assert self.low is not None and top is not None, f"{self.name} is unbounded"
        return parse_bounded_int(raw, self.name, int(self.low), int(top))

    def number(self, args: Mapping[str, str]) -> float | None:
        """A finite number no larger in magnitude than the bounds; None when absent."""
        raw = args.get(self.name)
        if raw is None or raw == "":
            return None
        return self.parse_number(raw)

    def parse_number(self, raw: str) -> float:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise BadRequest(
                f"{self.name} must be a number, not {raw!r}", parameter=self.name
            ) from None
        if not math.isfinite(value) or abs(value) > self.magnitude:
            raise BadRequest(
                f"{self.name} must be a finite number, not {raw!r}", parameter=self.name
            )
        return value + 0.0  # -0.0 -> 0.0: one spelling, one key

    @property
    def magnitude(self) -> float:
        bounds = [abs(b) for b in (self.low, self.high) if b is not None]
        return max(bounds) if bounds else math.inf

    def boolean(self, args: Mapping[str, str]) -> bool:
        """true/on/yes/1 or false/off/no/0 (any case); the default when absent or empty."""
        raw = args.get(self.name)
        if raw is None:
            return bool(self.default)
        text = raw.strip().lower()
        if text in TRUE_WORDS:
            return True
        if text in FALSE_WORDS or text == "":
            return False
        raise BadRequest(f"{self.name} must be true or false, not {raw!r}", parameter=self.name)

    def text(self, args: Mapping[str, Any]) -> Any:
        """The raw value; the default when absent or empty."""
        return args.get(self.name) or self.default


def names(params: tuple[Param, ...]) -> tuple[str, ...]:
    return tuple(p.name for p in params)


def parse_bounded_int(raw: str, name: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be an integer, not {raw!r}", parameter=name) from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, not {value}", parameter=name)
    return value


# The deepest nesting any JSON a request carries may have (bodies, the ``style``
# parameter). Python's json parser recurses once per level and fails with a
# RecursionError (not a ValueError) near 1000: the text is measured before parsing.
MAX_JSON_DEPTH = 32
# A JSON string (skipped whole: brackets inside it are text) or a bracket.
_JSON_TOKENS = re.compile(r'"(?:[^"\\]+|\\.)*"|[\[\]{}]', re.DOTALL)


def json_depth_within(text: str, max_depth: int) -> bool:
    """Whether no array or object of ``text`` is nested deeper than ``max_depth``."""
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        char = match.group()[0]
        if char in "[{":
            depth += 1
            if depth > max_depth:
                return False
        elif char in "]}":
            depth -= 1
    return True


def loads_json(
    text: str | bytes, name: str, *, max_depth: int = MAX_JSON_DEPTH, **options: Any
) -> Any:
    """``json.loads`` of request input named ``name``: nesting deeper than ``max_depth``
    is a BadRequest naming it, before any parsing; malformed JSON is a ValueError."""
    if isinstance(text, bytes | bytearray):
        text = text.decode(json.detect_encoding(text))
    if not json_depth_within(text, max_depth):
        raise BadRequest(f"{name} is nested deeper than {max_depth} levels", parameter=name)
    return json.loads(text, **options)
