"""``GET /tilecast/file/{id}/path``: where a file lies on Girder's disk, for tilecast
workers that mount the same filesystem. Guarded by the shared secret, not by a Girder
user: the caller is a service."""

from __future__ import annotations

import hmac
import os

import cherrypy
from girder.api import access
from girder.api.describe import Description, describeRoute
from girder.api.rest import Resource, RestException
from girder.constants import AssetstoreType
from girder.models.assetstore import Assetstore
from girder.models.file import File
from girder.utility import assetstore_utilities

from . import settings
from .notifier import SECRET_HEADER


class TilecastResource(Resource):
    def __init__(self) -> None:
        super().__init__()
        self.resourceName = "tilecast"
        self.route("GET", ("file", ":id", "path"), self.file_path)

    @access.public
    @describeRoute(
        Description("The absolute path of a file on Girder's filesystem assetstore.")
        .notes(f"For tilecast workers: needs the {SECRET_HEADER} header (tilecast.secret).")
        .param("id", "The file's id.", paramType="path")
        .errorResponse("Missing or wrong shared secret.", 401)
        .errorResponse("No such file, or the file is not on a filesystem assetstore.", 404)
    )
    def file_path(self, id: str, params: dict) -> dict:
        _require_secret()
        file = File().load(id, force=True, exc=False) if _is_object_id(id) else None
        if file is None:
            raise RestException("File not found.", code=404)
        path = _filesystem_path(file)
        if path is None:
            raise RestException("The file is not on a filesystem assetstore.", code=404)
        return {"path": path, "size": int(file.get("size") or 0), "fileId": str(file["_id"])}


def _require_secret() -> None:
    expected = settings.current().secret
    given = cherrypy.request.headers.get(SECRET_HEADER, "")
    # An unset secret opens nothing.
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise RestException(f"Missing or wrong {SECRET_HEADER} header.", code=401)


def _is_object_id(text: str) -> bool:
    return len(text) == 24 and all(c in "0123456789abcdefABCDEF" for c in text)


def _filesystem_path(file: dict) -> str | None:
    # Link files (linkUrl) have no assetstore; S3 and GridFS files have no local path.
    if not file.get("assetstoreId"):
        return None
    assetstore = Assetstore().load(file["assetstoreId"], exc=False)
    if assetstore is None or assetstore.get("type") != AssetstoreType.FILESYSTEM:
        return None
    adapter = assetstore_utilities.getAssetstoreAdapter(assetstore)
    return os.path.abspath(adapter.fullPath(file))
