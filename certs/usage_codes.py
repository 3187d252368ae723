"""Usage codes (用证码): short codes with which a verifier fetches a sealed licence.

    code, expires_at = codes.create_usage_code(identifier, actor=..., purpose="开户")
    pdf = codes.fetch_by_usage_code("7K3QM-X2P9A", requester="client:cl_bank")
    document = codes.fetch_by_usage_code_document(code, requester=...)  # + identifier

The holder makes a code and reads it out or types it in; the verifier fetches the
sealed PDF with it, online, while the code lasts.

Decisions:
- A code is 10 characters of Crockford's base32 alphabet (0-9 and A-Z without I, L, O,
  U), shown in two groups of five: 50 bits from `secrets`. When read back, case,
  spaces and hyphens do not matter, and O, I and L are taken as 0, 1 and 1.
- Only the SHA-256 of a code is stored. 50 bits is well above the 40 a guesser faces
  online, and the codes live minutes: a slow hash would buy nothing. Throttling
  guesses per client is the portal's job (its rate limiter on the API route).
- Bounded: a lifetime (default 10 minutes, at most 7 days) and a number of uses
  (default 1, at most 100). A fetch takes one use in the same transaction that
  checks the limits, so two verifiers cannot both use a one-use code.
- Every fetch is logged, fetched or refused, with the requester and the outcome; a
  code that matches nothing is logged without any trace of the code itself. A
  refusal says why (unknown, expired, used up, licence not valid).
- Codes are made for valid licences only, and a licence revoked, suspended,
  superseded or expired since is not handed out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets
from collections.abc import Callable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker, undefer

from certs.errors import LicenseError
from certs.layout import CHINA_STANDARD_TIME
from certs.models import (
    ACTOR_LENGTH,
    NAME_LENGTH,
    LicenceRow,
    LicenceState,
    UsageCodeRow,
    UsageFetchOutcome,
    UsageFetchRow,
)
from hsm_sim.errors import ErrorCategory
from hsm_sim.storage import write_transaction

__all__ = [
    "CODE_ALPHABET",
    "CODE_LENGTH",
    "DEFAULT_PURPOSE",
    "DEFAULT_TTL",
    "MAX_TTL",
    "MAX_USES",
    "UsageCodeDocument",
    "UsageCodeError",
    "UsageCodeRejectedError",
    "UsageCodes",
    "UsageFetchRecord",
    "normalise_usage_code",
]

CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32
CODE_LENGTH = 10  # 50 bits
GROUP_LENGTH = 5
DEFAULT_TTL = dt.timedelta(minutes=10)
DEFAULT_PURPOSE = "核验电子证照"  # when the holder names none (the CLI has no option)
MIN_TTL = dt.timedelta(minutes=1)
MAX_TTL = dt.timedelta(days=7)
MAX_USES = 100
_READ_AS = {"O": "0", "I": "1", "L": "1"}
_IGNORED = frozenset(" -\t")
_ATTEMPTS = 3


class UsageCodeError(LicenseError, ValueError):
    """A usage code cannot be made as asked (ttl, uses, purpose, licence state)."""

    category = ErrorCategory.BAD_REQUEST


class UsageCodeRejectedError(LicenseError):
    """A fetch by usage code was refused; `outcome` says why (it is logged)."""

    def __init__(self, outcome: UsageFetchOutcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.category = (
            ErrorCategory.NOT_FOUND
            if outcome is UsageFetchOutcome.UNKNOWN_CODE
            else ErrorCategory.FORBIDDEN
        )


@dataclasses.dataclass(frozen=True)
class UsageCodeDocument:
    """What a usage code hands out: the sealed PDF and the identifier of its licence
    (to name the download after)."""

    identifier: str
    pdf: bytes


@dataclasses.dataclass(frozen=True)
class UsageFetchRecord:
    at: dt.datetime
    requester: str
    outcome: UsageFetchOutcome
    purpose: str | None  # of the code used; None when the code matched nothing


def normalise_usage_code(text: str) -> str | None:
    """The code as stored (10 alphabet characters), or None if `text` cannot be one."""
    if not isinstance(text, str) or len(text) > 64:
        return None
    characters = [
        _READ_AS.get(char, char) for char in text.upper() if char not in _IGNORED
    ]
    code = "".join(characters)
    if len(code) != CODE_LENGTH or any(char not in CODE_ALPHABET for char in code):
        return None
    return code


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def _shown(code: str) -> str:
    return "-".join(
        code[start : start + GROUP_LENGTH]
        for start in range(0, len(code), GROUP_LENGTH)
    )


def _one_line(text: str, limit: int) -> str:
    return " ".join(str(text).split())[:limit]


class UsageCodes:
    """Makes usage codes and hands out sealed PDFs for them, logging every fetch."""

    def __init__(
        self, *, sessions: sessionmaker[Session], clock: Callable[[], dt.datetime]
    ) -> None:
        self.sessions = sessions
        self.clock = clock

    def _now(self) -> dt.datetime:
        return self.clock().astimezone(dt.UTC).replace(microsecond=0)

    def create_usage_code(
        self,
        identifier: str,
        *,
        actor: str,
        purpose: str = DEFAULT_PURPOSE,
        ttl: dt.timedelta | None = None,
        uses: int = 1,
    ) -> tuple[str, dt.datetime]:
        """A new code for the valid licence `identifier`, shown as XXXXX-XXXXX, and
        when it expires. The code itself is returned once and never stored."""
        ttl = DEFAULT_TTL if ttl is None else ttl
        if not isinstance(ttl, dt.timedelta) or not MIN_TTL <= ttl <= MAX_TTL:
            raise UsageCodeError("a usage code lasts from 1 minute to 7 days")
        if (
            isinstance(uses, bool)
            or not isinstance(uses, int)
            or not 1 <= uses <= MAX_USES
        ):
            raise UsageCodeError(f"a usage code allows 1 to {MAX_USES} uses")
        purpose_text = _one_line(purpose, NAME_LENGTH + 1)
        if not purpose_text or len(purpose_text) > NAME_LENGTH:
            raise UsageCodeError(
                f"say what the code is for, in 1 to {NAME_LENGTH} characters"
            )
        for attempt in range(_ATTEMPTS):
            code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
            now = self._now()
            expires_at = now + ttl
            try:
                with write_transaction(self.sessions) as session:
                    licence = session.scalars(
                        select(LicenceRow).where(
                            LicenceRow.identifier == str(identifier).strip()[:128],
                            LicenceRow.state != LicenceState.PENDING,
                        )
                    ).first()
                    if licence is None:
                        raise UsageCodeError(
                            f"no licence with identifier {str(identifier)[:128]!r}"
                        )
                    if not _usable(licence, now):
                        raise UsageCodeError(
                            f"licence {licence.identifier} is not valid: usage codes "
                            "are made for valid licences only"
                        )
                    session.add(
                        UsageCodeRow(
                            code_sha256=_digest(code),
                            licence_id=licence.id,
                            purpose=purpose_text,
                            expires_at=expires_at,
                            uses_allowed=uses,
                            uses_left=uses,
                            created_by=_one_line(actor, ACTOR_LENGTH),
                            created_at=now,
                        )
                    )
                return _shown(code), expires_at
            except IntegrityError:
                # Two codes with one hash: vanishingly rare at 50 bits; draw again.
                if attempt == _ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def fetch_by_usage_code(self, code: str, *, requester: str) -> bytes:
        """The sealed PDF of the licence the code is for, using up one use.

        UsageCodeRejectedError for an unknown, expired or used-up code, or a licence
        no longer valid. Every call is logged, whatever its outcome.
        """
        return self.fetch_by_usage_code_document(code, requester=requester).pdf

    def fetch_by_usage_code_document(
        self, code: str, *, requester: str
    ) -> UsageCodeDocument:
        """As `fetch_by_usage_code`, with the licence's identifier beside the PDF."""
        who = _one_line(requester, NAME_LENGTH)
        if not who:
            raise UsageCodeError("name who fetches the licence (the requester)")
        normalised = normalise_usage_code(code)
        now = self._now()
        with write_transaction(self.sessions) as session:
            row = (
                session.scalars(
                    select(UsageCodeRow)
                    .where(UsageCodeRow.code_sha256 == _digest(normalised))
                    .with_for_update()
                ).first()
                if normalised is not None
                else None
            )
            document: UsageCodeDocument | None = None
            if row is None:
                outcome = UsageFetchOutcome.UNKNOWN_CODE
            elif row.expires_at <= now:
                outcome = UsageFetchOutcome.EXPIRED
            elif row.uses_left <= 0:
                outcome = UsageFetchOutcome.USED_UP
            else:
                licence = session.scalars(
                    select(LicenceRow)
                    .where(LicenceRow.id == row.licence_id)
                    .options(undefer(LicenceRow.pdf))
                ).one()
                if not _usable(licence, now) or licence.pdf is None:
                    outcome = UsageFetchOutcome.LICENCE_NOT_VALID
                else:
                    outcome = UsageFetchOutcome.FETCHED
                    row.uses_left -= 1
                    document = UsageCodeDocument(licence.identifier, bytes(licence.pdf))
            session.add(
                UsageFetchRow(
                    usage_code_id=row.id if row is not None else None,
                    at=now,
                    requester=who,
                    outcome=outcome,
                )
            )
        if document is None:
            raise UsageCodeRejectedError(outcome, _REFUSALS[outcome])
        return document

    def usage_log(self, identifier: str, *, limit: int = 100) -> list[UsageFetchRecord]:
        """The fetches by usage code of one licence, newest first."""
        with self.sessions() as session:
            rows = session.execute(
                select(UsageFetchRow, UsageCodeRow.purpose)
                .join(UsageCodeRow, UsageCodeRow.id == UsageFetchRow.usage_code_id)
                .join(LicenceRow, LicenceRow.id == UsageCodeRow.licence_id)
                .where(LicenceRow.identifier == str(identifier).strip()[:128])
                .order_by(UsageFetchRow.id.desc())
                .limit(max(1, min(limit, 1000)))
            ).all()
        return [
            UsageFetchRecord(row.at, row.requester, row.outcome, purpose)
            for row, purpose in rows
        ]

    def unmatched_fetches(self, *, since: dt.datetime) -> int:
        """How many fetches since `since` gave a code that matched nothing (guessing)."""
        with self.sessions() as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(UsageFetchRow)
                    .where(
                        UsageFetchRow.usage_code_id.is_(None), UsageFetchRow.at >= since
                    )
                )
                or 0
            )


_REFUSALS = {
    UsageFetchOutcome.UNKNOWN_CODE: "no licence has this usage code",
    UsageFetchOutcome.EXPIRED: "the usage code has expired; ask the holder for a new one",
    UsageFetchOutcome.USED_UP: "the usage code has been used up; ask the holder for a new one",
    UsageFetchOutcome.LICENCE_NOT_VALID: "the licence of this usage code is no longer valid",
}


def _usable(licence: LicenceRow, now: dt.datetime) -> bool:
    if licence.state is not LicenceState.VALID:
        return False
    today = now.astimezone(CHINA_STANDARD_TIME).date()
    return licence.valid_until is None or licence.valid_until >= today
