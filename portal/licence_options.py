"""What the licence commands and the licence API read from their callers, checked the
same way in both: usage-code lifetimes, holder keys, field lists and licence data.

    parse_ttl("10m")                  -> timedelta(minutes=10)
    holder_public_key(pem_or_jwk)     -> the P-256 public key to bind an SD-JWT to
    holder_private_key(pem)           -> the holder's key, to sign a key-binding JWT
    parse_field_list("name, level")   -> ("name", "level")
    parse_licence_data(json_bytes)    -> the JSON object of field names and values

Every refusal is a LicenceOptionError (400 / exit 2) saying what is wrong, never
echoing a key or the data; JSON nested too deeply is a JsonTooDeepError (the same
400 / exit 2).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hsm_sim.errors import ErrorCategory
from portal.json_input import load_json

__all__ = [
    "MAX_DATA_BYTES",
    "MAX_FIELDS",
    "MAX_KEY_BYTES",
    "LicenceOptionError",
    "holder_private_key",
    "holder_public_key",
    "holder_public_key_from_jwk",
    "parse_field_list",
    "parse_licence_data",
    "parse_ttl",
]

MAX_DATA_BYTES = 256 * 1024  # a licence's data: a few KiB; room for long scopes
MAX_KEY_BYTES = 16 * 1024
MAX_FIELDS = 64
_TTL = re.compile(r"([1-9][0-9]{0,6})([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
_P256_COORDINATE_BYTES = 32


class LicenceOptionError(ValueError):
    """An option or request field of a licence command that cannot be used as given."""

    category = ErrorCategory.BAD_REQUEST


def parse_ttl(text: object) -> dt.timedelta:
    """A lifetime written as a number and a unit: 30s, 10m, 2h, 1d (or whole seconds
    as a JSON number)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 1:
            raise LicenceOptionError("the lifetime must be positive")
        return dt.timedelta(seconds=text)
    if not isinstance(text, str):
        raise LicenceOptionError(
            "the lifetime is a number and a unit (30s, 10m, 2h, 1d) or whole seconds"
        )
    match = _TTL.fullmatch(text.strip().lower())
    if match is None:
        raise LicenceOptionError(
            f"the lifetime {text.strip()[:20]!r} is not a number and a unit: "
            "30s, 10m, 2h or 1d"
        )
    return dt.timedelta(**{_UNITS[match[2]]: int(match[1])})


def parse_field_list(text: str) -> tuple[str, ...]:
    """Field names separated by commas (spaces ignored), each once, in order."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise LicenceOptionError("name at least one field to disclose")
    if len(names) > MAX_FIELDS:
        raise LicenceOptionError(f"at most {MAX_FIELDS} fields")
    for name in names:
        if not _FIELD_NAME.fullmatch(name):
            raise LicenceOptionError(
                f"{name[:40]!r} is not a field name (lower-case letters, digits and _)"
            )
    return tuple(dict.fromkeys(names))


def parse_licence_data(raw: bytes, *, source: str) -> dict[str, Any]:
    """The JSON object in `raw` (UTF-8); `source` names it in the refusal."""
    if len(raw) > MAX_DATA_BYTES:
        raise LicenceOptionError(
            f"{source} is larger than {MAX_DATA_BYTES // 1024} KiB, the most accepted"
        )
    try:
        document = load_json(raw.decode("utf-8-sig"), source=source)
    except UnicodeDecodeError:
        raise LicenceOptionError(f"{source} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise LicenceOptionError(
            f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column "
            f"{exc.colno}"
        ) from None
    if not isinstance(document, dict):
        raise LicenceOptionError(
            f"{source} must hold one JSON object of field names and values"
        )
    return document


def _p256(key: object, what: str) -> None:
    curve = getattr(key, "curve", None)
    if not isinstance(
        key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey
    ) or not isinstance(curve, ec.SECP256R1):
        raise LicenceOptionError(f"{what} is not an EC P-256 key (holder keys are)")


def holder_public_key(data: bytes, *, source: str) -> ec.EllipticCurvePublicKey:
    """The P-256 public key in a PEM file (public or private key) or a JWK (JSON)."""
    if len(data) > MAX_KEY_BYTES:
        raise LicenceOptionError(f"{source} is too large for a key file")
    text = data.strip()
    if text.startswith(b"{"):
        try:
            jwk = load_json(text.decode("utf-8"), source=source)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise LicenceOptionError(f"{source} is not a JWK (JSON)") from None
        return holder_public_key_from_jwk(jwk, source=source)
    if b"PRIVATE KEY" in text:
        return holder_private_key(data, source=source).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise LicenceOptionError(
            f"{source} holds no public key (PEM) or JWK; give the holder's P-256 key"
        ) from None
    _p256(key, source)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def holder_private_key(data: bytes, *, source: str) -> ec.EllipticCurvePrivateKey:
    """The holder's P-256 private key from an unencrypted PEM file."""
    if len(data) > MAX_KEY_BYTES:
        raise LicenceOptionError(f"{source} is too large for a key file")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise LicenceOptionError(
            f"{source} is encrypted; give the holder's key without a password"
        ) from None
    except (ValueError, binascii.Error):
        raise LicenceOptionError(
            f"{source} holds no private key (PEM); give the holder's P-256 key"
        ) from None
    _p256(key, source)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _coordinate(jwk: Mapping[str, Any], name: str, source: str) -> int:
    value = jwk.get(name)
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_-]{43}", value):
        raise LicenceOptionError(
            f"{source}: {name} must be the 32-byte coordinate in base64url"
        )
    raw = base64.urlsafe_b64decode(value + "=")
    if len(raw) != _P256_COORDINATE_BYTES:
        raise LicenceOptionError(
            f"{source}: {name} must be the 32-byte coordinate in base64url"
        )
    return int.from_bytes(raw, "big")


def holder_public_key_from_jwk(
    jwk: object, *, source: str = "the holder's JWK"
) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a JWK (RFC 7517: kty EC, crv P-256, x, y); a JWK with a
    private part (d) is refused, so a holder never sends their key by mistake."""
    if not isinstance(jwk, dict):
        raise LicenceOptionError(f"{source} must be a JSON object (a JWK)")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise LicenceOptionError(
            f"{source} must be an EC P-256 key (kty EC, crv P-256)"
        )
    if "d" in jwk:
        raise LicenceOptionError(
            f"{source} holds a private key (d); send only the public key"
        )
    numbers = ec.EllipticCurvePublicNumbers(
        _coordinate(jwk, "x", source), _coordinate(jwk, "y", source), ec.SECP256R1()
    )
    try:
        return numbers.public_key()
    except ValueError:
        raise LicenceOptionError(f"{source} is not a point on P-256") from None
