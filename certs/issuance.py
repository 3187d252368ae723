"""The licence registry: issuing licences, changing and renewing them, their status.

    licences = LicenceRegistry(seals=seal_registry, services=trust_services,
                               region="350100", base_url="http://pki.example.gov.cn")
    issued = licences.issue_licence(type_code, agency_uscc, data, actor="client:cl_...",
                                    principal=Principal.of(client_id="cl_..."))
    issued.identifier, issued.token, issued.sd_jwt, issued.pdf, issued.qr_version
    licences.revoke(issued.identifier, "吊销", actor="staff:li")   # the list is re-signed

One issuance makes, from the validated data: the GB/T 36904 identifier, an index in
the node's status list, the LC1 token (the type's QR fields, signed by the region's
document signer), its QR code, the PDF (the type's layout with the QR code), the PDF
stamped with the issuing agency's official seal as a certification signature, and
the SD-JWT VC. Everything is signed first, then stored in one transaction.

Decisions:
- Commit before sign (hsm_sim/audit.py). The licence is reserved first in its own
  transaction: identifier, licence number and status index are taken there, under
  the database's unique constraints, as a PENDING row no query shows. Then come the
  signatures; then one transaction stores everything and makes the licence VALID
  (and, for a new version, its predecessor SUPERSEDED). If anything fails in
  between, the reservation is deleted and its index given back: nothing
  half-issued remains. A process killed midway leaves a PENDING row that
  `discard_unfinished()` deletes.
- Licence number: the licence's own number (the type's `number_field`) when it is
  written in 0-9 and A-Z, as identifiers require: a business licence's USCC, a food
  permit's JY number. A number with other characters (a tour guide card's
  D-4403-001234) cannot go into an identifier, so the identifier carries the year of
  issue and a serial per type and agency (202500000001). A second licence with the
  same own number from the same agency is refused: change or renew the first.
- Token expiry: min(the end of the licence's last valid day in China, the document
  signer's notAfter). A long-term licence's QR code still expires with the signer
  (at most a year): verifiers must be able to drop a signer. Issuance is refused
  when the signer has less than a day left (rotate it first). The SD-JWT has the
  same iat and exp.
- The seal: the agency's active official seal (公章), the newest when it has
  several, or the one named; stamped for the `principal` who issues (the API client
  or staff user, who must belong to the agency and hold a grant for the seal; the
  node's operator from the CLI needs none). The seal registry authorizes the
  principal before anything is signed and again when the stamp is logged, which
  names the principal. At the type's seal spot, PAdES B-LT with this node's TSA and
  revocation data, so the PDF verifies offline; a certification signature allowing
  no changes.
- Status lists re-signed after an issuance or a change are signed under the
  actor who caused it (the audit log names them, not "system").
- A change or renewal is the next version of the identifier, linked to the
  previous one, which becomes SUPERSEDED: its status-list entry says INVALID, so its
  old QR codes and credentials verify as REVOKED; online, this node names the
  version that replaced it. The new version's SD-JWT is bound to the previous
  version's holder key unless a new key is given: holder binding is never dropped
  silently.
- The SD-JWT VC: vct `urn:yinxin:licence:<type code>`; in clear the envelope of the
  licence (licence_id, licence_type, issuing_agency, issued_on, valid_until); every
  field the type marks disclosable is a disclosure; fields that are neither (a
  permit's supervising officer) are left out of the credential.
- A watermarked copy (仅供…使用) is rendered again with the watermark and the same
  QR code and stamped afresh with the agency's official seal: the watermark is
  under the seal, so it cannot be removed without breaking it. Copies are not
  stored; the stamp log records each.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import io
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, undefer

from certs.errors import LicenseError
from certs.identifiers import LicenceIdentifier
from certs.layout import (
    CHINA_STANDARD_TIME,
    render_licence_pdf,
    seal_spot,
    usage_watermark,
)
from certs.models import (
    ACTOR_LENGTH,
    NOTE_LENGTH,
    LicenceNumberSequenceRow,
    LicenceRow,
    LicenceState,
    StatusListRow,
)
from certs.qr import qr_png
from certs.sdjwt import (
    HolderKeyRequiredError,
    credential_holder_key,
    issue_sd_jwt,
    present,
    public_jwk,
)
from certs.status_service import (
    DocumentSigner,
    DocumentSignerError,
    StatusListDocument,
    StatusLists,
    StatusListUnavailableError,
    document_signer_certificates,
    load_document_signer,
)
from certs.token import (
    LicenceClaims,
    SignerList,
    SignerTrust,
    StatusReference,
    TrustedSigner,
    encode_token,
    encode_tokens,
)
from certs.types import LONG_TERM, LicenceType, LicenceTypes, get_licence_type
from certs.types import validate_licence_data as _validate
from certs.usage_codes import DEFAULT_PURPOSE, UsageCodeDocument, UsageCodes
from certs.verify import (
    LicenceTrust,
    StatusAnswer,
    StatusListCache,
    StatusSource,
    StoredStatusSource,
    http_status_fetcher,
)
from hsm_sim.api import signing_context
from hsm_sim.errors import ErrorCategory
from hsm_sim.storage import write_transaction
from pki.models import Agency
from pki.profiles import IssuerRole
from pki.registry import get_agency
from seal.image import SealKind
from seal.lifecycle import (
    Principal,
    SealRecord,
    SealRegistry,
    SealStatus,
    StampAuthorization,
)
from seal.models import PrincipalKind
from seal.stamping import At, Level, Stamper, StampRequest
from seal.trust_services import RevocationSource, TrustServices

__all__ = [
    "MAX_QR_VERSION",
    "MIN_TOKEN_LIFETIME",
    "BatchFailure",
    "BatchIssuance",
    "IssuedLicence",
    "LicenceConflictError",
    "LicenceNotFoundError",
    "LicenceRecord",
    "LicenceRegistry",
    "LicenceRequest",
    "LicenceRequestError",
    "LicenceStateError",
    "LicenceStatus",
    "NoOfficialSealError",
    "licence_vct",
]

_log = logging.getLogger(__name__)

MAX_QR_VERSION = 20  # at ECC level Q: what a printed licence can carry
QR_ECC = "Q"
QR_BOX_PIXELS = 4  # pixels a module in the PNG put on the PDF
_QR_QUIET_MODULES = 4  # certs.qr draws a 4-module quiet zone
MIN_TOKEN_LIFETIME = dt.timedelta(days=1)
VCT_PREFIX = "urn:yinxin:licence:"
ISSUE_REASON = "颁发电子证照"
COPY_REASON = "电子证照用证副本"
_RESERVE_ATTEMPTS = 3
_IDENTIFIER_NUMBER = re.compile(r"[0-9A-Z]{1,40}")
# How SealRegistry.authorize_stamp names each kind of principal.
_PRINCIPAL_ARGUMENT = {
    PrincipalKind.CLIENT: "client_id",
    PrincipalKind.STAFF: "staff_username",
    PrincipalKind.OPERATOR: "operator",
}
# Claims of the SD-JWT VC that describe the licence rather than the holder: always in
# clear. Type fields may not use these names.
_ENVELOPE = ("licence_id", "licence_type", "issuing_agency", "issued_on", "valid_until")


class LicenceNotFoundError(LicenseError, LookupError):
    category = ErrorCategory.NOT_FOUND


class LicenceRequestError(LicenseError, ValueError):
    """A request that cannot be carried out as given (no reason for a revocation)."""

    category = ErrorCategory.BAD_REQUEST


class LicenceStateError(LicenseError):
    """The licence is not in a state that allows what was asked (revoke a revoked one)."""

    category = ErrorCategory.CONFLICT


class LicenceConflictError(LicenseError):
    """A licence with this number already exists: change or renew it instead."""

    category = ErrorCategory.CONFLICT


class NoOfficialSealError(LicenseError):
    """The issuing agency has no active official seal to stamp licences with."""

    category = ErrorCategory.CONFLICT


class LicenceStatus(enum.Enum):
    """A licence's status as shown: the stored state, with expiry computed."""

    VALID = "valid"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    SUPERSEDED = "superseded"
    EXPIRED = "expired"


@dataclasses.dataclass(frozen=True)
class LicenceRecord:
    """One version of a licence as the registry holds it (no PDF, token or SD-JWT)."""

    identifier: str
    type_code: str
    type_name: str
    agency_uscc: str
    agency_name: str
    number: str
    version: int
    previous: str | None  # the identifier of the version this one replaced
    successor: str | None  # the identifier of the version that replaced this one
    holder_name: str
    holder_code: str
    data: Mapping[str, str]
    issued_at: dt.datetime
    valid_until: dt.date | None  # None: long-term
    status: LicenceStatus
    status_changed_at: dt.datetime
    status_note: str | None
    status_list_uri: str
    status_index: int
    seal_id: str | None
    token_expires_at: dt.datetime | None
    qr_version: int | None
    created_by: str
    holder_bound: bool  # the SD-JWT is bound to a holder key (cnf.jwk)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; `data` holds personal data: show it only to whom may see it."""
        return {
            "identifier": self.identifier,
            "type_code": self.type_code,
            "type_name": self.type_name,
            "agency": {"uscc": self.agency_uscc, "name": self.agency_name},
            "number": self.number,
            "version": self.version,
            "previous": self.previous,
            "successor": self.successor,
            "holder_name": self.holder_name,
            "data": dict(self.data),
            "issued_at": _iso(self.issued_at),
            "valid_until": self.valid_until.isoformat()
            if self.valid_until
            else LONG_TERM,
            "status": self.status.value,
            "status_changed_at": _iso(self.status_changed_at),
            "status_note": self.status_note,
            "status_list": {"uri": self.status_list_uri, "idx": self.status_index},
            "seal_id": self.seal_id,
            "token_expires_at": _iso(self.token_expires_at),
            "qr_version": self.qr_version,
            "created_by": self.created_by,
            "holder_bound": self.holder_bound,
        }


@dataclasses.dataclass(frozen=True)
class IssuedLicence:
    """What one issuance yields."""

    record: LicenceRecord
    token: str  # LC1:...
    sd_jwt: str  # issuance form: JWT~disclosure~...~
    pdf: bytes  # sealed
    qr_version: int

    @property
    def identifier(self) -> str:
        return self.record.identifier

    def to_dict(self) -> dict[str, Any]:
        """JSON output of `yinxin license issue --json` (the PDF goes to a file)."""
        return {
            **self.record.to_dict(),
            "token": self.token,
            "sd_jwt": self.sd_jwt,
            "pdf_bytes": len(self.pdf),
        }


@dataclasses.dataclass(frozen=True)
class LicenceRequest:
    """One licence to issue. `valid_until` asks for an end date; `long_term` for none
    (where the type allows); neither: the type's default validity. `holder_key` binds
    the SD-JWT to the holder's P-256 key (key binding at presentation)."""

    type_code: str
    agency_uscc: str
    data: Mapping[str, Any]
    valid_until: dt.date | None = None
    long_term: bool = False
    holder_key: ec.EllipticCurvePublicKey | None = None
    seal_id: str | None = None


@dataclasses.dataclass(frozen=True)
class BatchFailure:
    index: int  # position in the requests
    reason: str


@dataclasses.dataclass(frozen=True)
class BatchIssuance:
    issued: tuple[IssuedLicence, ...]
    failed: tuple[BatchFailure, ...]


@dataclasses.dataclass(frozen=True)
class _Reservation:
    row_id: int
    identifier: LicenceIdentifier
    licence_type: LicenceType
    data: Mapping[str, str]
    agency_uscc: str
    agency_name: str
    issued_at: dt.datetime
    valid_until: dt.date | None
    status: StatusReference
    status_list_id: int
    previous_id: int | None
    authorization: StampAuthorization
    holder_key: ec.EllipticCurvePublicKey | None
    token_expires_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class _Plan:
    """A request checked and ready to reserve."""

    licence_type: LicenceType
    data: Mapping[str, str]
    agency_uscc: str
    valid_until: dt.date | None
    authorization: StampAuthorization  # of the principal, for the agency's seal
    holder_key: ec.EllipticCurvePublicKey | None


def licence_vct(type_code: str) -> str:
    """The SD-JWT VC type of licences of `type_code`."""
    return VCT_PREFIX + type_code


class LicenceRegistry:
    """Issues licences and keeps their status. Built once per process.

    `stamper_for` builds (or takes from a cache) the Stamper of an authorized seal;
    by default one per seal certificate is kept here. `clock` defaults to the CA's.
    """

    def __init__(
        self,
        *,
        seals: SealRegistry,
        services: TrustServices,
        region: str,
        base_url: str,
        level: Level = Level.B_LT,
        types: LicenceTypes | None = None,
        clock: Callable[[], dt.datetime] | None = None,
        stamper_for: Callable[[StampAuthorization], Stamper] | None = None,
        status_lists: StatusLists | None = None,
    ) -> None:
        self.seals = seals
        self.services = services
        self.ca = seals.ca
        self.keystore = seals.keystore
        self.sessions = seals.sessions
        self.region = region
        self.level = level
        self.types = types
        self.clock = clock or seals.clock
        self.status_lists = status_lists or StatusLists(
            sessions=self.sessions,
            ca=self.ca,
            keystore=self.keystore,
            region=region,
            base_url=base_url,
            clock=self.clock,
        )
        self.usage_codes = UsageCodes(sessions=self.sessions, clock=self.clock)
        self._stamper_for = stamper_for or self._cached_stamper
        self._stampers: dict[tuple[str, str], Stamper] = {}
        self._stampers_lock = threading.Lock()

    def _now(self) -> dt.datetime:
        return self.clock().astimezone(dt.UTC).replace(microsecond=0)

    def _type(self, type_code: str) -> LicenceType:
        return get_licence_type(type_code, self.types)

    # -- issuing ----------------------------------------------------------------------

    def issue_licence(
        self,
        type_code: str,
        agency_uscc: str,
        data: Mapping[str, Any],
        *,
        actor: str,
        principal: Principal,
        valid_until: dt.date | None = None,
        long_term: bool = False,
        holder_key: ec.EllipticCurvePublicKey | None = None,
        seal_id: str | None = None,
    ) -> IssuedLicence:
        """Issue one licence, stamped for `principal` (who must be allowed to use the
        agency's official seal; `actor` names them in the audit log).
        LicenceDataError names every problem with `data`; NoOfficialSealError,
        StampForbiddenError, DocumentSignerError, LicenceConflictError otherwise."""
        request = LicenceRequest(
            type_code=type_code,
            agency_uscc=agency_uscc,
            data=data,
            valid_until=valid_until,
            long_term=long_term,
            holder_key=holder_key,
            seal_id=seal_id,
        )
        now = self._now()
        signer = self._signer(now)
        plan = self._plan(request, now, principal)
        reservation = self._reserve(plan, now, signer, actor=actor)
        return self._complete(reservation, signer, actor=actor)

    def issue_licences(
        self,
        requests: Sequence[LicenceRequest],
        *,
        actor: str,
        principal: Principal,
        progress: Callable[[int, int], None] | None = None,
    ) -> BatchIssuance:
        """Issue many licences, all stamped for `principal`; the LC1 tokens are signed
        in one batch (an audit entry each, in one append). A request that fails,
        for whatever reason, is reported with its reason and leaves nothing; the
        others are issued and returned all the same."""
        now = self._now()
        signer = self._signer(now)
        failed: list[BatchFailure] = []
        reserved: list[tuple[int, _Reservation]] = []
        try:
            for position, request in enumerate(requests):
                try:
                    plan = self._plan(request, now, principal)
                    reserved.append(
                        (position, self._reserve(plan, now, signer, actor=actor))
                    )
                except Exception as exc:
                    failed.append(BatchFailure(position, _batch_failure_reason(exc)))
            with signing_context(actor=_audit_actor(actor, "licences")):
                tokens = encode_tokens(
                    [_claims(self.region, r) for _, r in reserved],
                    keystore=self.keystore,
                    key_label=signer.key_label,
                    signer_certificate=signer.certificate,
                )
        except BaseException:
            self._discard_all(r for _, r in reserved)
            raise
        issued: list[IssuedLicence] = []
        for done, ((position, reservation), token) in enumerate(
            zip(reserved, tokens, strict=True), start=1
        ):
            try:
                issued.append(
                    self._complete(reservation, signer, actor=actor, token=token)
                )
            except Exception as exc:
                # _complete left nothing of this one; the licences issued before it
                # stay issued and are returned, so a re-run does not duplicate them.
                failed.append(BatchFailure(position, _batch_failure_reason(exc)))
            except BaseException:
                self._discard_all(r for _, r in reserved[done:])
                raise
            if progress is not None:
                try:
                    progress(done, len(reserved))
                except BaseException:
                    self._discard_all(r for _, r in reserved[done:])
                    raise
        return BatchIssuance(
            issued=tuple(issued), failed=tuple(sorted(failed, key=lambda f: f.index))
        )

    def renew_or_change(
        self,
        identifier: str,
        new_data: Mapping[str, Any],
        *,
        actor: str,
        principal: Principal,
        valid_until: dt.date | None = None,
        long_term: bool = False,
        holder_key: ec.EllipticCurvePublicKey | None = None,
        seal_id: str | None = None,
    ) -> IssuedLicence:
        """Issue the next version of a valid (possibly expired) licence with `new_data`,
        stamped for `principal`; the previous version becomes SUPERSEDED when the new
        one is stored. Without `holder_key` the new SD-JWT is bound to the previous
        version's holder key, if it had one."""
        previous = self.get_licence(identifier)
        if previous.status not in (LicenceStatus.VALID, LicenceStatus.EXPIRED):
            raise LicenceStateError(
                f"licence {previous.identifier} is {previous.status.value}; only a "
                "valid or expired licence is renewed or changed"
            )
        if holder_key is None:
            holder_key = credential_holder_key(self.licence_sd_jwt(previous.identifier))
        request = LicenceRequest(
            type_code=previous.type_code,
            agency_uscc=previous.agency_uscc,
            data=new_data,
            valid_until=valid_until,
            long_term=long_term,
            holder_key=holder_key,
            seal_id=seal_id,
        )
        now = self._now()
        signer = self._signer(now)
        plan = self._plan(request, now, principal)
        reservation = self._reserve(
            plan, now, signer, actor=actor, previous=previous.identifier
        )
        return self._complete(reservation, signer, actor=actor)

    def _signer(self, now: dt.datetime) -> DocumentSigner:
        signer = load_document_signer(self.ca, self.keystore)
        if signer.not_after - now < MIN_TOKEN_LIFETIME:
            raise DocumentSignerError(
                f"the document signer expires at {_iso(signer.not_after)}; "
                "rotate it before issuing licences"
            )
        return signer

    def _plan(
        self, request: LicenceRequest, now: dt.datetime, principal: Principal
    ) -> _Plan:
        licence_type = self._type(request.type_code)
        clashing = sorted({spec.name for spec in licence_type.fields} & set(_ENVELOPE))
        if clashing:
            raise LicenseError(
                f"licence type {licence_type.code} has fields named like the "
                f"credential's envelope: {', '.join(clashing)}"
            )
        issued_on = now.astimezone(CHINA_STANDARD_TIME).date()
        data = _validate(licence_type, request.data, today=issued_on)
        valid_until = licence_type.validity.valid_until(
            issued_on,
            request.valid_until,
            long_term=request.long_term,
            type_code=licence_type.code,
        )
        if request.holder_key is not None:
            public_jwk(request.holder_key)  # TypeError for a key that is not P-256
        seal = self._official_seal(request.agency_uscc, request.seal_id)
        return _Plan(
            licence_type=licence_type,
            data=data,
            agency_uscc=seal.agency_uscc,
            valid_until=valid_until,
            authorization=self._authorize(seal, principal),
            holder_key=request.holder_key,
        )

    def _authorize(self, seal: SealRecord, principal: Principal) -> StampAuthorization:
        """The seal registry's check that `principal` may stamp with `seal` now: its
        agency's own, with a grant (StampForbiddenError otherwise). Checked before
        anything is signed; the stamp log checks it again when the stamp is made."""
        if not isinstance(principal, Principal):
            raise TypeError(
                "principal must be a seal.lifecycle.Principal, not "
                f"{type(principal).__name__}"
            )
        return self.seals.authorize_stamp(
            seal.id, **{_PRINCIPAL_ARGUMENT[principal.kind]: principal.id}
        )

    def _official_seal(self, agency_uscc: str, seal_id: str | None) -> SealRecord:
        if seal_id is not None:
            seal = self.seals.get_seal(seal_id)
            if seal.agency_uscc != agency_uscc or seal.kind is not SealKind.OFFICIAL:
                raise NoOfficialSealError(
                    f"seal {seal.id} is not an official seal (公章) of agency "
                    f"{agency_uscc}"
                )
            if seal.status is not SealStatus.ACTIVE:
                raise NoOfficialSealError(
                    f"seal {seal.id} cannot stamp licences: {seal.status_reason}"
                )
            return seal
        official = [
            seal
            for seal in self.seals.list_seals(agency_uscc, status=SealStatus.ACTIVE)
            if seal.kind is SealKind.OFFICIAL
        ]
        if not official:
            raise NoOfficialSealError(
                f"agency {agency_uscc} has no active official seal (公章) to stamp "
                "licences with; make one first"
            )
        return max(official, key=lambda seal: (seal.created_at, seal.id))

    def _reserve(
        self,
        plan: _Plan,
        now: dt.datetime,
        signer: DocumentSigner,
        *,
        actor: str,
        previous: str | None = None,
    ) -> _Reservation:
        token_expires_at = _token_expiry(now, plan.valid_until, signer)
        for attempt in range(_RESERVE_ATTEMPTS):
            try:
                with write_transaction(self.sessions) as session:
                    return self._reserve_in(
                        session, plan, now, actor, previous, token_expires_at
                    )
            except IntegrityError:
                # A concurrent reservation took the same number, index or new list;
                # the next attempt sees it (and names a real conflict clearly).
                if attempt == _RESERVE_ATTEMPTS - 1:
                    raise LicenceConflictError(
                        "the licence could not be reserved: it conflicts with one "
                        "being issued at the same time; try again"
                    ) from None
        raise AssertionError("unreachable")

    def _reserve_in(
        self,
        session: Session,
        plan: _Plan,
        now: dt.datetime,
        actor: str,
        previous: str | None,
        token_expires_at: dt.datetime,
    ) -> _Reservation:
        licence_type = plan.licence_type
        agency = get_agency(session, plan.agency_uscc)
        previous_row = None
        if previous is not None:
            previous_row = session.scalars(
                select(LicenceRow)
                .where(LicenceRow.identifier == previous)
                .with_for_update()
            ).one()
            if previous_row.state is not LicenceState.VALID:
                raise LicenceStateError(
                    f"licence {previous} is {previous_row.state.value}; only a valid "
                    "or expired licence is renewed or changed"
                )
            successor = session.scalar(
                select(LicenceRow.identifier).where(
                    LicenceRow.previous_id == previous_row.id
                )
            )
            if successor is not None:
                raise LicenceStateError(
                    f"licence {previous} is already being replaced by {successor}"
                )
            if plan.data[licence_type.holder.code_field] != previous_row.holder_code:
                raise LicenceConflictError(
                    "the holder changed: a licence of another holder is a new "
                    "licence, issue it as such"
                )
            number = previous_row.number
            own = _own_number(licence_type, plan.data)
            if own is not None and own != number:
                raise LicenceConflictError(
                    f"the {licence_type.field(licence_type.number_field).label.zh} "
                    "changed: a new number is a new licence, issue it as such"
                )
            identifier = LicenceIdentifier.parse(previous).next_version()
        else:
            number = _own_number(licence_type, plan.data)
            if number is None:
                number = self._next_serial(session, licence_type.code, agency.id, now)
            else:
                existing = session.scalar(
                    select(LicenceRow.identifier)
                    .where(
                        LicenceRow.type_code == licence_type.code,
                        LicenceRow.agency_id == agency.id,
                        LicenceRow.number == number,
                    )
                    .order_by(LicenceRow.version.desc())
                    .limit(1)
                )
                if existing is not None:
                    raise LicenceConflictError(
                        f"this agency already issued licence {existing} with the same "
                        "number; change or renew it instead"
                    )
            identifier = LicenceIdentifier.build(
                licence_type.code, agency.uscc, number, 1
            )
        status_list, index = self.status_lists.reserve_index(session)
        holder = licence_type.holder
        row = LicenceRow(
            identifier=str(identifier),
            type_code=licence_type.code,
            agency_id=agency.id,
            number=number,
            version=identifier.version,
            previous_id=previous_row.id if previous_row is not None else None,
            holder_name=plan.data[holder.name_field],
            holder_code=plan.data[holder.code_field],
            data=dict(plan.data),
            issued_at=now,
            valid_until=plan.valid_until,
            state=LicenceState.PENDING,
            state_changed_at=now,
            status_list_id=status_list.id,
            status_index=index,
            seal_id=plan.authorization.seal.id,
            created_by=actor[:ACTOR_LENGTH],
            created_at=now,
        )
        session.add(row)
        session.flush()
        return _Reservation(
            row_id=row.id,
            identifier=identifier,
            licence_type=licence_type,
            data=plan.data,
            agency_uscc=agency.uscc,
            agency_name=agency.name,
            issued_at=now,
            valid_until=plan.valid_until,
            status=StatusReference(index=index, uri=status_list.uri),
            status_list_id=status_list.id,
            previous_id=row.previous_id,
            authorization=plan.authorization,
            holder_key=plan.holder_key,
            token_expires_at=token_expires_at,
        )

    @staticmethod
    def _next_serial(
        session: Session, type_code: str, agency_id: int, now: dt.datetime
    ) -> str:
        year = now.astimezone(CHINA_STANDARD_TIME).year
        sequence = session.scalars(
            select(LicenceNumberSequenceRow)
            .where(
                LicenceNumberSequenceRow.type_code == type_code,
                LicenceNumberSequenceRow.agency_id == agency_id,
                LicenceNumberSequenceRow.year == year,
            )
            .with_for_update()
        ).first()
        if sequence is None:
            sequence = LicenceNumberSequenceRow(
                type_code=type_code, agency_id=agency_id, year=year, last_serial=0
            )
            session.add(sequence)
        sequence.last_serial += 1
        return f"{year}{sequence.last_serial:08d}"

    def _complete(
        self,
        reservation: _Reservation,
        signer: DocumentSigner,
        *,
        actor: str,
        token: str | None = None,
    ) -> IssuedLicence:
        try:
            with signing_context(
                actor=_audit_actor(actor, f"licence-{reservation.row_id}")
            ):
                if token is None:
                    token = encode_token(
                        _claims(self.region, reservation),
                        signer_key=signer.key,
                        signer_certificate=signer.certificate,
                    )
                sd_jwt = self._sd_jwt(
                    identifier=str(reservation.identifier),
                    licence_type=reservation.licence_type,
                    data=reservation.data,
                    agency_uscc=reservation.agency_uscc,
                    issued_at=reservation.issued_at,
                    valid_until=reservation.valid_until,
                    status=reservation.status,
                    expires_at=reservation.token_expires_at,
                    holder_key=reservation.holder_key,
                    signer=signer,
                )
            code = qr_png(
                token, ecc=QR_ECC, box_size=QR_BOX_PIXELS, max_version=MAX_QR_VERSION
            )
            version = _qr_version_of(code)
            pdf = render_licence_pdf(
                reservation.licence_type,
                reservation.data,
                identifier=reservation.identifier,
                qr_png=code,
                issuer_name=reservation.agency_name,
                issued_at=reservation.issued_at,
                valid_until=reservation.valid_until,
            )
            sealed = self._stamp(
                reservation.authorization,
                reservation.licence_type,
                pdf,
                reason=ISSUE_REASON,
            )
            self._store(reservation, token, sd_jwt, sealed, version)
        except BaseException:
            self._discard(reservation)
            raise
        try:
            with signing_context(
                actor=_audit_actor(actor, f"licence-{reservation.row_id}")
            ):
                self._publish_after_issue(reservation)
        except Exception as exc:
            # The licence is stored and VALID: reporting failure now would invite a
            # retry that issues it twice. Its list is signed by the next publish.
            _log.error(
                "licence %s issued, but its status list was not re-signed (%s)",
                reservation.identifier,
                type(exc).__name__,
            )
        return IssuedLicence(
            record=self.get_licence(str(reservation.identifier)),
            token=token,
            sd_jwt=sd_jwt,
            pdf=sealed,
            qr_version=version,
        )

    def _sd_jwt(
        self,
        *,
        identifier: str,
        licence_type: LicenceType,
        data: Mapping[str, str],
        agency_uscc: str,
        issued_at: dt.datetime,
        valid_until: dt.date | None,
        status: StatusReference,
        expires_at: dt.datetime,
        holder_key: ec.EllipticCurvePublicKey | None,
        signer: DocumentSigner,
        iat: dt.datetime | None = None,
    ) -> str:
        """The SD-JWT VC of a licence; `iat` defaults to the licence's issue time."""
        envelope = {
            "licence_id": identifier,
            "licence_type": licence_type.code,
            "issuing_agency": agency_uscc,
            "issued_on": issued_at.astimezone(CHINA_STANDARD_TIME).date().isoformat(),
            "valid_until": valid_until.isoformat() if valid_until else LONG_TERM,
        }
        disclosable = {
            spec.name: data[spec.name]
            for spec in licence_type.disclosable_fields
            if spec.name in data
        }
        return issue_sd_jwt(
            {**envelope, **disclosable},
            disclosable=frozenset(disclosable),
            always=frozenset(envelope),
            vct=licence_vct(licence_type.code),
            issuer=self.region,
            iat=iat or issued_at,
            exp=expires_at,
            status=status,
            signer_key=signer.key,  # type: ignore[arg-type]
            signer_certificate=signer.certificate,
            cnf_jwk=public_jwk(holder_key) if holder_key is not None else None,
        )

    def _stamp(
        self,
        authorization: StampAuthorization,
        licence_type: LicenceType,
        pdf: bytes,
        *,
        reason: str,
    ) -> bytes:
        spot = seal_spot(licence_type)
        request = StampRequest(
            placements=(At(page=spot.page, x_mm=spot.x_mm, y_mm=spot.y_mm),),
            level=self.level,
            certify=True,
            reason=reason,
        )
        return self.seals.stamp_document(
            authorization, self._stamper_for(authorization), pdf, request
        )

    def _cached_stamper(self, authorization: StampAuthorization) -> Stamper:
        seal = authorization.seal
        key = (seal.id, seal.certificate_serial)
        with self._stampers_lock:
            cached = self._stampers.get(key)
        if cached is not None:
            return cached
        stamper = Stamper(self.seals.credential(authorization), services=self.services)
        with self._stampers_lock:
            return self._stampers.setdefault(key, stamper)

    def _store(
        self,
        reservation: _Reservation,
        token: str,
        sd_jwt: str,
        pdf: bytes,
        version: int,
    ) -> None:
        now = self._now()
        with write_transaction(self.sessions) as session:
            if reservation.previous_id is not None:
                # Locked: a revocation or suspension committing between this read and
                # the write below would otherwise be overwritten by SUPERSEDED.
                previous = session.get(
                    LicenceRow, reservation.previous_id, with_for_update=True
                )
                assert previous is not None
                if previous.state is not LicenceState.VALID:
                    raise LicenceStateError(
                        f"licence {previous.identifier} became "
                        f"{previous.state.value} while its next version was issued"
                    )
                previous.state = LicenceState.SUPERSEDED
                previous.state_changed_at = now
                previous.state_note = f"superseded by {reservation.identifier}"
                StatusLists.record_change(session, previous.status_list_id)
            changed = session.execute(
                update(LicenceRow)
                .where(
                    LicenceRow.id == reservation.row_id,
                    LicenceRow.state == LicenceState.PENDING,
                )
                .values(
                    state=LicenceState.VALID,
                    state_changed_at=now,
                    token=token,
                    token_expires_at=reservation.token_expires_at,
                    qr_version=version,
                    sd_jwt=sd_jwt,
                    pdf=pdf,
                )
            ).rowcount
            if changed != 1:
                raise LicenceStateError(
                    f"the reservation of licence {reservation.identifier} was discarded "
                    "before it was completed"
                )

    def _discard(self, reservation: _Reservation) -> None:
        with write_transaction(self.sessions) as session:
            deleted = session.execute(
                delete(LicenceRow).where(
                    LicenceRow.id == reservation.row_id,
                    LicenceRow.state == LicenceState.PENDING,
                )
            ).rowcount
            if deleted:
                StatusLists.release_index(session, reservation.status_list_id)

    def _discard_all(self, reservations: Iterable[_Reservation]) -> None:
        for reservation in reservations:
            self._discard(reservation)

    def discard_unfinished(self, *, older_than: dt.timedelta) -> int:
        """Delete reservations a killed process left PENDING for longer than
        `older_than`, giving their indexes back; returns how many."""
        cutoff = self._now() - older_than
        with write_transaction(self.sessions) as session:
            rows = session.execute(
                select(LicenceRow.id, LicenceRow.status_list_id).where(
                    LicenceRow.state == LicenceState.PENDING,
                    LicenceRow.created_at < cutoff,
                )
            ).all()
            discarded = 0
            for row_id, list_id in rows:
                # Only while still PENDING: a reservation completed (or discarded by
                # its own process) since the select keeps its row and its index.
                deleted = session.execute(
                    delete(LicenceRow).where(
                        LicenceRow.id == row_id, LicenceRow.state == LicenceState.PENDING
                    )
                ).rowcount
                if deleted:
                    StatusLists.release_index(session, list_id)
                    discarded += 1
        return discarded

    def _publish_after_issue(self, reservation: _Reservation) -> None:
        lists = {reservation.status_list_id}
        if reservation.previous_id is not None:
            with self.sessions() as session:
                previous_list = session.scalar(
                    select(LicenceRow.status_list_id).where(
                        LicenceRow.id == reservation.previous_id
                    )
                )
            lists.add(previous_list)
        # A new list (never signed) and the predecessor's list (changed) are stale.
        with self.sessions() as session:
            due = session.scalars(
                select(StatusListRow.id).where(
                    StatusListRow.id.in_(lists),
                    StatusListRow.signed_version < StatusListRow.version,
                )
            ).all()
        for list_id in due:
            try:
                self.status_lists.publish(list_id)
            except Exception as exc:
                # The licence is issued; its list is signed by the next publish_due()
                # or the next request for it. Errors without a category are bugs.
                if not isinstance(getattr(exc, "category", None), ErrorCategory):
                    raise
                _log.warning(
                    "status list %s not signed after issuance: %s", list_id, exc
                )

    # -- status -------------------------------------------------------------------------

    def revoke(self, identifier: str, reason: str, *, actor: str) -> LicenceRecord:
        """Revoke a valid or suspended licence for good; its status list is re-signed."""
        note = _one_line(reason)
        if not note:
            raise LicenceRequestError("say why the licence is revoked")
        return self._change_state(
            identifier,
            allowed=(LicenceState.VALID, LicenceState.SUSPENDED),
            to=LicenceState.REVOKED,
            note=f"{note} ({_one_line(actor, ACTOR_LENGTH)})",
            actor=actor,
        )

    def suspend(
        self, identifier: str, *, actor: str, note: str | None = None
    ) -> LicenceRecord:
        """Suspend a valid licence (reversible); its status list is re-signed."""
        text = _one_line(note or "suspended")
        return self._change_state(
            identifier,
            allowed=(LicenceState.VALID,),
            to=LicenceState.SUSPENDED,
            note=f"{text} ({_one_line(actor, ACTOR_LENGTH)})",
            actor=actor,
        )

    def reinstate(self, identifier: str, *, actor: str) -> LicenceRecord:
        """Lift a suspension; the status list is re-signed."""
        return self._change_state(
            identifier,
            allowed=(LicenceState.SUSPENDED,),
            to=LicenceState.VALID,
            note=f"reinstated ({_one_line(actor, ACTOR_LENGTH)})",
            actor=actor,
        )

    def _change_state(
        self,
        identifier: str,
        *,
        allowed: tuple[LicenceState, ...],
        to: LicenceState,
        note: str,
        actor: str,
    ) -> LicenceRecord:
        with write_transaction(self.sessions) as session:
            row = session.scalars(
                select(LicenceRow)
                .where(
                    LicenceRow.identifier == _identifier_text(identifier),
                    LicenceRow.state != LicenceState.PENDING,
                )
                .with_for_update()
            ).first()
            if row is None:
                raise _not_found(identifier)
            if row.state not in allowed:
                raise LicenceStateError(
                    f"licence {row.identifier} is {row.state.value}; it cannot become "
                    f"{to.value}"
                )
            row.state = to
            row.state_changed_at = self._now()
            row.state_note = note[:NOTE_LENGTH]
            StatusLists.record_change(session, row.status_list_id)
            list_id, row_id = row.status_list_id, row.id
        # Committed: the change stands even if the signing below fails (the list is
        # then stale and signed by the next publish_due or request for it).
        try:
            with signing_context(actor=_audit_actor(actor, f"licence-{row_id}")):
                self.status_lists.publish(list_id)
        except Exception as exc:
            if not isinstance(getattr(exc, "category", None), ErrorCategory):
                raise
            raise StatusListUnavailableError(
                f"licence {_identifier_text(identifier)} is {to.value}, but its status "
                f"list could not be signed now ({exc}); it will be signed at the next "
                "publication"
            ) from exc
        return self.get_licence(identifier)

    def status_list_token(self, list_id: str, form: str = "jwt") -> str | bytes:
        """What `/status/<list>` serves (see StatusLists.status_list_token)."""
        return self.status_lists.status_list_token(list_id, form)

    def status_list_document(
        self, list_id: str, form: str = "jwt"
    ) -> StatusListDocument:
        """What `/status/<list>` serves with its iat, exp and ttl (see
        StatusLists.status_list_document)."""
        return self.status_lists.status_list_document(list_id, form)

    def publish_status_lists(self) -> int:
        """Re-sign stale and soon-expiring status lists (the portal's schedule)."""
        return self.status_lists.publish_due()

    # -- reading ------------------------------------------------------------------------

    def get_licence(self, identifier: str) -> LicenceRecord:
        records = self._records(LicenceRow.identifier == _identifier_text(identifier))
        if not records:
            raise _not_found(identifier)
        return records[0]

    def find_licences(
        self,
        *,
        holder: str | None = None,
        type_code: str | None = None,
        agency_uscc: str | None = None,
        limit: int = 100,
    ) -> list[LicenceRecord]:
        """Licences (newest first) whose holder name contains `holder`, or whose holder
        code is `holder`, of one type and agency when given."""
        conditions: list[Any] = []
        if holder:
            text = holder.strip()
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            conditions.append(
                LicenceRow.holder_name.like(f"%{escaped}%", escape="\\")
                | (LicenceRow.holder_code == text.upper())
            )
        if type_code:
            conditions.append(LicenceRow.type_code == type_code)
        if agency_uscc:
            conditions.append(Agency.uscc == agency_uscc)
        return self._records(*conditions, limit=max(1, min(limit, 1000)))

    def _records(
        self, *conditions: Any, limit: int | None = None
    ) -> list[LicenceRecord]:
        previous = aliased(LicenceRow)
        successor = aliased(LicenceRow)
        query = (
            select(
                LicenceRow,
                Agency.uscc,
                Agency.name,
                StatusListRow.uri,
                previous.identifier,
                successor.identifier,
            )
            .join(Agency, Agency.id == LicenceRow.agency_id)
            .join(StatusListRow, StatusListRow.id == LicenceRow.status_list_id)
            .outerjoin(previous, previous.id == LicenceRow.previous_id)
            .outerjoin(
                successor,
                (successor.previous_id == LicenceRow.id)
                & (successor.state != LicenceState.PENDING),
            )
            .where(LicenceRow.state != LicenceState.PENDING, *conditions)
            .order_by(LicenceRow.id.desc())
        )
        if limit is not None:
            query = query.limit(limit)
        with self.sessions() as session:
            results = session.execute(query.options(undefer(LicenceRow.sd_jwt))).all()
        today = self._now().astimezone(CHINA_STANDARD_TIME).date()
        return [
            self._record(row, uscc, name, uri, prev, succ, today)
            for row, uscc, name, uri, prev, succ in results
        ]

    def _record(
        self,
        row: LicenceRow,
        agency_uscc: str,
        agency_name: str,
        uri: str,
        previous: str | None,
        successor: str | None,
        today: dt.date,
    ) -> LicenceRecord:
        status = LicenceStatus(row.state.value)
        if (
            status is LicenceStatus.VALID
            and row.valid_until is not None
            and row.valid_until < today
        ):
            status = LicenceStatus.EXPIRED
        try:
            type_name = self._type(row.type_code).name.zh
        except LicenseError:
            type_name = row.type_code  # a type no longer deployed
        return LicenceRecord(
            identifier=row.identifier,
            type_code=row.type_code,
            type_name=type_name,
            agency_uscc=agency_uscc,
            agency_name=agency_name,
            number=row.number,
            version=row.version,
            previous=previous,
            successor=successor,
            holder_name=row.holder_name,
            holder_code=row.holder_code,
            data=dict(row.data),
            issued_at=row.issued_at,
            valid_until=row.valid_until,
            status=status,
            status_changed_at=row.state_changed_at,
            status_note=row.state_note,
            status_list_uri=uri,
            status_index=row.status_index,
            seal_id=row.seal_id,
            token_expires_at=row.token_expires_at,
            qr_version=row.qr_version,
            created_by=row.created_by,
            holder_bound=row.sd_jwt is not None
            and credential_holder_key(row.sd_jwt) is not None,
        )

    def _artefact(self, identifier: str, column: Any) -> Any:
        with self.sessions() as session:
            value = session.scalar(
                select(column).where(
                    LicenceRow.identifier == _identifier_text(identifier),
                    LicenceRow.state != LicenceState.PENDING,
                )
            )
        if value is None:
            raise _not_found(identifier)
        return value

    def licence_pdf(self, identifier: str) -> bytes:
        """The sealed PDF as issued."""
        return bytes(self._artefact(identifier, LicenceRow.pdf))

    def licence_token(self, identifier: str) -> str:
        """The LC1 token printed on the licence's QR code."""
        return str(self._artefact(identifier, LicenceRow.token))

    def licence_sd_jwt(self, identifier: str) -> str:
        """The SD-JWT VC in issuance form (the holder's copy)."""
        return str(self._artefact(identifier, LicenceRow.sd_jwt))

    # -- the holder's side -----------------------------------------------------------

    def present_licence(
        self,
        identifier: str,
        disclose: Iterable[str],
        *,
        holder_key: ec.EllipticCurvePrivateKey | None = None,
        nonce: str | None = None,
        aud: str | None = None,
        now: dt.datetime | None = None,
    ) -> str:
        """A presentation of the stored SD-JWT disclosing only `disclose`; key-bound
        (nonce, aud) when the holder's key is given and the credential is bound to it.
        A credential bound to a holder key is presented only with that key
        (HolderKeyRequiredError: verifiers refuse it without key binding).
        SdJwtError / DisclosureNotFoundError say what else cannot be done."""
        sd_jwt = self.licence_sd_jwt(identifier)
        if holder_key is None and credential_holder_key(sd_jwt) is not None:
            raise HolderKeyRequiredError(
                f"licence {_identifier_text(identifier)} is bound to its holder's key: "
                "present it with that key, a nonce and an audience (verifiers refuse "
                "it without key binding)"
            )
        return present(
            sd_jwt,
            disclose=disclose,
            holder_key=holder_key,
            nonce=nonce,
            aud=aud,
            now=now or self._now(),
        )

    def bind_holder_key(
        self,
        identifier: str,
        holder_key: ec.EllipticCurvePublicKey,
        *,
        actor: str,
    ) -> str:
        """Issue the licence's SD-JWT again, bound to the holder's P-256 key (for a
        licence issued without one, or a new phone); returns and stores it. Same
        status reference and dates as the token."""
        public_jwk(holder_key)
        record = self.get_licence(identifier)
        if record.status not in (LicenceStatus.VALID, LicenceStatus.SUSPENDED):
            raise LicenceStateError(
                f"licence {record.identifier} is {record.status.value}: "
                "its credential is not issued again"
            )
        now = self._now()
        signer = self._signer(now)
        assert record.token_expires_at is not None
        # Under the signer that issued the licence the credential keeps its dates; a
        # credential issued under an earlier signer is dated now.
        iat = (
            record.issued_at
            if record.issued_at >= signer.certificate.not_valid_before_utc
            else now
        )
        with signing_context(actor=_audit_actor(actor, "holder-binding")):
            sd_jwt = self._sd_jwt(
                identifier=record.identifier,
                licence_type=self._type(record.type_code),
                data=record.data,
                agency_uscc=record.agency_uscc,
                issued_at=record.issued_at,
                valid_until=record.valid_until,
                status=StatusReference(record.status_index, record.status_list_uri),
                expires_at=min(record.token_expires_at, signer.not_after),
                holder_key=holder_key,
                signer=signer,
                iat=iat,
            )
        with write_transaction(self.sessions) as session:
            session.execute(
                update(LicenceRow)
                .where(LicenceRow.identifier == record.identifier)
                .values(sd_jwt=sd_jwt)
            )
        return sd_jwt

    def copy_with_watermark(
        self, identifier: str, purpose: str, *, principal: Principal
    ) -> bytes:
        """A copy for one purpose: re-rendered with 仅供<purpose>使用 and the date
        across the page and the same QR code, stamped again with the agency's
        official seal for `principal` (so the watermark is under the seal; the stamp
        log records the copy and the principal). Valid licences only."""
        record = self.get_licence(identifier)
        if record.status is not LicenceStatus.VALID:
            raise LicenceStateError(
                f"licence {record.identifier} is {record.status.value}; copies are "
                "made of valid licences only"
            )
        authorization = self._authorize(
            self._official_seal(record.agency_uscc, None), principal
        )
        licence_type = self._type(record.type_code)
        now = self._now()
        watermark = usage_watermark(purpose, now.astimezone(CHINA_STANDARD_TIME).date())
        pdf = render_licence_pdf(
            licence_type,
            record.data,
            identifier=record.identifier,
            qr_png=qr_png(
                self.licence_token(identifier), ecc=QR_ECC, max_version=MAX_QR_VERSION
            ),
            issuer_name=record.agency_name,
            issued_at=record.issued_at,
            valid_until=record.valid_until,
            watermark=watermark,
        )
        return self._stamp(
            authorization,
            licence_type,
            pdf,
            reason=f"{COPY_REASON}：{watermark}",
        )

    # -- usage codes --------------------------------------------------------------------

    def create_usage_code(
        self,
        identifier: str,
        *,
        actor: str,
        purpose: str = DEFAULT_PURPOSE,
        ttl: dt.timedelta | None = None,
        uses: int = 1,
    ) -> tuple[str, dt.datetime]:
        """A usage code for a valid licence (see certs.usage_codes)."""
        record = self.get_licence(identifier)
        if record.status is not LicenceStatus.VALID:
            raise LicenceStateError(
                f"licence {record.identifier} is {record.status.value}; usage codes "
                "are made for valid licences only"
            )
        return self.usage_codes.create_usage_code(
            record.identifier, actor=actor, purpose=purpose, ttl=ttl, uses=uses
        )

    def fetch_by_usage_code(self, code: str, *, requester: str) -> bytes:
        """The sealed PDF a usage code gives access to (see certs.usage_codes)."""
        return self.usage_codes.fetch_by_usage_code(code, requester=requester)

    def fetch_by_usage_code_document(
        self, code: str, *, requester: str
    ) -> UsageCodeDocument:
        """The sealed PDF a usage code gives access to, with its licence's
        identifier (see certs.usage_codes)."""
        return self.usage_codes.fetch_by_usage_code_document(code, requester=requester)

    # -- trust --------------------------------------------------------------------------

    def document_signers(self) -> list[TrustedSigner]:
        """This region's document signers, trusted for its own `iss` only."""
        return [
            TrustedSigner(certificate, issuer=self.region)
            for certificate in document_signer_certificates(self.sessions)
        ]

    def signer_trust(self) -> SignerList:
        """A SignerTrust of this region's document signers (the national trust list
        replaces it for other regions' licences)."""
        return SignerList(self.document_signers())

    def licence_trust(
        self,
        *,
        signers: SignerTrust | None = None,
        seal_revocation: RevocationSource | None = None,
    ) -> LicenceTrust:
        """What this node's verifier trusts: `signers` (default: this region's
        document signers) and this region's root CAs for PDF seals."""
        return LicenceTrust(
            signers=signers if signers is not None else self.signer_trust(),
            seal_roots=tuple(
                issuer.certificate
                for issuer in self.ca.issuers()
                if issuer.role is IssuerRole.ROOT
            ),
            seal_revocation=seal_revocation,
        )

    def status_source(
        self, *, signers: SignerTrust | None = None, online: bool = False
    ) -> StatusSource:
        """Status lookups for this node's verifier: this node's own lists read in
        process on every lookup as last signed (a revocation shows once its list is
        signed, at once when it is made), never signed here: the answer says how
        fresh the list is, and a verifier without the PIN works the same; other lists
        fetched over HTTP from their URIs when `online`, kept until their ttl."""
        trust = signers if signers is not None else self.signer_trust()
        own = StoredStatusSource(trust=trust, read=self.status_lists.stored_status_list)
        remote = (
            StatusListCache(trust=trust, fetch=http_status_fetcher())
            if online
            else None
        )
        return _NodeStatusSource(self.status_lists.base_url + "/status/", own, remote)

    def status_detail(self, identifier: str) -> str | None:
        """Why this node's licence is not valid, when it adds something a verifier
        may see: the version that replaced it."""
        try:
            record = self.get_licence(identifier)
        except LicenseError:
            return None
        if record.status is LicenceStatus.SUPERSEDED and record.successor:
            return f"replaced by version {record.successor}"
        return None


class _NodeStatusSource:
    """This node's lists from `own`, every other list from `remote` (if any)."""

    def __init__(
        self, own_prefix: str, own: StoredStatusSource, remote: StatusListCache | None
    ) -> None:
        self._own_prefix = own_prefix
        self._own = own
        self._remote = remote

    def lookup(
        self, reference: StatusReference, *, issuer: str | None, now: dt.datetime
    ) -> StatusAnswer:
        if reference.uri.startswith(self._own_prefix):
            return self._own.lookup(reference, issuer=issuer, now=now)
        if self._remote is None:
            return StatusAnswer(
                None, "status not checked: another node's list, and offline"
            )
        return self._remote.lookup(reference, issuer=issuer, now=now)


def _own_number(licence_type: LicenceType, data: Mapping[str, str]) -> str | None:
    value = data[licence_type.number_field]
    return value if _IDENTIFIER_NUMBER.fullmatch(value) else None


def _qr_version_of(png: bytes) -> int:
    """The version of a QR code PNG made by qr_png: from its width, so the code is not
    built a second time (building one takes most of the time of a QR code)."""
    with Image.open(io.BytesIO(png)) as image:
        width = image.size[0]
    modules = width // QR_BOX_PIXELS - 2 * _QR_QUIET_MODULES
    return (modules - 17) // 4


def _token_expiry(
    issued_at: dt.datetime, valid_until: dt.date | None, signer: DocumentSigner
) -> dt.datetime:
    candidates = [signer.not_after]
    if valid_until is not None:
        # The licence is valid through its last day in China; exp itself is valid.
        end = dt.datetime.combine(
            valid_until + dt.timedelta(days=1), dt.time(), tzinfo=CHINA_STANDARD_TIME
        ) - dt.timedelta(seconds=1)
        candidates.append(end.astimezone(dt.UTC))
    return min(candidates).replace(microsecond=0)


def _claims(region: str, reservation: _Reservation) -> LicenceClaims:
    return LicenceClaims(
        issuer=region,
        issued_at=reservation.issued_at,
        expires_at=reservation.token_expires_at,
        licence_id=str(reservation.identifier),
        type_code=reservation.licence_type.code,
        fields=reservation.licence_type.qr_values(reservation.data),
        status=reservation.status,
    )


def _identifier_text(identifier: str) -> str:
    return str(identifier).strip()[:128]


def _not_found(identifier: str) -> LicenceNotFoundError:
    return LicenceNotFoundError(
        f"no licence with identifier {str(identifier).strip()[:128]!r}"
    )


def _batch_failure_reason(exc: Exception) -> str:
    """Why one licence of a batch was not issued, as the batch report says it.

    An error without a category is a bug or an outage: the report names its kind
    only (a database error's text can quote the licence's data) and the log says
    which licence it hit.
    """
    if isinstance(exc, LicenseError) or isinstance(
        getattr(exc, "category", None), ErrorCategory
    ):
        return str(exc)
    _log.error("a licence of a batch was not issued: %s", type(exc).__name__)
    return (
        f"unexpected error ({type(exc).__name__}); nothing was issued for this "
        "licence, the others were not affected"
    )


def _audit_actor(actor: str, what: str) -> str:
    return f"{_one_line(actor, ACTOR_LENGTH)}#{what}"


def _one_line(text: str, limit: int = NOTE_LENGTH) -> str:
    return " ".join(str(text).split())[:limit]


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
