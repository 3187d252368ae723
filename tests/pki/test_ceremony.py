"""The key ceremony: the hierarchy it builds, the config it refuses, and a failure
midway that leaves nothing behind."""

from __future__ import annotations

import copy
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import func, select

import pki.ceremony
from hsm_sim.api import KeyAlgorithm
from hsm_sim.audit import AuditEntry
from hsm_sim.errors import ErrorCategory
from pki.ca_models import (
    CaRow,
    CertificateRow,
    CrlRow,
    OcspResponseRow,
    ServiceCredentialRow,
)
from pki.ceremony import run_ceremony
from pki.ceremony_config import (
    DEMO_CEREMONY_PATH,
    load_ceremony_config,
    parse_ceremony_config,
)
from pki.errors import CeremonyConfigError, CeremonyError
from pki.profiles import IssuerRole
from pki.revocation import RevocationService
from tests.conftest import require_tool
from tests.helpers.node import Node, build_node

DEMO = tomllib.loads(DEMO_CEREMONY_PATH.read_text(encoding="utf-8"))
CA_TABLES = (ServiceCredentialRow, OcspResponseRow, CrlRow, CertificateRow, CaRow)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = build_node(tmp_path_factory.mktemp("ceremony") / "node")
    yield node
    node.close()


def _row_counts(node: Node) -> dict[str, int]:
    with node.sessions() as session:
        return {
            table.__tablename__: session.scalar(select(func.count()).select_from(table))
            or 0
            for table in CA_TABLES
        }


# -- what the demo ceremony builds ---------------------------------------------


def test_the_demo_hierarchy_has_a_p384_root_and_three_constrained_issuing_cas(
    node,
) -> None:
    root = node.ca.issuer("root")
    assert root.algorithm is KeyAlgorithm.EC_P384
    assert isinstance(root.certificate.public_key(), ec.EllipticCurvePublicKey)
    assert root.certificate.public_key().curve.name == "secp384r1"
    assert root.certificate.issuer == root.certificate.subject
    root.certificate.verify_directly_issued_by(root.certificate)
    issuing = {
        issuer.role: issuer
        for issuer in node.ca.issuers()
        if issuer.parent_id == root.id
    }
    assert set(issuing) == {
        IssuerRole.SEAL,
        IssuerRole.DOCUMENT,
        IssuerRole.INFRASTRUCTURE,
    }
    for issuer in issuing.values():
        certificate = issuer.certificate
        certificate.verify_directly_issued_by(root.certificate)
        constraints = certificate.extensions.get_extension_for_class(
            x509.BasicConstraints
        ).value
        assert constraints.ca and constraints.path_length == 0
        names = certificate.extensions.get_extension_for_class(x509.NameConstraints)
        assert names.critical
        assert [n.value.rfc4514_string() for n in names.value.permitted_subtrees] == [
            "C=CN"
        ]
        assert certificate.not_valid_after_utc < root.certificate.not_valid_after_utc


def test_every_ca_has_an_ocsp_responder_a_crl_and_presigned_responses(node) -> None:
    with node.sessions() as session:
        for ca in session.scalars(select(CaRow)):
            responder = x509.load_der_x509_certificate(ca.ocsp_certificate_der)
            responder.verify_directly_issued_by(
                x509.load_der_x509_certificate(ca.certificate_der)
            )
            assert node.keystore.public_key(ca.ocsp_key_label) == responder.public_key()
            assert (
                session.scalar(select(func.count()).where(CrlRow.issuer_id == ca.id))
                >= 1
            )
            issued = set(
                session.scalars(
                    select(CertificateRow.serial).where(
                        CertificateRow.issuer_id == ca.id
                    )
                )
            )
            presigned = set(
                session.scalars(
                    select(OcspResponseRow.serial).where(
                        OcspResponseRow.issuer_id == ca.id
                    )
                )
            )
            assert issued and presigned == issued


def test_the_services_have_credentials_from_the_right_cas(node) -> None:
    expected = {
        "tsa": "infrastructure-ca",
        "seal-maker": "seal-ca",
        "document-signer": "document-ca",
    }
    assert set(node.ceremony.services) == set(expected)
    with node.sessions() as session:
        for purpose, issuer_name in expected.items():
            row = session.execute(
                select(ServiceCredentialRow, CertificateRow, CaRow)
                .join(
                    CertificateRow,
                    CertificateRow.id == ServiceCredentialRow.certificate_id,
                )
                .join(CaRow, CaRow.id == CertificateRow.issuer_id)
                .where(CertificateRow.serial == node.ceremony.services[purpose])
            ).one()
            credential, certificate, ca = row
            assert credential.purpose.value == purpose
            assert ca.name == issuer_name
            assert certificate.profile == purpose
            assert (
                node.keystore.public_key(credential.key_label)
                == x509.load_der_x509_certificate(certificate.der).public_key()
            )


def test_openssl_verifies_each_ca_under_the_root(node, tmp_path) -> None:
    openssl = require_tool("openssl")
    (tmp_path / "root.pem").write_bytes(
        node.ca.issuer("root").certificate.public_bytes(Encoding.PEM)
    )
    for issuer in node.ca.issuers():
        path = tmp_path / f"{issuer.name}.pem"
        path.write_bytes(issuer.certificate.public_bytes(Encoding.PEM))
        result = subprocess.run(
            [openssl, "verify", "-x509_strict", "-CAfile", "root.pem", path.name],
            check=False,
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_ceremony_signatures_are_audited_as_the_ceremony(node) -> None:
    with node.sessions() as session:
        actors = set(session.scalars(select(AuditEntry.actor)))
    assert actors == {"ceremony"}
    assert node.verify_audit().ok


def test_a_second_ceremony_is_refused_and_changes_nothing(node) -> None:
    counts = _row_counts(node)
    keys = node.keystore.list_keys()
    with pytest.raises(CeremonyError, match="already has a CA hierarchy") as refused:
        run_ceremony(load_ceremony_config(DEMO_CEREMONY_PATH), ca=node.ca)
    assert refused.value.category is ErrorCategory.CONFLICT
    assert _row_counts(node) == counts
    assert node.keystore.list_keys() == keys


# -- a failure midway leaves nothing -------------------------------------------------


def _fail_on_call(number: int):
    calls = []

    def fail(original):
        def wrapper(*args, **kwargs):
            calls.append(1)
            if len(calls) == number:
                raise RuntimeError("power cut in the ceremony room")
            return original(*args, **kwargs)

        return wrapper

    return fail


FAILURE_POINTS = {
    # the second issuing CA
    "issuing-ca": (pki.ceremony.HierarchyBuilder, "create_subordinate", 2),
    # the third OCSP responder
    "ocsp-responder": (pki.ceremony._Ceremony, "ocsp_responder", 3),
    # the seal maker, after the TSA credential exists
    "service": (pki.ceremony._Ceremony, "service", 2),
    # the last CRL, after everything else was made
    "crl": (RevocationService, "publish_crl", 4),
    # the very end: pre-signing OCSP responses
    "presign": (RevocationService, "refresh", 1),
}


@pytest.mark.parametrize("failure_point", sorted(FAILURE_POINTS))
def test_a_ceremony_that_fails_midway_leaves_nothing_and_can_run_again(
    tmp_path, monkeypatch, failure_point
) -> None:
    node = build_node(tmp_path / "node", ceremony=False)
    try:
        owner, name, number = FAILURE_POINTS[failure_point]
        with monkeypatch.context() as patch:
            patch.setattr(owner, name, _fail_on_call(number)(getattr(owner, name)))
            with pytest.raises(RuntimeError, match="power cut"):
                run_ceremony(load_ceremony_config(DEMO_CEREMONY_PATH), ca=node.ca)
        assert _row_counts(node) == {table.__tablename__: 0 for table in CA_TABLES}
        assert node.keystore.list_keys() == []
        assert node.verify_audit().ok

        result = run_ceremony(load_ceremony_config(DEMO_CEREMONY_PATH), ca=node.ca)
        assert [ca.name for ca in result.cas] == [
            "root",
            "seal-ca",
            "document-ca",
            "infrastructure-ca",
        ]
        assert len(node.keystore.list_keys()) == len(result.key_labels)
    finally:
        node.close()


def test_a_ceremony_racing_another_does_not_undo_the_other(node, monkeypatch) -> None:
    # Two ceremonies started together both passed the "no hierarchy yet" check; the
    # loser fails on its first key label. It must not delete the winner's rows.
    counts = _row_counts(node)
    keys = node.keystore.list_keys()
    monkeypatch.setattr(pki.ceremony, "_refuse_existing_hierarchy", lambda ca: None)
    with pytest.raises(Exception, match="already exists"):
        run_ceremony(load_ceremony_config(DEMO_CEREMONY_PATH), ca=node.ca)
    assert _row_counts(node) == counts
    assert node.keystore.list_keys() == keys


# -- the config file -----------------------------------------------------------------


def _demo_with(change) -> dict:
    data = copy.deepcopy(DEMO)
    change(data)
    return data


def _set(path: str, value):
    def change(data):
        *parents, last = path.split(".")
        target = data
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[last] = value

    return change


def _delete(path: str):
    def change(data):
        *parents, last = path.split(".")
        target = data
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        if last.isdigit():
            del target[int(last)]
        else:
            del target[last]

    return change


BAD_CONFIGS = {
    "unknown-top-key": (_set("extra", {}), "ceremony: unknown key(s) extra"),
    "unknown-root-key": (
        _set("root.lifetime_years", 20),
        "root: unknown key(s) lifetime_years",
    ),
    "unknown-issuing-key": (
        _set("issuing.1.crl_url", "http://x"),
        "issuing[1]: unknown key(s) crl_url",
    ),
    "unknown-profile-key": (
        _set("profiles.seal.min_days", 1),
        "profiles.seal: unknown key(s) min_days",
    ),
    "unknown-revocation-key": (
        _set("revocation.crl_hours", 1),
        "revocation: unknown key(s) crl_hours",
    ),
    "bad-algorithm": (_set("root.algorithm", "ec-p521"), "root.algorithm:"),
    "sm2-algorithm": (_set("issuing.0.algorithm", "sm2"), "issuing[0].algorithm:"),
    "ed25519-ca": (
        _set("issuing.0.algorithm", "ed25519"),
        "ed25519 is not allowed for a CA",
    ),
    "missing-role": (_delete("issuing.2"), "exactly one CA with role 'infrastructure'"),
    "duplicate-role": (
        _set("issuing.1.role", "seal"),
        "exactly one CA with role 'seal'",
    ),
    "unknown-role": (
        _set("issuing.1.role", "tax"),
        "issuing[1].role: use one of seal, document, infrastructure",
    ),
    "root-role": (
        _set("issuing.1.role", "root"),
        "issuing[1].role: root is not an issuing role",
    ),
    "no-role": (_delete("issuing.0.role"), "issuing[0]: missing role"),
    "outlives-root": (
        _set("issuing.0.lifetime_days", 7306),
        "seal-ca: an issuing CA cannot outlive the root",
    ),
    "zero-lifetime": (
        _set("root.lifetime_days", 0),
        "root.lifetime_days: must be between 1 and 10958",
    ),
    "string-lifetime": (
        _set("root.lifetime_days", "7305"),
        "root.lifetime_days: wrong type str",
    ),
    "bool-path-length": (
        _set("issuing.0.path_length", True),
        "issuing[0].path_length: wrong type bool",
    ),
    "negative-path-length": (
        _set("issuing.0.path_length", -1),
        "issuing[0].path_length: must not be negative",
    ),
    "bad-subtree": (
        _set("issuing.0.permitted_subtrees", ["C"]),
        "issuing[0].permitted_subtrees: 'C'",
    ),
    "bad-name": (
        _set("issuing.0.name", "Seal CA"),
        "issuing[0].name: use lowercase letters",
    ),
    "duplicate-name": (_set("issuing.1.name", "seal-ca"), "CA names must be unique"),
    "no-root": (_delete("root"), "ceremony: missing root"),
    "no-organization": (_delete("node.organization"), "node: missing organization"),
    "unknown-profile": (
        _set("profiles.smime", {"default_days": 1}),
        "profiles.smime: no such profile",
    ),
    "default-over-max": (
        _set("profiles.seal", {"default_days": 900, "max_days": 800}),
        "profiles.seal: default_days must be 1..max_days",
    ),
    "max-over-profile": (
        _set("profiles.document-signer", {"default_days": 365, "max_days": 400}),
        "the document-signer profile allows at most 365 days",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_a_bad_ceremony_config_is_refused_with_a_clear_message(case) -> None:
    change, message = BAD_CONFIGS[case]
    with pytest.raises(CeremonyConfigError) as refused:
        parse_ceremony_config(_demo_with(change))
    assert message in str(refused.value)
    assert refused.value.category is ErrorCategory.BAD_REQUEST
    assert "\n" not in str(refused.value)


def test_the_demo_config_reads_as_written() -> None:
    config = load_ceremony_config(DEMO_CEREMONY_PATH)
    assert config.root.algorithm is KeyAlgorithm.EC_P384
    assert config.root.lifetime_days == 7305
    assert [spec.name for spec in config.issuing] == [
        "seal-ca",
        "document-ca",
        "infrastructure-ca",
    ]
    assert config.issuing_ca(IssuerRole.DOCUMENT).key_label == "ca-document-ca"
    assert config.profile_lifetimes["document-signer"].max_days == 365
    assert config.crl_next_update_hours == 24


def test_an_unreadable_or_invalid_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CeremonyConfigError, match="cannot read the ceremony file"):
        load_ceremony_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[root\nname = 1\n", encoding="utf-8")
    with pytest.raises(CeremonyConfigError, match="is not valid TOML"):
        load_ceremony_config(broken)
