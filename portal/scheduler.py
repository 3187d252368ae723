"""The server's scheduled work: re-sign CRLs, OCSP responses and licence status lists
before they go stale, and clear licence reservations a dead process left behind
(`Services.scheduled_refresh`).

`yinxin serve` runs several worker processes; the refresh must run once per instance,
not once per worker. Each worker starts a `RefreshScheduler` thread, and the thread
that holds an exclusive lock on `<home>/run/refresh.lock` (flock) is the one that
works; the others wait and try again every interval. When the working process exits
or dies, the kernel releases its lock and another worker's thread takes over at its
next attempt. Two servers on the same instance directory still refresh only once.

`yinxin ca refresh` does the same work once, for cron.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

from hsm_sim.api import signing_context
from portal.errors import one_line
from portal.log_redaction import loggable_traceback

__all__ = ["LOCK_FILE_NAME", "RefreshScheduler"]

logger = logging.getLogger(__name__)

LOCK_FILE_NAME = "refresh.lock"
ACTOR = "scheduler:refresh"


class RefreshScheduler:
    """Calls `refresh` every `interval` seconds while this process holds the lock."""

    def __init__(
        self, refresh: Callable[[], dict[str, int]], *, interval: float, run_dir: Path
    ) -> None:
        if interval <= 0:
            raise ValueError("the refresh interval must be positive")
        self._refresh = refresh
        self._interval = interval
        self._lock_path = run_dir / LOCK_FILE_NAME
        self._lock_file: int | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="yinxin-refresh", daemon=True
        )

    @property
    def is_leader(self) -> bool:
        return self._lock_file is not None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stopped.set()
        self._thread.join(timeout)
        if self._lock_file is not None:
            os.close(self._lock_file)  # releases the flock
            self._lock_file = None

    def _try_to_lead(self) -> bool:
        if self._lock_file is not None:
            return True
        try:
            self._lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            descriptor = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            logger.error("refresh: cannot open %s: %s", self._lock_path, exc.strerror)
            return False
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            return False
        self._lock_file = descriptor
        logger.info(
            "refresh: this worker (pid %d) refreshes CRLs, OCSP and status lists",
            os.getpid(),
        )
        return True

    def _run(self) -> None:
        while not self._stopped.is_set():
            if self._try_to_lead():
                self.run_once()
            self._stopped.wait(self._interval)

    def run_once(self) -> None:
        """One refresh; failures are logged and retried at the next interval."""
        try:
            with signing_context(actor=ACTOR):
                report = self._refresh()
        except Exception as exc:
            category = getattr(exc, "category", None)
            if category is None:
                logger.error("refresh failed\n%s", loggable_traceback(exc))
            else:
                logger.warning("refresh failed: %s", one_line(exc))
            return
        if any(report.values()):
            logger.info(
                "refresh: %s",
                ", ".join(
                    f"{count} {what.replace('_', ' ')}"
                    for what, count in report.items()
                ),
            )
