"""What the /api/v1 blueprints share: authentication, the cross-site guard and body
limits before each view, uploads and JSON bodies read within their limits (JSON also
within a nesting depth), the verification rate limit, and the answers those limits
give (413, 415, 429).

Config keys (app.config; create_app's test_config may set them), with defaults:
YINXIN_MAX_UPLOAD_BYTES (50 MiB) and YINXIN_VERIFY_RATE_LIMIT (the setting
verify_rate_limit, 60 a minute per address, shared by every verification route).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, Response, current_app, request
from werkzeug.datastructures import FileStorage

from hsm_sim.errors import ErrorCategory
from portal.api_auth import (
    authenticate_request,
    client_address,
    current_client,
    install_authentication,
    require_non_simple_request,
    too_many_requests,
)
from portal.config import WEB_LIMIT_DEFAULTS
from portal.context import current_services
from portal.errors import problem_response
from portal.json_input import load_json
from portal.rate_limit import SlidingWindowCounter
from seal.errors import SealNotFoundError
from seal.lifecycle import SealRecord

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_VERIFY_RATE_LIMIT",
    "MAX_UPLOAD_BYTES",
    "NO_STORE",
    "VERIFY_RATE_LIMIT",
    "ApiRequestError",
    "NoSuchSealError",
    "UploadTooLarge",
    "authenticate_and_limit",
    "install_api_support",
    "limit_verifications",
    "no_store",
    "own_seal",
    "read_json_body",
    "read_upload",
    "too_large",
    "upload_limit",
]

MAX_UPLOAD_BYTES = "YINXIN_MAX_UPLOAD_BYTES"
DEFAULT_MAX_UPLOAD_BYTES = 50 * 1024 * 1024
VERIFY_RATE_LIMIT = "YINXIN_VERIFY_RATE_LIMIT"  # requests per minute per address
DEFAULT_VERIFY_RATE_LIMIT = WEB_LIMIT_DEFAULTS[VERIFY_RATE_LIMIT]
NO_STORE = "no-store"
# Room for the multipart framing and the small form fields next to the file.
_FORM_OVERHEAD = 256 * 1024
_VERIFY_REQUESTS_KEY = "yinxin-verify-requests"


class ApiRequestError(ValueError):
    """A request the API cannot act on as sent."""

    category = ErrorCategory.BAD_REQUEST


class NoSuchSealError(Exception):
    """No seal of the client's agency by that id or seal code (404)."""

    category = ErrorCategory.NOT_FOUND


class UploadTooLarge(Exception):
    """An uploaded file or body over its limit (413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.limit = limit


def install_api_support(app: Flask) -> None:
    """Defaults, the authentication failure counter and the verification counter, once
    per app whichever blueprint comes first."""
    app.config.setdefault(MAX_UPLOAD_BYTES, DEFAULT_MAX_UPLOAD_BYTES)
    app.config.setdefault(VERIFY_RATE_LIMIT, DEFAULT_VERIFY_RATE_LIMIT)
    if _VERIFY_REQUESTS_KEY not in app.extensions:
        install_authentication(app)
        app.extensions[_VERIFY_REQUESTS_KEY] = SlidingWindowCounter(
            limit=int(app.config[VERIFY_RATE_LIMIT]), window=60.0
        )
    app.register_error_handler(UploadTooLarge, _upload_too_large)


def upload_limit() -> int:
    return int(current_app.config[MAX_UPLOAD_BYTES])


def too_large(limit: int) -> Response:
    return problem_response(
        413,
        f"the upload is larger than {limit} bytes, the most this API accepts",
        type_="urn:yinxin:problem:request-too-large",
        limit=limit,
    )


def _upload_too_large(error: UploadTooLarge) -> Response:
    return too_large(error.limit)


def authenticate_and_limit() -> Response | None:
    """A blueprint's before_request: the client (unless the view is public), that a
    state-changing request is no cross-site "simple" one, then the body limit, refused
    before the body is read."""
    refused = authenticate_request() or require_non_simple_request()
    if refused is not None:
        return refused
    if request.method == "POST":
        body_limit = upload_limit() + _FORM_OVERHEAD
        if request.content_length is not None and request.content_length > body_limit:
            return too_large(upload_limit())
        # A body without a length (chunked) is cut off at the limit as it is parsed.
        request.max_content_length = body_limit
    return None


def limit_verifications() -> Response | None:
    """429 when this address has verified too often in the last minute."""
    requests: SlidingWindowCounter = current_app.extensions[_VERIFY_REQUESTS_KEY]
    wait = requests.take(client_address())
    if wait is None:
        return None
    return too_many_requests(
        wait, f"too many verifications from this address; try again in {wait} s"
    )


def read_upload(name: str, limit: int | None = None) -> tuple[bytes, str | None]:
    """The uploaded file `name`, whole; UploadTooLarge when it is over the limit."""
    limit = upload_limit() if limit is None else limit
    part: FileStorage | None = request.files.get(name)
    if part is None:
        raise ApiRequestError(
            f"send the document as the multipart/form-data file field {name!r}"
        )
    data = part.stream.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLarge(limit)
    return data, part.filename


def read_json_body(limit: int) -> dict[str, Any]:
    """The request's JSON object; 400 for anything else, 413 over `limit` bytes."""
    if not request.is_json:
        raise ApiRequestError("send a JSON object (Content-Type: application/json)")
    if request.content_length is not None and request.content_length > limit:
        raise UploadTooLarge(limit)
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise UploadTooLarge(limit)
    try:
        document = load_json(raw.decode("utf-8"), source="the body")
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiRequestError("the body is not valid JSON (UTF-8)") from None
    if not isinstance(document, dict):
        raise ApiRequestError("the body must be a JSON object")
    return document


def own_seal(reference: str) -> SealRecord:
    """The calling client's agency's seal with this id or seal code.

    An unknown seal and another agency's are the same 404, in the same words, made
    from the reference as sent: seal codes are sequential, so anything else would let
    a client list other agencies' seals and learn their ids.
    """
    try:
        # No seal's id or code holds a NUL, and PostgreSQL refuses one in a query.
        record = (
            None
            if "\x00" in reference
            else current_services().seal_registry().get_seal(reference)
        )
    except SealNotFoundError:
        record = None
    if record is None or record.agency_uscc != current_client().agency_uscc:
        raise NoSuchSealError(
            f"this agency has no seal with id or seal code {reference.strip()[:40]!r}"
        )
    return record


def no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = NO_STORE
    return response
