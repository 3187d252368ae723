"""Certificate profiles: exactly what each kind of certificate Yinxin issues looks like.

A profile is data, not code: the CA builds every certificate from one of these, and
the lint gate checks that the result matches exactly one of them (Boulder's
"exactly one profile" rule), so a certificate can never be a blend of two roles.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

from cryptography.x509 import ObjectIdentifier
from cryptography.x509.oid import ExtendedKeyUsageOID

from hsm_sim.api import KeyAlgorithm, KeyUsage
from pki.errors import UnknownProfileError
from pki.oids import ProjectOID, StandardOID

__all__ = [
    "SubjectKind",
    "IssuerRole",
    "KeyUsageFlag",
    "CertificateProfile",
    "PROFILES",
    "get_profile",
]


class SubjectKind(enum.Enum):
    AGENCY = "agency"  # O = agency, organizationIdentifier = NTRCN-<USCC>, C = CN
    NODE = "node"  # the region's own services (OCSP responder, TSA, document signer)
    CA = "ca"


class IssuerRole(enum.Enum):
    """Which CA of the region's hierarchy signs a profile's certificates."""

    ROOT = "root"
    SEAL = "seal"
    DOCUMENT = "document"
    INFRASTRUCTURE = "infrastructure"
    ANY = "any"  # the OCSP responder: each CA delegates to a responder it certifies itself


class KeyUsageFlag(enum.Enum):
    DIGITAL_SIGNATURE = "digital_signature"
    CONTENT_COMMITMENT = "content_commitment"
    KEY_ENCIPHERMENT = "key_encipherment"
    DATA_ENCIPHERMENT = "data_encipherment"
    KEY_AGREEMENT = "key_agreement"
    KEY_CERT_SIGN = "key_cert_sign"
    CRL_SIGN = "crl_sign"


EC_ALGORITHMS = frozenset({KeyAlgorithm.EC_P256, KeyAlgorithm.EC_P384})
END_ENTITY_ALGORITHMS = frozenset(
    {
        KeyAlgorithm.EC_P256,
        KeyAlgorithm.EC_P384,
        KeyAlgorithm.ED25519,
        KeyAlgorithm.RSA_2048,
        KeyAlgorithm.RSA_3072,
    }
)


@dataclasses.dataclass(frozen=True)
class CertificateProfile:
    name: str
    policy_oid: ObjectIdentifier | None  # None: no certificatePolicies (the root)
    subject_kind: SubjectKind
    issuer_role: IssuerRole
    key_usage: frozenset[KeyUsageFlag]
    extended_key_usage: tuple[ObjectIdentifier, ...]
    extended_key_usage_critical: bool
    is_ca: bool
    max_validity: dt.timedelta
    default_validity: dt.timedelta
    allowed_algorithms: frozenset[KeyAlgorithm]
    default_algorithm: KeyAlgorithm
    hsm_usages: frozenset[KeyUsage]
    ocsp_nocheck: bool = False
    include_revocation_pointers: bool = True  # AIA (caIssuers + OCSP) and CRL DP
    etsi_legal_person: bool = False  # also lint against ETSI EN 319 412-3
    csr_allowed: bool = True

    def __post_init__(self) -> None:
        if not self.key_usage:
            raise ValueError(f"profile {self.name}: a key usage is required")
        if self.default_validity > self.max_validity:
            raise ValueError(f"profile {self.name}: default validity exceeds the maximum")
        if self.default_algorithm not in self.allowed_algorithms:
            raise ValueError(f"profile {self.name}: default algorithm is not allowed")

    def with_validity(self, default_days: int, max_days: int | None = None) -> CertificateProfile:
        """This profile with lifetimes taken from the node's configuration."""
        maximum = dt.timedelta(days=max_days) if max_days is not None else self.max_validity
        return dataclasses.replace(
            self, default_validity=dt.timedelta(days=default_days), max_validity=maximum
        )


_DAY = dt.timedelta(days=1)

PROFILES: dict[str, CertificateProfile] = {
    profile.name: profile
    for profile in (
        CertificateProfile(
            name="seal",
            policy_oid=ProjectOID.SEAL_POLICY,
            subject_kind=SubjectKind.AGENCY,
            issuer_role=IssuerRole.SEAL,
            # nonRepudiation alone: ETSI EN 319 412-2 flags it mixed with
            # digitalSignature, and pyHanko and pdfsig accept it alone.
            key_usage=frozenset({KeyUsageFlag.CONTENT_COMMITMENT}),
            extended_key_usage=(StandardOID.DOCUMENT_SIGNING,),
            extended_key_usage_critical=False,
            is_ca=False,
            max_validity=1826 * _DAY,
            default_validity=730 * _DAY,
            allowed_algorithms=END_ENTITY_ALGORITHMS,
            default_algorithm=KeyAlgorithm.EC_P256,
            hsm_usages=frozenset({KeyUsage.SEAL}),
            etsi_legal_person=True,
        ),
        CertificateProfile(
            name="seal-maker",
            policy_oid=ProjectOID.SEAL_MAKER_POLICY,
            subject_kind=SubjectKind.NODE,
            issuer_role=IssuerRole.SEAL,
            key_usage=frozenset({KeyUsageFlag.CONTENT_COMMITMENT}),
            extended_key_usage=(StandardOID.DOCUMENT_SIGNING,),
            extended_key_usage_critical=False,
            is_ca=False,
            max_validity=3653 * _DAY,
            default_validity=1826 * _DAY,
            allowed_algorithms=END_ENTITY_ALGORITHMS,
            default_algorithm=KeyAlgorithm.EC_P256,
            hsm_usages=frozenset({KeyUsage.SEAL}),
            csr_allowed=False,
        ),
        CertificateProfile(
            name="document-signer",
            policy_oid=ProjectOID.DOCUMENT_SIGNER_POLICY,
            subject_kind=SubjectKind.NODE,
            issuer_role=IssuerRole.DOCUMENT,
            key_usage=frozenset({KeyUsageFlag.DIGITAL_SIGNATURE}),
            extended_key_usage=(StandardOID.DOCUMENT_SIGNING,),
            extended_key_usage_critical=False,
            is_ca=False,
            max_validity=365 * _DAY,
            default_validity=365 * _DAY,
            allowed_algorithms=EC_ALGORITHMS,
            default_algorithm=KeyAlgorithm.EC_P256,
            hsm_usages=frozenset({KeyUsage.TOKEN}),
        ),
        CertificateProfile(
            name="ocsp",
            policy_oid=ProjectOID.OCSP_RESPONDER_POLICY,
            subject_kind=SubjectKind.NODE,
            issuer_role=IssuerRole.ANY,
            key_usage=frozenset({KeyUsageFlag.DIGITAL_SIGNATURE}),
            extended_key_usage=(ExtendedKeyUsageOID.OCSP_SIGNING,),
            extended_key_usage_critical=False,
            is_ca=False,
            max_validity=365 * _DAY,
            default_validity=365 * _DAY,
            allowed_algorithms=EC_ALGORITHMS,
            default_algorithm=KeyAlgorithm.EC_P256,
            hsm_usages=frozenset({KeyUsage.OCSP_SIGN}),
            ocsp_nocheck=True,
            csr_allowed=False,
        ),
        CertificateProfile(
            name="tsa",
            policy_oid=ProjectOID.TSA_POLICY,
            subject_kind=SubjectKind.NODE,
            issuer_role=IssuerRole.INFRASTRUCTURE,
            key_usage=frozenset({KeyUsageFlag.DIGITAL_SIGNATURE}),
            extended_key_usage=(ExtendedKeyUsageOID.TIME_STAMPING,),
            extended_key_usage_critical=True,  # RFC 3161 §2.3: MUST be critical
            is_ca=False,
            max_validity=3653 * _DAY,
            default_validity=1826 * _DAY,
            allowed_algorithms=END_ENTITY_ALGORITHMS,
            default_algorithm=KeyAlgorithm.EC_P256,
            hsm_usages=frozenset({KeyUsage.TSA}),
            csr_allowed=False,
        ),
        CertificateProfile(
            name="api-client",
            policy_oid=ProjectOID.API_CLIENT_POLICY,
            subject_kind=SubjectKind.AGENCY,
            issuer_role=IssuerRole.INFRASTRUCTURE,
            key_usage=frozenset({KeyUsageFlag.DIGITAL_SIGNATURE}),
            extended_key_usage=(ExtendedKeyUsageOID.CLIENT_AUTH,),
            extended_key_usage_critical=False,
            is_ca=False,
            max_validity=398 * _DAY,
            default_validity=365 * _DAY,
            allowed_algorithms=END_ENTITY_ALGORITHMS,
            default_algorithm=KeyAlgorithm.EC_P256,
            hsm_usages=frozenset({KeyUsage.CLIENT}),
        ),
        CertificateProfile(
            name="root",
            policy_oid=None,
            subject_kind=SubjectKind.CA,
            issuer_role=IssuerRole.ROOT,
            key_usage=frozenset({KeyUsageFlag.KEY_CERT_SIGN, KeyUsageFlag.CRL_SIGN}),
            extended_key_usage=(),
            extended_key_usage_critical=False,
            is_ca=True,
            max_validity=10958 * _DAY,
            default_validity=7305 * _DAY,
            allowed_algorithms=EC_ALGORITHMS | {KeyAlgorithm.RSA_3072},
            default_algorithm=KeyAlgorithm.EC_P384,
            hsm_usages=frozenset({KeyUsage.CERT_SIGN, KeyUsage.CRL_SIGN}),
            include_revocation_pointers=False,
            csr_allowed=False,
        ),
        CertificateProfile(
            name="sub-ca",
            policy_oid=ProjectOID.CA_POLICY,
            subject_kind=SubjectKind.CA,
            issuer_role=IssuerRole.ROOT,
            key_usage=frozenset({KeyUsageFlag.KEY_CERT_SIGN, KeyUsageFlag.CRL_SIGN}),
            extended_key_usage=(),
            extended_key_usage_critical=False,
            is_ca=True,
            max_validity=7305 * _DAY,
            default_validity=3653 * _DAY,
            allowed_algorithms=EC_ALGORITHMS | {KeyAlgorithm.RSA_3072},
            default_algorithm=KeyAlgorithm.EC_P256,
            hsm_usages=frozenset({KeyUsage.CERT_SIGN, KeyUsage.CRL_SIGN}),
            csr_allowed=False,
        ),
    )
}


def get_profile(name: str) -> CertificateProfile:
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(sorted(PROFILES))
        raise UnknownProfileError(f"unknown certificate profile {name!r}; use one of: {known}") from None
