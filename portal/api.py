"""The REST API, /api/v1: an agency's seals, stamping PDFs with them, verifying PDFs.

    GET  /api/v1/openapi.json            this API's OpenAPI 3.1 document       (public)
    GET  /api/v1/seals                   the calling client's agency's seals
    GET  /api/v1/seals/<id>              one of them (id or seal code)
    POST /api/v1/seals/<id>/stamp        stamp a PDF (multipart) -> the sealed PDF
    POST /api/v1/verify/pdf              verify a PDF (multipart) -> the report (public)

Authentication is portal/api_auth.py (an API client's id and secret, HTTP Basic or
Bearer); stamping, as every request that changes something, must also carry the header
X-Yinxin-Client (or a JSON body), which no other web site can make a browser send
(415 without it). Every error is RFC 9457 problem+json. Status decisions:
- A client sees only its own agency's seals: another agency's seal is 404 with the
  same words as a seal that does not exist, for reading and stamping alike. Seal
  codes are sequential, so a 403 would confirm that a code exists and name its seal.
- Stamping needs the client's `seal:stamp` scope (pki.registry.ClientScope; 403
  without it). An own seal the client may not stamp with is 403: no grant, or not
  active (suspended, revoked, expired; the problem type is then seal-not-usable).
  The authorization is checked before the upload is read and again, in the stamp
  log's transaction, before the signature: nothing is signed or logged as signed.
- A body over the upload limit (50 MiB by default) is 413 before it is read; a part
  that is not a PDF is 400 with the stamper's reason.
- Verification is public, as any relying party must be able to check a seal: per
  address at most YINXIN_VERIFY_RATE_LIMIT requests a minute (429 beyond), the same
  size limit. Its answer is always 200 with the report — `valid` false for an invalid
  document, and `usable` false (exit_code 2) for input that is no signed PDF at all:
  the report is the answer in every case. Seals are checked against this node's own
  root CAs only: a caller's `trust` certificates are refused (400), since a "valid"
  from the node must never rest on a root anyone can make (`yinxin verify pdf
  --trust` verifies against other roots, on the caller's own machine). Revocation is
  checked against this node's own OCSP responses and CRLs, in process; no URL from an
  uploaded document is ever fetched (that would let anyone make the node send
  requests where they like).
"""

from __future__ import annotations

import dataclasses
import unicodedata
from pathlib import PurePath
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, jsonify, request

from pki.registry import ClientScope
from portal.api_auth import current_client, public
from portal.api_support import (
    ApiRequestError,
    authenticate_and_limit,
    install_api_support,
    limit_verifications,
    no_store,
    own_seal,
    read_upload,
    upload_limit,
)
from portal.context import current_services
from portal.errors import problem_response
from portal.openapi import openapi_document
from portal.stamp_options import (
    DEFAULT_SEAM_PAGES,
    MAX_PLACEMENT_JSON,
    MAX_SEAM_PAGES,
    StampOptionError,
    build_stamp_request,
    parse_flag,
    parse_level,
    parse_seam,
    placements_from_json,
)
from seal.errors import SealNotUsableError
from seal.lifecycle import SealRecord, SealStatus, describe_seal_record
from seal.stamping import Level, StampRequest
from seal.verify import VerifyLimits, verify_pdf

__all__ = ["blueprint"]

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")


@blueprint.record_once
def _set_up(state: Any) -> None:
    install_api_support(state.app)


blueprint.before_request(authenticate_and_limit)


# -- the document ----------------------------------------------------------------------


@blueprint.get("/openapi.json")
@public
def openapi() -> Response:
    return jsonify(openapi_document())


# -- seals -----------------------------------------------------------------------------


def _seal_document(record: SealRecord, granted: bool) -> dict[str, Any]:
    document = describe_seal_record(record)
    # The HSM label is the node's business, not the agency's.
    document.pop("key_label", None)
    document["granted_to_client"] = granted
    return document


def _granted(seal_id: str, client_id: str) -> bool:
    wanted = f"client:{client_id}"
    registry = current_services().seal_registry()
    return any(str(g.principal) == wanted for g in registry.list_grants(seal_id))


@blueprint.get("/seals")
def list_seals() -> Response:
    client = current_client()
    status_text = request.args.get("status")
    try:
        status = SealStatus(status_text) if status_text else None
    except ValueError:
        known = ", ".join(s.value for s in SealStatus)
        raise ApiRequestError(f"status must be one of: {known}") from None
    records = (
        current_services().seal_registry().list_seals(client.agency_uscc, status=status)
    )
    return no_store(
        jsonify(
            seals=[_seal_document(r, _granted(r.id, client.client_id)) for r in records]
        )
    )


@blueprint.get("/seals/<seal_id>")
def get_seal(seal_id: str) -> Response:
    client = current_client()
    record = own_seal(seal_id)
    return no_store(
        jsonify(_seal_document(record, _granted(record.id, client.client_id)))
    )


def _form_text(name: str, default: str = "", *, max_length: int = 64) -> str:
    value = request.form.get(name, default)
    if len(value) > max_length:
        raise ApiRequestError(f"the field {name!r} is too long")
    return value


def _stamp_request_from_form() -> StampRequest:
    # placements_from_json names the limit on the JSON's length itself.
    placement = _form_text("placement", max_length=MAX_PLACEMENT_JSON + 1)
    seam_pages_text = _form_text("seam_pages", str(DEFAULT_SEAM_PAGES)).strip()
    # isascii: isdigit() also takes superscripts, which int() refuses.
    digits = seam_pages_text.isascii() and seam_pages_text.isdigit()
    if not digits or len(seam_pages_text) > 4:
        raise StampOptionError(
            f"seam_pages must be a whole number from 2 to {MAX_SEAM_PAGES}"
        )
    return build_stamp_request(
        placements_from_json(placement) if placement.strip() else (),
        seam=parse_seam(_form_text("seam")),
        seam_pages=int(seam_pages_text),
        level=parse_level(_form_text("level", Level.B_LT.value)),
        certify=parse_flag(_form_text("certify"), "certify"),
    )


def _attachment(filename: str | None) -> str:
    """Content-Disposition for `<name>-sealed.pdf`, from the uploaded file's name
    without any path or control character; an ASCII fallback for old clients."""
    stem = PurePath((filename or "").replace("\\", "/")).stem
    stem = "".join(
        c for c in stem if unicodedata.category(c)[0] not in "CZ" or c == " "
    ).strip(" .")[:100]
    name = f"{stem or 'document'}-sealed.pdf"
    ascii_stem = "".join(
        c
        for c in unicodedata.normalize("NFKD", stem)
        if c.isascii() and (c.isalnum() or c in " ._-")
    ).strip(" .")
    fallback = f"{ascii_stem or 'document'}-sealed.pdf"
    value = f'attachment; filename="{fallback}"'
    if name != fallback:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


@blueprint.post("/seals/<seal_id>/stamp")
def stamp(seal_id: str) -> Response:
    client = current_client()
    client.require(ClientScope.SEAL_STAMP)
    services = current_services()
    registry = services.seal_registry()
    # Before the upload is read: a client that may not stamp learns it at once.
    record = own_seal(seal_id)
    try:
        authorization = registry.authorize_stamp(record.id, client_id=client.client_id)
    except SealNotUsableError as exc:
        return problem_response(
            403, str(exc), type_="urn:yinxin:problem:seal-not-usable"
        )
    stamp_request = _stamp_request_from_form()
    document, filename = read_upload("file")
    stamper = services.stamper(authorization, max_input_bytes=upload_limit())
    sealed = registry.stamp_document(authorization, stamper, document, stamp_request)
    response = Response(sealed, mimetype="application/pdf")
    response.headers["Content-Disposition"] = _attachment(filename)
    return no_store(response)


# -- verification ----------------------------------------------------------------------


@blueprint.post("/verify/pdf")
@public
def verify_pdf_upload() -> Response:
    limited = limit_verifications()
    if limited is not None:
        return limited
    if "trust" in request.files or "trust" in request.form:
        raise ApiRequestError(
            "this node verifies seals against its own root CAs only; to verify "
            "against other roots, run yinxin verify pdf --trust ROOT on your own "
            "machine"
        )
    document, _ = read_upload("file")
    services = current_services()
    report = verify_pdf(
        document,
        trust_roots=services.trust_roots(),
        revocation=services.verification_revocation(),
        limits=dataclasses.replace(VerifyLimits(), max_input_bytes=upload_limit()),
    )
    return no_store(jsonify(report.to_dict()))
