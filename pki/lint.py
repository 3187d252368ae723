"""The lint gate: every certificate is checked before the real key signs it.

Following Let's Encrypt's Boulder, the CA signs a *linting copy* of the certificate
with a throwaway key of the same type, runs pkilint (RFC 5280, and ETSI EN 319 412
legal-person for seal certificates) and Yinxin's own lints over it, and signs with
the HSM key only if nothing at WARNING or above was found.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from hsm_sim.api import KeyAlgorithm
from pki.profiles import PROFILES, CertificateProfile, KeyUsageFlag

__all__ = [
    "Severity",
    "LintFinding",
    "LintReport",
    "lint_certificate",
    "key_algorithm_of",
    "matching_profiles",
    "INTERNAL_DOMAIN_FINDING",
]

INTERNAL_DOMAIN_FINDING = "etsi.internal_domain_name"
MIN_SERIAL_BITS = 64  # CA/Browser Forum: at least 64 bits from a CSPRNG
MAX_SERIAL_BITS = 159  # 20 octets, positive: the largest serial RFC 5280 allows


class Severity(enum.IntEnum):
    """pkilint's scale, most severe first; the gate blocks at WARNING and above."""

    FATAL = 0
    ERROR = 1
    WARNING = 2
    NOTICE = 3
    INFO = 4
    DEBUG = 5

    @property
    def blocks(self) -> bool:
        return self <= Severity.WARNING


@dataclasses.dataclass(frozen=True)
class LintFinding:
    source: str  # "pkix", "etsi" or "yinxin"
    code: str
    severity: Severity
    message: str = ""
    location: str = ""

    def __str__(self) -> str:
        text = f"{self.severity.name} {self.code}"
        if self.message:
            text += f": {self.message}"
        return text


@dataclasses.dataclass(frozen=True)
class LintReport:
    findings: tuple[LintFinding, ...]
    tolerated: tuple[LintFinding, ...]  # blocking by severity, accepted by node policy

    @property
    def blocking(self) -> tuple[LintFinding, ...]:
        tolerated = set(self.tolerated)
        return tuple(f for f in self.findings if f.severity.blocks and f not in tolerated)

    @property
    def passed(self) -> bool:
        return not self.blocking


_validator_lock = threading.Lock()


@functools.cache
def _pkix_validator() -> Any:
    # pkilint is imported here, not at the top: loading it takes about a second, and
    # every `yinxin` command imports pki while few of them issue certificates.
    from pkilint.pkix import certificate as pkix_certificate
    from pkilint.pkix import extension as pkix_extension
    from pkilint.pkix import name as pkix_name

    return pkix_certificate.create_pkix_certificate_validator_container(
        pkix_certificate.create_decoding_validators(
            pkix_name.ATTRIBUTE_TYPE_MAPPINGS, pkix_extension.EXTENSION_MAPPINGS
        ),
        [
            pkix_certificate.create_issuer_validator_container([]),
            pkix_certificate.create_validity_validator_container(),
            pkix_certificate.create_subject_validator_container([]),
            pkix_certificate.create_extensions_validator_container([]),
            pkix_certificate.create_spki_validator_container([]),
        ],
    )


@functools.cache
def _etsi_validator() -> tuple[Any, Any]:
    from pkilint import etsi
    from pkilint.etsi import etsi_constants
    from pkilint.pkix import certificate as pkix_certificate

    legal_person = etsi_constants.CertificateType.NCP_LEGAL_PERSON_CERTIFICATE
    validator = pkix_certificate.create_pkix_certificate_validator_container(
        etsi.create_decoding_validators(legal_person),
        etsi.create_validators(legal_person),
    )
    return validator, etsi.create_etsi_finding_filters(legal_person)


def _run_pkilint(der: bytes, *, etsi_legal_person: bool) -> list[LintFinding]:
    from pkilint import finding_filter, loader

    findings: list[LintFinding] = []
    # pkilint's validator containers are built once and are not documented as
    # thread-safe, so one certificate is linted at a time per process.
    with _validator_lock:
        document = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "certificate")
        findings += _findings_from("pkix", _pkix_validator().validate(document.root))
        if etsi_legal_person:
            validator, filters = _etsi_validator()
            document = loader.RFC5280CertificateDocumentLoader().load_der_document(
                der, "certificate"
            )
            results, _ = finding_filter.filter_results(filters, validator.validate(document.root))
            # The ETSI validators include the RFC 5280 ones; keep only what they add.
            seen = {(f.code, f.location) for f in findings}
            findings += [
                f for f in _findings_from("etsi", results) if (f.code, f.location) not in seen
            ]
    return findings


def _findings_from(source: str, results: Iterable[Any]) -> list[LintFinding]:
    out = []
    for result in results:
        for description in result.finding_descriptions:
            severity = Severity(int(description.finding.severity.value))
            out.append(
                LintFinding(
                    source=source,
                    code=description.finding.code,
                    severity=severity,
                    message=description.message or "",
                    location=str(result.node.path),
                )
            )
    return out


def key_algorithm_of(public_key: object) -> KeyAlgorithm | None:
    """The Yinxin algorithm name of a public key, or None if Yinxin does not issue for it."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return {
            "secp256r1": KeyAlgorithm.EC_P256,
            "secp384r1": KeyAlgorithm.EC_P384,
        }.get(public_key.curve.name)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return KeyAlgorithm.ED25519
    if isinstance(public_key, rsa.RSAPublicKey):
        return {2048: KeyAlgorithm.RSA_2048, 3072: KeyAlgorithm.RSA_3072}.get(public_key.key_size)
    return None


def _key_usage_flags(cert: x509.Certificate) -> frozenset[KeyUsageFlag]:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset(flag for flag in KeyUsageFlag if getattr(usage, flag.value))


def _extended_key_usages(cert: x509.Certificate) -> frozenset[x509.ObjectIdentifier]:
    try:
        return frozenset(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return frozenset()


def _policies(cert: x509.Certificate) -> frozenset[x509.ObjectIdentifier]:
    try:
        policies = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    except x509.ExtensionNotFound:
        return frozenset()
    return frozenset(p.policy_identifier for p in policies)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def matching_profiles(
    cert: x509.Certificate, profiles: Mapping[str, CertificateProfile] = PROFILES
) -> list[str]:
    """Names of the profiles whose key usage, EKU, CA flag and policy `cert` matches."""
    usage = _key_usage_flags(cert)
    eku = _extended_key_usages(cert)
    policies = _policies(cert)
    ca = _is_ca(cert)
    return [
        name
        for name, profile in profiles.items()
        if profile.key_usage == usage
        and frozenset(profile.extended_key_usage) == eku
        and profile.is_ca == ca
        and (profile.policy_oid in policies if profile.policy_oid else not policies)
    ]


def _yinxin_lints(
    cert: x509.Certificate,
    profile: CertificateProfile,
    issuer: x509.Certificate | None,
    profiles: Mapping[str, CertificateProfile],
) -> list[LintFinding]:
    findings: list[LintFinding] = []

    def finding(code: str, message: str, severity: Severity = Severity.ERROR) -> None:
        findings.append(LintFinding("yinxin", f"yinxin.{code}", severity, message))

    serial_bits = cert.serial_number.bit_length()
    if cert.serial_number <= 0:
        finding("serial_not_positive", "the serial number must be positive")
    elif serial_bits < MIN_SERIAL_BITS:
        finding(
            "serial_entropy_too_low",
            f"the serial number has {serial_bits} bits; at least {MIN_SERIAL_BITS} random bits are required",
        )
    elif serial_bits > MAX_SERIAL_BITS:
        finding("serial_too_long", f"the serial number has {serial_bits} bits (over 20 octets)")

    not_before = cert.not_valid_before_utc
    not_after = cert.not_valid_after_utc
    if not_after <= not_before:
        finding("validity_empty", "notAfter is not after notBefore")
    if not_after - not_before > profile.max_validity + dt.timedelta(seconds=1):
        finding(
            "validity_too_long",
            f"validity of {(not_after - not_before).days} days exceeds the {profile.name} "
            f"profile's maximum of {profile.max_validity.days} days",
        )
    if issuer is not None:
        if not_before < issuer.not_valid_before_utc or not_after > issuer.not_valid_after_utc:
            finding("validity_outside_issuer", "the validity period is not inside the issuer's")

    algorithm = key_algorithm_of(cert.public_key())
    if algorithm is None or algorithm not in profile.allowed_algorithms:
        finding(
            "key_algorithm_not_allowed",
            f"the {profile.name} profile does not allow this public key type",
        )

    matches = matching_profiles(cert, profiles)
    if matches != [profile.name]:
        shown = ", ".join(matches) if matches else "none"
        finding(
            "profile_mismatch",
            f"the certificate must match exactly the {profile.name} profile; it matches: {shown}",
        )

    if profile.ocsp_nocheck:
        try:
            cert.extensions.get_extension_for_oid(ExtensionOID.OCSP_NO_CHECK)
        except x509.ExtensionNotFound:
            finding("ocsp_nocheck_absent", "an OCSP responder certificate needs id-pkix-ocsp-nocheck")
    return findings


def lint_certificate(
    cert: x509.Certificate,
    *,
    profile: CertificateProfile,
    issuer: x509.Certificate | None,
    tolerate_internal_domain: bool = False,
    profiles: Mapping[str, CertificateProfile] = PROFILES,
) -> LintReport:
    """Run pkilint and Yinxin's lints over `cert` (normally the linting copy).

    `tolerate_internal_domain` accepts ETSI's internal-domain finding, which a node
    whose public base URL is a loopback address (the demo, the tests) always raises.
    """
    der = cert.public_bytes(Encoding.DER)
    findings = _run_pkilint(der, etsi_legal_person=profile.etsi_legal_person)
    findings += _yinxin_lints(cert, profile, issuer, profiles)
    tolerated = tuple(
        f for f in findings if tolerate_internal_domain and f.code == INTERNAL_DOMAIN_FINDING
    )
    return LintReport(findings=tuple(findings), tolerated=tolerated)
