"""Parsing of request parameters shared by every endpoint: one error shape for all."""

from __future__ import annotations

from collections.abc import Mapping

from common.errors import BadRequest


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
