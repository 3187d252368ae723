"""The licence API, /api/v1: an agency's licences, usage codes, and licence verification.

    POST /api/v1/licenses                         issue (the client's agency)      201
    GET  /api/v1/licenses                         the agency's licences, newest first
    POST /api/v1/licenses/search                  the same, the filters in a JSON body
    GET  /api/v1/licenses/<id>                    one of them
    GET  /api/v1/licenses/<id>/pdf                its sealed PDF
    POST /api/v1/licenses/<id>/renew              its next version                  201
    POST /api/v1/licenses/<id>/revoke|suspend|reinstate
    POST /api/v1/licenses/<id>/usage-codes        a usage code (用证码)               201
    GET  /api/v1/licenses/by-code/<code>          the sealed PDF, for the code  (public)
    POST /api/v1/verify/licence                   the verdict on a licence      (public)

Status decisions:
- What a client may do is its scopes' business (pki.registry.ClientScope), checked
  first: `licence:issue` to issue and renew, `licence:read` to list and fetch,
  `licence:manage` to revoke, suspend and reinstate, `licence:usage-code` to make
  usage codes; 403 naming the missing scope. The demo client holds them all.
- A client works on its own agency's licences only. Whether a licence is the agency's
  is read from the identifier itself (its agency code): another agency's is 403
  before anything is looked up, so the answer says nothing about whether such a
  licence exists; an identifier that is not one is 400 with the reason, an unknown
  one of the own agency 404. Issuing for another agency (`agency` in the body) is 403.
- Issuing stamps the licence with the agency's official seal (公章), so the client
  needs a grant for it, as for stamping (403 otherwise; `seal` picks one, else the
  newest active official seal the client may use). No active official seal at all is
  409 (make one); licence data that does not fit the type is 400 with every problem
  in `problems`; an unknown type is 400; a number the agency already issued is 409.
- A status change that stands but whose status list could not be signed now is 200
  with `warning` (the schedule signs the list); a change the state does not allow is
  409.
- A usage code is the holder's consent: the code alone fetches the PDF. So the fetch
  is public, rate-limited per address (YINXIN_USAGE_CODE_RATE_LIMIT a minute, 429
  beyond) and every fetch is logged with the address, whatever its outcome. An
  unknown, expired or used-up code, or one whose licence is no longer valid, is the
  same 404 with the same words: a guesser learns nothing, the reason is in the log.
  (The code is in the URL; the access log writes `<code>` in its place, see
  portal/access_log.py. Codes are short-lived and one use by default.)
- Searching by holder: the holder's name or ID number is personal data, so besides
  the `holder` query parameter (left out of the access log, as every query string)
  there is POST /licenses/search with the filters in a JSON body.
- Verification is public and rate-limited like PDF verification. A processed request
  is always 200 with the verdict (VALID, REVOKED, MALFORMED...): the verdict is the
  answer. 400 only when the request does not hold exactly one licence input. Status
  comes from this node's own lists, in process; no URL from the input is fetched.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request, url_for

from certs import (
    LicenceIdentifier,
    LicenceRecord,
    LicenceRegistry,
    StatusListUnavailableError,
    UsageCodeRejectedError,
    verify_licence,
)
from certs.errors import LicenceDataError, UnknownLicenceTypeError
from hsm_sim.errors import ErrorCategory
from pki.registry import ApiClientRecord, ClientScope
from portal.api_auth import client_address, current_client, public, too_many_requests
from portal.api_support import (
    ApiRequestError,
    authenticate_and_limit,
    install_api_support,
    limit_verifications,
    no_store,
    own_seal,
    read_json_body,
    read_upload,
)
from portal.config import WEB_LIMIT_DEFAULTS
from portal.context import current_services
from portal.errors import one_line, problem_response
from portal.licence_options import (
    MAX_DATA_BYTES,
    holder_public_key_from_jwk,
    parse_ttl,
)
from portal.rate_limit import SlidingWindowCounter
from seal.image import SealKind
from seal.lifecycle import Principal, SealStatus

__all__ = ["USAGE_CODE_RATE_LIMIT", "blueprint"]

blueprint = Blueprint("api_licences", __name__, url_prefix="/api/v1")

USAGE_CODE_RATE_LIMIT = "YINXIN_USAGE_CODE_RATE_LIMIT"  # fetches a minute per address
DEFAULT_USAGE_CODE_RATE_LIMIT = WEB_LIMIT_DEFAULTS[USAGE_CODE_RATE_LIMIT]
MAX_REQUEST_JSON_BYTES = MAX_DATA_BYTES + 16 * 1024
MAX_LIST_LIMIT = 1000
_USAGE_FETCHES_KEY = "yinxin-usage-code-fetches"
_CODE_NOT_AVAILABLE = (
    "no licence is available for this usage code: it is unknown, expired or used up, "
    "or the licence is no longer valid; ask the holder for a new code"
)
ISSUE_KEYS = frozenset(
    {"type", "agency", "data", "valid_until", "long_term", "holder_jwk", "seal"}
)
RENEW_KEYS = ISSUE_KEYS - {"type", "agency"}
VERIFY_KEYS = frozenset({"token", "sd_jwt", "nonce", "aud"})
SEARCH_KEYS = frozenset({"holder", "type", "limit"})
USAGE_CODE_KEYS = frozenset({"ttl", "uses", "purpose"})


class LicenceAccessError(Exception):
    """Another agency's licence, or a seal the client may not use to issue."""

    category = ErrorCategory.FORBIDDEN


@blueprint.record_once
def _set_up(state: Any) -> None:
    app = state.app
    install_api_support(app)
    app.config.setdefault(USAGE_CODE_RATE_LIMIT, DEFAULT_USAGE_CODE_RATE_LIMIT)
    app.extensions[_USAGE_FETCHES_KEY] = SlidingWindowCounter(
        limit=int(app.config[USAGE_CODE_RATE_LIMIT]), window=60.0
    )


blueprint.before_request(authenticate_and_limit)


@blueprint.errorhandler(LicenceDataError)
def _licence_data_problem(error: LicenceDataError) -> Response:
    """400 with every problem of the data, one per entry."""
    return problem_response(
        400,
        one_line(error),
        type_=f"urn:yinxin:problem:{ErrorCategory.BAD_REQUEST.value}",
        problems=list(error.problems),
    )


# -- reading requests ------------------------------------------------------------------


def _licences() -> LicenceRegistry:
    return current_services().licence_registry()


def _actor(client: ApiClientRecord) -> str:
    return f"client:{client.client_id}"


def _principal(client: ApiClientRecord) -> Principal:
    """The client as the seal registry knows it: who stamps the licence."""
    return Principal.of(client_id=client.client_id)


def _check_keys(body: dict[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(str(key)[:40] for key in set(body) - allowed)
    if unknown:
        raise ApiRequestError(
            f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}"
        )


def _text(body: dict[str, Any], name: str, *, max_length: int = 200) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise ApiRequestError(f"{name} must be text of at most {max_length} characters")
    return value


def _validity(body: dict[str, Any]) -> dict[str, Any]:
    """valid_until, long_term and holder_key for the registry, checked."""
    text = _text(body, "valid_until", max_length=10)
    valid_until = None
    if text is not None:
        try:
            valid_until = dt.date.fromisoformat(text)
        except ValueError:
            raise ApiRequestError("valid_until must be a date, YYYY-MM-DD") from None
    long_term = body.get("long_term", False)
    if not isinstance(long_term, bool):
        raise ApiRequestError("long_term must be true or false")
    jwk = body.get("holder_jwk")
    return {
        "valid_until": valid_until,
        "long_term": long_term,
        "holder_key": (
            holder_public_key_from_jwk(jwk, source="holder_jwk")
            if jwk is not None
            else None
        ),
    }


def _data(body: dict[str, Any]) -> dict[str, Any]:
    data = body.get("data")
    if not isinstance(data, dict):
        raise ApiRequestError(
            "data must be a JSON object of the licence's field names and values"
        )
    return data


def _client_with(scope: ClientScope) -> ApiClientRecord:
    """The calling client, if it holds `scope` (403 otherwise)."""
    client = current_client()
    client.require(scope)
    return client


def _own_identifier(identifier: str) -> str:
    """The identifier, if the calling client's agency issued it (403 otherwise)."""
    parsed = LicenceIdentifier.parse(identifier)
    if parsed.agency_code != current_client().agency_uscc:
        raise LicenceAccessError(
            f"licence {parsed} was issued by agency {parsed.agency_code}; a client "
            "sees and changes only its own agency's licences"
        )
    return str(parsed)


def _issuing_seal(client: ApiClientRecord, requested: str | None) -> str | None:
    """The official seal the client may issue with: the one asked for, or the newest
    active one it holds a grant for. None when the agency has no active official seal
    (the registry then says so)."""
    seals = current_services().seal_registry()
    if requested is not None:
        record = own_seal(requested)
        seals.authorize_stamp(record.id, client_id=client.client_id)
        return record.id
    official = sorted(
        (
            seal
            for seal in seals.list_seals(client.agency_uscc, status=SealStatus.ACTIVE)
            if seal.kind is SealKind.OFFICIAL
        ),
        key=lambda seal: (seal.created_at, seal.id),
        reverse=True,
    )
    if not official:
        return None
    principal = f"client:{client.client_id}"
    for seal in official:
        if _granted(seals.list_grants(seal.id), principal):
            return seal.id
    raise LicenceAccessError(
        "issuing stamps the licence with the agency's official seal (公章), and this "
        "client holds no grant for an active one; the operator grants it with: "
        f"yinxin seal grant {official[0].id} --client {client.client_id}"
    )


def _granted(grants: list[Any], principal: str) -> bool:
    return any(str(grant.principal) == principal for grant in grants)


# -- answers ---------------------------------------------------------------------------


def _links(record: LicenceRecord) -> dict[str, str]:
    return {
        "self": url_for("api_licences.get_licence", identifier=record.identifier),
        "pdf": url_for("api_licences.get_licence_pdf", identifier=record.identifier),
        "status_list": record.status_list_uri,
    }


def _licence_document(record: LicenceRecord) -> dict[str, Any]:
    return {**record.to_dict(), "links": _links(record)}


def _issued_response(issued: Any) -> Response:
    document = {
        **_licence_document(issued.record),
        "token": issued.token,
        "sd_jwt": issued.sd_jwt,
        "qr_version": issued.qr_version,
    }
    response = jsonify(document)
    response.status_code = 201
    response.headers["Location"] = document["links"]["self"]
    return no_store(response)


def _pdf_response(pdf: bytes, identifier: str | None) -> Response:
    response = Response(pdf, mimetype="application/pdf")
    name = f"{identifier}.pdf" if identifier else "licence.pdf"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return no_store(response)


# -- issuing and reading ---------------------------------------------------------------


@blueprint.post("/licenses")
def issue_licence() -> Response:
    client = _client_with(ClientScope.LICENCE_ISSUE)
    body = read_json_body(MAX_REQUEST_JSON_BYTES)
    _check_keys(body, ISSUE_KEYS)
    type_code = _text(body, "type", max_length=32)
    if not type_code:
        raise ApiRequestError("type is required: the licence type's code")
    agency = _text(body, "agency", max_length=32)
    if agency is not None and agency != client.agency_uscc:
        raise LicenceAccessError(
            f"this client acts for agency {client.agency_uscc}; it cannot issue "
            f"licences for {agency}"
        )
    data = _data(body)
    validity = _validity(body)
    seal_id = _issuing_seal(client, _text(body, "seal", max_length=64))
    try:
        issued = _licences().issue_licence(
            type_code,
            client.agency_uscc,
            data,
            actor=_actor(client),
            principal=_principal(client),
            seal_id=seal_id,
            **validity,
        )
    except UnknownLicenceTypeError as exc:
        raise ApiRequestError(one_line(exc)) from None
    return _issued_response(issued)


def _found_licences(holder: str | None, type_code: str | None, limit: int) -> Response:
    client = current_client()
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ApiRequestError(
            f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}"
        )
    if (holder and len(holder) > 200) or (type_code and len(type_code) > 32):
        raise ApiRequestError("holder or type is too long")
    if "\x00" in f"{holder}{type_code}":  # a DataError (500) in PostgreSQL's query
        raise ApiRequestError("holder or type holds a NUL character")
    records = _licences().find_licences(
        holder=holder,
        type_code=type_code,
        agency_uscc=client.agency_uscc,
        limit=limit,
    )
    return no_store(jsonify(licences=[_licence_document(r) for r in records]))


@blueprint.get("/licenses")
def list_licences() -> Response:
    _client_with(ClientScope.LICENCE_READ)
    limit_text = request.args.get("limit", "100")
    if not (limit_text.isascii() and limit_text.isdigit()) or len(limit_text) > 7:
        raise ApiRequestError(
            f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}"
        )
    return _found_licences(
        request.args.get("holder"), request.args.get("type"), int(limit_text)
    )


@blueprint.post("/licenses/search")
def search_licences() -> Response:
    """As GET /licenses, with the filters in the body: a holder's name or ID number
    then stays out of URLs, and so out of proxies' and browsers' logs and histories."""
    _client_with(ClientScope.LICENCE_READ)
    body = read_json_body(16 * 1024)
    _check_keys(body, SEARCH_KEYS)
    limit = body.get("limit", 100)
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise ApiRequestError(
            f"limit must be a whole number from 1 to {MAX_LIST_LIMIT}"
        )
    return _found_licences(
        _text(body, "holder"), _text(body, "type", max_length=32), limit
    )


@blueprint.get("/licenses/<identifier>")
def get_licence(identifier: str) -> Response:
    _client_with(ClientScope.LICENCE_READ)
    record = _licences().get_licence(_own_identifier(identifier))
    return no_store(jsonify(_licence_document(record)))


@blueprint.get("/licenses/<identifier>/pdf")
def get_licence_pdf(identifier: str) -> Response:
    _client_with(ClientScope.LICENCE_READ)
    own = _own_identifier(identifier)
    return _pdf_response(_licences().licence_pdf(own), own)


@blueprint.post("/licenses/<identifier>/renew")
def renew_licence(identifier: str) -> Response:
    client = _client_with(ClientScope.LICENCE_ISSUE)
    own = _own_identifier(identifier)
    body = read_json_body(MAX_REQUEST_JSON_BYTES)
    _check_keys(body, RENEW_KEYS)
    data = _data(body)
    validity = _validity(body)
    seal_id = _issuing_seal(client, _text(body, "seal", max_length=64))
    issued = _licences().renew_or_change(
        own,
        data,
        actor=_actor(client),
        principal=_principal(client),
        seal_id=seal_id,
        **validity,
    )
    return _issued_response(issued)


# -- status ----------------------------------------------------------------------------


def _status_change(identifier: str, change: str) -> Response:
    client = _client_with(ClientScope.LICENCE_MANAGE)
    own = _own_identifier(identifier)
    body = read_json_body(16 * 1024) if request.content_length else {}
    _check_keys(body, frozenset() if change == "reinstate" else frozenset({"reason"}))
    reason = _text(body, "reason")
    licences = _licences()
    warning = None
    try:
        if change == "revoke":
            record = licences.revoke(own, reason or "", actor=_actor(client))
        elif change == "suspend":
            record = licences.suspend(own, actor=_actor(client), note=reason)
        else:
            record = licences.reinstate(own, actor=_actor(client))
    except StatusListUnavailableError as exc:
        warning = one_line(exc)
        record = licences.get_licence(own)
    document = _licence_document(record)
    if warning is not None:
        document["warning"] = warning
    return no_store(jsonify(document))


@blueprint.post("/licenses/<identifier>/revoke")
def revoke_licence(identifier: str) -> Response:
    return _status_change(identifier, "revoke")


@blueprint.post("/licenses/<identifier>/suspend")
def suspend_licence(identifier: str) -> Response:
    return _status_change(identifier, "suspend")


@blueprint.post("/licenses/<identifier>/reinstate")
def reinstate_licence(identifier: str) -> Response:
    return _status_change(identifier, "reinstate")


# -- usage codes -----------------------------------------------------------------------


@blueprint.post("/licenses/<identifier>/usage-codes")
def create_usage_code(identifier: str) -> Response:
    client = _client_with(ClientScope.LICENCE_USAGE_CODE)
    own = _own_identifier(identifier)
    body = read_json_body(16 * 1024) if request.content_length else {}
    _check_keys(body, USAGE_CODE_KEYS)
    options: dict[str, Any] = {}
    if "ttl" in body:
        options["ttl"] = parse_ttl(body["ttl"])
    uses = body.get("uses", 1)
    if isinstance(uses, bool) or not isinstance(uses, int):
        raise ApiRequestError("uses must be a whole number")
    purpose = _text(body, "purpose")
    if purpose is not None:
        options["purpose"] = purpose
    code, expires_at = _licences().create_usage_code(
        own, actor=_actor(client), uses=uses, **options
    )
    fetch = url_for("api_licences.fetch_by_usage_code", code=code)
    response = jsonify(
        identifier=own,
        code=code,
        expires_at=expires_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        uses=uses,
        fetch=fetch,
    )
    response.status_code = 201
    return no_store(response)


@blueprint.get("/licenses/by-code/<code>")
@public
def fetch_by_usage_code(code: str) -> Response:
    if request.method == "HEAD":
        # Flask answers HEAD with the GET view: a link checker's HEAD would spend a
        # one-use code without anyone receiving the licence.
        refused = problem_response(
            405, "HEAD would use up the code; fetch the licence with GET"
        )
        refused.headers["Allow"] = "GET"
        return no_store(refused)
    fetches: SlidingWindowCounter = current_app.extensions[_USAGE_FETCHES_KEY]
    address = client_address()
    wait = fetches.take(address)
    if wait is not None:
        return too_many_requests(
            wait,
            f"too many usage-code fetches from this address; try again in {wait} s",
        )
    try:
        document = _licences().fetch_by_usage_code_document(
            code, requester=f"http {address}"
        )
    except UsageCodeRejectedError:
        return no_store(
            problem_response(
                404,
                _CODE_NOT_AVAILABLE,
                type_="urn:yinxin:problem:usage-code-not-available",
            )
        )
    return _pdf_response(document.pdf, document.identifier)


# -- verification ----------------------------------------------------------------------


def _verification_input() -> tuple[dict[str, Any], str | None, str | None]:
    """(the one input for verify_licence, nonce, aud) from a multipart or JSON body."""
    if request.mimetype == "multipart/form-data":
        names = [name for name in ("qr_image", "pdf") if name in request.files]
        if len(names) != 1:
            raise ApiRequestError(
                "send exactly one file field, qr_image or pdf (or a JSON body with "
                "token or sd_jwt)"
            )
        data, _ = read_upload(names[0])
        return {names[0]: data}, None, None
    if not request.is_json:
        raise ApiRequestError(
            "send a JSON object with token or sd_jwt, or a multipart/form-data upload "
            "of qr_image or pdf"
        )
    body = read_json_body(MAX_REQUEST_JSON_BYTES)
    _check_keys(body, VERIFY_KEYS)
    given = [name for name in ("token", "sd_jwt") if body.get(name) is not None]
    if len(given) != 1:
        raise ApiRequestError(
            "send exactly one of token or sd_jwt (or a multipart upload of qr_image "
            "or pdf)"
        )
    name = given[0]
    value = _text(body, name, max_length=MAX_REQUEST_JSON_BYTES)
    nonce, aud = _text(body, "nonce"), _text(body, "aud")
    if (nonce is None) != (aud is None):
        raise ApiRequestError("send nonce and aud together")
    if nonce is not None and name != "sd_jwt":
        raise ApiRequestError("nonce and aud go with sd_jwt")
    return {name: value}, nonce, aud


@blueprint.post("/verify/licence")
@public
def verify_licence_input() -> Response:
    limited = limit_verifications()
    if limited is not None:
        return limited
    inputs, nonce, aud = _verification_input()
    services = current_services()
    licences = services.licence_registry()
    result = verify_licence(
        **inputs,
        trust=services.licence_trust(),
        status_source=licences.status_source(),
        now=dt.datetime.now(dt.UTC),
        nonce=nonce,
        aud=aud,
        require_key_binding=nonce is not None,
        explain=licences.status_detail,
    )
    return no_store(jsonify(result.to_dict()))
