"""Tables of the registry: agencies, their API clients, and staff users.

Other packages reach these through pki.registry, which returns frozen records, never
these rows.
"""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hsm_sim.storage import Base, enum_by_value

__all__ = ["StaffRole", "Agency", "ApiClient", "StaffUser"]

NAME_LENGTH = 200


class StaffRole(enum.Enum):
    OPERATOR = "operator"  # runs the region's node; belongs to no agency
    AGENCY_ADMIN = "agency-admin"  # manages one agency's seals, clients and clerks
    AGENCY_CLERK = "agency-clerk"  # uses one agency's seals

    @classmethod
    def parse(cls, text: str) -> StaffRole:
        """The role named by `text`, or ValueError listing the known names."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            known = ", ".join(r.value for r in cls)
            raise ValueError(f"unknown staff role {text!r}; use one of: {known}") from None


class Agency(Base):
    """A government agency (or other organisation) that holds seals and issues licences."""

    __tablename__ = "agency"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    region_code: Mapped[str] = mapped_column(String(6))
    created_at: Mapped[dt.datetime]


class ApiClient(Base):
    """A program acting for one agency through the REST API."""

    __tablename__ = "api_client"
    __table_args__ = (UniqueConstraint("agency_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(40), unique=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agency.id"), index=True)
    name: Mapped[str] = mapped_column(String(NAME_LENGTH))
    # SHA-256 of the secret, hex. See pki.registry for why not a slow password hash.
    secret_sha256: Mapped[str] = mapped_column(String(64))
    # What the client may do, space-separated (see pki.registry.ClientScope).
    scopes: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime]
    disabled_at: Mapped[dt.datetime | None]


class StaffUser(Base):
    """A person who signs in to the workbench: a node operator or an agency's staff."""

    __tablename__ = "staff_user"
    __table_args__ = (
        CheckConstraint(
            "(role = 'operator') = (agency_id IS NULL)", name="operator_has_no_agency"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, PHC string
    role: Mapped[StaffRole] = mapped_column(enum_by_value(StaffRole, 32))
    agency_id: Mapped[int | None] = mapped_column(ForeignKey("agency.id"), index=True)
    created_at: Mapped[dt.datetime]
