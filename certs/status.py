"""Token Status List (draft-ietf-oauth-status-list-17): revocation and suspension for licences.

    statuses = StatusList(size=131072)                # 2 bits per licence, all VALID
    idx = allocate_index(used, statuses.size)          # random, not sequential
    statuses.set(idx, StatusType.SUSPENDED)
    token = encode_status_list_jwt(statuses, uri=URI, iat=now, exp=now + day, ttl=3600,
                                   signer_key=handle, signer_certificate=dsc, issuer=ISSUER)
    verified = decode_and_verify_status_list(token, trust=trust, now=now, expected_uri=URI)
    status_of(verified.status_list, idx)               # StatusType.SUSPENDED

The list is a byte array, `bits` bits per referenced token (1, 2, 4 or 8), the entry
for index i in the least significant bits first (the draft's §4.1 layout), compressed
with DEFLATE in the ZLIB format at the highest level. Licences need three states —
0x00 VALID, 0x01 INVALID (revoked: final), 0x02 SUSPENDED (reversible) — so lists made
here use 2 bits per licence; lists of any allowed width are read.

The signed form is a JWT with typ `statuslist+jwt`, `sub` = the list's URI (the `uri`
a credential's `status.status_list` names), `iat`, `exp`, `ttl` and
`status_list: {bits, lst}`, signed ES256 by the document signer like the SD-JWT VC; or
the same claims as a CWT (COSE_Sign1, typ `application/statuslist+cwt`, claim keys 2,
6, 4, 65534, 65533) for offline verifiers that read CBOR anyway. Verification checks
the signature against the trusted signers (the signer valid at `iat` and still
valid now, bound to the list's `iss` when the trust store says so) and only then
inflates `lst`, into at most `max_bytes`: a zlib bomb is refused, not expanded.

Indexes: the draft's privacy considerations advise against sequential allocation (a
verifier could learn the issuance order, and neighbouring indexes correlate); use
`allocate_index` for a uniformly random free index, and let each list be large enough
(the default 2^17 entries is 32 KiB uncompressed) that one licence hides in the herd.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import secrets
import zlib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from certs._cbor import CborError, CborLimits, decode_cbor, encode_cbor
from certs._cose import (
    ALG_ES256,
    HEADER_ALG,
    HEADER_KID,
    CoseError,
    assemble_sign1,
    der_to_raw_ecdsa,
    parse_sign1,
    sig_structure,
    verify_sign1,
)
from certs.errors import (
    InvalidStatusListError,
    JoseError,
    StatusListError,
    StatusListFullError,
)
from certs.sdjwt import (
    b64url_decode,
    b64url_encode,
    check_signer_key,
    sign_compact_jws,
    verify_compact_jws,
)
from certs.token import SignerTrust, TrustedSigner, signer_kid
from hsm_sim.api import signing_context

__all__ = [
    "DEFAULT_LIST_SIZE",
    "MAX_STATUS_LIST_BYTES",
    "STATUS_LIST_CWT_TYP",
    "STATUS_LIST_JWT_TYP",
    "StatusList",
    "StatusType",
    "VerifiedStatusList",
    "allocate_index",
    "decode_and_verify_status_list",
    "decode_and_verify_status_list_cwt",
    "encode_status_list_cwt",
    "encode_status_list_jwt",
    "status_of",
]

STATUS_LIST_JWT_TYP = "statuslist+jwt"
STATUS_LIST_CWT_TYP = "statuslist+cwt"
DEFAULT_LIST_SIZE = 1 << 17
MAX_STATUS_LIST_BYTES = 4 * 1024 * 1024  # 16 M licences at 2 bits
_MAX_TOKEN_LENGTH = 8 * 1024 * 1024
_ALLOWED_BITS = (1, 2, 4, 8)
_CLOCK_SKEW = dt.timedelta(seconds=60)
_RANDOM_TRIES = 64
_MAX_CBOR_DEPTH = 8
_MAX_CWT_HEADER_BYTES = 4096
# CWT claim keys (RFC 8392; draft-ietf-oauth-status-list §5.2) and the COSE typ header (RFC 9596).
_CWT_ISS, _CWT_SUB, _CWT_EXP, _CWT_IAT = 1, 2, 4, 6
_CWT_TTL, _CWT_STATUS_LIST = 65534, 65533
_COSE_HEADER_TYP = 16


class StatusType(enum.IntEnum):
    """Status types of the draft's registry (§7.1) that Yinxin uses."""

    VALID = 0x00
    INVALID = 0x01  # revoked: final
    SUSPENDED = 0x02  # reversible


class StatusList:
    """A mutable list of `size` statuses, `bits` bits each, all VALID to begin with."""

    __slots__ = ("_data", "bits", "size")

    def __init__(self, size: int = DEFAULT_LIST_SIZE, bits: int = 2) -> None:
        if bits not in _ALLOWED_BITS:
            raise StatusListError("a status list has 1, 2, 4 or 8 bits per entry")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise StatusListError("a status list has a positive number of entries")
        if (size * bits + 7) // 8 > MAX_STATUS_LIST_BYTES:
            raise StatusListError("the status list would be larger than allowed")
        self.bits = bits
        self.size = size
        self._data = bytearray((size * bits + 7) // 8)

    @classmethod
    def from_bytes(cls, data: bytes, bits: int) -> StatusList:
        """A list over an uncompressed byte array; its size is every entry the bytes hold."""
        if not data:
            raise StatusListError("an empty status list")
        status_list = cls(size=len(data) * 8 // bits, bits=bits)
        status_list._data[:] = data
        return status_list

    def get(self, idx: int) -> int:
        shift, byte = self._locate(idx)
        return (self._data[byte] >> shift) & ((1 << self.bits) - 1)

    def set(self, idx: int, status: StatusType) -> None:
        if not isinstance(status, StatusType):
            raise TypeError("status must be a StatusType")
        if status >= 1 << self.bits:
            raise StatusListError(
                f"status {status.name} does not fit in {self.bits} bit(s)"
            )
        shift, byte = self._locate(idx)
        mask = ((1 << self.bits) - 1) << shift
        self._data[byte] = (self._data[byte] & ~mask & 0xFF) | (int(status) << shift)

    def to_bytes(self) -> bytes:
        return bytes(self._data)

    def compressed(self) -> bytes:
        """The list as the draft carries it: DEFLATE in ZLIB format, highest level."""
        return zlib.compress(bytes(self._data), level=9)

    def _locate(self, idx: int) -> tuple[int, int]:
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise TypeError("a status list index is an integer")
        if not 0 <= idx < self.size:
            raise StatusListError(
                f"index {idx} is outside the status list (size {self.size})"
            )
        per_byte = 8 // self.bits
        return (idx % per_byte) * self.bits, idx // per_byte


@dataclasses.dataclass(frozen=True)
class VerifiedStatusList:
    """A status list from a verified token, with what a cache needs to know about it."""

    status_list: StatusList
    uri: str
    issuer: str | None
    issued_at: dt.datetime
    expires_at: dt.datetime | None
    ttl: int | None
    signer: TrustedSigner

    @property
    def refresh_at(self) -> dt.datetime | None:
        """When a cached copy should be fetched again: the earlier of exp and iat + ttl."""
        moments = [m for m in (self.expires_at,) if m is not None]
        if self.ttl is not None:
            moments.append(self.issued_at + dt.timedelta(seconds=self.ttl))
        return min(moments) if moments else None

    def status_of(self, idx: int) -> StatusType:
        return status_of(self.status_list, idx)


def status_of(status_list: StatusList, idx: int) -> StatusType:
    """The status at `idx`; a value outside the registry Yinxin knows is refused."""
    value = status_list.get(idx)
    try:
        return StatusType(value)
    except ValueError:
        raise InvalidStatusListError(
            f"status value {value} at index {idx} is not one this verifier knows"
        ) from None


def allocate_index(used: AbstractSet[int], size: int) -> int:
    """A uniformly random index in [0, size) that is not in `used` (privacy: not sequential)."""
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise StatusListError("a status list has a positive number of entries")
    if len(used) < size:
        for _ in range(_RANDOM_TRIES):
            candidate = secrets.randbelow(size)
            if candidate not in used:
                return candidate
        # Nearly full: pick among the free indexes directly.
        free = [idx for idx in range(size) if idx not in used]
        if free:
            return free[secrets.randbelow(len(free))]
    raise StatusListFullError(
        "every index of the status list is taken; start a new list"
    )


def encode_status_list_jwt(
    status_list: StatusList,
    *,
    uri: str,
    iat: dt.datetime,
    exp: dt.datetime | None,
    ttl: int | None,
    signer_key: ec.EllipticCurvePrivateKey,
    signer_certificate: x509.Certificate,
    issuer: str | None = None,
) -> str:
    """The status list token (JWT form, typ statuslist+jwt) signed by the document signer.

    `issuer` must be given when the credentials referring to the list carry `iss`
    (the draft requires the two to be equal).
    """
    payload = _token_claims(
        status_list, uri=uri, iat=iat, exp=exp, ttl=ttl, issuer=issuer
    )
    payload["status_list"] = {
        "bits": status_list.bits,
        "lst": b64url_encode(status_list.compressed()),
    }
    return sign_compact_jws(
        payload,
        typ=STATUS_LIST_JWT_TYP,
        signer_key=signer_key,
        signer_certificate=signer_certificate,
        operation="sign-status-list",
    )


def _token_claims(
    status_list: StatusList,
    *,
    uri: str,
    iat: dt.datetime,
    exp: dt.datetime | None,
    ttl: int | None,
    issuer: str | None,
) -> dict[str, Any]:
    if not isinstance(status_list, StatusList):
        raise TypeError("status_list must be a StatusList")
    if not isinstance(uri, str) or not uri:
        raise StatusListError("the status list URI must be a non-empty string")
    _require_aware(iat, "iat")
    payload: dict[str, Any] = {"sub": uri, "iat": int(iat.timestamp())}
    if issuer is not None:
        payload["iss"] = issuer
    if exp is not None:
        _require_aware(exp, "exp")
        if exp <= iat:
            raise StatusListError("the status list must expire after it is issued")
        payload["exp"] = int(exp.timestamp())
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
            raise StatusListError("ttl is a positive number of seconds")
        payload["ttl"] = ttl
    return payload


def decode_and_verify_status_list(
    token: str,
    *,
    trust: SignerTrust,
    now: dt.datetime,
    expected_uri: str,
    expected_issuer: str | None = None,
    max_bytes: int = MAX_STATUS_LIST_BYTES,
) -> VerifiedStatusList:
    """Verify a status list token (JWT form) and return its list.

    InvalidStatusListError says what failed: signature, signer trust, `sub`, `iss`,
    times, or the list itself.
    """
    if not isinstance(token, str):
        raise TypeError("a status list token is a string")
    _require_aware(now, "now")
    if len(token) > _MAX_TOKEN_LENGTH or not token.isascii():
        raise InvalidStatusListError(
            "the status list token is too long or not base64url"
        )
    try:
        verified = verify_compact_jws(token, typ={STATUS_LIST_JWT_TYP}, trust=trust)
    except JoseError as exc:
        raise InvalidStatusListError(f"status list token: {exc}") from None
    claims = verified.payload
    status_list = claims.get("status_list")
    if not isinstance(status_list, Mapping):
        raise InvalidStatusListError("the status list token has no status_list object")
    lst = status_list.get("lst")
    if not isinstance(lst, str):
        raise InvalidStatusListError("status_list.lst is not a string")
    try:
        compressed = b64url_decode(lst, "status_list.lst")
    except ValueError:
        raise InvalidStatusListError("status_list.lst is not base64url") from None
    return _checked_list(
        _ListClaims(
            subject=claims.get("sub"),
            issuer=claims.get("iss"),
            issued_at=claims.get("iat"),
            expires_at=claims.get("exp"),
            ttl=claims.get("ttl"),
            bits=status_list.get("bits"),
            compressed=compressed,
        ),
        verified.signer,
        now=now,
        expected_uri=expected_uri,
        expected_issuer=expected_issuer,
        max_bytes=max_bytes,
    )


def encode_status_list_cwt(
    status_list: StatusList,
    *,
    uri: str,
    iat: dt.datetime,
    exp: dt.datetime | None,
    ttl: int | None,
    signer_key: ec.EllipticCurvePrivateKey,
    signer_certificate: x509.Certificate,
    issuer: str | None = None,
) -> bytes:
    """The status list token in CWT form (COSE_Sign1, ES256, typ statuslist+cwt).

    For offline verifiers that already read CBOR (the LC1 token); same claims as the
    JWT form under their CWT keys.
    """
    payload = _token_claims(
        status_list, uri=uri, iat=iat, exp=exp, ttl=ttl, issuer=issuer
    )
    claims: dict[int, Any] = {_CWT_SUB: payload["sub"], _CWT_IAT: payload["iat"]}
    for name, key in (("iss", _CWT_ISS), ("exp", _CWT_EXP), ("ttl", _CWT_TTL)):
        if name in payload:
            claims[key] = payload[name]
    claims[_CWT_STATUS_LIST] = {
        "bits": status_list.bits,
        "lst": status_list.compressed(),
    }
    check_signer_key(signer_key, signer_certificate)
    protected = encode_cbor(
        {
            HEADER_ALG: ALG_ES256,
            HEADER_KID: signer_kid(signer_certificate),
            _COSE_HEADER_TYP: "application/" + STATUS_LIST_CWT_TYP,
        }
    )
    body = encode_cbor(claims)
    with signing_context(operation="sign-status-list"):
        der = signer_key.sign(sig_structure(protected, body), ec.ECDSA(hashes.SHA256()))
    return assemble_sign1(protected, body, der_to_raw_ecdsa(der))


def decode_and_verify_status_list_cwt(
    token: bytes,
    *,
    trust: SignerTrust,
    now: dt.datetime,
    expected_uri: str,
    expected_issuer: str | None = None,
    max_bytes: int = MAX_STATUS_LIST_BYTES,
) -> VerifiedStatusList:
    """Verify a status list token in CWT form; the same checks as the JWT form."""
    if not isinstance(token, bytes):
        raise TypeError("a status list CWT is bytes")
    _require_aware(now, "now")
    limits = CborLimits(max_bytes=_MAX_TOKEN_LENGTH, max_depth=_MAX_CBOR_DEPTH)
    _check_cwt_shape(token)
    try:
        message = parse_sign1(token, limits=limits)
    except CoseError as exc:
        raise InvalidStatusListError(f"status list CWT: {exc}") from None
    if message.algorithm != ALG_ES256:
        raise InvalidStatusListError("status list CWT: the algorithm is not ES256")
    typ = message.protected.get(_COSE_HEADER_TYP)
    if (
        not isinstance(typ, str)
        or typ.removeprefix("application/") != STATUS_LIST_CWT_TYP
    ):
        raise InvalidStatusListError("status list CWT: the type is not statuslist+cwt")
    if message.kid is None:
        raise InvalidStatusListError("status list CWT: names no signer (no kid)")
    trusted = trust.signers_for_kid(message.kid)
    if not trusted:
        raise InvalidStatusListError("status list CWT: not a trusted document signer")
    signer = next((t for t in trusted if verify_sign1(message, t.public_key)), None)
    if signer is None:
        raise InvalidStatusListError("status list CWT: the signature does not verify")
    try:
        claims = decode_cbor(message.payload, limits=limits)
    except CborError as exc:
        raise InvalidStatusListError(f"status list CWT claims: {exc}") from None
    if type(claims) is not dict:
        raise InvalidStatusListError("status list CWT claims are not a map")
    status_list = claims.get(_CWT_STATUS_LIST)
    if type(status_list) is not dict:
        raise InvalidStatusListError("the status list token has no status_list object")
    compressed = status_list.get("lst")
    if not isinstance(compressed, bytes):
        raise InvalidStatusListError("status_list.lst is not a byte string")
    return _checked_list(
        _ListClaims(
            subject=claims.get(_CWT_SUB),
            issuer=claims.get(_CWT_ISS),
            issued_at=claims.get(_CWT_IAT),
            expires_at=claims.get(_CWT_EXP),
            ttl=claims.get(_CWT_TTL),
            bits=status_list.get("bits"),
            compressed=compressed,
        ),
        signer,
        now=now,
        expected_uri=expected_uri,
        expected_issuer=expected_issuer,
        max_bytes=max_bytes,
    )


def _check_cwt_shape(token: bytes) -> None:
    """Refuse, before anything is decoded, a COSE_Sign1 that is not four items whose
    headers are small and whose payload and signature are byte strings.

    All of it is decoded before the signature is checked, and the decoder builds a
    Python object per CBOR item: 8 MiB of `[[], [], ...]` would take over 500 MB.
    """

    def bad(what: str) -> InvalidStatusListError:
        return InvalidStatusListError(f"status list CWT: {what}")

    pos = 0
    for tag in (b"\xd8\x3d", b"\xd2"):  # CWT, COSE_Sign1 (parse_sign1 checks them)
        if token.startswith(tag, pos):
            pos += len(tag)
    if token[pos : pos + 1] != b"\x84":
        raise bad("not a COSE_Sign1 array of four items")
    pos += 1
    for item in ("protected header", "unprotected header", "payload", "signature"):
        if item == "unprotected header":
            pos = _cbor_item_end(token, pos, pos + _MAX_CWT_HEADER_BYTES, bad)
            continue
        major, length, pos = _cbor_head(token, pos, bad)
        if major != 2:
            raise bad(f"the {item} is not a byte string")
        if item == "protected header" and length > _MAX_CWT_HEADER_BYTES:
            raise bad("the protected header is too large")
        pos += length


def _cbor_head(data: bytes, pos: int, bad: Any) -> tuple[int, int, int]:
    """(major type, argument, position after the head) of the CBOR item at `pos`."""
    if pos >= len(data):
        raise bad("truncated")
    major, info = data[pos] >> 5, data[pos] & 0x1F
    pos += 1
    if info < 24:
        return major, info, pos
    if info > 27:  # indefinite lengths (refused by the decoder too) and reserved
        raise bad("not well-formed CBOR")
    size = 1 << (info - 24)
    if pos + size > len(data):
        raise bad("truncated")
    return major, int.from_bytes(data[pos : pos + size], "big"), pos + size


def _cbor_item_end(data: bytes, pos: int, limit: int, bad: Any) -> int:
    """Where the CBOR item at `pos` ends, walked without decoding; refused past `limit`."""
    pending = 1
    while pending:
        if pos >= limit:
            raise bad("a header is too large")
        major, argument, pos = _cbor_head(data, pos, bad)
        pending -= 1
        if major in (2, 3):
            pos += argument
        elif major == 4:
            pending += argument
        elif major == 5:
            pending += 2 * argument
        elif major == 6:
            pending += 1
    if pos > limit:
        raise bad("a header is too large")
    return pos


@dataclasses.dataclass(frozen=True)
class _ListClaims:
    """The claims of either token form, as received (unchecked)."""

    subject: Any
    issuer: Any
    issued_at: Any
    expires_at: Any
    ttl: Any
    bits: Any
    compressed: bytes


def _checked_list(
    claims: _ListClaims,
    signer: TrustedSigner,
    *,
    now: dt.datetime,
    expected_uri: str,
    expected_issuer: str | None,
    max_bytes: int,
) -> VerifiedStatusList:
    if claims.subject != expected_uri:
        raise InvalidStatusListError("the status list token is for another list (sub)")
    issuer = claims.issuer
    if issuer is not None and not isinstance(issuer, str):
        raise InvalidStatusListError("the status list token's iss is not a string")
    if expected_issuer is not None and issuer != expected_issuer:
        raise InvalidStatusListError(
            "the status list token has another issuer than the credential"
        )
    issued_at = _time_claim(claims.issued_at, "iat")
    if issued_at is None:
        raise InvalidStatusListError("the status list token has no iat")
    if signer.issuer is not None and issuer != signer.issuer:
        raise InvalidStatusListError(
            "the status list's signer is not trusted for its issuer"
        )
    if not signer.valid_from <= issued_at <= signer.valid_until:
        raise InvalidStatusListError(
            "the status list's signer was not valid when it was issued"
        )
    if issued_at > now + _CLOCK_SKEW:
        raise InvalidStatusListError("the status list token is issued in the future")
    # A list says how things stand now; its signer must still be trusted now, or a
    # withdrawn key could vouch for revoked licences with a backdated iat.
    if now > signer.valid_until:
        raise InvalidStatusListError(
            "the status list's signer is no longer valid (trusted until "
            f"{signer.valid_until:%Y-%m-%dT%H:%M:%SZ})"
        )
    expires_at = _time_claim(claims.expires_at, "exp")
    if expires_at is not None and now >= expires_at:
        raise InvalidStatusListError("the status list token has expired")
    ttl = claims.ttl
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0
    ):
        raise InvalidStatusListError(
            "the status list token's ttl is not a positive integer"
        )
    if ttl is not None:
        try:
            issued_at + dt.timedelta(seconds=ttl)
        except OverflowError:
            raise InvalidStatusListError(
                "the status list token's ttl is out of range"
            ) from None
    bits = claims.bits
    if type(bits) is not int or bits not in _ALLOWED_BITS:
        raise InvalidStatusListError("status_list.bits is not 1, 2, 4 or 8")
    data = _inflate(claims.compressed, max_bytes)
    return VerifiedStatusList(
        status_list=StatusList.from_bytes(data, bits),
        uri=expected_uri,
        issuer=issuer,
        issued_at=issued_at,
        expires_at=expires_at,
        ttl=ttl,
        signer=signer,
    )


def _inflate(compressed: bytes, max_bytes: int) -> bytes:
    """ZLIB-inflate into at most `max_bytes`; more output, trailing data or a cut stream is refused."""
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(compressed, max_bytes)
    except zlib.error:
        raise InvalidStatusListError("status_list.lst is not ZLIB-compressed") from None
    if inflater.unconsumed_tail:
        raise InvalidStatusListError("the status list inflates to more than allowed")
    if not inflater.eof:
        raise InvalidStatusListError("status_list.lst is a truncated ZLIB stream")
    if inflater.unused_data:
        raise InvalidStatusListError("status_list.lst has data after the ZLIB stream")
    if not data:
        raise InvalidStatusListError("the status list is empty")
    return data


def _time_claim(value: Any, name: str) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidStatusListError(
            f"the status list token's {name} is not a NumericDate"
        )
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidStatusListError(
            f"the status list token's {name} is out of range"
        ) from None


def _require_aware(moment: Any, name: str) -> None:
    if not isinstance(moment, dt.datetime) or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")
