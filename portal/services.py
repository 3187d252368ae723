"""The composition root: the parts one process uses, built once from the settings.

The web app builds one `Services` per worker process; each CLI command builds its own.
The key store is opened on first use, so a process that never signs never needs the PIN.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from hsm_sim.api import KeyStore
from hsm_sim.audit import SqlAuditLog
from hsm_sim.errors import ErrorCategory, HsmError, KeyNotFoundError
from hsm_sim.spec import open_keystore
from portal.config import Settings
from portal.db import check_database, make_engine, session_factory

__all__ = ["Services"]

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
