"""The offline QR token of a licence: `LC1:` + Base45(zlib(COSE_Sign1(CWT claims))).

The same pipeline as the EU Digital COVID Certificate (`HC1:`), whose public test
cases check this decoder stage by stage. Tokens are signed ES256 by the region's
document signer (an HSM key); the `kid` is the first 8 bytes of SHA-256 over the
signer certificate's DER. ES256 and PS256 verify (the DCC requires both).

Claims of an LC1 token (CBOR map, integer keys):

    1      iss     text   issuing region (GB/T 2260 code)
    6      iat     uint   issued at, seconds since the epoch
    4      exp     uint   token expiry; never after the document signer's notAfter
    -70001         text   licence identifier (GB/T 36904)
    -70002         text   licence type code
    -70003         map    the type's QR fields: text name -> text | int | bool
    65535  status  map    optional: {"status_list": {"idx": uint, "uri": text}}, the
                          Token Status List reference (draft-ietf-oauth-status-list)

Claims under other keys are kept in `TokenClaims.raw` and otherwise ignored.

Verification runs the stages of `TokenStage` in order and stops at the first that
fails; every input gets a `TokenVerification` with a verdict and a one-line reason,
never an exception (exceptions are for programmer errors: a naive clock, a token
that is not a str). Decoding is bounded before it is done: the token length, the
decompressed size (zlib streamed with an output cap, so a bomb stops at the cap),
the CBOR size and nesting depth; indefinite lengths, duplicate map keys and tags
other than COSE_Sign1/CWT at the top are refused. Claims are returned only from
tokens whose signature checked.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import types
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hsm_sim.api import (
    HashName,
    KeyStore,
    KeyUsage,
    SignatureMechanism,
    current_signing_context,
    signing_context,
)

from ._base45 import Base45Error, b45decode, b45encode
from ._cbor import CborError, CborLimits, decode_cbor, encode_cbor
from ._cose import (
    ALG_ES256,
    CoseError,
    CoseSign1,
    assemble_sign1,
    der_to_raw_ecdsa,
    parse_sign1,
    protected_header,
    sig_structure,
    verify_sign1,
)
from .errors import TokenClaimsError, TokenFormatError, TokenSignerError
from .verdict import Verdict

__all__ = [
    "CLAIM_EXPIRES",
    "CLAIM_FIELDS",
    "CLAIM_HCERT",
    "CLAIM_ISSUED_AT",
    "CLAIM_ISSUER",
    "CLAIM_LICENCE_ID",
    "CLAIM_LICENCE_TYPE",
    "CLAIM_NOT_BEFORE",
    "CLAIM_STATUS",
    "DEFAULT_LIMITS",
    "DecodeLimits",
    "FieldValue",
    "LicenceClaims",
    "SignatureCheck",
    "SignerList",
    "SignerTrust",
    "StatusReference",
    "TokenClaims",
    "TokenProfile",
    "TokenStage",
    "TokenVerification",
    "TrustedSigner",
    "ValidityCheck",
    "Verdict",
    "check_signature",
    "check_validity",
    "decode_base45",
    "decode_claims",
    "decompress_payload",
    "encode_token",
    "encode_tokens",
    "parse_cose",
    "signer_kid",
    "strip_prefix",
    "verify_cose",
    "verify_token",
]

CLAIM_ISSUER = 1
CLAIM_EXPIRES = 4
CLAIM_NOT_BEFORE = 5
CLAIM_ISSUED_AT = 6
CLAIM_HCERT = -260
CLAIM_LICENCE_ID = -70001
CLAIM_LICENCE_TYPE = -70002
CLAIM_FIELDS = -70003
CLAIM_STATUS = 65535
_STATUS_LIST = "status_list"

KID_BYTES = 8
ZLIB_LEVEL = 9
# Payloads up to this size make tokens of at most 4,222 characters even when nothing
# compresses (COSE adds under 100 bytes, zlib at most 11 to incompressible data).
_ALWAYS_FITS_PAYLOAD_BYTES = 2700
# The most a NumericDate may say: the end of year 9999, so every one is a datetime.
_MAX_NUMERIC_DATE = 253402300799
_MIN_INT = -(2**63)
_MAX_UINT = 2**64 - 1
_UTC = dt.UTC

FieldValue = str | int | bool


class TokenProfile(enum.Enum):
    """Whose token: ours (`LC1:`) or the EU DCC's (`HC1:`, for the conformance suite)."""

    LC1 = "LC1"
    HC1 = "HC1"

    @property
    def prefix(self) -> str:
        return f"{self.value}:"

    @classmethod
    def coerce(cls, value: TokenProfile | str) -> TokenProfile:
        return value if isinstance(value, TokenProfile) else cls(value)


class TokenStage(enum.Enum):
    """The decoding and checking stages, in the order they run."""

    PREFIX = "prefix"
    BASE45 = "base45"
    DECOMPRESS = "decompress"
    COSE = "cose"
    SIGNATURE = "signature"
    CLAIMS = "claims"
    VALIDITY = "validity"


# Payload tags per profile: DCC issuers put RFC 8949 date/time tags in their payloads.
_PAYLOAD_TAGS = {TokenProfile.LC1: frozenset(), TokenProfile.HC1: frozenset({0, 1})}


@dataclasses.dataclass(frozen=True)
class DecodeLimits:
    """Bounds on what a verifier decodes (defaults fit any QR code, version 40 at L)."""

    max_token_chars: int = 4296
    max_payload_bytes: int = 65536
    max_depth: int = 16

    @property
    def cbor(self) -> CborLimits:
        return CborLimits(max_bytes=self.max_payload_bytes, max_depth=self.max_depth)


DEFAULT_LIMITS = DecodeLimits()


@dataclasses.dataclass(frozen=True)
class StatusReference:
    """Where the licence's status bit is: index `index` of the status list at `uri`."""

    index: int
    uri: str

    def __post_init__(self) -> None:
        if type(self.index) is not int or not 0 <= self.index <= _MAX_UINT:
            raise TokenClaimsError("status-list index must be a non-negative integer")
        if not isinstance(self.uri, str) or not self.uri:
            raise TokenClaimsError("status-list uri must be non-empty text")

    def to_cbor_value(self) -> dict[str, Any]:
        return {_STATUS_LIST: {"idx": self.index, "uri": self.uri}}

    @classmethod
    def from_cbor_value(cls, value: object) -> StatusReference:
        entry = value.get(_STATUS_LIST) if type(value) is dict else None
        if type(entry) is not dict:
            raise TokenClaimsError("status claim has no status_list reference")
        return cls(index=entry.get("idx"), uri=entry.get("uri"))


@dataclasses.dataclass(frozen=True)
class LicenceClaims:
    """What an LC1 token says about a licence (see the claim map in the module doc)."""

    issuer: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    licence_id: str
    type_code: str
    fields: Mapping[str, FieldValue]
    status: StatusReference | None = None

    def __post_init__(self) -> None:
        for name in ("issuer", "licence_id", "type_code"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise TokenClaimsError(f"{name} must be non-empty text")
        object.__setattr__(
            self, "issued_at", _numeric_datetime(self.issued_at, "issued_at")
        )
        object.__setattr__(
            self, "expires_at", _numeric_datetime(self.expires_at, "expires_at")
        )
        if self.expires_at <= self.issued_at:
            raise TokenClaimsError("expires_at must be after issued_at")
        if not isinstance(self.fields, Mapping):
            raise TokenClaimsError("fields must be a mapping of name to value")
        for key, value in self.fields.items():
            if not isinstance(key, str) or not key:
                raise TokenClaimsError("every field name must be non-empty text")
            if not (
                isinstance(value, str)
                or (isinstance(value, int) and _MIN_INT <= value <= _MAX_UINT)
            ):
                raise TokenClaimsError(
                    f"field {key!r} must be text, an integer or a boolean"
                )
        object.__setattr__(self, "fields", types.MappingProxyType(dict(self.fields)))
        if self.status is not None and not isinstance(self.status, StatusReference):
            raise TokenClaimsError("status must be a StatusReference")

    def to_cwt(self) -> dict[int, Any]:
        claims: dict[int, Any] = {
            CLAIM_ISSUER: self.issuer,
            CLAIM_ISSUED_AT: int(self.issued_at.timestamp()),
            CLAIM_EXPIRES: int(self.expires_at.timestamp()),
            CLAIM_LICENCE_ID: self.licence_id,
            CLAIM_LICENCE_TYPE: self.type_code,
            CLAIM_FIELDS: dict(self.fields),
        }
        if self.status is not None:
            claims[CLAIM_STATUS] = self.status.to_cbor_value()
        return claims

    @classmethod
    def from_cwt(cls, claims: Mapping[Any, Any]) -> LicenceClaims:
        """The licence claims of a decoded CWT claims map; TokenClaimsError naming what
        is wrong. Checks types exactly (no subclasses), as decoded CBOR has them."""
        get = claims.get
        for key, name in (
            (CLAIM_ISSUER, "iss"),
            (CLAIM_LICENCE_ID, "licence id"),
            (CLAIM_LICENCE_TYPE, "licence type"),
        ):
            value = get(key)
            if type(value) is not str or not value:
                raise TokenClaimsError(f"claim {name} ({key}) must be non-empty text")
        issued_at = _datetime_from_numeric(get(CLAIM_ISSUED_AT), "iat")
        expires_at = _datetime_from_numeric(get(CLAIM_EXPIRES), "exp")
        if expires_at <= issued_at:
            raise TokenClaimsError("claim exp is not after iat")
        fields = get(CLAIM_FIELDS)
        if type(fields) is not dict:
            raise TokenClaimsError(f"claim fields ({CLAIM_FIELDS}) must be a map")
        for key, value in fields.items():
            if type(key) is not str or not key:
                raise TokenClaimsError("every field name must be non-empty text")
            kind = type(value)
            if not (kind is str or kind is bool or kind is int):
                raise TokenClaimsError(
                    f"field {key[:40]!r} must be text, an integer or a boolean"
                )
        status_value = get(CLAIM_STATUS)
        status = (
            None
            if status_value is None
            else StatusReference.from_cbor_value(status_value)
        )
        # Every value is checked above, so __post_init__ need not run again.
        licence = cls.__new__(cls)
        for name, value in (
            ("issuer", claims[CLAIM_ISSUER]),
            ("issued_at", issued_at),
            ("expires_at", expires_at),
            ("licence_id", claims[CLAIM_LICENCE_ID]),
            ("type_code", claims[CLAIM_LICENCE_TYPE]),
            ("fields", types.MappingProxyType(fields)),
            ("status", status),
        ):
            object.__setattr__(licence, name, value)
        return licence


@dataclasses.dataclass(frozen=True)
class TokenClaims:
    """The CWT claims of a token whose signature checked."""

    issuer: str | None
    issued_at: dt.datetime | None
    expires_at: dt.datetime | None
    not_before: dt.datetime | None
    raw: Mapping[Any, Any]
    licence: LicenceClaims | None = None  # LC1 tokens only


# -- trusted signers ---------------------------------------------------------------


def signer_kid(certificate: x509.Certificate) -> bytes:
    """The COSE kid of a document signer: SHA-256 of its DER certificate, first 8 bytes."""
    der = certificate.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).digest()[:KID_BYTES]


@dataclasses.dataclass(frozen=True)
class TrustedSigner:
    """A document-signer certificate a verifier trusts, for the window it is trusted.

    `issuer`, when set, is the only `iss` its tokens may carry (a region's signer
    cannot sign for another region). `not_before`/`not_after` narrow the
    certificate's own validity, e.g. to a trust list's; `valid_from`/`valid_until`
    are the result.
    """

    certificate: x509.Certificate
    issuer: str | None = None
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    kid: bytes = dataclasses.field(init=False)
    public_key: Any = dataclasses.field(init=False, repr=False, compare=False)
    valid_from: dt.datetime = dataclasses.field(init=False)
    valid_until: dt.datetime = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.certificate, x509.Certificate):
            raise TypeError("certificate must be a cryptography x509.Certificate")
        valid_from = self.certificate.not_valid_before_utc
        valid_until = self.certificate.not_valid_after_utc
        if self.not_before is not None:
            valid_from = max(valid_from, _aware(self.not_before, "not_before"))
        if self.not_after is not None:
            valid_until = min(valid_until, _aware(self.not_after, "not_after"))
        object.__setattr__(self, "kid", signer_kid(self.certificate))
        object.__setattr__(self, "public_key", self.certificate.public_key())
        object.__setattr__(self, "valid_from", valid_from)
        object.__setattr__(self, "valid_until", valid_until)


@runtime_checkable
class SignerTrust(Protocol):
    """Where a verifier finds the document signers it trusts, by kid.

    Implemented by `SignerList`; the exchange trust lists implement it too.
    """

    def signers_for_kid(self, kid: bytes) -> Sequence[TrustedSigner]:
        """Every trusted signer with this kid (kids are short: there may be several)."""
        ...


class SignerList:
    """An in-memory `SignerTrust`: a fixed list of trusted signers."""

    def __init__(
        self, signers: Iterable[TrustedSigner | x509.Certificate] = ()
    ) -> None:
        by_kid: dict[bytes, list[TrustedSigner]] = {}
        for signer in signers:
            trusted = (
                signer if isinstance(signer, TrustedSigner) else TrustedSigner(signer)
            )
            by_kid.setdefault(trusted.kid, []).append(trusted)
        self._by_kid = {kid: tuple(group) for kid, group in by_kid.items()}

    def signers_for_kid(self, kid: bytes) -> Sequence[TrustedSigner]:
        return self._by_kid.get(kid, ())

    def __iter__(self):  # type: ignore[no-untyped-def]
        for group in self._by_kid.values():
            yield from group

    def __len__(self) -> int:
        return sum(len(group) for group in self._by_kid.values())


# -- encoding ----------------------------------------------------------------------


def encode_token(
    claims: LicenceClaims | Mapping[Any, Any],
    *,
    signer_key: ec.EllipticCurvePrivateKey,
    signer_certificate: x509.Certificate,
    profile: TokenProfile | str = TokenProfile.LC1,
) -> str:
    """One signed token; the key signs through `.sign(data, ECDSA(SHA256))` only.

    Each call is one audited signature when `signer_key` is an HSM handle; for many
    tokens `encode_tokens` signs them as one batch: an audit entry each, one commit.
    """
    profile = TokenProfile.coerce(profile)
    _check_signer(signer_key.public_key(), signer_certificate)
    protected = protected_header(ALG_ES256, signer_kid(signer_certificate))
    payload = _claims_payload(claims, profile)
    with _token_signing_context():
        der = signer_key.sign(
            sig_structure(protected, payload), ec.ECDSA(hashes.SHA256())
        )
    return _assemble_token(protected, payload, der, profile)


def encode_tokens(
    claims_list: Sequence[LicenceClaims | Mapping[Any, Any]],
    *,
    keystore: KeyStore,
    key_label: str,
    signer_certificate: x509.Certificate,
    profile: TokenProfile | str = TokenProfile.LC1,
) -> list[str]:
    """Many tokens, signed by the key store in one batch (an audit entry each, one commit)."""
    profile = TokenProfile.coerce(profile)
    _check_signer(keystore.public_key(key_label), signer_certificate)
    protected = protected_header(ALG_ES256, signer_kid(signer_certificate))
    payloads = [_claims_payload(claims, profile) for claims in claims_list]
    with _token_signing_context():
        signatures = keystore.sign_batch(
            key_label,
            [sig_structure(protected, payload) for payload in payloads],
            SignatureMechanism(hash=HashName.SHA256),
            usage=KeyUsage.TOKEN,
        )
    return [
        _assemble_token(protected, payload, der, profile)
        for payload, der in zip(payloads, signatures, strict=True)
    ]


def _check_signer(public_key: object, certificate: x509.Certificate) -> None:
    if not (
        isinstance(public_key, ec.EllipticCurvePublicKey)
        and isinstance(public_key.curve, ec.SECP256R1)
    ):
        raise TokenSignerError(
            "the document signer key must be an ECDSA P-256 key (ES256)"
        )
    if public_key != certificate.public_key():
        raise TokenSignerError("the document signer key does not match its certificate")


def _token_signing_context():  # type: ignore[no-untyped-def]
    operation = current_signing_context().operation or "sign-licence-token"
    return signing_context(operation=operation)


def _claims_payload(
    claims: LicenceClaims | Mapping[Any, Any], profile: TokenProfile
) -> bytes:
    if isinstance(claims, LicenceClaims):
        if profile is not TokenProfile.LC1:
            raise TokenClaimsError("licence claims go into LC1 tokens only")
        cwt = claims.to_cwt()
    elif isinstance(claims, Mapping):
        cwt = dict(claims)
        if profile is TokenProfile.LC1:
            LicenceClaims.from_cwt(cwt)
    else:
        raise TypeError("claims must be LicenceClaims or a mapping of CWT claims")
    try:
        payload = encode_cbor(cwt)
    except ValueError as exc:
        raise TokenClaimsError(str(exc)) from None
    if len(payload) > DEFAULT_LIMITS.max_payload_bytes:
        raise TokenClaimsError(
            f"claims take {len(payload)} bytes, more than a token carries "
            f"({DEFAULT_LIMITS.max_payload_bytes})"
        )
    # Refuse before signing what cannot fit; smaller payloads always fit, and the
    # exact check after signing (in _assemble_token) catches the rare near miss.
    if len(payload) > _ALWAYS_FITS_PAYLOAD_BYTES:
        least_chars = (
            len(profile.prefix) + (3 * len(zlib.compress(payload, ZLIB_LEVEL))) // 2
        )
        if least_chars > DEFAULT_LIMITS.max_token_chars:
            raise TokenClaimsError(
                f"the token would be at least {least_chars} characters, more than a QR "
                f"code holds ({DEFAULT_LIMITS.max_token_chars})"
            )
    return payload


def _assemble_token(
    protected: bytes, payload: bytes, der_signature: bytes, profile: TokenProfile
) -> str:
    message = assemble_sign1(protected, payload, der_to_raw_ecdsa(der_signature))
    token = profile.prefix + b45encode(zlib.compress(message, ZLIB_LEVEL))
    if len(token) > DEFAULT_LIMITS.max_token_chars:
        raise TokenClaimsError(
            f"the token would be {len(token)} characters, more than a QR code holds "
            f"({DEFAULT_LIMITS.max_token_chars})"
        )
    return token


# -- decoding stages ---------------------------------------------------------------


def strip_prefix(
    token: str,
    profile: TokenProfile | str = TokenProfile.LC1,
    *,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> str:
    """The Base45 text after the profile's prefix; TokenFormatError(PREFIX) otherwise."""
    if not isinstance(token, str):
        raise TypeError("a token is text (str)")
    profile = TokenProfile.coerce(profile)
    if len(token) > limits.max_token_chars:
        raise TokenFormatError(
            TokenStage.PREFIX,
            f"token is {len(token)} characters, more than {limits.max_token_chars}",
        )
    if not token.startswith(profile.prefix):
        raise TokenFormatError(
            TokenStage.PREFIX, f"token does not start with {profile.prefix!r}"
        )
    return token[len(profile.prefix) :]


def decode_base45(text: str) -> bytes:
    try:
        return b45decode(text)
    except Base45Error as exc:
        raise TokenFormatError(TokenStage.BASE45, str(exc)) from None


def decompress_payload(data: bytes, *, limits: DecodeLimits = DEFAULT_LIMITS) -> bytes:
    """The zlib stream inflated, never beyond `limits.max_payload_bytes` of output."""
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limits.max_payload_bytes + 1)
    except zlib.error:
        raise TokenFormatError(
            TokenStage.DECOMPRESS, "payload is not a valid zlib stream"
        ) from None
    if len(out) > limits.max_payload_bytes:
        raise TokenFormatError(
            TokenStage.DECOMPRESS,
            f"payload inflates to more than {limits.max_payload_bytes} bytes",
        )
    if not inflater.eof:
        raise TokenFormatError(TokenStage.DECOMPRESS, "zlib stream is truncated")
    if inflater.unused_data:
        raise TokenFormatError(
            TokenStage.DECOMPRESS,
            f"{len(inflater.unused_data)} bytes follow the zlib stream",
        )
    return out


def parse_cose(data: bytes, *, limits: DecodeLimits = DEFAULT_LIMITS) -> CoseSign1:
    """The COSE_Sign1 structure, headers checked; TokenFormatError(COSE) otherwise."""
    try:
        return parse_sign1(data, limits=limits.cbor)
    except CoseError as exc:
        raise TokenFormatError(TokenStage.COSE, str(exc)) from None


@dataclasses.dataclass(frozen=True)
class SignatureCheck:
    """Which trusted signer made the signature, or why none did."""

    verdict: Verdict
    reason: str
    signer: TrustedSigner | None = None


def check_signature(message: CoseSign1, trust: SignerTrust) -> SignatureCheck:
    """Try every trusted signer whose kid matches (kids are truncated hashes and collide)."""
    if message.kid is None:
        return SignatureCheck(Verdict.MALFORMED, "token has no kid in either header")
    candidates = trust.signers_for_kid(message.kid)
    if not candidates:
        return SignatureCheck(
            Verdict.UNTRUSTED_ISSUER,
            f"no trusted document signer has kid {message.kid.hex()}",
        )
    for signer in candidates:
        if verify_sign1(message, signer.public_key):
            return SignatureCheck(Verdict.VALID, "signature verified", signer)
    return SignatureCheck(
        Verdict.INVALID_SIGNATURE,
        f"{message.algorithm_name} signature does not verify with the "
        f"{len(candidates)} trusted signer(s) of kid {message.kid.hex()}",
    )


def decode_claims(
    message: CoseSign1,
    profile: TokenProfile | str = TokenProfile.LC1,
    *,
    limits: DecodeLimits = DEFAULT_LIMITS,
) -> TokenClaims:
    """The CWT claims of the payload; TokenFormatError(CLAIMS) for any malformed claim."""
    profile = TokenProfile.coerce(profile)
    try:
        raw = decode_cbor(
            message.payload, limits=limits.cbor, allowed_tags=_PAYLOAD_TAGS[profile]
        )
    except CborError as exc:
        raise TokenFormatError(TokenStage.CLAIMS, f"claims: {exc}") from None
    if type(raw) is not dict:
        raise TokenFormatError(TokenStage.CLAIMS, "claims must be a CBOR map")
    try:
        if profile is TokenProfile.LC1:
            licence = LicenceClaims.from_cwt(raw)
            return TokenClaims(
                issuer=licence.issuer,
                issued_at=licence.issued_at,
                expires_at=licence.expires_at,
                not_before=_optional_datetime(raw.get(CLAIM_NOT_BEFORE), "nbf"),
                raw=types.MappingProxyType(raw),
                licence=licence,
            )
        issuer = raw.get(CLAIM_ISSUER)
        if issuer is not None and type(issuer) is not str:
            raise TokenClaimsError("claim iss must be text")
        # RFC 8392 allows fractional NumericDates; the DCC's issuers use them.
        return TokenClaims(
            issuer=issuer,
            issued_at=_optional_datetime(
                raw.get(CLAIM_ISSUED_AT), "iat", fractional=True
            ),
            expires_at=_optional_datetime(
                raw.get(CLAIM_EXPIRES), "exp", fractional=True
            ),
            not_before=_optional_datetime(
                raw.get(CLAIM_NOT_BEFORE), "nbf", fractional=True
            ),
            raw=types.MappingProxyType(raw),
        )
    except TokenClaimsError as exc:
        raise TokenFormatError(TokenStage.CLAIMS, str(exc)) from None


@dataclasses.dataclass(frozen=True)
class ValidityCheck:
    verdict: Verdict
    reason: str


def check_validity(
    claims: TokenClaims,
    signer: TrustedSigner,
    at: dt.datetime,
    *,
    leeway: dt.timedelta = dt.timedelta(0),
) -> ValidityCheck:
    """Issuer and dates: the signer fits `iss` and was valid at `iat` and until `exp`
    (DCC §3.3.5), and `at` lies in [max(iat, nbf), exp] with `leeway` either way.

    `exp` itself is still valid, as the DCC's verifiers and test cases have it
    (RFC 8392 would refuse it: the difference is one second).
    """
    at = _aware(at, "at")
    issued_at, expires_at = claims.issued_at, claims.expires_at
    if issued_at is None or expires_at is None:
        return ValidityCheck(Verdict.MALFORMED, "token has no iat or no exp claim")
    if expires_at < issued_at:
        return ValidityCheck(Verdict.MALFORMED, "token expires before it was issued")
    if signer.issuer is not None and claims.issuer != signer.issuer:
        return ValidityCheck(
            Verdict.UNTRUSTED_ISSUER,
            f"document signer is trusted for issuer {signer.issuer!r}, "
            f"not {claims.issuer!r}",
        )
    if not signer.valid_from <= issued_at <= signer.valid_until:
        return ValidityCheck(
            Verdict.UNTRUSTED_ISSUER,
            f"document signer was not valid at iat {_iso(issued_at)} "
            f"(valid {_iso(signer.valid_from)} to {_iso(signer.valid_until)})",
        )
    if expires_at > signer.valid_until:
        return ValidityCheck(
            Verdict.UNTRUSTED_ISSUER,
            f"token expiry {_iso(expires_at)} is after its document signer's "
            f"{_iso(signer.valid_until)}",
        )
    starts = max(issued_at, claims.not_before or issued_at)
    if at + leeway < starts:
        return ValidityCheck(
            Verdict.NOT_YET_VALID, f"token is valid only from {_iso(starts)}"
        )
    if at - leeway > expires_at:
        return ValidityCheck(Verdict.EXPIRED, f"token expired at {_iso(expires_at)}")
    return ValidityCheck(Verdict.VALID, "token is valid")


# -- the whole check ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TokenVerification:
    """The outcome of checking one token. `claims` is set only once the signature checked."""

    verdict: Verdict
    reason: str
    profile: TokenProfile
    stage: TokenStage | None = None  # the stage that decided a verdict other than VALID
    kid: bytes | None = None
    algorithm: str | None = None
    signer: TrustedSigner | None = None
    claims: TokenClaims | None = None

    @property
    def licence(self) -> LicenceClaims | None:
        return self.claims.licence if self.claims is not None else None

    @property
    def fields(self) -> Mapping[str, FieldValue]:
        licence = self.licence
        return licence.fields if licence is not None else types.MappingProxyType({})


def verify_token(
    token: str,
    *,
    trust: SignerTrust,
    at: dt.datetime,
    profile: TokenProfile | str = TokenProfile.LC1,
    limits: DecodeLimits = DEFAULT_LIMITS,
    leeway: dt.timedelta = dt.timedelta(0),
) -> TokenVerification:
    """Decode and check a token at time `at` against the trusted signers (no status
    lookup: the caller checks `claims.licence.status` against its status lists)."""
    profile = TokenProfile.coerce(profile)
    at = _aware(at, "at")
    try:
        compressed = decode_base45(strip_prefix(token, profile, limits=limits))
        message_bytes = decompress_payload(compressed, limits=limits)
    except TokenFormatError as exc:
        return TokenVerification(Verdict.MALFORMED, exc.reason, profile, exc.stage)
    return verify_cose(
        message_bytes, trust=trust, at=at, profile=profile, limits=limits, leeway=leeway
    )


def verify_cose(
    data: bytes,
    *,
    trust: SignerTrust,
    at: dt.datetime,
    profile: TokenProfile | str = TokenProfile.LC1,
    limits: DecodeLimits = DEFAULT_LIMITS,
    leeway: dt.timedelta = dt.timedelta(0),
) -> TokenVerification:
    """The checks from the COSE_Sign1 bytes on (`verify_token` without the transport)."""
    profile = TokenProfile.coerce(profile)
    try:
        message = parse_cose(data, limits=limits)
    except TokenFormatError as exc:
        return TokenVerification(Verdict.MALFORMED, exc.reason, profile, exc.stage)
    found = {"kid": message.kid, "algorithm": message.algorithm_name}
    signature = check_signature(message, trust)
    if signature.signer is None:
        return TokenVerification(
            signature.verdict, signature.reason, profile, TokenStage.SIGNATURE, **found
        )
    try:
        claims = decode_claims(message, profile, limits=limits)
    except TokenFormatError as exc:
        return TokenVerification(
            Verdict.MALFORMED,
            exc.reason,
            profile,
            exc.stage,
            signer=signature.signer,
            **found,
        )
    validity = check_validity(claims, signature.signer, at, leeway=leeway)
    return TokenVerification(
        validity.verdict,
        validity.reason,
        profile,
        None if validity.verdict is Verdict.VALID else TokenStage.VALIDITY,
        signer=signature.signer,
        claims=claims,
        **found,
    )


# -- helpers -----------------------------------------------------------------------


def _aware(value: dt.datetime, name: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise TypeError(f"{name} must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (UTC)")
    return value


def _numeric_datetime(value: object, name: str) -> dt.datetime:
    """A claim datetime as a CWT carries it: UTC, whole seconds."""
    if not isinstance(value, dt.datetime) or value.tzinfo is None:
        raise TokenClaimsError(f"{name} must be an aware datetime")
    seconds = int(value.timestamp())
    if not 0 <= seconds <= _MAX_NUMERIC_DATE:
        raise TokenClaimsError(f"{name} is out of range")
    return dt.datetime.fromtimestamp(seconds, _UTC)


def _datetime_from_numeric(
    value: object, name: str, *, fractional: bool = False
) -> dt.datetime:
    kind = type(value)
    if not (kind is int or (fractional and kind is float)):
        raise TokenClaimsError(f"claim {name} must be a NumericDate")
    # NaN fails this comparison too.
    if not 0 <= value <= _MAX_NUMERIC_DATE:  # type: ignore[operator]
        raise TokenClaimsError(f"claim {name} is out of range")
    return dt.datetime.fromtimestamp(value, _UTC)  # type: ignore[arg-type]


def _optional_datetime(
    value: object, name: str, *, fractional: bool = False
) -> dt.datetime | None:
    if value is None:
        return None
    return _datetime_from_numeric(value, name, fractional=fractional)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(_UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
