"""The OCSP protocol layer (RFC 6960): parse a request, build a signed response.

Pure protocol code: no database, no HTTP. The CA looks up a serial's status and calls
`build_ocsp_response`; the web layer turns `MalformedOcspRequestError` into
`malformed_request_response()` and a foreign issuer into `unauthorized_response()`.

Choices, so that callers and clients know what to expect:
- One CertID per request. `openssl ocsp` and browsers send one; a request naming
  several certificates is answered with malformedRequest rather than with a partial
  answer the client might misread.
- CertIDs hashed with SHA-1 (openssl's default), SHA-256, SHA-384 or SHA-512 are
  accepted, and a response echoes the request's CertID exactly, because clients match
  on it (hash algorithm included).
- Nonces follow RFC 9654: 1 to 128 octets are echoed, anything else is malformed.
- Responses are signed by a delegated responder (a certificate with id-kp-OCSPSigning
  issued by the CA it answers for), identify it by key hash, and carry its certificate.

Pre-signed responses: a response built without a nonce depends only on the CertID, the
status and the time, so it can be cached and served to every request for that CertID
until it is refreshed (cache by `CertId`, which includes the hash algorithm; build one
for SHA-1 and one for SHA-256 with `OcspResponder.cert_id`). A request that carries a
nonce needs a live signature, because the nonce must be echoed.

cryptography stamps producedAt with the system clock; thisUpdate and nextUpdate come
from the `now` the caller passes.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Mapping
from typing import Final

from asn1crypto import keys
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki.certificates import signature_hash_for
from pki.errors import (
    MalformedOcspRequestError,
    OcspIssuerMismatchError,
    UnsuitableSigningCertificateError,
)

__all__ = [
    "MAX_OCSP_REQUEST_SIZE",
    "MAX_NONCE_LENGTH",
    "CERT_ID_HASHES",
    "CertId",
    "OcspRequestInfo",
    "CertificateStatus",
    "GOOD",
    "UNKNOWN",
    "OcspResponder",
    "parse_ocsp_request",
    "matches_issuer",
    "issuer_cert_id_hashes",
    "build_ocsp_response",
    "malformed_request_response",
    "unauthorized_response",
    "internal_error_response",
    "try_later_response",
]

MAX_OCSP_REQUEST_SIZE: Final = 16 * 1024
MAX_NONCE_LENGTH: Final = 128  # RFC 9654 section 2.1

CERT_ID_HASHES: Final[Mapping[str, type[hashes.HashAlgorithm]]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}


@dataclasses.dataclass(frozen=True)
class CertId:
    """The CertID of RFC 6960 section 4.1.1; `hash_name` is one of CERT_ID_HASHES."""

    hash_name: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial_number: int

    def __post_init__(self) -> None:
        if self.hash_name not in CERT_ID_HASHES:
            raise ValueError(f"unsupported CertID hash algorithm: {self.hash_name!r}")


@dataclasses.dataclass(frozen=True)
class OcspRequestInfo:
    """What a parsed request asks: one CertID, and the nonce to echo if any."""

    cert_id: CertId
    nonce: bytes | None


@dataclasses.dataclass(frozen=True)
class CertificateStatus:
    """good, unknown, or revoked at `revocation_time` for `revocation_reason`."""

    kind: ocsp.OCSPCertStatus
    revocation_time: dt.datetime | None = None
    revocation_reason: x509.ReasonFlags | None = None

    def __post_init__(self) -> None:
        if self.kind is ocsp.OCSPCertStatus.REVOKED:
            if self.revocation_time is None:
                raise ValueError("a revoked status needs its revocation time")
            _require_aware(self.revocation_time, "revocation_time")
        elif self.revocation_time is not None or self.revocation_reason is not None:
            raise ValueError(
                "only a revoked status carries a revocation time or reason"
            )

    @classmethod
    def revoked(
        cls, time: dt.datetime, reason: x509.ReasonFlags | None = None
    ) -> CertificateStatus:
        return cls(ocsp.OCSPCertStatus.REVOKED, time, reason)


GOOD: Final = CertificateStatus(ocsp.OCSPCertStatus.GOOD)
UNKNOWN: Final = CertificateStatus(ocsp.OCSPCertStatus.UNKNOWN)


@dataclasses.dataclass(frozen=True)
class OcspResponder:
    """A delegated responder for one issuing CA; checked and precomputed once."""

    issuer_certificate: x509.Certificate
    responder_certificate: x509.Certificate
    responder_key: CertificateIssuerPrivateKeyTypes
    next_update_interval: dt.timedelta
    _signing_hash: hashes.HashAlgorithm | None = dataclasses.field(
        init=False, repr=False
    )
    _issuer_hashes: Mapping[str, tuple[bytes, bytes]] = dataclasses.field(
        init=False, repr=False
    )
    _base_builder: ocsp.OCSPResponseBuilder = dataclasses.field(init=False, repr=False)
    _valid_from: dt.datetime = dataclasses.field(init=False, repr=False)
    _valid_until: dt.datetime = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.next_update_interval <= dt.timedelta(0):
            raise ValueError("next_update_interval must be positive")
        _check_delegated_responder(
            self.issuer_certificate, self.responder_certificate, self.responder_key
        )
        base = (
            ocsp.OCSPResponseBuilder()
            .responder_id(ocsp.OCSPResponderEncoding.HASH, self.responder_certificate)
            .certificates([self.responder_certificate])
        )
        object.__setattr__(
            self, "_signing_hash", signature_hash_for(self.responder_key)
        )
        object.__setattr__(
            self, "_issuer_hashes", issuer_cert_id_hashes(self.issuer_certificate)
        )
        object.__setattr__(self, "_base_builder", base)
        object.__setattr__(
            self, "_valid_from", self.responder_certificate.not_valid_before_utc
        )
        object.__setattr__(
            self, "_valid_until", self.responder_certificate.not_valid_after_utc
        )

    def serves(self, cert_id: CertId) -> bool:
        """True when `cert_id` names this responder's issuing CA."""
        expected = self._issuer_hashes.get(cert_id.hash_name)
        return expected == (cert_id.issuer_name_hash, cert_id.issuer_key_hash)

    def cert_id(self, serial_number: int, hash_name: str = "sha1") -> CertId:
        """The CertID a client would send for `serial_number` (for pre-signing)."""
        if hash_name not in self._issuer_hashes:
            raise ValueError(f"unsupported CertID hash algorithm: {hash_name!r}")
        name_hash, key_hash = self._issuer_hashes[hash_name]
        return CertId(hash_name, name_hash, key_hash, serial_number)


def parse_ocsp_request(body: bytes) -> OcspRequestInfo:
    """Parse a DER OCSPRequest; MalformedOcspRequestError says why it cannot be."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError("body must be bytes")
    if len(body) > MAX_OCSP_REQUEST_SIZE:
        raise MalformedOcspRequestError(
            f"OCSP request is larger than {MAX_OCSP_REQUEST_SIZE} bytes"
        )
    try:
        request = ocsp.load_der_ocsp_request(bytes(body))
    except NotImplementedError as exc:  # cryptography's answer to several CertIDs
        raise MalformedOcspRequestError(
            "OCSP request must name exactly one certificate"
        ) from exc
    except ValueError as exc:
        raise MalformedOcspRequestError("OCSP request is not valid DER") from exc
    try:
        algorithm = request.hash_algorithm
        nonce = _nonce_of(request)
    except UnsupportedAlgorithm as exc:
        raise MalformedOcspRequestError(
            "OCSP request uses an unsupported CertID hash algorithm"
        ) from exc
    except ValueError as exc:
        raise MalformedOcspRequestError(
            "OCSP request has malformed extensions"
        ) from exc
    if nonce is not None and not 1 <= len(nonce) <= MAX_NONCE_LENGTH:
        raise MalformedOcspRequestError(
            f"OCSP request nonce must have 1 to {MAX_NONCE_LENGTH} octets"
        )
    if algorithm.name not in CERT_ID_HASHES:
        raise MalformedOcspRequestError(
            "OCSP request uses an unsupported CertID hash algorithm"
        )
    name_hash = request.issuer_name_hash
    key_hash = request.issuer_key_hash
    if (
        len(name_hash) != algorithm.digest_size
        or len(key_hash) != algorithm.digest_size
    ):
        raise MalformedOcspRequestError(
            "OCSP request CertID hashes have the wrong length"
        )
    if request.serial_number <= 0:
        # RFC 5280 serials are positive; no certificate of ours can have this one.
        raise MalformedOcspRequestError("OCSP request serial number must be positive")
    cert_id = CertId(algorithm.name, name_hash, key_hash, request.serial_number)
    return OcspRequestInfo(cert_id=cert_id, nonce=nonce)


def matches_issuer(
    request: OcspRequestInfo | CertId, issuer_certificate: x509.Certificate
) -> bool:
    """True when the request's issuerNameHash and issuerKeyHash name this issuer."""
    cert_id = request.cert_id if isinstance(request, OcspRequestInfo) else request
    name_hash, key_hash = issuer_cert_id_hashes(issuer_certificate, (cert_id.hash_name,))[
        cert_id.hash_name
    ]
    return (cert_id.issuer_name_hash, cert_id.issuer_key_hash) == (name_hash, key_hash)


def build_ocsp_response(
    cert_id: CertId,
    *,
    responder: OcspResponder,
    status: CertificateStatus,
    now: dt.datetime,
    nonce: bytes | None = None,
) -> bytes:
    """A successful, signed BasicOCSPResponse for one CertID, as DER."""
    _require_aware(now, "now")
    if not responder.serves(cert_id):
        raise OcspIssuerMismatchError(
            "the CertID names an issuer this responder does not serve"
        )
    if nonce is not None and not 1 <= len(nonce) <= MAX_NONCE_LENGTH:
        raise ValueError(f"a nonce has 1 to {MAX_NONCE_LENGTH} octets")
    this_update = now.astimezone(dt.UTC).replace(microsecond=0)
    if not responder._valid_from <= this_update <= responder._valid_until:
        raise UnsuitableSigningCertificateError(
            "the OCSP responder certificate is not valid at the current time"
        )
    builder = responder._base_builder.add_response_by_hash(
        issuer_name_hash=cert_id.issuer_name_hash,
        issuer_key_hash=cert_id.issuer_key_hash,
        serial_number=cert_id.serial_number,
        algorithm=CERT_ID_HASHES[cert_id.hash_name](),
        cert_status=status.kind,
        this_update=this_update,
        next_update=this_update + responder.next_update_interval,
        revocation_time=status.revocation_time,
        revocation_reason=status.revocation_reason,
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(bytes(nonce)), critical=False)
    response = builder.sign(responder.responder_key, responder._signing_hash)
    return response.public_bytes(serialization.Encoding.DER)


def _unsuccessful(status: ocsp.OCSPResponseStatus) -> bytes:
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(
        serialization.Encoding.DER
    )


_MALFORMED_REQUEST: Final = _unsuccessful(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
_UNAUTHORIZED: Final = _unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED)
_INTERNAL_ERROR: Final = _unsuccessful(ocsp.OCSPResponseStatus.INTERNAL_ERROR)
_TRY_LATER: Final = _unsuccessful(ocsp.OCSPResponseStatus.TRY_LATER)


def malformed_request_response() -> bytes:
    """The unsigned malformedRequest response (for MalformedOcspRequestError)."""
    return _MALFORMED_REQUEST


def unauthorized_response() -> bytes:
    """The unsigned unauthorized response, for a CertID of an issuer we do not serve."""
    return _UNAUTHORIZED


def internal_error_response() -> bytes:
    return _INTERNAL_ERROR


def try_later_response() -> bytes:
    """For when the status store or the signing key is temporarily unavailable."""
    return _TRY_LATER


def _nonce_of(request: ocsp.OCSPRequest) -> bytes | None:
    try:
        extension = request.extensions.get_extension_for_class(x509.OCSPNonce)
    except x509.ExtensionNotFound:
        return None
    return extension.value.nonce


def _require_aware(value: dt.datetime, name: str) -> None:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{name} must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def _subject_public_key_bits(certificate: x509.Certificate) -> bytes:
    """subjectPublicKey without its unused-bits octet: what RFC 6960 4.1.1 hashes."""
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return keys.PublicKeyInfo.load(spki)["public_key"].contents[1:]


def issuer_cert_id_hashes(
    issuer_certificate: x509.Certificate, names: tuple[str, ...] = tuple(CERT_ID_HASHES)
) -> dict[str, tuple[bytes, bytes]]:
    """(issuerNameHash, issuerKeyHash) per CertID hash: what requests for this CA carry."""
    subject = issuer_certificate.subject.public_bytes()
    key_bits = _subject_public_key_bits(issuer_certificate)
    return {
        name: (
            hashlib.new(name, subject).digest(),
            hashlib.new(name, key_bits).digest(),
        )
        for name in names
    }


def _public_key_der(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_delegated_responder(
    issuer: x509.Certificate, responder: x509.Certificate, key: object
) -> None:
    if responder.issuer != issuer.subject:
        raise UnsuitableSigningCertificateError(
            "the OCSP responder certificate is not issued by the CA it answers for"
        )
    try:
        responder.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise UnsuitableSigningCertificateError(
            "the OCSP responder certificate is not signed by the CA it answers for"
        ) from exc
    try:
        usages = responder.extensions.get_extension_for_class(
            x509.ExtendedKeyUsage
        ).value
    except x509.ExtensionNotFound:
        usages = x509.ExtendedKeyUsage([])
    if ExtendedKeyUsageOID.OCSP_SIGNING not in usages:
        raise UnsuitableSigningCertificateError(
            "the OCSP responder certificate lacks id-kp-OCSPSigning"
        )
    signature_hash_for(key)  # raises TypeError for a key type OCSP cannot sign with
    public_key = key.public_key()  # type: ignore[attr-defined]
    if _public_key_der(public_key) != _public_key_der(responder.public_key()):
        raise UnsuitableSigningCertificateError(
            "the OCSP responder key does not match its certificate"
        )
