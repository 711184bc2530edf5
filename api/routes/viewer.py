"""The browser pages: ``GET /`` (the registered sources with thumbnails) and
``GET /viewer/{id}`` (OpenSeadragon over the source's tiles), and their static files.

The pages are shells: their scripts fetch ``/sources``, ``/item/{id}/tiles`` and the
tiles themselves with the page's ``token`` query parameter, so every read passes the
access check of the mode in force; the HTML holds no more than the source's id and name.
``/viewer/{id}`` names its argument ``item_id``, so in ``girder`` mode the page itself
needs a token that may read the item. Errors are HTML pages for browsers and the api's
usual JSON for every other client.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request

from tilecast.api.errors import tilecast_error_response
from tilecast.api.openapi import HTML, document
from tilecast.api.services import services
from tilecast.api.viewer import assets
from tilecast.common.errors import ServiceUnavailable, TilecastError
from tilecast.common.query import INDEX_PAGE, VIEWER_PAGE

bp = Blueprint(
    "viewer",
    __name__,
    static_folder=str(assets.STATIC_DIR),
    static_url_path="/static",
    template_folder="../viewer/templates",
)


def wants_html() -> bool:
    """Whether the client prefers an HTML page to JSON (browsers do; curl, requests don't)."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


@bp.get("/")
@document(produces=HTML, query=INDEX_PAGE)
def index() -> str:
    """The registered sources, each with a thumbnail linking to its viewer."""
    return render_template("tilecast/index.html")


@bp.get("/viewer/<item_id>")
@document(
    produces=HTML,
    query=VIEWER_PAGE,
    responses={404: "unknown source", 503: "OpenSeadragon's files are missing"},
)
def viewer(item_id: str) -> str:
    """OpenSeadragon over the source's tiles; 404 for an unknown id, 503 when the
    installation lacks OpenSeadragon's files."""
    record = services().registry.get(item_id)
    if not assets.is_installed():
        raise ServiceUnavailable(
            "this installation has no OpenSeadragon files: run "
            "`python -m tilecast.api.viewer.assets` in the source tree and reinstall "
            f"(OpenSeadragon {assets.OSD_VERSION} from the npm registry)"
        )
    return render_template("tilecast/viewer.html", item_id=item_id, name=record.name)


@bp.errorhandler(TilecastError)
def error_page(err: TilecastError) -> Response:
    """The api's JSON error for clients that ask for it, else the same error as a page."""
    response = tilecast_error_response(err)
    if not wants_html():
        return response
    page = render_template("tilecast/error.html", status=err.status, error=err)
    response.set_data(page)
    response.mimetype = "text/html"
    return response
