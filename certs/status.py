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
`status_list: {bits, lst}`, signed ES256 by the document signer like the SD-JWT VC.
Verification checks the signature against the trusted signers first and only then
inflates `lst`, into at most `max_bytes` (a zlib bomb is refused, not expanded).

Indexes: the draft's privacy considerations advise against sequential allocation (a
verifier could learn the issuance order, and neighbouring indexes correlate); use
`allocate_index` for a uniformly random free index, and let each list be large enough
(the default 2^17 entries is 32 KiB uncompressed) that one licence hides in the herd.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import secrets
import zlib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from certs.errors import (
    InvalidStatusListError,
    JoseError,
    StatusListError,
    StatusListFullError,
)
from certs.sdjwt import b64url_decode, sign_compact_jws, verify_compact_jws
from certs.token import SignerTrust, TrustedSigner

__all__ = [
    "DEFAULT_LIST_SIZE",
    "MAX_STATUS_LIST_BYTES",
    "STATUS_LIST_JWT_TYP",
    "StatusList",
    "StatusType",
    "VerifiedStatusList",
    "allocate_index",
    "decode_and_verify_status_list",
    "encode_status_list_jwt",
    "status_of",
]

STATUS_LIST_JWT_TYP = "statuslist+jwt"
DEFAULT_LIST_SIZE = 1 << 17
MAX_STATUS_LIST_BYTES = 4 * 1024 * 1024  # 16 M licences at 2 bits
_MAX_TOKEN_LENGTH = 8 * 1024 * 1024
_ALLOWED_BITS = (1, 2, 4, 8)
_CLOCK_SKEW = dt.timedelta(seconds=60)
_RANDOM_TRIES = 64


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
    payload["status_list"] = {
        "bits": status_list.bits,
        "lst": base64.urlsafe_b64encode(status_list.compressed())
        .rstrip(b"=")
        .decode("ascii"),
    }
    return sign_compact_jws(
        payload,
        typ=STATUS_LIST_JWT_TYP,
        signer_key=signer_key,
        signer_certificate=signer_certificate,
        operation="sign-status-list",
    )


def decode_and_verify_status_list(
    token: str,
    *,
    trust: SignerTrust,
    now: dt.datetime,
    expected_uri: str,
    expected_issuer: str | None = None,
    max_bytes: int = MAX_STATUS_LIST_BYTES,
) -> VerifiedStatusList:
    """Verify a status list token and return its list; InvalidStatusListError says what failed."""
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
    if claims.get("sub") != expected_uri:
        raise InvalidStatusListError("the status list token is for another list (sub)")
    issuer = claims.get("iss")
    if issuer is not None and not isinstance(issuer, str):
        raise InvalidStatusListError("the status list token's iss is not a string")
    if expected_issuer is not None and issuer != expected_issuer:
        raise InvalidStatusListError(
            "the status list token has another issuer than the credential"
        )
    issued_at = _time_claim(claims, "iat")
    if issued_at is None:
        raise InvalidStatusListError("the status list token has no iat")
    signer = verified.signer
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
    expires_at = _time_claim(claims, "exp")
    if expires_at is not None and now >= expires_at:
        raise InvalidStatusListError("the status list token has expired")
    ttl = claims.get("ttl")
    if ttl is not None and (
        isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0
    ):
        raise InvalidStatusListError(
            "the status list token's ttl is not a positive integer"
        )
    status_list = _read_status_list(claims.get("status_list"), max_bytes)
    return VerifiedStatusList(
        status_list=status_list,
        uri=expected_uri,
        issuer=issuer,
        issued_at=issued_at,
        expires_at=expires_at,
        ttl=ttl,
        signer=verified.signer,
    )


def _read_status_list(value: Any, max_bytes: int) -> StatusList:
    if not isinstance(value, Mapping):
        raise InvalidStatusListError("the status list token has no status_list object")
    bits, lst = value.get("bits"), value.get("lst")
    if isinstance(bits, bool) or bits not in _ALLOWED_BITS:
        raise InvalidStatusListError("status_list.bits is not 1, 2, 4 or 8")
    if not isinstance(lst, str):
        raise InvalidStatusListError("status_list.lst is not a string")
    try:
        compressed = b64url_decode(lst, "status_list.lst")
    except ValueError:
        raise InvalidStatusListError("status_list.lst is not base64url") from None
    data = _inflate(compressed, max_bytes)
    return StatusList.from_bytes(data, bits)


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


def _time_claim(claims: Mapping[str, Any], name: str) -> dt.datetime | None:
    value = claims.get(name)
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
