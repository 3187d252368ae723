"""The Flask application factory."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

from portal import api, api_licences, health, pki_http, status_http
from portal.config import Settings, resolve_settings
from portal.context import install_services
from portal.errors import register_error_handlers
from portal.services import Services

__all__ = ["SECURITY_HEADERS", "TRUSTED_PROXIES", "create_app"]

TRUSTED_PROXIES = "YINXIN_TRUSTED_PROXIES"
# On every response. The node serves data (JSON, DER, PDF), never pages: nothing in
# an answer may run, be framed, sniffed into another type or leak the URL onwards.
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


def create_app(
    test_config: Mapping[str, Any] | None = None, *, settings: Settings | None = None
) -> Flask:
    """A Yinxin web app for `settings` (default: resolved from the environment).

    The web limits (portal.config.WEB_LIMITS) come from `settings`; `test_config` may
    set them under their YINXIN_* names.
    """
    settings = settings or resolve_settings()
    app = Flask(__name__, instance_path=str(settings.home))
    app.config.from_mapping(YINXIN_SETTINGS=settings, **settings.web_limits())
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep RFC 9457 member order
    app.json.ensure_ascii = False  # type: ignore[attr-defined]  # agencies' names as UTF-8
    if test_config is not None:
        app.config.update(test_config)
    _use_gunicorn_logging(app)
    _trust_proxies(app, int(app.config[TRUSTED_PROXIES]))
    app.after_request(_add_security_headers)

    install_services(app, Services(settings))
    register_error_handlers(app)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(pki_http.blueprint)
    app.register_blueprint(status_http.blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(api_licences.blueprint)
    return app


def _trust_proxies(app: Flask, proxies: int) -> None:
    """Behind `proxies` reverse proxies, take the client's address (rate limits, failed
    logins, logs) and scheme from their X-Forwarded-For and X-Forwarded-Proto.

    Only as many hops as configured are believed: with 0 (the default) the peer is
    the client and a forwarded header anyone can send changes nothing.
    """
    if proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=proxies, x_proto=proxies
        )


def _add_security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _use_gunicorn_logging(app: Flask) -> None:
    """Under gunicorn, log through its error log so one stream holds everything."""
    gunicorn_logger = logging.getLogger("gunicorn.error")
    if not gunicorn_logger.handlers:
        return
    for name in ("portal", app.logger.name):
        logger = logging.getLogger(name)
        logger.handlers = gunicorn_logger.handlers
        logger.setLevel(gunicorn_logger.level)
