"""Tables of the licence registry: licences, their status lists, licence-number
counters, usage codes and the log of every fetch by usage code.

Other packages reach these through certs.issuance and certs.usage_codes, which return
frozen records, never these rows.

A licence's status bit is not stored twice: the signed status list is rebuilt from the
licences' states (only the few that are not valid need setting) whenever it is signed
again, so the table of licences is the one source of truth.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from hsm_sim.storage import Base, enum_by_value

__all__ = [
    "LicenceNumberSequenceRow",
    "LicenceRow",
    "LicenceState",
    "StatusListRow",
    "UsageCodeRow",
    "UsageFetchOutcome",
    "UsageFetchRow",
]

IDENTIFIER_LENGTH = 120
NAME_LENGTH = 200
ACTOR_LENGTH = 128
NOTE_LENGTH = 500


class LicenceState(enum.Enum):
    """What was decided about a licence. Expiry is not stored: it follows from
    `valid_until` and the clock."""

    PENDING = "pending"  # reserved before its signatures; never shown, never verified
    VALID = "valid"
    SUSPENDED = "suspended"  # reversible; the status list says SUSPENDED
    REVOKED = "revoked"  # final; the status list says INVALID
    SUPERSEDED = (
        "superseded"  # a newer version replaced it; the status list says INVALID
    )


class UsageFetchOutcome(enum.Enum):
    FETCHED = "fetched"
    UNKNOWN_CODE = "unknown-code"
    EXPIRED = "expired"
    USED_UP = "used-up"
    LICENCE_NOT_VALID = "licence-not-valid"


class StatusListRow(Base):
    """One Token Status List of this node's licences, and its latest signed forms.

    `version` counts the status changes of its licences; `signed_version` is the
    version the stored tokens were built from. The tokens are stale while
    `signed_version < version` (a change whose re-signing failed or is in progress).
    """

    __tablename__ = "licence_status_list"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The <list> of /status/<list>: a short public name, never reused.
    public_id: Mapped[str] = mapped_column(String(32), unique=True)
    uri: Mapped[str] = mapped_column(String(500), unique=True)
    issuer: Mapped[str] = mapped_column(String(64))
    bits: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(Integer)
    allocated: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    signed_version: Mapped[int] = mapped_column(BigInteger, default=-1)
    token_jwt: Mapped[str | None] = mapped_column(Text, deferred=True)
    token_cwt: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    signed_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]


class LicenceNumberSequenceRow(Base):
    """The last serial given out in licence numbers of one type, agency and year; a
    failed issuance leaves a gap, no number is ever given out twice."""

    __tablename__ = "licence_number_sequence"

    type_code: Mapped[str] = mapped_column(String(21), primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agency.id"), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_serial: Mapped[int] = mapped_column(BigInteger)


class LicenceRow(Base):
    """One version of one licence: its data, its status and everything issued for it."""

    __tablename__ = "licence"
    __table_args__ = (
        UniqueConstraint("status_list_id", "status_index"),
        UniqueConstraint("type_code", "agency_id", "number", "version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identifier: Mapped[str] = mapped_column(String(IDENTIFIER_LENGTH), unique=True)
    type_code: Mapped[str] = mapped_column(String(21), index=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agency.id"), index=True)
    number: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer)
    # The version this one replaced; a version has at most one successor.
    previous_id: Mapped[int | None] = mapped_column(
        ForeignKey("licence.id"), unique=True
    )
    holder_name: Mapped[str] = mapped_column(String(NAME_LENGTH), index=True)
    holder_code: Mapped[str] = mapped_column(String(18), index=True)
    # The validated fields, as certs.types.validate_licence_data returns them.
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    issued_at: Mapped[dt.datetime]
    valid_until: Mapped[dt.date | None] = mapped_column(Date)  # None: long-term
    state: Mapped[LicenceState] = mapped_column(enum_by_value(LicenceState, 16))
    state_changed_at: Mapped[dt.datetime]
    state_note: Mapped[str | None] = mapped_column(String(NOTE_LENGTH))
    status_list_id: Mapped[int] = mapped_column(ForeignKey("licence_status_list.id"))
    status_index: Mapped[int] = mapped_column(Integer)
    seal_id: Mapped[str | None] = mapped_column(String(24))  # the seal that stamped it
    token: Mapped[str | None] = mapped_column(Text, deferred=True)  # LC1:...
    token_expires_at: Mapped[dt.datetime | None]
    qr_version: Mapped[int | None] = mapped_column(Integer)
    sd_jwt: Mapped[str | None] = mapped_column(Text, deferred=True)
    # The sealed PDF: tens of KB, read only when it is handed out.
    pdf: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    created_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    created_at: Mapped[dt.datetime]


class UsageCodeRow(Base):
    """A usage code (用证码): stored only as its SHA-256, with its limits."""

    __tablename__ = "licence_usage_code"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    licence_id: Mapped[int] = mapped_column(ForeignKey("licence.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(NAME_LENGTH))
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    uses_allowed: Mapped[int] = mapped_column(Integer)
    uses_left: Mapped[int] = mapped_column(Integer)
    created_by: Mapped[str] = mapped_column(String(ACTOR_LENGTH))
    created_at: Mapped[dt.datetime]


class UsageFetchRow(Base):
    """One attempt to fetch a licence by usage code, successful or not."""

    __tablename__ = "licence_usage_fetch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # None when the code given matches no usage code.
    usage_code_id: Mapped[int | None] = mapped_column(
        ForeignKey("licence_usage_code.id"), index=True
    )
    at: Mapped[dt.datetime] = mapped_column(index=True)
    requester: Mapped[str] = mapped_column(String(NAME_LENGTH))
    outcome: Mapped[UsageFetchOutcome] = mapped_column(
        enum_by_value(UsageFetchOutcome, 24)
    )
