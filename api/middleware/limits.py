"""Request size bounds, checked before any view, access check or Redis call.

A query string longer than ``TILECAST_MAX_QUERY_BYTES`` or a path longer than
``TILECAST_MAX_PATH_BYTES`` (as sent, in bytes) is a 414 naming ``query`` or ``path``;
a body longer than ``TILECAST_MAX_BODY_BYTES`` is a 413 (Flask's
``MAX_CONTENT_LENGTH``, enforced however the body is sent, chunked included). The
other bounds sit with the parameters they bound: style bytes and nesting depth
(common/style.py), region and histogram pixels (common/regionplan.py, api/protocols/iiif.py),
thumbnail sides (api/parsing.py).

The path must name its segments plainly: an empty segment (``//``), a ``.`` or ``..``
segment, a backslash or NUL is a 400 naming ``path``, before Werkzeug would merge or
redirect it (differently by position). The check reads the decoded path, the one thing
every supported server gives alike: granian decodes ``%2F`` into ``PATH_INFO`` and
passes no raw request target, so an encoded slash is a slash under every server
(``/item/{id}%2Ftiles`` is ``/item/{id}/tiles``; ``%2F%2F`` an empty segment, a 400).
Item ids never hold a slash, so no resource needs one.
"""

from __future__ import annotations

from flask import Flask, request

from tilecast.common.errors import BadRequest, UriTooLong
from tilecast.common.settings import Settings
from tilecast.common.signing import safe_request_path


def install(app: Flask, settings: Settings) -> None:
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    max_query = settings.max_query_bytes
    max_path = settings.max_path_bytes

    @app.before_request
    def bound_request_line() -> None:
        # WSGI strings are the bytes as sent, one character per byte (latin-1).
        if len(request.environ.get("QUERY_STRING", "")) > max_query:
            raise UriTooLong(
                f"the query string is longer than {max_query} bytes", parameter="query"
            )
        if len(request.environ.get("PATH_INFO", "")) > max_path:
            raise UriTooLong(f"the path is longer than {max_path} bytes", parameter="path")
        path = request.environ.get("PATH_INFO", "")
        if "//" in path or not safe_request_path(path, ""):
            raise BadRequest(
                "the path has an empty, '.' or '..' segment (or a backslash)", parameter="path"
            )
