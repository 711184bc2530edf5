"""Parsing of request parameters shared by every endpoint: one error shape for all."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from tilecast.common.errors import BadRequest


def bounded_int(
    args: Mapping[str, str], name: str, default: int | None, low: int, high: int
) -> int | None:
    """An integer query parameter within [low, high]; ``default`` when absent or empty."""
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    return parse_bounded_int(raw, name, low, high)


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
