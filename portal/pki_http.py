"""What relying parties fetch over HTTP: CA certificates, CRLs, OCSP and timestamps.

No authentication: everything here is public by design (RFC 5280 §4.2.1.13 and
§4.2.2.1, RFC 6960, RFC 3161). Routes, under /pki:

    GET  /ca/<name>.crt          the CA certificate, DER (application/pkix-cert)
    GET  /ca/<name>.pem          the CA and its parents up to the root, PEM
    GET  /crl/<name>.crl         the latest full CRL, DER (application/pkix-crl)
    GET  /crl/<name>-delta.crl   the latest delta CRL, DER
    POST /ocsp                   an OCSPRequest (application/ocsp-request)
    GET  /ocsp/<base64 request>  the same, RFC 6960 appendix A.1 (RFC 5019 caching)
    POST /tsa                    a TimeStampReq (application/timestamp-query)

Protocol errors are answered in the protocol, with HTTP 200, as OpenSSL and most
responders do and as clients expect (RFC 5019 §2.2.3): a request that cannot be parsed
gets the OCSP `malformedRequest` response, a certificate of an issuer we do not serve
gets `unauthorized`, a key store that cannot sign now (locked, unreachable) gets
`tryLater`; a bad timestamp query gets a TimeStampResp with status `rejection` and the
reason, and a TSA that cannot sign gets `systemFailure`. A body larger than
the endpoint's limit (OCSP 16 KiB, TSA 64 KiB) is refused before it is read, with
413 and a problem+json body; nothing is parsed, signed or stored for it.

Flooding: every answer signed on the spot is a key-store operation and an audit
entry, so those are limited per client address (settings, per minute and web
worker). OCSP requests that need a live signature (RevocationService.needs_live_signature) beyond
ocsp_live_rate_limit get `tryLater`; pre-signed answers are never limited. Timestamp
requests (each one signed and stored) beyond tsa_rate_limit get HTTP 429 with
Retry-After and a TimeStampResp `rejection` (failInfo systemFailure) saying so.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import logging
import re
from email.utils import format_datetime
from typing import Any, ClassVar
from urllib.parse import quote

from asn1crypto import core, tsp
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from flask import Blueprint, Response, current_app, request
from werkzeug.routing import BaseConverter

from hsm_sim.api import signing_context
from hsm_sim.errors import ErrorCategory
from pki.errors import UnknownCaError
from pki.ocsp import MAX_OCSP_REQUEST_SIZE, try_later_response
from pki.tsa import MAX_TIMESTAMP_REQUEST_SIZE, system_failure_response
from portal.api_auth import client_address
from portal.config import WEB_LIMIT_DEFAULTS
from portal.context import current_services
from portal.errors import one_line, problem_response
from portal.ocsp_cache import CachedOcspResponse, OcspResponseCache
from portal.rate_limit import SlidingWindowCounter

__all__ = [
    "OCSP_LIVE_RATE_LIMIT",
    "OCSP_RESPONSE_TYPE",
    "TSA_RATE_LIMIT",
    "blueprint",
    "encode_ocsp_get_path",
]

logger = logging.getLogger(__name__)

blueprint = Blueprint("pki", __name__, url_prefix="/pki")

PKIX_CERT = "application/pkix-cert"
PEM_CHAIN = "application/pem-certificate-chain"  # RFC 8555 §9.1
PKIX_CRL = "application/pkix-crl"
OCSP_RESPONSE_TYPE = "application/ocsp-response"
TIMESTAMP_REPLY = "application/timestamp-reply"

# CA names are lowercase letters, digits and hyphens (pki/ceremony_config.py).
_CA_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
_DELTA_SUFFIX = "-delta"
# Services that fail to sign must not be retried by every client at once.
_SIGNING_UNAVAILABLE = frozenset(
    {ErrorCategory.UNAVAILABLE, ErrorCategory.LOCKED, ErrorCategory.UNAUTHORIZED}
)


class _EverythingConverter(BaseConverter):
    """The rest of the path, slashes and all: base64 has '/' and may begin with it."""

    regex = ".*"
    part_isolating = False


_OCSP_CACHE_KEY = "yinxin-ocsp-cache"
_OCSP_LIVE_SIGNATURES_KEY = "yinxin-ocsp-live-signatures"
_TIMESTAMPS_KEY = "yinxin-timestamp-requests"
# Config keys (portal.config.WEB_LIMITS): requests a minute per address.
OCSP_LIVE_RATE_LIMIT = "YINXIN_OCSP_LIVE_RATE_LIMIT"
TSA_RATE_LIMIT = "YINXIN_TSA_RATE_LIMIT"


@blueprint.record_once
def _set_up(state: Any) -> None:
    app = state.app
    app.url_map.converters["everything"] = _EverythingConverter
    app.extensions[_OCSP_CACHE_KEY] = OcspResponseCache()
    for key in (OCSP_LIVE_RATE_LIMIT, TSA_RATE_LIMIT):
        app.config.setdefault(key, WEB_LIMIT_DEFAULTS[key])
    app.extensions[_OCSP_LIVE_SIGNATURES_KEY] = SlidingWindowCounter(
        limit=int(app.config[OCSP_LIVE_RATE_LIMIT]), window=60.0
    )
    app.extensions[_TIMESTAMPS_KEY] = SlidingWindowCounter(
        limit=int(app.config[TSA_RATE_LIMIT]), window=60.0
    )


def encode_ocsp_get_path(request_der: bytes) -> str:
    """The RFC 6960 appendix A.1 path segment for an OCSP request (percent-encoded)."""
    return quote(base64.b64encode(request_der).decode("ascii"), safe="")


# -- helpers ---------------------------------------------------------------------------


def _not_found(what: str) -> Response:
    return problem_response(404, what)


def _too_large(limit: int, what: str) -> Response:
    return problem_response(
        413,
        f"the {what} is larger than {limit} bytes, the most this endpoint accepts",
        type_="urn:yinxin:problem:request-too-large",
        limit=limit,
    )


def _read_body(limit: int) -> bytes | None:
    """The request body, or None when it is longer than `limit` (never read past it)."""
    length = request.content_length
    if length is not None and length > limit:
        return None
    body = request.stream.read(limit + 1)
    return None if len(body) > limit else body


def _etag(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _binary(data: bytes, mimetype: str, *, cache_control: str) -> Response:
    """A binary response with an ETag, answering If-None-Match with 304."""
    response = Response(data, mimetype=mimetype)
    response.set_etag(_etag(data))
    response.headers["Cache-Control"] = cache_control
    return response.make_conditional(request)


def _ca_name(name: str) -> str | None:
    return name if _CA_NAME.fullmatch(name) else None


# -- CA certificates and CRLs ----------------------------------------------------------

# CA certificates change only at a ceremony or a re-key; caches may keep them a day.
_CA_CACHE = "public, max-age=86400"
# A CRL is replaced on every revocation (the delta) and by the schedule: caches keep
# it but ask again each time (If-None-Match makes that a 304 when nothing changed).
_CRL_CACHE = "public, no-cache"


@blueprint.get("/ca/<name>.crt")
def ca_certificate(name: str) -> Response:
    if _ca_name(name) is None:
        return _not_found(f"there is no CA named {name[:64]!r}")
    issuer = current_services().certificate_authority().issuer(name)
    return _binary(
        issuer.certificate.public_bytes(Encoding.DER),
        PKIX_CERT,
        cache_control=_CA_CACHE,
    )


@blueprint.get("/ca/<name>.pem")
def ca_chain(name: str) -> Response:
    if _ca_name(name) is None:
        return _not_found(f"there is no CA named {name[:64]!r}")
    ca = current_services().certificate_authority()
    chain = ca.chain(ca.issuer(name))
    pem = b"".join(c.public_bytes(Encoding.PEM) for c in chain)
    return _binary(pem, PEM_CHAIN, cache_control=_CA_CACHE)


@blueprint.get("/crl/<name>.crl")
def crl(name: str) -> Response:
    """The latest stored CRL; `<ca>-delta.crl` is the CA's latest delta CRL."""
    if _ca_name(name) is None:
        return _not_found(f"there is no CRL named {name[:64]!r}")
    services = current_services()
    names = {issuer.name for issuer in services.certificate_authority().issuers()}
    delta = name not in names and name.endswith(_DELTA_SUFFIX)
    issuer_name = name.removesuffix(_DELTA_SUFFIX) if delta else name
    if issuer_name not in names:
        return _not_found(f"there is no CA named {issuer_name!r}")
    latest = services.revocation().latest_crl(issuer_name, delta=delta)
    if latest is None:
        kind = "delta CRL" if delta else "CRL"
        return _not_found(f"the {issuer_name} CA has published no {kind} yet")
    response = _binary(latest.der, PKIX_CRL, cache_control=_CRL_CACHE)
    response.last_modified = latest.this_update
    response.expires = latest.next_update
    return response


# -- OCSP ------------------------------------------------------------------------------


def _decode_ocsp_path(encoded: str) -> bytes:
    """The DER request in a GET path; b"" (answered malformedRequest) if it is not base64.

    The server has already percent-decoded the path. A '+' that some client decoded
    as a space is put back, and the URL-safe alphabet and missing padding are accepted.
    """
    text = encoded.strip().replace(" ", "+").replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _ocsp_cache_headers(der: bytes) -> dict[str, str]:
    """RFC 5019 §6.2 headers for a pre-signed response; no-store for anything else."""
    try:
        parsed = ocsp.load_der_ocsp_response(der)
    except ValueError:
        return {"Cache-Control": "no-store"}
    if (
        parsed.response_status is not ocsp.OCSPResponseStatus.SUCCESSFUL
        or parsed.certificate_status is ocsp.OCSPCertStatus.UNKNOWN
        or parsed.next_update_utc is None
    ):
        return {"Cache-Control": "no-store"}
    try:
        parsed.extensions.get_extension_for_class(x509.OCSPNonce)
        return {"Cache-Control": "no-store"}
    except x509.ExtensionNotFound:
        pass
    now = dt.datetime.now(dt.UTC)
    max_age = max(0, int((parsed.next_update_utc - now).total_seconds()))
    return {
        "Cache-Control": f"public, max-age={max_age}, no-transform, must-revalidate",
        "Last-Modified": _http_date(parsed.this_update_utc),
        "Expires": _http_date(parsed.next_update_utc),
        "ETag": f'"{_etag(der)}"',
    }


def _http_date(moment: dt.datetime) -> str:
    return format_datetime(moment.astimezone(dt.UTC), usegmt=True)


def _over_live_signing_limit(request_der: bytes) -> bool:
    """Whether this request would be signed now and its address has had its share."""
    if not current_services().revocation().needs_live_signature(request_der):
        return False
    counter: SlidingWindowCounter = current_app.extensions[_OCSP_LIVE_SIGNATURES_KEY]
    return counter.take(client_address()) is not None


def _answer_ocsp(request_der: bytes) -> Response:
    cache: OcspResponseCache = current_app.extensions[_OCSP_CACHE_KEY]
    cached = cache.get(request_der)
    if cached is None:
        cached = _respond_ocsp(request_der)
        if "ETag" in cached.headers:
            cache.put(request_der, cached)
    response = Response(cached.der, mimetype=OCSP_RESPONSE_TYPE)
    response.headers.update(cached.headers)
    return response


def _respond_ocsp(request_der: bytes) -> CachedOcspResponse:
    if _over_live_signing_limit(request_der):
        return CachedOcspResponse(try_later_response(), {"Cache-Control": "no-store"})
    try:
        with signing_context(actor="http:ocsp"):
            der = current_services().revocation().respond_ocsp(request_der)
    except Exception as exc:
        if getattr(exc, "category", None) not in _SIGNING_UNAVAILABLE:
            raise  # a bug: the app's 500 handler logs it under a correlation id
        logger.warning("OCSP: cannot sign now: %s", one_line(exc))
        der = try_later_response()
    return CachedOcspResponse(der, _ocsp_cache_headers(der))


@blueprint.post("/ocsp")
def ocsp_post() -> Response:
    body = _read_body(MAX_OCSP_REQUEST_SIZE)
    if body is None:
        return _too_large(MAX_OCSP_REQUEST_SIZE, "OCSP request")
    return _answer_ocsp(body)


@blueprint.get("/ocsp/<everything:encoded>", merge_slashes=False)
def ocsp_get(encoded: str) -> Response:
    if len(encoded) > 2 * MAX_OCSP_REQUEST_SIZE:
        return _too_large(MAX_OCSP_REQUEST_SIZE, "OCSP request")
    response = _answer_ocsp(_decode_ocsp_path(encoded))
    if "ETag" in response.headers:
        return response.make_conditional(request)
    return response


# -- timestamps ------------------------------------------------------------------------


class _RefusedTimeStampResp(core.Sequence):  # type: ignore[misc]
    """A TimeStampResp without a token (asn1crypto's requires one)."""

    _fields: ClassVar = [("status", tsp.PKIStatusInfo)]


def _timestamps_limited(wait: int) -> Response:
    """429 with a TimeStampResp a client can read: rejected, try again later."""
    reason = f"too many timestamp requests from this address; try again in {wait} s"
    reply = _RefusedTimeStampResp(
        {
            "status": {
                "status": "rejection",
                "status_string": [reason],
                "fail_info": tsp.PKIFailureInfo({"system_failure"}),
            }
        }
    )
    response = Response(reply.dump(), status=429, mimetype=TIMESTAMP_REPLY)
    response.headers["Retry-After"] = str(wait)
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/tsa")
def timestamp() -> Response:
    requests: SlidingWindowCounter = current_app.extensions[_TIMESTAMPS_KEY]
    wait = requests.take(client_address())
    if wait is not None:
        return _timestamps_limited(wait)
    body = _read_body(MAX_TIMESTAMP_REQUEST_SIZE)
    if body is None:
        return _too_large(MAX_TIMESTAMP_REQUEST_SIZE, "timestamp request")
    try:
        with signing_context(actor="http:tsa"):
            der = current_services().timestamps().respond(body).response_der
    except UnknownCaError as exc:
        logger.warning("TSA: %s", one_line(exc))
        der = system_failure_response()
    except Exception as exc:
        category = getattr(exc, "category", None)
        if category not in _SIGNING_UNAVAILABLE:
            raise
        logger.warning("TSA: cannot sign now: %s", one_line(exc))
        der = system_failure_response()
    response = Response(der, mimetype=TIMESTAMP_REPLY)
    response.headers["Cache-Control"] = "no-store"
    return response
