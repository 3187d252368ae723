"""SD-JWT VC: issue, present, verify; every rejection; the reference implementation both ways.

The issuer key is the region's real document signer: a key in the node's soft HSM with
its certificate from the node's document CA (tests.helpers.node). Hostile credentials
are signed by that same trusted signer, so each test reaches the check it is about
instead of stopping at the signature. Holder keys are ordinary software keys (the
holder's phone).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jwcrypto.jwk import JWK
from sd_jwt.common import SDObj
from sd_jwt.holder import SDJWTHolder
from sd_jwt.issuer import SDJWTIssuer
from sd_jwt.verifier import SDJWTVerifier
from sqlalchemy import select

from certs.errors import DisclosureNotFoundError, SdJwtError, TokenSignerError
from certs.sdjwt import (
    MAX_DISCLOSURES,
    MAX_PRESENTATION_LENGTH,
    PresentationVerification,
    b64url_encode,
    issue_sd_jwt,
    present,
    public_jwk,
    sign_compact_jws,
    verify_presentation,
)
from certs.token import SignerList, StatusReference, TrustedSigner, signer_kid
from certs.verdict import Verdict
from hsm_sim.api import KeyUsage
from hsm_sim.audit import AuditEntry
from pki.ca_models import ServicePurpose
from pki.timestamping import service_credential
from tests.helpers.node import Node, build_node

ISSUER = "https://zwfw.fj.example.gov.cn"
VCT = "urn:yinxin:licence:11100000000013338W011"
STATUS_URI = "https://zwfw.fj.example.gov.cn/status/1"
CLAIMS = {
    "identifier": "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.002.S",
    "name": "福州某某科技有限公司",
    "uscc": "91350100M000100Y43",
    "legal_representative": "张三",
    "registered_capital": "壹佰万元整",
    "address": "福建省福州市鼓楼区某某路1号",
    "business_scope": ["软件开发", "信息技术咨询服务"],
}
ALWAYS = frozenset({"identifier", "name", "uscc"})
DISCLOSABLE = frozenset(set(CLAIMS) - ALWAYS)


class DocumentSigner:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.label, self.certificate, self.chain = service_credential(
            node.ca, ServicePurpose.DOCUMENT_SIGNER
        )
        self.key = node.keystore.private_key(self.label, usage=KeyUsage.TOKEN)
        self.trust = SignerList([self.certificate])


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocumentSigner]:
    node = build_node(Path(tmp_path_factory.mktemp("sdjwt-node")) / "node")
    yield DocumentSigner(node)
    node.close()


@pytest.fixture(scope="module")
def now(signer: DocumentSigner) -> dt.datetime:
    """A little after the document signer's certificate was made."""
    return max(
        dt.datetime.now(dt.UTC), signer.certificate.not_valid_before_utc
    ).replace(microsecond=0) + dt.timedelta(seconds=1)


@pytest.fixture(scope="module")
def holder() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def issue(
    signer: DocumentSigner,
    now: dt.datetime,
    *,
    holder: ec.EllipticCurvePrivateKey | None = None,
    claims: Mapping[str, Any] = CLAIMS,
    **overrides: Any,
) -> str:
    arguments: dict[str, Any] = {
        "disclosable": DISCLOSABLE,
        "always": ALWAYS,
        "vct": VCT,
        "issuer": ISSUER,
        "iat": now,
        "exp": now + dt.timedelta(days=30),
        "status": {"idx": 42, "uri": STATUS_URI},
        "cnf_jwk": public_jwk(holder.public_key()) if holder is not None else None,
        "signer_key": signer.key,
        "signer_certificate": signer.certificate,
    }
    arguments.update(overrides)
    return issue_sd_jwt(claims, **arguments)


def verify(
    signer: DocumentSigner, presentation: str, now: dt.datetime, **options: Any
) -> PresentationVerification:
    return verify_presentation(presentation, trust=signer.trust, now=now, **options)


def b64json(value: Any) -> str:
    return b64url_encode(json.dumps(value, ensure_ascii=False).encode("utf-8"))


def digest(disclosure: str) -> str:
    return b64url_encode(hashlib.sha256(disclosure.encode("ascii")).digest())


def disclosure(name: str | None, value: Any, salt: str | None = None) -> str:
    salt = salt if salt is not None else b64url_encode(secrets.token_bytes(16))
    return b64json([salt, value] if name is None else [salt, name, value])


def raw_jws(header: Mapping[str, Any], payload: Mapping[str, Any], key: Any) -> str:
    """A JWS with any header, signed ES256 by any key: the attacker's tool."""
    signing_input = f"{b64json(header)}.{b64json(payload)}"
    r, s = decode_dss_signature(
        key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    )
    return f"{signing_input}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def envelope(now: dt.datetime, **claims: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "iat": int(now.timestamp()),
        "exp": int((now + dt.timedelta(days=30)).timestamp()),
        "vct": VCT,
        "_sd_alg": "sha-256",
    }
    base.update(claims)
    return base


def signed(
    signer: DocumentSigner, payload: Mapping[str, Any], typ: str = "dc+sd-jwt"
) -> str:
    """An issuer JWT over an arbitrary payload, by the trusted document signer."""
    return sign_compact_jws(
        payload,
        typ=typ,
        signer_key=signer.key,
        signer_certificate=signer.certificate,
        operation="test",
    )


def jwt_header(token: str) -> dict[str, Any]:
    segment = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def jwt_payload(token: str) -> dict[str, Any]:
    segment = token.split("~")[0].split(".")[1]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def assert_rejected(
    result: PresentationVerification, verdict: Verdict, words: str
) -> None:
    assert result.verdict is verdict, result.reason
    assert words in result.reason
    assert not result.valid


# --- issuing ---------------------------------------------------------------------


def test_issued_credential_has_the_sd_jwt_vc_shape(signer, now, holder) -> None:
    credential = issue(signer, now, holder=holder, decoy_digests=3)
    jwt, *disclosures, last = credential.split("~")
    assert last == ""
    header = jwt_header(jwt)
    assert header["alg"] == "ES256"
    assert header["typ"] == "dc+sd-jwt"
    assert header["kid"] == b64url_encode(signer_kid(signer.certificate))
    assert base64.b64decode(header["x5c"][0]) == signer.certificate.public_bytes(
        Encoding.DER
    )
    payload = jwt_payload(jwt)
    assert payload["iss"] == ISSUER and payload["vct"] == VCT
    assert payload["_sd_alg"] == "sha-256"
    assert payload["status"] == {"status_list": {"idx": 42, "uri": STATUS_URI}}
    assert payload["cnf"] == {"jwk": public_jwk(holder.public_key())}
    assert payload["exp"] - payload["iat"] == 30 * 86400
    # Always-shown fields are in clear, disclosable ones only as digests.
    assert {name: payload[name] for name in ALWAYS} == {n: CLAIMS[n] for n in ALWAYS}
    assert not DISCLOSABLE & set(payload)
    assert len(disclosures) == len(DISCLOSABLE)
    assert len(payload["_sd"]) == len(DISCLOSABLE) + 3
    assert payload["_sd"] == sorted(payload["_sd"])
    assert {digest(d) for d in disclosures} < set(payload["_sd"])
    decoded = [
        json.loads(base64.urlsafe_b64decode(d + "=" * (-len(d) % 4)))
        for d in disclosures
    ]
    assert {name: value for _, name, value in decoded} == {
        n: CLAIMS[n] for n in DISCLOSABLE
    }
    salts = [salt for salt, _, _ in decoded]
    assert len(set(salts)) == len(salts)
    assert all(len(base64.urlsafe_b64decode(s + "==")) == 16 for s in salts)


def test_issuing_signs_once_with_the_document_signer_and_is_audited(
    signer, now
) -> None:
    before = signer.node.granted_signatures(signer.label)
    issue(signer, now)
    assert signer.node.granted_signatures(signer.label) == before + 1
    with signer.node.sessions() as session:
        last = session.scalars(
            select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(1)
        ).one()
    assert (last.key_label, last.operation) == (signer.label, "sign-sd-jwt-vc")


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (
            {"disclosable": DISCLOSABLE - {"address"}},
            "neither disclosable nor always shown: address",
        ),
        (
            {"always": ALWAYS | {"address"}},
            "both disclosable and always shown: address",
        ),
        ({"vct": ""}, "vct and issuer"),
        ({"exp": dt.datetime(2000, 1, 1, tzinfo=dt.UTC)}, "expire after"),
        ({"status": {"idx": -1, "uri": STATUS_URI}}, "non-negative"),
        ({"status": {"idx": 1}}, "status is {idx, uri}"),
        (
            {"cnf_jwk": {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}},
            "not an EC P-256 key",
        ),
        (
            {"cnf_jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"}},
            "private key",
        ),
        ({"decoy_digests": 100}, "decoy"),
    ],
)
def test_bad_issuance_requests_are_refused(signer, now, overrides, words) -> None:
    with pytest.raises(SdJwtError, match=words.replace("{", r"\{").replace("}", r"\}")):
        issue(signer, now, **overrides)


def test_reserved_and_unencodable_claims_are_refused(signer, now) -> None:
    with pytest.raises(SdJwtError, match="reserved .*: status"):
        issue(
            signer, now, claims={**CLAIMS, "status": "ok"}, always=ALWAYS | {"status"}
        )
    with pytest.raises(SdJwtError, match="must be JSON"):
        issue(signer, now, claims={**CLAIMS, "name": {1, 2}})
    with pytest.raises(ValueError, match="aware"):
        issue(signer, now, iat=now.replace(tzinfo=None))


def test_a_signer_key_that_is_not_the_certificate_s_is_refused(signer, now) -> None:
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TokenSignerError, match="not the signer key's certificate"):
        issue(signer, now, signer_key=stranger)
    with pytest.raises(TokenSignerError, match="P-256"):
        issue(signer, now, signer_key=ec.generate_private_key(ec.SECP384R1()))


# --- presenting and verifying ------------------------------------------------------


def test_presentation_shows_only_the_chosen_fields(signer, now) -> None:
    credential = issue(signer, now)
    shown = present(credential, disclose=["address", "business_scope"])
    assert shown.count("~") == 3 and shown.endswith("~")
    result = verify(signer, shown, now)
    assert result.verdict is Verdict.VALID, result.reason
    assert dict(result.fields) == {
        name: CLAIMS[name] for name in ALWAYS | {"address", "business_scope"}
    }
    assert result.disclosed == {"address", "business_scope"}
    assert (result.issuer, result.vct) == (ISSUER, VCT)
    assert result.status == StatusReference(index=42, uri=STATUS_URI)
    assert result.issued_at == now and result.expires_at == now + dt.timedelta(days=30)
    assert result.signer is not None and result.signer.certificate == signer.certificate
    assert not result.key_bound


def test_presenting_nothing_and_everything(signer, now) -> None:
    credential = issue(signer, now, decoy_digests=4)
    assert dict(verify(signer, present(credential, disclose=[]), now).fields) == {
        name: CLAIMS[name] for name in ALWAYS
    }
    everything = verify(signer, present(credential, disclose=sorted(DISCLOSABLE)), now)
    assert dict(everything.fields) == CLAIMS
    assert verify(signer, credential, now).verdict is Verdict.VALID


def test_presenting_a_field_the_credential_cannot_disclose_is_refused(
    signer, now
) -> None:
    credential = issue(signer, now)
    with pytest.raises(DisclosureNotFoundError, match="named name, phone"):
        present(credential, disclose=["address", "phone", "name"])
    with pytest.raises(SdJwtError, match="issuance form"):
        present(credential.rstrip("~"), disclose=[])


def test_key_bound_presentation_verifies(signer, now, holder) -> None:
    credential = issue(signer, now, holder=holder)
    shown = present(
        credential,
        disclose=["address"],
        holder_key=holder,
        nonce="n-1",
        aud="bank",
        now=now,
    )
    assert not shown.endswith("~")
    result = verify(
        signer,
        shown,
        now,
        expected_nonce="n-1",
        expected_aud="bank",
        require_key_binding=True,
    )
    assert result.verdict is Verdict.VALID, result.reason
    assert result.key_bound
    assert set(result.fields) == ALWAYS | {"address"}


def test_a_bound_credential_is_accepted_only_with_its_holders_proof(
    signer, now, holder
) -> None:
    # Without a key-binding JWT a presentation of a bound credential is a copy anyone
    # who once saw it could replay, whether or not the verifier asks for a nonce.
    credential = issue(signer, now, holder=holder)
    for copied in (present(credential, disclose=["address"]), credential):
        assert_rejected(
            verify(signer, copied, now),
            Verdict.INVALID_SIGNATURE,
            "bound to its holder's key, but the presentation has no key-binding JWT",
        )
    proved = present(
        credential, disclose=["address"], holder_key=holder, nonce="n", aud="a", now=now
    )
    result = verify(signer, proved, now)
    assert result.verdict is Verdict.VALID and result.key_bound, result.reason
    # A credential without cnf needs none, unless the verifier requires it.
    plain = present(issue(signer, now), disclose=["address"])
    assert verify(signer, plain, now).verdict is Verdict.VALID
    assert_rejected(
        verify(
            signer,
            plain,
            now,
            expected_nonce="n",
            expected_aud="a",
            require_key_binding=True,
        ),
        Verdict.INVALID_SIGNATURE,
        "required",
    )


@pytest.mark.parametrize(
    ("nonce", "aud", "words"),
    [
        ("n-2", "bank", "nonce does not match"),
        ("n-1", "another-bank", "audience is another verifier"),
    ],
)
def test_a_replayed_presentation_is_refused(
    signer, now, holder, nonce, aud, words
) -> None:
    credential = issue(signer, now, holder=holder)
    shown = present(
        credential,
        disclose=["address"],
        holder_key=holder,
        nonce="n-1",
        aud="bank",
        now=now,
    )
    result = verify(
        signer,
        shown,
        now,
        expected_nonce=nonce,
        expected_aud=aud,
        require_key_binding=True,
    )
    assert_rejected(result, Verdict.INVALID_SIGNATURE, words)
    assert result.fields == {}


def test_key_binding_checked_without_a_nonce_says_it_may_be_a_replay(
    signer, now, holder
) -> None:
    credential = issue(signer, now, holder=holder)
    shown = present(
        credential, disclose=[], holder_key=holder, nonce="n-1", aud="bank", now=now
    )

    fresh = verify(signer, shown, now, expected_nonce="n-1", expected_aud="bank")
    unchecked = verify(signer, shown, now)

    assert fresh.verdict is unchecked.verdict is Verdict.VALID
    assert fresh.key_bound and unchecked.key_bound
    assert fresh.reason == "the presentation is valid"
    assert "may be a replay" in unchecked.reason


@pytest.mark.parametrize(
    ("made_at", "words"),
    [
        (dt.timedelta(minutes=-30), "too old"),
        (dt.timedelta(minutes=10), "in the future"),
    ],
)
def test_a_key_binding_jwt_out_of_its_time_is_refused(
    signer, now, holder, made_at, words
) -> None:
    credential = issue(signer, now, holder=holder)
    shown = present(
        credential,
        disclose=[],
        holder_key=holder,
        nonce="n",
        aud="a",
        now=now + made_at,
    )
    result = verify(signer, shown, now, expected_nonce="n", expected_aud="a")
    assert_rejected(result, Verdict.INVALID_SIGNATURE, words)


def test_key_binding_over_other_disclosures_is_refused(signer, now, holder) -> None:
    credential = issue(signer, now, holder=holder)
    jwt, *disclosures, _ = credential.split("~")
    shown = present(
        credential, disclose=[], holder_key=holder, nonce="n", aud="a", now=now
    )
    kb_jwt = shown.split("~")[-1]
    # A disclosure slipped in after the holder bound the presentation.
    widened = "~".join([jwt, disclosures[0], kb_jwt])
    result = verify(signer, widened, now, expected_nonce="n", expected_aud="a")
    assert_rejected(result, Verdict.INVALID_SIGNATURE, "sd_hash")


@pytest.mark.parametrize("claim", ["nonce", "aud", "sd_hash"])
def test_a_key_binding_jwt_with_a_lone_surrogate_is_refused(
    signer, now, holder, claim: str
) -> None:
    """JSON may escape half a UTF-16 pair ("\\ud800"); Python reads it into a str that
    cannot be encoded, and comparing it with the expected nonce raised
    UnicodeEncodeError out of verify_presentation. The holder signs the KB-JWT, so
    the holder chooses it."""
    credential = issue(signer, now, holder=holder)
    presented = present(credential, disclose=[])
    claims = {
        "iat": int(now.timestamp()),
        "aud": "a",
        "nonce": "n",
        "sd_hash": digest(presented),
    }
    claims[claim] = "\ud800"
    header = b64url_encode(json.dumps({"alg": "ES256", "typ": "kb+jwt"}).encode())
    body = b64url_encode(json.dumps(claims).encode("ascii"))  # escapes the surrogate
    signing_input = f"{header}.{body}"
    r, s = decode_dss_signature(
        holder.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    )
    kb_jwt = f"{signing_input}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
    result = verify(
        signer, presented + kb_jwt, now, expected_nonce="n", expected_aud="a"
    )
    assert_rejected(result, Verdict.INVALID_SIGNATURE, "key binding")
def test_key_binding_by_another_key_or_of_another_type_is_refused(
    signer, now, holder
) -> None:
    credential = issue(signer, now, holder=holder)
    presented = present(credential, disclose=["address"])
    kb_payload = {
        "iat": int(now.timestamp()),
        "aud": "a",
        "nonce": "n",
        "sd_hash": digest(presented),
    }
    thief = ec.generate_private_key(ec.SECP256R1())
    by_thief = presented + raw_jws({"alg": "ES256", "typ": "kb+jwt"}, kb_payload, thief)
    assert_rejected(
        verify(signer, by_thief, now, expected_nonce="n", expected_aud="a"),
        Verdict.INVALID_SIGNATURE,
        "signature does not verify",
    )
    wrong_typ = presented + raw_jws({"alg": "ES256", "typ": "JWT"}, kb_payload, holder)
    assert_rejected(
        verify(signer, wrong_typ, now, expected_nonce="n", expected_aud="a"),
        Verdict.INVALID_SIGNATURE,
        "typ is not kb+jwt",
    )
    hs256 = f"{b64json({'alg': 'HS256', 'typ': 'kb+jwt'})}.{b64json(kb_payload)}"
    mac = hmac.new(b"k", hs256.encode(), hashlib.sha256).digest()
    assert_rejected(
        verify(signer, f"{presented}{hs256}.{b64url_encode(mac)}", now),
        Verdict.INVALID_SIGNATURE,
        "not ES256",
    )


def test_key_binding_required_but_missing_or_unbindable(signer, now, holder) -> None:
    unbound = present(issue(signer, now, holder=holder), disclose=["address"])
    result = verify(
        signer,
        unbound,
        now,
        expected_nonce="n",
        expected_aud="a",
        require_key_binding=True,
    )
    assert_rejected(result, Verdict.INVALID_SIGNATURE, "required")
    with pytest.raises(ValueError, match="expected nonce and audience"):
        verify(signer, unbound, now, require_key_binding=True)
    # A KB-JWT on a credential that names no holder key proves nothing.
    no_cnf = present(issue(signer, now), disclose=[])
    kb = raw_jws(
        {"alg": "ES256", "typ": "kb+jwt"},
        {
            "iat": int(now.timestamp()),
            "aud": "a",
            "nonce": "n",
            "sd_hash": digest(no_cnf),
        },
        holder,
    )
    assert_rejected(
        verify(signer, no_cnf + kb, now), Verdict.MALFORMED, "no holder key"
    )


def test_presenting_with_the_wrong_holder_key_is_refused(signer, now, holder) -> None:
    credential = issue(signer, now, holder=holder)
    with pytest.raises(SdJwtError, match="not the key the credential is bound to"):
        present(
            credential,
            disclose=[],
            holder_key=ec.generate_private_key(ec.SECP256R1()),
            nonce="n",
            aud="a",
        )
    with pytest.raises(SdJwtError, match="nonce and an audience"):
        present(credential, disclose=[], holder_key=holder, nonce="n")
    with pytest.raises(SdJwtError, match="need a holder key"):
        present(credential, disclose=[], nonce="n", aud="a")
    with pytest.raises(SdJwtError, match="not bound"):
        present(issue(signer, now), disclose=[], holder_key=holder, nonce="n", aud="a")


# --- time, trust and status ----------------------------------------------------------


def test_expired_and_not_yet_valid_credentials(signer, now) -> None:
    shown = present(
        issue(signer, now, exp=now + dt.timedelta(days=1)), disclose=["address"]
    )
    expired = verify(signer, shown, now + dt.timedelta(days=2))
    assert_rejected(expired, Verdict.EXPIRED, "expired")
    # Authentic but expired: the verifier still shows what it was.
    assert expired.fields["address"] == CLAIMS["address"]
    early = verify(signer, shown, now - dt.timedelta(hours=1))
    assert_rejected(early, Verdict.NOT_YET_VALID, "valid only from")


def test_untrusted_signers_are_refused(signer, now) -> None:
    shown = present(issue(signer, now), disclose=[])
    assert_rejected(
        verify_presentation(shown, trust=SignerList([]), now=now),
        Verdict.UNTRUSTED_ISSUER,
        "not a trusted document signer",
    )
    # A forger who copies the kid (and x5c) of the real signer still needs its key.
    forger = ec.generate_private_key(ec.SECP256R1())
    header = jwt_header(shown)
    forged = raw_jws(header, jwt_payload(shown), forger) + "~"
    assert_rejected(
        verify(signer, forged, now), Verdict.INVALID_SIGNATURE, "does not verify"
    )
    # Without a kid, x5c only chooses the trusted certificate, and its own is not trusted.
    self_signed = _self_signed(forger)
    x5c_only = {
        "alg": "ES256",
        "typ": "dc+sd-jwt",
        "x5c": [base64.b64encode(self_signed.public_bytes(Encoding.DER)).decode()],
    }
    assert_rejected(
        verify(signer, raw_jws(x5c_only, jwt_payload(shown), forger) + "~", now),
        Verdict.UNTRUSTED_ISSUER,
        "not a trusted",
    )
    foreign_kid = raw_jws({**header, "kid": "12"}, jwt_payload(shown), forger) + "~"
    assert_rejected(
        verify(signer, foreign_kid, now), Verdict.UNTRUSTED_ISSUER, "kid names no"
    )
    no_signer = (
        raw_jws({"alg": "ES256", "typ": "dc+sd-jwt"}, jwt_payload(shown), forger) + "~"
    )
    assert_rejected(
        verify(signer, no_signer, now), Verdict.UNTRUSTED_ISSUER, "names no signer"
    )


def test_a_credential_issued_outside_the_signer_certificate_s_validity_is_refused(
    signer, now
) -> None:
    before = signer.certificate.not_valid_before_utc - dt.timedelta(days=1)
    early = envelope(now, iat=int(before.timestamp()))
    assert_rejected(
        verify(signer, signed(signer, early) + "~", now),
        Verdict.UNTRUSTED_ISSUER,
        "not valid at iat",
    )
    after = signer.certificate.not_valid_after_utc + dt.timedelta(days=1)
    outliving = envelope(now, exp=int(after.timestamp()))
    assert_rejected(
        verify(signer, signed(signer, outliving) + "~", now),
        Verdict.UNTRUSTED_ISSUER,
        "after its document signer",
    )
    # The issuer refuses to make such credentials in the first place.
    with pytest.raises(SdJwtError, match="within the document signer's validity"):
        issue(signer, now, exp=after)
    with pytest.raises(SdJwtError, match="within the document signer's validity"):
        issue(signer, now, iat=before)


def test_a_signer_trusted_for_another_issuer_is_refused(signer, now) -> None:
    shown = present(issue(signer, now), disclose=["address"])
    other_region = SignerList(
        [TrustedSigner(signer.certificate, issuer="https://other.example")]
    )
    result = verify_presentation(shown, trust=other_region, now=now)
    assert_rejected(result, Verdict.UNTRUSTED_ISSUER, "trusted for issuer")
    assert result.fields == {}


def test_status_lookup_gives_revoked_and_suspended(signer, now) -> None:
    shown = present(issue(signer, now), disclose=["address"])
    asked: list[StatusReference] = []

    def lookup(status: int) -> Any:
        def answer(reference: StatusReference) -> int:
            asked.append(reference)
            return status

        return answer

    assert verify(signer, shown, now, status_lookup=lookup(0)).verdict is Verdict.VALID
    assert_rejected(
        verify(signer, shown, now, status_lookup=lookup(1)), Verdict.REVOKED, "revoked"
    )
    assert_rejected(
        verify(signer, shown, now, status_lookup=lookup(2)),
        Verdict.SUSPENDED,
        "suspended",
    )
    assert asked == [StatusReference(index=42, uri=STATUS_URI)] * 3


# --- hostile issuer JWTs ---------------------------------------------------------------


def test_unsigned_and_symmetric_issuer_jwts_are_refused(signer, now) -> None:
    shown = present(issue(signer, now), disclose=["address"])
    jwt, rest = shown.split("~", 1)
    header, payload = jwt_header(jwt), jwt_payload(jwt)
    none = f"{b64json({**header, 'alg': 'none'})}.{b64json(payload)}."
    assert_rejected(
        verify(signer, f"{none}~{rest}", now), Verdict.MALFORMED, "not ES256"
    )
    # HS256 keyed with the signer's public key: the classic algorithm confusion.
    signing_input = f"{b64json({**header, 'alg': 'HS256'})}.{b64json(payload)}"
    secret = signer.certificate.public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo
    )
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    hs = f"{signing_input}.{b64url_encode(mac)}"
    assert_rejected(verify(signer, f"{hs}~{rest}", now), Verdict.MALFORMED, "not ES256")
    for alg in ("ES512", "EdDSA", "es256", None):
        other = raw_jws({**header, "alg": alg}, payload, signer.key)
        assert_rejected(
            verify(signer, f"{other}~{rest}", now), Verdict.MALFORMED, "not ES256"
        )


@pytest.mark.parametrize(
    "typ", ["JWT", "kb+jwt", "statuslist+jwt", "example+sd-jwt", None]
)
def test_issuer_jwt_of_another_type_is_refused(signer, now, typ) -> None:
    shown = present(issue(signer, now), disclose=[])
    header = {**jwt_header(shown), "typ": typ}
    token = raw_jws(header, jwt_payload(shown), signer.key) + "~"
    assert_rejected(verify(signer, token, now), Verdict.MALFORMED, "typ is not")


def test_older_and_spelled_out_media_types_are_accepted(signer, now) -> None:
    shown = present(issue(signer, now), disclose=[])
    for typ in ("vc+sd-jwt", "application/dc+sd-jwt", "DC+SD-JWT"):
        token = (
            raw_jws({**jwt_header(shown), "typ": typ}, jwt_payload(shown), signer.key)
            + "~"
        )
        assert verify(signer, token, now).verdict is Verdict.VALID


def test_critical_headers_and_duplicate_members_are_refused(signer, now) -> None:
    shown = present(issue(signer, now), disclose=[])
    crit = (
        raw_jws({**jwt_header(shown), "crit": ["exp"]}, jwt_payload(shown), signer.key)
        + "~"
    )
    assert_rejected(verify(signer, crit, now), Verdict.MALFORMED, "critical")
    header_text = json.dumps(jwt_header(shown))
    duplicated = header_text[:-1] + ', "alg": "none"}'
    signing_input = f"{b64url_encode(duplicated.encode())}.{shown.split('.')[1]}"
    r, s = decode_dss_signature(
        signer.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    )
    token = f"{signing_input}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}~"
    assert_rejected(
        verify(signer, token, now), Verdict.MALFORMED, "repeats a member name"
    )


def test_tampered_payload_and_signature_encodings_are_refused(signer, now) -> None:
    shown = present(issue(signer, now), disclose=[])
    jwt = shown.split("~")[0]
    header_segment, _, signature = jwt.split(".")
    richer = {**jwt_payload(jwt), "registered_capital": "壹亿元整"}
    tampered = f"{header_segment}.{b64json(richer)}.{signature}~"
    assert_rejected(
        verify(signer, tampered, now), Verdict.INVALID_SIGNATURE, "does not verify"
    )
    # The last base64url character of a 64-byte signature carries 2 unused bits.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    twin = signature[:-1] + alphabet[last ^ 1]
    assert_rejected(
        verify(signer, shown.replace(signature, twin), now),
        Verdict.MALFORMED,
        "canonical",
    )
    short = base64.urlsafe_b64decode(signature + "==")[:63]
    assert_rejected(
        verify(signer, shown.replace(signature, b64url_encode(short)), now),
        Verdict.INVALID_SIGNATURE,
        "64 bytes",
    )


# --- hostile disclosures ---------------------------------------------------------------


def test_a_disclosure_not_in_the_credential_is_refused(signer, now) -> None:
    credential = issue(signer, now)
    jwt = credential.split("~")[0]
    invented = disclosure("registered_capital", "壹亿元整")
    assert_rejected(
        verify(signer, f"{jwt}~{invented}~", now),
        Verdict.MALFORMED,
        "not in the credential",
    )
    # A disclosure from another credential of the same holder is just as foreign.
    other = issue(signer, now).split("~")[1]
    assert_rejected(
        verify(signer, f"{jwt}~{other}~", now),
        Verdict.MALFORMED,
        "not in the credential",
    )


def test_a_disclosure_presented_twice_is_refused(signer, now) -> None:
    jwt, first, *_ = issue(signer, now).split("~")
    assert_rejected(
        verify(signer, f"{jwt}~{first}~{first}~", now), Verdict.MALFORMED, "twice"
    )


def test_a_digest_listed_twice_is_refused(signer, now) -> None:
    address = disclosure("address", "x")
    payload = envelope(now, _sd=[digest(address), digest(address)])
    assert_rejected(
        verify(signer, f"{signed(signer, payload)}~{address}~", now),
        Verdict.MALFORMED,
        "twice",
    )
    # Also when the second copy hides in a nested object.
    nested = envelope(now, _sd=[digest(address)], office={"_sd": [digest(address)]})
    assert_rejected(
        verify(signer, f"{signed(signer, nested)}~{address}~", now),
        Verdict.MALFORMED,
        "twice",
    )


def test_a_disclosure_overwriting_a_claim_in_clear_is_refused(signer, now) -> None:
    impostor = disclosure("name", "另一家公司")
    payload = envelope(now, name=CLAIMS["name"], _sd=[digest(impostor)])
    assert_rejected(
        verify(signer, f"{signed(signer, payload)}~{impostor}~", now),
        Verdict.MALFORMED,
        "overwrite the claim 'name'",
    )


@pytest.mark.parametrize("name", ["iss", "exp", "cnf", "status", "vct", "nbf"])
def test_envelope_claims_cannot_be_disclosed(signer, now, name) -> None:
    hidden = disclosure(name, "x")
    payload = envelope(now, _sd=[digest(hidden)])
    if (
        name != "exp"
    ):  # iat and exp are required: exp stays in clear, the disclosure collides
        payload.pop(name, None)
    assert_rejected(
        verify(signer, f"{signed(signer, payload)}~{hidden}~", now),
        Verdict.MALFORMED,
        "must not be selectively disclosed",
    )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (["c2FsdHNhbHRzYWx0c2FsdA"], "not [salt, name, value]"),
        (["c2FsdHNhbHRzYWx0c2FsdA", "a", "b", "c"], "not [salt, name, value]"),
        ({"salt": "x"}, "not [salt, name, value]"),
        (["short", "address", "x"], "salt"),
        ([12345678901234567890123, "address", "x"], "salt"),
        (["c2FsdHNhbHRzYWx0c2FsdA", 7, "x"], "claim name is not a string"),
        (["c2FsdHNhbHRzYWx0c2FsdA", "_sd", []], "control name"),
        (["c2FsdHNhbHRzYWx0c2FsdA", "...", "x"], "control name"),
    ],
)
def test_badly_shaped_disclosures_are_refused(signer, now, content, words) -> None:
    bad = b64json(content)
    payload = envelope(now, _sd=[digest(bad)])
    assert_rejected(
        verify(signer, f"{signed(signer, payload)}~{bad}~", now),
        Verdict.MALFORMED,
        words,
    )


def test_disclosures_that_are_not_base64url_json_are_refused(signer, now) -> None:
    jwt = issue(signer, now).split("~")[0]
    for bad, words in [
        ("not+base64/", "not base64url"),
        (b64url_encode(b"\xff\xfe"), "not JSON"),
        (b64url_encode(b'["c2FsdHNhbHRzYWx0c2FsdA", "a", NaN]'), "not JSON"),
        (b64json([["c2FsdHNhbHRzYWx0c2FsdA"]]), "not [salt"),
    ]:
        assert_rejected(verify(signer, f"{jwt}~{bad}~", now), Verdict.MALFORMED, words)
    assert_rejected(
        verify(signer, f"{jwt}~~", now), Verdict.MALFORMED, "empty disclosure"
    )


def test_array_element_disclosures_follow_their_rules(signer, now) -> None:
    element = disclosure(None, "食品销售")
    named = disclosure("scope", "食品销售")
    payload = envelope(
        now, scope=["软件开发", {"...": digest(element)}, {"...": digest(named)}]
    )
    token = signed(signer, payload)
    result = verify(signer, f"{token}~{element}~", now)
    assert result.verdict is Verdict.VALID, result.reason
    assert result.fields["scope"] == ["软件开发", "食品销售"]
    assert_rejected(
        verify(signer, f"{token}~{named}~", now), Verdict.MALFORMED, "has a claim name"
    )
    object_member = disclosure(None, "x")
    as_member = envelope(now, _sd=[digest(object_member)])
    assert_rejected(
        verify(signer, f"{signed(signer, as_member)}~{object_member}~", now),
        Verdict.MALFORMED,
        "no claim name",
    )
    mixed = envelope(now, scope=[{"...": digest(element), "extra": 1}])
    assert_rejected(
        verify(signer, f"{signed(signer, mixed)}~", now),
        Verdict.MALFORMED,
        "other members",
    )


@pytest.mark.parametrize(
    ("claims", "words"),
    [
        ({"_sd_alg": "sha-512"}, "_sd_alg"),
        ({"_sd": "not-a-list"}, "_sd is not an array"),
        ({"_sd": ["short"]}, "not a base64url SHA-256"),
        ({"vct": None}, "no vct"),
        ({"iss": 7}, "iss has the wrong type"),
        ({"exp": "tomorrow"}, "exp is not a NumericDate"),
        ({"iat": 10**30}, "out of range"),
        ({"status": {"status_list": {"idx": "1", "uri": STATUS_URI}}}, "non-negative"),
        ({"status": {"other": 1}}, "no status_list"),
        ({"cnf": {"kid": "x"}}, "cnf has no jwk"),
        ({"office": {"...": "x"}}, "'...' outside an array"),
        ({"office": {"_sd_alg": "sha-256"}}, "_sd_alg below"),
    ],
)
def test_malformed_credential_claims_are_refused(signer, now, claims, words) -> None:
    payload = {k: v for k, v in envelope(now, **claims).items() if v is not None}
    assert_rejected(
        verify(signer, f"{signed(signer, payload)}~", now), Verdict.MALFORMED, words
    )


def test_nested_disclosures_and_decoys_verify(signer, now) -> None:
    street = disclosure("street", "鼓楼区某某路1号")
    office = disclosure(
        "office", {"city": "福州", "_sd": sorted([digest(street), digest("decoy-1")])}
    )
    payload = envelope(now, _sd=sorted([digest(office), digest("decoy-2")]))
    token = signed(signer, payload)
    both = verify(signer, f"{token}~{office}~{street}~", now)
    assert both.verdict is Verdict.VALID, both.reason
    assert both.fields["office"] == {"city": "福州", "street": "鼓楼区某某路1号"}
    assert both.disclosed == {"office"}
    outer_only = verify(signer, f"{token}~{office}~", now)
    assert outer_only.fields["office"] == {"city": "福州"}
    # The inner disclosure alone has nowhere to go.
    assert_rejected(
        verify(signer, f"{token}~{street}~", now),
        Verdict.MALFORMED,
        "not in the credential",
    )


def test_present_takes_nested_disclosures_with_their_field(signer, now) -> None:
    street = disclosure("street", "鼓楼区某某路1号")
    office = disclosure("office", {"city": "福州", "_sd": [digest(street)]})
    credential = (
        f"{signed(signer, envelope(now, _sd=[digest(office)]))}~{street}~{office}~"
    )
    result = verify(signer, present(credential, disclose=["office"]), now)
    assert result.fields["office"] == {"city": "福州", "street": "鼓楼区某某路1号"}


# --- sizes -------------------------------------------------------------------------------


def test_oversized_inputs_are_refused_quickly(signer, now) -> None:
    jwt = issue(signer, now).split("~")[0]
    assert_rejected(
        verify(signer, "A" * (MAX_PRESENTATION_LENGTH + 1), now),
        Verdict.MALFORMED,
        "too long",
    )
    assert_rejected(
        verify(signer, jwt + "~A" * (MAX_DISCLOSURES + 1) + "~", now),
        Verdict.MALFORMED,
        "too many",
    )
    deep = b64url_encode(("[" * 5000 + "]" * 5000).encode())
    assert_rejected(
        verify(signer, f"{jwt}~{deep}~", now), Verdict.MALFORMED, "not JSON"
    )
    nested = disclosure("office", json.loads("[" * 40 + "]" * 40))
    payload = envelope(now, _sd=[digest(nested)])
    assert_rejected(
        verify(signer, f"{signed(signer, payload)}~{nested}~", now),
        Verdict.MALFORMED,
        "nested too deeply",
    )
    in_clear = envelope(now, office=json.loads("[" * 40 + "]" * 40))
    assert_rejected(
        verify(signer, f"{signed(signer, in_clear)}~", now),
        Verdict.MALFORMED,
        "nested too deeply",
    )
    assert_rejected(
        verify(signer, "東京~", now), Verdict.MALFORMED, "outside base64url"
    )
    assert_rejected(verify(signer, jwt, now), Verdict.MALFORMED, "no '~'")


# --- hypothesis: mutated presentations -----------------------------------------------------

_ALPHABET = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~=+/ \x00é"
)


@pytest.fixture(scope="module")
def sample(signer, now, holder) -> tuple[str, str]:
    credential = issue(signer, now, holder=holder, decoy_digests=2)
    plain = present(credential, disclose=["address", "business_scope"])
    bound = present(
        credential, disclose=["address"], holder_key=holder, nonce="n", aud="a", now=now
    )
    return plain, bound


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
@example(data=None)
def test_mutated_presentations_never_crash_and_never_widen(
    signer, now, sample, data
) -> None:
    plain, bound = sample
    if data is None:
        mutated, original = bound[:-1], bound
    else:
        original = data.draw(st.sampled_from([plain, bound]))
        mutated = original
        for _ in range(data.draw(st.integers(1, 4))):
            position = data.draw(st.integers(0, len(mutated)))
            action = data.draw(
                st.sampled_from(["replace", "insert", "delete", "cut", "repeat"])
            )
            if action == "replace" and position < len(mutated):
                mutated = (
                    mutated[:position]
                    + data.draw(st.sampled_from(_ALPHABET))
                    + mutated[position + 1 :]
                )
            elif action == "insert":
                mutated = (
                    mutated[:position]
                    + data.draw(st.text(_ALPHABET, max_size=8))
                    + mutated[position:]
                )
            elif action == "delete":
                mutated = (
                    mutated[:position]
                    + mutated[position + data.draw(st.integers(1, 50)) :]
                )
            elif action == "cut":
                mutated = mutated[:position]
            else:
                parts = mutated.split("~")
                mutated = "~".join(
                    [*parts[:-1], data.draw(st.sampled_from(parts)), parts[-1]]
                )
    result = verify(signer, mutated, now, expected_nonce="n", expected_aud="a")
    assert isinstance(result, PresentationVerification)
    assert isinstance(result.reason, str) and result.reason
    if result.verdict is Verdict.VALID:
        genuine = verify(signer, original, now, expected_nonce="n", expected_aud="a")
        assert _subset(result.fields, genuine.fields)
    else:
        assert result.fields == {}


def _subset(shown: Mapping[str, Any], genuine: Mapping[str, Any]) -> bool:
    return all(
        name in genuine and genuine[name] == value for name, value in shown.items()
    )


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=st.text(max_size=400))
def test_arbitrary_text_is_malformed_not_a_crash(signer, now, text) -> None:
    result = verify(signer, text, now)
    assert result.verdict in {
        Verdict.MALFORMED,
        Verdict.UNTRUSTED_ISSUER,
        Verdict.INVALID_SIGNATURE,
    }


# --- the reference implementation (sd-jwt, openwallet-foundation-labs/sd-jwt-python) ---------


def _issuer_key_callback(signer: DocumentSigner):
    def issuer_key(issuer: str, header: Mapping[str, Any]) -> JWK:
        assert issuer == ISSUER
        assert header["kid"] == b64url_encode(signer_kid(signer.certificate))
        return JWK.from_pyca(signer.certificate.public_key())

    return issuer_key


def test_reference_verifier_accepts_our_presentation_and_sees_only_the_chosen_fields(
    signer, now
) -> None:
    shown = present(issue(signer, now), disclose=["address"])
    verified = SDJWTVerifier(shown, _issuer_key_callback(signer)).get_verified_payload()
    licence_fields = {k: v for k, v in verified.items() if k in CLAIMS}
    assert licence_fields == {name: CLAIMS[name] for name in ALWAYS | {"address"}}
    assert not (DISCLOSABLE - {"address"}) & set(verified)


def test_reference_verifier_checks_our_key_binding(signer, now, holder) -> None:
    credential = issue(signer, now, holder=holder)
    shown = present(
        credential,
        disclose=["legal_representative"],
        holder_key=holder,
        nonce="n-1",
        aud="bank",
    )
    callback = _issuer_key_callback(signer)
    verified = SDJWTVerifier(shown, callback, expected_aud="bank", expected_nonce="n-1")
    assert verified.get_verified_payload()["legal_representative"] == "张三"
    assert "address" not in verified.get_verified_payload()
    with pytest.raises(ValueError, match="Invalid nonce"):
        SDJWTVerifier(shown, callback, expected_aud="bank", expected_nonce="n-2")
    ours = verify(
        signer,
        shown,
        dt.datetime.now(dt.UTC),
        expected_nonce="n-2",
        expected_aud="bank",
    )
    assert_rejected(ours, Verdict.INVALID_SIGNATURE, "nonce")


def test_our_verifier_accepts_the_reference_implementation_s_credential(
    signer, now
) -> None:
    issuer_key = ec.generate_private_key(ec.SECP256R1())
    certificate = _self_signed(issuer_key)
    holder_key = ec.generate_private_key(ec.SECP256R1())
    user_claims = {
        "iss": ISSUER,
        "iat": int(time.time()),
        "exp": int(time.time()) + 3600,
        "vct": VCT,
        "name": CLAIMS["name"],
        SDObj("address"): {"city": "福州", SDObj("street"): "鼓楼区某某路1号"},
        SDObj("legal_representative"): "张三",
        "business_scope": [SDObj("软件开发"), "信息技术咨询服务"],
    }
    issued = SDJWTIssuer(
        user_claims,
        JWK.from_pyca(issuer_key),
        holder_key=JWK.from_pyca(holder_key),
        add_decoy_claims=True,
        extra_header_parameters={
            "typ": "dc+sd-jwt",
            "kid": b64url_encode(signer_kid(certificate)),
        },
    ).sd_jwt_issuance
    holder = SDJWTHolder(issued)
    holder.create_presentation(
        {"address": {"street": True}, "business_scope": [True]},
        nonce="n-1",
        aud="bank",
        holder_key=JWK.from_pyca(holder_key),
    )
    result = verify_presentation(
        holder.sd_jwt_presentation,
        trust=SignerList([certificate]),
        now=dt.datetime.now(dt.UTC),
        expected_nonce="n-1",
        expected_aud="bank",
        require_key_binding=True,
    )
    assert result.verdict is Verdict.VALID, result.reason
    assert result.key_bound
    assert dict(result.fields) == {
        "name": CLAIMS["name"],
        "address": {"city": "福州", "street": "鼓楼区某某路1号"},
        "business_scope": ["软件开发", "信息技术咨询服务"],
    }
    wrong_nonce = verify_presentation(
        holder.sd_jwt_presentation,
        trust=SignerList([certificate]),
        now=dt.datetime.now(dt.UTC),
        expected_nonce="n-2",
        expected_aud="bank",
    )
    assert_rejected(wrong_nonce, Verdict.INVALID_SIGNATURE, "nonce")


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Document Signer")])
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
