"""A whole region node for tests: database, soft HSM, audit log, CA hierarchy.

Built with Yinxin's own code (migrations, the key store, the ceremony), so every test
that uses it exercises the real path.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from hsm_sim.audit import SqlAuditLog
from hsm_sim.keystore import AuditedKeyStore
from hsm_sim.soft_token import MIN_SCRYPT_LOG2_N, init_soft_token
from hsm_sim.spec import open_keystore
from pki.ca import CertificateAuthority
from pki.ceremony import CeremonyResult, run_ceremony
from pki.ceremony_config import DEMO_CEREMONY_PATH, load_ceremony_config
from pki.certificates import NodeEndpoints
from pki.ra import RegistrationAuthority
from pki.registry import register_agency
from pki.revocation import RevocationService
from pki.timestamping import TimestampService
from portal.db import make_engine, session_factory, upgrade_database

USER_PIN = "2468-node-user"
SO_PIN = "1357-node-officer"
AGENCY_NAME = "某某市市场监督管理局"
AGENCY_USCC = "91350100M000100Y43"


@dataclasses.dataclass
class Node:
    home: Path
    database_url: str
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


def build_node(
    home: Path,
    *,
    database_url: str | None = None,
    base_url: str = "http://127.0.0.1:8000",
    ceremony: bool = True,
    agency: bool = True,
) -> Node:
    home.mkdir(parents=True, exist_ok=True)
    database_url = database_url or f"sqlite:///{home / 'yinxin.sqlite3'}"
    upgrade_database(database_url)
    engine = make_engine(database_url)
    sessions = session_factory(engine)
    audit = SqlAuditLog(database_url)
    init_soft_token(home / "hsm", user_pin=USER_PIN, so_pin=SO_PIN, scrypt_log2_n=MIN_SCRYPT_LOG2_N)
    keystore = open_keystore(f"soft:{home / 'hsm'}", pin=USER_PIN, audit=audit)
    assert isinstance(keystore, AuditedKeyStore)
    config = load_ceremony_config(DEMO_CEREMONY_PATH)
    ca = CertificateAuthority(keystore=keystore, sessions=sessions, endpoints=NodeEndpoints(base_url))
    ra = RegistrationAuthority(ca=ca, keystore=keystore, sessions=sessions, organization=config.organization)
    result = run_ceremony(config, ca=ca) if ceremony else None
    if agency:
        with sessions.begin() as session:
            register_agency(session, name=AGENCY_NAME, uscc=AGENCY_USCC, region="350100")
    return Node(
        home=home,
        database_url=database_url,
        sessions=sessions,
        audit=audit,
        keystore=keystore,
        ca=ca,
        ra=ra,
        revocation=RevocationService(ca=ca),
        timestamps=TimestampService(ca=ca),
        ceremony=result,
    )
