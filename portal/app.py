"""The Flask application factory."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from portal import api, api_licences, health, pki_http, status_http
from portal.config import Settings, resolve_settings
from portal.context import install_services
from portal.errors import register_error_handlers
from portal.services import Services

__all__ = ["create_app"]


def create_app(
    test_config: Mapping[str, Any] | None = None, *, settings: Settings | None = None
) -> Flask:
    """A Yinxin web app for `settings` (default: resolved from the environment)."""
    settings = settings or resolve_settings()
    app = Flask(__name__, instance_path=str(settings.home))
    app.config.from_mapping(YINXIN_SETTINGS=settings)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep RFC 9457 member order
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # agencies' names as UTF-8
    if test_config is not None:
        app.config.update(test_config)
    _use_gunicorn_logging(app)

    install_services(app, Services(settings))
    register_error_handlers(app)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(pki_http.blueprint)
    app.register_blueprint(status_http.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(api_licences.blueprint)
    return app


def _use_gunicorn_logging(app: Flask) -> None:
    """Under gunicorn, log through its error log so one stream holds everything."""
    gunicorn_logger = logging.getLogger("gunicorn.error")
    if not gunicorn_logger.handlers:
        return
    for name in ("portal", app.logger.name):
        logger = logging.getLogger(name)
        logger.handlers = gunicorn_logger.handlers
        logger.setLevel(gunicorn_logger.level)
