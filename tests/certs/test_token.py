"""certs.token: LC1 tokens signed by the region's document signer in the soft HSM.

One region node per module (ceremony included): its DOCUMENT_SIGNER credential is the
real HSM key and certificate; every signature goes through the audited key store.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import zlib
from collections.abc import Iterator
from pathlib import Path

import base45
import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from certs._base45 import Base45Error, b45decode
from certs._cose import ALG_PS256, assemble_sign1, protected_header, sig_structure
from certs.errors import TokenClaimsError, TokenSignerError
from certs.token import (
    CLAIM_EXPIRES,
    CLAIM_FIELDS,
    CLAIM_ISSUED_AT,
    CLAIM_ISSUER,
    CLAIM_LICENCE_ID,
    CLAIM_LICENCE_TYPE,
    CLAIM_STATUS,
    LicenceClaims,
    SignerList,
    StatusReference,
    TokenProfile,
    TokenStage,
    TrustedSigner,
    Verdict,
    encode_token,
    encode_tokens,
    signer_kid,
    verify_token,
)
from hsm_sim.api import KeyUsage
from hsm_sim.audit import AuditEntry
from pki.ca_models import ServicePurpose
from pki.timestamping import service_credential
from tests.helpers.node import Node, build_node

LICENCE_ID = "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.002.S"
BUSINESS_LICENCE = "11100000000013338W011"


@dataclasses.dataclass(frozen=True)
class DocumentSigner:
    node: Node
    label: str
    certificate: x509.Certificate

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        return self.node.keystore.private_key(self.label, usage=KeyUsage.TOKEN)

    @property
    def issued_at(self) -> dt.datetime:
        """A moment well inside the certificate's validity."""
        return self.certificate.not_valid_before_utc + dt.timedelta(days=1)


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocumentSigner]:
    node = build_node(Path(tmp_path_factory.mktemp("token-node")))
    label, certificate, _chain = service_credential(
        node.ca, ServicePurpose.DOCUMENT_SIGNER
    )
    yield DocumentSigner(node, label, certificate)
    node.close()


def licence_claims(
    issued_at: dt.datetime, *, days: int = 30, index: int = 7, **fields: object
) -> LicenceClaims:
    return LicenceClaims(
        issuer="350100",
        issued_at=issued_at,
        expires_at=issued_at + dt.timedelta(days=days),
        licence_id=LICENCE_ID,
        type_code=BUSINESS_LICENCE,
        fields=fields
        or {
            "name": "某某市某某科技有限公司",
            "uscc": "91350100M000100Y43",
            "legal_representative": "张三",
            "registered_capital": 1_000_000,
            "established": "2020-01-01",
            "long_term": True,
        },
        status=StatusReference(index, "https://pki.example.gov.cn/status/350100-1"),
    )


def raw_parts(token: str) -> tuple[dict, dict, dict, bytes, bytes]:
    """Protected header, unprotected header, claims, payload, signature — decoded with
    the public libraries, not with certs.token."""
    assert token.startswith("LC1:")
    message = cbor2.loads(zlib.decompress(base45.b45decode(token[4:])))
    assert isinstance(message, cbor2.CBORTag) and message.tag == 18
    protected_bytes, unprotected, payload, signature = message.value
    return (
        cbor2.loads(protected_bytes),
        unprotected,
        cbor2.loads(payload),
        payload,
        signature,
    )


# -- the token as issued -----------------------------------------------------------


def test_token_round_trip_through_the_hsm_document_signer(
    signer: DocumentSigner,
) -> None:
    claims = licence_claims(signer.issued_at)
    token = encode_token(
        claims, signer_key=signer.key, signer_certificate=signer.certificate
    )
    result = verify_token(
        token,
        trust=SignerList([signer.certificate]),
        at=signer.issued_at + dt.timedelta(days=1),
    )
    assert result.verdict is Verdict.VALID, result.reason
    assert result.stage is None
    assert result.licence == claims
    assert result.fields["name"] == "某某市某某科技有限公司"
    assert result.fields["registered_capital"] == 1_000_000
    assert result.fields["long_term"] is True
    assert result.licence is not None and result.licence.status == claims.status
    assert result.algorithm == "ES256"
    assert result.signer is not None and result.signer.certificate == signer.certificate
    with pytest.raises(TypeError):
        result.fields["name"] = "changed"  # type: ignore[index]


def test_wire_format_is_the_documented_claim_map(signer: DocumentSigner) -> None:
    claims = licence_claims(signer.issued_at)
    token = encode_token(
        claims, signer_key=signer.key, signer_certificate=signer.certificate
    )
    protected, unprotected, cwt, payload, signature = raw_parts(token)
    der = signer.certificate.public_bytes(serialization.Encoding.DER)
    kid = hashlib.sha256(der).digest()[:8]
    assert protected == {1: -7, 4: kid}
    assert signer_kid(signer.certificate) == kid
    assert unprotected == {}
    assert cwt == {
        CLAIM_ISSUER: "350100",
        CLAIM_ISSUED_AT: int(signer.issued_at.timestamp()),
        CLAIM_EXPIRES: int(claims.expires_at.timestamp()),
        CLAIM_LICENCE_ID: LICENCE_ID,
        CLAIM_LICENCE_TYPE: BUSINESS_LICENCE,
        CLAIM_FIELDS: dict(claims.fields),
        CLAIM_STATUS: {
            "status_list": {
                "idx": 7,
                "uri": "https://pki.example.gov.cn/status/350100-1",
            }
        },
    }
    # The signature is raw r||s over the RFC 9052 Sig_structure, checked here by hand.
    assert len(signature) == 64
    to_be_signed = cbor2.dumps(
        ["Signature1", cbor2.dumps({1: -7, 4: kid}), b"", payload]
    )
    der_signature = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    signer.certificate.public_key().verify(
        der_signature, to_be_signed, ec.ECDSA(hashes.SHA256())
    )
    assert set(token[4:]) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def test_each_token_is_one_audited_signature(signer: DocumentSigner) -> None:
    before = signer.node.granted_signatures(signer.label)
    for index in range(3):
        encode_token(
            licence_claims(signer.issued_at, index=index),
            signer_key=signer.key,
            signer_certificate=signer.certificate,
        )
    assert signer.node.granted_signatures(signer.label) == before + 3
    with signer.node.sessions() as session:
        operation = session.scalars(
            select(AuditEntry.operation)
            .where(AuditEntry.key_label == signer.label)
            .order_by(AuditEntry.seq.desc())
            .limit(1)
        ).one()
    assert operation == "sign-licence-token"


def test_batch_signs_many_tokens_with_an_audit_entry_each(signer: DocumentSigner) -> None:
    batch = [licence_claims(signer.issued_at, index=index) for index in range(25)]
    before = signer.node.granted_signatures(signer.label)
    tokens = encode_tokens(
        batch,
        keystore=signer.node.keystore,
        key_label=signer.label,
        signer_certificate=signer.certificate,
    )
    assert signer.node.granted_signatures(signer.label) == before + 25
    assert len(set(tokens)) == 25
    trust = SignerList([signer.certificate])
    for claims, token in zip(batch, tokens, strict=True):
        result = verify_token(token, trust=trust, at=signer.issued_at)
        assert result.verdict is Verdict.VALID, result.reason
        assert result.licence == claims
    assert signer.node.verify_audit().ok


def test_batch_refuses_a_key_that_is_not_the_certificates(
    signer: DocumentSigner,
) -> None:
    other_label = next(
        info.label
        for info in signer.node.keystore.list_keys()
        if info.label != signer.label
    )
    before = signer.node.audit_entry_count()
    with pytest.raises(TokenSignerError, match="does not match"):
        encode_tokens(
            [licence_claims(signer.issued_at)],
            keystore=signer.node.keystore,
            key_label=other_label,
            signer_certificate=signer.certificate,
        )
    assert signer.node.audit_entry_count() == before, "nothing was asked of the HSM"


# -- verdicts ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token(signer: DocumentSigner) -> str:
    return encode_token(
        licence_claims(signer.issued_at, days=30),
        signer_key=signer.key,
        signer_certificate=signer.certificate,
    )


def verify_at(token: str, signer: DocumentSigner, at: dt.datetime, **trust: object):
    trusted = TrustedSigner(signer.certificate, **trust)  # type: ignore[arg-type]
    return verify_token(token, trust=SignerList([trusted]), at=at)


def test_expiry_and_start(token: str, signer: DocumentSigner) -> None:
    issued, expires = signer.issued_at, signer.issued_at + dt.timedelta(days=30)
    assert verify_at(token, signer, issued).verdict is Verdict.VALID
    assert (
        verify_at(token, signer, expires).verdict is Verdict.VALID
    )  # exp is inclusive
    late = verify_at(token, signer, expires + dt.timedelta(seconds=1))
    assert (late.verdict, late.stage) == (Verdict.EXPIRED, TokenStage.VALIDITY)
    assert late.licence is not None, "an expired token still shows what it said"
    early = verify_at(token, signer, issued - dt.timedelta(seconds=1))
    assert early.verdict is Verdict.NOT_YET_VALID
    lenient = verify_token(
        token,
        trust=SignerList([signer.certificate]),
        at=issued - dt.timedelta(seconds=30),
        leeway=dt.timedelta(minutes=1),
    )
    assert lenient.verdict is Verdict.VALID


def test_signer_must_fit_the_issuer_and_the_dates(
    token: str, signer: DocumentSigner
) -> None:
    at = signer.issued_at
    assert verify_at(token, signer, at, issuer="350100").verdict is Verdict.VALID
    other_region = verify_at(token, signer, at, issuer="110000")
    assert other_region.verdict is Verdict.UNTRUSTED_ISSUER
    assert "110000" in other_region.reason
    # Trusted only from after the token was issued: the signer was not valid at iat.
    late_trust = verify_at(token, signer, at, not_before=at + dt.timedelta(hours=1))
    assert late_trust.verdict is Verdict.UNTRUSTED_ISSUER
    assert "iat" in late_trust.reason
    # Trusted only until before the token expires: the token outlives its signer.
    short_trust = verify_at(token, signer, at, not_after=at + dt.timedelta(days=10))
    assert short_trust.verdict is Verdict.UNTRUSTED_ISSUER
    assert "after its document signer" in short_trust.reason


def test_unknown_signer_and_wrong_signature(token: str, signer: DocumentSigner) -> None:
    nobody = verify_token(token, trust=SignerList(), at=signer.issued_at)
    assert (nobody.verdict, nobody.stage) == (
        Verdict.UNTRUSTED_ISSUER,
        TokenStage.SIGNATURE,
    )
    assert nobody.claims is None
    protected, _, _, payload, signature = raw_parts(token)
    forged_payload = payload.replace("张三".encode(), "李四".encode())
    forged = (
        "LC1:"
        + base45.b45encode(
            zlib.compress(
                assemble_sign1(cbor2.dumps(protected), forged_payload, signature)
            )
        ).decode()
    )
    result = verify_token(
        forged, trust=SignerList([signer.certificate]), at=signer.issued_at
    )
    assert (result.verdict, result.stage) == (
        Verdict.INVALID_SIGNATURE,
        TokenStage.SIGNATURE,
    )
    assert result.claims is None, (
        "claims of a token that failed its signature are not shown"
    )


def test_a_colliding_kid_tries_every_signer(token: str, signer: DocumentSigner) -> None:
    """Another trusted signer with the same kid comes first; ours still verifies."""
    impostor = self_signed_certificate(ec.generate_private_key(ec.SECP256R1()))[1]
    colliding = CollidingTrust(
        {
            signer_kid(signer.certificate): [
                TrustedSigner(impostor),
                TrustedSigner(signer.certificate),
            ]
        }
    )
    result = verify_token(token, trust=colliding, at=signer.issued_at)
    assert result.verdict is Verdict.VALID
    assert result.signer is not None and result.signer.certificate == signer.certificate


@dataclasses.dataclass
class CollidingTrust:
    """A SignerTrust that files certificates under any kid it is given."""

    by_kid: dict[bytes, list[TrustedSigner]]

    def signers_for_kid(self, kid: bytes) -> list[TrustedSigner]:
        return self.by_kid.get(kid, [])


# -- encoding refusals ---------------------------------------------------------------


def test_claims_are_checked_before_anything_is_signed(signer: DocumentSigner) -> None:
    at = signer.issued_at
    with pytest.raises(TokenClaimsError, match="aware"):
        licence_claims(at.replace(tzinfo=None))
    with pytest.raises(TokenClaimsError, match="after issued_at"):
        licence_claims(at, days=0)
    for bad in (1.5, None, ["a"], {"a": 1}, 2**70):
        with pytest.raises(TokenClaimsError, match="field 'x'"):
            licence_claims(at, x=bad)
    with pytest.raises(TokenClaimsError, match="licence_id"):
        dataclasses.replace(licence_claims(at), licence_id="")
    with pytest.raises(TokenClaimsError, match="index"):
        StatusReference(-1, "https://example/status")
    before = signer.node.granted_signatures(signer.label)
    noise = hashlib.shake_256(b"incompressible").hexdigest(4000)
    huge = licence_claims(at, scope=noise)
    with pytest.raises(TokenClaimsError, match="more than a QR code holds"):
        encode_token(huge, signer_key=signer.key, signer_certificate=signer.certificate)
    with pytest.raises(TokenClaimsError, match="licence id"):
        encode_token(
            {CLAIM_ISSUER: "350100"},
            signer_key=signer.key,
            signer_certificate=signer.certificate,
        )
    assert signer.node.granted_signatures(signer.label) == before, "nothing was signed"


def test_signer_key_must_match_its_p256_certificate(signer: DocumentSigner) -> None:
    claims = licence_claims(signer.issued_at)
    other_key, other_certificate = self_signed_certificate(
        ec.generate_private_key(ec.SECP256R1())
    )
    with pytest.raises(TokenSignerError, match="does not match"):
        encode_token(
            claims, signer_key=signer.key, signer_certificate=other_certificate
        )
    p384_key, p384_certificate = self_signed_certificate(
        ec.generate_private_key(ec.SECP384R1())
    )
    with pytest.raises(TokenSignerError, match="P-256"):
        encode_token(claims, signer_key=p384_key, signer_certificate=p384_certificate)
    # an in-memory key with its own certificate signs fine (tests and the bench use one)
    token = encode_token(
        claims, signer_key=other_key, signer_certificate=other_certificate
    )
    result = verify_token(
        token, trust=SignerList([other_certificate]), at=signer.issued_at
    )
    assert result.verdict is Verdict.VALID


def test_hc1_profile_carries_any_cwt_claims(signer: DocumentSigner) -> None:
    key, certificate = self_signed_certificate(ec.generate_private_key(ec.SECP256R1()))
    iat = int(signer.issued_at.timestamp())
    dcc = {
        "ver": "1.3.0",
        "nam": {"fn": "Muster", "fnt": "MUSTER"},
        "dob": "1990-01-01",
    }
    token = encode_token(
        {1: "AT", 6: iat, 4: iat + 86400, -260: {1: dcc}},
        signer_key=key,
        signer_certificate=certificate,
        profile="HC1",
    )
    assert token.startswith("HC1:")
    trust = SignerList([certificate])
    result = verify_token(
        token, trust=trust, at=signer.issued_at, profile=TokenProfile.HC1
    )
    assert result.verdict is Verdict.VALID
    assert result.claims is not None and result.claims.raw[-260] == {1: dcc}
    as_lc1 = verify_token(token, trust=trust, at=signer.issued_at)
    assert (as_lc1.verdict, as_lc1.stage) == (Verdict.MALFORMED, TokenStage.PREFIX)
    with pytest.raises(TokenClaimsError, match="LC1 tokens only"):
        encode_token(
            licence_claims(signer.issued_at),
            signer_key=key,
            signer_certificate=certificate,
            profile="HC1",
        )


def test_ps256_tokens_verify(signer: DocumentSigner) -> None:
    """The DCC's second algorithm: RSA-PSS, SHA-256, salt as long as the hash."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, certificate = self_signed_certificate(key)
    claims = licence_claims(signer.issued_at)
    protected = protected_header(ALG_PS256, signer_kid(certificate))
    payload = cbor2.dumps(claims.to_cwt())
    signature = key.sign(
        sig_structure(protected, payload),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
        hashes.SHA256(),
    )
    token = (
        "LC1:"
        + base45.b45encode(
            zlib.compress(assemble_sign1(protected, payload, signature))
        ).decode()
    )
    result = verify_token(token, trust=SignerList([certificate]), at=signer.issued_at)
    assert result.verdict is Verdict.VALID, result.reason
    assert result.algorithm == "PS256"
    # an EC certificate under the same kid cannot verify a PS256 signature
    ec_certificate = self_signed_certificate(ec.generate_private_key(ec.SECP256R1()))[1]
    mixed = CollidingTrust({signer_kid(certificate): [TrustedSigner(ec_certificate)]})
    assert verify_token(token, trust=mixed, at=signer.issued_at).verdict is (
        Verdict.INVALID_SIGNATURE
    )


# -- Base45 ------------------------------------------------------------------------


@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=600))
@example(b"")
@example(b"\xff\xff")
@example(b"\x00")
def test_base45_decoder_inverts_the_reference_encoder(data: bytes) -> None:
    assert b45decode(base45.b45encode(data).decode()) == data


@settings(max_examples=300, derandomize=True)
@given(st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:", max_size=40))
@example("GGW")  # 65536: one more than two bytes hold (RFC 9285 §4.2's example)
@example("ZZZ")
@example("U5")  # 5 + 45*30 = 1355 > 255
@example("A")
def test_base45_decoder_agrees_with_the_reference_decoder(text: str) -> None:
    try:
        expected: bytes | None = base45.b45decode(text)
    except ValueError:
        expected = None
    try:
        ours: bytes | None = b45decode(text)
    except Base45Error:
        ours = None
    assert ours == expected


@pytest.mark.parametrize("text", ["\n", "ABC\n", "abc", "AB€", "A B\t", "0\x00"])
def test_base45_decoder_refuses_characters_outside_the_alphabet(text: str) -> None:
    """Stricter than the reference package, which ignores surrounding whitespace."""
    with pytest.raises(Base45Error, match="not in the Base45 alphabet"):
        b45decode(text)


# -- helpers ---------------------------------------------------------------------------


def self_signed_certificate(key) -> tuple[object, x509.Certificate]:  # type: ignore[no-untyped-def]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Document Signer")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now + dt.timedelta(days=800))
        .sign(key, hashes.SHA256())
    )
    return key, certificate
