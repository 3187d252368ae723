"""Request-scoped access to the app's services and this request's database session."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from portal.services import Services

__all__ = ["current_services", "current_services_of", "db_session", "install_services"]

_EXTENSION_KEY = "yinxin"


def install_services(app: Flask, services: Services) -> None:
    """Attach `services` to `app` and close each request's session on teardown."""
    app.extensions[_EXTENSION_KEY] = services
    app.teardown_appcontext(_close_db_session)


def current_services() -> Services:
    """The services of the app handling the current request."""
    return current_services_of(current_app)


def current_services_of(app: Flask) -> Services:
    """The services installed in `app`."""
    services: Services = app.extensions[_EXTENSION_KEY]
    return services


def db_session() -> Session:
    """This request's database session, opened on first use and closed on teardown."""
    if "db_session" not in g:
        g.db_session = current_services().sessions()
    session: Session = g.db_session
    return session


def _close_db_session(_error: BaseException | None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()
