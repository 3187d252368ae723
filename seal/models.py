"""Tables of the seal registry: seals, who may use them, the seal-code counters and
the log of every stamp.

Other packages reach these through seal.lifecycle, which returns frozen records,
never these rows.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import (
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from hsm_sim.storage import Base, enum_by_value
from pki.ca_models import RevocationReason
from seal.image import SealKind

__all__ = [
    "PrincipalKind",
    "SealCodeSequenceRow",
    "SealGrantRow",
    "SealRow",
    "SealState",
    "StampLogRow",
    "StampOutcome",
]

NAME_LENGTH = 200
NOTE_LENGTH = 500


class SealState(enum.Enum):
    """What was decided about a seal. Expiry is not stored: it follows from
    `valid_until` and the clock, so it can never be stale."""

    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


class PrincipalKind(enum.Enum):
    """Who acts: an agency's API client, a staff user, or the node's operator at the CLI."""

    CLIENT = "client"
    STAFF = "staff"
    OPERATOR = "operator"


class StampOutcome(enum.Enum):
    PENDING = (
        "pending"  # recorded before the signature; still pending means it was cut short
    )
    STAMPED = "stamped"
    FAILED = "failed"


class SealRow(Base):
    """One official seal of one agency: its key, certificate, image and seal data."""

    __tablename__ = "seal"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(24), unique=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agency.id"), index=True)
    # The seal code (esID of the GB/T 38540 seal data), printed on round and oval seals.
    es_id: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    kind: Mapped[SealKind] = mapped_column(enum_by_value(SealKind, 16))
    person_name: Mapped[str | None] = mapped_column(String(64))  # legal-rep seals only
    state: Mapped[SealState] = mapped_column(enum_by_value(SealState, 16))
    valid_from: Mapped[dt.datetime]
    valid_until: Mapped[dt.datetime]
    key_label: Mapped[str] = mapped_column(String(128), unique=True)
    certificate_id: Mapped[int] = mapped_column(
        ForeignKey("certificate.id"), unique=True
    )
    # Stored, never re-rendered: the seal looks the same on every document it stamps.
    # Deferred (tens of KB each), so listing seals does not read them.
    image_pdf: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    image_png: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    width_mm: Mapped[float] = mapped_column(Float)
    height_mm: Mapped[float] = mapped_column(Float)
    # GB/T 38540 SESeal, DER.
    seal_data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    created_at: Mapped[dt.datetime]
    suspended_at: Mapped[dt.datetime | None]
    suspension_note: Mapped[str | None] = mapped_column(String(NOTE_LENGTH))
    revoked_at: Mapped[dt.datetime | None]
    revocation_reason: Mapped[RevocationReason | None] = mapped_column(
        enum_by_value(RevocationReason)
    )


class SealGrantRow(Base):
    """Permission for one API client or one staff user to stamp with one seal.

    Withdrawn grants are kept (withdrawn_at set), so who could use a seal when stays
    on record.
    """

    __tablename__ = "seal_grant"
    __table_args__ = (
        CheckConstraint(
            "(api_client_id IS NULL) <> (staff_user_id IS NULL)", name="one_principal"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seal_id: Mapped[int] = mapped_column(ForeignKey("seal.id"), index=True)
    api_client_id: Mapped[int | None] = mapped_column(
        ForeignKey("api_client.id"), index=True
    )
    staff_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("staff_user.id"), index=True
    )
    granted_at: Mapped[dt.datetime]
    withdrawn_at: Mapped[dt.datetime | None]


class SealCodeSequenceRow(Base):
    """The last sequence number given out in a region's seal codes; numbers are never
    reused, even those of seals whose making failed."""

    __tablename__ = "seal_code_sequence"

    region_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    last_sequence: Mapped[int] = mapped_column(Integer)


class StampLogRow(Base):
    """One stamping: recorded before the signature, completed after it."""

    __tablename__ = "stamp_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seal_id: Mapped[int] = mapped_column(ForeignKey("seal.id"), index=True)
    principal_kind: Mapped[PrincipalKind] = mapped_column(
        enum_by_value(PrincipalKind, 16)
    )
    principal_id: Mapped[str] = mapped_column(
        String(64)
    )  # client id, username, operator
    document_sha256: Mapped[str] = mapped_column(String(64))
    document_bytes: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[StampOutcome] = mapped_column(enum_by_value(StampOutcome, 16))
    sealed_sha256: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(String(NOTE_LENGTH))
    started_at: Mapped[dt.datetime] = mapped_column(index=True)
    finished_at: Mapped[dt.datetime | None]
