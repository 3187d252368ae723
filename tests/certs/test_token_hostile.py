"""Hostile tokens (acceptance 6): each is refused with a reason, no exception escapes,
and decoding stays within its bounds.

Most tokens here are signed correctly by a trusted key, so that the malformation
itself — not a bad signature — is what the verifier has to catch.
"""

from __future__ import annotations

import datetime as dt
import tracemalloc
import zlib
from typing import Any

import base45
import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from certs._cose import der_to_raw_ecdsa, sig_structure
from certs.token import (
    DecodeLimits,
    LicenceClaims,
    SignerList,
    TokenStage,
    TokenVerification,
    TrustedSigner,
    Verdict,
    decompress_payload,
    encode_token,
    signer_kid,
    verify_token,
)

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
FUZZ = settings(
    max_examples=250,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def make_signer(secret: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fixed key and certificate, so every run (and every fuzz seed) sees the same bytes."""
    key = ec.derive_private_key(secret, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hostile Test Signer")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(secret)
        .not_valid_before(NOW - dt.timedelta(days=30))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return key, certificate


KEY, CERTIFICATE = make_signer(0x5EA1)
OTHER_KEY, OTHER_CERTIFICATE = make_signer(0x0DD)
INTRUDER_KEY, _ = make_signer(0xBAD)
KID = signer_kid(CERTIFICATE)
OTHER_KID = signer_kid(OTHER_CERTIFICATE)
TRUST = SignerList([CERTIFICATE, OTHER_CERTIFICATE])
CLAIMS = LicenceClaims(
    issuer="350100",
    issued_at=NOW - dt.timedelta(days=1),
    expires_at=NOW + dt.timedelta(days=30),
    licence_id="1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.002.S",
    type_code="11100000000013338W011",
    fields={"name": "某某市某某科技有限公司", "uscc": "91350100M000100Y43"},
)
GOOD_PAYLOAD = cbor2.dumps(CLAIMS.to_cwt())
DETERMINISTIC_ES256 = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)


def transport(message: bytes, prefix: str = "LC1:") -> str:
    return prefix + base45.b45encode(zlib.compress(message)).decode()


def sign1(
    protected: dict[Any, Any] | bytes | Any = None,
    payload: Any = GOOD_PAYLOAD,
    *,
    unprotected: Any = None,
    key: ec.EllipticCurvePrivateKey = KEY,
    signature: bytes | None = None,
    items: list[Any] | None = None,
    tag_prefix: bytes = b"\xd2",
) -> bytes:
    """A COSE_Sign1 signed by `key` over whatever protected bytes and payload it holds."""
    if protected is None:
        protected = {1: -7, 4: KID}
    protected_bytes = (
        protected if isinstance(protected, bytes) else cbor2.dumps(protected)
    )
    if signature is None:
        to_sign = (
            sig_structure(protected_bytes, payload)
            if isinstance(protected_bytes, bytes) and isinstance(payload, bytes)
            else b"unsignable"
        )
        signature = der_to_raw_ecdsa(key.sign(to_sign, DETERMINISTIC_ES256))
    body = (
        items
        if items is not None
        else [
            protected_bytes,
            {} if unprotected is None else unprotected,
            payload,
            signature,
        ]
    )
    return tag_prefix + cbor2.dumps(body)


GOOD_TOKEN = transport(sign1())


def check(token: str, **kwargs: Any) -> TokenVerification:
    result = verify_token(token, trust=kwargs.pop("trust", TRUST), at=NOW, **kwargs)
    assert isinstance(result, TokenVerification)
    assert result.reason and "\n" not in result.reason
    return result


def refused(
    token: str, stage: TokenStage, reason: str, verdict: Verdict = Verdict.MALFORMED
) -> TokenVerification:
    result = check(token)
    assert (result.verdict, result.stage) == (verdict, stage), result.reason
    assert reason in result.reason, result.reason
    assert result.claims is None
    return result


def test_the_untouched_token_is_valid() -> None:
    assert check(GOOD_TOKEN).verdict is Verdict.VALID
    issued = encode_token(CLAIMS, signer_key=KEY, signer_certificate=CERTIFICATE)
    assert check(issued).verdict is Verdict.VALID


# -- transport -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    ["HC1:" + GOOD_TOKEN[4:], "LC2:" + GOOD_TOKEN[4:], "lc1:" + GOOD_TOKEN[4:],
     GOOD_TOKEN[4:], "LC1" + GOOD_TOKEN[4:], " " + GOOD_TOKEN, ""],
)  # fmt: skip
def test_wrong_prefix(token: str) -> None:
    refused(token, TokenStage.PREFIX, "does not start with 'LC1:'")


def test_a_token_longer_than_any_qr_code_is_not_decoded() -> None:
    refused("LC1:" + "0" * 5000, TokenStage.PREFIX, "more than 4296")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (GOOD_TOKEN + "a", "not in the Base45 alphabet"),
        (GOOD_TOKEN + "\n", "not in the Base45 alphabet"),
        (GOOD_TOKEN[:20] + "é" + GOOD_TOKEN[21:], "not in the Base45 alphabet"),
        (GOOD_TOKEN[:20] + "_" + GOOD_TOKEN[21:], "not in the Base45 alphabet"),
        ("LC1:GGW", "larger than two bytes"),
        ("LC1:" + ":" * 30, "larger than two bytes"),
    ],
)
def test_non_alphabet_base45(token: str, reason: str) -> None:
    refused(token, TokenStage.BASE45, reason)


def test_truncated_base45() -> None:
    whole_groups = 3 * ((len(GOOD_TOKEN) - 4) // 3)
    lone = GOOD_TOKEN[: 4 + whole_groups - 2]
    refused(lone, TokenStage.BASE45, "lone character")
    refused(GOOD_TOKEN[: 4 + whole_groups - 30], TokenStage.DECOMPRESS, "truncated")
    refused(GOOD_TOKEN[:61], TokenStage.DECOMPRESS, "truncated")


def test_not_compressed_or_broken_compression() -> None:
    raw = "LC1:" + base45.b45encode(sign1()).decode()
    refused(raw, TokenStage.DECOMPRESS, "not a valid zlib stream")
    compressed = bytearray(zlib.compress(sign1()))
    compressed[-1] ^= 0xFF  # the Adler-32 checksum
    refused(
        "LC1:" + base45.b45encode(bytes(compressed)).decode(),
        TokenStage.DECOMPRESS,
        "not a valid zlib stream",
    )


def test_trailing_garbage_after_the_zlib_stream() -> None:
    token = "LC1:" + base45.b45encode(zlib.compress(sign1()) + b"\x00garbage").decode()
    refused(token, TokenStage.DECOMPRESS, "8 bytes follow the zlib stream")


def test_zlib_bomb_stops_at_the_cap_in_bounded_memory() -> None:
    bomb = zlib.compress(b"\x00" * 2_500_000, 9)
    token = "LC1:" + base45.b45encode(bomb).decode()
    assert len(token) < 4296, "the bomb fits in a QR code"
    tracemalloc.start()
    try:
        result = check(token)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (result.verdict, result.stage) == (Verdict.MALFORMED, TokenStage.DECOMPRESS)
    assert "more than 65536 bytes" in result.reason
    assert peak < 1_000_000, f"decompressing the bomb took {peak} bytes"
    with pytest.raises(ValueError, match="more than 1000 bytes"):
        decompress_payload(bomb, limits=DecodeLimits(max_payload_bytes=1000))


# -- COSE structure --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (sign1(items=[b"", {}, GOOD_PAYLOAD]), "array of four items"),
        (sign1(items=[b"", {}, GOOD_PAYLOAD, b"", b""]), "array of four items"),
        (b"\xd2" + cbor2.dumps({"a": 1}), "array of four items"),
        (sign1(payload=None), "detached payloads"),
        (sign1(payload="text"), "payload must be a byte string"),
        (sign1(items=[b"\xa0", {}, GOOD_PAYLOAD, "sig"]), "signature must be a byte string"),
        (sign1(protected={1: -7, 4: KID}.copy(), unprotected=[1, 2]), "unprotected header must be a map"),
        (sign1(items=[{1: -7}, {}, GOOD_PAYLOAD, b""]), "protected header must be a byte string"),
        (sign1(protected=cbor2.dumps([1, -7])), "protected header must encode a map"),
        (sign1(protected=cbor2.dumps({1: -7, 4: KID}) + b"\x00"), "1 bytes follow"),
        (sign1() + b"\x00", "1 bytes follow the CBOR item"),
        (sign1(protected={1: -7, 4: KID, 2: [99]}), "critical header parameters"),
        (sign1(protected={1: -7, 4: 12345678}), "kid must be a byte string"),
        (sign1(tag_prefix=b"\xd1"), "CBOR tag 17 is not allowed"),  # COSE_Mac0
        (sign1(tag_prefix=b"\xd8\x62"), "CBOR tag 98 is not allowed"),  # COSE_Sign
        (sign1(tag_prefix=b"\xd2\xd2"), "CBOR tag 18 is not allowed"),
        (sign1(tag_prefix=b"\xd8\x3d"), "CWT tag 61 does not wrap"),
        (sign1(tag_prefix=b"\xd9\xd9\xf7"), "CBOR tag 55799 is not allowed"),
        (b"\xd2" + bytes.fromhex("9f") + cbor2.dumps([b"", {}, b"", b""])[1:] + b"\xff", "indefinite"),
        (b"", "not well-formed CBOR"),
        (b"\xd2", "not well-formed CBOR"),
        (b"\x1b" + b"\xff" * 8, "array of four items"),
    ],
)  # fmt: skip
def test_malformed_cose_structure(message: bytes, reason: str) -> None:
    refused(transport(message), TokenStage.COSE, reason)


def test_cwt_and_cose_tags_together_are_accepted() -> None:
    assert check(transport(sign1(tag_prefix=b"\xd8\x3d\xd2"))).verdict is Verdict.VALID
    assert check(transport(sign1(tag_prefix=b""))).verdict is Verdict.VALID


@pytest.mark.parametrize(
    ("protected", "reason"),
    [
        ({4: KID}, "protected header has no alg"),
        (b"", "protected header has no alg"),
        ({1: 0, 4: KID}, "unsupported signature algorithm 0"),
        ({1: "none", 4: KID}, "unsupported signature algorithm 'none'"),
        ({1: "ES256", 4: KID}, "unsupported signature algorithm 'ES256'"),
        ({1: -8, 4: KID}, "unsupported signature algorithm -8"),  # EdDSA
        ({1: -35, 4: KID}, "unsupported signature algorithm -35"),  # ES384
        ({1: -257, 4: KID}, "unsupported signature algorithm -257"),  # RS256
        ({1: True, 4: KID}, "unsupported signature algorithm True"),
        ({1: 2**64 - 1, 4: KID}, "unsupported signature algorithm"),
        ({1: None, 4: KID}, "unsupported signature algorithm None"),
    ],
)
def test_alg_none_missing_or_unknown(
    protected: dict[Any, Any] | bytes, reason: str
) -> None:
    refused(transport(sign1(protected)), TokenStage.COSE, reason)


# -- unprotected-header tricks -----------------------------------------------------------


def test_alg_only_in_the_unprotected_header() -> None:
    message = sign1({4: KID}, unprotected={1: -7})
    refused(transport(message), TokenStage.COSE, "alg must be in the protected header")


@pytest.mark.parametrize("unprotected_alg", [-7, -37, 0])
def test_alg_in_both_headers_is_refused_even_when_equal(unprotected_alg: int) -> None:
    message = sign1({1: -7, 4: KID}, unprotected={1: unprotected_alg})
    refused(transport(message), TokenStage.COSE, "alg must be in the protected header")


def test_kid_only_in_the_unprotected_header_is_a_hint_that_still_needs_the_signature() -> (
    None
):
    assert (
        check(transport(sign1({1: -7}, unprotected={4: KID}))).verdict is Verdict.VALID
    )
    # the hint names the other trusted signer: its key does not make this signature
    misled = check(transport(sign1({1: -7}, unprotected={4: OTHER_KID})))
    assert misled.verdict is Verdict.INVALID_SIGNATURE


def test_conflicting_kids_the_protected_one_wins() -> None:
    right = check(transport(sign1({1: -7, 4: KID}, unprotected={4: OTHER_KID})))
    assert right.verdict is Verdict.VALID
    assert right.signer is not None and right.signer.kid == KID
    wrong = check(transport(sign1({1: -7, 4: OTHER_KID}, unprotected={4: KID})))
    assert (wrong.verdict, wrong.stage) == (
        Verdict.INVALID_SIGNATURE,
        TokenStage.SIGNATURE,
    )


def test_no_kid_anywhere() -> None:
    refused(transport(sign1({1: -7})), TokenStage.SIGNATURE, "no kid")


def test_unprotected_header_cannot_smuggle_claims() -> None:
    """Only the signed payload is read: an unprotected 'payload' changes nothing."""
    message = sign1(unprotected={-70003: {"name": "冒名公司"}, 99: b"x" * 100})
    result = check(transport(message))
    assert result.verdict is Verdict.VALID
    assert result.fields["name"] == "某某市某某科技有限公司"


# -- kid collisions ------------------------------------------------------------------------


class CollidingTrust:
    """Every certificate filed under one kid, as a truncated hash might collide."""

    def __init__(self, kid: bytes, certificates: list[x509.Certificate]) -> None:
        self.kid = kid
        self.signers = [TrustedSigner(c) for c in certificates]

    def signers_for_kid(self, kid: bytes) -> list[TrustedSigner]:
        return self.signers if kid == self.kid else []


def test_two_trusted_signers_share_a_kid_and_the_right_one_verifies() -> None:
    for order in ([OTHER_CERTIFICATE, CERTIFICATE], [CERTIFICATE, OTHER_CERTIFICATE]):
        result = check(GOOD_TOKEN, trust=CollidingTrust(KID, order))
        assert result.verdict is Verdict.VALID
        assert result.signer is not None and result.signer.certificate == CERTIFICATE


def test_an_untrusted_key_with_a_colliding_kid_is_refused() -> None:
    forged = transport(sign1({1: -7, 4: KID}, key=INTRUDER_KEY))
    result = check(forged, trust=CollidingTrust(KID, [OTHER_CERTIFICATE, CERTIFICATE]))
    assert (result.verdict, result.stage) == (
        Verdict.INVALID_SIGNATURE,
        TokenStage.SIGNATURE,
    )
    assert "2 trusted signer(s)" in result.reason
    unknown = check(transport(sign1({1: -7, 4: b"\x00" * 8}, key=INTRUDER_KEY)))
    assert unknown.verdict is Verdict.UNTRUSTED_ISSUER


@pytest.mark.parametrize(
    "signature",
    [b"", b"\x00" * 64, b"\xff" * 64, b"\x01" * 63, b"\x01" * 65, b"\x00" * 32 + b"\x01" * 32,
     # r = the P-256 group order: out of range
     bytes.fromhex("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551") * 2],
)  # fmt: skip
def test_garbage_signatures(signature: bytes) -> None:
    result = check(transport(sign1(signature=signature)))
    assert (result.verdict, result.stage) == (
        Verdict.INVALID_SIGNATURE,
        TokenStage.SIGNATURE,
    )


# -- CBOR limits in the claims -----------------------------------------------------------


def claims_with(**changes: Any) -> dict[Any, Any]:
    claims = CLAIMS.to_cwt()
    for key, value in changes.items():
        claims[int(key.removeprefix("k").replace("m", "-"))] = value
    return claims


def nested(depth: int) -> bytes:
    return b"\x81" * depth + b"\x00"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (cbor2.dumps(claims_with(k99=cbor2.loads(nested(20)))), "nesting depth"),
        (GOOD_PAYLOAD[:-1] + b"\x9f" + b"\x00" * 3 + b"\xff", "not well-formed CBOR"),
        (bytes([0xA0 + 7]) + GOOD_PAYLOAD[1:] + b"\x01\x02", "Duplicate map key"),
        (b"\xbf\x01\x02\xff", "indefinite length"),
        (b"\x7f\x61a\xff", "indefinite length"),
        (cbor2.dumps(claims_with(k6=cbor2.CBORTag(1, 1_700_000_000))), "CBOR tag 1 is not allowed"),
        (cbor2.dumps(claims_with(k99=cbor2.CBORTag(2, b"\xff" * 1000))), "CBOR tag 2 is not allowed"),
        (cbor2.dumps(claims_with(k99=cbor2.CBORTag(3, b"\xff" * 1000))), "CBOR tag 3 is not allowed"),
        (cbor2.dumps(claims_with(k99=cbor2.CBORTag(28, [1]))), "CBOR tag 28 is not allowed"),
        (cbor2.dumps(claims_with(k99=cbor2.CBORTag(258, [1, 2]))), "CBOR tag 258 is not allowed"),
        (cbor2.dumps(claims_with(k99=cbor2.CBORTag(18, [b"", {}, b"", b""]))), "CBOR tag 18 is not allowed"),
        (cbor2.dumps(claims_with(k99=cbor2.CBORTag(2**63, 0))), "is not allowed"),
        (b"\x5b" + b"\x7f" + b"\xff" * 7, "not well-formed CBOR"),
        (b"\x9b" + b"\x7f" + b"\xff" * 7, "not well-formed CBOR"),
        (GOOD_PAYLOAD + b"\x00", "1 bytes follow the CBOR item"),
        (cbor2.dumps([1, 2, 3]), "claims must be a CBOR map"),
        (cbor2.dumps(claims_with(k6=2**64 - 1)), "claim iat is out of range"),
        (cbor2.dumps(claims_with(k4=-(2**64))), "claim exp is out of range"),
        (cbor2.dumps(claims_with(k6=1.7e9)), "claim iat must be a NumericDate"),
        (cbor2.dumps(claims_with(k4="2030-01-01")), "claim exp must be a NumericDate"),
        (cbor2.dumps(claims_with(k4=CLAIMS.to_cwt()[6] - 1)), "exp is not after iat"),
        (cbor2.dumps(claims_with(k1=350100)), "claim iss (1) must be non-empty text"),
        (cbor2.dumps(claims_with(m70001=b"bytes")), "claim licence id (-70001)"),
        (cbor2.dumps(claims_with(m70003=[["name", "x"]])), "claim fields (-70003) must be a map"),
        (cbor2.dumps(claims_with(m70003={"name": 1.5})), "field 'name' must be text"),
        (cbor2.dumps(claims_with(m70003={"name": None})), "field 'name' must be text"),
        (cbor2.dumps(claims_with(m70003={1: "x"})), "every field name must be non-empty text"),
        (cbor2.dumps(claims_with(k65535={"status_list": {"idx": -1, "uri": "u"}})), "index"),
        (cbor2.dumps(claims_with(k65535=[1])), "status claim"),
    ],
)  # fmt: skip
def test_malformed_claims_are_refused_even_when_signed(
    payload: bytes, reason: str
) -> None:
    result = check(transport(sign1(payload=payload)))
    assert (result.verdict, result.stage) == (Verdict.MALFORMED, TokenStage.CLAIMS), (
        result.reason
    )
    assert reason in result.reason, result.reason
    assert result.claims is None
    assert result.signer is not None, "the signature checked; the content did not"


def test_deep_nesting_in_the_outer_structure() -> None:
    message = sign1(unprotected={99: cbor2.loads(nested(20))})
    refused(transport(message), TokenStage.COSE, "nesting depth")
    deep = b"\xd2" + b"\x81" * 10_000 + b"\x00"
    refused(transport(deep), TokenStage.COSE, "nesting depth")


def test_oversized_cbor_under_tighter_limits() -> None:
    big = cbor2.dumps(claims_with(m70003={"scope": "x" * 5000}))
    token = transport(sign1(payload=big))
    assert check(token).verdict is Verdict.VALID
    tight = verify_token(
        token, trust=TRUST, at=NOW, limits=DecodeLimits(max_payload_bytes=2048)
    )
    assert (tight.verdict, tight.stage) == (Verdict.MALFORMED, TokenStage.DECOMPRESS)


def test_a_huge_field_integer_is_still_an_integer() -> None:
    """CBOR integers stop at 64 bits without bignum tags, and those are refused."""
    payload = cbor2.dumps(claims_with(m70003={"capital": 2**64 - 1, "debt": -(2**64)}))
    result = check(transport(sign1(payload=payload)))
    assert result.verdict is Verdict.VALID
    assert result.fields["capital"] == 2**64 - 1


# -- fuzzing the whole decoder -------------------------------------------------------------


def never_raises_and_never_lies(token: str) -> None:
    result = check(token)
    if result.verdict is Verdict.VALID:
        assert result.licence == CLAIMS, "a changed token verified with other content"


@FUZZ
@given(st.text(max_size=300))
@example("LC1:")
@example("LC1:" + "0" * 3)
def test_fuzz_arbitrary_text(text: str) -> None:
    result = check(text)
    assert result.verdict is Verdict.MALFORMED
    never_raises_and_never_lies("LC1:" + text)


ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"


@FUZZ
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "delete", "insert"]),
            st.integers(min_value=4, max_value=len(GOOD_TOKEN) - 1),
            st.sampled_from(ALPHABET),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_fuzz_mutated_token_text(edits: list[tuple[str, int, str]]) -> None:
    token = list(GOOD_TOKEN)
    for operation, position, char in edits:
        position = min(position, len(token) - 1)
        if operation == "flip":
            token[position] = char
        elif operation == "delete":
            del token[position]
        else:
            token.insert(position, char)
    never_raises_and_never_lies("".join(token))


GOOD_MESSAGE = sign1()


@FUZZ
@given(st.data())
def test_fuzz_mutated_cose_bytes(data: st.DataObject) -> None:
    message = bytearray(GOOD_MESSAGE)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(message) - 1))
        action = data.draw(st.sampled_from(["set", "delete", "insert", "truncate"]))
        byte = data.draw(st.integers(min_value=0, max_value=255))
        if action == "set":
            message[position] = byte
        elif action == "delete" and len(message) > 1:
            del message[position]
        elif action == "insert":
            message.insert(position, byte)
        else:
            del message[position:]
            if not message:
                message.append(byte)
    never_raises_and_never_lies(transport(bytes(message)))


CBOR_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats()
    | st.binary(max_size=20)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.integers(-5, 5) | st.text(max_size=3), children, max_size=4
        )
        | st.builds(cbor2.CBORTag, st.integers(0, 2**16), children)
    ),
    max_leaves=30,
)


@FUZZ
@given(
    protected=st.dictionaries(st.integers(-5, 5), CBOR_VALUES, max_size=4),
    unprotected=st.dictionaries(st.integers(-5, 5), CBOR_VALUES, max_size=4),
    claims=st.dictionaries(
        st.sampled_from([1, 4, 5, 6, -70001, -70002, -70003, 65535, 99]), CBOR_VALUES
    ),
)
def test_fuzz_structured_cose(
    protected: dict[int, Any], unprotected: dict[int, Any], claims: dict[int, Any]
) -> None:
    merged = {**CLAIMS.to_cwt(), **claims}
    payload = cbor2.dumps(merged)
    message = sign1({1: -7, 4: KID, **protected}, payload, unprotected=unprotected)
    result = check(transport(message))
    if result.verdict is Verdict.VALID:
        assert result.licence is not None
        assert result.licence.fields == merged[-70003]


def test_every_refusal_reason_is_one_safe_line() -> None:
    """Reasons never echo the token or its personal data."""
    for token in (GOOD_TOKEN[:61], GOOD_TOKEN + "a", "HC1:" + GOOD_TOKEN[4:]):
        reason = check(token).reason
        assert GOOD_TOKEN[4:40] not in reason
        assert "某某" not in reason
