"""Building certificates from a profile: subject names, extensions, signature hashes.

Pure functions over cryptography's builders; no key store, no database. The CA
(pki/ca.py) signs what these build, first with a throwaway key for the lint gate and
then, once, with the HSM key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

from hsm_sim.api import KeyAlgorithm
from pki.oids import StandardOID
from pki.profiles import CertificateProfile, KeyUsageFlag

__all__ = [
    "NodeEndpoints",
    "AgencySubject",
    "agency_subject_name",
    "node_subject_name",
    "ca_subject_name",
    "signature_hash_for",
    "generate_throwaway_key",
    "build_certificate",
    "random_serial",
    "is_loopback_url",
    "fit_common_name",
    "MAX_COMMON_NAME_BYTES",
]


def random_serial() -> int:
    """159 random bits: positive and at most 20 octets, as RFC 5280 requires."""
    return x509.random_serial_number()


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class NodeEndpoints:
    """Where this node publishes what relying parties fetch (AIA, CRL DP, OCSP)."""

    base_url: str  # e.g. http://pki.example.gov.cn — CRL DPs must be http (ETSI, RFC 5280)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(
                f"the public base URL must be an http:// URL with a host name, got {self.base_url!r}"
                " (relying parties fetch CRLs and CA certificates over plain http)"
            )
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))

    @property
    def is_loopback(self) -> bool:
        return is_loopback_url(self.base_url)

    def ca_certificate_url(self, ca_name: str) -> str:
        return f"{self.base_url}/pki/ca/{ca_name}.crt"

    def crl_url(self, ca_name: str) -> str:
        return f"{self.base_url}/pki/crl/{ca_name}.crl"

    def delta_crl_url(self, ca_name: str) -> str:
        return f"{self.base_url}/pki/crl/{ca_name}-delta.crl"

    @property
    def ocsp_url(self) -> str:
        return f"{self.base_url}/pki/ocsp"

    @property
    def tsa_url(self) -> str:
        return f"{self.base_url}/pki/tsa"


@dataclasses.dataclass(frozen=True)
class AgencySubject:
    name: str
    uscc: str
    common_name: str | None = None


# X.520 bounds commonName at 64 characters, and cryptography enforces that bound in
# UTF-8 bytes, so a CN holds only about 21 Chinese characters.
MAX_COMMON_NAME_BYTES = 64


def fit_common_name(text: str, *, keep_suffix: str = "") -> str:
    """`text` shortened to fit a commonName, cut inside with "…" so `keep_suffix` stays."""
    if len(text.encode("utf-8")) <= MAX_COMMON_NAME_BYTES:
        return text
    head = text[: len(text) - len(keep_suffix)] if keep_suffix else text
    budget = MAX_COMMON_NAME_BYTES - len(("…" + keep_suffix).encode("utf-8"))
    while head and len(head.encode("utf-8")) > budget:
        head = head[:-1]
    return head + "…" + keep_suffix


def _cn(text: str) -> x509.NameAttribute:
    size = len(text.encode("utf-8"))
    if not text or size > MAX_COMMON_NAME_BYTES:
        raise ValueError(
            f"a common name must be 1 to {MAX_COMMON_NAME_BYTES} bytes of UTF-8 "
            f"(about 21 Chinese characters), got {size}"
        )
    return x509.NameAttribute(NameOID.COMMON_NAME, text)


def _org(text: str) -> x509.NameAttribute:
    if not text or len(text) > 64:
        raise ValueError(f"an organization name must be 1 to 64 characters long, got {len(text)}")
    return x509.NameAttribute(NameOID.ORGANIZATION_NAME, text)


def agency_subject_name(agency: AgencySubject) -> x509.Name:
    """C=CN, O=agency, organizationIdentifier=NTRCN-<USCC> (ETSI EN 319 412-1), CN."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            _org(agency.name),
            x509.NameAttribute(StandardOID.ORGANIZATION_IDENTIFIER, f"NTRCN-{agency.uscc}"),
            _cn(agency.common_name or fit_common_name(agency.name)),
        ]
    )


def node_subject_name(organization: str, common_name: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"), _org(organization), _cn(common_name)]
    )


ca_subject_name = node_subject_name


def signature_hash_for(key: object) -> hashes.HashAlgorithm | None:
    """The hash a key of this type signs with: SHA-384 for P-384, none for Ed25519."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return None
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return hashes.SHA256()
    raise TypeError(f"unsupported key type {type(key).__name__}")


def generate_throwaway_key(algorithm: KeyAlgorithm) -> CertificateIssuerPrivateKeyTypes:
    """A software key of the issuer's type, for the linting copy only."""
    if algorithm is KeyAlgorithm.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm is KeyAlgorithm.EC_P384:
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm is KeyAlgorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm is KeyAlgorithm.RSA_2048:
        return rsa.generate_private_key(65537, 2048)
    return rsa.generate_private_key(65537, 3072)


def _key_usage(flags: frozenset[KeyUsageFlag]) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=KeyUsageFlag.DIGITAL_SIGNATURE in flags,
        content_commitment=KeyUsageFlag.CONTENT_COMMITMENT in flags,
        key_encipherment=KeyUsageFlag.KEY_ENCIPHERMENT in flags,
        data_encipherment=KeyUsageFlag.DATA_ENCIPHERMENT in flags,
        key_agreement=KeyUsageFlag.KEY_AGREEMENT in flags,
        key_cert_sign=KeyUsageFlag.KEY_CERT_SIGN in flags,
        crl_sign=KeyUsageFlag.CRL_SIGN in flags,
        encipher_only=False,
        decipher_only=False,
    )


def build_certificate(
    *,
    profile: CertificateProfile,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    issuer_certificate: x509.Certificate | None,
    issuer_name: str,
    issuer_public_key: CertificatePublicKeyTypes,
    serial: int,
    not_before: dt.datetime,
    not_after: dt.datetime,
    endpoints: NodeEndpoints,
    path_length: int | None = None,
    permitted_subtrees: tuple[x509.Name, ...] = (),
) -> x509.CertificateBuilder:
    """An unsigned certificate for `profile`. A self-signed root has no issuer certificate.

    `issuer_name` is the CA's short name, used in the AIA and CRL DP URLs.
    """
    issuer_subject = issuer_certificate.subject if issuer_certificate is not None else subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.BasicConstraints(ca=profile.is_ca, path_length=path_length if profile.is_ca else None),
            critical=True,
        )
        .add_extension(_key_usage(profile.key_usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer_certificate is not None:
        try:
            ski = issuer_certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value)
        except x509.ExtensionNotFound:
            aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key)
        builder = builder.add_extension(aki, critical=False)
    else:
        # RFC 5280 lets a self-signed certificate omit the AKI, but pkilint (and some
        # path builders) want it; it names the root's own key.
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
    if profile.extended_key_usage:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(list(profile.extended_key_usage)),
            critical=profile.extended_key_usage_critical,
        )
    if profile.policy_oid is not None:
        builder = builder.add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(profile.policy_oid, None)]),
            critical=False,
        )
    if profile.ocsp_nocheck:
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
    if permitted_subtrees:
        builder = builder.add_extension(
            x509.NameConstraints(
                permitted_subtrees=[x509.DirectoryName(n) for n in permitted_subtrees],
                excluded_subtrees=None,
            ),
            critical=True,
        )
    if issuer_certificate is not None and profile.include_revocation_pointers:
        access = [
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(endpoints.ca_certificate_url(issuer_name)),
            )
        ]
        if not profile.ocsp_nocheck:
            access.append(
                x509.AccessDescription(
                    AuthorityInformationAccessOID.OCSP,
                    x509.UniformResourceIdentifier(endpoints.ocsp_url),
                )
            )
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(endpoints.crl_url(issuer_name))],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
    return builder
