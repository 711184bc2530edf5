"""QIDO-RS query parameters (PS3.18 8.3.4) and matching over plain datasets
(common/dicomjson.py's keyword -> value dictionaries).

Understood: ``limit`` and ``offset`` (paging), ``includefield`` and ``fuzzymatching``
(accepted; every answer carries all the attributes tilecast has, and names match
exactly or by wildcard), and any attribute of :data:`~tilecast.common.dicomjson.ATTRIBUTES`
by keyword or tag: a UID matches any of a comma- or backslash-separated list, other
text exactly or by ``*``/``?`` wildcards. An attribute tilecast does not hold is
ignored, as the standard asks (PS3.18 8.3.4.1), and named in a ``Warning`` header.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tilecast.common.dicomjson import ATTRIBUTES, keyword_of
from tilecast.common.errors import BadRequest
from tilecast.common.params import INTEGER, Param

MAX_LIMIT = 1000
MAX_PAGING = 2**31 - 1
# A larger limit is no error: a server may answer fewer results than asked (PS3.18
# 8.3.4.4); each answer holds at most MAX_LIMIT.
LIMIT = Param("limit", f"at most this many results (an answer holds at most {MAX_LIMIT})",
              INTEGER, default=MAX_LIMIT, low=0, high=MAX_PAGING)  # fmt: skip
OFFSET = Param("offset", "skip this many results first", INTEGER, default=0, low=0,
               high=MAX_PAGING)  # fmt: skip
INCLUDE_FIELD = Param("includefield", "accepted: every answer carries all its attributes")
FUZZY = Param("fuzzymatching", "accepted; names match exactly or by * and ? wildcards")
# A few documented match keys; every attribute of common/dicomjson.py is one.
MATCH_KEYS = tuple(
    Param(name, f"match {name} ({kind})")
    for name, kind in (
        ("StudyInstanceUID", "a list of UIDs, comma-separated"),
        ("SeriesInstanceUID", "a list of UIDs, comma-separated"),
        ("SOPInstanceUID", "a list of UIDs, comma-separated"),
        ("SOPClassUID", "a list of UIDs, comma-separated"),
        ("Modality", "SM"),
    )
)
QIDO_PARAMS = (LIMIT, OFFSET, INCLUDE_FIELD, FUZZY, *MATCH_KEYS)
CONTROL_KEYS = frozenset({"limit", "offset", "includefield", "fuzzymatching"})
# Query keys that are not DICOM matching: access credentials and the like.
_UID_SEPARATORS = re.compile(r"[,\\]")
# Most values one match key may list, and most keys one query may have.
MAX_VALUES, MAX_KEYS = 1000, 64
T = TypeVar("T")


@dataclass(frozen=True)
class Query:
    """A parsed QIDO query: its matches (keyword -> acceptable values) and paging."""

    matches: Mapping[str, tuple[str, ...]]
    limit: int = MAX_LIMIT
    offset: int = 0
    ignored: tuple[str, ...] = field(default=())

    def accepts(self, record: Mapping[str, Any]) -> bool:
        return all(_matches(record, k, values) for k, values in self.matches.items())

    def page(self, results: Sequence[T]) -> list[T]:
        return list(results[self.offset : self.offset + self.limit])

    def value_of(self, keyword: str) -> tuple[str, ...] | None:
        return self.matches.get(keyword)

    @property
    def warning(self) -> str | None:
        """The ``Warning`` header naming the ignored keys, or None."""
        if not self.ignored:
            return None
        return f'299 tilecast "The fields {", ".join(self.ignored)} are not supported"'


def parse_query(
    items: Iterable[tuple[str, str]], args: Mapping[str, str], skip: frozenset[str] = frozenset()
) -> Query:
    """The QIDO query of the request's ``items`` (every key and value, repeats
    included) and ``args`` (its first values); keys in ``skip`` (credentials) are not
    DICOM matching keys."""
    matches: dict[str, tuple[str, ...]] = {}
    ignored: list[str] = []
    for count, (name, value) in enumerate(items):
        if count >= MAX_KEYS * MAX_VALUES:
            raise BadRequest("too many query parameters")
        if name in CONTROL_KEYS or name in skip:
            continue
        keyword = keyword_of(name)
        if keyword is None:
            if name not in ignored:
                ignored.append(name)
            continue
        values = _values(keyword, value)
        matches[keyword] = (*matches.get(keyword, ()), *values)
        if len(matches) > MAX_KEYS or len(matches[keyword]) > MAX_VALUES:
            raise BadRequest(f"too many values of {name}", parameter=name)
    limit = min(MAX_LIMIT, LIMIT.integer(args) or 0)
    offset = OFFSET.integer(args) or 0
    return Query(matches, limit=limit, offset=offset, ignored=tuple(ignored))


def _values(keyword: str, value: str) -> tuple[str, ...]:
    if ATTRIBUTES[keyword][1] == "UI":
        return tuple(part.strip() for part in _UID_SEPARATORS.split(value) if part.strip())
    return (value,)


def _matches(record: Mapping[str, Any], keyword: str, wanted: tuple[str, ...]) -> bool:
    if keyword == "Modality" and keyword not in record:
        keyword = "ModalitiesInStudy"  # a study search by modality (PS3.18 8.3.4.1)
    if keyword not in record:
        return True  # not an attribute of this level: no constraint here
    if not wanted or all(w in ("", "*") for w in wanted):
        return True  # universal matching
    value = record[keyword]
    values = value if isinstance(value, list) else [value]
    texts = [_text(v) for v in values if v is not None and not isinstance(v, dict)]
    for want in wanted:
        if ATTRIBUTES[keyword][1] == "UI":
            if want in texts:
                return True
        elif any(_wildcard(want).fullmatch(text) for text in texts):
            return True
    return False


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@functools.lru_cache(maxsize=256)
def _wildcard(pattern: str) -> re.Pattern[str]:
    """DICOM's wildcards: ``*`` any run of characters, ``?`` one; nothing else is special."""
    return re.compile(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), re.DOTALL)
