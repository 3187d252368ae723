"""The registration authority: decides whether a subject may have a certificate.

It turns "agency X wants a seal certificate for this CSR / for a new HSM key" into an
`IssuanceRequest` for the CA: the agency must be registered, the profile must allow
the key path, a CSR must prove possession of its key and carry an allowed key, and
the subject is always built from the registration data — whatever a CSR says about
its subject is ignored.
"""

from __future__ import annotations

import dataclasses
import logging
import datetime as dt

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import (
    dsa,
    ec,
    ed448,
    ed25519,
    rsa,
    x448,
    x25519,
)
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from sqlalchemy.orm import Session, sessionmaker

from hsm_sim.api import KeyAlgorithm, KeyStore
from hsm_sim.errors import HsmError
from pki.ca import CertificateAuthority, IssuanceRequest, IssuedCertificate
from pki.certificates import AgencySubject, agency_subject_name, node_subject_name
from pki.errors import CsrError, KeyPolicyError, MissingAgencyError, UnknownProfileError
from pki.lint import key_algorithm_of
from pki.profiles import CertificateProfile, SubjectKind
from pki.registry import get_agency

__all__ = ["MAX_CSR_BYTES", "RegistrationAuthority", "load_csr", "check_key_policy"]

_log = logging.getLogger(__name__)

MAX_CSR_BYTES = 64 * 1024


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """A CSR from PEM or DER whose self-signature (proof of possession) verifies."""
    if len(data) > MAX_CSR_BYTES:
        raise CsrError(f"the CSR is {len(data)} bytes; at most {MAX_CSR_BYTES} are accepted")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError:
        raise CsrError("the file is not a PKCS#10 certificate signing request (PEM or DER)") from None
    try:
        csr.public_key()
    except UnsupportedAlgorithm as exc:
        # SM2 and other curves cryptography cannot load: say so, rather than report
        # a signature failure that did not happen.
        raise KeyPolicyError(f"the CSR's public key is of a type Yinxin does not issue for ({exc})") from None
    except ValueError:
        raise CsrError("the CSR's public key cannot be read") from None
    try:
        valid = csr.is_signature_valid
    except Exception:  # noqa: BLE001 - cryptography raises assorted errors on odd keys
        valid = False
    if not valid:
        raise CsrError("the CSR's signature does not verify: it does not prove possession of the key")
    return csr


def _describe_key(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, (ed25519.Ed25519PublicKey,)):
        return "Ed25519"
    if isinstance(key, (ed448.Ed448PublicKey, x448.X448PublicKey, x25519.X25519PublicKey)):
        return type(key).__name__.removesuffix("PublicKey")
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA-{key.key_size}"
    return type(key).__name__


def check_key_policy(public_key: object, profile: CertificateProfile) -> KeyAlgorithm:
    """The key's algorithm if `profile` allows it; KeyPolicyError naming what is allowed."""
    algorithm = key_algorithm_of(public_key)
    if algorithm is None or algorithm not in profile.allowed_algorithms:
        allowed = ", ".join(sorted(a.value for a in profile.allowed_algorithms))
        weak = (
            isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < 2048
        ) or (isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.key_size < 256)
        why = "too weak" if weak else "not allowed"
        raise KeyPolicyError(
            f"the key ({_describe_key(public_key)}) is {why} for a {profile.name} certificate; "
            f"use one of: {allowed}"
        )
    return algorithm


@dataclasses.dataclass(frozen=True)
class _Subject:
    name: x509.Name
    agency_id: int | None


class RegistrationAuthority:
    def __init__(
        self,
        *,
        ca: CertificateAuthority,
        keystore: KeyStore,
        sessions: sessionmaker[Session],
        organization: str,
    ) -> None:
        self.ca = ca
        self.keystore = keystore
        self.sessions = sessions
        self.organization = organization  # O of the node's own certificates

    def _profile(self, name: str) -> CertificateProfile:
        profile = self.ca.profile(name)
        if profile.is_ca:
            # A CA certificate issued on request would be a CA the hierarchy does not
            # know (no CA row, no CRLs, no name constraints): only the ceremony makes them.
            raise UnknownProfileError(
                f"{profile.name} certificates are made only by the CA ceremony, not issued on request"
            )
        return profile

    def _subject(
        self, profile: CertificateProfile, agency_uscc: str | None, common_name: str | None
    ) -> _Subject:
        if profile.subject_kind is SubjectKind.AGENCY:
            if not agency_uscc:
                raise MissingAgencyError(
                    f"a {profile.name} certificate is for an agency: give its USCC"
                )
            with self.sessions() as session:
                agency = get_agency(session, agency_uscc)
            subject = AgencySubject(name=agency.name, uscc=agency.uscc, common_name=common_name)
            return _Subject(agency_subject_name(subject), agency.id)
        if not common_name:
            common_name = f"{self.organization} {profile.name}"[:64]
        return _Subject(node_subject_name(self.organization, common_name), None)

    def request_with_csr(
        self,
        *,
        profile_name: str,
        csr_data: bytes,
        agency_uscc: str | None = None,
        common_name: str | None = None,
        validity: dt.timedelta | None = None,
        issuer_name: str | None = None,
    ) -> IssuanceRequest:
        profile = self._profile(profile_name)
        if not profile.csr_allowed:
            raise CsrError(f"{profile.name} certificates are only issued for keys made in our HSM")
        csr = load_csr(csr_data)
        public_key: CertificatePublicKeyTypes = csr.public_key()  # type: ignore[assignment]
        check_key_policy(public_key, profile)
        subject = self._subject(profile, agency_uscc, common_name)
        return IssuanceRequest(
            profile=profile.name,
            subject=subject.name,
            public_key=public_key,
            validity=validity,
            agency_id=subject.agency_id,
            issuer_name=issuer_name,
        )

    def issue_with_csr(self, **kwargs: object) -> IssuedCertificate:
        return self.ca.issue(self.request_with_csr(**kwargs))  # type: ignore[arg-type]

    def issue_with_new_key(
        self,
        *,
        profile_name: str,
        key_label: str,
        algorithm: KeyAlgorithm | None = None,
        agency_uscc: str | None = None,
        common_name: str | None = None,
        validity: dt.timedelta | None = None,
        issuer_name: str | None = None,
    ) -> IssuedCertificate:
        """Make a key in the HSM with the profile's usages and certify it.

        If the certificate cannot be issued, the new key is destroyed again: nothing
        half-made remains.
        """
        profile = self._profile(profile_name)
        algorithm = algorithm or profile.default_algorithm
        if algorithm not in profile.allowed_algorithms:
            allowed = ", ".join(sorted(a.value for a in profile.allowed_algorithms))
            raise KeyPolicyError(
                f"{algorithm.value} is not allowed for a {profile.name} certificate; use one of: {allowed}"
            )
        subject = self._subject(profile, agency_uscc, common_name)
        # Refused requests leave no trace in the token: find the issuer before the key.
        self.ca.issuer_for(profile, issuer_name)
        info = self.keystore.generate_key(key_label, algorithm, profile.hsm_usages)
        try:
            return self.ca.issue(
                IssuanceRequest(
                    profile=profile.name,
                    subject=subject.name,
                    public_key=self.keystore.public_key(info.label),  # type: ignore[arg-type]
                    validity=validity,
                    agency_id=subject.agency_id,
                    key_label=info.label,
                    issuer_name=issuer_name,
                )
            )
        except BaseException:
            try:
                self.keystore.destroy_key(info.label)
            except HsmError as cleanup:
                # The issuance failure is what the caller must see; the stray key is
                # logged so an operator can destroy it (`yinxin hsm keys`).
                _log.error("key %r left in the token after a failed issuance: %s", info.label, cleanup)
            raise
