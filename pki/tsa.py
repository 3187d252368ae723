"""The RFC 3161 timestamp authority, server side: TimeStampReq in, TimeStampResp out.

Pure protocol code: no database, no HTTP. The caller allocates a unique serial number
(the database guarantees uniqueness), passes the clock, and stores what
`TimestampOutcome` reports for audit.

Any request, however malformed, gets a well-formed TimeStampResp: a granted token or a
rejection with a failInfo bit and a one-line reason. Exceptions are left for caller
mistakes (wrong argument types, a naive clock, a TSA certificate outside its validity)
and for failures of the signing key itself; answer those with
`system_failure_response()`.

Tokens (RFC 3161, RFC 5816, RFC 5652):
- TSTInfo v1 with our policy, the request's messageImprint, the caller's serial,
  genTime in UTC (fractions of a second only when the accuracy is finer than a
  second), the accuracy, the request's nonce, and the TSA's subject as its name.
  `ordering` is always false (omitted as the DEFAULT).
- SignedData v3 around it, signed by the TSA certificate's key with a hash sized to the
  key; signed attributes content-type, message-digest and ESS signing-certificate-v2
  (SHA-256 of the TSA certificate plus issuer and serial). No signing-time: genTime is
  the time this token asserts.
- With certReq, the TSA certificate and the given chain are included.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
from collections.abc import Callable
from typing import Any, Final, cast

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki.certificates import signature_hash_for
from pki.errors import UnsuitableSigningCertificateError
from pki.oids import ProjectOID

__all__ = [
    "MAX_TIMESTAMP_REQUEST_SIZE",
    "MESSAGE_IMPRINT_HASHES",
    "TimestampStatus",
    "TimestampFailure",
    "TsaSigner",
    "TimestampOutcome",
    "respond_timestamp",
    "system_failure_response",
]

MAX_TIMESTAMP_REQUEST_SIZE: Final = 64 * 1024
MAX_SERIAL: Final = 2**160  # RFC 3161 2.4.2: requesters handle serials up to 160 bits

MESSAGE_IMPRINT_HASHES: Final = {"sha256": 32, "sha384": 48, "sha512": 64}
"""Hashes a TSA may accept in a messageImprint, with their digest lengths."""

_ONE_SECOND: Final = dt.timedelta(seconds=1)


class TimestampStatus(enum.Enum):
    GRANTED = "granted"
    REJECTION = "rejection"


class TimestampFailure(enum.Enum):
    """PKIFailureInfo bits we send (values are asn1crypto's bit names)."""

    BAD_ALG = "bad_alg"
    BAD_REQUEST = "bad_request"
    BAD_DATA_FORMAT = "bad_data_format"
    UNACCEPTED_POLICY = "unaccepted_policy"
    UNACCEPTED_EXTENSION = "unaccepted_extensions"
    SYSTEM_FAILURE = "system_failure"


@dataclasses.dataclass(frozen=True)
class TimestampOutcome:
    """The DER TimeStampResp and what the caller stores or audits about it."""

    response_der: bytes
    status: TimestampStatus
    failure: TimestampFailure | None = None
    reason: str | None = None
    serial: int | None = None
    hash_name: str | None = None
    message_imprint: bytes | None = None
    gen_time: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class _SignatureScheme:
    digest_name: str
    signature_algorithm: str
    sign: Callable[[Any, bytes], bytes]


def _signature_scheme_for(key: object) -> _SignatureScheme:
    """ECDSA or RSA PKCS#1 v1.5 with the project's hash for the key (SHA-256/384)."""
    # Ed25519 is refused: OpenSSL 3.0's `openssl ts -verify` (PKCS#7) cannot check it.
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise UnsuitableSigningCertificateError("the TSA key must be an EC or RSA key")
    algorithm = cast(hashes.HashAlgorithm, signature_hash_for(key))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return _SignatureScheme(
            algorithm.name,
            f"{algorithm.name}_ecdsa",
            lambda key, data: key.sign(data, ec.ECDSA(algorithm)),
        )
    return _SignatureScheme(
        algorithm.name,
        f"{algorithm.name}_rsa",
        lambda key, data: key.sign(data, padding.PKCS1v15(), algorithm),
    )


@dataclasses.dataclass(frozen=True)
class TsaSigner:
    """The TSA's key handle and certificates; checked and precomputed once."""

    private_key: Any
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...] = ()
    policy: x509.ObjectIdentifier = ProjectOID.TIMESTAMP_POLICY
    accuracy: dt.timedelta = _ONE_SECOND
    accepted_hashes: frozenset[str] = frozenset(MESSAGE_IMPRINT_HASHES)
    include_tsa_name: bool = True
    _scheme: _SignatureScheme = dataclasses.field(init=False, repr=False)
    _asn1_certificates: tuple[asn1_x509.Certificate, ...] = dataclasses.field(
        init=False, repr=False
    )
    _signing_certificate_attribute: cms.CMSAttribute = dataclasses.field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "chain", tuple(self.chain))
        object.__setattr__(self, "accepted_hashes", frozenset(self.accepted_hashes))
        if not isinstance(self.certificate, x509.Certificate) or not all(
            isinstance(c, x509.Certificate) for c in self.chain
        ):
            raise TypeError(
                "the TSA certificate and chain must be x509.Certificate objects"
            )
        if self.accuracy <= dt.timedelta(0):
            raise ValueError("accuracy must be positive")
        unknown = set(self.accepted_hashes) - set(MESSAGE_IMPRINT_HASHES)
        if unknown or not self.accepted_hashes:
            raise ValueError(
                "accepted_hashes must be a non-empty subset of "
                + ", ".join(sorted(MESSAGE_IMPRINT_HASHES))
            )
        _check_tsa_certificate(self.certificate, self.private_key)
        object.__setattr__(self, "_scheme", _signature_scheme_for(self.private_key))
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        tsa_certificate = asn1_x509.Certificate.load(der)
        chain = tuple(
            asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
            for c in self.chain
        )
        object.__setattr__(self, "_asn1_certificates", (tsa_certificate, *chain))
        object.__setattr__(
            self,
            "_signing_certificate_attribute",
            _signing_certificate_v2(tsa_certificate, hashlib.sha256(der).digest()),
        )


class _TimeStampResp(core.Sequence):
    """RFC 3161 TimeStampResp; asn1crypto's own wrongly makes the token mandatory."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


@dataclasses.dataclass(frozen=True)
class _Rejection:
    failure: TimestampFailure
    reason: str


@dataclasses.dataclass(frozen=True)
class _AcceptedRequest:
    hash_name: str
    message_imprint: tsp.MessageImprint
    digest: bytes
    nonce: int | None
    cert_req: bool


def respond_timestamp(
    request_der: bytes, *, signer: TsaSigner, serial: int, now: dt.datetime
) -> TimestampOutcome:
    """Answer one DER TimeStampReq: a signed token, or a rejection saying why."""
    if not isinstance(request_der, bytes | bytearray | memoryview):
        raise TypeError("request_der must be bytes")
    if not isinstance(signer, TsaSigner):
        raise TypeError("signer must be a TsaSigner")
    if isinstance(serial, bool) or not isinstance(serial, int):
        raise TypeError("serial must be an int")
    if not 0 < serial < MAX_SERIAL:
        raise ValueError("serial must be a positive integer of at most 160 bits")
    if (
        not isinstance(now, dt.datetime)
        or now.tzinfo is None
        or now.utcoffset() is None
    ):
        raise ValueError("now must be a timezone-aware datetime")
    now = now.astimezone(dt.UTC)
    certificate = signer.certificate
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise UnsuitableSigningCertificateError(
            "the TSA certificate is not valid at the current time"
        )

    checked = _check_request(bytes(request_der), signer)
    if isinstance(checked, _Rejection):
        return _rejection_outcome(checked)
    gen_time = now if signer.accuracy < _ONE_SECOND else now.replace(microsecond=0)
    tst_info = _tst_info(checked, signer=signer, serial=serial, gen_time=gen_time)
    token = _sign_token(tst_info, signer=signer, include_certificates=checked.cert_req)
    response = _TimeStampResp(
        {"status": {"status": "granted"}, "time_stamp_token": token}
    )
    return TimestampOutcome(
        response_der=response.dump(),
        status=TimestampStatus.GRANTED,
        serial=serial,
        hash_name=checked.hash_name,
        message_imprint=checked.digest,
        gen_time=gen_time,
    )


def system_failure_response() -> bytes:
    """A rejection with failInfo systemFailure, for when the signing key fails."""
    return _SYSTEM_FAILURE


def _check_request(der: bytes, signer: TsaSigner) -> _AcceptedRequest | _Rejection:
    if len(der) > MAX_TIMESTAMP_REQUEST_SIZE:
        return _Rejection(
            TimestampFailure.BAD_REQUEST,
            f"timestamp request is larger than {MAX_TIMESTAMP_REQUEST_SIZE} bytes",
        )
    try:
        request = tsp.TimeStampReq.load(der, strict=True)
        # asn1crypto parses lazily: decode everything here, where every failure means
        # bad input. On hostile bytes it raises more than ValueError (IndexError,
        # AttributeError, ...), hence the broad catch around this step only.
        _ = request.native
    except Exception:  # noqa: BLE001
        return _Rejection(
            TimestampFailure.BAD_DATA_FORMAT, "timestamp request is not valid DER"
        )
    return _read_request(request, signer)


def _read_request(
    request: tsp.TimeStampReq, signer: TsaSigner
) -> _AcceptedRequest | _Rejection:
    if request["version"].native != "v1":
        return _Rejection(
            TimestampFailure.BAD_DATA_FORMAT, "timestamp request version must be 1"
        )
    imprint = request["message_imprint"]
    algorithm = imprint["hash_algorithm"]
    hash_name = algorithm["algorithm"].native
    if hash_name not in signer.accepted_hashes:
        shown = hash_name if "." not in hash_name else "this hash algorithm"
        return _Rejection(
            TimestampFailure.BAD_ALG,
            f"{shown} is not accepted; use one of "
            + ", ".join(sorted(signer.accepted_hashes)),
        )
    if algorithm["parameters"].native is not None:
        return _Rejection(
            TimestampFailure.BAD_DATA_FORMAT,
            "hash algorithm parameters must be absent or NULL",
        )
    digest = imprint["hashed_message"].native
    if len(digest) != MESSAGE_IMPRINT_HASHES[hash_name]:
        return _Rejection(
            TimestampFailure.BAD_DATA_FORMAT,
            f"message imprint has {len(digest)} bytes; {hash_name} has "
            f"{MESSAGE_IMPRINT_HASHES[hash_name]}",
        )
    policy = request["req_policy"].native
    if policy is not None and policy != signer.policy.dotted_string:
        return _Rejection(
            TimestampFailure.UNACCEPTED_POLICY, "requested policy is not supported"
        )
    if request["extensions"].native:
        return _Rejection(
            TimestampFailure.UNACCEPTED_EXTENSION,
            "timestamp request extensions are not supported",
        )
    return _AcceptedRequest(
        hash_name=hash_name,
        message_imprint=imprint,
        digest=digest,
        nonce=request["nonce"].native,
        cert_req=bool(request["cert_req"].native),
    )


def _accuracy(accuracy: dt.timedelta) -> dict[str, int]:
    micros_total = accuracy // dt.timedelta(microseconds=1)
    seconds, rest = divmod(micros_total, 1_000_000)
    millis, micros = divmod(rest, 1000)
    parts = {"seconds": seconds, "millis": millis, "micros": micros}
    return {name: value for name, value in parts.items() if value}


def _tst_info(
    request: _AcceptedRequest, *, signer: TsaSigner, serial: int, gen_time: dt.datetime
) -> tsp.TSTInfo:
    fields: dict[str, Any] = {
        "version": "v1",
        "policy": signer.policy.dotted_string,
        "message_imprint": request.message_imprint,
        "serial_number": serial,
        "gen_time": gen_time,
        "accuracy": _accuracy(signer.accuracy),
    }
    if request.nonce is not None:
        fields["nonce"] = request.nonce
    if signer.include_tsa_name:
        fields["tsa"] = asn1_x509.GeneralName(
            name="directory_name", value=signer._asn1_certificates[0].subject
        )
    return tsp.TSTInfo(fields)


def _sign_token(
    tst_info: tsp.TSTInfo, *, signer: TsaSigner, include_certificates: bool
) -> cms.ContentInfo:
    scheme = signer._scheme
    content = tst_info.dump()
    signed_attributes = cms.CMSAttributes(
        [
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute(
                {
                    "type": "message_digest",
                    "values": [hashlib.new(scheme.digest_name, content).digest()],
                }
            ),
            signer._signing_certificate_attribute,
        ]
    )
    # The signature covers the attributes as a SET (tag 0x31), not as the [0] field.
    signature = scheme.sign(signer.private_key, signed_attributes.dump())
    tsa_certificate = signer._asn1_certificates[0]
    digest_algorithm = algos.DigestAlgorithm({"algorithm": scheme.digest_name})
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={
                    "issuer": tsa_certificate.issuer,
                    "serial_number": tsa_certificate.serial_number,
                },
            ),
            "digest_algorithm": digest_algorithm,
            "signed_attrs": signed_attributes,
            "signature_algorithm": {"algorithm": scheme.signature_algorithm},
            "signature": signature,
        }
    )
    signed_data: dict[str, Any] = {
        "version": "v3",
        "digest_algorithms": [digest_algorithm],
        "encap_content_info": {
            "content_type": "tst_info",
            "content": core.ParsableOctetString(content),
        },
        "signer_infos": [signer_info],
    }
    if include_certificates:
        signed_data["certificates"] = list(signer._asn1_certificates)
    return cms.ContentInfo(
        {"content_type": "signed_data", "content": cms.SignedData(signed_data)}
    )


def _signing_certificate_v2(
    certificate: asn1_x509.Certificate, certificate_sha256: bytes
) -> cms.CMSAttribute:
    """RFC 5816 ESS signing-certificate-v2 binding the token to the TSA certificate."""
    ess_cert_id = {
        "hash_algorithm": {"algorithm": "sha256"},
        "cert_hash": certificate_sha256,
        "issuer_serial": {
            "issuer": [
                asn1_x509.GeneralName(name="directory_name", value=certificate.issuer)
            ],
            "serial_number": certificate.serial_number,
        },
    }
    return cms.CMSAttribute(
        {"type": "signing_certificate_v2", "values": [{"certs": [ess_cert_id]}]}
    )


def _rejection_der(failure: TimestampFailure, reason: str) -> bytes:
    status = {
        "status": "rejection",
        "status_string": [reason],
        "fail_info": {failure.value},
    }
    return _TimeStampResp({"status": status}).dump()


def _rejection_outcome(rejection: _Rejection) -> TimestampOutcome:
    return TimestampOutcome(
        response_der=_rejection_der(rejection.failure, rejection.reason),
        status=TimestampStatus.REJECTION,
        failure=rejection.failure,
        reason=rejection.reason,
    )


_SYSTEM_FAILURE: Final = _rejection_der(
    TimestampFailure.SYSTEM_FAILURE, "the timestamp authority cannot sign at the moment"
)


def _public_key_der(public_key: Any) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _check_tsa_certificate(certificate: x509.Certificate, key: Any) -> None:
    """RFC 3161 2.3: the only EKU is id-kp-timeStamping, and it is critical."""
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        eku = None
    if (
        eku is None
        or not eku.critical
        or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]
    ):
        raise UnsuitableSigningCertificateError(
            "the TSA certificate must have id-kp-timeStamping as its only, critical, "
            "extended key usage"
        )
    try:
        key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        key_usage = None
    if key_usage is not None and not (
        key_usage.digital_signature or key_usage.content_commitment
    ):
        raise UnsuitableSigningCertificateError(
            "the TSA certificate's key usage does not allow signatures"
        )
    _signature_scheme_for(key)
    if _public_key_der(key.public_key()) != _public_key_der(certificate.public_key()):
        raise UnsuitableSigningCertificateError(
            "the TSA key does not match its certificate"
        )
