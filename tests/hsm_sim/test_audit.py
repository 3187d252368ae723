"""The audit log: chaining, signed checkpoints, tamper detection, concurrent appends.

Tampering is done as an attacker with database access would: raw SQL, after dropping
the append-only triggers. Checkpoints are signed by the software HSM (the `soft_token`
fixture of tests/hsm_sim/conftest.py), which audits every signature before making it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text
from sqlalchemy.engine import Engine

from hsm_sim.api import (
    AuditEvent,
    AuditResult,
    HashName,
    KeyAlgorithm,
    KeyStore,
    KeyUsage,
    SignatureMechanism,
    signing_context,
)
from hsm_sim.audit import (
    GENESIS_HASH,
    SqlAuditLog,
    compute_entry_hash,
    verify_audit_log,
)
from hsm_sim.errors import (
    AuditUnavailableError,
    KeyStoreConfigError,
    UsageNotPermittedError,
)
from hsm_sim.storage import utcnow
from portal.db import make_engine, upgrade_database
from tests.helpers.processes import Job, run_together

AUDIT_KEY = "audit-1"
# The `keystore` fixture makes the audit key first: making a key is audited, so that is
# entry 1 of the log, and the entries a test adds start at 2.
AUDIT_KEY_MADE = 1


def _event(n: int = 0, **changes: object) -> AuditEvent:
    event = AuditEvent(
        actor="operator:alice",
        operation="issue-certificate",
        key_label="issuing-ca",
        data_sha256=hashlib.sha256(str(n).encode()).hexdigest(),
        result=AuditResult.GRANTED,
        detail=f"serial {n:04x}",
    )
    return dataclasses.replace(event, **changes)  # type: ignore[arg-type]


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade_database(database_url)
    return database_url


@pytest.fixture
def audit_log(migrated_url: str):  # type: ignore[no-untyped-def]
    log = SqlAuditLog(migrated_url)
    yield log
    log.close()


@pytest.fixture
def keystore(audit_log: SqlAuditLog, soft_token) -> Iterator[KeyStore]:  # type: ignore[no-untyped-def]
    store = soft_token.open(audit_log)
    store.generate_key(AUDIT_KEY, KeyAlgorithm.EC_P256, frozenset({KeyUsage.AUDIT}))
    yield store
    store.close()


@pytest.fixture
def attacker(migrated_url: str):  # type: ignore[no-untyped-def]
    """A plain connection to the database, with the append-only triggers dropped."""
    engine = make_engine(migrated_url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP TRIGGER audit_entry_append_only ON audit_entry"))
            conn.execute(text("DROP TRIGGER audit_checkpoint_append_only ON audit_checkpoint"))
        else:
            for table in ("audit_entry", "audit_checkpoint"):
                for action in ("update", "delete"):
                    conn.execute(text(f"DROP TRIGGER {table}_no_{action}"))
    yield engine
    engine.dispose()


def _fill(log: SqlAuditLog, count: int) -> None:
    for n in range(count):
        log.record(_event(n))


def _sql(engine: Engine, *statements: str, **params: object) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement), params)


# Chaining --------------------------------------------------------------------------


def test_entries_are_numbered_and_chained_from_the_genesis_hash(audit_log: SqlAuditLog):
    _fill(audit_log, 3)
    newest_first = audit_log.recent_entries(10)
    entries = list(reversed(newest_first))
    assert [e.seq for e in entries] == [1, 2, 3]
    assert entries[0].prev_hash == GENESIS_HASH
    assert entries[1].prev_hash == entries[0].entry_hash
    assert entries[2].prev_hash == entries[1].entry_hash
    first = entries[0]
    assert first.at.tzinfo is not None
    assert first.entry_hash == compute_entry_hash(
        seq=1, at=first.at, actor=first.actor, operation=first.operation,
        key_label=first.key_label, data_sha256=first.data_sha256,
        result=first.result.value, detail=first.detail, prev_hash=GENESIS_HASH,
    )
    assert audit_log.entry_count() == 3


def test_a_batch_of_entries_is_chained_like_single_ones(audit_log: SqlAuditLog):
    _fill(audit_log, 2)
    audit_log.record_all([_event(n) for n in range(2, 6)])
    _fill(audit_log, 1)

    entries = list(reversed(audit_log.recent_entries(10)))
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5, 6, 7]
    for before, after in zip(entries, entries[1:]):
        assert after.prev_hash == before.entry_hash
    assert [e.data_sha256 for e in entries[2:6]] == [_event(n).data_sha256 for n in range(2, 6)]
    report = verify_audit_log(audit_log.url, lambda label: None)
    assert report.ok and report.entry_count == 7


def test_a_batch_with_one_bad_event_writes_none_of_it(audit_log: SqlAuditLog):
    _fill(audit_log, 1)
    with pytest.raises(AuditUnavailableError, match="detail"):
        audit_log.record_all([_event(1), _event(2, detail="x" * 5000), _event(3)])
    assert audit_log.entry_count() == 1
    audit_log.record_all([])
    assert audit_log.entry_count() == 1


def test_entry_hash_encoding_keeps_field_boundaries():
    common = dict(
        seq=1, at=utcnow(), key_label="k", data_sha256="0" * 64, result="granted",
        detail="", prev_hash=GENESIS_HASH,
    )
    assert compute_entry_hash(actor="ab", operation="c", **common) != compute_entry_hash(
        actor="a", operation="bc", **common
    )


def test_an_untouched_log_verifies(audit_log: SqlAuditLog, keystore: KeyStore):
    _fill(audit_log, 12)
    audit_log.write_checkpoint(keystore, AUDIT_KEY)
    _fill(audit_log, 5)
    report = verify_audit_log(audit_log.url, keystore)
    assert report.ok, report.reason
    # The audit key's making, 12, the checkpoint's own signature, 5.
    assert report.entry_count == AUDIT_KEY_MADE + 12 + 1 + 5
    assert report.checkpoints_verified == 1
    assert report.first_bad_seq is None


def test_an_empty_log_verifies(migrated_url: str):
    report = verify_audit_log(migrated_url, lambda label: None)
    assert report.ok and report.entry_count == 0


def test_verification_reads_in_chunks(audit_log: SqlAuditLog, keystore: KeyStore,
                                      attacker: Engine):
    _fill(audit_log, 20)
    audit_log.write_checkpoint(keystore, AUDIT_KEY)
    _fill(audit_log, 9)
    assert verify_audit_log(audit_log.url, keystore, chunk_size=7).ok
    _sql(attacker, "UPDATE audit_entry SET detail = 'x' WHERE seq = 15")
    report = verify_audit_log(audit_log.url, keystore, chunk_size=7)
    assert not report.ok and report.first_bad_seq == 15


def test_the_append_only_triggers_refuse_update_and_delete(audit_log: SqlAuditLog,
                                                           migrated_url: str):
    _fill(audit_log, 2)
    engine = make_engine(migrated_url)
    try:
        for statement in ("UPDATE audit_entry SET actor = 'x'", "DELETE FROM audit_entry"):
            with pytest.raises(Exception, match="append-only"):
                _sql(engine, statement)
    finally:
        engine.dispose()
    assert verify_audit_log(migrated_url, lambda label: None).ok


# Tampering -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "column, value",
    [
        ("actor", "operator:mallory"),
        ("key_label", "other-key"),
        ("data_sha256", "f" * 64),
        ("result", "refused"),
        ("detail", ""),
    ],
)
def test_an_edited_field_is_caught(audit_log: SqlAuditLog, attacker: Engine,
                                   column: str, value: str):
    _fill(audit_log, 10)
    _sql(attacker, f"UPDATE audit_entry SET {column} = :value WHERE seq = 4", value=value)
    report = verify_audit_log(audit_log.url, lambda label: None)
    assert not report.ok
    assert report.first_bad_seq == 4
    assert "entry 4 was altered" in report.reason


def test_an_edited_time_is_caught(audit_log: SqlAuditLog, attacker: Engine):
    _fill(audit_log, 6)
    _sql(attacker, "UPDATE audit_entry SET at = :at WHERE seq = 3",
         at=utcnow().replace(year=2001).replace(tzinfo=None))
    report = verify_audit_log(audit_log.url, lambda label: None)
    assert not report.ok and report.first_bad_seq == 3


def test_an_edited_value_the_models_cannot_read_is_reported_not_raised(
    audit_log: SqlAuditLog, attacker: Engine
):
    _fill(audit_log, 4)
    _sql(attacker, "UPDATE audit_entry SET result = 'bogus' WHERE seq = 2")
    report = verify_audit_log(audit_log.url, lambda label: None)
    assert not report.ok and report.first_bad_seq == 2


def test_an_edit_with_its_own_hash_recomputed_breaks_the_next_link(
    audit_log: SqlAuditLog, attacker: Engine
):
    _fill(audit_log, 6)
    victim = next(e for e in audit_log.recent_entries(10) if e.seq == 3)
    forged = compute_entry_hash(
        seq=3, at=victim.at, actor="operator:mallory", operation=victim.operation,
        key_label=victim.key_label, data_sha256=victim.data_sha256,
        result=victim.result.value, detail=victim.detail, prev_hash=victim.prev_hash,
    )
    _sql(attacker, "UPDATE audit_entry SET actor = 'operator:mallory', entry_hash = :h "
         "WHERE seq = 3", h=forged)
    report = verify_audit_log(audit_log.url, lambda label: None)
    assert not report.ok
    assert report.first_bad_seq == 4
    assert "does not link" in report.reason


def test_a_deleted_middle_entry_is_caught(audit_log: SqlAuditLog, attacker: Engine):
    _fill(audit_log, 10)
    _sql(attacker, "DELETE FROM audit_entry WHERE seq = 5")
    report = verify_audit_log(audit_log.url, lambda label: None)
    assert not report.ok
    assert report.first_bad_seq == 5
    assert "entry 5 is missing" in report.reason


def test_swapped_sequence_numbers_are_caught(audit_log: SqlAuditLog, attacker: Engine):
    _fill(audit_log, 10)
    _sql(
        attacker,
        "UPDATE audit_entry SET seq = -1 WHERE seq = 4",
        "UPDATE audit_entry SET seq = 4 WHERE seq = 7",
        "UPDATE audit_entry SET seq = 7 WHERE seq = -1",
    )
    report = verify_audit_log(audit_log.url, lambda label: None)
    assert not report.ok and report.first_bad_seq == 4


def test_swapped_contents_are_caught(audit_log: SqlAuditLog, attacker: Engine):
    _fill(audit_log, 10)
    columns = ("at", "actor", "operation", "key_label", "data_sha256", "result", "detail",
               "prev_hash", "entry_hash")
    with attacker.begin() as conn:
        rows = {
            seq: conn.execute(
                text(f"SELECT {', '.join(columns)} FROM audit_entry WHERE seq = :s"),
                {"s": seq},
            ).one()._asdict()
            for seq in (4, 7)
        }
        for seq, other in ((4, 7), (7, 4)):
            assignments = ", ".join(f"{c} = :{c}" for c in columns)
            conn.execute(
                text(f"UPDATE audit_entry SET {assignments} WHERE seq = :seq"),
                {**rows[other], "seq": seq},
            )
    report = verify_audit_log(audit_log.url, lambda label: None)
    assert not report.ok and report.first_bad_seq == 4


def test_truncation_is_caught_by_the_head_row(audit_log: SqlAuditLog, attacker: Engine):
    _fill(audit_log, 10)
    _sql(attacker, "DELETE FROM audit_entry WHERE seq > 7")
    report = verify_audit_log(audit_log.url, lambda label: None)
    assert not report.ok
    assert report.first_bad_seq == 8
    assert "removed from the end" in report.reason


def test_truncation_with_a_rewound_head_is_caught_by_the_last_checkpoint(
    audit_log: SqlAuditLog, keystore: KeyStore, attacker: Engine
):
    _fill(audit_log, 10)
    audit_log.write_checkpoint(keystore, AUDIT_KEY)  # covers 11; its signature is 12
    _fill(audit_log, 4)
    with attacker.begin() as conn:
        head_hash = conn.execute(
            text("SELECT entry_hash FROM audit_entry WHERE seq = 8")
        ).scalar_one()
        conn.execute(text("DELETE FROM audit_entry WHERE seq > 8"))
        conn.execute(
            text("UPDATE audit_head SET entry_count = 8, head_hash = :h"), {"h": head_hash}
        )
    report = verify_audit_log(audit_log.url, keystore)
    assert not report.ok
    assert report.first_bad_seq == 9
    assert "a signed checkpoint covers 11 entries" in report.reason


def test_a_rewritten_chain_is_caught_by_the_checkpoint(
    audit_log: SqlAuditLog, keystore: KeyStore, attacker: Engine
):
    """Edit entry 3 and recompute every hash after it: only the signature catches that."""
    _fill(audit_log, 6)
    audit_log.write_checkpoint(keystore, AUDIT_KEY)  # covers 7: the key's making and 6
    entries = sorted(audit_log.recent_entries(100), key=lambda e: e.seq)
    running = entries[1].entry_hash
    with attacker.begin() as conn:
        for entry in entries[2:]:
            actor = "operator:mallory" if entry.seq == 3 else entry.actor
            new_hash = compute_entry_hash(
                seq=entry.seq, at=entry.at, actor=actor, operation=entry.operation,
                key_label=entry.key_label, data_sha256=entry.data_sha256,
                result=entry.result.value, detail=entry.detail, prev_hash=running,
            )
            conn.execute(
                text("UPDATE audit_entry SET actor = :a, prev_hash = :p, entry_hash = :h "
                     "WHERE seq = :s"),
                {"a": actor, "p": running, "h": new_hash, "s": entry.seq},
            )
            running = new_hash
        conn.execute(text("UPDATE audit_head SET head_hash = :h"), {"h": running})
    report = verify_audit_log(audit_log.url, keystore)
    assert not report.ok
    assert report.first_bad_seq == AUDIT_KEY_MADE + 6
    assert "does not match the signed checkpoint" in report.reason


def test_a_forged_checkpoint_is_caught(
    audit_log: SqlAuditLog, keystore: KeyStore, attacker: Engine
):
    _fill(audit_log, 5)
    real = audit_log.write_checkpoint(keystore, AUDIT_KEY)
    mallory = ec.generate_private_key(ec.SECP256R1())
    forged_signature = mallory.sign(b"anything", ec.ECDSA(hashes.SHA256()))
    _sql(
        attacker,
        "INSERT INTO audit_checkpoint (entry_count, head_hash, key_label, algorithm, "
        "signature, at) VALUES (:n, :h, :k, :a, :s, :at)",
        n=real.entry_count, h=real.head_hash, k=AUDIT_KEY, a=real.algorithm,
        s=forged_signature, at=real.at.replace(tzinfo=None),
    )
    report = verify_audit_log(audit_log.url, keystore)
    assert not report.ok
    assert "invalid signature" in report.reason


def test_an_altered_checkpoint_is_caught(
    audit_log: SqlAuditLog, keystore: KeyStore, attacker: Engine
):
    _fill(audit_log, 5)
    audit_log.write_checkpoint(keystore, AUDIT_KEY)
    _sql(attacker, "UPDATE audit_checkpoint SET entry_count = 3")
    report = verify_audit_log(audit_log.url, keystore)
    assert not report.ok and "invalid signature" in report.reason


def test_a_checkpoint_by_an_unknown_or_non_audit_key_fails(
    audit_log: SqlAuditLog, keystore: KeyStore, attacker: Engine
):
    _fill(audit_log, 3)
    audit_log.write_checkpoint(keystore, AUDIT_KEY)
    keystore.generate_key("seal-1", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
    _sql(attacker, "UPDATE audit_checkpoint SET key_label = 'seal-1'")
    report = verify_audit_log(audit_log.url, keystore)
    assert not report.ok and "not an audit key" in report.reason
    _sql(attacker, "UPDATE audit_checkpoint SET key_label = 'nobody'")
    report = verify_audit_log(audit_log.url, keystore)
    assert not report.ok and "not known" in report.reason


# Checkpoints -----------------------------------------------------------------------


def test_a_checkpoint_is_signed_by_the_audit_key_and_is_itself_audited(
    audit_log: SqlAuditLog, keystore: KeyStore
):
    _fill(audit_log, 4)
    with signing_context(actor="operator:bob"):
        checkpoint = audit_log.write_checkpoint(keystore, AUDIT_KEY)
    assert checkpoint.entry_count == AUDIT_KEY_MADE + 4
    assert checkpoint.algorithm == "ecdsa-sha256"
    newest = audit_log.recent_entries(1)[0]
    assert (newest.seq, newest.key_label, newest.actor, newest.operation) == (
        AUDIT_KEY_MADE + 5, AUDIT_KEY, "operator:bob", "audit-checkpoint"
    )


def test_a_scheduled_checkpoint_is_written_only_when_entries_are_uncovered(
    audit_log: SqlAuditLog, keystore: KeyStore
):
    _fill(audit_log, 3)
    first = audit_log.checkpoint_if_behind(keystore, AUDIT_KEY)
    assert first is not None and first.entry_count == AUDIT_KEY_MADE + 3
    # Its own signature added one entry: that alone calls for no new checkpoint.
    assert audit_log.checkpoint_if_behind(keystore, AUDIT_KEY) is None
    _fill(audit_log, 1)
    second = audit_log.checkpoint_if_behind(keystore, AUDIT_KEY)
    assert second is not None and second.entry_count == AUDIT_KEY_MADE + 5
    report = verify_audit_log(audit_log.url, keystore.public_key)
    assert report.ok and report.checkpoints_verified == 2


def test_ed25519_audit_keys_sign_checkpoints(audit_log: SqlAuditLog, keystore: KeyStore):
    store = keystore
    store.generate_key("audit-ed", KeyAlgorithm.ED25519, frozenset({KeyUsage.AUDIT}))
    _fill(audit_log, 2)
    assert audit_log.write_checkpoint(store, "audit-ed").algorithm == "ed25519"
    report = verify_audit_log(audit_log.url, store.public_key)
    assert report.ok and report.checkpoints_verified == 1


def test_only_an_audit_key_may_sign_checkpoints(audit_log: SqlAuditLog,
                                                keystore: KeyStore):
    keystore.generate_key("seal-1", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
    with pytest.raises(UsageNotPermittedError, match="not an audit key"):
        audit_log.write_checkpoint(keystore, "seal-1")
    with pytest.raises(UsageNotPermittedError):
        audit_log.attach_checkpoint_signer(keystore, "seal-1")


def test_checkpoints_are_written_automatically_every_1000_entries(
    audit_log: SqlAuditLog, keystore: KeyStore
):
    audit_log.attach_checkpoint_signer(keystore, AUDIT_KEY)
    _fill(audit_log, 999 - AUDIT_KEY_MADE)
    audit_log.wait_for_checkpoints()
    assert verify_audit_log(audit_log.url, keystore).checkpoints_verified == 0
    _fill(audit_log, 1)
    audit_log.wait_for_checkpoints(timeout=30)
    report = verify_audit_log(audit_log.url, keystore)
    assert report.ok, report.reason
    assert report.checkpoints_verified == 1
    assert report.entry_count == 1001  # the checkpoint's own signature is entry 1001


def test_a_batch_passing_the_interval_starts_a_checkpoint(
    audit_log: SqlAuditLog, keystore: KeyStore
):
    audit_log.attach_checkpoint_signer(keystore, AUDIT_KEY, every=10)
    _fill(audit_log, 7)
    audit_log.record_all([_event(n) for n in range(5)])  # entries 9 to 13 pass 10
    audit_log.wait_for_checkpoints(timeout=30)
    report = verify_audit_log(audit_log.url, keystore)
    assert report.ok, report.reason
    assert report.checkpoints_verified == 1


def test_a_checkpoint_entry_landing_on_the_interval_starts_no_other(
    audit_log: SqlAuditLog, keystore: KeyStore
):
    audit_log.attach_checkpoint_signer(keystore, AUDIT_KEY, every=1)
    _fill(audit_log, 3)
    audit_log.wait_for_checkpoints(timeout=30)
    report = verify_audit_log(audit_log.url, keystore)
    assert report.ok, report.reason
    assert report.checkpoints_verified == 3
    assert report.entry_count == AUDIT_KEY_MADE + 6


# With the key store ------------------------------------------------------------------


def test_a_signature_through_a_key_handle_is_audited_with_its_context(
    audit_log: SqlAuditLog, keystore: KeyStore
):
    keystore.generate_key("seal-1", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
    handle = keystore.private_key("seal-1", usage=KeyUsage.SEAL)
    with signing_context(actor="agency-clerk:zhang.wei", operation="stamp-pdf"):
        handle.sign(b"the document", ec.ECDSA(hashes.SHA256()))
    entry, made_seal_key, made_audit_key = audit_log.recent_entries(5)
    assert [(e.operation, e.key_label) for e in (made_audit_key, made_seal_key)] == [
        ("generate-key", AUDIT_KEY), ("generate-key", "seal-1")
    ]
    assert (entry.actor, entry.operation, entry.key_label, entry.result) == (
        "agency-clerk:zhang.wei", "stamp-pdf", "seal-1", AuditResult.GRANTED
    )
    assert entry.data_sha256 == hashlib.sha256(b"the document").hexdigest()


def test_making_and_destroying_a_key_are_chained_entries_like_signatures(
    audit_log: SqlAuditLog, keystore: KeyStore, attacker: Engine
):
    keystore.generate_key("seal-1", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
    with signing_context(actor="operator:wang", operation="revoke-seal:350100000001"):
        keystore.destroy_key("seal-1")
    audit_log.write_checkpoint(keystore, AUDIT_KEY)

    entries = sorted(audit_log.recent_entries(10), key=lambda e: e.seq)
    assert [(e.seq, e.actor, e.operation, e.key_label, e.result) for e in entries] == [
        (1, "system", "generate-key", AUDIT_KEY, AuditResult.GRANTED),
        (2, "system", "generate-key", "seal-1", AuditResult.GRANTED),
        (3, "operator:wang", "destroy-key", "seal-1", AuditResult.GRANTED),
        (4, "system", "audit-checkpoint", AUDIT_KEY, AuditResult.GRANTED),
    ]
    assert [e.detail for e in entries[:3]] == [
        "ec-p256 for audit", "ec-p256 for seal", "(revoke-seal:350100000001)"
    ]
    assert verify_audit_log(audit_log.url, keystore).ok
    # Wiping out the trace of the destruction is caught like any other edit.
    _sql(attacker, "DELETE FROM audit_entry WHERE seq = 3")
    report = verify_audit_log(audit_log.url, keystore)
    assert not report.ok and report.first_bad_seq == 3


def test_the_key_store_refuses_to_sign_when_the_entry_cannot_be_written(
    tmp_path: Path, soft_token  # type: ignore[no-untyped-def]
):
    database = tmp_path / "yinxin.sqlite3"
    upgrade_database(f"sqlite:///{database}")
    log = SqlAuditLog(f"sqlite:///{database}", busy_timeout=0.2)
    store = soft_token.open(log)
    holder = sqlite3.connect(database, isolation_level=None)
    sha256 = SignatureMechanism(HashName.SHA256)
    try:
        store.generate_key("seal-1", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
        holder.execute("BEGIN IMMEDIATE")  # someone forgot to commit before signing
        with pytest.raises(AuditUnavailableError):
            store.sign("seal-1", b"refused", sha256, usage=KeyUsage.SEAL)
        holder.execute("ROLLBACK")
        store.sign("seal-1", b"granted", sha256, usage=KeyUsage.SEAL)
        entry, made = log.recent_entries(5)
        assert (made.operation, made.key_label) == ("generate-key", "seal-1")
        assert entry.data_sha256 == hashlib.sha256(b"granted").hexdigest()
    finally:
        holder.close()
        store.close()
        log.close()


# Failures --------------------------------------------------------------------------


def test_recording_into_an_unmigrated_database_fails_closed(database_url: str):
    log = SqlAuditLog(database_url)
    try:
        with pytest.raises(AuditUnavailableError, match="the operation was refused"):
            log.record(_event())
    finally:
        log.close()


def test_an_unreachable_database_fails_closed_without_showing_the_password():
    log = SqlAuditLog("postgresql://auditor:s3cret-pw@127.0.0.1:1/yinxin", busy_timeout=1)
    try:
        with pytest.raises(AuditUnavailableError) as caught:
            log.record(_event())
    finally:
        log.close()
    assert "s3cret-pw" not in str(caught.value)
    assert "refused" in str(caught.value)


def test_an_open_sqlite_write_transaction_makes_the_append_fail_not_hang(tmp_path: Path):
    """The "commit before you sign" rule: the append waits for the lock, then gives up."""
    url = f"sqlite:///{tmp_path / 'yinxin.sqlite3'}"
    upgrade_database(url)
    log = SqlAuditLog(url, busy_timeout=0.2)
    holder = sqlite3.connect(tmp_path / "yinxin.sqlite3", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(AuditUnavailableError, match="database is locked"):
            log.record(_event())
        holder.execute("ROLLBACK")
        log.record(_event())
        assert log.entry_count() == 1
    finally:
        holder.close()
        log.close()


@pytest.mark.parametrize(
    "changes, complaint",
    [
        ({"actor": "x" * 201}, "actor is longer than 200"),
        ({"detail": "x" * 4001}, "detail is longer than 4000"),
        ({"data_sha256": "ABC"}, "data_sha256"),
        ({"operation": "a\x00b"}, "cannot be stored"),
    ],
)
def test_an_event_that_cannot_be_stored_is_refused(audit_log: SqlAuditLog,
                                                   changes: dict, complaint: str):
    with pytest.raises(AuditUnavailableError, match=complaint):
        audit_log.record(_event(**changes))
    assert audit_log.entry_count() == 0


def test_an_in_memory_sqlite_database_is_refused():
    with pytest.raises(KeyStoreConfigError, match="in-memory"):
        SqlAuditLog("sqlite://")


# Concurrency -----------------------------------------------------------------------


def _append_many(url: str, count: int, worker: int, ready) -> None:  # type: ignore[no-untyped-def]
    log = SqlAuditLog(url, busy_timeout=30)
    ready.wait()  # both processes start appending at the same moment
    try:
        for n in range(count):
            log.record(_event(n, actor=f"worker-{worker}"))
    finally:
        log.close()


def test_two_processes_appending_at_once_never_fork_the_chain(migrated_url: str):
    run_together([Job(_append_many, (migrated_url, 200, w)) for w in (1, 2)])
    report = verify_audit_log(migrated_url, lambda label: None)
    assert report.ok, report.reason
    assert report.entry_count == 400
    log = SqlAuditLog(migrated_url)
    try:
        actors = [e.actor for e in log.recent_entries(400)]
    finally:
        log.close()
    assert actors.count("worker-1") == actors.count("worker-2") == 200
