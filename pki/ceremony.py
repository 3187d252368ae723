"""The key ceremony: build a region's whole CA hierarchy inside the HSM from one file.

In order: the regional root (self-signed), the issuing CAs under it, a delegated OCSP
responder for every CA, the node's service credentials (timestamp authority, seal
maker, document signer), then the first CRL of every CA and pre-signed OCSP responses.
If any step fails, everything this run made — keys and rows — is removed again, so
the ceremony can simply be run once more.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import delete, select, update

from hsm_sim.api import KeyAlgorithm, KeyStore, KeyUsage, signing_context
from hsm_sim.storage import write_transaction
from pki.ca import CertificateAuthority, HierarchyBuilder, IssuanceRequest, Issuer
from pki.ca_models import (
    CaRow,
    CertificateRow,
    CrlRow,
    OcspResponseRow,
    ServiceCredentialRow,
    ServicePurpose,
)
from pki.ceremony_config import CaSpec, CeremonyConfig
from pki.certificates import ca_subject_name, node_subject_name
from pki.errors import CeremonyError
from pki.profiles import IssuerRole
from pki.revocation import RevocationService

__all__ = ["CeremonyResult", "CeremonyCa", "run_ceremony", "SERVICE_PROFILES"]

# Which profile, issuing CA and key usage each node service gets.
SERVICE_PROFILES: dict[ServicePurpose, tuple[str, IssuerRole]] = {
    ServicePurpose.TSA: ("tsa", IssuerRole.INFRASTRUCTURE),
    ServicePurpose.SEAL_MAKER: ("seal-maker", IssuerRole.SEAL),
    ServicePurpose.DOCUMENT_SIGNER: ("document-signer", IssuerRole.DOCUMENT),
}


@dataclasses.dataclass(frozen=True)
class CeremonyCa:
    name: str
    role: str
    subject: str
    serial: str
    key_label: str
    not_after: dt.datetime


@dataclasses.dataclass(frozen=True)
class CeremonyResult:
    cas: tuple[CeremonyCa, ...]
    services: dict[str, str]  # purpose -> certificate serial
    key_labels: tuple[str, ...]


class _Ceremony:
    def __init__(self, config: CeremonyConfig, ca: CertificateAuthority) -> None:
        self.config = config
        self.ca = ca
        self.keystore: KeyStore = ca.keystore
        self.made_keys: list[str] = []

    def key(self, label: str, algorithm: KeyAlgorithm, usages: frozenset[KeyUsage]) -> str:
        self.keystore.generate_key(label, algorithm, usages)
        self.made_keys.append(label)
        return label

    def run(self) -> CeremonyResult:
        builder = HierarchyBuilder(self.ca)
        root_spec = self.config.root
        root = builder.create_root(
            name=root_spec.name,
            subject=ca_subject_name(self.config.organization, root_spec.common_name),
            key_label=self.key(
                root_spec.key_label,
                root_spec.algorithm,
                frozenset({KeyUsage.CERT_SIGN, KeyUsage.CRL_SIGN}),
            ),
            algorithm=root_spec.algorithm,
            lifetime=dt.timedelta(days=root_spec.lifetime_days),
        )
        issuers = [root]
        for spec in self.config.issuing:
            issuers.append(self.subordinate(builder, root, spec))
        for issuer in issuers:
            self.ocsp_responder(issuer)
        services = {purpose.value: self.service(purpose) for purpose in ServicePurpose}

        revocation = RevocationService(
            ca=self.ca,
            crl_lifetime=dt.timedelta(hours=self.config.crl_next_update_hours),
            ocsp_lifetime=dt.timedelta(hours=self.config.ocsp_next_update_hours),
        )
        for issuer in issuers:
            revocation.publish_crl(issuer.name)
        revocation.refresh()
        return CeremonyResult(
            cas=tuple(self.describe(issuer) for issuer in issuers),
            services=services,
            key_labels=tuple(self.made_keys),
        )

    def subordinate(self, builder: HierarchyBuilder, root: Issuer, spec: CaSpec) -> Issuer:
        return builder.create_subordinate(
            name=spec.name,
            role=spec.role,
            parent=root,
            subject=ca_subject_name(self.config.organization, spec.common_name),
            key_label=self.key(
                spec.key_label, spec.algorithm, frozenset({KeyUsage.CERT_SIGN, KeyUsage.CRL_SIGN})
            ),
            algorithm=spec.algorithm,
            lifetime=dt.timedelta(days=spec.lifetime_days),
            path_length=spec.path_length,
            permitted_subtrees=spec.permitted_subtrees,
        )

    def ocsp_responder(self, issuer: Issuer) -> None:
        profile = self.ca.profile("ocsp")
        label = self.key(f"ocsp-{issuer.name}", profile.default_algorithm, profile.hsm_usages)
        issued = self.ca.issue(
            IssuanceRequest(
                profile="ocsp",
                subject=node_subject_name(self.config.organization, f"{issuer.name} OCSP Responder"),
                public_key=self.keystore.public_key(label),  # type: ignore[arg-type]
                key_label=label,
                issuer_name=issuer.name,
            )
        )
        with self.ca.sessions.begin() as session:
            session.execute(
                update(CaRow)
                .where(CaRow.id == issuer.id)
                .values(ocsp_key_label=label, ocsp_certificate_der=issued.der)
            )

    def service(self, purpose: ServicePurpose) -> str:
        profile_name, role = SERVICE_PROFILES[purpose]
        profile = self.ca.profile(profile_name)
        issuer = self.ca.issuer_for_role(role)
        label = self.key(f"{purpose.value}-1", profile.default_algorithm, profile.hsm_usages)
        names = {
            ServicePurpose.TSA: "Timestamp Authority",
            ServicePurpose.SEAL_MAKER: "Seal Maker",
            ServicePurpose.DOCUMENT_SIGNER: "Document Signer 1",
        }
        issued = self.ca.issue(
            IssuanceRequest(
                profile=profile_name,
                subject=node_subject_name(self.config.organization, names[purpose]),
                public_key=self.keystore.public_key(label),  # type: ignore[arg-type]
                key_label=label,
                issuer_name=issuer.name,
            )
        )
        with self.ca.sessions.begin() as session:
            certificate_id = session.scalar(
                select(CertificateRow.id).where(
                    CertificateRow.issuer_id == issuer.id, CertificateRow.serial == issued.serial
                )
            )
            session.add(
                ServiceCredentialRow(purpose=purpose, key_label=label, certificate_id=certificate_id)
            )
        return issued.serial

    def describe(self, issuer: Issuer) -> CeremonyCa:
        cert = issuer.certificate
        return CeremonyCa(
            name=issuer.name,
            role=issuer.role.value,
            subject=cert.subject.rfc4514_string(),
            serial=format(cert.serial_number, "x"),
            key_label=issuer.key_label,
            not_after=cert.not_valid_after_utc,
        )

    def undo(self) -> None:
        """Remove the rows and keys this run made, and nothing else.

        Rows are found through the CAs whose keys this run generated: a run that
        failed because another one got there first (its first key label was taken)
        made nothing, and must not delete the other run's hierarchy.
        """
        with write_transaction(self.ca.sessions) as session:
            ca_ids = list(session.scalars(select(CaRow.id).where(CaRow.key_label.in_(self.made_keys))))
            if ca_ids:
                certificate_ids = select(CertificateRow.id).where(CertificateRow.issuer_id.in_(ca_ids))
                session.execute(
                    delete(ServiceCredentialRow).where(ServiceCredentialRow.certificate_id.in_(certificate_ids))
                )
                for table in (OcspResponseRow, CrlRow, CertificateRow):
                    session.execute(delete(table).where(table.issuer_id.in_(ca_ids)))
                session.execute(update(CaRow).where(CaRow.id.in_(ca_ids)).values(parent_id=None))
                session.execute(delete(CaRow).where(CaRow.id.in_(ca_ids)))
        for label in reversed(self.made_keys):
            try:
                self.keystore.destroy_key(label)
            except Exception:  # noqa: BLE001 - best effort; the first error is what matters
                continue


def _refuse_existing_hierarchy(ca: CertificateAuthority) -> None:
    with ca.sessions() as session:
        if session.scalar(select(CaRow.id).limit(1)) is not None:
            raise CeremonyError(
                "this node already has a CA hierarchy; a second ceremony would replace "
                "its trust anchors (start a new instance for a new hierarchy)"
            )


def run_ceremony(config: CeremonyConfig, *, ca: CertificateAuthority) -> CeremonyResult:
    """Create the whole hierarchy; refuses if this node already has CAs."""
    _refuse_existing_hierarchy(ca)
    ceremony = _Ceremony(config, ca)
    try:
        with signing_context(actor="ceremony"):
            return ceremony.run()
    except BaseException:
        ceremony.undo()
        raise
