"""The certificate authority: it signs, and only after the lint gate has passed.

Issuance follows Let's Encrypt's Boulder. The registration authority (pki/ra.py) has
already decided that the subject may have the certificate; here the CA re-checks the
request against its profile, builds the certificate, signs a linting copy with a
throwaway key of the issuer's type, lints it, stores it (reserving the serial), and
only then signs once with the issuer's key in the HSM. The final certificate's TBS
must be byte-identical to the linting copy's, so what was linted is what was issued.

Rule for every step that signs: commit first, then sign, then store the result in a
new transaction (see hsm_sim/audit.py: the audit entry is written before each
signature, on its own connection). Whatever interrupts the steps after the row is
stored marks it FAILED; a row a killed process left PENDING is failed by
`fail_abandoned_issuances()`, for the portal's schedule to run.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable, Mapping

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hsm_sim.api import KeyAlgorithm, KeyStore, KeyUsage, signing_context
from hsm_sim.storage import utcnow, write_transaction
from pki.ca_models import CaRow, CertificateRow, CertificateState
from pki.certificates import (
    NodeEndpoints,
    build_certificate,
    generate_throwaway_key,
    random_serial,
    signature_hash_for,
)
from pki.errors import (
    InvalidSerialError,
    IssuanceError,
    LintFailedError,
    UnknownCaError,
)
from pki.lint import LintReport, lint_certificate
from pki.profiles import PROFILES, CertificateProfile, IssuerRole, get_profile

__all__ = [
    "Issuer",
    "IssuanceRequest",
    "IssuedCertificate",
    "CertificateAuthority",
    "serial_to_text",
    "serial_from_text",
]

# Backdating absorbs relying parties' clock skew (Boulder backdates by an hour).
BACKDATE = dt.timedelta(minutes=5)
SERIAL_ATTEMPTS = 5

_log = logging.getLogger(__name__)


def serial_to_text(serial: int) -> str:
    return format(serial, "x")


def serial_from_text(text: str) -> int:
    """A serial from hex as people paste it: `0x1f`, `1F:2A`, `1f 2a` all work."""
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "").replace(" ", "")
    if not cleaned or len(cleaned) > 42 or any(c not in "0123456789abcdef" for c in cleaned):
        raise InvalidSerialError(f"{text!r} is not a hexadecimal serial number")
    return int(cleaned, 16)


@dataclasses.dataclass(frozen=True)
class Issuer:
    """One CA of the region's hierarchy, as the CA needs it to sign."""

    id: int
    name: str
    role: IssuerRole
    key_label: str
    algorithm: KeyAlgorithm
    certificate: x509.Certificate
    parent_id: int | None


@dataclasses.dataclass(frozen=True)
class IssuanceRequest:
    """What the RA hands the CA. The subject comes from registration data, never a CSR."""

    profile: str
    subject: x509.Name
    public_key: CertificatePublicKeyTypes
    validity: dt.timedelta | None = None  # None: the profile's default
    agency_id: int | None = None
    key_label: str | None = None  # set when the subject's key lives in our HSM
    issuer_name: str | None = None  # None: the CA the profile's role names
    path_length: int | None = None
    permitted_subtrees: tuple[x509.Name, ...] = ()


@dataclasses.dataclass(frozen=True)
class IssuedCertificate:
    certificate: x509.Certificate
    issuer: str
    profile: str
    serial: str
    tolerated_findings: tuple[str, ...]

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)


class CertificateAuthority:
    """Signs certificates, CRLs and OCSP responses for the CAs stored in the database."""

    def __init__(
        self,
        *,
        keystore: KeyStore,
        sessions: sessionmaker[Session],
        endpoints: NodeEndpoints,
        profiles: Mapping[str, CertificateProfile] = PROFILES,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.keystore = keystore
        self.sessions = sessions
        self.endpoints = endpoints
        self.profiles = profiles
        self.clock = clock
        self._throwaway_keys: dict[KeyAlgorithm, CertificateIssuerPrivateKeyTypes] = {}
        self._throwaway_lock = threading.Lock()

    # -- the hierarchy ---------------------------------------------------------

    def issuer(self, name: str) -> Issuer:
        with self.sessions() as session:
            row = session.scalar(select(CaRow).where(CaRow.name == name))
            if row is None:
                known = ", ".join(session.scalars(select(CaRow.name).order_by(CaRow.id))) or "none yet"
                raise UnknownCaError(f"there is no CA named {name!r} (known: {known})")
            return _issuer_from_row(row)

    def issuers(self) -> list[Issuer]:
        with self.sessions() as session:
            return [_issuer_from_row(r) for r in session.scalars(select(CaRow).order_by(CaRow.id))]

    def issuer_for_role(self, role: IssuerRole) -> Issuer:
        with self.sessions() as session:
            row = session.scalar(select(CaRow).where(CaRow.role == role).order_by(CaRow.id.desc()))
            if row is None:
                raise UnknownCaError(
                    f"this node has no {role.value} CA yet; run the CA ceremony first"
                )
            return _issuer_from_row(row)

    def chain(self, issuer: Issuer) -> list[x509.Certificate]:
        """`issuer`'s certificate and its parents up to the root, leaf-most first."""
        chain = [issuer.certificate]
        parent_id = issuer.parent_id
        with self.sessions() as session:
            while parent_id is not None:
                row = session.get(CaRow, parent_id)
                if row is None:
                    break
                chain.append(x509.load_der_x509_certificate(row.certificate_der))
                parent_id = row.parent_id
        return chain

    def profile(self, name: str) -> CertificateProfile:
        if name in self.profiles:
            return self.profiles[name]
        return get_profile(name)

    def signing_key(self, issuer: Issuer, usage: KeyUsage) -> CertificateIssuerPrivateKeyTypes:
        """The HSM handle of `issuer`'s key, bound to `usage`."""
        return self.keystore.private_key(issuer.key_label, usage=usage)

    # -- issuance --------------------------------------------------------------

    def lint(self, request: IssuanceRequest) -> tuple[x509.CertificateBuilder, x509.Certificate, LintReport, Issuer]:
        """Build the certificate and lint its throwaway-signed copy; nothing is stored."""
        profile = self.profile(request.profile)
        issuer = self.issuer_for(profile, request.issuer_name)
        builder = self._build(request, profile, issuer, random_serial())
        lint_copy = builder.sign(self._throwaway_key(issuer.algorithm), signature_hash_for(issuer.certificate.public_key()))
        report = lint_certificate(
            lint_copy,
            profile=profile,
            issuer=issuer.certificate,
            tolerate_internal_domain=self.endpoints.is_loopback,
            profiles=self.profiles,
        )
        return builder, lint_copy, report, issuer

    def issue(self, request: IssuanceRequest) -> IssuedCertificate:
        """Lint, reserve the serial with the linting copy, then sign once in the HSM."""
        profile = self.profile(request.profile)
        for _ in range(SERIAL_ATTEMPTS):
            builder, lint_copy, report, issuer = self.lint(request)
            if not report.passed:
                raise LintFailedError(profile.name, [str(f) for f in report.blocking])
            row_id = self._reserve(request, issuer, lint_copy, report)
            if row_id is not None:
                break
        else:
            raise IssuanceError("could not find an unused serial number; try again")

        try:
            key = self.signing_key(issuer, KeyUsage.CERT_SIGN)
            with signing_context(operation=f"issue-certificate:{profile.name}"):
                certificate = builder.sign(key, signature_hash_for(issuer.certificate.public_key()))
            if certificate.tbs_certificate_bytes != lint_copy.tbs_certificate_bytes:
                raise IssuanceError("the signed certificate differs from its linting copy")
            # Not guarded by state: a certificate the HSM has signed is recorded as
            # issued even if the sweep failed its row meanwhile.
            with self.sessions.begin() as session:
                session.execute(
                    update(CertificateRow)
                    .where(CertificateRow.id == row_id)
                    .values(state=CertificateState.ISSUED, der=certificate.public_bytes(Encoding.DER))
                )
        except BaseException:
            # Not only HSM errors: a failed final UPDATE, a worker's timeout or a bug
            # would otherwise leave the row PENDING, neither issued nor failed.
            self._mark_failed(row_id)
            raise
        return IssuedCertificate(
            certificate=certificate,
            issuer=issuer.name,
            profile=profile.name,
            serial=serial_to_text(certificate.serial_number),
            tolerated_findings=tuple(str(f) for f in report.tolerated),
        )

    def fail_abandoned_issuances(self, *, older_than: dt.timedelta) -> int:
        """Mark certificates still PENDING after `older_than` as failed (a process died
        between storing the linting copy and storing the certificate); returns how many.
        For the portal's schedule: `older_than` must exceed the longest an issuance can
        take, or a slow one would be failed while its HSM signature is being made."""
        if older_than <= dt.timedelta(0):
            raise ValueError("older_than must be a positive duration")
        with write_transaction(self.sessions) as session:
            return session.execute(
                update(CertificateRow)
                .where(
                    CertificateRow.state == CertificateState.PENDING,
                    CertificateRow.created_at < self.clock() - older_than,
                )
                .values(state=CertificateState.FAILED)
            ).rowcount

    def issuer_for(self, profile: CertificateProfile, issuer_name: str | None = None) -> Issuer:
        """The CA that signs `profile`'s certificates (the named one, if it may)."""
        if issuer_name is not None:
            issuer = self.issuer(issuer_name)
            if profile.issuer_role not in (IssuerRole.ANY, issuer.role):
                raise UnknownCaError(
                    f"the {issuer.name} CA does not issue {profile.name} certificates"
                )
            return issuer
        if profile.issuer_role is IssuerRole.ANY:
            raise UnknownCaError(f"say which CA issues this {profile.name} certificate")
        return self.issuer_for_role(profile.issuer_role)

    def _build(
        self, request: IssuanceRequest, profile: CertificateProfile, issuer: Issuer, serial: int
    ) -> x509.CertificateBuilder:
        now = self.clock()
        not_before = now - BACKDATE
        validity = request.validity or profile.default_validity
        if validity > profile.max_validity:
            validity = profile.max_validity
        # A certificate never outlives its issuer: cut it at the issuer's notAfter.
        not_after = min(not_before + validity, issuer.certificate.not_valid_after_utc)
        not_before = max(not_before, issuer.certificate.not_valid_before_utc)
        return build_certificate(
            profile=profile,
            subject=request.subject,
            public_key=request.public_key,
            issuer_certificate=issuer.certificate,
            issuer_name=issuer.name,
            issuer_public_key=issuer.certificate.public_key(),
            serial=serial,
            not_before=not_before,
            not_after=not_after,
            endpoints=self.endpoints,
            path_length=request.path_length,
            permitted_subtrees=request.permitted_subtrees,
        )

    def _reserve(
        self,
        request: IssuanceRequest,
        issuer: Issuer,
        lint_copy: x509.Certificate,
        report: LintReport,
    ) -> int | None:
        """Store the linting copy; None when its serial is already taken by this issuer."""
        row = CertificateRow(
            issuer_id=issuer.id,
            serial=serial_to_text(lint_copy.serial_number),
            profile=request.profile,
            subject=lint_copy.subject.rfc4514_string(),
            agency_id=request.agency_id,
            key_label=request.key_label,
            state=CertificateState.PENDING,
            lint_der=lint_copy.public_bytes(Encoding.DER),
            tolerated_findings="\n".join(str(f) for f in report.tolerated),
            not_before=lint_copy.not_valid_before_utc,
            not_after=lint_copy.not_valid_after_utc,
            created_at=self.clock(),  # the sweep measures age on the same clock
        )
        try:
            with self.sessions.begin() as session:
                session.add(row)
                session.flush()
                return row.id
        except IntegrityError:
            return None

    def _mark_failed(self, row_id: int) -> None:
        """Fail a row still PENDING, while another error propagates. Best effort: a
        failure here is logged, never raised over that error; the sweep fails it later."""
        try:
            with write_transaction(self.sessions) as session:
                session.execute(
                    update(CertificateRow)
                    .where(
                        CertificateRow.id == row_id,
                        CertificateRow.state == CertificateState.PENDING,
                    )
                    .values(state=CertificateState.FAILED)
                )
        except Exception as exc:
            # The class only: a database error's message can quote the row's values.
            _log.error(
                "certificate row %d left pending after a failed issuance (%s); "
                "fail_abandoned_issuances will fail it",
                row_id,
                type(exc).__name__,
            )

    def _throwaway_key(self, algorithm: KeyAlgorithm) -> CertificateIssuerPrivateKeyTypes:
        with self._throwaway_lock:
            key = self._throwaway_keys.get(algorithm)
            if key is None:
                key = self._throwaway_keys[algorithm] = generate_throwaway_key(algorithm)
            return key


def _issuer_from_row(row: CaRow) -> Issuer:
    return Issuer(
        id=row.id,
        name=row.name,
        role=row.role,
        key_label=row.key_label,
        algorithm=row.algorithm,
        certificate=x509.load_der_x509_certificate(row.certificate_der),
        parent_id=row.parent_id,
    )


class HierarchyBuilder:
    """Creates the CAs of the hierarchy: a self-signed root and subordinates under it.

    Used by the ceremony. Each CA certificate goes through the same lint gate as any
    other certificate, and the CA's row is stored before its HSM signature is made.
    """

    def __init__(self, ca: CertificateAuthority) -> None:
        self.ca = ca

    def create_root(
        self,
        *,
        name: str,
        subject: x509.Name,
        key_label: str,
        algorithm: KeyAlgorithm,
        lifetime: dt.timedelta,
    ) -> Issuer:
        ca = self.ca
        profile = ca.profile("root")
        public_key = ca.keystore.public_key(key_label)
        now = ca.clock()
        builder = build_certificate(
            profile=profile,
            subject=subject,
            public_key=public_key,  # type: ignore[arg-type]
            issuer_certificate=None,
            issuer_name=name,
            issuer_public_key=public_key,  # type: ignore[arg-type]
            serial=random_serial(),
            not_before=now - BACKDATE,
            not_after=now - BACKDATE + lifetime,
            endpoints=ca.endpoints,
        )
        hash_algorithm = signature_hash_for(public_key)
        lint_copy = builder.sign(ca._throwaway_key(algorithm), hash_algorithm)
        report = lint_certificate(
            lint_copy, profile=profile, issuer=lint_copy, profiles=ca.profiles,
            tolerate_internal_domain=ca.endpoints.is_loopback,
        )
        if not report.passed:
            raise LintFailedError(profile.name, [str(f) for f in report.blocking])
        with ca.sessions.begin() as session:
            ca_row = CaRow(
                name=name,
                role=IssuerRole.ROOT,
                parent_id=None,
                key_label=key_label,
                algorithm=algorithm,
                certificate_der=lint_copy.public_bytes(Encoding.DER),
            )
            session.add(ca_row)
            session.flush()
            cert_row = CertificateRow(
                issuer_id=ca_row.id,
                serial=serial_to_text(lint_copy.serial_number),
                profile=profile.name,
                subject=subject.rfc4514_string(),
                key_label=key_label,
                state=CertificateState.PENDING,
                lint_der=lint_copy.public_bytes(Encoding.DER),
                not_before=lint_copy.not_valid_before_utc,
                not_after=lint_copy.not_valid_after_utc,
                created_at=now,
            )
            session.add(cert_row)
            session.flush()
            ca_id, row_id = ca_row.id, cert_row.id
        try:
            key = ca.keystore.private_key(key_label, usage=KeyUsage.CERT_SIGN)
            with signing_context(operation="issue-certificate:root"):
                certificate = builder.sign(key, hash_algorithm)
            der = certificate.public_bytes(Encoding.DER)
            with ca.sessions.begin() as session:
                session.execute(update(CaRow).where(CaRow.id == ca_id).values(certificate_der=der))
                session.execute(
                    update(CertificateRow)
                    .where(CertificateRow.id == row_id)
                    .values(state=CertificateState.ISSUED, der=der)
                )
        except BaseException:
            ca._mark_failed(row_id)  # as in issue(): never leave the row PENDING
            raise
        return ca.issuer(name)

    def create_subordinate(
        self,
        *,
        name: str,
        role: IssuerRole,
        parent: Issuer,
        subject: x509.Name,
        key_label: str,
        algorithm: KeyAlgorithm,
        lifetime: dt.timedelta,
        path_length: int | None,
        permitted_subtrees: tuple[x509.Name, ...],
    ) -> Issuer:
        ca = self.ca
        issued = ca.issue(
            IssuanceRequest(
                profile="sub-ca",
                subject=subject,
                public_key=ca.keystore.public_key(key_label),  # type: ignore[arg-type]
                validity=lifetime,
                key_label=key_label,
                issuer_name=parent.name,
                path_length=path_length,
                permitted_subtrees=permitted_subtrees,
            )
        )
        with ca.sessions.begin() as session:
            session.add(
                CaRow(
                    name=name,
                    role=role,
                    parent_id=parent.id,
                    key_label=key_label,
                    algorithm=algorithm,
                    certificate_der=issued.der,
                )
            )
        return ca.issuer(name)
