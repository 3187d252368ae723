"""The certificate authority: every profile through the real lint gate and soft HSM,
checked by pkilint's own command-line tools; the gate refusing broken profiles before
any HSM signature; serial numbers; validity; the hierarchy."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import event, select
from sqlalchemy.exc import IntegrityError, OperationalError

import pki.ca
import pki.certificates
from hsm_sim.api import AuditResult, KeyAlgorithm, KeyUsage
from hsm_sim.errors import ErrorCategory, HsmError
from hsm_sim.storage import utcnow
from pki.ca import (
    SERIAL_ATTEMPTS,
    CertificateAuthority,
    HierarchyBuilder,
    IssuanceRequest,
    serial_from_text,
    serial_to_text,
)
from pki.ca_models import CertificateRow, CertificateState
from pki.certificates import AgencySubject, agency_subject_name
from pki.errors import (
    InvalidSerialError,
    IssuanceError,
    LintFailedError,
    UnknownCaError,
)
from pki.lint import INTERNAL_DOMAIN_FINDING, lint_certificate
from pki.oids import ProjectOID
from pki.profiles import PROFILES, KeyUsageFlag
from pki.ra import RegistrationAuthority
from tests.conftest import require_tool
from tests.helpers.node import (
    AGENCY_NAME,
    AGENCY_USCC,
    DESTROY_KEY,
    GENERATE_KEY,
    PUBLIC_URL,
    Node,
    build_node,
)

PKILINT_BIN = Path(sys.executable).parent
ETSI_LEGAL_PERSON = "NCP-LEGAL-PERSON-CERTIFICATE"
AGENCY_SUBJECT = agency_subject_name(AgencySubject(name=AGENCY_NAME, uscc=AGENCY_USCC))
ISSUED_PROFILES = (
    "seal",
    "seal-maker",
    "document-signer",
    "ocsp",
    "tsa",
    "api-client",
    "sub-ca",
    "root",
)


def _issue_every_profile(node: Node) -> dict[str, list[x509.Certificate]]:
    """The ceremony's certificates plus one more of each end-entity profile, by profile."""
    node.ra.issue_with_new_key(
        profile_name="seal", key_label="seal-1", agency_uscc=AGENCY_USCC
    )
    csr_key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(csr_key, hashes.SHA256())
    )
    node.ra.issue_with_csr(
        profile_name="api-client",
        csr_data=csr.public_bytes(Encoding.PEM),
        agency_uscc=AGENCY_USCC,
    )
    node.ra.issue_with_new_key(
        profile_name="document-signer", key_label="document-signer-2"
    )
    node.ra.issue_with_new_key(profile_name="tsa", key_label="tsa-2")
    node.ra.issue_with_new_key(profile_name="seal-maker", key_label="seal-maker-2")
    node.ra.issue_with_new_key(
        profile_name="ocsp", key_label="ocsp-extra", issuer_name="seal-ca"
    )
    by_profile: dict[str, list[x509.Certificate]] = {}
    for row in node.certificate_rows():
        assert row.state is CertificateState.ISSUED and row.der is not None
        by_profile.setdefault(row.profile, []).append(
            x509.load_der_x509_certificate(row.der)
        )
    return by_profile


@pytest.fixture(scope="module")
def public_node(tmp_path_factory: pytest.TempPathFactory):
    node = build_node(tmp_path_factory.mktemp("public") / "node", base_url=PUBLIC_URL)
    yield node, _issue_every_profile(node)
    node.close()


@pytest.fixture(scope="module")
def loopback_node(tmp_path_factory: pytest.TempPathFactory):
    node = build_node(tmp_path_factory.mktemp("loopback") / "node")
    yield node
    node.close()


def _pkilint(tool: str, *args: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PKILINT_BIN / tool), "lint", "-s", "WARNING", *args, str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _issuer_certificate(node: Node, certificate: x509.Certificate) -> x509.Certificate:
    for issuer in node.ca.issuers():
        if issuer.certificate.subject == certificate.issuer:
            return issuer.certificate
    raise AssertionError(f"no issuer for {certificate.subject.rfc4514_string()}")


# -- acceptance 1: every profile passes pkilint on a public domain -----------------


def test_a_public_node_issues_every_profile(public_node) -> None:
    _, by_profile = public_node
    assert set(by_profile) == set(ISSUED_PROFILES)


@pytest.mark.parametrize("profile_name", ISSUED_PROFILES)
def test_every_profile_passes_pkilint_on_a_public_domain(
    public_node, profile_name, tmp_path
) -> None:
    node, by_profile = public_node
    for number, certificate in enumerate(by_profile[profile_name]):
        issuer = _issuer_certificate(node, certificate)
        report = lint_certificate(
            certificate, profile=node.ca.profile(profile_name), issuer=issuer
        )
        assert report.passed, [str(f) for f in report.blocking]
        assert not report.tolerated
        path = tmp_path / f"{profile_name}-{number}.der"
        path.write_bytes(certificate.public_bytes(Encoding.DER))
        pkix = _pkilint("lint_pkix_cert", path=path)
        assert pkix.returncode == 0 and not pkix.stdout.strip(), (
            pkix.stdout + pkix.stderr
        )
        if profile_name == "seal":
            etsi = _pkilint("lint_etsi_cert", "-t", ETSI_LEGAL_PERSON, path=path)
            assert etsi.returncode == 0 and not etsi.stdout.strip(), (
                etsi.stdout + etsi.stderr
            )


def test_issued_certificates_are_exactly_their_linting_copies(public_node) -> None:
    node, _ = public_node
    for row in node.certificate_rows():
        linted = x509.load_der_x509_certificate(row.lint_der)
        issued = x509.load_der_x509_certificate(row.der)
        assert issued.tbs_certificate_bytes == linted.tbs_certificate_bytes
        assert issued.signature != linted.signature
        assert row.tolerated_findings == ""
        issued.verify_directly_issued_by(_issuer_certificate(node, issued))


def test_openssl_verifies_each_issued_chain(public_node, tmp_path) -> None:
    openssl = require_tool("openssl")
    node, by_profile = public_node
    root = node.ca.issuer("root").certificate
    (tmp_path / "root.pem").write_bytes(root.public_bytes(Encoding.PEM))
    for profile_name in set(ISSUED_PROFILES) - {"root"}:
        for number, certificate in enumerate(by_profile[profile_name]):
            issuer = _issuer_certificate(node, certificate)
            (tmp_path / "issuer.pem").write_bytes(issuer.public_bytes(Encoding.PEM))
            leaf = tmp_path / f"{profile_name}-{number}.pem"
            leaf.write_bytes(certificate.public_bytes(Encoding.PEM))
            result = subprocess.run(
                [
                    openssl,
                    "verify",
                    "-CAfile",
                    "root.pem",
                    "-untrusted",
                    "issuer.pem",
                    leaf.name,
                ],
                check=False,
                capture_output=True,
                text=True,
                cwd=tmp_path,
            )
            assert result.returncode == 0, (
                f"{profile_name}: {result.stdout}{result.stderr}"
            )


def test_a_loopback_seal_records_only_the_internal_domain_finding(
    loopback_node, tmp_path
) -> None:
    node = loopback_node
    issued = node.ra.issue_with_new_key(
        profile_name="seal", key_label="loopback-seal", agency_uscc=AGENCY_USCC
    )
    assert issued.tolerated_findings
    assert all(
        INTERNAL_DOMAIN_FINDING in finding for finding in issued.tolerated_findings
    )
    with node.sessions() as session:
        row = session.scalar(
            select(CertificateRow).where(CertificateRow.serial == issued.serial)
        )
    assert row.tolerated_findings.splitlines() == list(issued.tolerated_findings)

    strict = lint_certificate(
        issued.certificate,
        profile=PROFILES["seal"],
        issuer=node.ca.issuer("seal-ca").certificate,
    )
    assert {f.code for f in strict.blocking} == {INTERNAL_DOMAIN_FINDING}

    path = tmp_path / "seal.der"
    path.write_bytes(issued.der)
    pkix = _pkilint("lint_pkix_cert", path=path)
    assert pkix.returncode == 0 and not pkix.stdout.strip(), pkix.stdout
    etsi = _pkilint("lint_etsi_cert", "-t", ETSI_LEGAL_PERSON, path=path)
    codes = {
        line.split()[0] for line in etsi.stdout.splitlines() if line.startswith("    ")
    }
    assert codes == {INTERNAL_DOMAIN_FINDING}, etsi.stdout


def test_loopback_certificates_of_other_profiles_tolerate_nothing(
    loopback_node,
) -> None:
    node = loopback_node
    issued = node.ra.issue_with_new_key(
        profile_name="api-client", key_label="loopback-api", agency_uscc=AGENCY_USCC
    )
    assert issued.tolerated_findings == ()
    for row in node.certificate_rows():
        if row.profile != "seal":
            assert row.tolerated_findings == "", row.profile


# -- the gate refuses broken profiles before the HSM signs ---------------------------

BROKEN_SEAL_PROFILES = {
    # ETSI EN 319 412-2 flags digitalSignature mixed with nonRepudiation.
    "mixed-key-usage": dataclasses.replace(
        PROFILES["seal"],
        key_usage=frozenset(
            {KeyUsageFlag.DIGITAL_SIGNATURE, KeyUsageFlag.CONTENT_COMMITMENT}
        ),
    ),
    # The seal-maker's policy on a seal: the certificate fits two profiles.
    "two-profiles": dataclasses.replace(
        PROFILES["seal"], policy_oid=ProjectOID.SEAL_MAKER_POLICY
    ),
    # No certificate policy at all.
    "no-policy": dataclasses.replace(PROFILES["seal"], policy_oid=None),
}


def _broken_authority(node: Node, broken_name: str) -> CertificateAuthority:
    return CertificateAuthority(
        keystore=node.keystore,
        sessions=node.sessions,
        endpoints=node.ca.endpoints,
        profiles={**PROFILES, "seal": BROKEN_SEAL_PROFILES[broken_name]},
    )


@pytest.mark.parametrize("broken_name", sorted(BROKEN_SEAL_PROFILES))
def test_a_broken_profile_is_refused_before_any_hsm_signature(
    tmp_path, broken_name
) -> None:
    node = build_node(tmp_path / "node", base_url=PUBLIC_URL)
    try:
        broken_ca = _broken_authority(node, broken_name)
        ra = RegistrationAuthority(
            ca=broken_ca,
            keystore=node.keystore,
            sessions=node.sessions,
            organization="示范",
        )
        seal_ca_key = node.ca.issuer("seal-ca").key_label
        seal_ca_signatures_before = node.granted_signatures(seal_ca_key)
        signatures_before = node.granted_signatures()
        audit_before = node.audit_entry_count()
        rows_before = len(node.certificate_rows())
        keys_before = [info.label for info in node.keystore.list_keys()]

        with pytest.raises(LintFailedError) as refused:
            ra.issue_with_new_key(
                profile_name="seal", key_label="broken", agency_uscc=AGENCY_USCC
            )
        assert refused.value.category is ErrorCategory.INTERNAL
        assert refused.value.findings
        assert "seal certificate failed the lint gate" in str(refused.value)

        software_key = ec.generate_private_key(ec.SECP256R1()).public_key()
        with pytest.raises(LintFailedError):
            broken_ca.issue(
                IssuanceRequest(
                    profile="seal",
                    subject=AGENCY_SUBJECT,
                    public_key=software_key,
                )
            )

        assert node.granted_signatures(seal_ca_key) == seal_ca_signatures_before
        assert node.granted_signatures() == signatures_before
        # The new key's life is on record: made, then destroyed when the gate refused.
        assert node.audit_trail(after=audit_before) == [
            (GENERATE_KEY, "broken", AuditResult.GRANTED),
            (DESTROY_KEY, "broken", AuditResult.GRANTED),
        ]
        assert len(node.certificate_rows()) == rows_before
        assert [info.label for info in node.keystore.list_keys()] == keys_before
        assert node.verify_audit().ok
    finally:
        node.close()


def test_the_broken_profiles_break_what_they_are_meant_to(public_node) -> None:
    node, _ = public_node
    expected = {
        "mixed-key-usage": "etsi.en_319_412_2.nat-4.3.2-1.mixed_key_usage_setting",
        "two-profiles": "yinxin.profile_mismatch",
        "no-policy": "etsi.en_319_412_2.certificate_policies_extension_absent",
    }
    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    for broken_name, code in expected.items():
        _, _, report, _ = _broken_authority(node, broken_name).lint(
            IssuanceRequest(
                profile="seal",
                subject=AGENCY_SUBJECT,
                public_key=public_key,
            )
        )
        assert [f.code for f in report.blocking] == [code], (
            broken_name,
            [str(f) for f in report.blocking],
        )


# -- serial numbers ------------------------------------------------------------------


def test_serials_are_positive_159_bit_and_unique_per_issuer(public_node) -> None:
    node, _ = public_node
    rows = node.certificate_rows()
    seen = set()
    for row in rows:
        certificate = x509.load_der_x509_certificate(row.der)
        assert 0 < certificate.serial_number < 2**159
        assert certificate.serial_number.bit_length() >= 64
        assert row.serial == serial_to_text(certificate.serial_number)
        assert (row.issuer_id, row.serial) not in seen
        seen.add((row.issuer_id, row.serial))


def test_the_database_refuses_a_second_certificate_with_the_same_serial(
    public_node,
) -> None:
    node, _ = public_node
    existing = node.certificate_rows()[-1]
    duplicate = CertificateRow(
        issuer_id=existing.issuer_id,
        serial=existing.serial,
        profile=existing.profile,
        subject=existing.subject,
        state=CertificateState.PENDING,
        lint_der=existing.lint_der,
        not_before=existing.not_before,
        not_after=existing.not_after,
    )
    with pytest.raises(IntegrityError), node.sessions.begin() as session:
        session.add(duplicate)


def _agency_request(node: Node, **changes) -> IssuanceRequest:
    request = IssuanceRequest(
        profile="seal",
        subject=AGENCY_SUBJECT,
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
    )
    return dataclasses.replace(request, **changes)


def test_a_serial_collision_is_retried_with_a_new_serial(
    loopback_node, monkeypatch
) -> None:
    node = loopback_node
    taken = node.ra.issue_with_new_key(
        profile_name="seal", key_label="taken", agency_uscc=AGENCY_USCC
    )
    taken_serial = taken.certificate.serial_number
    handed_out = []

    def colliding_then_random() -> int:
        serial = taken_serial if not handed_out else pki.certificates.random_serial()
        handed_out.append(serial)
        return serial

    monkeypatch.setattr(pki.ca, "random_serial", colliding_then_random)
    issued = node.ca.issue(_agency_request(node))
    assert handed_out[0] == taken_serial and len(handed_out) == 2
    assert issued.certificate.serial_number == handed_out[1] != taken_serial
    with node.sessions() as session:
        states = session.scalars(
            select(CertificateRow.state).where(CertificateRow.serial == taken.serial)
        ).all()
    assert states == [CertificateState.ISSUED]


def test_the_same_serial_under_another_issuer_is_not_a_collision(
    loopback_node, monkeypatch
) -> None:
    node = loopback_node
    seal = node.ra.issue_with_new_key(
        profile_name="seal", key_label="per-issuer", agency_uscc=AGENCY_USCC
    )
    monkeypatch.setattr(pki.ca, "random_serial", lambda: seal.certificate.serial_number)
    api = node.ca.issue(_agency_request(node, profile="api-client"))
    assert api.issuer == "infrastructure-ca" != seal.issuer
    assert api.certificate.serial_number == seal.certificate.serial_number


def test_endless_collisions_give_up_without_signing(loopback_node, monkeypatch) -> None:
    node = loopback_node
    taken = node.ra.issue_with_new_key(
        profile_name="seal", key_label="always", agency_uscc=AGENCY_USCC
    )
    calls = []
    monkeypatch.setattr(
        pki.ca,
        "random_serial",
        lambda: calls.append(1) or taken.certificate.serial_number,
    )
    signatures = node.granted_signatures()
    with pytest.raises(IssuanceError, match="unused serial"):
        node.ca.issue(_agency_request(node))
    assert len(calls) == SERIAL_ATTEMPTS
    assert node.granted_signatures() == signatures


# -- what happens around the HSM signature ---------------------------------------


def test_a_failed_hsm_signature_leaves_a_failed_row_not_an_issued_one(
    tmp_path, monkeypatch
) -> None:
    node = build_node(tmp_path / "node")
    try:

        def broken_token(*args, **kwargs):
            raise RuntimeError("token unplugged")

        monkeypatch.setattr(type(node.keystore), "_sign_with_key", broken_token)
        issued_before = node.issued_count()
        with pytest.raises(HsmError):
            node.ca.issue(_agency_request(node))
        rows = node.certificate_rows()
        assert rows[-1].state is CertificateState.FAILED and rows[-1].der is None
        assert node.issued_count() == issued_before
        last = node.audit.recent_entries(2)
        assert [entry.result.value for entry in last] == ["failed", "granted"]
    finally:
        node.close()


def _lock_updates(node: Node, table: str, *, storing_der: bool) -> None:
    """Make each UPDATE of `table` fail as a busy SQLite database does: those that
    store a certificate's DER, or (`storing_der=False`) all of them."""

    @event.listens_for(node.engine, "before_cursor_execute")
    def _busy(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.startswith(f"UPDATE {table} ") and (
            not storing_der or "der=" in statement.replace(" ", "")
        ):
            raise sqlite3.OperationalError("database is locked")


def _worker_timeout(*args, **kwargs):
    raise SystemExit("worker timeout")


@pytest.mark.parametrize("interruption", ["database locked after signing", "worker timeout"])
def test_an_issuance_interrupted_by_anything_leaves_a_failed_row(
    tmp_path, monkeypatch, interruption
) -> None:
    node = build_node(tmp_path / "node")
    try:
        if interruption == "worker timeout":
            monkeypatch.setattr(type(node.keystore), "_sign_with_key", _worker_timeout)
            expected: type[BaseException] = SystemExit
        else:
            _lock_updates(node, "certificate", storing_der=True)
            expected = OperationalError
        issued_before = node.issued_count()
        with pytest.raises(expected):
            node.ca.issue(_agency_request(node))
        rows = node.certificate_rows()
        assert rows[-1].state is CertificateState.FAILED and rows[-1].der is None
        assert node.issued_count() == issued_before
    finally:
        node.close()


def test_a_root_interrupted_after_signing_leaves_a_failed_row(tmp_path) -> None:
    node = build_node(tmp_path / "node", ceremony=False, agency=False)
    try:
        usages = frozenset({KeyUsage.CERT_SIGN, KeyUsage.CRL_SIGN})
        node.keystore.generate_key("root-key", KeyAlgorithm.EC_P256, usages)
        _lock_updates(node, "certificate_authority", storing_der=True)
        with pytest.raises(OperationalError):
            HierarchyBuilder(node.ca).create_root(
                name="root",
                subject=x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Root")]),
                key_label="root-key",
                algorithm=KeyAlgorithm.EC_P256,
                lifetime=dt.timedelta(days=3650),
            )
        [row] = node.certificate_rows()
        assert row.state is CertificateState.FAILED and row.der is None
    finally:
        node.close()


def test_a_row_that_cannot_be_marked_failed_does_not_hide_the_error(
    tmp_path, monkeypatch, caplog
) -> None:
    node = build_node(tmp_path / "node")
    try:
        def broken_token(*args, **kwargs):
            raise RuntimeError("token unplugged")

        monkeypatch.setattr(type(node.keystore), "_sign_with_key", broken_token)
        _lock_updates(node, "certificate", storing_der=False)
        with caplog.at_level(logging.ERROR, logger="pki.ca"), pytest.raises(HsmError):
            node.ca.issue(_agency_request(node))
        row = node.certificate_rows()[-1]
        assert row.state is CertificateState.PENDING
        [record] = caplog.records
        assert f"certificate row {row.id} left pending" in record.getMessage()
        assert "OperationalError" in record.getMessage()
        assert "locked" not in record.getMessage()  # no database message in logs
    finally:
        node.close()


def test_issuances_left_pending_are_failed_once_old_enough(
    tmp_path, database_url
) -> None:
    node = build_node(tmp_path / "node", database_url=database_url)
    try:
        now = utcnow()
        template = node.certificate_rows()[-1]
        with node.sessions.begin() as session:
            for serial, age in (("a1", dt.timedelta(hours=2)), ("a2", -dt.timedelta(hours=1))):
                session.add(
                    CertificateRow(
                        issuer_id=template.issuer_id,
                        serial=serial,
                        profile=template.profile,
                        subject=template.subject,
                        state=CertificateState.PENDING,
                        lint_der=template.lint_der,
                        not_before=template.not_before,
                        not_after=template.not_after,
                        created_at=now - age,
                    )
                )
        issued_before = node.issued_count()
        # Every row but "a2" is older than an hour by this clock, the issued ones too.
        later = CertificateAuthority(
            keystore=node.keystore,
            sessions=node.sessions,
            endpoints=node.ca.endpoints,
            clock=lambda: now + dt.timedelta(minutes=90),
        )
        assert later.fail_abandoned_issuances(older_than=dt.timedelta(hours=1)) == 1
        states = {row.serial: row.state for row in node.certificate_rows()}
        assert states["a1"] is CertificateState.FAILED
        assert states["a2"] is CertificateState.PENDING
        assert node.issued_count() == issued_before
        assert later.fail_abandoned_issuances(older_than=dt.timedelta(hours=1)) == 0
        with pytest.raises(ValueError, match="positive"):
            later.fail_abandoned_issuances(older_than=dt.timedelta(0))
    finally:
        node.close()


def test_validity_is_capped_by_the_profile_and_by_the_issuer(loopback_node) -> None:
    node = loopback_node
    long = node.ca.issue(_agency_request(node, validity=dt.timedelta(days=5000)))
    lifetime = (
        long.certificate.not_valid_after_utc - long.certificate.not_valid_before_utc
    )
    assert lifetime == PROFILES["seal"].max_validity

    seal_ca = node.ca.issuer("seal-ca").certificate
    late = CertificateAuthority(
        keystore=node.keystore,
        sessions=node.sessions,
        endpoints=node.ca.endpoints,
        clock=lambda: seal_ca.not_valid_after_utc - dt.timedelta(days=30),
    )
    cut = late.issue(_agency_request(node))
    assert cut.certificate.not_valid_after_utc == seal_ca.not_valid_after_utc


def test_each_profile_goes_to_the_ca_of_its_role(loopback_node) -> None:
    node = loopback_node
    with pytest.raises(UnknownCaError, match="does not issue seal"):
        node.ca.issue(_agency_request(node, issuer_name="document-ca"))
    with pytest.raises(UnknownCaError, match="say which CA"):
        node.ca.issue(_agency_request(node, profile="ocsp", subject=AGENCY_SUBJECT))
    with pytest.raises(UnknownCaError, match="known: root, seal-ca"):
        node.ca.issuer("no-such-ca")


def test_a_node_without_a_ceremony_says_to_run_it(tmp_path) -> None:
    node = build_node(tmp_path / "node", ceremony=False)
    try:
        with pytest.raises(UnknownCaError, match="run the CA ceremony") as refused:
            node.ca.issue(_agency_request(node))
        assert refused.value.category is ErrorCategory.NOT_FOUND
    finally:
        node.close()


def test_the_chain_runs_from_the_issuer_to_the_root(loopback_node) -> None:
    node = loopback_node
    chain = node.ca.chain(node.ca.issuer("seal-ca"))
    assert [c.subject for c in chain] == [
        node.ca.issuer("seal-ca").certificate.subject,
        node.ca.issuer("root").certificate.subject,
    ]
    assert node.ca.chain(node.ca.issuer("root")) == [node.ca.issuer("root").certificate]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1f2a", 0x1F2A),
        ("0x1F2A", 0x1F2A),
        ("1F:2A", 0x1F2A),
        ("1f 2a", 0x1F2A),
        ("  0X1f2A  ", 0x1F2A),
        ("7" + "f" * 39, 2**159 - 1),
    ],
)
def test_serials_are_read_as_people_paste_them(text, expected) -> None:
    assert serial_from_text(text) == expected
    assert serial_from_text(serial_to_text(expected)) == expected


@pytest.mark.parametrize("text", ["", "0x", "xyz", "12-34", "1" * 43, "１２"])
def test_a_malformed_serial_is_refused(text) -> None:
    with pytest.raises(InvalidSerialError) as refused:
        serial_from_text(text)
    assert refused.value.category is ErrorCategory.BAD_REQUEST
