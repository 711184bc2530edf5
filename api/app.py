"""The Flask application: per-process services, the routes, the one error mapping."""

from __future__ import annotations

from flask import Flask

from tilecast.api import jsonbody
from tilecast.api.errors import register_error_handlers
from tilecast.api.handlers.girder import ensure_registered
from tilecast.api.hitpath import answer as hitpath
from tilecast.api.middleware import access, cors, limits, observe, publicurl, ratelimit, versioned
from tilecast.api.protocols import (
    dicomweb_routes,
    dzi_routes,
    iiif_routes,
    tilejson_routes,
    zarr_routes,
)
from tilecast.api.routes import (
    girder,
    health,
    images,
    metrics,
    precache_jobs,
    regions,
    sources,
    tiles,
    viewer,
)
from tilecast.api.routes import openapi as openapi_routes
from tilecast.api.services import EXTENSION, Services
from tilecast.common.settings import Settings, get_settings

# girder_large_image serves its tile endpoints under Girder's API root: the same paths
# under /api/v1 let a viewer configured for it switch by changing only the host.
GIRDER_API_ROOT = "/api/v1"


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask("tilecast", static_folder=None)
    svc = app.extensions[EXTENSION] = Services.build(settings)
    observe.install(app, svc.counters)  # first: every later hook logs with the request id
    limits.install(app, settings)  # then: nothing reads an oversized request
    jsonbody.install(app)  # and no JSON body is parsed past a depth bound
    for blueprint in (tiles.bp, images.bp, regions.bp, sources.bp, health.bp, metrics.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(precache_jobs.bp)
    app.register_blueprint(girder.bp)
    app.register_blueprint(openapi_routes.bp)
    app.register_blueprint(viewer.bp)
    for blueprint in (dzi_routes.bp, iiif_routes.bp, tilejson_routes.bp):  # standard tile protocols
        app.register_blueprint(blueprint)
    app.register_blueprint(zarr_routes.bp)  # the OME-Zarr view (api/protocols/zarr_routes.py)
    app.register_blueprint(dicomweb_routes.bp)  # DICOMweb views of every source
    for blueprint in (tiles.bp, images.bp, regions.bp, dzi_routes.bp, tilejson_routes.bp):
        app.register_blueprint(
            blueprint, url_prefix=GIRDER_API_ROOT, name=f"girder_api_{blueprint.name}"
        )
    access.install(app, settings, lambda item_id: ensure_registered(svc, item_id))
    ratelimit.install(app, settings, svc.state)  # after access: limits verified clients
    cors.install(app, settings.cors_origins, settings.cors_manage_origins)  # after the routes
    versioned.install(app)  # gen=<generation> URLs: immutable (api/middleware/versioned.py)
    register_error_handlers(app)
    publicurl.install(app, settings)  # absolute URLs from the public base URL
    hitpath.install(app, settings)  # last: tile hits answered before Flask (api/hitpath/)
    return app
