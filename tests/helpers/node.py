"""A whole region node for tests: database, soft HSM, audit log, CA hierarchy.

Built with Yinxin's own code (migrations, the key store, the ceremony), so every test
that uses it exercises the real path. `open_node` attaches to a node another process
built (the soft token is shared through its file locks; each process logs in with the
PIN), for the multi-process tests.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from hsm_sim.api import AuditResult
from hsm_sim.audit import AuditEntry, AuditReport, SqlAuditLog, verify_audit_log
from hsm_sim.keystore import AuditedKeyStore
from hsm_sim.soft_token import MIN_SCRYPT_LOG2_N, init_soft_token
from hsm_sim.spec import open_keystore
from pki.ca import CertificateAuthority
from pki.ca_models import CertificateRow, CertificateState
from pki.ceremony import CeremonyResult, run_ceremony
from pki.ceremony_config import DEMO_CEREMONY_PATH, CeremonyConfig, load_ceremony_config
from pki.certificates import NodeEndpoints
from pki.profiles import PROFILES, CertificateProfile
from pki.ra import RegistrationAuthority
from pki.registry import register_agency
from pki.revocation import RevocationService
from pki.timestamping import TimestampService
from portal.db import make_engine, session_factory, upgrade_database

USER_PIN = "2468-node-user"
SO_PIN = "1357-node-officer"
AGENCY_NAME = "某某市市场监督管理局"
AGENCY_USCC = "91350100M000100Y43"
LOOPBACK_URL = "http://127.0.0.1:8000"
PUBLIC_URL = "http://pki.example.gov.cn"
# The key store's audit operations for making and destroying a key (hsm_sim/keystore.py).
GENERATE_KEY = "generate-key"
DESTROY_KEY = "destroy-key"
KEY_LIFECYCLE_OPERATIONS = (GENERATE_KEY, DESTROY_KEY)


@dataclasses.dataclass
class Node:
    home: Path
    database_url: str
    engine: Engine
    sessions: sessionmaker[Session]
    audit: SqlAuditLog
    keystore: AuditedKeyStore
    ca: CertificateAuthority
    ra: RegistrationAuthority
    revocation: RevocationService
    timestamps: TimestampService
    ceremony: CeremonyResult | None

    def close(self) -> None:
        self.keystore.close()
        self.audit.close()
        self.engine.dispose()

    def granted_signatures(self, key_label: str | None = None) -> int:
        """How many signatures the audit log granted (to `key_label`, or to any key).

        Making and destroying a key are audited as well, but they are no signature:
        they are not counted here (see `audit_trail` for them).
        """
        query = (
            select(func.count())
            .select_from(AuditEntry)
            .where(
                AuditEntry.result == AuditResult.GRANTED,
                AuditEntry.operation.not_in(KEY_LIFECYCLE_OPERATIONS),
            )
        )
        if key_label is not None:
            query = query.where(AuditEntry.key_label == key_label)
        with self.sessions() as session:
            return session.scalar(query) or 0

    def signing_entries(self, key_label: str) -> list[AuditEntry]:
        """The audit entries of signatures with `key_label`, whatever their result,
        oldest first (its generation and destruction left out)."""
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(AuditEntry)
                    .where(
                        AuditEntry.key_label == key_label,
                        AuditEntry.operation.not_in(KEY_LIFECYCLE_OPERATIONS),
                    )
                    .order_by(AuditEntry.seq)
                )
            )

    def audit_entry_count(self) -> int:
        """Every audit entry: signatures, refusals, and keys made or destroyed."""
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(AuditEntry)) or 0

    def audit_trail(
        self, *, after: int = 0, key_label: str | None = None
    ) -> list[tuple[str, str, AuditResult]]:
        """(operation, key label, result) of the audit entries after entry number
        `after` (an earlier `audit_entry_count()`), for `key_label` or any key, in
        order."""
        query = (
            select(AuditEntry.operation, AuditEntry.key_label, AuditEntry.result)
            .where(AuditEntry.seq > after)
            .order_by(AuditEntry.seq)
        )
        if key_label is not None:
            query = query.where(AuditEntry.key_label == key_label)
        with self.sessions() as session:
            return [tuple(row) for row in session.execute(query)]  # type: ignore[misc]

    def verify_audit(self) -> AuditReport:
        return verify_audit_log(self.database_url, self.keystore)

    def certificate_rows(self) -> list[CertificateRow]:
        with self.sessions() as session:
            return list(
                session.scalars(select(CertificateRow).order_by(CertificateRow.id))
            )

    def issued_count(self) -> int:
        with self.sessions() as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(CertificateRow)
                    .where(CertificateRow.state == CertificateState.ISSUED)
                )
                or 0
            )


def _assemble(
    home: Path,
    database_url: str,
    base_url: str,
    profiles: Mapping[str, CertificateProfile],
    organization: str,
    ceremony: CeremonyResult | None = None,
) -> Node:
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    audit = SqlAuditLog(database_url)
    keystore = open_keystore(f"soft:{home / 'hsm'}", pin=USER_PIN, audit=audit)
    assert isinstance(keystore, AuditedKeyStore)
    ca = CertificateAuthority(
        keystore=keystore,
        sessions=sessions,
        endpoints=NodeEndpoints(base_url),
        profiles=profiles,
    )
    return Node(
        home=home,
        database_url=database_url,
        engine=engine,
        sessions=sessions,
        audit=audit,
        keystore=keystore,
        ca=ca,
        ra=RegistrationAuthority(
            ca=ca, keystore=keystore, sessions=sessions, organization=organization
        ),
        revocation=RevocationService(ca=ca),
        timestamps=TimestampService(ca=ca),
        ceremony=ceremony,
    )


def build_node(
    home: Path,
    *,
    database_url: str | None = None,
    base_url: str = LOOPBACK_URL,
    ceremony: bool = True,
    agency: bool = True,
    profiles: Mapping[str, CertificateProfile] = PROFILES,
    config: CeremonyConfig | None = None,
) -> Node:
    """A new node in `home`: migrated database, fresh soft token, ceremony, one agency."""
    home.mkdir(parents=True, exist_ok=True)
    database_url = database_url or f"sqlite:///{home / 'yinxin.sqlite3'}"
    upgrade_database(database_url)
    init_soft_token(
        home / "hsm", user_pin=USER_PIN, so_pin=SO_PIN, scrypt_log2_n=MIN_SCRYPT_LOG2_N
    )
    config = config or load_ceremony_config(DEMO_CEREMONY_PATH)
    node = _assemble(home, database_url, base_url, profiles, config.organization)
    if ceremony:
        node.ceremony = run_ceremony(config, ca=node.ca)
    if agency:
        with node.sessions.begin() as session:
            register_agency(
                session, name=AGENCY_NAME, uscc=AGENCY_USCC, region="350100"
            )
    return node


def open_node(home: Path, *, database_url: str, base_url: str = LOOPBACK_URL) -> Node:
    """The node `build_node` made in `home`, opened again (from another process)."""
    config = load_ceremony_config(DEMO_CEREMONY_PATH)
    return _assemble(home, database_url, base_url, PROFILES, config.organization)
