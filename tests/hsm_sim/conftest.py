"""Fixtures for the key-store tests: an in-memory audit sink, and fresh tokens of both kinds.

SoftHSM reads SOFTHSM2_CONF when the module is initialised, and python-pkcs11 keeps one
initialised module per process; a token created afterwards is found because the
PKCS#11 backend re-initialises the module on a missed label while no session is open.
So the whole test session shares one SoftHSM configuration and token directory, and
each test gets its own token under a fresh label.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from hsm_sim.api import AuditEvent
from hsm_sim.keystore import AuditedKeyStore
from hsm_sim.soft_token import MIN_SCRYPT_LOG2_N, init_soft_token
from hsm_sim.spec import open_keystore

USER_PIN = "4821-user"
SO_PIN = "9377-officer"
BACKENDS = ("soft", "pkcs11")


class ListAuditSink:
    """An AuditSink keeping events in a list; `fail_with` makes every append raise."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.fail_with: Exception | None = None

    def record(self, event: AuditEvent) -> None:
        self.record_all([event])

    def record_all(self, events: Sequence[AuditEvent]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.events.extend(events)


@pytest.fixture
def audit_sink() -> ListAuditSink:
    return ListAuditSink()


@dataclasses.dataclass(frozen=True)
class TokenUnderTest:
    kind: str
    spec: str
    user_pin: str
    so_pin: str
    location: Path  # the soft token directory, or the SoftHSM token directory

    def open(self, audit: object, *, pin: str | None = None) -> AuditedKeyStore:
        store = open_keystore(
            self.spec, pin=self.user_pin if pin is None else pin, audit=audit
        )
        assert isinstance(store, AuditedKeyStore)
        return store


def make_soft_token(directory: Path) -> TokenUnderTest:
    # The cheapest scrypt cost the token accepts keeps the many logins of the suite fast.
    init_soft_token(
        directory, user_pin=USER_PIN, so_pin=SO_PIN, scrypt_log2_n=MIN_SCRYPT_LOG2_N
    )
    return TokenUnderTest("soft", f"soft:{directory}", USER_PIN, SO_PIN, directory)


@pytest.fixture
def soft_token(tmp_path: Path) -> TokenUnderTest:
    return make_soft_token(tmp_path / "token")


@pytest.fixture
def soft_token_factory(tmp_path: Path) -> Callable[[str], TokenUnderTest]:
    """Makes further software tokens, each in tmp_path/<name>."""
    return lambda name: make_soft_token(tmp_path / name)


@pytest.fixture(scope="session")
def softhsm_tokens_dir(
    softhsm_module: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """One SoftHSM configuration for the session, exported as SOFTHSM2_CONF."""
    root = tmp_path_factory.mktemp("softhsm")
    tokens = root / "tokens"
    tokens.mkdir()
    conf = root / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\n"
        "objectstore.backend = file\n"
        "log.level = ERROR\n"
        "slots.removable = false\n"
    )
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        yield tokens
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


def make_softhsm_token(module: str, tokens_dir: Path) -> TokenUnderTest:
    label = f"yx-{uuid.uuid4().hex[:16]}"
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            SO_PIN,
            "--pin",
            USER_PIN,
        ],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
        timeout=60,
    )
    spec = f"pkcs11:module={module};token={label}"
    return TokenUnderTest("pkcs11", spec, USER_PIN, SO_PIN, tokens_dir)


@pytest.fixture
def softhsm_token_factory(
    softhsm_module: str, softhsm_tokens_dir: Path
) -> Callable[[], TokenUnderTest]:
    """Makes fresh SoftHSM tokens, each under a new label."""
    return lambda: make_softhsm_token(softhsm_module, softhsm_tokens_dir)


@pytest.fixture
def softhsm_token(
    softhsm_token_factory: Callable[[], TokenUnderTest],
) -> TokenUnderTest:
    return softhsm_token_factory()


@pytest.fixture(params=BACKENDS)
def token(request: pytest.FixtureRequest) -> TokenUnderTest:
    """A fresh token of each backend."""
    if request.param == "soft":
        return request.getfixturevalue("soft_token")
    return request.getfixturevalue("softhsm_token")


@pytest.fixture
def store(
    token: TokenUnderTest, audit_sink: ListAuditSink
) -> Iterator[AuditedKeyStore]:
    """A logged-in key store on a fresh token of each backend, auditing to `audit_sink`."""
    opened = token.open(audit_sink)
    try:
        yield opened
    finally:
        opened.close()
