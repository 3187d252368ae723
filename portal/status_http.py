"""GET /status/<list>: this node's Token Status Lists, for every verifier (public).

Credentials carry `<public URL>/status/<region>-<n>` and an index; verifiers fetch the
list there and keep it as its `ttl` says. Content negotiation: `Accept:
application/statuslist+cwt` gets the CWT form, anything else the JWT form
(application/statuslist+jwt, the default). Both forms are signed together.

Caching: `Cache-Control: public, max-age=<the list's ttl, never past its exp>`,
`Last-Modified` (its iat), an ETag (If-None-Match gives 304), `Vary: Accept`. A list
is signed again at once on every revocation or suspension; caches serve the old one
at most `ttl` seconds (one hour), as the Token Status List draft allows.

Errors: no such list 404; no valid signed form and none can be signed now (the key
store locked past the list's exp) 503 with Retry-After. Both problem+json.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from email.utils import format_datetime

from flask import Blueprint, Response, request

from certs import StatusListUnavailableError
from portal.context import current_services
from portal.errors import one_line, problem_response

__all__ = ["CWT", "JWT", "blueprint"]

blueprint = Blueprint("status_lists", __name__, url_prefix="/status")

JWT = "application/statuslist+jwt"
CWT = "application/statuslist+cwt"
RETRY_AFTER_SECONDS = 60
# `<region>-<n>` (certs/status_service.py); anything else is no list of ours.
_LIST_ID = re.compile(r"[0-9]{6}-[0-9]{1,9}")


def _http_date(moment: dt.datetime) -> str:
    return format_datetime(moment.astimezone(dt.UTC), usegmt=True)


@blueprint.get("/<list_id>")
def status_list(list_id: str) -> Response:
    if not _LIST_ID.fullmatch(list_id):
        return problem_response(404, f"no status list named {list_id[:32]!r}")
    form = (
        "cwt" if request.accept_mimetypes.best_match([JWT, CWT], JWT) == CWT else "jwt"
    )
    licences = current_services().licence_registry()
    try:
        document = licences.status_list_document(list_id, form)
    except StatusListUnavailableError as exc:
        response = problem_response(503, one_line(exc))
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    token = document.token
    body = token.encode("ascii") if isinstance(token, str) else token
    response = Response(body, mimetype=JWT if form == "jwt" else CWT)
    now = dt.datetime.now(dt.UTC)
    response.headers["Cache-Control"] = f"public, max-age={document.max_age(now)}"
    response.headers["Last-Modified"] = _http_date(document.issued_at)
    response.headers["Vary"] = "Accept"
    response.set_etag(hashlib.sha256(body).hexdigest()[:32])
    return response.make_conditional(request)
