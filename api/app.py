"""The Flask application: per-process services, the routes, the one error mapping."""

from __future__ import annotations

from flask import Flask

from api.errors import register_error_handlers
from api.routes import health, images, jobs, metrics, regions, sources, tiles
from api.services import EXTENSION, Services
from common.settings import Settings, get_settings


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask("tilecast", static_folder=None)
    app.extensions[EXTENSION] = Services.build(settings)
    for blueprint in (tiles.bp, images.bp, regions.bp, sources.bp, health.bp, metrics.bp):
        app.register_blueprint(blueprint)
    app.register_blueprint(jobs.bp)
    register_error_handlers(app)
    return app
