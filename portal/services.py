"""The composition root: the parts one process uses, built once from the settings.

The web app builds one `Services` per worker process; each CLI command builds its own.
The key store is opened on first use, so a process that never signs never needs the PIN:
the certificate authority holds a key store that opens the real one when it first
signs, so CA certificates and CRLs are served even while the token is locked.

Seals: one `SealRegistry` per process, this node's TSA and revocation data called in
process for stamping (no HTTP to ourselves), and a small cache of `Stamper`s. A cached
stamper holds only what is expensive to rebuild (the parsed seal image, the encoded
chain, the reserved signature size); whether it may be used is decided again for every
stamp by `SealRegistry.authorize_stamp` and, in the stamp log's own transaction, by
`stamp_document`. So a suspended or revoked seal stops at once, cache or not.

Licences: one `LicenceRegistry` per process, stamping through the same stamper cache.
The scheduled work (`scheduled_refresh`, once per instance: portal/scheduler.py)
re-signs CRLs, OCSP responses and due status lists, deletes licence reservations
a killed process left behind, and fails stamp-log entries a killed process left
pending.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from sqlalchemy.orm import Session, sessionmaker

from certs.issuance import LicenceRegistry
from certs.verify import LicenceTrust
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
from pki.profiles import PROFILES, IssuerRole
from pki.ra import RegistrationAuthority
from pki.revocation import RevocationService
from pki.timestamping import TimestampService
from portal.config import Settings
from portal.db import check_database, make_engine, session_factory
from portal.errors import NoHierarchyError
from seal.errors import TrustServiceError
from seal.lifecycle import SealRegistry, StampAuthorization
from seal.stamping import DEFAULT_MAX_INPUT_BYTES, Stamper
from seal.trust_services import (
    NodeRevocationSource,
    RevocationSource,
    TrustServices,
    node_trust_services,
)

__all__ = [
    "ABANDONED_ISSUANCE_AGE",
    "ABANDONED_STAMP_AGE",
    "STAMPER_CACHE_SIZE",
    "UNFINISHED_LICENCE_AGE",
    "KeyStoreOnFirstUse",
    "QuietRevocationSource",
    "Services",
    "build_certificate_authority",
    "build_revocation_service",
]

T = TypeVar("T")

# Stampers kept per process: one per seal in use (a stamper is ~100 KB: image, chain).
STAMPER_CACHE_SIZE = 64
# A licence reservation older than this was left by a process that died while issuing
# (one issuance takes seconds; `yinxin license batch` issues in small chunks).
UNFINISHED_LICENCE_AGE = dt.timedelta(hours=1)
# A stamp-log entry still pending after this long was left by a process that died
# while stamping: one stamping takes seconds, a web worker is killed after 60 s.
ABANDONED_STAMP_AGE = dt.timedelta(hours=1)
# A certificate row still pending after this long was left by a process that died
# while issuing: one issuance takes seconds, a web worker is killed after 60 s.
ABANDONED_ISSUANCE_AGE = dt.timedelta(hours=1)

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
        self._stampers: OrderedDict[tuple[str, str, int], Stamper] = OrderedDict()
        self._stampers_lock = threading.Lock()

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
        """Re-sign stale CRLs (each full one with its delta) and stale OCSP responses."""
        return dict(self.revocation().refresh())

    def _checkpoint_audit_log(self) -> dict[str, int]:
        written = self.audit_log.checkpoint_if_behind(
            self.keystore(), self.settings.audit_key_label
        )
        return {"audit_checkpoints": 0 if written is None else 1}

    def scheduled_refresh(self, *, keep_going: bool = True) -> dict[str, int]:
        """The scheduled work: CRLs and OCSP responses, then the licences' status lists
        (stale or soon expiring), what a dead process left unfinished (licence
        reservations, stamp-log entries, certificate issuances), and an audit
        checkpoint over new entries. A CA whose CRLs or OCSP responses could not be
        refreshed is counted under "failed" (the other CAs are refreshed all the same).

        With `keep_going` (the server's schedule) a part that fails with a Yinxin error
        is logged and the other parts still run; without it (`yinxin ca refresh`) the
        error is raised. An error without a category (a bug) is always raised.
        """
        report: dict[str, int] = {}
        parts: list[tuple[str, Callable[[], dict[str, int]]]] = [
            ("CRLs and OCSP", self.refresh_revocation),
            (
                "status lists",
                lambda: {
                    "status_lists": self.licence_registry().publish_status_lists()
                },
            ),
            (
                "unfinished licences",
                lambda: {
                    "discarded_licences": self.licence_registry().discard_unfinished(
                        older_than=UNFINISHED_LICENCE_AGE
                    )
                },
            ),
            (
                "abandoned stamps",
                lambda: {
                    "abandoned_stamps": self.seal_registry().fail_abandoned_stamps(
                        older_than=ABANDONED_STAMP_AGE
                    )
                },
            ),
            (
                "abandoned issuances",
                lambda: {
                    "abandoned_issuances": (
                        self.certificate_authority().fail_abandoned_issuances(
                            older_than=ABANDONED_ISSUANCE_AGE
                        )
                    )
                },
            ),
            # Last, so it covers what the parts above signed: the newest audit entries
            # are under a signed checkpoint within one schedule interval, not only
            # every CHECKPOINT_EVERY entries.
            ("audit checkpoint", self._checkpoint_audit_log),
        ]
        for name, part in parts:
            try:
                report.update(part())
            except Exception as exc:
                category = getattr(exc, "category", None)
                if not keep_going or not isinstance(category, ErrorCategory):
                    raise
                logger.warning("refresh of %s failed: %s", name, exc)
        return report

    def timestamps(self) -> TimestampService:
        return self._part(
            "timestamps", lambda: TimestampService(ca=self.certificate_authority())
        )

    def trust_roots(self) -> list[x509.Certificate]:
        """The node's root CA certificates: the trust anchors for verifying its seals."""
        return [
            issuer.certificate
            for issuer in self.certificate_authority().issuers()
            if issuer.role is IssuerRole.ROOT
        ]

    # -- seals -----------------------------------------------------------------------

    def seal_registry(self) -> SealRegistry:
        return self._part(
            "seals",
            lambda: SealRegistry(
                ra=self.registration_authority(), revocation=self.revocation()
            ),
        )

    def trust_services(self) -> TrustServices:
        """This node's TSA and OCSP/CRLs, called in process, for stamping B-T and above."""
        return self._part(
            "trust_services",
            lambda: node_trust_services(self.timestamps(), self.revocation()),
        )

    def verification_revocation(self) -> RevocationSource:
        """This node's OCSP responses and CRLs for verifying, answering "no data" rather
        than failing when they cannot be had now (see QuietRevocationSource)."""
        return self._part(
            "verification_revocation",
            lambda: QuietRevocationSource(NodeRevocationSource(self.revocation())),
        )

    # -- licences --------------------------------------------------------------------

    def licence_registry(self) -> LicenceRegistry:
        """Issues licences with the agencies' official seals (stamped through this
        process's stamper cache) and keeps their status lists."""
        return self._part(
            "licences",
            lambda: LicenceRegistry(
                seals=self.seal_registry(),
                services=self.trust_services(),
                region=self.settings.region,
                base_url=self.settings.public_base_url,
                stamper_for=self.stamper,
            ),
        )

    def licence_trust(self) -> LicenceTrust:
        """What this node's licence verifier trusts: the region's document signers (read
        now: a new signer counts at once) and root CAs, and this node's OCSP responses
        and CRLs for the seals on licence PDFs (nothing is fetched from a URL)."""
        return self.licence_registry().licence_trust(
            seal_revocation=self.verification_revocation()
        )

    def stamper(
        self,
        authorization: StampAuthorization,
        *,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    ) -> Stamper:
        """A stamper for the authorized seal, reused while the seal keeps its certificate.

        The authorization is not cached: the caller passes a fresh one for every stamp.
        """
        seal = authorization.seal
        key = (seal.id, seal.certificate_serial, max_input_bytes)
        with self._stampers_lock:
            cached = self._stampers.get(key)
            if cached is not None:
                self._stampers.move_to_end(key)
                return cached
        # Built outside the lock: reading the credential touches the database and HSM.
        stamper = Stamper(
            self.seal_registry().credential(authorization),
            services=self.trust_services(),
            max_input_bytes=max_input_bytes,
        )
        with self._stampers_lock:
            stamper = self._stampers.setdefault(key, stamper)
            self._stampers.move_to_end(key)
            while len(self._stampers) > STAMPER_CACHE_SIZE:
                self._stampers.popitem(last=False)
        return stamper

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
        profiles=config.profiles() if config is not None else PROFILES,
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


class QuietRevocationSource:
    """A revocation source whose failures are "no answer" (TrustServiceError).

    The node's responder signs an OCSP response, or publishes a CRL, when no fresh one
    is stored; without the PIN (`yinxin verify` needs none) or with the token locked
    that fails with a key-store error. For a verifier that is only missing revocation
    data — reported as not settled — and never a reason to fail the verification.
    """

    def __init__(self, source: RevocationSource) -> None:
        self._source = source

    def ocsp(self, url: str, request_der: bytes) -> bytes:
        return self._quietly(lambda: self._source.ocsp(url, request_der))

    def crl(self, url: str) -> bytes:
        return self._quietly(lambda: self._source.crl(url))

    @staticmethod
    def _quietly(fetch: Callable[[], bytes]) -> bytes:
        try:
            return fetch()
        except TrustServiceError:
            raise
        except Exception as exc:
            if not isinstance(getattr(exc, "category", None), ErrorCategory):
                raise
            logger.info("revocation data not available for verifying: %s", exc)
            raise TrustServiceError(
                "this node cannot answer for revocation now"
            ) from exc


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
