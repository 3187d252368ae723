"""The registry: which agencies exist, which programs and people may act for them.

Every function takes the caller's SQLAlchemy Session and returns frozen records, never
ORM rows. Functions flush but never commit: the caller owns the transaction, and after
any error raised here it rolls back.

API client secrets are 32 random bytes shown once and stored as SHA-256. They are
high-entropy, so a fast hash is enough: nobody can guess one, slowly or quickly. A
password hash such as argon2 would add ~50 ms to every API call for no gain. Staff
passwords are chosen by people, so they get argon2id.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import hashlib
import hmac
import re
import secrets
import unicodedata
from collections.abc import Iterable
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hsm_sim.storage import utcnow
from pki.errors import (
    AgencyExistsError,
    AgencyNotFoundError,
    AuthenticationError,
    ClientExistsError,
    ClientNotFoundError,
    ForbiddenScopeError,
    InvalidNameError,
    InvalidScopeError,
    InvalidRoleError,
    InvalidUsernameError,
    StaffUserExistsError,
    StaffUserNotFoundError,
    WeakPasswordError,
)
from pki.models import NAME_LENGTH, Agency, ApiClient, StaffRole, StaffUser
from pki.regions import validate_region_code
from pki.uscc import validate_uscc

__all__ = [
    "AgencyRecord",
    "ApiClientRecord",
    "ClientScope",
    "DEFAULT_CLIENT_SCOPES",
    "StaffUserRecord",
    "StaffRole",
    "register_agency",
    "get_agency",
    "list_agencies",
    "add_api_client",
    "list_api_clients",
    "disable_api_client",
    "set_client_scopes",
    "authenticate_client",
    "add_staff_user",
    "get_staff_user",
    "authenticate_staff",
]

CLIENT_ID_PREFIX = "cl_"
CLIENT_SECRET_PREFIX = "ycs_"
CLIENT_SECRET_BYTES = 32
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes any length; this bounds the work per attempt
_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{2,63}")
_BAD_CLIENT = "invalid API client credentials"
_BAD_STAFF = "invalid username or password"


@dataclasses.dataclass(frozen=True)
class AgencyRecord:
    id: int
    name: str
    uscc: str
    region_code: str
    created_at: dt.datetime


class ClientScope(enum.Enum):
    """What an API client may do for its agency. Every client is confined to its own
    agency; scopes narrow further what it may do there (least privilege)."""

    SEAL_STAMP = "seal:stamp"  # stamp with the agency's seals it was granted
    LICENCE_ISSUE = "licence:issue"  # issue and renew licences
    LICENCE_READ = "licence:read"  # list and fetch the agency's licences
    LICENCE_MANAGE = "licence:manage"  # revoke, suspend, reinstate (final acts)
    LICENCE_USAGE_CODE = "licence:usage-code"  # make usage codes that hand out PDFs

    @classmethod
    def parse(cls, text: str) -> ClientScope:
        try:
            return cls(text.strip().lower())
        except ValueError:
            known = ", ".join(s.value for s in cls)
            raise InvalidScopeError(f"unknown API client scope {text!r}; use one of: {known}") from None


# A new client may stamp and issue; the final and the data-releasing acts (revoking,
# suspending, making usage codes) must be given to it explicitly.
DEFAULT_CLIENT_SCOPES = frozenset(
    {ClientScope.SEAL_STAMP, ClientScope.LICENCE_ISSUE, ClientScope.LICENCE_READ}
)


@dataclasses.dataclass(frozen=True)
class ApiClientRecord:
    client_id: str
    agency_uscc: str
    name: str
    created_at: dt.datetime
    disabled_at: dt.datetime | None
    scopes: frozenset[ClientScope] = DEFAULT_CLIENT_SCOPES

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None

    def require(self, scope: ClientScope) -> None:
        """ForbiddenScopeError unless the client holds `scope`."""
        if scope not in self.scopes:
            raise ForbiddenScopeError(
                f"API client {self.client_id} may not do this: it lacks the {scope.value!r} scope"
            )


@dataclasses.dataclass(frozen=True)
class StaffUserRecord:
    username: str
    role: StaffRole
    agency_uscc: str | None
    created_at: dt.datetime


# Agencies ----------------------------------------------------------------------------


def register_agency(session: Session, *, name: str, uscc: str, region: str) -> AgencyRecord:
    """Add an agency; AgencyExistsError if its credit code is registered already."""
    clean_name = _validate_name(name, "agency name")
    code = validate_uscc(uscc)
    region_code = validate_region_code(region)
    existing = session.scalar(select(Agency).where(Agency.uscc == code))
    if existing is not None:
        raise AgencyExistsError(_agency_exists_message(code, existing.name))
    agency = Agency(name=clean_name, uscc=code, region_code=region_code, created_at=utcnow())
    session.add(agency)
    try:
        session.flush()
    except IntegrityError:
        # Registered by someone else between our check and our insert.
        raise AgencyExistsError(_agency_exists_message(code, None)) from None
    return _agency_record(agency)


def get_agency(session: Session, uscc: str) -> AgencyRecord:
    return _agency_record(_find_agency(session, uscc))


def list_agencies(session: Session) -> list[AgencyRecord]:
    """Every agency, in the order they were registered."""
    return [_agency_record(a) for a in session.scalars(select(Agency).order_by(Agency.id))]


def _find_agency(session: Session, uscc: str) -> Agency:
    code = validate_uscc(uscc)
    agency = session.scalar(select(Agency).where(Agency.uscc == code))
    if agency is None:
        raise AgencyNotFoundError(f"no agency with unified social credit code {code}")
    return agency


def _agency_exists_message(code: str, name: str | None) -> str:
    known = f" ({name})" if name else ""
    return f"an agency with unified social credit code {code} is already registered{known}"


def _agency_record(agency: Agency) -> AgencyRecord:
    return AgencyRecord(
        id=agency.id,
        name=agency.name,
        uscc=agency.uscc,
        region_code=agency.region_code,
        created_at=agency.created_at,
    )


# API clients -------------------------------------------------------------------------


def add_api_client(
    session: Session,
    *,
    agency_uscc: str,
    name: str,
    scopes: Iterable[ClientScope | str] | None = None,
) -> tuple[ApiClientRecord, str]:
    """A new client for the agency and its secret, which is shown this once only."""
    granted = _parse_scopes(DEFAULT_CLIENT_SCOPES if scopes is None else scopes)
    agency = _find_agency(session, agency_uscc)
    clean_name = _validate_name(name, "API client name")
    exists_message = f"agency {agency.uscc} already has an API client named {clean_name!r}"
    taken = session.scalar(
        select(ApiClient.id).where(ApiClient.agency_id == agency.id, ApiClient.name == clean_name)
    )
    if taken is not None:
        raise ClientExistsError(exists_message)
    secret = CLIENT_SECRET_PREFIX + _urlsafe(secrets.token_bytes(CLIENT_SECRET_BYTES))
    client = ApiClient(
        client_id=CLIENT_ID_PREFIX + secrets.token_hex(8),
        agency_id=agency.id,
        name=clean_name,
        secret_sha256=_secret_digest(secret),
        scopes=_format_scopes(granted),
        created_at=utcnow(),
    )
    session.add(client)
    try:
        session.flush()
    except IntegrityError:
        # Added by someone else between our check and our insert.
        raise ClientExistsError(exists_message) from None
    return _client_record(client, agency.uscc), secret


def list_api_clients(session: Session, agency_uscc: str) -> list[ApiClientRecord]:
    agency = _find_agency(session, agency_uscc)
    clients = session.scalars(
        select(ApiClient).where(ApiClient.agency_id == agency.id).order_by(ApiClient.id)
    )
    return [_client_record(c, agency.uscc) for c in clients]


def disable_api_client(session: Session, client_id: str) -> ApiClientRecord:
    """Stop the client from authenticating (for good: make a new one to resume)."""
    row = session.execute(
        select(ApiClient, Agency.uscc)
        .join(Agency, ApiClient.agency_id == Agency.id)
        .where(ApiClient.client_id == client_id)
    ).one_or_none()
    if row is None:
        raise ClientNotFoundError(f"no API client with id {client_id[:40]!r}")
    client, uscc = row
    if client.disabled_at is None:
        client.disabled_at = utcnow()
        session.flush()
    return _client_record(client, uscc)


def authenticate_client(session: Session, client_id: str, secret: str) -> ApiClientRecord:
    """The client whose id and secret these are; AuthenticationError otherwise.

    The error does not say which of the two was wrong, and an unknown id costs the
    same hash and comparison as a wrong secret.
    """
    row = session.execute(
        select(ApiClient, Agency.uscc)
        .join(Agency, ApiClient.agency_id == Agency.id)
        .where(ApiClient.client_id == client_id)
    ).one_or_none()
    presented = _secret_digest(secret)
    stored = row[0].secret_sha256 if row is not None else _UNKNOWN_CLIENT_DIGEST
    if not hmac.compare_digest(presented, stored) or row is None:
        raise AuthenticationError(_BAD_CLIENT)
    client, uscc = row
    if client.disabled_at is not None:
        # Said only to a caller who holds the secret, so it tells an attacker nothing.
        raise AuthenticationError("this API client has been disabled")
    return _client_record(client, uscc)


def _secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def _urlsafe(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


_UNKNOWN_CLIENT_DIGEST = hashlib.sha256(b"no such client").hexdigest()


def set_client_scopes(
    session: Session, client_id: str, scopes: Iterable[ClientScope | str]
) -> ApiClientRecord:
    """Replace what the client may do (an operator's act)."""
    granted = _parse_scopes(scopes)
    row = session.execute(
        select(ApiClient, Agency.uscc)
        .join(Agency, ApiClient.agency_id == Agency.id)
        .where(ApiClient.client_id == client_id)
    ).one_or_none()
    if row is None:
        raise ClientNotFoundError(f"no API client with id {client_id[:40]!r}")
    client, uscc = row
    client.scopes = _format_scopes(granted)
    session.flush()
    return _client_record(client, uscc)


def _parse_scopes(scopes: Iterable[ClientScope | str]) -> frozenset[ClientScope]:
    if isinstance(scopes, str):
        scopes = scopes.split()
    return frozenset(s if isinstance(s, ClientScope) else ClientScope.parse(s) for s in scopes)


def _format_scopes(scopes: frozenset[ClientScope]) -> str:
    return " ".join(sorted(s.value for s in scopes))


def _client_record(client: ApiClient, agency_uscc: str) -> ApiClientRecord:
    return ApiClientRecord(
        client_id=client.client_id,
        agency_uscc=agency_uscc,
        name=client.name,
        created_at=client.created_at,
        disabled_at=client.disabled_at,
        scopes=_parse_scopes(client.scopes),
    )


# Staff users -------------------------------------------------------------------------


def add_staff_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: StaffRole | str,
    agency_uscc: str | None = None,
) -> StaffUserRecord:
    """A new workbench user: an operator (no agency) or staff of one agency."""
    name = _validate_username(username)
    staff_role = _parse_role(role)
    _check_password(password)
    agency: Agency | None = None
    if staff_role is StaffRole.OPERATOR:
        if agency_uscc is not None:
            raise InvalidRoleError("an operator runs the node and belongs to no agency")
    else:
        if agency_uscc is None:
            raise InvalidRoleError(f"a user with role {staff_role.value} needs an agency")
        agency = _find_agency(session, agency_uscc)
    if session.scalar(select(StaffUser.id).where(StaffUser.username == name)) is not None:
        raise StaffUserExistsError(f"the username {name!r} is taken")
    user = StaffUser(
        username=name,
        password_hash=_password_hasher().hash(password),
        role=staff_role,
        agency_id=agency.id if agency else None,
        created_at=utcnow(),
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        raise StaffUserExistsError(f"the username {name!r} is taken") from None
    return _staff_record(user, agency.uscc if agency else None)


def get_staff_user(session: Session, username: str) -> StaffUserRecord:
    row = _find_staff(session, username)
    if row is None:
        raise StaffUserNotFoundError(f"no staff user named {username.strip()[:64]!r}")
    return _staff_record(*row)


def authenticate_staff(session: Session, username: str, password: str) -> StaffUserRecord:
    """The user these credentials belong to; AuthenticationError otherwise.

    An unknown username costs the same argon2 verification as a wrong password.
    """
    hasher = _password_hasher()
    row = _find_staff(session, username)
    if row is None or len(password) > MAX_PASSWORD_LENGTH:
        _verify_password(hasher, _dummy_password_hash(), password[:MAX_PASSWORD_LENGTH])
        raise AuthenticationError(_BAD_STAFF)
    user, uscc = row
    if not _verify_password(hasher, user.password_hash, password):
        raise AuthenticationError(_BAD_STAFF)
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
        session.flush()
    return _staff_record(user, uscc)


def _find_staff(session: Session, username: str) -> tuple[StaffUser, str | None] | None:
    row = session.execute(
        select(StaffUser, Agency.uscc)
        .outerjoin(Agency, StaffUser.agency_id == Agency.id)
        .where(StaffUser.username == username.strip().lower())
    ).one_or_none()
    return None if row is None else (row[0], row[1])


def _verify_password(hasher: PasswordHasher, stored_hash: str, password: str) -> bool:
    try:
        return hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@cache
def _password_hasher() -> PasswordHasher:
    return PasswordHasher()  # argon2id with argon2-cffi's RFC 9106 low-memory profile


@cache
def _dummy_password_hash() -> str:
    return _password_hasher().hash(secrets.token_urlsafe(16))


def _validate_username(username: str) -> str:
    name = username.strip().lower()
    if not _USERNAME.fullmatch(name):
        raise InvalidUsernameError(
            "a username has 3-64 characters: lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _parse_role(role: StaffRole | str) -> StaffRole:
    if isinstance(role, StaffRole):
        return role
    try:
        return StaffRole.parse(role)
    except ValueError as exc:
        raise InvalidRoleError(str(exc)) from None


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPasswordError(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPasswordError(f"a password has at most {MAX_PASSWORD_LENGTH} characters")
    if len(set(password)) < 5:
        raise WeakPasswordError("a password needs at least 5 different characters")


def _staff_record(user: StaffUser, agency_uscc: str | None) -> StaffUserRecord:
    return StaffUserRecord(
        username=user.username,
        role=user.role,
        agency_uscc=agency_uscc,
        created_at=user.created_at,
    )


def _validate_name(name: str, what: str) -> str:
    clean = unicodedata.normalize("NFC", name).strip()
    if not clean:
        raise InvalidNameError(f"the {what} is empty")
    if len(clean) > NAME_LENGTH:
        raise InvalidNameError(f"the {what} is longer than {NAME_LENGTH} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in clean):
        raise InvalidNameError(f"the {what} contains control or invisible characters")
    return clean
