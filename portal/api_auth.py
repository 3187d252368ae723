"""Who is calling the REST API: an agency's API client, by HTTP Basic authentication.

    Authorization: Basic base64(<client id>:<client secret>)

as OAuth's client_secret_basic. Every /api/v1 route requires it except the ones marked
`@public`. The secret is checked by pki.registry.authenticate_client (a constant-time
comparison; an unknown id costs the same as a wrong secret). A failure is 401 with a
`WWW-Authenticate` challenge and the same message whichever part was wrong. An address
with too many failures in a short time gets 429 with `Retry-After` for a while, valid
credentials or not, so secrets cannot be guessed at speed from one address.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request

from pki.errors import AuthenticationError
from pki.registry import ApiClientRecord, authenticate_client
from portal.context import current_services
from portal.errors import one_line, problem_response
from portal.rate_limit import SlidingWindowCounter

__all__ = [
    "AUTH_CHALLENGE",
    "AUTH_FAILURES_KEY",
    "authenticate_request",
    "client_address",
    "current_client",
    "install_authentication",
    "is_public",
    "public",
    "too_many_requests",
]

F = TypeVar("F", bound=Callable[..., Any])

AUTH_CHALLENGE = 'Basic realm="yinxin-api", charset="UTF-8"'
AUTH_FAILURES_KEY = "yinxin-auth-failures"
# Config keys and defaults: failed authentications per address and window (seconds).
AUTH_FAILURE_LIMIT = "YINXIN_AUTH_FAILURE_LIMIT"
AUTH_FAILURE_WINDOW = "YINXIN_AUTH_FAILURE_WINDOW"
DEFAULT_AUTH_FAILURE_LIMIT = 10
DEFAULT_AUTH_FAILURE_WINDOW = 300
_MAX_CREDENTIAL_LENGTH = 256


def public(view: F) -> F:
    """Mark an API view as open to anyone (no client authentication)."""
    view.yinxin_public = True  # type: ignore[attr-defined]
    return view


def is_public(view: Callable[..., Any]) -> bool:
    return bool(getattr(view, "yinxin_public", False))


def install_authentication(app: Flask) -> None:
    """Set the failure limits' defaults and this worker's failure counter."""
    app.config.setdefault(AUTH_FAILURE_LIMIT, DEFAULT_AUTH_FAILURE_LIMIT)
    app.config.setdefault(AUTH_FAILURE_WINDOW, DEFAULT_AUTH_FAILURE_WINDOW)
    app.extensions[AUTH_FAILURES_KEY] = SlidingWindowCounter(
        limit=int(app.config[AUTH_FAILURE_LIMIT]),
        window=float(app.config[AUTH_FAILURE_WINDOW]),
    )


def client_address() -> str:
    """The peer's address as this worker sees it (behind a proxy: the proxy's)."""
    return request.remote_addr or "unknown"


def too_many_requests(retry_after: int, detail: str) -> Response:
    response = problem_response(
        429, detail, type_="urn:yinxin:problem:too-many-requests"
    )
    response.headers["Retry-After"] = str(retry_after)
    return response


def _unauthorized(detail: str) -> Response:
    response = problem_response(401, detail, type_="urn:yinxin:problem:unauthorized")
    response.headers["WWW-Authenticate"] = AUTH_CHALLENGE
    return response


def authenticate_request() -> Response | None:
    """The API blueprint's first step: None to go on, or the response refusing it."""
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or is_public(view):
        return None
    failures: SlidingWindowCounter = current_app.extensions[AUTH_FAILURES_KEY]
    address = client_address()
    wait = failures.retry_after(address)
    if wait is not None:
        return too_many_requests(
            wait,
            f"too many failed authentications from this address; try again in {wait} s",
        )
    credentials = request.authorization
    if (
        credentials is None
        or credentials.type != "basic"
        or not credentials.username
        or credentials.password is None
    ):
        return _unauthorized(
            "this API needs HTTP Basic authentication with an API client's id and secret"
        )
    client_id, secret = credentials.username, credentials.password
    if len(client_id) > _MAX_CREDENTIAL_LENGTH or len(secret) > _MAX_CREDENTIAL_LENGTH:
        failures.record(address)
        return _unauthorized("invalid API client credentials")
    try:
        with current_services().sessions() as session:
            g.api_client = authenticate_client(session, client_id, secret)
    except AuthenticationError as exc:
        failures.record(address)
        return _unauthorized(one_line(exc))
    return None


def current_client() -> ApiClientRecord:
    """The API client this request authenticated as."""
    client: ApiClientRecord = g.api_client
    return client
