"""Who is calling the REST API: an agency's API client, by its id and secret, sent as

    Authorization: Basic base64(<client id>:<client secret>)   (client_secret_basic)
    Authorization: Bearer <client id>:<client secret>

Every /api/v1 route requires it except the ones marked `@public`. The secret is checked
by pki.registry.authenticate_client (a constant-time comparison; an unknown id costs
the same as a wrong secret). A failure is 401 with the same message whichever part was
wrong, and a `WWW-Authenticate: Bearer` challenge: never `Basic`, which would make a
browser ask for credentials, keep them and send them with requests any web page makes.

Guessing is slowed per (address, client id): after too many failures in a short time
that pair gets 429 with `Retry-After` for a while, even with the right secret — else
the answer would tell a guesser when it had guessed right. Other clients at the same
address (a whole office behind one proxy) and the same client elsewhere go on as
before: nobody is locked out by someone else's failures for another client id.

Requests that change something must also be ones a browser cannot send from another
site without asking the node first (a CORS preflight, which the node never grants):
see `require_non_simple_request`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, g, request

from pki.errors import AuthenticationError
from pki.registry import ApiClientRecord, authenticate_client
from portal.config import WEB_LIMIT_DEFAULTS
from portal.context import current_services
from portal.errors import one_line, problem_response
from portal.rate_limit import SlidingWindowCounter

__all__ = [
    "AUTH_CHALLENGE",
    "AUTH_FAILURES_KEY",
    "CLIENT_MARKER_HEADER",
    "authenticate_request",
    "client_address",
    "current_client",
    "install_authentication",
    "is_public",
    "public",
    "require_non_simple_request",
    "too_many_requests",
]

F = TypeVar("F", bound=Callable[..., Any])

AUTH_CHALLENGE = 'Bearer realm="yinxin-api"'
AUTH_FAILURES_KEY = "yinxin-auth-failures"
# Config keys (portal.config.WEB_LIMITS): failed authentications per address and
# client id, and the window (seconds) they are counted in.
AUTH_FAILURE_LIMIT = "YINXIN_AUTH_FAILURE_LIMIT"
AUTH_FAILURE_WINDOW = "YINXIN_AUTH_FAILURE_WINDOW"
# A header no browser sends across sites without a preflight; scripts send it with
# multipart uploads (`curl -H 'X-Yinxin-Client: 1' -F file=@...`).
CLIENT_MARKER_HEADER = "X-Yinxin-Client"
_MAX_CREDENTIAL_LENGTH = 256
_STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def public(view: F) -> F:
    """Mark an API view as open to anyone (no client authentication)."""
    view.yinxin_public = True  # type: ignore[attr-defined]
    return view


def is_public(view: Callable[..., Any]) -> bool:
    return bool(getattr(view, "yinxin_public", False))


def install_authentication(app: Flask) -> None:
    """This worker's failure counter, with the app's limits."""
    for key in (AUTH_FAILURE_LIMIT, AUTH_FAILURE_WINDOW):
        app.config.setdefault(key, WEB_LIMIT_DEFAULTS[key])
    app.extensions[AUTH_FAILURES_KEY] = SlidingWindowCounter(
        limit=int(app.config[AUTH_FAILURE_LIMIT]),
        window=float(app.config[AUTH_FAILURE_WINDOW]),
    )


def client_address() -> str:
    """The client's address: the peer, or behind trusted proxies (the setting
    trusted_proxies) the address they forwarded."""
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


def _credentials() -> tuple[str, str] | None:
    """(client id, secret) from a Basic or Bearer Authorization header, if any."""
    try:
        authorization = request.authorization
    except ValueError:  # Werkzeug's, for Basic credentials that are not ASCII
        return None
    if authorization is None:
        return None
    if authorization.type == "basic":
        client_id, secret = authorization.username, authorization.password
    elif authorization.type == "bearer" and authorization.token:
        client_id, _, secret = authorization.token.partition(":")
    else:
        return None
    if not client_id or not secret:
        return None
    return client_id, secret


def authenticate_request() -> Response | None:
    """The API blueprint's first step: None to go on, or the response refusing it."""
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or is_public(view):
        return None
    credentials = _credentials()
    if credentials is None:
        return _unauthorized(
            "this API needs an API client's id and secret: HTTP Basic "
            "(curl -u ID:SECRET) or Authorization: Bearer ID:SECRET"
        )
    client_id, secret = credentials
    failures: SlidingWindowCounter = current_app.extensions[AUTH_FAILURES_KEY]
    # The id as sent, cut short: a long one still counts, under one key.
    pair = f"{client_address()} {client_id[:_MAX_CREDENTIAL_LENGTH]}"
    wait = failures.retry_after(pair)
    if wait is not None:
        return too_many_requests(
            wait,
            "too many failed authentications for this client id from this address; "
            f"try again in {wait} s",
        )
    if (
        len(client_id) > _MAX_CREDENTIAL_LENGTH
        or len(secret) > _MAX_CREDENTIAL_LENGTH
        or not (client_id + secret).isprintable()
    ):
        # Ids and secrets are printable ASCII; a NUL would be a DataError (a 500) in
        # PostgreSQL's query for the id.
        failures.record(pair)
        return _unauthorized("invalid API client credentials")
    try:
        with current_services().sessions() as session:
            g.api_client = authenticate_client(session, client_id, secret)
    except AuthenticationError as exc:
        failures.record(pair)
        return _unauthorized(one_line(exc))
    return None


def require_non_simple_request() -> Response | None:
    """415 for a state-changing request a page on another site could have sent.

    A browser sends a cross-site POST without asking only when it is a "simple"
    request (CORS): a form-like body (text/plain, urlencoded, multipart) and no custom
    header. So every authenticated request that changes something must carry either a
    JSON body (Content-Type: application/json) or the header X-Yinxin-Client; either
    one makes the browser ask first, and the node never says yes.
    """
    if request.method not in _STATE_CHANGING_METHODS:
        return None
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None or is_public(view):
        return None
    if request.is_json or request.headers.get(CLIENT_MARKER_HEADER, "").strip():
        return None
    return problem_response(
        415,
        "a request that changes something must send a JSON body (Content-Type: "
        f"application/json) or, with a multipart upload, the header "
        f"{CLIENT_MARKER_HEADER}: 1",
        type_="urn:yinxin:problem:not-a-client-request",
    )


def current_client() -> ApiClientRecord:
    """The API client this request authenticated as."""
    client: ApiClientRecord = g.api_client
    return client
