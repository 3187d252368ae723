"""Revocation: revoke and release certificates, publish CRLs, answer OCSP.

Ordering is what keeps CRLs honest under concurrency. Every status change takes the
next value of its issuer's `revocation_sequence` while holding the issuer row's lock,
in the same transaction that changes the certificate. Every CRL takes the next CRL
number under that same lock and reads the revocations there (on SQLite, just after:
see _publish_crl). So a CRL with a higher number was read later and contains
everything a lower-numbered one does, and every revocation appears in the first CRL
read after it committed. Signing happens after
the transaction commits (the audit log writes first, on its own connection).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gc
import itertools
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import and_, bindparam, delete, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hsm_sim.api import KeyUsage, signing_context
from hsm_sim.errors import HsmError
from hsm_sim.storage import database_error_code, write_transaction
from pki.ca import CertificateAuthority, Issuer, serial_from_text, serial_to_text
from pki.ca_models import (
    CaRow,
    CertificateRow,
    CertificateState,
    CrlRow,
    OcspResponseRow,
    RevocationReason,
)
from pki.certificates import signature_hash_for
from pki.errors import (
    InvalidReasonError,
    MalformedOcspRequestError,
    PkiError,
    RevocationError,
    UnknownCaError,
    UnknownSerialError,
)
from pki.ocsp import (
    GOOD,
    UNKNOWN,
    CertId,
    CertificateStatus,
    OcspResponder,
    build_ocsp_response,
    issuer_cert_id_hashes,
    malformed_request_response,
    parse_ocsp_request,
    unauthorized_response,
)

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

__all__ = [
    "REASON_FLAGS",
    "RevocationOutcome",
    "CrlInfo",
    "RevocationService",
    "parse_reason",
]

REASON_FLAGS: dict[RevocationReason, x509.ReasonFlags] = {
    RevocationReason.UNSPECIFIED: x509.ReasonFlags.unspecified,
    RevocationReason.KEY_COMPROMISE: x509.ReasonFlags.key_compromise,
    RevocationReason.CA_COMPROMISE: x509.ReasonFlags.ca_compromise,
    RevocationReason.AFFILIATION_CHANGED: x509.ReasonFlags.affiliation_changed,
    RevocationReason.SUPERSEDED: x509.ReasonFlags.superseded,
    RevocationReason.CESSATION_OF_OPERATION: x509.ReasonFlags.cessation_of_operation,
    RevocationReason.CERTIFICATE_HOLD: x509.ReasonFlags.certificate_hold,
    RevocationReason.PRIVILEGE_WITHDRAWN: x509.ReasonFlags.privilege_withdrawn,
    RevocationReason.AA_COMPROMISE: x509.ReasonFlags.aa_compromise,
}
_PRESIGNED_HASH = "sha1"  # what openssl and most clients put in the CertID
_ISSUER_RELOAD_SECONDS = 5.0
_CACHED_RESPONSE = select(
    OcspResponseRow.der, OcspResponseRow.produced_at, OcspResponseRow.next_update
).where(
    OcspResponseRow.issuer_id == bindparam("issuer_id"),
    OcspResponseRow.serial == bindparam("serial"),
)
# A pre-signed response is re-signed once less than this much of its life is left.
_REFRESH_MARGIN = 0.5
# Pre-signed responses are signed and stored this many at a time, each batch committed
# on its own: memory and bind parameters (PostgreSQL allows 65,535 in a statement)
# stay bounded however many certificates are due, and a failure loses one batch.
_PRESIGN_CHUNK = 500
# What one CA's part of a refresh may fail with without stopping the other CAs'.
_CA_FAILURES = (PkiError, HsmError, SQLAlchemyError)


def _chunks(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _is_fresh(
    produced_at: dt.datetime, next_update: dt.datetime, now: dt.datetime
) -> bool:
    """Whether a pre-signed response is still served as it is, rather than re-signed."""
    return now < produced_at + (next_update - produced_at) * _REFRESH_MARGIN


def _describe_failure(error: Exception) -> str:
    """`error` on one line for the log. A Yinxin error's message is written to be shown;
    a database error's may quote data, so only its kind and code are."""
    if isinstance(error, (PkiError, HsmError)):
        return " ".join(str(error).split()) or type(error).__name__
    code = database_error_code(error)
    return f"{type(error).__name__} (code {code})" if code else type(error).__name__


def parse_reason(text: str) -> RevocationReason:
    """An RFC 5280 reason from its name (`keyCompromise`, `key-compromise`, `key_compromise`)."""
    wanted = text.strip().replace("-", "").replace("_", "").lower()
    for reason in RevocationReason:
        if reason.value.lower() == wanted:
            return reason
    known = ", ".join(r.value for r in RevocationReason)
    raise InvalidReasonError(f"unknown revocation reason {text!r}; use one of: {known}")


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a CRL's entries are read and built.

    A CRL of a million entries allocates millions of small objects, none of them in a
    reference cycle; the collector would scan them again and again and double the time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclasses.dataclass(frozen=True)
class RevocationOutcome:
    serial: str
    issuer: str
    reason: RevocationReason | None
    revoked_at: dt.datetime | None
    changed: bool
    message: str
    # False when the change is committed but the new OCSP response or delta CRL could
    # not be signed yet; requests are then answered live, and `yinxin ca refresh`
    # (or the server's schedule) publishes again.
    published: bool = True


@dataclasses.dataclass(frozen=True)
class CrlInfo:
    issuer: str
    number: int
    delta: bool
    base_number: int | None
    this_update: dt.datetime
    next_update: dt.datetime
    entry_count: int
    der: bytes


@dataclasses.dataclass(frozen=True)
class _Entry:
    serial: str
    revoked_at: dt.datetime | None
    reason: RevocationReason | None
    released: bool


class RevocationService:
    def __init__(
        self,
        *,
        ca: CertificateAuthority,
        crl_lifetime: dt.timedelta = dt.timedelta(hours=24),
        ocsp_lifetime: dt.timedelta = dt.timedelta(hours=24),
    ) -> None:
        self.ca = ca
        self.sessions = ca.sessions
        self.crl_lifetime = crl_lifetime
        self.ocsp_lifetime = ocsp_lifetime
        self._responders: dict[int, OcspResponder] = {}
        self._responders_lock = threading.Lock()
        # The CAs that answer OCSP, with the CertID hashes requests for them carry:
        # read from the database once, and again only when a request names an issuer
        # not among them (at most every _ISSUER_RELOAD_SECONDS, so requests for
        # foreign issuers cannot hammer it). Matching needs no key, so pre-signed
        # responses are served even while the HSM token is locked.
        self._serving: list[tuple[Issuer, Mapping[str, tuple[bytes, bytes]]]] | None = None
        self._serving_loaded_at = 0.0
        # Pre-signed responses are read on a plain connection: an ORM session per
        # request costs more than the query itself.
        with self.sessions() as session:
            self._engine = session.get_bind()
        # On PostgreSQL a CRL's entries are read under the issuer row's lock, which
        # holds up only that CA's revocations, and the CRL then lists exactly the
        # revocations up to its covers_sequence; on SQLite see _publish_crl.
        self._read_crl_apart = self._engine.dialect.name == "sqlite"

    # -- revoking --------------------------------------------------------------

    def revoke(
        self, serial: str, reason: RevocationReason, *, issuer_name: str | None = None
    ) -> RevocationOutcome:
        """Revoke a certificate. Revoking again is a no-op; a hold can become final."""
        with write_transaction(self.sessions) as session:
            row = self._find(session, serial, issuer_name)
            issuer = self._issuer_name(session, row.issuer_id)
            if row.revoked_at is not None and not (
                row.revocation_reason is RevocationReason.CERTIFICATE_HOLD
                and reason is not RevocationReason.CERTIFICATE_HOLD
            ):
                return RevocationOutcome(
                    serial=row.serial,
                    issuer=issuer,
                    reason=row.revocation_reason,
                    revoked_at=row.revoked_at,
                    changed=False,
                    message=(
                        f"certificate {row.serial} was already revoked "
                        f"({row.revocation_reason.value if row.revocation_reason else 'unspecified'}) "
                        f"on {row.revoked_at:%Y-%m-%d %H:%M:%S} UTC; nothing changed"
                    ),
                )
            row.revocation_sequence = self._next_sequence(session, row.issuer_id)
            # Read once the issuer's lock is ours, so revocation dates follow the
            # sequence (see _publish_crl).
            row.revoked_at = self.ca.clock().replace(microsecond=0)
            row.revocation_reason = reason
            row.hold_released_at = None
            self._drop_presigned(session, row)
            outcome = RevocationOutcome(
                serial=row.serial,
                issuer=issuer,
                reason=reason,
                revoked_at=row.revoked_at,
                changed=True,
                message=f"certificate {row.serial} revoked ({reason.value})",
            )
            issuer_id = row.issuer_id
        return self._publish_change(issuer_id, outcome)

    def release_hold(self, serial: str, *, issuer_name: str | None = None) -> RevocationOutcome:
        """Lift a certificateHold; every other revocation is final."""
        with write_transaction(self.sessions) as session:
            row = self._find(session, serial, issuer_name)
            issuer = self._issuer_name(session, row.issuer_id)
            if row.revoked_at is None:
                return RevocationOutcome(
                    row.serial, issuer, None, None, False,
                    f"certificate {row.serial} is not on hold; nothing changed",
                )
            if row.revocation_reason is not RevocationReason.CERTIFICATE_HOLD:
                raise RevocationError(
                    f"certificate {row.serial} is revoked for "
                    f"{row.revocation_reason.value if row.revocation_reason else 'unspecified'}, "
                    "which is final; only a certificateHold can be released"
                )
            row.revocation_sequence = self._next_sequence(session, row.issuer_id)
            row.revoked_at = None
            row.revocation_reason = None
            row.hold_released_at = self.ca.clock().replace(microsecond=0)
            self._drop_presigned(session, row)
            issuer_id = row.issuer_id
            outcome = RevocationOutcome(
                row.serial, issuer, None, None, True, f"certificate {row.serial} released from hold"
            )
        return self._publish_change(issuer_id, outcome)

    def _find(self, session: Session, serial: str, issuer_name: str | None) -> CertificateRow:
        serial_text = serial_to_text(serial_from_text(serial))
        query = select(CertificateRow).where(
            CertificateRow.serial == serial_text, CertificateRow.state == CertificateState.ISSUED
        )
        if issuer_name is not None:
            query = query.join(CaRow, CaRow.id == CertificateRow.issuer_id).where(
                CaRow.name == issuer_name
            )
        rows = session.scalars(query.with_for_update()).all()
        if not rows:
            where = f" issued by {issuer_name}" if issuer_name else ""
            raise UnknownSerialError(f"no certificate with serial {serial_text}{where}")
        if len(rows) > 1:
            raise UnknownSerialError(
                f"serial {serial_text} exists under several CAs; say which with --issuer"
            )
        return rows[0]

    @staticmethod
    def _drop_presigned(session: Session, row: CertificateRow) -> None:
        """Forget the pre-signed response with the status change, in its transaction:
        until a new one is stored, requests are signed live with the new status, even
        if signing the new one fails."""
        session.execute(
            delete(OcspResponseRow).where(
                OcspResponseRow.issuer_id == row.issuer_id, OcspResponseRow.serial == row.serial
            )
        )

    @staticmethod
    def _issuer_name(session: Session, issuer_id: int) -> str:
        return session.scalar(select(CaRow.name).where(CaRow.id == issuer_id)) or "?"

    @staticmethod
    def _next_sequence(session: Session, issuer_id: int) -> int:
        return session.execute(
            update(CaRow)
            .where(CaRow.id == issuer_id)
            .values(revocation_sequence=CaRow.revocation_sequence + 1)
            .returning(CaRow.revocation_sequence)
        ).scalar_one()

    def _publish_change(self, issuer_id: int, outcome: RevocationOutcome) -> RevocationOutcome:
        """Re-sign the OCSP response and the delta CRL; the change itself is committed."""
        try:
            issuer = self._issuer_by_id(issuer_id)
            self.presign_ocsp(issuer, [outcome.serial])
            self.publish_crl(issuer.name, delta=True)
        except (PkiError, HsmError) as exc:
            _log.warning("published nothing after %s: %s", outcome.message, exc)
            return dataclasses.replace(
                outcome,
                published=False,
                message=f"{outcome.message}; publishing the new status failed ({exc}) — "
                "OCSP answers it live; run `yinxin ca refresh` to publish the CRL",
            )
        return outcome

    # -- CRLs ------------------------------------------------------------------

    def publish_crl(self, issuer_name: str, *, delta: bool = False) -> CrlInfo:
        """Sign and store the next full CRL (or the delta since the latest full one).

        A full CRL is followed at once by an (empty) delta based on it: a delta only
        combines with a full CRL of a lower number (RFC 5280 §5.2.4), and relying
        parties that follow the Freshest CRL pointer need one that matches.
        """
        info = self._publish_crl(issuer_name, delta=delta)
        if not info.delta:
            self._publish_crl(issuer_name, delta=True)
        return info

    def _publish_crl(self, issuer_name: str, *, delta: bool) -> CrlInfo:
        issuer = self.ca.issuer(issuer_name)
        with write_transaction(self.sessions) as session:
            number, sequence = session.execute(
                update(CaRow)
                .where(CaRow.id == issuer.id)
                .values(crl_number=CaRow.crl_number + 1)
                .returning(CaRow.crl_number, CaRow.revocation_sequence)
            ).one()
            # Read once the issuer's lock is ours: CRL number N+1 never carries an
            # earlier thisUpdate than N.
            now = self.ca.clock().replace(microsecond=0)
            base = None
            if delta:
                base = session.execute(
                    select(CrlRow.number, CrlRow.covers_sequence)
                    .where(CrlRow.issuer_id == issuer.id, CrlRow.base_number.is_(None))
                    .order_by(CrlRow.number.desc())
                    .limit(1)
                ).first()
            since = base[1] if base else None
            if not self._read_crl_apart:
                with _collector_paused():
                    entries = self._entries(session, issuer.id, now, since)
        if self._read_crl_apart:
            # SQLite's write transaction locks the whole database: every other
            # process's audit append would wait (5 s at most, then fail) while a large
            # CRL is read, so the entries are read after it commits. That loses
            # nothing: a revocation takes its sequence under the same issuer-row lock
            # as the counter update above, so once that update returned, every
            # revocation with a sequence up to `sequence` (covers_sequence) had
            # committed. Reading later can only add newer changes, which the next
            # delta lists anyway (deltas take `> covers_sequence`). The full CRL gets
            # no `<= sequence` bound: a hold made final after it would drop out.
            with self.sessions() as session, _collector_paused():
                entries = self._entries(session, issuer.id, now, since)
        if delta and base is None:
            delta = False  # no full CRL to be a delta of yet
        with _collector_paused():
            crl = self._sign_crl(issuer, number, now, entries, base_number=base[0] if delta and base else None)
        der = crl.public_bytes(Encoding.DER)
        info = CrlInfo(
            issuer=issuer.name,
            number=number,
            delta=delta,
            base_number=base[0] if delta and base else None,
            this_update=now,
            next_update=now + self.crl_lifetime,
            entry_count=len(entries),
            der=der,
        )
        with self.sessions.begin() as session:
            session.add(
                CrlRow(
                    issuer_id=issuer.id,
                    number=number,
                    base_number=info.base_number,
                    covers_sequence=sequence,
                    this_update=now,
                    next_update=info.next_update,
                    entry_count=len(entries),
                    der=der,
                )
            )
        return info

    @staticmethod
    def _entries(
        session: Session, issuer_id: int, now: dt.datetime, since_sequence: int | None
    ) -> list[_Entry]:
        columns = (
            CertificateRow.serial,
            CertificateRow.revoked_at,
            CertificateRow.revocation_reason,
            CertificateRow.hold_released_at,
        )
        query = select(*columns).where(
            CertificateRow.issuer_id == issuer_id,
            CertificateRow.state == CertificateState.ISSUED,
            # Expired certificates leave the CRL (RFC 5280 §3.3).
            CertificateRow.not_after > now,
        )
        if since_sequence is None:
            query = query.where(CertificateRow.revoked_at.is_not(None))
        else:
            query = query.where(
                CertificateRow.revocation_sequence > since_sequence,
                or_(
                    CertificateRow.revoked_at.is_not(None),
                    CertificateRow.hold_released_at.is_not(None),
                ),
            )
        return [
            _Entry(serial, revoked_at, reason, revoked_at is None and released is not None)
            for serial, revoked_at, reason, released in session.execute(
                query.execution_options(yield_per=10_000)
            )
        ]

    def _sign_crl(
        self,
        issuer: Issuer,
        number: int,
        now: dt.datetime,
        entries: list[_Entry],
        *,
        base_number: int | None,
    ) -> x509.CertificateRevocationList:
        revoked = []
        for entry in entries:
            if entry.released:
                # A delta CRL says a released hold is gone with removeFromCRL.
                when, reason = now, x509.ReasonFlags.remove_from_crl
            else:
                assert entry.revoked_at is not None
                when = entry.revoked_at
                reason = REASON_FLAGS[entry.reason] if entry.reason else None
            builder = x509.RevokedCertificateBuilder(
                serial_number=int(entry.serial, 16), revocation_date=when
            )
            if reason is not None and reason is not x509.ReasonFlags.unspecified:
                builder = builder.add_extension(x509.CRLReason(reason), critical=False)
            revoked.append(builder.build())
        ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        extensions = [
            x509.Extension(
                x509.CRLNumber.oid, False, x509.CRLNumber(number)
            ),
            x509.Extension(
                x509.AuthorityKeyIdentifier.oid,
                False,
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value),
            ),
        ]
        if base_number is not None:
            extensions.append(
                x509.Extension(x509.DeltaCRLIndicator.oid, True, x509.DeltaCRLIndicator(base_number))
            )
        else:
            extensions.append(
                x509.Extension(
                    x509.FreshestCRL.oid,
                    False,
                    x509.FreshestCRL(
                        [
                            x509.DistributionPoint(
                                full_name=[
                                    x509.UniformResourceIdentifier(
                                        self.ca.endpoints.delta_crl_url(issuer.name)
                                    )
                                ],
                                relative_name=None,
                                reasons=None,
                                crl_issuer=None,
                            )
                        ]
                    ),
                )
            )
        # The entry list goes to the constructor: adding entries one at a time copies
        # the list on every call and makes a large CRL quadratic.
        builder = x509.CertificateRevocationListBuilder(
            issuer_name=issuer.certificate.subject,
            last_update=now,
            next_update=now + self.crl_lifetime,
            extensions=extensions,
            revoked_certificates=revoked,
        )
        key = self.ca.signing_key(issuer, KeyUsage.CRL_SIGN)
        kind = "delta-crl" if base_number is not None else "crl"
        with signing_context(operation=f"sign-{kind}:{issuer.name}"):
            return builder.sign(key, signature_hash_for(issuer.certificate.public_key()))

    def latest_crl(self, issuer_name: str, *, delta: bool = False) -> CrlInfo | None:
        issuer = self.ca.issuer(issuer_name)
        with self.sessions() as session:
            condition = CrlRow.base_number.is_not(None) if delta else CrlRow.base_number.is_(None)
            row = session.scalar(
                select(CrlRow)
                .where(CrlRow.issuer_id == issuer.id, condition)
                .order_by(CrlRow.number.desc())
                .limit(1)
            )
            if row is None:
                return None
            return CrlInfo(
                issuer=issuer.name,
                number=row.number,
                delta=row.base_number is not None,
                base_number=row.base_number,
                this_update=row.this_update,
                next_update=row.next_update,
                entry_count=row.entry_count,
                der=row.der,
            )

    # -- OCSP ------------------------------------------------------------------

    def _issuer_by_id(self, issuer_id: int) -> Issuer:
        for issuer in self.ca.issuers():
            if issuer.id == issuer_id:
                return issuer
        raise UnknownCaError(f"no CA with id {issuer_id}")

    def responder(self, issuer: Issuer) -> OcspResponder:
        with self._responders_lock:
            responder = self._responders.get(issuer.id)
            if responder is not None:
                return responder
        with self.sessions() as session:
            row = session.get(CaRow, issuer.id)
            if row is None or row.ocsp_certificate_der is None or row.ocsp_key_label is None:
                raise UnknownCaError(f"the {issuer.name} CA has no OCSP responder yet")
            certificate = x509.load_der_x509_certificate(row.ocsp_certificate_der)
            key_label = row.ocsp_key_label
        responder = OcspResponder(
            issuer_certificate=issuer.certificate,
            responder_certificate=certificate,
            responder_key=self.ca.keystore.private_key(key_label, usage=KeyUsage.OCSP_SIGN),
            next_update_interval=self.ocsp_lifetime,
        )
        with self._responders_lock:
            self._responders[issuer.id] = responder
        return responder

    def forget_responders(self) -> None:
        """Drop cached responders (after a responder certificate is replaced)."""
        with self._responders_lock:
            self._responders.clear()
            self._serving = None

    @staticmethod
    def _status_from(revoked_at: dt.datetime | None, reason: RevocationReason | None) -> CertificateStatus:
        if revoked_at is None:
            return GOOD
        # As in CRL entries (RFC 5280 5.3.1): no reason rather than "unspecified".
        flag = REASON_FLAGS[reason] if reason and reason is not RevocationReason.UNSPECIFIED else None
        return CertificateStatus.revoked(revoked_at, flag)

    @classmethod
    def _statuses(
        cls, session: Session, issuer_id: int, serials: Sequence[str], *, lock: bool = False
    ) -> dict[str, CertificateStatus]:
        """The status of each of `serials` that `issuer_id` issued; unknown ones are
        left out."""
        query = select(
            CertificateRow.serial, CertificateRow.revoked_at, CertificateRow.revocation_reason
        ).where(
            CertificateRow.issuer_id == issuer_id,
            CertificateRow.serial.in_(serials),
            CertificateRow.state == CertificateState.ISSUED,
        )
        if lock:
            query = query.order_by(CertificateRow.serial).with_for_update()
        return {
            serial: cls._status_from(revoked_at, reason)
            for serial, revoked_at, reason in session.execute(query)
        }

    def presign_ocsp(self, issuer: Issuer, serials: Iterable[str]) -> int:
        """Sign and store fresh responses (SHA-1 CertID) for `serials`; returns how many.

        They are signed and stored _PRESIGN_CHUNK at a time; what a chunk stored stays
        stored if a later one fails.
        """
        responder = self.responder(issuer)
        stored = 0
        for chunk in _chunks(serials, _PRESIGN_CHUNK):
            now = self.ca.clock()
            with self.sessions() as session:
                statuses = self._statuses(session, issuer.id, chunk)
            signed: list[tuple[str, CertificateStatus, bytes]] = []
            with signing_context(operation=f"presign-ocsp:{issuer.name}"):
                for serial in chunk:
                    status = statuses.get(serial)
                    if status is None:
                        continue  # nothing to cache: unknown serials are answered live
                    cert_id = responder.cert_id(int(serial, 16), _PRESIGNED_HASH)
                    response = build_ocsp_response(
                        cert_id, responder=responder, status=status, now=now
                    )
                    signed.append((serial, status, response))
            stored += self._store_responses(issuer.id, now, signed)
        return stored

    def _store_responses(
        self,
        issuer_id: int,
        now: dt.datetime,
        signed: Iterable[tuple[str, CertificateStatus, bytes]],
    ) -> int:
        """Store responses whose status is still current, _PRESIGN_CHUNK to a transaction;
        returns how many were stored.

        The certificates' rows are locked (a revocation locks them too) and their status
        read again: a response signed just before a revocation committed must not
        replace the one the revocation signs afterwards.
        """
        next_update = now + self.ocsp_lifetime
        stored = 0
        for chunk in _chunks(signed, _PRESIGN_CHUNK):
            with write_transaction(self.sessions) as session:
                current = self._statuses(
                    session, issuer_id, [serial for serial, _, _ in chunk], lock=True
                )
                fresh = [
                    (serial, der)
                    for serial, status, der in chunk
                    if current.get(serial) == status
                ]
                if not fresh:
                    continue
                session.execute(
                    delete(OcspResponseRow).where(
                        OcspResponseRow.issuer_id == issuer_id,
                        OcspResponseRow.serial.in_([serial for serial, _ in fresh]),
                    )
                )
                session.add_all(
                    OcspResponseRow(
                        issuer_id=issuer_id,
                        serial=serial,
                        produced_at=now,
                        next_update=next_update,
                        der=der,
                    )
                    for serial, der in fresh
                )
            stored += len(fresh)
        return stored

    def _fresh_presigned(
        self, issuer_id: int, serial: str, now: dt.datetime
    ) -> bytes | None:
        """The stored response for `serial` if it is still served as it is."""
        with self._engine.connect() as connection:
            cached = connection.execute(
                _CACHED_RESPONSE, {"issuer_id": issuer_id, "serial": serial}
            ).first()
        if cached is None:
            return None
        der, produced_at, next_update = cached
        return der if _is_fresh(produced_at, next_update, now) else None

    def respond_ocsp(self, request_der: bytes) -> bytes:
        """The DER OCSPResponse for a request: pre-signed when possible, else signed now."""
        try:
            request = parse_ocsp_request(request_der)
        except MalformedOcspRequestError:
            return malformed_request_response()
        cert_id = request.cert_id
        issuer = self._issuer_serving(cert_id)
        if issuer is None:
            return unauthorized_response()
        serial = serial_to_text(cert_id.serial_number)
        now = self.ca.clock()
        if request.nonce is None and cert_id.hash_name == _PRESIGNED_HASH:
            presigned = self._fresh_presigned(issuer.id, serial, now)
            if presigned is not None:
                return presigned
        responder = self.responder(issuer)
        with self.sessions() as session:
            status = self._statuses(session, issuer.id, [serial]).get(serial, UNKNOWN)
        with signing_context(operation=f"sign-ocsp:{issuer.name}"):
            der = build_ocsp_response(
                cert_id, responder=responder, status=status, now=now, nonce=request.nonce
            )
        if request.nonce is None and cert_id.hash_name == _PRESIGNED_HASH and status is not UNKNOWN:
            self._store_responses(issuer.id, now, [(serial, status, der)])
        return der

    def needs_live_signature(self, request_der: bytes) -> bool:
        """Whether answering `request_der` would make the responder sign now.

        Pre-signed answers (SHA-1 CertID, no nonce, a stored response not yet due for
        re-signing) cost a database read; everything else — a nonce, another CertID
        hash, a serial with no stored response such as one never issued, a stored
        response past its refresh margin — is a key-store signature and an audit
        entry, which is what a web front end rate-limits. Malformed requests and
        foreign issuers are answered unsigned, so they need none.
        """
        try:
            request = parse_ocsp_request(request_der)
        except MalformedOcspRequestError:
            return False
        cert_id = request.cert_id
        issuer = self._issuer_serving(cert_id)
        if issuer is None:
            return False
        if request.nonce is not None or cert_id.hash_name != _PRESIGNED_HASH:
            return True
        serial = serial_to_text(cert_id.serial_number)
        return self._fresh_presigned(issuer.id, serial, self.ca.clock()) is None

    def _issuer_serving(self, cert_id: CertId) -> Issuer | None:
        for reload in (False, True):
            for issuer, hashes in self._serving_issuers(reload=reload):
                if hashes.get(cert_id.hash_name) == (
                    cert_id.issuer_name_hash,
                    cert_id.issuer_key_hash,
                ):
                    return issuer
        return None

    def _serving_issuers(
        self, *, reload: bool
    ) -> list[tuple[Issuer, Mapping[str, tuple[bytes, bytes]]]]:
        with self._responders_lock:
            serving = self._serving
            stale = time.monotonic() - self._serving_loaded_at >= _ISSUER_RELOAD_SECONDS
        if serving is not None and not (reload and stale):
            return serving
        serving = [
            (issuer, issuer_cert_id_hashes(issuer.certificate)) for issuer in self.ca.issuers()
        ]
        with self._responders_lock:
            self._serving = serving
            self._serving_loaded_at = time.monotonic()
        return serving

    # -- scheduled work --------------------------------------------------------

    def refresh(self) -> dict[str, int]:
        """Re-sign what is getting old: CRLs past half their life, stale OCSP responses.

        Every CA's CRLs come first, then the OCSP responses, so nothing delays a CRL.
        A CA whose part fails (a missing key, a database error) is logged and counted
        under "failed", which the report has only then; the other CAs' still run.
        """
        now = self.ca.clock()
        report = {"crls": 0, "ocsp": 0}
        failed: set[str] = set()
        issuers = self.ca.issuers()
        for issuer in issuers:
            try:
                if self._crl_due(issuer, now):
                    self.publish_crl(issuer.name)
                    report["crls"] += 1
            except _CA_FAILURES as exc:
                _log.warning(
                    "refresh: the CRLs of %s failed: %s",
                    issuer.name,
                    _describe_failure(exc),
                )
                failed.add(issuer.name)
        for issuer in issuers:
            try:
                for stored in self._presign_stale(issuer, now):
                    report["ocsp"] += stored
            except _CA_FAILURES as exc:
                _log.warning(
                    "refresh: the OCSP responses of %s failed: %s",
                    issuer.name,
                    _describe_failure(exc),
                )
                failed.add(issuer.name)
        if failed:
            report["failed"] = len(failed)
        return report

    def _crl_due(self, issuer: Issuer, now: dt.datetime) -> bool:
        latest = self.latest_crl(issuer.name)
        if latest is None:
            return True
        return now >= latest.this_update + (latest.next_update - latest.this_update) / 2

    def _presign_stale(self, issuer: Issuer, now: dt.datetime) -> Iterator[int]:
        """Pre-sign the responses `issuer`'s certificates lack or that are getting old,
        a chunk at a time; yields how many each chunk stored."""
        try:
            self.responder(issuer)
        except UnknownCaError:
            return  # no responder yet: nothing to pre-sign
        after = ""
        while True:
            with self.sessions() as session:
                serials = session.scalars(
                    select(CertificateRow.serial)
                    .outerjoin(
                        OcspResponseRow,
                        and_(
                            OcspResponseRow.issuer_id == CertificateRow.issuer_id,
                            OcspResponseRow.serial == CertificateRow.serial,
                        ),
                    )
                    .where(
                        CertificateRow.issuer_id == issuer.id,
                        CertificateRow.serial > after,
                        CertificateRow.state == CertificateState.ISSUED,
                        CertificateRow.not_after > now,
                        or_(
                            OcspResponseRow.id.is_(None),
                            OcspResponseRow.next_update
                            < now + self.ocsp_lifetime * _REFRESH_MARGIN,
                        ),
                    )
                    .order_by(CertificateRow.serial)
                    .limit(_PRESIGN_CHUNK)
                ).all()
            if not serials:
                return
            yield self.presign_ocsp(issuer, serials)
            after = serials[-1]
