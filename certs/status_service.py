"""This node's Token Status Lists: index allocation, signing, publishing.

    lists = StatusLists(sessions=..., ca=ca, keystore=store, region="350100",
                        base_url="http://pki.example.gov.cn")
    row, index = lists.reserve_index(session)        # in the caller's write transaction
    lists.publish(row.id)                            # after the caller committed
    token = lists.status_list_token("350100-1")      # what /status/350100-1 serves
    document = lists.status_list_document("350100-1")  # the same, with iat, exp, ttl
    stored = lists.stored_status_list(uri)           # read-only, for this node's verifier

Decisions:
- One series of lists per node (the issuer of every credential is the region, `iss`
  = its GB/T 2260 code); a list is named `<region>-<n>` and published at
  `<base_url>/status/<region>-<n>`, the URI credentials carry. A list takes new
  licences until three quarters of its 131,072 entries are used (random allocation
  stays a few tries), then the next list opens.
- Two bits an entry: 0 valid, 1 invalid (revoked, or superseded by a newer version),
  2 suspended.
- The list is rebuilt from the licences' states each time it is signed (only the
  few not-valid entries are set), so no second copy of the bits can drift. A
  `version` counter on the list row is bumped in the same transaction as every
  status change; the tokens record the version they were built from and are only
  ever replaced by tokens of the same or a later version, so two concurrent
  re-signings cannot publish an older list over a newer one.
- Commit before sign (hsm_sim/audit.py): the change is committed, then the list is
  signed (JWT and CWT forms) and stored in a new transaction. A change whose
  re-signing fails stays recorded; the list is stale (`signed_version < version`)
  until `publish_due()` (the portal's schedule) or the next request for it signs it.
- Lifetime: each signed list says `exp` = 48 hours on (never after the document
  signer's notAfter) and `ttl` = 1 hour: verifiers online fetch it again after an
  hour, offline verifiers may use their copy until `exp`. `publish_due()` re-signs a
  list when less than 24 hours remain.
- Who signs: serving `/status/<list>` signs a stale or soon-expiring list (the web
  worker holds the PIN); this node's verifier only reads what is stored
  (`stored_status_list`) and says how fresh it is, so a verifier without the PIN
  (`yinxin license verify`) never tries to sign. Re-signing is the schedule's job.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Callable, Iterator
from collections.abc import Set as AbstractSet

from cryptography import x509
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker, undefer

from certs.errors import LicenseError, StatusListError
from certs.models import LicenceRow, LicenceState, StatusListRow
from certs.status import (
    DEFAULT_LIST_SIZE,
    StatusList,
    StatusType,
    allocate_index,
    encode_status_list_cwt,
    encode_status_list_jwt,
)
from hsm_sim.api import KeyStore, KeyUsage, signing_context
from hsm_sim.errors import ErrorCategory
from hsm_sim.storage import write_transaction
from pki.ca import CertificateAuthority
from pki.ca_models import CertificateRow, ServiceCredentialRow, ServicePurpose
from pki.errors import PkiError
from pki.timestamping import service_credential

__all__ = [
    "STATUS_BITS",
    "DocumentSigner",
    "DocumentSignerError",
    "StatusListDocument",
    "StatusListNotFoundError",
    "StatusListUnavailableError",
    "StatusLists",
    "document_signer_certificates",
    "load_document_signer",
]

_log = logging.getLogger(__name__)

STATUS_BITS = 2
FILL_NUMERATOR, FILL_DENOMINATOR = 3, 4  # a list takes licences until 3/4 full
DEFAULT_LIFETIME = dt.timedelta(hours=48)
DEFAULT_TTL = dt.timedelta(hours=1)
DEFAULT_REFRESH_BEFORE = dt.timedelta(hours=24)
# Membership questions answered one query at a time before the whole set is loaded:
# random allocation in a list at most 3/4 full almost always needs one or two.
_LAZY_LOOKUPS = 8
_STATE_BITS = {
    LicenceState.REVOKED: StatusType.INVALID,
    LicenceState.SUPERSEDED: StatusType.INVALID,
    LicenceState.SUSPENDED: StatusType.SUSPENDED,
}


class DocumentSignerError(LicenseError):
    """The region's document signer cannot sign now (none yet, or about to expire)."""

    category = ErrorCategory.UNAVAILABLE


class StatusListNotFoundError(LicenseError, LookupError):
    category = ErrorCategory.NOT_FOUND


class StatusListUnavailableError(LicenseError):
    """The status list has no valid signed form and cannot be signed now."""

    category = ErrorCategory.UNAVAILABLE


@dataclasses.dataclass(frozen=True)
class StatusListDocument:
    """A signed status list as stored: the token in one form and how fresh it is.

    `issued_at`, `expires_at` and `ttl` are the token's iat, exp and ttl. `behind`:
    status changes were recorded after it was signed (their re-signing failed or is
    under way), so it may not show them yet.
    """

    list_id: str  # the <list> of /status/<list>
    uri: str
    form: str  # "jwt" or "cwt"
    token: str | bytes
    issued_at: dt.datetime
    expires_at: dt.datetime
    ttl: dt.timedelta
    behind: bool

    def expired(self, now: dt.datetime) -> bool:
        return self.expires_at <= now

    def max_age(self, now: dt.datetime) -> int:
        """Seconds a cache may keep it from `now`: its ttl, never past its exp."""
        left = (self.expires_at - now).total_seconds()
        return max(0, int(min(self.ttl.total_seconds(), left)))


@dataclasses.dataclass(frozen=True)
class DocumentSigner:
    """The region's current document signer: HSM key handle and certificate."""

    key_label: str
    key: object  # an hsm_sim key handle (ec.EllipticCurvePrivateKey)
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]

    @property
    def not_after(self) -> dt.datetime:
        return self.certificate.not_valid_after_utc


def load_document_signer(
    ca: CertificateAuthority, keystore: KeyStore
) -> DocumentSigner:
    """The current document signer of the node, or DocumentSignerError."""
    try:
        label, certificate, chain = service_credential(
            ca, ServicePurpose.DOCUMENT_SIGNER
        )
    except PkiError as exc:
        raise DocumentSignerError(str(exc)) from None
    return DocumentSigner(
        key_label=label,
        key=keystore.private_key(label, usage=KeyUsage.TOKEN),
        certificate=certificate,
        chain=tuple(chain),
    )


def document_signer_certificates(
    sessions: sessionmaker[Session],
) -> list[x509.Certificate]:
    """Every document-signer certificate this node has used, current and retired:
    tokens signed by a retired signer stay valid until their own expiry."""
    with sessions() as session:
        ders = session.scalars(
            select(CertificateRow.der)
            .join(
                ServiceCredentialRow,
                ServiceCredentialRow.certificate_id == CertificateRow.id,
            )
            .where(
                ServiceCredentialRow.purpose == ServicePurpose.DOCUMENT_SIGNER,
                CertificateRow.der.is_not(None),
                CertificateRow.revoked_at.is_(None),
            )
            .order_by(ServiceCredentialRow.id)
        ).all()
    return [x509.load_der_x509_certificate(der) for der in ders]


class _TakenIndexes(AbstractSet[int]):
    """The indexes of one list already given out, asked one at a time; the whole set is
    loaded only if random allocation needs more than a few tries."""

    def __init__(self, session: Session, list_id: int, allocated: int) -> None:
        self._session = session
        self._list_id = list_id
        self._allocated = allocated
        self._lookups = 0
        self._loaded: set[int] | None = None

    def _all(self) -> set[int]:
        if self._loaded is None:
            self._loaded = set(
                self._session.scalars(
                    select(LicenceRow.status_index).where(
                        LicenceRow.status_list_id == self._list_id
                    )
                )
            )
        return self._loaded

    def __contains__(self, index: object) -> bool:
        if self._loaded is None and self._lookups < _LAZY_LOOKUPS:
            self._lookups += 1
            return (
                self._session.scalar(
                    select(LicenceRow.id).where(
                        LicenceRow.status_list_id == self._list_id,
                        LicenceRow.status_index == index,
                    )
                )
                is not None
            )
        return index in self._all()

    def __len__(self) -> int:
        return self._allocated if self._loaded is None else len(self._loaded)

    def __iter__(self) -> Iterator[int]:
        return iter(self._all())


class StatusLists:
    """Allocates status-list indexes for new licences and signs the lists."""

    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        ca: CertificateAuthority,
        keystore: KeyStore,
        region: str,
        base_url: str,
        clock: Callable[[], dt.datetime] | None = None,
        size: int = DEFAULT_LIST_SIZE,
        lifetime: dt.timedelta = DEFAULT_LIFETIME,
        ttl: dt.timedelta = DEFAULT_TTL,
        refresh_before: dt.timedelta = DEFAULT_REFRESH_BEFORE,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError("the status lists' base URL is an http(s) URL")
        if ttl <= dt.timedelta(0) or lifetime <= ttl:
            raise ValueError(
                "a status list lives longer than its ttl, which is positive"
            )
        self.sessions = sessions
        self.ca = ca
        self.keystore = keystore
        self.region = region
        self.base_url = base_url.rstrip("/")
        self.clock = clock or ca.clock
        self.size = size
        self.lifetime = lifetime
        self.ttl = ttl
        self.refresh_before = refresh_before

    def _now(self) -> dt.datetime:
        return self.clock().astimezone(dt.UTC).replace(microsecond=0)

    # -- allocation (inside the caller's write transaction) -------------------------

    def reserve_index(self, session: Session) -> tuple[StatusListRow, int]:
        """A random free index of the open list (a new list when none is open).

        Runs in the caller's write transaction; the list row is locked until it ends.
        A concurrent new list ends in an IntegrityError: the caller retries.
        """
        limit = self.size * FILL_NUMERATOR // FILL_DENOMINATOR
        row = session.scalars(
            select(StatusListRow)
            .where(
                StatusListRow.issuer == self.region,
                StatusListRow.size == self.size,
                StatusListRow.allocated < limit,
            )
            .order_by(StatusListRow.id)
            .limit(1)
            .with_for_update()
        ).first()
        if row is None:
            row = self._open_list(session)
        index = allocate_index(_TakenIndexes(session, row.id, row.allocated), row.size)
        row.allocated += 1
        row.updated_at = self._now()
        return row, index

    def _open_list(self, session: Session) -> StatusListRow:
        count = session.scalar(
            select(func.count())
            .select_from(StatusListRow)
            .where(StatusListRow.issuer == self.region)
        )
        public_id = f"{self.region}-{(count or 0) + 1}"
        now = self._now()
        row = StatusListRow(
            public_id=public_id,
            uri=f"{self.base_url}/status/{public_id}",
            issuer=self.region,
            bits=STATUS_BITS,
            size=self.size,
            allocated=0,
            version=0,
            signed_version=-1,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        return row

    @staticmethod
    def release_index(session: Session, list_id: int) -> None:
        """Give back an index whose licence was never issued (its row is deleted)."""
        session.execute(
            update(StatusListRow)
            .where(StatusListRow.id == list_id)
            .values(allocated=StatusListRow.allocated - 1)
        )

    @staticmethod
    def record_change(session: Session, list_id: int) -> None:
        """Note a status change of one of the list's licences (same transaction)."""
        session.execute(
            update(StatusListRow)
            .where(StatusListRow.id == list_id)
            .values(version=StatusListRow.version + 1)
        )

    # -- signing ----------------------------------------------------------------------

    def publish(self, list_id: int, *, signer: DocumentSigner | None = None) -> bool:
        """Sign the list again from the licences' current states and store both forms.

        Returns False when a newer version was stored meanwhile (nothing to do).
        """
        with self.sessions() as session:
            row = session.get(StatusListRow, list_id)
            if row is None:
                raise StatusListNotFoundError(f"no status list with id {list_id}")
            # The version is read before the entries: the entries are at least as new,
            # so the tokens never claim a version newer than what they show.
            version, size, bits, uri = row.version, row.size, row.bits, row.uri
            entries = session.execute(
                select(LicenceRow.status_index, LicenceRow.state).where(
                    LicenceRow.status_list_id == list_id,
                    LicenceRow.state.in_(tuple(_STATE_BITS)),
                )
            ).all()
        statuses = StatusList(size=size, bits=bits)
        for index, state in entries:
            statuses.set(index, _STATE_BITS[state])
        signer = signer or load_document_signer(self.ca, self.keystore)
        now = self._now()
        expires_at = min(now + self.lifetime, signer.not_after)
        if expires_at <= now + self.ttl:
            raise DocumentSignerError(
                "the document signer expires within the status list's ttl; "
                "rotate the document signer"
            )
        claims = {
            "uri": uri,
            "iat": now,
            "exp": expires_at,
            "ttl": int(self.ttl.total_seconds()),
            "signer_key": signer.key,
            "signer_certificate": signer.certificate,
            "issuer": self.region,
        }
        with signing_context(operation="sign-status-list"):
            token_jwt = encode_status_list_jwt(statuses, **claims)
            token_cwt = encode_status_list_cwt(statuses, **claims)
        with write_transaction(self.sessions) as session:
            stored = session.execute(
                update(StatusListRow)
                .where(
                    StatusListRow.id == list_id,
                    StatusListRow.signed_version <= version,
                )
                .values(
                    token_jwt=token_jwt,
                    token_cwt=token_cwt,
                    signed_version=version,
                    signed_at=now,
                    expires_at=expires_at,
                    updated_at=now,
                )
            ).rowcount
        return stored == 1

    def publish_due(self) -> int:
        """Sign every list that is stale, never signed, or expires within
        `refresh_before`; returns how many were signed. For the portal's schedule."""
        horizon = self._now() + self.refresh_before
        with self.sessions() as session:
            due = session.scalars(
                select(StatusListRow.id).where(
                    StatusListRow.issuer == self.region,
                    (StatusListRow.signed_version < StatusListRow.version)
                    | StatusListRow.expires_at.is_(None)
                    | (StatusListRow.expires_at <= horizon),
                )
            ).all()
        if not due:
            return 0
        signer = load_document_signer(self.ca, self.keystore)
        return sum(self.publish(list_id, signer=signer) for list_id in due)

    # -- serving ----------------------------------------------------------------------

    def status_list_token(self, list_id: str, form: str = "jwt") -> str | bytes:
        """The current signed list named `list_id` (`350100-1`), as `/status/<list>`
        serves it: "jwt" (application/statuslist+jwt) or "cwt" (statuslist+cwt).

        A stale or expired list is signed first; if that fails, the last signed form
        is served while it has not expired (StatusListUnavailableError after).
        """
        return self.status_list_document(list_id, form).token

    def status_list_document(
        self, list_id: str, form: str = "jwt"
    ) -> StatusListDocument:
        """What `status_list_token` serves, with its iat, exp and ttl (for the HTTP
        cache headers); signed first when stale, as there."""
        if form not in ("jwt", "cwt"):
            raise StatusListError('the status list form is "jwt" or "cwt"')
        row = self._stored(StatusListRow.public_id == str(list_id)[:32])
        if row is None:
            raise StatusListNotFoundError(f"no status list named {str(list_id)[:32]!r}")
        row = self._refreshed(row)
        document = self._document(row, form)
        if document.expired(self._now()):
            raise StatusListUnavailableError(
                f"status list {row.public_id} has no valid signed form now"
            )
        return document

    def stored_status_list(self, uri: str) -> StatusListDocument | None:
        """This node's list at `uri` as last signed (JWT form), expired or not; None
        when the list is not ours. Read only: nothing is signed, so it works without
        the PIN. StatusListUnavailableError when the list was never signed."""
        row = self._stored(StatusListRow.uri == uri)
        if row is None:
            return None
        return self._document(row, "jwt")

    def _stored(self, condition: object) -> StatusListRow | None:
        with self.sessions() as session:
            row = session.scalars(
                select(StatusListRow)
                .where(condition)
                .options(
                    undefer(StatusListRow.token_jwt), undefer(StatusListRow.token_cwt)
                )
            ).first()
            if row is not None:
                session.expunge(row)
            return row

    def _refreshed(self, row: StatusListRow) -> StatusListRow:
        """The row, signed again first when it is stale or expires soon."""
        fresh = (
            row.signed_version >= row.version
            and row.expires_at is not None
            and self._now() + self.refresh_before < row.expires_at
        )
        if fresh:
            return row
        try:
            self.publish(row.id)
        except Exception as exc:
            # Key store locked, no PIN, signer expiring: serve the last signed form
            # while it lasts. Anything without a category is a bug: raised.
            if not isinstance(getattr(exc, "category", None), ErrorCategory):
                raise
            _log.warning("status list %s could not be signed: %s", row.public_id, exc)
            return row
        refreshed = self._stored(StatusListRow.id == row.id)
        assert refreshed is not None
        return refreshed

    @staticmethod
    def _document(row: StatusListRow, form: str) -> StatusListDocument:
        token = row.token_jwt if form == "jwt" else row.token_cwt
        if (
            token is None
            or row.token_jwt is None
            or row.signed_at is None
            or row.expires_at is None
        ):
            raise StatusListUnavailableError(
                f"status list {row.public_id} has not been signed yet"
            )
        return StatusListDocument(
            list_id=row.public_id,
            uri=row.uri,
            form=form,
            token=token,
            issued_at=row.signed_at,
            expires_at=row.expires_at,
            ttl=_signed_ttl(row.token_jwt),
            behind=row.signed_version < row.version,
        )


def _signed_ttl(token_jwt: str) -> dt.timedelta:
    """The ttl claim of a list this node signed (its JWT and CWT forms share it). Read,
    not verified: it comes from our own storage."""
    try:
        segment = token_jwt.split(".")[1]
        payload = json.loads(
            base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        )
        return dt.timedelta(seconds=int(payload["ttl"]))
    except (IndexError, KeyError, TypeError, ValueError):
        raise StatusListUnavailableError(
            "a stored status list cannot be read; sign it again"
        ) from None
