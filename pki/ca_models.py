"""What the certificate authority stores: its CAs, the certificates they issued,
CRLs, pre-signed OCSP responses and issued timestamps.

Serial numbers are stored as lowercase hex without leading zeros; they are unique per
issuer (a database constraint, so a collision is retried rather than issued twice).
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from hsm_sim.api import KeyAlgorithm
from hsm_sim.storage import Base, enum_by_value, utcnow
from pki.profiles import IssuerRole

__all__ = [
    "CertificateState",
    "RevocationReason",
    "CaRow",
    "CertificateRow",
    "CrlRow",
    "OcspResponseRow",
    "TimestampRow",
    "ServicePurpose",
    "ServiceCredentialRow",
]


class CertificateState(enum.Enum):
    PENDING = "pending"  # the linting copy is stored; the HSM has not signed yet
    ISSUED = "issued"
    FAILED = "failed"  # the HSM signature failed after the lint copy was stored


class RevocationReason(enum.Enum):
    """RFC 5280 §5.3.1 reason codes (value 7 is unused by the standard)."""

    UNSPECIFIED = "unspecified"
    KEY_COMPROMISE = "keyCompromise"
    CA_COMPROMISE = "cACompromise"
    AFFILIATION_CHANGED = "affiliationChanged"
    SUPERSEDED = "superseded"
    CESSATION_OF_OPERATION = "cessationOfOperation"
    CERTIFICATE_HOLD = "certificateHold"
    PRIVILEGE_WITHDRAWN = "privilegeWithdrawn"
    AA_COMPROMISE = "aACompromise"


class CaRow(Base):
    __tablename__ = "certificate_authority"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[IssuerRole] = mapped_column(enum_by_value(IssuerRole))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("certificate_authority.id"))
    key_label: Mapped[str] = mapped_column(String(128))
    algorithm: Mapped[KeyAlgorithm] = mapped_column(enum_by_value(KeyAlgorithm))
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    # The delegated OCSP responder this CA certified for itself.
    ocsp_key_label: Mapped[str | None] = mapped_column(String(128))
    ocsp_certificate_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Counters taken under this row's lock: CRL numbers (shared by full and delta
    # CRLs, RFC 5280 §5.2.3) and the sequence of revocation-status changes.
    crl_number: Mapped[int] = mapped_column(BigInteger, default=0)
    revocation_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CertificateRow(Base):
    __tablename__ = "certificate"
    __table_args__ = (UniqueConstraint("issuer_id", "serial"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("certificate_authority.id"), index=True)
    serial: Mapped[str] = mapped_column(String(40))
    profile: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(Text)
    agency_id: Mapped[int | None] = mapped_column(ForeignKey("agency.id"))
    key_label: Mapped[str | None] = mapped_column(String(128))  # when the key is ours
    state: Mapped[CertificateState] = mapped_column(enum_by_value(CertificateState))
    lint_der: Mapped[bytes] = mapped_column(LargeBinary)
    tolerated_findings: Mapped[str] = mapped_column(Text, default="")
    der: Mapped[bytes | None] = mapped_column(LargeBinary)
    not_before: Mapped[dt.datetime]
    not_after: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]
    revocation_reason: Mapped[RevocationReason | None] = mapped_column(
        enum_by_value(RevocationReason)
    )
    # Position in the issuer's revocation_sequence of the last status change; delta
    # CRLs list what changed after their base CRL's position.
    revocation_sequence: Mapped[int | None] = mapped_column(BigInteger, index=True)
    # Set when a certificateHold is released: the delta CRL says removeFromCRL.
    hold_released_at: Mapped[dt.datetime | None]


class CrlRow(Base):
    __tablename__ = "crl"
    __table_args__ = (UniqueConstraint("issuer_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("certificate_authority.id"), index=True)
    number: Mapped[int] = mapped_column(BigInteger)
    base_number: Mapped[int | None] = mapped_column(BigInteger)  # set on a delta CRL
    covers_sequence: Mapped[int] = mapped_column(BigInteger)
    this_update: Mapped[dt.datetime]
    next_update: Mapped[dt.datetime]
    entry_count: Mapped[int] = mapped_column(Integer)
    der: Mapped[bytes] = mapped_column(LargeBinary)


class OcspResponseRow(Base):
    __tablename__ = "ocsp_response"
    __table_args__ = (UniqueConstraint("issuer_id", "serial"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("certificate_authority.id"))
    serial: Mapped[str] = mapped_column(String(40))
    produced_at: Mapped[dt.datetime]
    next_update: Mapped[dt.datetime] = mapped_column(index=True)
    der: Mapped[bytes] = mapped_column(LargeBinary)


class TimestampRow(Base):
    __tablename__ = "timestamp_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(40), unique=True)
    gen_time: Mapped[dt.datetime]
    message_imprint: Mapped[str] = mapped_column(String(128))
    hash_algorithm: Mapped[str] = mapped_column(String(16))


class ServicePurpose(enum.Enum):
    """The node's own signing services, each a key in the HSM with a certificate."""

    TSA = "tsa"
    SEAL_MAKER = "seal-maker"  # signs GB/T 38540 seal data
    DOCUMENT_SIGNER = "document-signer"  # signs licence tokens


class ServiceCredentialRow(Base):
    __tablename__ = "service_credential"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    purpose: Mapped[ServicePurpose] = mapped_column(enum_by_value(ServicePurpose), index=True)
    key_label: Mapped[str] = mapped_column(String(128))
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificate.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[dt.datetime | None]
