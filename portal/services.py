"""The composition root: the parts one process uses, built once from the settings.

The web app builds one `Services` per worker process; each CLI command builds its own.
The key store is opened on first use, so a process that never signs never needs the PIN:
the certificate authority holds a key store that opens the real one when it first
signs, so CA certificates and CRLs are served even while the token is locked.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from sqlalchemy.orm import Session, sessionmaker

from hsm_sim.api import (
    KeyAlgorithm,
    KeyInfo,
    KeyStore,
    KeyUsage,
    SignatureMechanism,
)
from hsm_sim.audit import SqlAuditLog
from hsm_sim.errors import ErrorCategory, HsmError, KeyNotFoundError
from hsm_sim.spec import open_keystore
from pki.ca import CertificateAuthority
from pki.ceremony_config import CeremonyConfig, load_ceremony_config
from pki.profiles import PROFILES, CertificateProfile
from pki.ra import RegistrationAuthority
from pki.revocation import RevocationService
from pki.timestamping import TimestampService
from portal.config import Settings
from portal.db import check_database, make_engine, session_factory
from portal.errors import NoHierarchyError

__all__ = [
    "KeyStoreOnFirstUse",
    "Services",
    "build_certificate_authority",
    "build_revocation_service",
    "profiles_for",
    "publish_current_deltas",
]

T = TypeVar("T")

logger = logging.getLogger(__name__)

# A wrong PIN or a locked token is not retried on the next use: retrying on every
# health probe would count towards the token's lockout.
_STICKY_CATEGORIES = frozenset({ErrorCategory.UNAUTHORIZED, ErrorCategory.LOCKED})


class Services:
    """Database engine, session factory, audit log and (lazily) the key store."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.database_url)
        self.sessions = session_factory(self.engine)
        self.audit_log = SqlAuditLog(self.engine)
        self._keystore: KeyStore | None = None
        self._keystore_error: HsmError | None = None
        self._lock = threading.Lock()
        self._parts: dict[str, Any] = {}
        self._parts_lock = threading.RLock()

    def check_database(self) -> None:
        """Raise DatabaseUnavailableError unless the database answers."""
        check_database(self.engine)

    def keystore(self) -> KeyStore:
        """The instance's key store, opened on first use with the configured PIN.

        Once open, the region's audit key signs a checkpoint of the audit log every
        CHECKPOINT_EVERY entries.
        """
        with self._lock:
            if self._keystore is not None:
                return self._keystore
            if self._keystore_error is not None:
                raise self._keystore_error
            try:
                keystore = open_keystore(
                    self.settings.hsm, pin=self.settings.hsm_pin, audit=self.audit_log
                )
            except HsmError as exc:
                if exc.category in _STICKY_CATEGORIES:
                    self._keystore_error = exc
                raise
            try:
                self.audit_log.attach_checkpoint_signer(
                    keystore, self.settings.audit_key_label
                )
            except KeyNotFoundError:
                logger.warning(
                    "the audit key %r is not in the token: no automatic audit checkpoints",
                    self.settings.audit_key_label,
                )
            self._keystore = keystore
            return keystore

    # -- the certificate authority, built once per process ---------------------------

    def _part(self, name: str, build: Callable[[], T]) -> T:
        with self._parts_lock:
            if name not in self._parts:
                self._parts[name] = build()
            part: T = self._parts[name]
            return part

    def ceremony_config(self) -> CeremonyConfig | None:
        """The ceremony the CA hierarchy was built from (the instance's copy), if any."""

        def load() -> CeremonyConfig | None:
            path = self.settings.ceremony_file
            return load_ceremony_config(path) if path.is_file() else None

        return self._part("ceremony_config", load)

    def certificate_authority(self) -> CertificateAuthority:
        return self._part(
            "ca",
            lambda: build_certificate_authority(
                keystore=KeyStoreOnFirstUse(self.keystore),
                sessions=self.sessions,
                settings=self.settings,
                config=self.ceremony_config(),
            ),
        )

    def registration_authority(self) -> RegistrationAuthority:
        def build() -> RegistrationAuthority:
            config = self.ceremony_config()
            if config is None:
                raise NoHierarchyError(
                    "this node has no CA hierarchy yet; run: yinxin ca ceremony "
                    "--config FILE"
                )
            ca = self.certificate_authority()
            return RegistrationAuthority(
                ca=ca,
                keystore=ca.keystore,
                sessions=self.sessions,
                organization=config.organization,
            )

        return self._part("ra", build)

    def revocation(self) -> RevocationService:
        return self._part(
            "revocation",
            lambda: build_revocation_service(
                self.certificate_authority(), self.ceremony_config()
            ),
        )

    def refresh_revocation(self) -> dict[str, int]:
        """The scheduled work: re-sign stale CRLs and OCSP responses, then give every
        new full CRL its delta (see publish_current_deltas)."""
        revocation = self.revocation()
        report = dict(revocation.refresh())
        report["deltas"] = publish_current_deltas(revocation)
        return report

    def timestamps(self) -> TimestampService:
        return self._part(
            "timestamps", lambda: TimestampService(ca=self.certificate_authority())
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed when the block succeeds, rolled back when it raises."""
        with self.sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        """Close the key store (after pending audit checkpoints), then the database."""
        self.audit_log.wait_for_checkpoints()
        with self._lock:
            if self._keystore is not None:
                self._keystore.close()
                self._keystore = None
        self.audit_log.close()
        self.engine.dispose()


def profiles_for(config: CeremonyConfig | None) -> dict[str, CertificateProfile]:
    """The certificate profiles with the lifetimes the ceremony file sets."""
    profiles = dict(PROFILES)
    if config is not None:
        for name, lifetime in config.profile_lifetimes.items():
            profiles[name] = profiles[name].with_validity(
                lifetime.default_days, lifetime.max_days
            )
    return profiles


def build_certificate_authority(
    *,
    keystore: KeyStore,
    sessions: sessionmaker[Session],
    settings: Settings,
    config: CeremonyConfig | None,
) -> CertificateAuthority:
    """The CA of this node: its public URLs, and its profiles as the ceremony set them."""
    return CertificateAuthority(
        keystore=keystore,
        sessions=sessions,
        endpoints=settings.endpoints,
        profiles=profiles_for(config),
    )


def build_revocation_service(
    ca: CertificateAuthority, config: CeremonyConfig | None
) -> RevocationService:
    """Revocation with the CRL and OCSP lifetimes of the ceremony file (pki's defaults
    before there is one)."""
    if config is None:
        return RevocationService(ca=ca)
    return RevocationService(
        ca=ca,
        crl_lifetime=dt.timedelta(hours=config.crl_next_update_hours),
        ocsp_lifetime=dt.timedelta(hours=config.ocsp_next_update_hours),
    )


def publish_current_deltas(revocation: RevocationService) -> int:
    """Publish a delta CRL for each CA whose latest full CRL is newer than its latest
    delta; returns how many were published.

    Every full CRL names the CA's delta CRL (freshestCRL), and a delta can be used only
    with a full CRL whose number is lower than its own (RFC 5280 §5.2.4). Until a new
    delta follows a new full CRL, strict relying parties (pyhanko-certvalidator) find no
    usable delta and give up, so one is published right after every full CRL.
    """
    published = 0
    for issuer in revocation.ca.issuers():
        full = revocation.latest_crl(issuer.name)
        if full is None:
            continue
        delta = revocation.latest_crl(issuer.name, delta=True)
        if delta is None or delta.number < full.number:
            revocation.publish_crl(issuer.name, delta=True)
            published += 1
    return published


class KeyStoreOnFirstUse:
    """A KeyStore that opens the real one (and needs the PIN) only when first used."""

    def __init__(self, open_store: Callable[[], KeyStore]) -> None:
        self._open = open_store

    def generate_key(
        self, label: str, algorithm: KeyAlgorithm, usages: frozenset[KeyUsage]
    ) -> KeyInfo:
        return self._open().generate_key(label, algorithm, usages)

    def public_key(self, label: str) -> PublicKeyTypes:
        return self._open().public_key(label)

    def key_info(self, label: str) -> KeyInfo:
        return self._open().key_info(label)

    def list_keys(self) -> list[KeyInfo]:
        return self._open().list_keys()

    def sign(
        self, label: str, data: bytes, mechanism: SignatureMechanism, *, usage: KeyUsage
    ) -> bytes:
        return self._open().sign(label, data, mechanism, usage=usage)

    def sign_batch(
        self,
        label: str,
        items: Sequence[bytes],
        mechanism: SignatureMechanism,
        *,
        usage: KeyUsage,
    ) -> list[bytes]:
        return self._open().sign_batch(label, items, mechanism, usage=usage)

    def private_key(self, label: str, *, usage: KeyUsage) -> Any:
        return self._open().private_key(label, usage=usage)

    def destroy_key(self, label: str) -> None:
        self._open().destroy_key(label)

    def close(self) -> None:
        """Nothing to do: the Services that opened the real store closes it."""
