"""SD-JWT VC: licences the holder discloses field by field (RFC 9901, draft-ietf-oauth-sd-jwt-vc).

    credential = issue_sd_jwt(claims, disclosable={"address", "capital"}, always={"id", "name"},
                              vct="urn:yinxin:licence:B01", issuer=ISSUER, iat=now, exp=later,
                              status={"idx": 7, "uri": LIST_URI}, cnf_jwk=public_jwk(holder_pub),
                              signer_key=handle, signer_certificate=dsc)
    shown = present(credential, disclose=["address"], holder_key=holder, nonce=n, aud=verifier)
    result = verify_presentation(shown, trust=trust, now=now, expected_nonce=n, expected_aud=verifier)
    result.verdict, result.reason, result.fields

Issuance: every field the licence type marks disclosable becomes a disclosure
`[salt, name, value]` (128-bit salt from `secrets`) whose SHA-256 digest sits in the
issuer-signed JWT's `_sd`; every other field is in clear. The JWT is typ `dc+sd-jwt`
(the current SD-JWT VC media type; `vc+sd-jwt` of older drafts is accepted when
verifying), signed ES256 by the region's document signer through its key handle — the
handle gives DER, JOSE wants the raw 64-byte r‖s, so the JWS is assembled here rather
than by a JOSE library (none takes a foreign signer without wrapping the private key).
The header carries `kid` (base64url of the first 8 bytes of SHA-256 over the signer
certificate, the LC1 rule) and `x5c` (the signer certificate, for outside verifiers).

Verification trusts only the signers the trust store returns for the `kid`, never the
`x5c` in the header, and answers with a frozen result; hostile input never raises.
Signer and dates follow the LC1 token's rules (`certs.token.check_validity`): `iat` and
`exp` are required, the signer must be trusted for `iss`, valid at `iat` and until
`exp`. Rejected: a JWT that is not ES256 (none, HS256, anything else), a wrong `typ`, a
`crit` header, a bad signature or non-canonical signature encoding; a disclosure whose digest is not in an `_sd` (or `...`) of the
payload, a digest or disclosure that appears twice, a disclosure overwriting a claim in
clear or naming a claim SD-JWT VC forbids to disclose (iss, exp, cnf, status, ...), bad
salt or shape, `_sd_alg` other than sha-256; a key-binding JWT with the wrong typ,
signature, nonce, audience, `sd_hash` or a stale or future `iat`; an expired or
not-yet-valid credential. Sizes are bounded (length, disclosures, JSON depth).

The JWS helpers at the end (`sign_compact_jws`, `verify_compact_jws`) are shared with the
status-list module: both sign and verify the same way.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import Encoding

from certs.errors import (
    DisclosureNotFoundError,
    JoseError,
    JoseSignatureError,
    MalformedJoseError,
    SdJwtError,
    TokenSignerError,
    UntrustedJoseSignerError,
)
from certs.token import (
    SignerTrust,
    StatusReference,
    TokenClaims,
    TrustedSigner,
    check_validity,
    signer_kid,
)
from certs.verdict import Verdict
from hsm_sim.api import signing_context

__all__ = [
    "MAX_DISCLOSURES",
    "MAX_PRESENTATION_LENGTH",
    "SD_JWT_VC_TYP",
    "HolderKeyRequiredError",
    "PresentationVerification",
    "StatusLookup",
    "VerifiedJws",
    "b64url_decode",
    "b64url_encode",
    "check_signer_key",
    "credential_holder_key",
    "issue_sd_jwt",
    "present",
    "public_jwk",
    "sign_compact_jws",
    "verify_compact_jws",
    "verify_presentation",
]

SD_JWT_VC_TYP = "dc+sd-jwt"
_ACCEPTED_SD_JWT_TYPS = frozenset({"dc+sd-jwt", "vc+sd-jwt"})
_KB_JWT_TYP = "kb+jwt"
_SD_ALG = "sha-256"

MAX_PRESENTATION_LENGTH = 64 * 1024
MAX_DISCLOSURES = 256
_MAX_JSON_DEPTH = 32
_MAX_SALT_LENGTH = 256
_MIN_SALT_BYTES = 16  # 128 bits (RFC 9901 §9.3)
_DIGEST_LENGTH = 43  # base64url of 32 bytes
_CLOCK_SKEW = dt.timedelta(seconds=60)
_DEFAULT_KB_MAX_AGE = dt.timedelta(minutes=5)

# No disclosure may name an SD-JWT control member (RFC 9901 §4.2.1) ...
_CONTROL_NAMES = frozenset({"_sd", "..."})
# ... and SD-JWT VC forbids making these top-level claims selectively disclosable.
_NEVER_DISCLOSED = frozenset(
    {"iss", "nbf", "exp", "cnf", "vct", "vct#integrity", "status", "_sd_alg"}
)
# Claims that describe the credential rather than the licence: not in `fields`.
_ENVELOPE_CLAIMS = frozenset(
    {"iss", "iat", "nbf", "exp", "cnf", "vct", "vct#integrity", "status", "_sd_alg"}
)

# Token Status List status types (draft-ietf-oauth-status-list §7.1).
_STATUS_VALID = 0x00
_STATUS_INVALID = 0x01
_STATUS_SUSPENDED = 0x02

_B64URL_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
_B64URL_VALUES = {
    character: value
    for value, character in enumerate(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
}
_P256_ORDER_BYTES = 32


# The status type at a reference (0 valid, 1 invalid, 2 suspended, as in the Token
# Status List draft), from a status list the caller fetched and verified.
StatusLookup = Callable[[StatusReference], int]


@dataclasses.dataclass(frozen=True)
class PresentationVerification:
    """What a verifier learns from a presentation; `fields` is empty unless it was authentic."""

    verdict: Verdict
    reason: str
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    disclosed: frozenset[str] = frozenset()
    issuer: str | None = None
    vct: str | None = None
    issued_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    status: StatusReference | None = None
    key_bound: bool = False
    signer: TrustedSigner | None = None

    @property
    def valid(self) -> bool:
        return self.verdict is Verdict.VALID


class HolderKeyRequiredError(SdJwtError):
    """The credential is bound to its holder's key: presenting it needs that key (a
    presentation without key binding is refused by verifiers)."""


class _Rejected(Exception):
    """Internal: stop verification with this verdict and reason."""

    def __init__(self, verdict: Verdict, reason: str) -> None:
        super().__init__(reason)
        self.verdict = verdict
        self.reason = reason


# ---------------------------------------------------------------------------
# Issuing and presenting


def issue_sd_jwt(
    claims: Mapping[str, Any],
    *,
    disclosable: AbstractSet[str],
    always: AbstractSet[str],
    vct: str,
    issuer: str,
    iat: dt.datetime,
    exp: dt.datetime,
    status: StatusReference | Mapping[str, Any] | None,
    signer_key: ec.EllipticCurvePrivateKey,
    signer_certificate: x509.Certificate,
    cnf_jwk: Mapping[str, Any] | None = None,
    decoy_digests: int = 0,
) -> str:
    """The SD-JWT VC in issuance form: `<issuer JWT>~<disclosure>~...~`."""
    check_signer_key(signer_key, signer_certificate)
    _check_issue_request(
        claims, disclosable, always, vct, issuer, iat, exp, decoy_digests
    )
    # Verifiers refuse credentials their signer was not valid for (certs.token rules).
    if not (
        signer_certificate.not_valid_before_utc
        <= iat
        <= exp
        <= signer_certificate.not_valid_after_utc
    ):
        raise SdJwtError(
            "the credential's iat..exp must lie within the document signer's validity"
        )
    payload: dict[str, Any] = {name: claims[name] for name in claims if name in always}
    disclosures: list[str] = []
    digests: list[str] = []
    for name in claims:
        if name in disclosable:
            disclosure = _encode_disclosure(_new_salt(), name, claims[name])
            disclosures.append(disclosure)
            digests.append(_digest(disclosure))
    digests.extend(_digest(_new_salt()) for _ in range(decoy_digests))
    if digests:
        # Sorted so that the order of the digests says nothing about the fields.
        payload["_sd"] = sorted(digests)
    payload["_sd_alg"] = _SD_ALG
    payload.update(
        {
            "iss": issuer,
            "iat": _numeric_date(iat),
            "exp": _numeric_date(exp),
            "vct": vct,
        }
    )
    if status is not None:
        reference = (
            status
            if isinstance(status, StatusReference)
            else _status_from_mapping(status)
        )
        payload["status"] = {
            "status_list": {"idx": reference.index, "uri": reference.uri}
        }
    if cnf_jwk is not None:
        try:
            _public_key_from_jwk(cnf_jwk, what="the holder key")
        except _Rejected as rejected:
            raise SdJwtError(rejected.reason) from None
        payload["cnf"] = {"jwk": dict(cnf_jwk)}
    jwt = sign_compact_jws(
        payload,
        typ=SD_JWT_VC_TYP,
        signer_key=signer_key,
        signer_certificate=signer_certificate,
        operation="sign-sd-jwt-vc",
    )
    return "~".join([jwt, *disclosures, ""])


def present(
    sd_jwt: str,
    *,
    disclose: Iterable[str],
    holder_key: ec.EllipticCurvePrivateKey | None = None,
    nonce: str | None = None,
    aud: str | None = None,
    now: dt.datetime | None = None,
) -> str:
    """A presentation with only the named fields disclosed; key-bound when a holder key is given.

    A named field is disclosed with every disclosure nested inside its value.
    """
    wanted = list(disclose)
    if any(not isinstance(name, str) for name in wanted):
        raise TypeError("disclose names fields by string")
    parts = sd_jwt.split("~") if isinstance(sd_jwt, str) else []
    if len(parts) < 2 or parts[-1] != "":
        raise SdJwtError("not an SD-JWT in issuance form (JWT~disclosures~)")
    jwt, disclosures = parts[0], parts[1:-1]
    try:
        payload = _decode_jws_payload(jwt)
        by_digest = {_digest(d): (d, _decode_disclosure(d)) for d in disclosures}
    except _Rejected as rejected:
        raise SdJwtError(f"the credential is malformed: {rejected.reason}") from None
    by_name = {}
    for digest in _digest_list(payload.get("_sd", [])):
        if digest in by_digest and len(by_digest[digest][1]) == 3:
            by_name[by_digest[digest][1][1]] = digest
    missing = sorted(set(wanted) - set(by_name))
    if missing:
        raise DisclosureNotFoundError(
            "the credential has no selectively disclosable field named "
            + ", ".join(missing)
        )
    chosen: list[str] = []
    for name in dict.fromkeys(wanted):
        _collect_disclosures(by_name[name], by_digest, chosen)
    presented = "~".join([jwt, *chosen, ""])
    if holder_key is None:
        if nonce is not None or aud is not None:
            raise SdJwtError("a nonce and an audience need a holder key to bind them")
        return presented
    if not nonce or not aud:
        raise SdJwtError("key binding needs both a nonce and an audience")
    _check_holder_key(payload, holder_key)
    moment = now if now is not None else dt.datetime.now(dt.UTC)
    _require_aware(moment, "now")
    kb_payload = {
        "iat": _numeric_date(moment),
        "aud": aud,
        "nonce": nonce,
        "sd_hash": _digest(presented),
    }
    header = {"alg": "ES256", "typ": _KB_JWT_TYP}
    return presented + _sign_jws(header, kb_payload, holder_key, "sign-kb-jwt")


def credential_holder_key(sd_jwt: str) -> ec.EllipticCurvePublicKey | None:
    """The holder key (`cnf.jwk`) a credential is bound to, None when it is unbound.

    Read from the issuer-signed JWT (issuance or presentation form) without verifying
    it: for the issuer's own stored copy, never for a credential someone presents.
    SdJwtError when it cannot be read.
    """
    jwt = sd_jwt.split("~", 1)[0] if isinstance(sd_jwt, str) else ""
    try:
        return _holder_key(_decode_jws_payload(jwt))
    except _Rejected as rejected:
        raise SdJwtError(f"the credential is malformed: {rejected.reason}") from None


def public_jwk(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The JWK (RFC 7517) of a P-256 public key, for `cnf`."""
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise TypeError("holder keys are EC P-256")
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url_encode(numbers.x.to_bytes(32, "big")),
        "y": b64url_encode(numbers.y.to_bytes(32, "big")),
    }


def _check_issue_request(
    claims: Mapping[str, Any],
    disclosable: AbstractSet[str],
    always: AbstractSet[str],
    vct: str,
    issuer: str,
    iat: dt.datetime,
    exp: dt.datetime,
    decoy_digests: int,
) -> None:
    if not isinstance(claims, Mapping):
        raise TypeError("claims must be a mapping")
    names = set(claims)
    if any(not isinstance(name, str) for name in names):
        raise SdJwtError("claim names must be strings")
    both = sorted(disclosable & always)
    if both:
        raise SdJwtError("fields both disclosable and always shown: " + ", ".join(both))
    unplaced = sorted(names - disclosable - always)
    if unplaced:
        raise SdJwtError(
            "fields neither disclosable nor always shown: " + ", ".join(unplaced)
        )
    reserved = sorted(names & (_CONTROL_NAMES | _NEVER_DISCLOSED | _ENVELOPE_CLAIMS))
    if reserved:
        raise SdJwtError(
            "claim names reserved for the credential envelope: " + ", ".join(reserved)
        )
    if not isinstance(vct, str) or not vct or not isinstance(issuer, str) or not issuer:
        raise SdJwtError("vct and issuer must be non-empty strings")
    _require_aware(iat, "iat")
    _require_aware(exp, "exp")
    if exp <= iat:
        raise SdJwtError("the credential must expire after it is issued")
    if isinstance(decoy_digests, bool) or not isinstance(decoy_digests, int):
        raise TypeError("decoy_digests must be an integer")
    if not 0 <= decoy_digests <= 64:
        raise SdJwtError("between 0 and 64 decoy digests")
    try:
        json.dumps(dict(claims), allow_nan=False)
    except (TypeError, ValueError):
        raise SdJwtError(
            "claim values must be JSON (strings, numbers, booleans, lists, objects)"
        ) from None


def _status_from_mapping(status: Mapping[str, Any]) -> StatusReference:
    if set(status) != {"idx", "uri"}:
        raise SdJwtError("status is {idx, uri}")
    try:
        return StatusReference(index=status["idx"], uri=status["uri"])
    except ValueError as exc:
        raise SdJwtError(str(exc)) from None


def _new_salt() -> str:
    return b64url_encode(secrets.token_bytes(_MIN_SALT_BYTES))


def _encode_disclosure(salt: str, name: str, value: Any) -> str:
    text = json.dumps([salt, name, value], ensure_ascii=False, separators=(",", ":"))
    return b64url_encode(text.encode("utf-8"))


def _collect_disclosures(
    digest: str, by_digest: Mapping[str, tuple[str, list[Any]]], chosen: list[str]
) -> None:
    disclosure, decoded = by_digest[digest]
    if disclosure in chosen:
        return
    chosen.append(disclosure)
    pending = [decoded[-1]]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            nested = _digest_list(value.get("_sd", []))
            if set(value) == {"..."} and isinstance(value["..."], str):
                nested.append(value["..."])
            for inner in nested:
                if inner in by_digest:
                    _collect_disclosures(inner, by_digest, chosen)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)


def _digest_list(value: Any) -> list[str]:
    return (
        [item for item in value if isinstance(item, str)]
        if isinstance(value, list)
        else []
    )


def _check_holder_key(
    payload: Mapping[str, Any], holder_key: ec.EllipticCurvePrivateKey
) -> None:
    cnf = payload.get("cnf")
    if not isinstance(cnf, dict) or "jwk" not in cnf:
        raise SdJwtError("the credential is not bound to a holder key (no cnf.jwk)")
    try:
        bound = _public_key_from_jwk(cnf["jwk"], what="cnf.jwk")
    except _Rejected as rejected:
        raise SdJwtError(rejected.reason) from None
    if bound.public_numbers() != holder_key.public_key().public_numbers():
        raise SdJwtError("the holder key is not the key the credential is bound to")


# ---------------------------------------------------------------------------
# Verifying


def verify_presentation(
    presentation: str,
    *,
    trust: SignerTrust,
    now: dt.datetime,
    expected_nonce: str | None = None,
    expected_aud: str | None = None,
    require_key_binding: bool = False,
    status_lookup: StatusLookup | None = None,
    kb_max_age: dt.timedelta = _DEFAULT_KB_MAX_AGE,
) -> PresentationVerification:
    """Verify an SD-JWT VC presentation; hostile input gives a verdict with a reason, not an exception.

    A credential bound to a holder key (`cnf`) is accepted only with a key-binding JWT;
    `require_key_binding` demands one of every credential. A key-binding JWT, when
    present, is always verified; its nonce and audience are compared when expected
    values are given (both are required with `require_key_binding`). `status_lookup` answers the status type at the credential's
    status reference; errors it raises (list unavailable, untrusted) propagate.
    """
    if not isinstance(presentation, str):
        raise TypeError("a presentation is a string")
    _require_aware(now, "now")
    if require_key_binding and (expected_nonce is None or expected_aud is None):
        raise ValueError(
            "key binding is checked against an expected nonce and audience"
        )
    try:
        return _verify(
            presentation,
            trust=trust,
            now=now,
            expected_nonce=expected_nonce,
            expected_aud=expected_aud,
            require_key_binding=require_key_binding,
            status_lookup=status_lookup,
            kb_max_age=kb_max_age,
        )
    except _Rejected as rejected:
        return PresentationVerification(
            verdict=rejected.verdict, reason=rejected.reason
        )


def _verify(
    presentation: str,
    *,
    trust: SignerTrust,
    now: dt.datetime,
    expected_nonce: str | None,
    expected_aud: str | None,
    require_key_binding: bool,
    status_lookup: StatusLookup | None,
    kb_max_age: dt.timedelta,
) -> PresentationVerification:
    if len(presentation) > MAX_PRESENTATION_LENGTH:
        raise _Rejected(Verdict.MALFORMED, "the presentation is too long")
    if not presentation.isascii():
        raise _Rejected(
            Verdict.MALFORMED, "the presentation has characters outside base64url"
        )
    parts = presentation.split("~")
    if len(parts) < 2:
        raise _Rejected(
            Verdict.MALFORMED, "not an SD-JWT presentation (no '~' separator)"
        )
    issuer_jwt, disclosures, kb_jwt = parts[0], parts[1:-1], parts[-1]
    if len(disclosures) > MAX_DISCLOSURES:
        raise _Rejected(Verdict.MALFORMED, "too many disclosures")
    if any(not d for d in disclosures):
        raise _Rejected(Verdict.MALFORMED, "an empty disclosure")

    try:
        verified = verify_compact_jws(
            issuer_jwt, typ=_ACCEPTED_SD_JWT_TYPS, trust=trust
        )
    except JoseError as exc:
        raise _Rejected(_verdict_for(exc), str(exc)) from None
    payload = verified.payload
    issuer = _optional(payload, "iss", str)
    claims = TokenClaims(
        issuer=issuer,
        issued_at=_optional_time(payload, "iat"),
        expires_at=_optional_time(payload, "exp"),
        not_before=_optional_time(payload, "nbf"),
        raw=payload,
    )
    # The same rules as the LC1 token: the signer is trusted for this issuer, was valid
    # at iat and until exp. Expiry is reported only once the rest has been checked.
    validity = check_validity(claims, verified.signer, now, leeway=_CLOCK_SKEW)
    if validity.verdict in (Verdict.MALFORMED, Verdict.UNTRUSTED_ISSUER):
        raise _Rejected(validity.verdict, validity.reason)

    decoded = _decode_disclosures(disclosures)
    disclosed_claims, disclosed_names = _unpack_payload(payload, decoded)
    vct = _optional(payload, "vct", str)
    if vct is None:
        raise _Rejected(
            Verdict.MALFORMED, "the credential has no vct (credential type)"
        )
    status = _status_reference(payload)
    holder_key = _holder_key(payload)

    key_bound = False
    if kb_jwt:
        _verify_key_binding(
            kb_jwt,
            holder_key=holder_key,
            presented=presentation[: len(presentation) - len(kb_jwt)],
            now=now,
            expected_nonce=expected_nonce,
            expected_aud=expected_aud,
            max_age=kb_max_age,
        )
        key_bound = True
    elif require_key_binding:
        raise _Rejected(
            Verdict.INVALID_SIGNATURE,
            "key binding: required, but the presentation has none",
        )
    elif holder_key is not None:
        # Without the holder's proof a bound credential is only a copy: anyone who
        # saw one presentation could replay it.
        raise _Rejected(
            Verdict.INVALID_SIGNATURE,
            "key binding: the credential is bound to its holder's key, but the "
            "presentation has no key-binding JWT",
        )

    fields = {k: v for k, v in disclosed_claims.items() if k not in _ENVELOPE_CLAIMS}
    reason = "the presentation is valid"
    if key_bound and (expected_nonce is None or expected_aud is None):
        # The holder's proof was checked, but not that it was made for this verifier
        # just now: the reason says so rather than let VALID imply it.
        reason += (
            "; its key binding was not checked against your nonce and audience, so "
            "it may be a replay of one shown elsewhere"
        )
    result = PresentationVerification(
        verdict=Verdict.VALID,
        reason=reason,
        fields=fields,
        disclosed=frozenset(disclosed_names),
        issuer=issuer,
        vct=vct,
        issued_at=claims.issued_at,
        expires_at=claims.expires_at,
        status=status,
        key_bound=key_bound,
        signer=verified.signer,
    )
    if validity.verdict is not Verdict.VALID:
        return dataclasses.replace(
            result, verdict=validity.verdict, reason=validity.reason
        )
    if status is not None and status_lookup is not None:
        value = status_lookup(status)
        if value == _STATUS_INVALID:
            return dataclasses.replace(
                result, verdict=Verdict.REVOKED, reason="the licence has been revoked"
            )
        if value == _STATUS_SUSPENDED:
            return dataclasses.replace(
                result, verdict=Verdict.SUSPENDED, reason="the licence is suspended"
            )
        if value != _STATUS_VALID:
            return dataclasses.replace(
                result,
                verdict=Verdict.REVOKED,
                reason=f"the status list gives an unknown status ({value})",
            )
    return result


def _verdict_for(exc: JoseError) -> Verdict:
    if isinstance(exc, UntrustedJoseSignerError):
        return Verdict.UNTRUSTED_ISSUER
    if isinstance(exc, JoseSignatureError):
        return Verdict.INVALID_SIGNATURE
    return Verdict.MALFORMED


def _decode_disclosures(disclosures: Sequence[str]) -> dict[str, list[Any]]:
    decoded: dict[str, list[Any]] = {}
    for disclosure in disclosures:
        digest = _digest(disclosure)
        if digest in decoded:
            raise _Rejected(Verdict.MALFORMED, "the same disclosure is presented twice")
        decoded[digest] = _decode_disclosure(disclosure)
    return decoded


def _decode_disclosure(disclosure: str) -> list[Any]:
    value = _parse_json(_b64url_decode(disclosure, "a disclosure"), "a disclosure")
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise _Rejected(
            Verdict.MALFORMED,
            "a disclosure is not [salt, name, value] or [salt, value]",
        )
    salt = value[0]
    if (
        not isinstance(salt, str)
        or len(salt) > _MAX_SALT_LENGTH
        or not _B64URL_ALPHABET.fullmatch(salt)
        or len(salt) * 6 < _MIN_SALT_BYTES * 8
    ):
        raise _Rejected(
            Verdict.MALFORMED,
            "a disclosure's salt is not 128 bits or more of base64url",
        )
    if len(value) == 3:
        name = value[1]
        if not isinstance(name, str):
            raise _Rejected(
                Verdict.MALFORMED, "a disclosure's claim name is not a string"
            )
        if name in _CONTROL_NAMES:
            raise _Rejected(
                Verdict.MALFORMED, "a disclosure's claim name is an SD-JWT control name"
            )
    return value


def _unpack_payload(
    payload: Mapping[str, Any], decoded: Mapping[str, list[Any]]
) -> tuple[dict[str, Any], set[str]]:
    """The payload with disclosed claims put in place (RFC 9901 §7.1), and the top-level names disclosed."""
    alg = payload.get("_sd_alg", _SD_ALG)
    if alg != _SD_ALG:
        raise _Rejected(Verdict.MALFORMED, "unsupported _sd_alg (only sha-256)")
    seen: set[str] = set()
    used: set[str] = set()
    disclosed_names: set[str] = set()

    def unpack(value: Any, top_level: bool, depth: int = 1) -> Any:
        if depth > _MAX_JSON_DEPTH:
            raise _Rejected(Verdict.MALFORMED, "the credential is nested too deeply")
        if isinstance(value, list):
            out = []
            for element in value:
                if isinstance(element, dict) and "..." in element:
                    if len(element) != 1:
                        raise _Rejected(
                            Verdict.MALFORMED,
                            "an array digest object has other members",
                        )
                    digest = _check_digest(element["..."], seen)
                    if digest in decoded:
                        disclosure = decoded[digest]
                        if len(disclosure) != 2:
                            raise _Rejected(
                                Verdict.MALFORMED,
                                "an array element's disclosure has a claim name",
                            )
                        used.add(digest)
                        out.append(unpack(disclosure[1], False, depth + 1))
                else:
                    out.append(unpack(element, False, depth + 1))
            return out
        if isinstance(value, dict):
            if "..." in value:
                raise _Rejected(Verdict.MALFORMED, "'...' outside an array")
            out_obj = {
                key: unpack(item, False, depth + 1)
                for key, item in value.items()
                if key not in ("_sd", "_sd_alg")
            }
            if not top_level and "_sd_alg" in value:
                raise _Rejected(Verdict.MALFORMED, "_sd_alg below the top level")
            digests = value.get("_sd", [])
            if not isinstance(digests, list):
                raise _Rejected(Verdict.MALFORMED, "_sd is not an array")
            for raw in digests:
                digest = _check_digest(raw, seen)
                if digest not in decoded:
                    continue  # a decoy, or a claim not disclosed
                disclosure = decoded[digest]
                if len(disclosure) != 3:
                    raise _Rejected(
                        Verdict.MALFORMED,
                        "an object member's disclosure has no claim name",
                    )
                name = disclosure[1]
                if top_level and name in _NEVER_DISCLOSED:
                    raise _Rejected(
                        Verdict.MALFORMED,
                        f"the claim {name!r} must not be selectively disclosed",
                    )
                if name in out_obj:
                    raise _Rejected(
                        Verdict.MALFORMED,
                        f"a disclosure would overwrite the claim {name!r}",
                    )
                used.add(digest)
                out_obj[name] = unpack(disclosure[2], False, depth + 1)
                if top_level:
                    disclosed_names.add(name)
            return out_obj
        return value

    claims = unpack(payload, True)
    if used != set(decoded):
        raise _Rejected(
            Verdict.MALFORMED, "a disclosure's digest is not in the credential"
        )
    return claims, disclosed_names


def _check_digest(raw: Any, seen: set[str]) -> str:
    if (
        not isinstance(raw, str)
        or len(raw) != _DIGEST_LENGTH
        or not _B64URL_ALPHABET.fullmatch(raw)
    ):
        raise _Rejected(
            Verdict.MALFORMED, "a digest in the credential is not a base64url SHA-256"
        )
    if raw in seen:
        raise _Rejected(Verdict.MALFORMED, "a digest appears twice in the credential")
    seen.add(raw)
    return raw


def _optional(payload: Mapping[str, Any], name: str, kind: type) -> Any:
    value = payload.get(name)
    if value is not None and not isinstance(value, kind):
        raise _Rejected(Verdict.MALFORMED, f"the claim {name} has the wrong type")
    return value


def _optional_time(payload: Mapping[str, Any], name: str) -> dt.datetime | None:
    value = payload.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Rejected(Verdict.MALFORMED, f"the claim {name} is not a NumericDate")
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError):
        raise _Rejected(
            Verdict.MALFORMED, f"the claim {name} is out of range"
        ) from None


def _status_reference(payload: Mapping[str, Any]) -> StatusReference | None:
    status = payload.get("status")
    if status is None:
        return None
    if not isinstance(status, dict) or not isinstance(status.get("status_list"), dict):
        raise _Rejected(Verdict.MALFORMED, "the status claim has no status_list object")
    entry = status["status_list"]
    try:
        return StatusReference(index=entry.get("idx"), uri=entry.get("uri"))
    except ValueError as exc:
        raise _Rejected(Verdict.MALFORMED, str(exc)) from None


def _holder_key(payload: Mapping[str, Any]) -> ec.EllipticCurvePublicKey | None:
    cnf = payload.get("cnf")
    if cnf is None:
        return None
    if not isinstance(cnf, dict) or "jwk" not in cnf:
        raise _Rejected(Verdict.MALFORMED, "cnf has no jwk")
    return _public_key_from_jwk(cnf["jwk"], what="cnf.jwk")


def _verify_key_binding(
    kb_jwt: str,
    *,
    holder_key: ec.EllipticCurvePublicKey | None,
    presented: str,
    now: dt.datetime,
    expected_nonce: str | None,
    expected_aud: str | None,
    max_age: dt.timedelta,
) -> None:
    def fail(reason: str) -> _Rejected:
        return _Rejected(Verdict.INVALID_SIGNATURE, "key binding: " + reason)

    if holder_key is None:
        raise _Rejected(
            Verdict.MALFORMED, "key binding: the credential names no holder key (cnf)"
        )
    try:
        parsed = _parse_jws(kb_jwt, typ=frozenset({_KB_JWT_TYP}))
        _verify_signature(parsed, holder_key)
    except JoseError as exc:
        raise fail(str(exc)) from None
    payload = parsed.payload
    issued = _optional_time(payload, "iat")
    if issued is None:
        raise fail("no iat")
    if issued > now + _CLOCK_SKEW:
        raise fail("iat is in the future")
    if issued < now - max_age - _CLOCK_SKEW:
        raise fail("iat is too old (a replayed presentation?)")
    if expected_nonce is not None and not _equal_strings(
        payload.get("nonce"), expected_nonce
    ):
        raise fail("the nonce does not match this request")
    if expected_aud is not None and not _equal_strings(
        payload.get("aud"), expected_aud
    ):
        raise fail("the audience is another verifier")
    if not _equal_strings(payload.get("sd_hash"), _digest(presented)):
        raise fail("sd_hash does not match the presented credential and disclosures")


def _equal_strings(value: Any, expected: str) -> bool:
    # surrogatepass: JSON can carry a lone surrogate ("\\ud800"), which plain UTF-8
    # cannot encode; it must compare unequal, not raise.
    return isinstance(value, str) and hmac.compare_digest(
        value.encode("utf-8", "surrogatepass"),
        expected.encode("utf-8", "surrogatepass"),
    )


# ---------------------------------------------------------------------------
# Compact JWS, ES256 only


@dataclasses.dataclass(frozen=True)
class _ParsedJws:
    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


@dataclasses.dataclass(frozen=True)
class VerifiedJws:
    """A compact JWS whose signature a trusted document signer made."""

    header: Mapping[str, Any]
    payload: dict[str, Any]
    signer: TrustedSigner


def sign_compact_jws(
    payload: Mapping[str, Any],
    *,
    typ: str,
    signer_key: ec.EllipticCurvePrivateKey,
    signer_certificate: x509.Certificate,
    operation: str,
) -> str:
    """An ES256 compact JWS by the document signer, with `kid` and `x5c` in the header."""
    check_signer_key(signer_key, signer_certificate)
    header = {
        "alg": "ES256",
        "typ": typ,
        "kid": b64url_encode(signer_kid(signer_certificate)),
        "x5c": [
            base64.b64encode(signer_certificate.public_bytes(Encoding.DER)).decode(
                "ascii"
            )
        ],
    }
    return _sign_jws(header, payload, signer_key, operation)


def verify_compact_jws(
    token: str, *, typ: AbstractSet[str], trust: SignerTrust
) -> VerifiedJws:
    """Verify an ES256 compact JWS against every trusted signer with its kid.

    Only the signature: whether the signer was trusted for the token's issuer and
    dates is the caller's check (`certs.token.check_validity`). Raises
    MalformedJoseError, JoseSignatureError or UntrustedJoseSignerError.
    """
    parsed = _parse_jws(token, typ=frozenset(typ))
    kid = _header_kid(parsed.header)
    candidates = [s for s in trust.signers_for_kid(kid) if _is_p256(s.public_key)]
    if not candidates:
        raise UntrustedJoseSignerError("the signer is not a trusted document signer")
    for signer in candidates:
        try:
            _verify_signature(parsed, signer.public_key)
        except JoseSignatureError:
            continue
        return VerifiedJws(header=parsed.header, payload=parsed.payload, signer=signer)
    raise JoseSignatureError("the signature does not verify")


def _sign_jws(
    header: Mapping[str, Any],
    payload: Mapping[str, Any],
    key: ec.EllipticCurvePrivateKey,
    operation: str,
) -> str:
    signing_input = (
        _encode_json_segment(header) + "." + _encode_json_segment(payload)
    ).encode("ascii")
    with signing_context(operation=operation):
        der = key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(_P256_ORDER_BYTES, "big") + s.to_bytes(_P256_ORDER_BYTES, "big")
    return signing_input.decode("ascii") + "." + b64url_encode(raw)


def _parse_jws(token: str, *, typ: frozenset[str]) -> _ParsedJws:
    segments = token.split(".")
    if len(segments) != 3:
        raise MalformedJoseError("not a compact JWS (three dot-separated parts)")
    header = _jws_object(segments[0], "the JWS header")
    if header.get("alg") != "ES256":
        raise MalformedJoseError("the JWS algorithm is not ES256")
    if "crit" in header:
        raise MalformedJoseError(
            "the JWS has critical header parameters this verifier does not know"
        )
    if _normalised_typ(header.get("typ")) not in typ:
        raise MalformedJoseError("the JWS typ is not " + " or ".join(sorted(typ)))
    payload = _jws_object(segments[1], "the JWS payload")
    signature = b64url_decode(segments[2], "the JWS signature")
    if len(signature) != 2 * _P256_ORDER_BYTES:
        raise JoseSignatureError("an ES256 signature is 64 bytes")
    signing_input = (segments[0] + "." + segments[1]).encode("ascii")
    return _ParsedJws(
        header=header, payload=payload, signing_input=signing_input, signature=signature
    )


def _decode_jws_payload(token: str) -> dict[str, Any]:
    segments = token.split(".")
    if len(segments) != 3:
        raise _Rejected(Verdict.MALFORMED, "not a compact JWS")
    value = _parse_json(
        _b64url_decode(segments[1], "the JWS payload"), "the JWS payload"
    )
    if not isinstance(value, dict):
        raise _Rejected(Verdict.MALFORMED, "the JWS payload is not a JSON object")
    return value


def _jws_object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = _parse_json(_b64url_decode(segment, what), what)
    except _Rejected as rejected:
        raise MalformedJoseError(rejected.reason) from None
    if not isinstance(value, dict):
        raise MalformedJoseError(f"{what} is not a JSON object")
    return value


def _normalised_typ(typ: Any) -> str | None:
    # RFC 7515 §4.1.9: compared case-insensitively, "application/" may be left out.
    if not isinstance(typ, str):
        return None
    typ = typ.lower()
    return typ.removeprefix("application/")


def _header_kid(header: Mapping[str, Any]) -> bytes:
    kid = header.get("kid")
    if kid is not None:
        if not isinstance(kid, str):
            raise MalformedJoseError("the JWS kid is not a string")
        try:
            return b64url_decode(kid, "the JWS kid")
        except MalformedJoseError:
            # Any string is a valid kid; ours are base64url, so this one is not ours.
            raise UntrustedJoseSignerError(
                "the JWS kid names no trusted document signer"
            ) from None
    chain = header.get("x5c")
    if isinstance(chain, list) and chain and isinstance(chain[0], str):
        # Only to find the trusted certificate: the certificate in x5c is never trusted.
        try:
            der = base64.b64decode(chain[0], validate=True)
        except ValueError:
            raise MalformedJoseError("the JWS x5c is not base64") from None
        return hashlib.sha256(der).digest()[:8]
    raise UntrustedJoseSignerError("the JWS names no signer (no kid, no x5c)")


def _verify_signature(parsed: _ParsedJws, public_key: Any) -> None:
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise JoseSignatureError("the signer's key is not EC P-256")
    r = int.from_bytes(parsed.signature[:_P256_ORDER_BYTES], "big")
    s = int.from_bytes(parsed.signature[_P256_ORDER_BYTES:], "big")
    try:
        public_key.verify(
            encode_dss_signature(r, s), parsed.signing_input, ec.ECDSA(hashes.SHA256())
        )
    except InvalidSignature:
        raise JoseSignatureError("the signature does not verify") from None


def _is_p256(key: Any) -> bool:
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(
        key.curve, ec.SECP256R1
    )


def check_signer_key(signer_key: Any, signer_certificate: x509.Certificate) -> None:
    """TokenSignerError unless the key is EC P-256 and the certificate is its own."""
    if not isinstance(signer_key, ec.EllipticCurvePrivateKey) or not isinstance(
        signer_key.curve, ec.SECP256R1
    ):
        raise TokenSignerError("the document signer key must be an EC P-256 key")
    if not isinstance(signer_certificate, x509.Certificate):
        raise TypeError("signer_certificate must be an x509.Certificate")
    if signer_certificate.public_key() != signer_key.public_key():
        raise TokenSignerError(
            "the signer certificate is not the signer key's certificate"
        )


def _public_key_from_jwk(jwk: Any, *, what: str) -> ec.EllipticCurvePublicKey:
    def bad(reason: str) -> _Rejected:
        return _Rejected(Verdict.MALFORMED, f"{what}: {reason}")

    if not isinstance(jwk, Mapping):
        raise bad("not a JSON object")
    if "d" in jwk:
        raise bad("carries a private key")
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise bad("not an EC P-256 key")
    coordinates = []
    for name in ("x", "y"):
        encoded = jwk.get(name)
        if not isinstance(encoded, str):
            raise bad(f"no {name} coordinate")
        raw = _b64url_decode(encoded, what)
        if len(raw) != _P256_ORDER_BYTES:
            raise bad(f"the {name} coordinate is not 32 bytes")
        coordinates.append(int.from_bytes(raw, "big"))
    try:
        return ec.EllipticCurvePublicNumbers(
            coordinates[0], coordinates[1], ec.SECP256R1()
        ).public_key()
    except ValueError:
        raise bad("not a point on P-256") from None


# ---------------------------------------------------------------------------
# Encodings


def b64url_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str, what: str) -> bytes:
    """Strict, canonical base64url without padding; MalformedJoseError names `what` otherwise."""
    try:
        return _b64url_decode(text, what)
    except _Rejected as rejected:
        raise MalformedJoseError(rejected.reason) from None


def _b64url_decode(text: str, what: str) -> bytes:
    """Strict base64url without padding; non-canonical encodings (stray low bits) are refused."""
    remainder = len(text) % 4
    if not _B64URL_ALPHABET.fullmatch(text) or remainder == 1:
        raise _Rejected(Verdict.MALFORMED, f"{what} is not base64url")
    # The last character of a 2- or 3-character group carries 4 or 2 unused bits;
    # set, they would let one value have several encodings.
    if remainder and _B64URL_VALUES[text[-1]] & (0x0F if remainder == 2 else 0x03):
        raise _Rejected(Verdict.MALFORMED, f"{what} is not canonical base64url")
    return base64.urlsafe_b64decode(text + "=" * (-remainder % 4))


def _digest(text: str) -> str:
    return b64url_encode(hashlib.sha256(text.encode("ascii")).digest())


def _encode_json_segment(value: Mapping[str, Any]) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return b64url_encode(text.encode("utf-8"))


class _DuplicateMember(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _DuplicateMember("duplicate member name")
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_json(data: bytes, what: str) -> Any:
    try:
        value = json.loads(
            data.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
        )
    except _DuplicateMember:
        raise _Rejected(Verdict.MALFORMED, f"{what} repeats a member name") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Rejected(Verdict.MALFORMED, f"{what} is not JSON") from None
    return value


def _numeric_date(moment: dt.datetime) -> int:
    _require_aware(moment, "a time")
    return int(moment.timestamp())


def _require_aware(moment: Any, name: str) -> None:
    if not isinstance(moment, dt.datetime) or moment.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime")
