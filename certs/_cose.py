"""COSE_Sign1 (RFC 9052) for QR tokens: build, parse strictly, verify ES256 and PS256.

Header rules (the DCC's, made strict where the DCC does not need leniency):
- `alg` must sit in the protected header; an `alg` in the unprotected header is
  refused, even when it repeats the protected one, because nothing signs it.
- `kid` is read from the protected header; only when that has none is the
  unprotected `kid` used (the DCC allows it there). A kid only chooses which trusted
  signers to try, so an unprotected one cannot make a forged token pass.
- A `crit` header is refused: we understand no critical extension.
The message may carry tag 18 (COSE_Sign1), optionally inside tag 61 (CWT); no other
tag is accepted anywhere in the structure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from ._cbor import CborError, CborLimits, decode_cbor, encode_cbor

__all__ = [
    "ALGORITHM_NAMES",
    "ALG_ES256",
    "ALG_PS256",
    "HEADER_ALG",
    "HEADER_KID",
    "CoseError",
    "CoseSign1",
    "assemble_sign1",
    "der_to_raw_ecdsa",
    "parse_sign1",
    "protected_header",
    "sig_structure",
    "verify_sign1",
]

HEADER_ALG = 1
HEADER_CRIT = 2
HEADER_KID = 4
ALG_ES256 = -7
ALG_PS256 = -37
ALGORITHM_NAMES = {ALG_ES256: "ES256", ALG_PS256: "PS256"}
TAG_COSE_SIGN1 = 18
TAG_CWT = 61
# Tags are stripped by hand, in their shortest encodings, so the decoder can refuse
# every tag inside the structure.
_CWT_TAG_PREFIX = b"\xd8\x3d"
_SIGN1_TAG_PREFIX = b"\xd2"
_P256_COORDINATE_BYTES = 32
_MIN_RSA_BITS = 2048
_SHA256 = hashes.SHA256()
_ECDSA_SHA256 = ec.ECDSA(_SHA256)
_PSS_SHA256 = padding.PSS(
    mgf=padding.MGF1(_SHA256), salt_length=padding.PSS.DIGEST_LENGTH
)
# Every token of one document signer carries the same protected header: decode each
# distinct one once. Bounded, so hostile headers cannot grow it.
_PROTECTED_CACHE: dict[tuple[CborLimits, bytes], Mapping[Any, Any]] = {}
_PROTECTED_CACHE_SIZE = 256


class CoseError(ValueError):
    """Not a COSE_Sign1 message we accept; the message says why."""


@dataclasses.dataclass(frozen=True)
class CoseSign1:
    """A parsed COSE_Sign1; `protected_bytes` is kept as received, for the signature."""

    protected_bytes: bytes
    protected: Mapping[Any, Any]
    unprotected: Mapping[Any, Any]
    payload: bytes
    signature: bytes
    algorithm: int
    kid: bytes | None
    kid_protected: bool

    @property
    def algorithm_name(self) -> str:
        return ALGORITHM_NAMES[self.algorithm]


def protected_header(algorithm: int, kid: bytes) -> bytes:
    return encode_cbor({HEADER_ALG: algorithm, HEADER_KID: kid})


def sig_structure(protected_bytes: bytes, payload: bytes) -> bytes:
    """The bytes a COSE_Sign1 signature covers (RFC 9052 §4.4), no external data.

    An array of strings has one encoding, so cbor2's plain (faster) encoder suffices.
    """
    return cbor2.dumps(["Signature1", protected_bytes, b"", payload])


def assemble_sign1(
    protected_bytes: bytes,
    payload: bytes,
    signature: bytes,
    *,
    unprotected: Mapping[Any, Any] | None = None,
) -> bytes:
    """A tagged COSE_Sign1 message."""
    body = encode_cbor([protected_bytes, dict(unprotected or {}), payload, signature])
    return _SIGN1_TAG_PREFIX + body


def der_to_raw_ecdsa(der_signature: bytes) -> bytes:
    """An ECDSA P-256 signature as COSE wants it: r and s, 32 bytes each."""
    r, s = decode_dss_signature(der_signature)
    return r.to_bytes(_P256_COORDINATE_BYTES, "big") + s.to_bytes(
        _P256_COORDINATE_BYTES, "big"
    )


def parse_sign1(data: bytes, *, limits: CborLimits) -> CoseSign1:
    """The COSE_Sign1 in `data`; CoseError for anything the rules above refuse."""
    body = data
    if body.startswith(_CWT_TAG_PREFIX):
        body = body[len(_CWT_TAG_PREFIX) :]
        if not body.startswith(_SIGN1_TAG_PREFIX):
            raise CoseError("CWT tag 61 does not wrap a tagged COSE_Sign1")
    body = body.removeprefix(_SIGN1_TAG_PREFIX)
    try:
        message = decode_cbor(body, limits=limits)
    except CborError as exc:
        raise CoseError(f"COSE_Sign1: {exc}") from None
    if type(message) is not list or len(message) != 4:
        raise CoseError("COSE_Sign1 must be an array of four items")
    protected_bytes, unprotected, payload, signature = message
    if not isinstance(protected_bytes, bytes):
        raise CoseError("protected header must be a byte string")
    if type(unprotected) is not dict:
        raise CoseError("unprotected header must be a map")
    if payload is None:
        raise CoseError("detached payloads are not supported")
    if not isinstance(payload, bytes):
        raise CoseError("payload must be a byte string")
    if not isinstance(signature, bytes):
        raise CoseError("signature must be a byte string")
    protected = _decode_protected(protected_bytes, limits)
    if HEADER_CRIT in protected or HEADER_CRIT in unprotected:
        raise CoseError("critical header parameters are not supported")
    if HEADER_ALG in unprotected:
        raise CoseError("alg must be in the protected header, not the unprotected one")
    if HEADER_ALG not in protected:
        raise CoseError("protected header has no alg")
    algorithm = protected[HEADER_ALG]
    if type(algorithm) is not int or algorithm not in ALGORITHM_NAMES:
        raise CoseError(f"unsupported signature algorithm {_short_repr(algorithm)}")
    if HEADER_KID in protected:
        kid, kid_protected = protected[HEADER_KID], True
    else:
        kid, kid_protected = unprotected.get(HEADER_KID), False
    if kid is not None and not isinstance(kid, bytes):
        raise CoseError("kid must be a byte string")
    return CoseSign1(
        protected_bytes=protected_bytes,
        protected=protected,
        unprotected=unprotected,
        payload=payload,
        signature=signature,
        algorithm=algorithm,
        kid=kid,
        kid_protected=kid_protected,
    )


def _decode_protected(protected_bytes: bytes, limits: CborLimits) -> Mapping[Any, Any]:
    cached = _PROTECTED_CACHE.get((limits, protected_bytes))
    if cached is not None:
        return cached
    if not protected_bytes:
        return MappingProxyType({})
    try:
        protected = decode_cbor(protected_bytes, limits=limits)
    except CborError as exc:
        raise CoseError(f"protected header: {exc}") from None
    if type(protected) is not dict:
        raise CoseError("protected header must encode a map")
    if len(_PROTECTED_CACHE) >= _PROTECTED_CACHE_SIZE:
        _PROTECTED_CACHE.clear()
    frozen = _PROTECTED_CACHE[limits, protected_bytes] = MappingProxyType(protected)
    return frozen


def verify_sign1(message: CoseSign1, public_key: object) -> bool:
    """Whether `public_key` made the signature; False also when the key cannot do `alg`."""
    to_be_signed = sig_structure(message.protected_bytes, message.payload)
    try:
        if message.algorithm == ALG_ES256:
            if not (
                isinstance(public_key, ec.EllipticCurvePublicKey)
                and isinstance(public_key.curve, ec.SECP256R1)
                and len(message.signature) == 2 * _P256_COORDINATE_BYTES
            ):
                return False
            r = int.from_bytes(message.signature[:_P256_COORDINATE_BYTES], "big")
            s = int.from_bytes(message.signature[_P256_COORDINATE_BYTES:], "big")
            public_key.verify(encode_dss_signature(r, s), to_be_signed, _ECDSA_SHA256)
            return True
        if message.algorithm == ALG_PS256:
            if not (
                isinstance(public_key, rsa.RSAPublicKey)
                and public_key.key_size >= _MIN_RSA_BITS
            ):
                return False
            public_key.verify(
                message.signature,
                to_be_signed,
                _PSS_SHA256,
                _SHA256,
            )
            return True
    except InvalidSignature:
        return False
    return False


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
