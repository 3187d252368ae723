"""The tamper-evident audit log: every key-store operation, hash-chained and checkpointed.

Each entry carries a sequence number and the hash of the entry before it; its own hash
is SHA-256 over a length-prefixed encoding of all its fields, so editing, removing or
reordering an entry breaks the chain. Every `CHECKPOINT_EVERY` entries (once a signer
is attached) the entry count and the head hash are signed by an audit key inside the
key store, so cutting entries off the end, or rewriting the chain after an edit, is
caught against the last signed checkpoint.

`SqlAuditLog.record()` commits each entry in its own short transaction before it
returns, because the key store signs only after the entry is written. Appends from
several processes are serialised on the single `audit_head` row: PostgreSQL locks it
with SELECT ... FOR UPDATE, SQLite takes the database write lock up front with
BEGIN IMMEDIATE, so the chain never forks and no sequence number is used twice.

Commit before you sign. On SQLite the audit log writes on its own connection and needs
the database write lock. A caller that holds an open write transaction on the same
database file while it asks the key store to sign makes the append wait for its own
lock; after the busy timeout (5 s) the append fails with AuditUnavailableError and the
signature is refused. Read, commit (or roll back), sign, then store the result in a new
transaction. PostgreSQL does not have this limit, but code written this way runs on both.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    insert,
    select,
    type_coerce,
    update,
)
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from hsm_sim.api import (
    AuditEvent,
    AuditResult,
    HashName,
    KeyAlgorithm,
    KeyStore,
    KeyUsage,
    RsaPadding,
    SignatureMechanism,
    signing_context,
)
from hsm_sim.errors import (
    AuditUnavailableError,
    HsmError,
    KeyStoreConfigError,
    UsageNotPermittedError,
)
from hsm_sim.storage import Base, enum_by_value, utcnow

__all__ = [
    "CHECKPOINT_EVERY",
    "GENESIS_HASH",
    "AuditEntry",
    "AuditHead",
    "AuditCheckpoint",
    "AuditEntryRecord",
    "CheckpointRecord",
    "AuditReport",
    "SqlAuditLog",
    "compute_entry_hash",
    "verify_audit_log",
]

_log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 1000
GENESIS_HASH = "0" * 64
BUSY_TIMEOUT_SECONDS = 5.0
MAX_NAME_LENGTH = 200  # actor, operation and key label
MAX_DETAIL_LENGTH = 4000
_VERIFY_CHUNK = 5000
_HEAD_ID = 1
_ENTRY_DOMAIN = "yinxin-audit-entry-v1"
_CHECKPOINT_DOMAIN = "yinxin-audit-checkpoint-v1"

# An INTEGER PRIMARY KEY is SQLite's rowid itself; a BIGINT one would be a second index.
_SEQUENCE_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class AuditEntry(Base):
    """One key-store operation. Rows are only ever inserted."""

    __tablename__ = "audit_entry"

    seq: Mapped[int] = mapped_column(_SEQUENCE_TYPE, primary_key=True, autoincrement=False)
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    operation: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    key_label: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    data_sha256: Mapped[str] = mapped_column(String(64))
    result: Mapped[AuditResult] = mapped_column(enum_by_value(AuditResult, 16))
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The newest entry's number and hash: the row appends lock, one row only."""

    __tablename__ = "audit_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    entry_count: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """A signature by an audit key over (entry count, head hash) at one moment."""

    __tablename__ = "audit_checkpoint"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_count: Mapped[int] = mapped_column(BigInteger, index=True)
    head_hash: Mapped[str] = mapped_column(String(64))
    key_label: Mapped[str] = mapped_column(String(MAX_NAME_LENGTH))
    algorithm: Mapped[str] = mapped_column(String(32))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    at: Mapped[dt.datetime]


_entries = AuditEntry.__table__
_head = AuditHead.__table__
_checkpoints = AuditCheckpoint.__table__


@dataclasses.dataclass(frozen=True)
class AuditEntryRecord:
    seq: int
    at: dt.datetime
    actor: str
    operation: str
    key_label: str
    data_sha256: str
    result: AuditResult
    detail: str
    prev_hash: str
    entry_hash: str


@dataclasses.dataclass(frozen=True)
class CheckpointRecord:
    entry_count: int
    head_hash: str
    key_label: str
    algorithm: str
    signature: bytes
    at: dt.datetime


@dataclasses.dataclass(frozen=True)
class AuditReport:
    """The verdict of `verify_audit_log`: ok, or the first problem found and where."""

    ok: bool
    entry_count: int
    checkpoints_verified: int
    first_bad_seq: int | None = None
    reason: str = ""


# Checkpoint signatures: the mechanism used for each kind of audit key, under a name
# stored with the checkpoint so the verifier knows what to check.
_CHECKPOINT_MECHANISMS: dict[KeyAlgorithm, tuple[str, SignatureMechanism]] = {
    KeyAlgorithm.EC_P256: ("ecdsa-sha256", SignatureMechanism(HashName.SHA256)),
    KeyAlgorithm.EC_P384: ("ecdsa-sha384", SignatureMechanism(HashName.SHA384)),
    KeyAlgorithm.ED25519: ("ed25519", SignatureMechanism(None)),
    KeyAlgorithm.RSA_2048: (
        "rsa-pss-sha256",
        SignatureMechanism(HashName.SHA256, RsaPadding.PSS),
    ),
    KeyAlgorithm.RSA_3072: (
        "rsa-pss-sha256",
        SignatureMechanism(HashName.SHA256, RsaPadding.PSS),
    ),
}


def _encode_fields(domain: str, fields: Sequence[str]) -> bytes:
    """Each field as a 4-byte big-endian length and its UTF-8 bytes: no two field lists
    encode alike, whatever characters they hold."""
    out = bytearray()
    for text in (domain, *fields):
        raw = text.encode("utf-8")
        out += len(raw).to_bytes(4, "big")
        out += raw
    return bytes(out)


def _format_time(at: dt.datetime) -> str:
    return at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def compute_entry_hash(
    *,
    seq: int,
    at: dt.datetime,
    actor: str,
    operation: str,
    key_label: str,
    data_sha256: str,
    result: str,
    detail: str,
    prev_hash: str,
) -> str:
    """Hex SHA-256 of one entry's fields (`result` by its stored value)."""
    encoded = _encode_fields(
        _ENTRY_DOMAIN,
        (str(seq), _format_time(at), actor, operation, key_label, data_sha256, result,
         detail, prev_hash),
    )
    return hashlib.sha256(encoded).hexdigest()


def _checkpoint_message(
    entry_count: int, head_hash: str, key_label: str, algorithm: str, at: dt.datetime
) -> bytes:
    return _encode_fields(
        _CHECKPOINT_DOMAIN,
        (str(entry_count), head_hash, key_label, algorithm, _format_time(at)),
    )


def _normalize_url(database: str | URL) -> URL:
    try:
        url = make_url(database)
    except ArgumentError:
        raise KeyStoreConfigError("the audit log's database URL cannot be parsed") from None
    if url.drivername in {"postgresql", "postgres"}:
        url = url.set(drivername="postgresql+psycopg")
    return url


def _create_engine(url: URL, busy_timeout: float) -> Engine:
    """An engine whose transactions may append: SQLite ones start with BEGIN IMMEDIATE."""
    backend = url.get_backend_name()
    if backend == "postgresql":
        timeout_ms = int(busy_timeout * 1000)
        return create_engine(
            url,
            pool_pre_ping=True,
            hide_parameters=True,  # actors and details stay out of error texts
            connect_args={
                "connect_timeout": max(1, round(busy_timeout)),
                "options": f"-c lock_timeout={timeout_ms}",
            },
        )
    if backend != "sqlite":
        raise KeyStoreConfigError(
            f"the audit log runs on SQLite or PostgreSQL, not {backend}"
        )
    if url.database in (None, "", ":memory:"):
        raise KeyStoreConfigError(
            "the audit log needs an SQLite database file: an in-memory database "
            "cannot be shared with the connection the audit log opens"
        )
    engine = create_engine(url, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # The driver must not open transactions on its own: "begin" below does it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # FULL: a committed entry survives power loss, as the signature after it may.
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _describe_failure(exc: BaseException, url: URL) -> str:
    """One line about a database failure, with no password in it."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    line = lines[0] if lines else type(original).__name__
    if url.password:
        line = line.replace(str(url.password), "***")
    return line


_select_head = select(_head.c.entry_count, _head.c.head_hash).where(
    _head.c.id == _HEAD_ID
)
_lock_head = _select_head.with_for_update()
_insert_entry = insert(_entries)
_update_head = update(_head).where(_head.c.id == _HEAD_ID)


class SqlAuditLog:
    """The audit log in the Yinxin database (tables made by the migrations)."""

    def __init__(
        self, database: str | URL | Engine, *, busy_timeout: float = BUSY_TIMEOUT_SECONDS
    ) -> None:
        url = database.url if isinstance(database, Engine) else _normalize_url(database)
        self._url = url
        self._engine = _create_engine(url, busy_timeout)
        self._checkpoint_signer: tuple[KeyStore, str] | None = None
        self._checkpoint_every = CHECKPOINT_EVERY
        self._checkpoint_threads: list[threading.Thread] = []
        self._threads_lock = threading.Lock()
        self._in_checkpoint_thread = threading.local()

    @property
    def url(self) -> URL:
        return self._url

    def record(self, event: AuditEvent) -> None:
        """Append `event` and commit; AuditUnavailableError if it cannot be written."""
        self.record_all((event,))

    def record_all(self, events: Sequence[AuditEvent]) -> None:
        """Append `events` in order in one transaction: all of them or none.

        A batch signature writes one entry per item this way, for the cost of one
        commit rather than one each.
        """
        for event in events:
            _check_event(event)
        if not events:
            return
        try:
            with self._engine.begin() as conn:
                head = conn.execute(_lock_head).one_or_none()
                if head is None:
                    raise AuditUnavailableError(
                        "the audit log is not initialised (run the database migrations); "
                        "the operation was refused"
                    )
                first = head.entry_count + 1
                prev_hash = head.head_hash
                rows = []
                at = utcnow()
                for seq, event in enumerate(events, start=first):
                    entry_hash = compute_entry_hash(
                        seq=seq,
                        at=at,
                        actor=event.actor,
                        operation=event.operation,
                        key_label=event.key_label,
                        data_sha256=event.data_sha256,
                        result=event.result.value,
                        detail=event.detail,
                        prev_hash=prev_hash,
                    )
                    rows.append(
                        {
                            "seq": seq,
                            "at": at,
                            "actor": event.actor,
                            "operation": event.operation,
                            "key_label": event.key_label,
                            "data_sha256": event.data_sha256,
                            "result": event.result,
                            "detail": event.detail,
                            "prev_hash": prev_hash,
                            "entry_hash": entry_hash,
                        }
                    )
                    prev_hash = entry_hash
                conn.execute(_insert_entry, rows)
                last = first + len(rows) - 1
                conn.execute(_update_head, {"entry_count": last, "head_hash": prev_hash})
        except (SQLAlchemyError, OSError) as exc:
            raise AuditUnavailableError(
                f"the audit log could not be written ({_describe_failure(exc, self._url)}); "
                "the operation was refused"
            ) from exc
        if (
            self._checkpoint_signer is not None
            # A multiple of the interval was reached somewhere in this append.
            and last // self._checkpoint_every > (first - 1) // self._checkpoint_every
            # The checkpoint's own signature is audited; it must not start another.
            and not getattr(self._in_checkpoint_thread, "active", False)
        ):
            self._start_automatic_checkpoint()

    def attach_checkpoint_signer(
        self, keystore: KeyStore, key_label: str, *, every: int = CHECKPOINT_EVERY
    ) -> None:
        """Sign a checkpoint with `key_label` (an audit key) after every `every` entries."""
        if every < 1:
            raise ValueError("checkpoints are written every 1 or more entries")
        _require_audit_key(keystore, key_label)
        self._checkpoint_every = every
        self._checkpoint_signer = (keystore, key_label)

    def write_checkpoint(self, keystore: KeyStore, key_label: str) -> CheckpointRecord:
        """Sign the current entry count and head hash with the audit key `key_label`.

        The signature is itself audited: its entry comes after the ones it covers.
        """
        info = _require_audit_key(keystore, key_label)
        algorithm, mechanism = _CHECKPOINT_MECHANISMS[info.algorithm]
        entry_count, head_hash = self._read_head()
        at = utcnow()
        message = _checkpoint_message(entry_count, head_hash, key_label, algorithm, at)
        with signing_context(operation="audit-checkpoint"):
            signature = keystore.sign(key_label, message, mechanism, usage=KeyUsage.AUDIT)
        checkpoint = CheckpointRecord(
            entry_count=entry_count,
            head_hash=head_hash,
            key_label=key_label,
            algorithm=algorithm,
            signature=signature,
            at=at,
        )
        try:
            with self._engine.begin() as conn:
                conn.execute(insert(_checkpoints), dataclasses.asdict(checkpoint))
        except (SQLAlchemyError, OSError) as exc:
            raise AuditUnavailableError(
                "the audit checkpoint could not be stored "
                f"({_describe_failure(exc, self._url)})"
            ) from exc
        return checkpoint

    def checkpoint_if_behind(
        self, keystore: KeyStore, key_label: str
    ) -> CheckpointRecord | None:
        """Sign a checkpoint if entries were added since the last one, else nothing.

        Called on a schedule, so that the newest entries are covered within minutes
        rather than only every CHECKPOINT_EVERY entries. A checkpoint's own signature
        adds one entry; that one alone does not call for another checkpoint.
        """
        covered = self._last_checkpoint_count()
        if covered is not None and self.entry_count() <= covered + 1:
            return None
        return self.write_checkpoint(keystore, key_label)

    def _last_checkpoint_count(self) -> int | None:
        query = select(_checkpoints.c.entry_count).order_by(
            _checkpoints.c.entry_count.desc()
        ).limit(1)
        try:
            with self._engine.connect() as conn:
                return conn.execute(query).scalar()
        except (SQLAlchemyError, OSError) as exc:
            raise AuditUnavailableError(
                f"the audit log could not be read ({_describe_failure(exc, self._url)})"
            ) from exc

    def wait_for_checkpoints(self, timeout: float | None = None) -> None:
        """Wait until the automatic checkpoints started so far are written."""
        with self._threads_lock:
            threads = list(self._checkpoint_threads)
        for thread in threads:
            thread.join(timeout)

    def entry_count(self) -> int:
        return self._read_head()[0]

    def recent_entries(self, limit: int = 20) -> list[AuditEntryRecord]:
        """The newest `limit` entries, newest first."""
        query = select(_entries).order_by(_entries.c.seq.desc()).limit(limit)
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
        except (SQLAlchemyError, OSError) as exc:
            raise AuditUnavailableError(
                f"the audit log could not be read ({_describe_failure(exc, self._url)})"
            ) from exc
        return [AuditEntryRecord(**row._asdict()) for row in rows]

    def close(self) -> None:
        """Finish pending checkpoints, then release the connections."""
        self.wait_for_checkpoints()
        self._engine.dispose()

    def _read_head(self) -> tuple[int, str]:
        try:
            with self._engine.begin() as conn:
                head = conn.execute(_select_head).one_or_none()
        except (SQLAlchemyError, OSError) as exc:
            raise AuditUnavailableError(
                f"the audit log could not be read ({_describe_failure(exc, self._url)})"
            ) from exc
        if head is None:
            raise AuditUnavailableError(
                "the audit log is not initialised (run the database migrations)"
            )
        return head.entry_count, head.head_hash

    def _start_automatic_checkpoint(self) -> None:
        # A thread, because record() runs inside the key store's sign(): signing the
        # checkpoint from here would re-enter the key store (and any lock it holds).
        thread = threading.Thread(
            target=self._write_automatic_checkpoint, name="yinxin-audit-checkpoint"
        )
        with self._threads_lock:
            self._checkpoint_threads = [
                t for t in self._checkpoint_threads if t.is_alive()
            ]
            self._checkpoint_threads.append(thread)
        thread.start()

    def _write_automatic_checkpoint(self) -> None:
        signer = self._checkpoint_signer
        if signer is None:
            return
        keystore, key_label = signer
        self._in_checkpoint_thread.active = True
        try:
            with signing_context(actor="audit-log"):
                self.write_checkpoint(keystore, key_label)
        except (HsmError, SQLAlchemyError, OSError):
            _log.exception("the automatic audit checkpoint could not be written")


def _check_event(event: AuditEvent) -> None:
    """Refuse, before writing, an event that the database would refuse or mangle."""
    for name in ("actor", "operation", "key_label"):
        value = getattr(event, name)
        if len(value) > MAX_NAME_LENGTH:
            raise AuditUnavailableError(
                f"the audit entry's {name} is longer than {MAX_NAME_LENGTH} characters; "
                "the operation was refused"
            )
    if len(event.detail) > MAX_DETAIL_LENGTH:
        raise AuditUnavailableError(
            f"the audit entry's detail is longer than {MAX_DETAIL_LENGTH} characters; "
            "the operation was refused"
        )
    digest = event.data_sha256
    if len(digest) != 64 or digest.strip("0123456789abcdef"):
        raise AuditUnavailableError(
            "the audit entry's data_sha256 is not 64 lowercase hex digits; "
            "the operation was refused"
        )
    for name in ("actor", "operation", "key_label", "detail"):
        value = getattr(event, name)
        if "\x00" in value or _has_surrogate(value):
            raise AuditUnavailableError(
                f"the audit entry's {name} holds characters that cannot be stored; "
                "the operation was refused"
            )


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)


def _require_audit_key(keystore: KeyStore, key_label: str):  # -> KeyInfo
    info = keystore.key_info(key_label)
    if KeyUsage.AUDIT not in info.usages:
        raise UsageNotPermittedError(
            f"key {key_label!r} is not an audit key; checkpoints need one made for usage "
            f"{KeyUsage.AUDIT.value!r}"
        )
    if info.algorithm not in _CHECKPOINT_MECHANISMS:
        raise KeyStoreConfigError(
            f"audit key {key_label!r} has algorithm {info.algorithm.value}, which "
            "checkpoints do not use"
        )
    return info


# Verification ----------------------------------------------------------------------


class _Tampered(Exception):
    def __init__(self, seq: int | None, reason: str) -> None:
        super().__init__(reason)
        self.seq = seq
        self.reason = reason


PublicKeySource = KeyStore | Callable[[str], PublicKeyTypes]


def verify_audit_log(
    database: str | URL | Engine,
    public_keys: PublicKeySource,
    *,
    chunk_size: int = _VERIFY_CHUNK,
) -> AuditReport:
    """Check every entry, the chain, the head and every signed checkpoint.

    `public_keys` is the key store holding the audit keys (their usage is checked too)
    or a function giving the public key for a label. Entries are read `chunk_size` at a
    time, so memory stays bounded however long the log is. Raises AuditUnavailableError
    only if the log cannot be read; anything wrong in its content is in the report.
    """
    if isinstance(database, Engine):
        engine, owned = database, False
    else:
        engine = create_engine(_normalize_url(database), hide_parameters=True)
        owned = True
    try:
        return _verify(engine, public_keys, chunk_size)
    except (SQLAlchemyError, OSError) as exc:
        raise AuditUnavailableError(
            f"the audit log could not be read ({_describe_failure(exc, engine.url)})"
        ) from exc
    finally:
        if owned:
            engine.dispose()


def _verify(engine: Engine, public_keys: PublicKeySource, chunk_size: int) -> AuditReport:
    with engine.connect() as conn:
        head = conn.execute(
            select(_head.c.entry_count, _head.c.head_hash).where(_head.c.id == _HEAD_ID)
        ).one_or_none()
        checkpoint_rows = conn.execute(
            select(
                _checkpoints.c.entry_count,
                _checkpoints.c.head_hash,
                _checkpoints.c.key_label,
                _checkpoints.c.algorithm,
                _checkpoints.c.signature,
                type_coerce(_checkpoints.c.at, String).label("at"),
            ).order_by(_checkpoints.c.entry_count, _checkpoints.c.id)
        ).all()
    if head is None:
        return AuditReport(False, 0, 0, None, "the audit log head row is missing")
    head_count, head_hash = head.entry_count, head.head_hash

    checkpoints: dict[int, list[str]] = {}
    key_cache: dict[str, PublicKeyTypes] = {}
    for row in checkpoint_rows:
        problem = _check_checkpoint_signature(row, public_keys, key_cache)
        if problem:
            return AuditReport(False, 0, 0, None, problem)
        checkpoints.setdefault(row.entry_count, []).append(row.head_hash)
    verified = len(checkpoint_rows)
    # Checkpoints written after the head was read may cover entries past it.
    limit = max([head_count, *checkpoints])

    seq, running_hash = 0, GENESIS_HASH
    try:
        _match_head(head_count, head_hash, 0, GENESIS_HASH)
        _match_checkpoints(checkpoints, 0, GENESIS_HASH)
        for row in _stream_entries(engine, limit, chunk_size):
            if row.seq != seq + 1:
                raise _Tampered(
                    seq + 1,
                    f"entry {seq + 1} is missing (the next entry is {row.seq})"
                    if row.seq > seq + 1
                    else f"entry {row.seq} appears out of order after entry {seq}",
                )
            seq = row.seq
            if row.prev_hash != running_hash:
                raise _Tampered(seq, f"entry {seq} does not link to entry {seq - 1}")
            recomputed = _recompute_hash(row)
            if recomputed is None or recomputed != row.entry_hash:
                raise _Tampered(
                    seq, f"entry {seq} was altered: its hash does not match its contents"
                )
            running_hash = row.entry_hash
            _match_head(head_count, head_hash, seq, running_hash)
            _match_checkpoints(checkpoints, seq, running_hash)
    except _Tampered as problem:
        return AuditReport(False, seq, verified, problem.seq, problem.reason)

    if checkpoints and seq < max(checkpoints):
        return AuditReport(
            False,
            seq,
            verified,
            seq + 1,
            f"the log ends at entry {seq} but a signed checkpoint covers "
            f"{max(checkpoints)} entries: entries were removed from the end",
        )
    if seq < head_count:
        return AuditReport(
            False,
            seq,
            verified,
            seq + 1,
            f"the log ends at entry {seq} but its head records {head_count} entries: "
            "entries were removed from the end",
        )
    return AuditReport(True, seq, verified)


def _stream_entries(engine: Engine, limit: int, chunk_size: int) -> Iterator:
    columns = [
        _entries.c.seq,
        # Raw stored values: a tampered value must show up as a bad hash, not a crash.
        type_coerce(_entries.c.at, String).label("at"),
        _entries.c.actor,
        _entries.c.operation,
        _entries.c.key_label,
        _entries.c.data_sha256,
        type_coerce(_entries.c.result, String).label("result"),
        _entries.c.detail,
        _entries.c.prev_hash,
        _entries.c.entry_hash,
    ]
    after = 0
    while True:
        query = (
            select(*columns)
            .where(_entries.c.seq > after, _entries.c.seq <= limit)
            .order_by(_entries.c.seq)
            .limit(chunk_size)
        )
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        yield from rows
        if len(rows) < chunk_size:
            return
        after = rows[-1].seq


def _stored_time(value: object) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment


def _recompute_hash(row) -> str | None:  # type: ignore[no-untyped-def]
    at = _stored_time(row.at)
    if at is None:
        return None
    try:
        return compute_entry_hash(
            seq=row.seq,
            at=at,
            actor=row.actor,
            operation=row.operation,
            key_label=row.key_label,
            data_sha256=row.data_sha256,
            result=row.result,
            detail=row.detail,
            prev_hash=row.prev_hash,
        )
    except (TypeError, AttributeError, UnicodeEncodeError):
        return None


def _match_head(head_count: int, head_hash: str, seq: int, running_hash: str) -> None:
    if seq == head_count and running_hash != head_hash:
        raise _Tampered(seq, f"entry {seq} does not match the log head")


def _match_checkpoints(checkpoints: dict[int, list[str]], seq: int, running_hash: str) -> None:
    for signed_hash in checkpoints.get(seq, ()):
        if signed_hash != running_hash:
            raise _Tampered(
                seq,
                f"the chain at entry {seq} does not match the signed checkpoint "
                "there: entries up to it were rewritten",
            )


def _check_checkpoint_signature(
    row,  # type: ignore[no-untyped-def]
    public_keys: PublicKeySource,
    key_cache: dict[str, PublicKeyTypes],
) -> str:
    """Why the checkpoint's signature does not hold, or "" if it does."""
    where = f"the checkpoint at entry {row.entry_count}"
    public_key = key_cache.get(row.key_label)
    if public_key is None:
        try:
            if isinstance(public_keys, KeyStore):
                if KeyUsage.AUDIT not in public_keys.key_info(row.key_label).usages:
                    return f"{where} was signed with {row.key_label!r}, not an audit key"
                public_key = public_keys.public_key(row.key_label)
            else:
                public_key = public_keys(row.key_label)
        except (HsmError, LookupError):
            return f"{where} names audit key {row.key_label!r}, which is not known"
        key_cache[row.key_label] = public_key
    at = _stored_time(row.at)
    if at is None:
        return f"{where} has an unreadable time (altered)"
    message = _checkpoint_message(
        row.entry_count, row.head_hash, row.key_label, row.algorithm, at
    )
    try:
        _verify_signature(public_key, row.algorithm, row.signature, message)
    except (InvalidSignature, ValueError):
        return f"{where} has an invalid signature (forged or altered)"
    return ""


def _verify_signature(
    public_key: PublicKeyTypes, algorithm: str, signature: bytes, message: bytes
) -> None:
    """InvalidSignature unless `signature` is `algorithm` over `message` by `public_key`."""
    if isinstance(public_key, ec.EllipticCurvePublicKey) and algorithm in {
        "ecdsa-sha256",
        "ecdsa-sha384",
    }:
        digest = hashes.SHA256() if algorithm == "ecdsa-sha256" else hashes.SHA384()
        public_key.verify(signature, message, ec.ECDSA(digest))
    elif isinstance(public_key, ed25519.Ed25519PublicKey) and algorithm == "ed25519":
        public_key.verify(signature, message)
    elif isinstance(public_key, rsa.RSAPublicKey) and algorithm == "rsa-pss-sha256":
        public_key.verify(
            signature,
            message,
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
            hashes.SHA256(),
        )
    else:
        raise InvalidSignature

