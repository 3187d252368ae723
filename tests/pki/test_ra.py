"""The registration authority: CSRs (proof of possession, key policy, hostile input),
the subject always from registration data, and the new-HSM-key path cleaning up
after itself. Every refusal is checked to leave the node exactly as it was."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
from collections.abc import Callable, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from hsm_sim.api import AuditResult, KeyAlgorithm
from hsm_sim.errors import ErrorCategory, KeyExistsError
from pki.ca import CertificateAuthority
from pki.certificates import AgencySubject, agency_subject_name
from pki.errors import (
    AgencyNotFoundError,
    CsrError,
    InvalidUsccError,
    KeyPolicyError,
    LintFailedError,
    MissingAgencyError,
    PkiError,
    UnknownCaError,
    UnknownProfileError,
)
from pki.profiles import PROFILES, KeyUsageFlag
from pki.ra import MAX_CSR_BYTES, RegistrationAuthority, load_csr
from pki.registry import register_agency
from pki.uscc import compute_uscc_check_character
from tests.conftest import require_tool
from tests.helpers.node import (
    AGENCY_NAME,
    AGENCY_USCC,
    DESTROY_KEY,
    GENERATE_KEY,
    Node,
    build_node,
)

SHA256 = hashes.SHA256()
UNREGISTERED_BODY = "91350100M000200Y4"
UNREGISTERED_USCC = UNREGISTERED_BODY + compute_uscc_check_character(UNREGISTERED_BODY)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = build_node(tmp_path_factory.mktemp("ra") / "node")
    yield node
    node.close()


@dataclasses.dataclass(frozen=True)
class Snapshot:
    certificates: int
    granted: int
    audit_entries: int
    keys: tuple[str, ...]


def _snapshot(node: Node) -> Snapshot:
    return Snapshot(
        certificates=len(node.certificate_rows()),
        granted=node.granted_signatures(),
        audit_entries=node.audit_entry_count(),
        keys=tuple(info.label for info in node.keystore.list_keys()),
    )


def _with_audit_entries(snapshot: Snapshot, added: int) -> Snapshot:
    """`snapshot` with `added` more audit entries and nothing else changed."""
    return dataclasses.replace(snapshot, audit_entries=snapshot.audit_entries + added)


def _made_and_destroyed(label: str) -> list[tuple[str, str, AuditResult]]:
    """The audit trail of a key the RA made and destroyed again, signing nothing."""
    return [
        (GENERATE_KEY, label, AuditResult.GRANTED),
        (DESTROY_KEY, label, AuditResult.GRANTED),
    ]


def _csr(key, *, hash_algorithm=SHA256, subject=None, extensions=()) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        subject or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "csr subject")])
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(key, hash_algorithm).public_bytes(Encoding.PEM)


def _p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _bad_signature_csr() -> bytes:
    der = x509.load_pem_x509_csr(_csr(_p256())).public_bytes(Encoding.DER)
    # Change the subject inside the signed part: still a well-formed CSR, but the
    # signature no longer covers what it says.
    tampered = der.replace(b"csr subject", b"csr subjecT", 1)
    assert tampered != der
    return tampered


def _sm2_csr(tmp_path) -> bytes:
    openssl = require_tool("openssl")
    key = tmp_path / "sm2.key"
    subprocess.run(
        [openssl, "genpkey", "-algorithm", "SM2", "-out", key],
        check=True,
        capture_output=True,
    )
    made = subprocess.run(
        [
            openssl,
            "req",
            "-new",
            "-key",
            key,
            "-sm3",
            "-subj",
            "/CN=sm2",
            "-outform",
            "DER",
        ],
        check=True,
        capture_output=True,
    )
    return made.stdout


HOSTILE_CSRS: dict[str, tuple[Callable[[], bytes], type[PkiError], str]] = {
    "bad-signature": (_bad_signature_csr, CsrError, "does not prove possession"),
    "rsa-1024": (
        lambda: _csr(rsa.generate_private_key(65537, 1024)),
        KeyPolicyError,
        "RSA-1024) is too weak",
    ),
    "p-192": (
        lambda: _csr(ec.generate_private_key(ec.SECP192R1())),
        KeyPolicyError,
        "secp192r1) is too weak",
    ),
    "p-521": (
        lambda: _csr(ec.generate_private_key(ec.SECP521R1())),
        KeyPolicyError,
        "secp521r1) is not allowed",
    ),
    "rsa-4096": (
        lambda: _csr(rsa.generate_private_key(65537, 4096)),
        KeyPolicyError,
        "RSA-4096) is not allowed",
    ),
    "ed448": (
        lambda: _csr(ed448.Ed448PrivateKey.generate(), hash_algorithm=None),
        KeyPolicyError,
        "(Ed448) is not allowed",
    ),
    "dsa": (
        lambda: _csr(dsa.generate_private_key(2048)),
        KeyPolicyError,
        "(DSA-2048) is not allowed",
    ),
    "garbage": (
        lambda: b"\x30\x82\x01\x00" + bytes(range(256)),
        CsrError,
        "not a PKCS#10",
    ),
    "pem-garbage": (
        lambda: (
            b"-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgQ1NS\n-----END CERTIFICATE REQUEST-----\n"
        ),
        CsrError,
        "not a PKCS#10",
    ),
    "a-certificate": (
        lambda: (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
            .public_key(_p256().public_key())
            .serial_number(1)
            .not_valid_before(dt.datetime(2026, 1, 1))
            .not_valid_after(dt.datetime(2027, 1, 1))
            .sign(_p256(), hashes.SHA256())
            .public_bytes(Encoding.DER)
        ),
        CsrError,
        "not a PKCS#10",
    ),
    "empty": (lambda: b"", CsrError, "not a PKCS#10"),
    "oversized": (
        lambda: _csr(_p256()) + b" " * MAX_CSR_BYTES,
        CsrError,
        f"at most {MAX_CSR_BYTES}",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_CSRS))
def test_a_hostile_csr_is_refused_without_changing_anything(node, case) -> None:
    make, error_type, message = HOSTILE_CSRS[case]
    data = make()
    before = _snapshot(node)
    with pytest.raises(
        error_type, match=message.replace("(", r"\(").replace(")", r"\)")
    ) as refused:
        node.ra.issue_with_csr(
            profile_name="seal", csr_data=data, agency_uscc=AGENCY_USCC
        )
    assert refused.value.category is ErrorCategory.BAD_REQUEST
    assert "\n" not in str(refused.value)
    assert _snapshot(node) == before


def test_an_sm2_csr_is_refused_for_its_key_type_not_its_signature(
    node, tmp_path
) -> None:
    data = _sm2_csr(tmp_path)
    before = _snapshot(node)
    with pytest.raises(KeyPolicyError, match="does not issue for") as refused:
        node.ra.issue_with_csr(
            profile_name="seal", csr_data=data, agency_uscc=AGENCY_USCC
        )
    assert refused.value.category is ErrorCategory.BAD_REQUEST
    assert _snapshot(node) == before


REFUSED_REQUESTS: dict[str, tuple[dict, type[PkiError], str, ErrorCategory]] = {
    "unknown-profile": (
        {"profile_name": "smime"},
        UnknownProfileError,
        "unknown certificate profile 'smime'",
        ErrorCategory.BAD_REQUEST,
    ),
    "unknown-agency": (
        {"agency_uscc": UNREGISTERED_USCC},
        AgencyNotFoundError,
        "no agency",
        ErrorCategory.NOT_FOUND,
    ),
    "malformed-uscc": (
        {"agency_uscc": "91350100M000100Y44"},
        InvalidUsccError,
        "check character",
        ErrorCategory.BAD_REQUEST,
    ),
    "no-agency": (
        {"agency_uscc": None},
        MissingAgencyError,
        "give its USCC",
        ErrorCategory.BAD_REQUEST,
    ),
    "tsa-by-csr": (
        {"profile_name": "tsa"},
        CsrError,
        "only issued for keys made in our HSM",
        ErrorCategory.BAD_REQUEST,
    ),
    "ocsp-by-csr": (
        {"profile_name": "ocsp"},
        CsrError,
        "only issued for keys made in our HSM",
        ErrorCategory.BAD_REQUEST,
    ),
    "seal-maker-by-csr": (
        {"profile_name": "seal-maker"},
        CsrError,
        "only issued for keys made in our HSM",
        ErrorCategory.BAD_REQUEST,
    ),
    "sub-ca": (
        {"profile_name": "sub-ca"},
        UnknownProfileError,
        "only by the CA ceremony",
        ErrorCategory.BAD_REQUEST,
    ),
    "root": (
        {"profile_name": "root"},
        UnknownProfileError,
        "only by the CA ceremony",
        ErrorCategory.BAD_REQUEST,
    ),
    "document-signer-rsa": (
        {
            "profile_name": "document-signer",
            "key": lambda: rsa.generate_private_key(65537, 2048),
        },
        KeyPolicyError,
        "not allowed for a document-signer",
        ErrorCategory.BAD_REQUEST,
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED_REQUESTS))
def test_a_refused_csr_request_changes_nothing(node, case) -> None:
    changes, error_type, message, category = REFUSED_REQUESTS[case]
    arguments = {"profile_name": "seal", "agency_uscc": AGENCY_USCC, **changes}
    key = arguments.pop("key", _p256)()
    before = _snapshot(node)
    with pytest.raises(error_type, match=message) as refused:
        node.ra.issue_with_csr(csr_data=_csr(key), **arguments)
    assert refused.value.category is category
    assert _snapshot(node) == before


def test_the_subject_comes_from_registration_never_from_the_csr(node) -> None:
    claimed = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "国务院"),
            x509.NameAttribute(NameOID.COMMON_NAME, "root"),
        ]
    )
    asked_for = [
        x509.SubjectAlternativeName([x509.DNSName("gov.cn")]),
        x509.BasicConstraints(ca=True, path_length=None),
    ]
    key = _p256()
    issued = node.ra.issue_with_csr(
        profile_name="seal",
        csr_data=_csr(key, subject=claimed, extensions=asked_for),
        agency_uscc=AGENCY_USCC,
    )
    assert issued.certificate.subject == agency_subject_name(
        AgencySubject(name=AGENCY_NAME, uscc=AGENCY_USCC)
    )
    assert issued.certificate.public_key() == key.public_key()
    with pytest.raises(x509.ExtensionNotFound):
        issued.certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    assert not issued.certificate.extensions.get_extension_for_class(
        x509.BasicConstraints
    ).value.ca


@pytest.mark.parametrize(
    "key",
    [
        ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(65537, 2048),
    ],
    ids=["p-384", "ed25519", "rsa-2048"],
)
def test_every_allowed_key_type_is_certified_from_a_csr(node, key) -> None:
    hash_algorithm = (
        None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    )
    issued = node.ra.issue_with_csr(
        profile_name="api-client",
        csr_data=_csr(key, hash_algorithm=hash_algorithm),
        agency_uscc=AGENCY_USCC,
    )
    assert issued.certificate.public_key() == key.public_key()


def test_a_der_csr_is_read_too() -> None:
    key = _p256()
    der = x509.load_pem_x509_csr(_csr(key)).public_bytes(Encoding.DER)
    assert load_csr(der).public_key() == key.public_key()


# -- the new-key path ----------------------------------------------------------------


def test_a_new_key_is_made_in_the_hsm_with_the_profile_usages(node) -> None:
    issued = node.ra.issue_with_new_key(
        profile_name="seal", key_label="seal-new", agency_uscc=AGENCY_USCC
    )
    info = node.keystore.key_info("seal-new")
    assert info.usages == PROFILES["seal"].hsm_usages
    assert info.algorithm is KeyAlgorithm.EC_P256
    assert issued.certificate.public_key() == node.keystore.public_key("seal-new")


def test_a_long_agency_name_is_cut_in_the_common_name_and_whole_in_o(node) -> None:
    long_name = "广州市黄埔区某某某科技创新产业发展有限公司研究院"  # 72 bytes of UTF-8
    body = "91440112M000300Y4"
    uscc = body + compute_uscc_check_character(body)
    with node.sessions.begin() as session:
        register_agency(session, name=long_name, uscc=uscc, region="440112")
    issued = node.ra.issue_with_new_key(
        profile_name="seal", key_label="seal-long-name", agency_uscc=uscc
    )
    subject = issued.certificate.subject
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == long_name
    common_name = subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert len(common_name.encode("utf-8")) <= 64
    assert long_name.startswith(common_name.removesuffix("…"))


def test_a_lint_failure_destroys_the_new_key_again(node) -> None:
    broken = dataclasses.replace(
        PROFILES["seal"],
        key_usage=frozenset(
            {KeyUsageFlag.DIGITAL_SIGNATURE, KeyUsageFlag.CONTENT_COMMITMENT}
        ),
    )
    ca = CertificateAuthority(
        keystore=node.keystore,
        sessions=node.sessions,
        endpoints=node.ca.endpoints,
        profiles={**PROFILES, "seal": broken},
    )
    ra = RegistrationAuthority(
        ca=ca, keystore=node.keystore, sessions=node.sessions, organization="示范"
    )
    before = _snapshot(node)
    with pytest.raises(LintFailedError, match="mixed_key_usage"):
        ra.issue_with_new_key(
            profile_name="seal", key_label="doomed", agency_uscc=AGENCY_USCC
        )
    assert "doomed" not in {info.label for info in node.keystore.list_keys()}
    # Nothing signed and nothing kept, and the key's short life is on record.
    assert node.audit_trail(after=before.audit_entries) == _made_and_destroyed("doomed")
    assert _snapshot(node) == _with_audit_entries(before, 2)
    assert node.verify_audit().ok


@pytest.mark.parametrize(
    ("arguments", "error_type", "message", "audit_trail"),
    [
        ({"agency_uscc": UNREGISTERED_USCC}, AgencyNotFoundError, "no agency", []),
        ({"agency_uscc": None}, MissingAgencyError, "give its USCC", []),
        (
            {"algorithm": KeyAlgorithm.RSA_2048, "profile_name": "document-signer"},
            KeyPolicyError,
            "not allowed",
            [],
        ),
        (
            {"profile_name": "sub-ca"},
            UnknownProfileError,
            "only by the CA ceremony",
            [],
        ),
        # The issuer is found before any key is made.
        ({"profile_name": "ocsp"}, UnknownCaError, "say which CA", []),
    ],
    ids=[
        "unknown-agency",
        "no-agency",
        "disallowed-algorithm",
        "ca-profile",
        "no-issuer",
    ],
)
def test_a_refused_new_key_request_leaves_no_key(
    node, arguments, error_type, message, audit_trail
) -> None:
    arguments = {"profile_name": "seal", "agency_uscc": AGENCY_USCC, **arguments}
    before = _snapshot(node)
    with pytest.raises(error_type, match=message):
        node.ra.issue_with_new_key(key_label="never-kept", **arguments)
    assert node.audit_trail(after=before.audit_entries) == audit_trail
    assert _snapshot(node) == _with_audit_entries(before, len(audit_trail))


def test_a_taken_key_label_is_refused_and_the_existing_key_kept(node) -> None:
    node.ra.issue_with_new_key(
        profile_name="seal", key_label="kept", agency_uscc=AGENCY_USCC
    )
    public_key = node.keystore.public_key("kept")
    before = _snapshot(node)
    with pytest.raises(KeyExistsError):
        node.ra.issue_with_new_key(
            profile_name="seal", key_label="kept", agency_uscc=AGENCY_USCC
        )
    assert node.keystore.public_key("kept") == public_key
    # The attempt is on record: granted before the token looked, then failed.
    assert node.audit_trail(after=before.audit_entries) == [
        (GENERATE_KEY, "kept", AuditResult.GRANTED),
        (GENERATE_KEY, "kept", AuditResult.FAILED),
    ]
    (failed,) = node.audit.recent_entries(1)
    assert failed.detail == "a key labelled 'kept' already exists"
    assert _snapshot(node) == _with_audit_entries(before, 2)
