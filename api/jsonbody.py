"""JSON request bodies, parsed in one place: Flask's ``request.get_json`` goes through
:class:`BoundedJSONProvider`, whose ``loads`` measures the nesting before parsing
(common.params.loads_json), so a deeply nested body is a 400 naming ``body`` on every
endpoint that reads one, present or future, never a RecursionError (a 500)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from tilecast.common.params import loads_json


class BoundedJSONProvider(DefaultJSONProvider):
    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return loads_json(s, "body", **kwargs)


def install(app: Flask) -> None:
    app.json = BoundedJSONProvider(app)
