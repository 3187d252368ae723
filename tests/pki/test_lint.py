"""The lint gate over certificates built from every profile, with plain software keys."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from hsm_sim.api import KeyAlgorithm
from pki.certificates import (
    AgencySubject,
    NodeEndpoints,
    agency_subject_name,
    build_certificate,
    generate_throwaway_key,
    node_subject_name,
    random_serial,
    signature_hash_for,
)
from pki.lint import INTERNAL_DOMAIN_FINDING, lint_certificate, matching_profiles
from pki.profiles import PROFILES, KeyUsageFlag, SubjectKind

NOW = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
PUBLIC = NodeEndpoints("http://pki.example.gov.cn")
LOOPBACK = NodeEndpoints("http://127.0.0.1:8000")
AGENCY = AgencySubject(name="某某市市场监督管理局", uscc="91350100M000100Y43")


def _root():
    key = generate_throwaway_key(KeyAlgorithm.EC_P384)
    name = node_subject_name("示范省政务服务信任中心", "Test Root")
    cert = build_certificate(
        profile=PROFILES["root"], subject=name, public_key=key.public_key(),
        issuer_certificate=None, issuer_name="root", issuer_public_key=key.public_key(),
        serial=random_serial(), not_before=NOW - dt.timedelta(days=1),
        not_after=NOW + dt.timedelta(days=7000), endpoints=PUBLIC,
    ).sign(key, signature_hash_for(key))
    return key, cert


def _issue(profile_name, issuer_key, issuer_cert, endpoints, *, profile=None, serial=None,
           days=300, path_length=None):
    profile = profile or PROFILES[profile_name]
    key = ec.generate_private_key(ec.SECP256R1())
    if profile.subject_kind is SubjectKind.AGENCY:
        subject = agency_subject_name(AGENCY)
    else:
        subject = node_subject_name("示范省政务服务信任中心", f"Test {profile.name}")
    return build_certificate(
        profile=profile, subject=subject, public_key=key.public_key(),
        issuer_certificate=issuer_cert, issuer_name="test-ca",
        issuer_public_key=issuer_key.public_key(), serial=serial or random_serial(),
        not_before=NOW, not_after=NOW + dt.timedelta(days=days), endpoints=endpoints,
        path_length=path_length,
    ).sign(issuer_key, signature_hash_for(issuer_key))


@pytest.fixture(scope="module")
def root():
    return _root()


def test_root_passes(root):
    report = lint_certificate(root[1], profile=PROFILES["root"], issuer=root[1])
    assert report.passed, report.blocking


@pytest.mark.parametrize("name", sorted(set(PROFILES) - {"root"}))
def test_every_profile_passes_on_a_public_domain(root, name):
    cert = _issue(name, *root, PUBLIC, path_length=0 if name == "sub-ca" else None)
    report = lint_certificate(cert, profile=PROFILES[name], issuer=root[1])
    assert report.passed, [str(f) for f in report.blocking]
    assert not report.tolerated
    assert matching_profiles(cert) == [name]


def test_loopback_seal_only_leaves_the_internal_domain_finding(root):
    cert = _issue("seal", *root, LOOPBACK)
    strict = lint_certificate(cert, profile=PROFILES["seal"], issuer=root[1])
    assert {f.code for f in strict.blocking} == {INTERNAL_DOMAIN_FINDING}
    tolerant = lint_certificate(
        cert, profile=PROFILES["seal"], issuer=root[1], tolerate_internal_domain=True
    )
    assert tolerant.passed
    assert {f.code for f in tolerant.tolerated} == {INTERNAL_DOMAIN_FINDING}


def test_mixed_key_usage_on_a_seal_is_blocked(root):
    broken = dataclasses.replace(
        PROFILES["seal"],
        key_usage=frozenset({KeyUsageFlag.DIGITAL_SIGNATURE, KeyUsageFlag.CONTENT_COMMITMENT}),
    )
    cert = _issue("seal", *root, PUBLIC, profile=broken)
    report = lint_certificate(cert, profile=broken, issuer=root[1])
    codes = {f.code for f in report.blocking}
    assert "etsi.en_319_412_2.nat-4.3.2-1.mixed_key_usage_setting" in codes


def test_low_entropy_serial_is_blocked(root):
    cert = _issue("seal", *root, PUBLIC, serial=1)
    report = lint_certificate(cert, profile=PROFILES["seal"], issuer=root[1])
    assert "yinxin.serial_entropy_too_low" in {f.code for f in report.blocking}


def test_validity_beyond_the_profile_and_the_issuer_is_blocked(root):
    cert = _issue("document-signer", *root, PUBLIC, days=400)
    report = lint_certificate(cert, profile=PROFILES["document-signer"], issuer=root[1])
    assert "yinxin.validity_too_long" in {f.code for f in report.blocking}
    cert = _issue("seal", *root, PUBLIC, days=1800)
    short_lived_issuer = _issue("sub-ca", *root, PUBLIC, days=100, path_length=0)
    report = lint_certificate(cert, profile=PROFILES["seal"], issuer=short_lived_issuer)
    assert "yinxin.validity_outside_issuer" in {f.code for f in report.blocking}


def test_a_certificate_of_one_profile_linted_as_another_is_blocked(root):
    cert = _issue("api-client", *root, PUBLIC)
    report = lint_certificate(cert, profile=PROFILES["seal"], issuer=root[1])
    assert "yinxin.profile_mismatch" in {f.code for f in report.blocking}


def test_missing_authority_key_identifier_is_blocked_by_pkilint(root):
    cert = _issue("seal", *root, PUBLIC)
    builder = x509.CertificateBuilder(
        issuer_name=cert.issuer, subject_name=cert.subject, public_key=cert.public_key(),
        serial_number=cert.serial_number, not_valid_before=cert.not_valid_before_utc,
        not_valid_after=cert.not_valid_after_utc,
        extensions=[e for e in cert.extensions if not isinstance(e.value, x509.AuthorityKeyIdentifier)],
    )
    stripped = builder.sign(root[0], signature_hash_for(root[0]))
    report = lint_certificate(stripped, profile=PROFILES["seal"], issuer=root[1])
    assert "pkix.authority_key_identifier_extension_absent" in {f.code for f in report.blocking}
