"""The seal registry: making an agency's seals, their lifecycle, who may use them, and
the log of every stamp.

    seals = SealRegistry(ra=ra, revocation=revocation)
    seal = seals.make_seal(SealRequest(agency_uscc=uscc, kind=SealKind.CONTRACT))
    seals.grant(seal.id, client_id="cl_...")
    authorization = seals.authorize_stamp(seal.id, client_id="cl_...")   # 403 here
    stamper = Stamper(seals.credential(authorization), services=services)
    sealed = seals.stamp_document(authorization, stamper, pdf, request)   # logged

Making a seal: a new key in the HSM (usage seal) and its certificate from the CA's seal
profile, the seal code (esID), the image (vector PDF for stamping, PNG for previews),
and the GB/T 38540 seal data signed by the region's seal-maker key. The images and the
seal data are rendered and signed once and stored: a seal looks the same on every
document it ever stamps. Signatures come first, then everything is stored in one
transaction (commit before sign: hsm_sim/audit.py). If anything fails after the
certificate was issued, its key is destroyed and the certificate revoked
(cessationOfOperation), so nothing half-made can be used; a process killed midway
leaves a key or certificate that `discard_unfinished()` removes later.

Decisions:
- Seal code: 13 digits, the agency's 6-digit region code and a 7-digit sequence per
  region, as on the seals issued under the national seal-code scheme. Numbers come from
  a per-region counter committed before anything is signed; a failed making leaves a
  gap, and no number is ever given out twice.
- The name engraved on an agency's seal is its registered name (the law on seals asks
  for the legal name, and a verifier compares it with the certificate's O); the seal's
  full name adds the kind: 某某市市场监督管理局合同专用章. A legal representative's
  seal is engraved with the person's name.
- Status: active, suspended or revoked is stored; expired is computed from valid_until
  (and the certificate's notAfter) at every read, so it is never stale and needs no
  sweep. A certificate revoked directly at the CA makes the seal revoked (a
  certificateHold: suspended) as well.
- Suspension is a flag here, not a certificateHold: the key never leaves the HSM and
  every stamp passes `authorize_stamp`, so the flag stops new stamps, while documents
  stamped before stay valid for every verifier. Revocation is final: the certificate
  is revoked (verifiers see it, with its date) and the key destroyed.
- Who may stamp: API clients and staff users of the seal's own agency holding an
  explicit grant for that seal; the node's operator (the CLI, holding the HSM PIN)
  needs no grant. Another agency's principal is refused before the seal's state is
  looked at, so a refusal tells it nothing about the seal.
- Every stamp is logged (stamp_log) before it is signed and completed after; the
  key store's audit entry of the signature names the log entry in its actor. An
  entry a dead worker left PENDING is failed as "abandoned" by
  `fail_abandoned_stamps()`, for the portal's schedule to run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import hashlib
import logging
import secrets
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import Select, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, undefer

from hsm_sim.api import KeyAlgorithm, KeyUsage, signing_context
from hsm_sim.errors import KeyNotFoundError
from hsm_sim.storage import write_transaction
from pki.ca import BACKDATE
from pki.ca_models import (
    CaRow,
    CertificateRow,
    CertificateState,
    RevocationReason,
    ServicePurpose,
)
from pki.certificates import fit_common_name
from pki.models import Agency, ApiClient, StaffUser
from pki.ra import RegistrationAuthority
from pki.registry import AgencyRecord, get_agency
from pki.revocation import RevocationService, parse_reason
from pki.timestamping import service_credential
from seal.errors import (
    GrantNotFoundError,
    PrincipalNotFoundError,
    SealMakerError,
    SealNotFoundError,
    SealNotUsableError,
    SealRequestError,
    SealStateError,
    StampForbiddenError,
)
from seal.image import (
    SealImageSpec,
    SealKind,
    layout_seal,
    render_seal_pdf,
    render_seal_png,
    seal_size_mm,
)
from seal.models import (
    NOTE_LENGTH,
    PrincipalKind,
    SealCodeSequenceRow,
    SealGrantRow,
    SealRow,
    SealState,
    StampLogRow,
    StampOutcome,
)
from seal.sesdata import (
    ECDSA_WITH_SHA256,
    ECDSA_WITH_SHA384,
    SealInfo,
    SealPicture,
    build_seal,
)
from seal.stamping import Level, SealCredential, Stamper, StampRequest

__all__ = [
    "KEY_LABEL_PREFIX",
    "SEAL_VENDOR_ID",
    "GrantRecord",
    "Principal",
    "SealRecord",
    "SealRegistry",
    "SealRequest",
    "SealStatus",
    "StampAuthorization",
    "StampInProgress",
    "StampIntent",
    "StampLogRecord",
    "describe_seal_record",
    "parse_seal_kind",
]

_log = logging.getLogger(__name__)

KEY_LABEL_PREFIX = "seal/"
SEAL_VENDOR_ID = "Yinxin"
# GB/T 38540 SES_ESPropertyInfo.type: an organisation's seal or a person's.
SEAL_TYPE_ORGANISATION = 1
SEAL_TYPE_PERSONAL = 2
SEAL_CODE_SEQUENCE_DIGITS = 7
PREVIEW_DPI = 300
# The picture inside the seal data travels in every stamp's CMS: 150 dpi keeps it near
# the size of real seals' pictures (~16-20 KB) and is sharp at the seal's real size.
SEAL_DATA_DPI = 150
# A validity given as a date ends at the end of that day in China (UTC+8, no DST).
CHINA_STANDARD_TIME = dt.timezone(dt.timedelta(hours=8), "CST")
# X.520 ub-organization-name, in characters.
MAX_ORGANIZATION_NAME = 64
_CODE_ATTEMPTS = 3
_NAME_SEPARATOR = "·"  # between the parts of a name: 阿依古丽·买买提
_FINAL_REASONS = frozenset(
    {
        RevocationReason.UNSPECIFIED,
        RevocationReason.KEY_COMPROMISE,
        RevocationReason.AFFILIATION_CHANGED,
        RevocationReason.SUPERSEDED,
        RevocationReason.CESSATION_OF_OPERATION,
        RevocationReason.PRIVILEGE_WITHDRAWN,
    }
)
_SEAL_ECDSA = {
    256: (ECDSA_WITH_SHA256, hashes.SHA256),
    384: (ECDSA_WITH_SHA384, hashes.SHA384),
}


class SealStatus(enum.Enum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"
    EXPIRED = "expired"


def parse_seal_kind(text: str) -> SealKind:
    """The kind named by `text` (official, contract, finance, invoice, legal-rep)."""
    wanted = text.strip().lower().replace("_", "-")
    for kind in SealKind:
        if kind.value == wanted or kind.label == text.strip():
            return kind
    known = ", ".join(kind.value for kind in SealKind)
    raise SealRequestError(f"unknown seal type {text[:40]!r}; use one of: {known}")


@dataclasses.dataclass(frozen=True)
class SealRequest:
    """What `yinxin seal make` asks for.

    `name`: for a legal representative's seal, the person's name (required). For every
    other kind the seal bears the agency's registered name; `name` may repeat it (or the
    seal's full name, e.g. 某某局合同专用章) and must not differ from it.
    `valid_until`: a date (the end of that day, China time) or an aware datetime; the
    seal certificate's profile caps it. None: the profile's default validity.
    """

    agency_uscc: str
    kind: SealKind | str
    name: str | None = None
    valid_until: dt.date | dt.datetime | None = None
    algorithm: KeyAlgorithm | None = None


@dataclasses.dataclass(frozen=True)
class SealRecord:
    id: str
    es_id: str
    name: str
    kind: SealKind
    person_name: str | None
    agency_uscc: str
    agency_name: str
    status: SealStatus
    status_reason: str
    valid_from: dt.datetime
    valid_until: dt.datetime
    created_at: dt.datetime
    size_mm: tuple[float, float]
    key_label: str
    certificate_serial: str
    certificate_issuer: str
    suspended_at: dt.datetime | None
    suspension_note: str | None
    revoked_at: dt.datetime | None
    revocation_reason: RevocationReason | None

    @property
    def usable(self) -> bool:
        return self.status is SealStatus.ACTIVE


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who stamps: `client:<client id>`, `staff:<username>` or `operator:<name>`."""

    kind: PrincipalKind
    id: str

    def __str__(self) -> str:
        return f"{self.kind.value}:{self.id}"

    @classmethod
    def of(
        cls,
        *,
        client_id: str | None = None,
        staff_username: str | None = None,
        operator: str | None = None,
    ) -> Principal:
        """The one principal named; SealRequestError unless exactly one is given."""
        given = [
            (kind, value)
            for kind, value in (
                (PrincipalKind.CLIENT, client_id),
                (PrincipalKind.STAFF, staff_username),
                (PrincipalKind.OPERATOR, operator),
            )
            if value is not None
        ]
        if len(given) != 1:
            raise SealRequestError(
                "name exactly one API client, staff user or operator"
            )
        kind, value = given[0]
        text = value.strip()
        if kind is PrincipalKind.STAFF:
            text = text.lower()
        if not text or len(text) > 64 or not text.isprintable():
            raise SealRequestError(
                f"the {kind.value} name must have 1 to 64 printable characters"
            )
        return cls(kind, text)


@dataclasses.dataclass(frozen=True)
class GrantRecord:
    seal_id: str
    principal: Principal
    granted_at: dt.datetime
    withdrawn_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class StampAuthorization:
    """A principal's permission, checked at `authorized_at`, to stamp with `seal`."""

    seal: SealRecord
    principal: Principal
    authorized_at: dt.datetime


@dataclasses.dataclass(frozen=True)
class StampIntent:
    """A stamping recorded before its signature. `actor` goes into the audit entries."""

    log_id: int
    seal_id: str
    principal: Principal
    document_sha256: str
    level: str
    started_at: dt.datetime

    @property
    def actor(self) -> str:
        return f"{self.principal}#stamp-{self.log_id}"


@dataclasses.dataclass(frozen=True)
class StampLogRecord:
    log_id: int
    seal_id: str
    es_id: str
    principal: Principal
    document_sha256: str
    document_bytes: int
    level: str
    outcome: StampOutcome
    sealed_sha256: str | None
    error: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None


class StampInProgress:
    """What `SealRegistry.stamping()` yields: call `complete(sealed)` with the result."""

    def __init__(self, registry: SealRegistry, intent: StampIntent) -> None:
        self.intent = intent
        self._registry = registry
        self.record: StampLogRecord | None = None

    @property
    def actor(self) -> str:
        return self.intent.actor

    def complete(self, sealed: bytes) -> StampLogRecord:
        self.record = self._registry.complete_stamp(self.intent, sealed)
        return self.record


def describe_seal_record(seal: SealRecord) -> dict[str, Any]:
    """A JSON-safe description, for `yinxin seal show --json` and the API."""
    reason = seal.revocation_reason
    return {
        "id": seal.id,
        "es_id": seal.es_id,
        "name": seal.name,
        "type": seal.kind.value,
        "type_label": seal.kind.label,
        "person_name": seal.person_name,
        "agency": {"uscc": seal.agency_uscc, "name": seal.agency_name},
        "status": seal.status.value,
        "status_reason": seal.status_reason,
        "valid_from": seal.valid_from.isoformat(),
        "valid_until": seal.valid_until.isoformat(),
        "created_at": seal.created_at.isoformat(),
        "size_mm": list(seal.size_mm),
        "certificate": {
            "serial": seal.certificate_serial,
            "issuer": seal.certificate_issuer,
        },
        "key_label": seal.key_label,
        "suspended_at": _iso(seal.suspended_at),
        "suspension_note": seal.suspension_note,
        "revoked_at": _iso(seal.revoked_at),
        "revocation_reason": reason.value if reason is not None else None,
    }


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _shown(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _one_line(text: str, limit: int = NOTE_LENGTH) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- reading seals ---------------------------------------------------------------------

_SEAL_QUERY = (
    select(
        SealRow,
        Agency.uscc,
        Agency.name,
        CertificateRow.serial,
        CaRow.name,
        CertificateRow.revoked_at,
        CertificateRow.revocation_reason,
        CertificateRow.not_after,
    )
    .join(Agency, Agency.id == SealRow.agency_id)
    .join(CertificateRow, CertificateRow.id == SealRow.certificate_id)
    .join(CaRow, CaRow.id == CertificateRow.issuer_id)
)


def _status(
    row: SealRow,
    certificate_revoked_at: dt.datetime | None,
    certificate_reason: RevocationReason | None,
    certificate_not_after: dt.datetime,
    now: dt.datetime,
) -> tuple[SealStatus, str]:
    """The seal's status and one line saying why, the stored state and the clock combined."""
    held = certificate_reason is RevocationReason.CERTIFICATE_HOLD
    if row.state is SealState.REVOKED:
        reason = row.revocation_reason.value if row.revocation_reason else "unspecified"
        when = _shown(row.revoked_at) if row.revoked_at else "an unknown date"
        return SealStatus.REVOKED, f"revoked on {when} ({reason})"
    if certificate_revoked_at is not None and not held:
        reason = certificate_reason.value if certificate_reason else "unspecified"
        return (
            SealStatus.REVOKED,
            f"its certificate was revoked at the CA on {_shown(certificate_revoked_at)} ({reason})",
        )
    end = min(row.valid_until, certificate_not_after)
    if now >= end:
        return SealStatus.EXPIRED, f"expired on {_shown(end)}"
    if row.state is SealState.SUSPENDED:
        when = _shown(row.suspended_at) if row.suspended_at else "an unknown date"
        note = f": {row.suspension_note}" if row.suspension_note else ""
        return SealStatus.SUSPENDED, f"suspended since {when}{note}"
    if held:
        return (
            SealStatus.SUSPENDED,
            "its certificate is on hold at the CA (certificateHold)",
        )
    return SealStatus.ACTIVE, f"active until {_shown(end)}"


def _record(result: Any, now: dt.datetime) -> SealRecord:
    row, uscc, agency_name, serial, issuer, cert_revoked_at, cert_reason, not_after = (
        result
    )
    status, reason = _status(row, cert_revoked_at, cert_reason, not_after, now)
    return SealRecord(
        id=row.public_id,
        es_id=row.es_id,
        name=row.name,
        kind=row.kind,
        person_name=row.person_name,
        agency_uscc=uscc,
        agency_name=agency_name,
        status=status,
        status_reason=reason,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        created_at=row.created_at,
        size_mm=(row.width_mm, row.height_mm),
        key_label=row.key_label,
        certificate_serial=serial,
        certificate_issuer=issuer,
        suspended_at=row.suspended_at,
        suspension_note=row.suspension_note,
        revoked_at=row.revoked_at,
        revocation_reason=row.revocation_reason,
    )


def _seal_ref_clause(reference: str) -> Any:
    ref = reference.strip()
    return or_(SealRow.public_id == ref, SealRow.es_id == ref)


def _not_found(reference: str) -> SealNotFoundError:
    return SealNotFoundError(f"no seal with id or seal code {reference.strip()[:40]!r}")


# -- naming and validity ---------------------------------------------------------------


def _check_person_name(name: str | None) -> str:
    if name is None or not name.strip():
        raise SealRequestError("a legal representative's seal needs the person's name")
    person = unicodedata.normalize("NFC", name).strip()
    parts = person.split(_NAME_SEPARATOR)
    if not 2 <= len(person) <= 9 or not all(part and part.isalpha() for part in parts):
        raise SealRequestError(
            "a legal representative's name has 2 to 9 letters, its parts joined by '·'"
        )
    return person


def _full_name(kind: SealKind, agency_name: str, person: str | None) -> str:
    if kind is SealKind.OFFICIAL:
        return agency_name
    if kind is SealKind.LEGAL_REP:
        return f"{agency_name}{kind.label}（{person}）"
    return f"{agency_name}{kind.label}"


def _common_name(full_name: str, kind: SealKind, agency_name: str) -> str:
    """The certificate's CN: the seal's full name, shortened inside the agency's name if
    it is too long, so the kind at its end survives."""
    suffix = full_name[len(agency_name) :] if kind is not SealKind.OFFICIAL else ""
    return fit_common_name(full_name, keep_suffix=suffix)


def _end_of_validity(
    requested: dt.date | dt.datetime | None, now: dt.datetime
) -> dt.datetime | None:
    if requested is None:
        return None
    if isinstance(requested, dt.datetime):
        if requested.tzinfo is None or requested.utcoffset() is None:
            raise SealRequestError("give valid_until as a date or an aware datetime")
        end = requested.astimezone(dt.UTC).replace(microsecond=0)
    elif isinstance(requested, dt.date):
        end = dt.datetime.combine(requested, dt.time(23, 59, 59), CHINA_STANDARD_TIME)
        end = end.astimezone(dt.UTC)
    else:
        raise SealRequestError("give valid_until as a date or an aware datetime")
    if end <= now:
        raise SealRequestError(
            f"the seal's validity must end in the future, not on {_shown(end)}"
        )
    return end


def _maker_algorithm(certificate: x509.Certificate) -> tuple[str, hashes.HashAlgorithm]:
    key = certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size in _SEAL_ECDSA:
        oid, hash_type = _SEAL_ECDSA[key.curve.key_size]
        return oid, hash_type()
    raise SealMakerError(
        "the seal-maker key must be an EC P-256 or P-384 key to sign GB/T 38540 seal data"
    )


class SealRegistry:
    """Makes seals and keeps their lifecycle, grants and stamp log.

    `clock` defaults to the CA's; every time a seal is judged (expired or not) comes
    from it.
    """

    def __init__(
        self,
        *,
        ra: RegistrationAuthority,
        revocation: RevocationService,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.ra = ra
        self.ca = ra.ca
        self.keystore = ra.keystore
        self.sessions = ra.sessions
        self.revocation = revocation
        self.clock = clock or ra.ca.clock

    def _now(self) -> dt.datetime:
        return self.clock().astimezone(dt.UTC).replace(microsecond=0)

    # -- making ----------------------------------------------------------------------

    def make_seal(
        self, request: SealRequest, *, actor: str | None = None
    ) -> SealRecord:
        """Make a seal: key, certificate, seal code, image and seal data, stored at once.

        Bad input is refused before anything is made. `actor` names who made it in the
        audit entries of its signatures.
        """
        kind = (
            request.kind
            if isinstance(request.kind, SealKind)
            else parse_seal_kind(request.kind)
        )
        now = self._now()
        with self.sessions() as session:
            agency = get_agency(session, request.agency_uscc)
        person = self._check_name(kind, request.name, agency)
        if len(agency.name) > MAX_ORGANIZATION_NAME:
            raise SealRequestError(
                f"the agency's registered name has {len(agency.name)} characters; a seal "
                f"certificate's organization name holds at most {MAX_ORGANIZATION_NAME}"
            )
        requested_end = _end_of_validity(request.valid_until, now)
        # Check the text fits the seal before a code is used up or a key made.
        layout_seal(
            _image_spec(
                kind,
                agency,
                person,
                agency.region_code + "0" * SEAL_CODE_SEQUENCE_DIGITS,
            )
        )
        maker_label, maker_certificate, _ = service_credential(
            self.ca, ServicePurpose.SEAL_MAKER
        )
        maker_algorithm, maker_hash = _maker_algorithm(maker_certificate)

        es_id = self._next_seal_code(agency.region_code)
        spec = _image_spec(kind, agency, person, es_id)
        image_pdf = render_seal_pdf(spec)
        preview_png = render_seal_png(spec, dpi=PREVIEW_DPI)
        picture_png = render_seal_png(spec, dpi=SEAL_DATA_DPI)
        width_mm, height_mm = seal_size_mm(spec)
        full_name = _full_name(kind, agency.name, person)
        public_id = "sl_" + secrets.token_hex(8)
        key_label = KEY_LABEL_PREFIX + public_id

        with signing_context(actor=actor, operation=f"make-seal:{es_id}"):
            issued = self.ra.issue_with_new_key(
                profile_name="seal",
                key_label=key_label,
                algorithm=request.algorithm,
                agency_uscc=agency.uscc,
                common_name=_common_name(full_name, kind, agency.name),
                # The CA starts the certificate BACKDATE early: cover the whole request.
                validity=requested_end - now + BACKDATE
                if requested_end is not None
                else None,
            )
            try:
                not_after = issued.certificate.not_valid_after_utc
                valid_until = (
                    min(requested_end, not_after) if requested_end else not_after
                )
                info = SealInfo(
                    es_id=es_id,
                    name=full_name,
                    seal_type=SEAL_TYPE_PERSONAL
                    if kind is SealKind.LEGAL_REP
                    else SEAL_TYPE_ORGANISATION,
                    vendor_id=SEAL_VENDOR_ID,
                    created=now,
                    valid_start=now,
                    valid_end=valid_until,
                    picture=SealPicture(
                        "PNG", picture_png, round(width_mm), round(height_mm)
                    ),
                    certificates=(issued.der,),
                )
                maker_key = self.keystore.private_key(maker_label, usage=KeyUsage.SEAL)
                seal_data = build_seal(
                    info,
                    maker_certificate=maker_certificate.public_bytes(Encoding.DER),
                    sign=lambda tbs: maker_key.sign(tbs, ec.ECDSA(maker_hash)),
                    signature_algorithm=maker_algorithm,
                )
                with write_transaction(self.sessions) as session:
                    certificate_id = session.scalar(
                        select(CertificateRow.id)
                        .join(CaRow, CaRow.id == CertificateRow.issuer_id)
                        .where(
                            CaRow.name == issued.issuer,
                            CertificateRow.serial == issued.serial,
                        )
                    )
                    session.add(
                        SealRow(
                            public_id=public_id,
                            agency_id=agency.id,
                            es_id=es_id,
                            name=full_name,
                            kind=kind,
                            person_name=person,
                            state=SealState.ACTIVE,
                            valid_from=now,
                            valid_until=valid_until,
                            key_label=key_label,
                            certificate_id=certificate_id,
                            image_pdf=image_pdf,
                            image_png=preview_png,
                            width_mm=width_mm,
                            height_mm=height_mm,
                            seal_data=seal_data,
                            created_at=now,
                        )
                    )
            except BaseException:
                self._discard(key_label, issued.serial, issued.issuer)
                raise
        return self.get_seal(public_id)

    def _check_name(
        self, kind: SealKind, name: str | None, agency: AgencyRecord
    ) -> str | None:
        """The person's name for a legal representative's seal, else None."""
        if kind is SealKind.LEGAL_REP:
            if (
                name is not None
                and unicodedata.normalize("NFC", name).strip() == agency.name
            ):
                raise SealRequestError(
                    "a legal representative's seal bears the person's name, not the agency's"
                )
            return _check_person_name(name)
        if name is not None:
            given = unicodedata.normalize("NFC", name).strip()
            if given not in ("", agency.name, _full_name(kind, agency.name, None)):
                raise SealRequestError(
                    f"a {kind.label} bears the agency's registered name {agency.name!r}; "
                    "another name cannot be engraved"
                )
        return None

    def _next_seal_code(self, region_code: str) -> str:
        """The region's next seal code, committed before anything is signed."""
        for _ in range(_CODE_ATTEMPTS):
            try:
                with write_transaction(self.sessions) as session:
                    sequence = session.execute(
                        update(SealCodeSequenceRow)
                        .where(SealCodeSequenceRow.region_code == region_code)
                        .values(last_sequence=SealCodeSequenceRow.last_sequence + 1)
                        .returning(SealCodeSequenceRow.last_sequence)
                    ).scalar_one_or_none()
                    if sequence is None:
                        sequence = 1
                        session.add(
                            SealCodeSequenceRow(
                                region_code=region_code, last_sequence=1
                            )
                        )
                        session.flush()
            except IntegrityError:
                continue  # another process made the region's counter first: count on it
            if sequence >= 10**SEAL_CODE_SEQUENCE_DIGITS:
                raise SealStateError(
                    f"region {region_code} has given out every seal code"
                )
            return f"{region_code}{sequence:0{SEAL_CODE_SEQUENCE_DIGITS}d}"
        raise SealStateError("could not allocate a seal code; try again")

    def _discard(self, key_label: str, serial: str, issuer: str) -> None:
        """Undo a half-made seal: its key first (without it the certificate is harmless),
        then revoke the certificate so relying parties and the CA's books know.

        Called only outside a write transaction (make_seal's has ended when its
        `except` runs): a key's destruction is audited first, and on SQLite the audit
        entry needs the write lock (commit before you sign, hsm_sim/audit.py)."""
        try:
            self.keystore.destroy_key(key_label)
        except KeyNotFoundError:
            pass
        except Exception:  # noqa: BLE001 - undoing goes on; the caller re-raises the cause
            _log.exception(
                "could not destroy key %s of a seal that was not made", key_label
            )
        try:
            self.revocation.revoke(
                serial, RevocationReason.CESSATION_OF_OPERATION, issuer_name=issuer
            )
        except Exception:  # noqa: BLE001 - undoing goes on; the caller re-raises the cause
            _log.exception(
                "could not revoke certificate %s of a seal that was not made", serial
            )

    def discard_unfinished(
        self, *, older_than: dt.timedelta = dt.timedelta(hours=1)
    ) -> list[str]:
        """Remove what a making cut short (a killed process) left behind: seal keys and
        certificates older than `older_than` that no seal uses. The key labels removed."""
        cutoff = self._now() - older_than
        with self.sessions() as session:
            used = set(session.scalars(select(SealRow.key_label)))
            certificates = session.execute(
                select(
                    CertificateRow.key_label,
                    CertificateRow.serial,
                    CaRow.name,
                    CertificateRow.state,
                    CertificateRow.revoked_at,
                )
                .join(CaRow, CaRow.id == CertificateRow.issuer_id)
                .where(
                    CertificateRow.key_label.startswith(
                        KEY_LABEL_PREFIX, autoescape=True
                    ),
                    CertificateRow.created_at < cutoff,
                    ~exists().where(SealRow.certificate_id == CertificateRow.id),
                )
            ).all()
        discarded: list[str] = []
        for label, serial, issuer, state, revoked_at in certificates:
            if label in used:
                continue
            if state is CertificateState.ISSUED and revoked_at is None:
                self._discard(label, serial, issuer)
            else:
                self._destroy_quietly(label)
            discarded.append(label)
        for info in self.keystore.list_keys():
            if (
                info.label.startswith(KEY_LABEL_PREFIX)
                and info.label not in used
                and info.label not in discarded
                and info.created_at < cutoff
            ):
                self._destroy_quietly(info.label)
                discarded.append(info.label)
        return sorted(set(discarded))

    def _destroy_quietly(self, key_label: str) -> None:
        """Destroy a key that may be gone already; outside any write transaction, as
        `_discard`."""
        try:
            self.keystore.destroy_key(key_label)
        except KeyNotFoundError:
            pass

    # -- reading ---------------------------------------------------------------------

    def get_seal(self, reference: str) -> SealRecord:
        """The seal with this id (sl_...) or seal code."""
        with self.sessions() as session:
            result = session.execute(
                _SEAL_QUERY.where(_seal_ref_clause(reference))
            ).first()
        if result is None:
            raise _not_found(reference)
        return _record(result, self._now())

    def list_seals(
        self, agency_uscc: str | None = None, *, status: SealStatus | None = None
    ) -> list[SealRecord]:
        """Every seal (of one agency), oldest first, optionally only those in `status`."""
        query: Select[Any] = _SEAL_QUERY.order_by(SealRow.id)
        with self.sessions() as session:
            if agency_uscc is not None:
                query = query.where(
                    SealRow.agency_id == get_agency(session, agency_uscc).id
                )
            results = session.execute(query).all()
        now = self._now()
        records = [_record(result, now) for result in results]
        return [r for r in records if status is None or r.status is status]

    def describe(self, reference: str) -> dict[str, Any]:
        return describe_seal_record(self.get_seal(reference))

    def export_image(self, reference: str, image_format: str = "png") -> bytes:
        """The seal's image as stamped: "pdf" (vector) or "png" (300 dpi preview)."""
        wanted = image_format.strip().lower().lstrip(".")
        if wanted not in ("png", "pdf"):
            raise SealRequestError(
                f"export the image as png or pdf, not {image_format[:10]!r}"
            )
        column = SealRow.image_png if wanted == "png" else SealRow.image_pdf
        with self.sessions() as session:
            data = session.scalar(select(column).where(_seal_ref_clause(reference)))
        if data is None:
            raise _not_found(reference)
        return data

    def seal_data(self, reference: str) -> bytes:
        """The GB/T 38540 seal data (SESeal DER)."""
        with self.sessions() as session:
            data = session.scalar(
                select(SealRow.seal_data).where(_seal_ref_clause(reference))
            )
        if data is None:
            raise _not_found(reference)
        return data

    # -- lifecycle -------------------------------------------------------------------

    def _locked(self, session: Session, reference: str) -> tuple[SealRow, SealRecord]:
        result = session.execute(
            _SEAL_QUERY.where(_seal_ref_clause(reference)).with_for_update(of=SealRow)
        ).first()
        if result is None:
            raise _not_found(reference)
        return result[0], _record(result, self._now())

    def suspend_seal(self, reference: str, *, note: str | None = None) -> SealRecord:
        """Stop the seal from stamping until it is reinstated. Its certificate stays good,
        so documents it stamped before stay valid. Suspending again changes nothing."""
        with write_transaction(self.sessions) as session:
            row, record = self._locked(session, reference)
            if record.status in (SealStatus.REVOKED, SealStatus.EXPIRED):
                raise SealStateError(
                    f"seal {record.id} is {record.status.value} and cannot be suspended"
                )
            if row.state is SealState.ACTIVE:
                row.state = SealState.SUSPENDED
                row.suspended_at = self._now()
                row.suspension_note = _one_line(note) if note and note.strip() else None
        return self.get_seal(record.id)

    def reinstate_seal(self, reference: str) -> SealRecord:
        """Let a suspended seal stamp again. An active seal is left as it is."""
        with write_transaction(self.sessions) as session:
            row, record = self._locked(session, reference)
            if record.status in (SealStatus.REVOKED, SealStatus.EXPIRED):
                raise SealStateError(
                    f"seal {record.id} is {record.status.value} and cannot be reinstated"
                )
            row.state = SealState.ACTIVE
            row.suspended_at = None
            row.suspension_note = None
        return self.get_seal(record.id)

    def revoke_seal(
        self,
        reference: str,
        reason: RevocationReason | str,
        *,
        actor: str | None = None,
    ) -> SealRecord:
        """Revoke the seal for good: it stops stamping at once, its certificate is revoked
        with `reason` and its key destroyed. Revoking again finishes a revocation that
        was cut short and changes nothing else (a key already gone is left alone, so
        the audit log shows one destruction). `actor` names who revoked it in the
        audit entries of the key's destruction and the revocation data signed."""
        if isinstance(reason, str):
            try:
                reason = parse_reason(reason)
            except ValueError as exc:
                raise SealRequestError(str(exc)) from None
        if reason not in _FINAL_REASONS:
            allowed = ", ".join(sorted(r.value for r in _FINAL_REASONS))
            raise SealRequestError(
                f"a seal is not revoked for {reason.value}; use one of: {allowed} "
                "(suspend the seal to stop it for a while)"
            )
        # The seal stops first, in its own transaction: if the CA cannot be reached,
        # the seal is already unusable and running the revocation again completes it.
        with write_transaction(self.sessions) as session:
            row, record = self._locked(session, reference)
            if row.state is not SealState.REVOKED:
                row.state = SealState.REVOKED
                row.revoked_at = self._now()
                row.revocation_reason = reason
            recorded_reason = row.revocation_reason or reason
        # Committed: the key store's audit entries below are written on their own.
        with signing_context(actor=actor, operation=f"revoke-seal:{record.es_id}"):
            self.revocation.revoke(
                record.certificate_serial,
                recorded_reason,
                issuer_name=record.certificate_issuer,
            )
            if self._holds_key(record.key_label):
                self._destroy_quietly(record.key_label)
        return self.get_seal(record.id)

    def _holds_key(self, key_label: str) -> bool:
        try:
            self.keystore.key_info(key_label)
        except KeyNotFoundError:
            return False
        return True

    # -- grants ----------------------------------------------------------------------

    def _principal_row(
        self, session: Session, principal: Principal
    ) -> tuple[ApiClient | StaffUser | None, int | None]:
        """The principal's row and agency id; (None, None) when there is no such one."""
        if principal.kind is PrincipalKind.CLIENT:
            client = session.scalar(
                select(ApiClient).where(ApiClient.client_id == principal.id)
            )
            return client, client.agency_id if client else None
        if principal.kind is PrincipalKind.STAFF:
            user = session.scalar(
                select(StaffUser).where(StaffUser.username == principal.id)
            )
            return user, user.agency_id if user else None
        return None, None

    @staticmethod
    def _grant_clause(row: ApiClient | StaffUser) -> Any:
        if isinstance(row, ApiClient):
            return SealGrantRow.api_client_id == row.id
        return SealGrantRow.staff_user_id == row.id

    def grant(
        self,
        reference: str,
        *,
        client_id: str | None = None,
        staff_username: str | None = None,
    ) -> GrantRecord:
        """Allow an API client or a staff user of the seal's agency to stamp with it."""
        principal = Principal.of(client_id=client_id, staff_username=staff_username)
        with write_transaction(self.sessions) as session:
            seal_row, record = self._locked(session, reference)
            if record.status in (SealStatus.REVOKED, SealStatus.EXPIRED):
                raise SealStateError(
                    f"seal {record.id} is {record.status.value}; nobody can be allowed to use it"
                )
            row, agency_id = self._principal_row(session, principal)
            if row is None:
                raise PrincipalNotFoundError(
                    f"no {principal.kind.value} {principal.id[:64]!r}"
                )
            if isinstance(row, ApiClient) and row.disabled_at is not None:
                raise SealRequestError(f"API client {principal.id} is disabled")
            if agency_id != seal_row.agency_id:
                raise SealRequestError(
                    f"{principal} does not belong to agency {record.agency_uscc}, which holds seal {record.id}"
                )
            existing = session.scalar(
                select(SealGrantRow).where(
                    SealGrantRow.seal_id == seal_row.id,
                    self._grant_clause(row),
                    SealGrantRow.withdrawn_at.is_(None),
                )
            )
            if existing is None:
                existing = SealGrantRow(
                    seal_id=seal_row.id,
                    api_client_id=row.id if isinstance(row, ApiClient) else None,
                    staff_user_id=row.id if isinstance(row, StaffUser) else None,
                    granted_at=self._now(),
                )
                session.add(existing)
                session.flush()
            return GrantRecord(record.id, principal, existing.granted_at, None)

    def withdraw_grant(
        self,
        reference: str,
        *,
        client_id: str | None = None,
        staff_username: str | None = None,
    ) -> GrantRecord:
        """Take back a grant; the principal can no longer stamp with the seal."""
        principal = Principal.of(client_id=client_id, staff_username=staff_username)
        with write_transaction(self.sessions) as session:
            seal_row, record = self._locked(session, reference)
            row, _agency_id = self._principal_row(session, principal)
            if row is None:
                raise PrincipalNotFoundError(
                    f"no {principal.kind.value} {principal.id[:64]!r}"
                )
            grants = session.scalars(
                select(SealGrantRow).where(
                    SealGrantRow.seal_id == seal_row.id,
                    self._grant_clause(row),
                    SealGrantRow.withdrawn_at.is_(None),
                )
            ).all()
            if not grants:
                raise GrantNotFoundError(
                    f"{principal} has no grant for seal {record.id}"
                )
            now = self._now()
            for grant in grants:
                grant.withdrawn_at = now
            return GrantRecord(record.id, principal, grants[0].granted_at, now)

    def list_grants(self, reference: str) -> list[GrantRecord]:
        """Who may stamp with the seal now (grants not withdrawn), in the order given."""
        with self.sessions() as session:
            seal = session.scalar(select(SealRow).where(_seal_ref_clause(reference)))
            if seal is None:
                raise _not_found(reference)
            rows = session.execute(
                select(SealGrantRow, ApiClient.client_id, StaffUser.username)
                .outerjoin(ApiClient, ApiClient.id == SealGrantRow.api_client_id)
                .outerjoin(StaffUser, StaffUser.id == SealGrantRow.staff_user_id)
                .where(
                    SealGrantRow.seal_id == seal.id, SealGrantRow.withdrawn_at.is_(None)
                )
                .order_by(SealGrantRow.id)
            ).all()
        return [
            GrantRecord(
                seal.public_id,
                Principal(PrincipalKind.CLIENT, client)
                if client
                else Principal(PrincipalKind.STAFF, user),
                grant.granted_at,
                None,
            )
            for grant, client, user in rows
        ]

    # -- stamping --------------------------------------------------------------------

    def _authorize(
        self, session: Session, reference: str, principal: Principal
    ) -> tuple[SealRow, SealRecord]:
        result = session.execute(_SEAL_QUERY.where(_seal_ref_clause(reference))).first()
        if result is None:
            raise _not_found(reference)
        seal_row = result[0]
        record = _record(result, self._now())
        if principal.kind is not PrincipalKind.OPERATOR:
            row, agency_id = self._principal_row(session, principal)
            if row is None or (
                isinstance(row, ApiClient) and row.disabled_at is not None
            ):
                raise StampForbiddenError(f"{principal} may not stamp")
            if agency_id != seal_row.agency_id:
                raise StampForbiddenError(
                    f"seal {record.id} belongs to another agency; an agency stamps only with its own seals"
                )
            granted = session.scalar(
                select(SealGrantRow.id)
                .where(
                    SealGrantRow.seal_id == seal_row.id,
                    self._grant_clause(row),
                    SealGrantRow.withdrawn_at.is_(None),
                )
                .limit(1)
            )
            if granted is None:
                raise StampForbiddenError(
                    f"{principal} has no grant for seal {record.id}; the agency's administrator grants it"
                )
        if record.status is not SealStatus.ACTIVE:
            raise SealNotUsableError(
                f"seal {record.id} cannot stamp: {record.status_reason}"
            )
        return seal_row, record

    def authorize_stamp(
        self,
        reference: str,
        *,
        client_id: str | None = None,
        staff_username: str | None = None,
        operator: str | None = None,
    ) -> StampAuthorization:
        """Check that the principal may stamp with the seal now; StampForbiddenError
        (another agency's seal, no grant) or SealNotUsableError (suspended, revoked,
        expired) otherwise. Nothing is signed or logged here."""
        principal = Principal.of(
            client_id=client_id, staff_username=staff_username, operator=operator
        )
        with self.sessions() as session:
            _row, record = self._authorize(session, reference, principal)
        return StampAuthorization(record, principal, self._now())

    def credential(self, authorization: StampAuthorization) -> SealCredential:
        """What the Stamper needs for the authorized seal: key handle, certificate and
        chain, the stored image and seal data."""
        with self.sessions() as session:
            result = session.execute(
                select(SealRow, CertificateRow.der, CertificateRow.issuer_id)
                .join(CertificateRow, CertificateRow.id == SealRow.certificate_id)
                .where(SealRow.public_id == authorization.seal.id)
                .options(undefer(SealRow.image_pdf), undefer(SealRow.seal_data))
            ).one()
        row, certificate_der, issuer_id = result
        issuer = next(i for i in self.ca.issuers() if i.id == issuer_id)
        return SealCredential(
            key=self.keystore.private_key(row.key_label, usage=KeyUsage.SEAL),
            certificate=x509.load_der_x509_certificate(certificate_der),
            chain=tuple(self.ca.chain(issuer)),
            image_pdf=row.image_pdf,
            seal_data=row.seal_data,
            name=row.es_id,
            size_mm=(row.width_mm, row.height_mm),
        )

    def record_stamp_intent(
        self, authorization: StampAuthorization, *, document: bytes, level: Level | str
    ) -> StampIntent:
        """Log a stamping before it is signed, checking the authorization again in the
        same transaction (the seal may have been suspended since). Committed on return."""
        level_text = (
            level.value if isinstance(level, Level) else Level.parse(level).value
        )
        digest = hashlib.sha256(document).hexdigest()
        principal = authorization.principal
        with write_transaction(self.sessions) as session:
            seal_row, _ = self._authorize(session, authorization.seal.id, principal)
            row = StampLogRow(
                seal_id=seal_row.id,
                principal_kind=principal.kind,
                principal_id=principal.id,
                document_sha256=digest,
                document_bytes=len(document),
                level=level_text,
                outcome=StampOutcome.PENDING,
                started_at=self._now(),
            )
            session.add(row)
            session.flush()
            return StampIntent(
                row.id,
                authorization.seal.id,
                principal,
                digest,
                level_text,
                row.started_at,
            )

    def complete_stamp(self, intent: StampIntent, sealed: bytes) -> StampLogRecord:
        """Record the sealed document's hash against the intent."""
        return self._finish(
            intent,
            StampOutcome.STAMPED,
            sealed_sha256=hashlib.sha256(sealed).hexdigest(),
        )

    def fail_stamp(self, intent: StampIntent, reason: str) -> StampLogRecord:
        """Record that the stamping did not produce a document, and why (one line)."""
        return self._finish(
            intent, StampOutcome.FAILED, error=_one_line(reason) or "failed"
        )

    def fail_abandoned_stamps(self, *, older_than: dt.timedelta) -> int:
        """Mark stampings still PENDING after `older_than` as failed, reason
        "abandoned" (a worker died mid-stamp); returns how many. For the portal's
        schedule: `older_than` must exceed the longest a stamping can take (TSA and
        revocation timeouts included), or a slow one could no longer complete."""
        if older_than <= dt.timedelta(0):
            raise ValueError("older_than must be a positive duration")
        now = self._now()
        with write_transaction(self.sessions) as session:
            return session.execute(
                update(StampLogRow)
                .where(
                    StampLogRow.outcome == StampOutcome.PENDING,
                    StampLogRow.started_at < now - older_than,
                )
                .values(outcome=StampOutcome.FAILED, error="abandoned", finished_at=now)
            ).rowcount

    def _finish(
        self,
        intent: StampIntent,
        outcome: StampOutcome,
        *,
        sealed_sha256: str | None = None,
        error: str | None = None,
    ) -> StampLogRecord:
        with write_transaction(self.sessions) as session:
            changed = session.execute(
                update(StampLogRow)
                .where(
                    StampLogRow.id == intent.log_id,
                    StampLogRow.outcome == StampOutcome.PENDING,
                )
                .values(
                    outcome=outcome,
                    sealed_sha256=sealed_sha256,
                    error=error,
                    finished_at=self._now(),
                )
            ).rowcount
            if changed != 1:
                raise SealStateError(
                    f"stamp log entry {intent.log_id} is already finished"
                )
        return self._stamp_log(StampLogRow.id == intent.log_id)[0]

    @contextlib.contextmanager
    def stamping(
        self, authorization: StampAuthorization, document: bytes, *, level: Level | str
    ) -> Iterator[StampInProgress]:
        """Log around one stamping: the intent before, the outcome after. Signatures made
        inside carry the intent's actor in the audit log.

            with seals.stamping(authorization, pdf, level=request.level) as stamp:
                stamp.complete(stamper.stamp(pdf, request, actor=stamp.actor))
        """
        intent = self.record_stamp_intent(authorization, document=document, level=level)
        progress = StampInProgress(self, intent)
        try:
            with signing_context(actor=intent.actor):
                yield progress
        except BaseException as exc:
            if progress.record is None:
                self.fail_stamp(intent, f"{type(exc).__name__}: {exc}")
            raise
        if progress.record is None:
            self.fail_stamp(intent, "the stamping ended without a sealed document")

    def stamp_document(
        self,
        authorization: StampAuthorization,
        stamper: Stamper,
        document: bytes,
        request: StampRequest,
    ) -> bytes:
        """Stamp one document with the authorized seal, logged before and after."""
        if stamper.credential.key.label != authorization.seal.key_label:
            raise StampForbiddenError(
                "the stamper holds another seal than the one authorized"
            )
        with self.stamping(authorization, document, level=request.level) as stamp:
            sealed = stamper.stamp(document, request, actor=stamp.actor)
            stamp.complete(sealed)
        return sealed

    def _stamp_log(
        self, *conditions: Any, limit: int | None = None
    ) -> list[StampLogRecord]:
        query = (
            select(StampLogRow, SealRow.public_id, SealRow.es_id)
            .join(SealRow, SealRow.id == StampLogRow.seal_id)
            .where(*conditions)
            .order_by(StampLogRow.id.desc())
        )
        if limit is not None:
            query = query.limit(limit)
        with self.sessions() as session:
            rows = session.execute(query).all()
        return [
            StampLogRecord(
                log_id=row.id,
                seal_id=public_id,
                es_id=es_id,
                principal=Principal(row.principal_kind, row.principal_id),
                document_sha256=row.document_sha256,
                document_bytes=row.document_bytes,
                level=row.level,
                outcome=row.outcome,
                sealed_sha256=row.sealed_sha256,
                error=row.error,
                started_at=row.started_at,
                finished_at=row.finished_at,
            )
            for row, public_id, es_id in rows
        ]

    def stamp_log(
        self, reference: str | None = None, *, limit: int = 100
    ) -> list[StampLogRecord]:
        """The newest stampings (of one seal), newest first."""
        if reference is None:
            return self._stamp_log(limit=limit)
        seal = self.get_seal(reference)
        return self._stamp_log(SealRow.public_id == seal.id, limit=limit)


def _image_spec(
    kind: SealKind, agency: AgencyRecord, person: str | None, code: str
) -> SealImageSpec:
    if kind is SealKind.LEGAL_REP:
        assert person is not None
        return SealImageSpec(name=person, kind=kind)
    if kind is SealKind.INVOICE:
        # The invoice seal shows the taxpayer number, which is the agency's USCC; its
        # rules leave no room for the seal code, which travels in the seal data.
        return SealImageSpec(name=agency.name, kind=kind, taxpayer_id=agency.uscc)
    return SealImageSpec(name=agency.name, kind=kind, code=code)
