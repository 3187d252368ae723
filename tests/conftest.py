"""Fixtures shared by every test package.

A test that needs an outside tool or service calls `require(...)`: on a developer's
machine it skips with the reason, under CI=true it fails, so CI can never go green by
skipping the PostgreSQL or SoftHSM path.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
SOFTHSM_MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


# Property tests assert behaviour, never speed: no per-example deadline (a loaded CI
# machine exceeds Hypothesis's 200 ms default), and under CI the same examples every
# run, so a red build is reproducible and never a roll of the dice.
settings.register_profile("yinxin", deadline=None)
settings.register_profile("yinxin-ci", parent=settings.get_profile("yinxin"), derandomize=True)
settings.load_profile("yinxin-ci" if in_ci() else "yinxin")


def require(condition: object, reason: str) -> None:
    """Skip (locally) or fail (under CI=true) when `condition` is falsy."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"required in CI: {reason}", pytrace=False)
    pytest.skip(reason)


def require_tool(name: str) -> str:
    path = shutil.which(name)
    require(path, f"{name} is not installed (make test installs it)")
    assert path is not None
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    require(SHARED.is_dir(), f"the shared/ directory is not beside the checkout ({SHARED})")
    return SHARED


@pytest.fixture(scope="session")
def softhsm_module() -> str:
    """Path of SoftHSMv2's PKCS#11 module."""
    for candidate in SOFTHSM_MODULE_CANDIDATES:
        if os.path.exists(candidate):
            require_tool("softhsm2-util")
            return candidate
    require(False, "SoftHSMv2 (Debian softhsm2) is not installed")
    raise AssertionError("unreachable")


def _postgres_admin_url() -> str | None:
    return os.environ.get("YINXIN_TEST_DATABASE_URL") or None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    admin_url = _postgres_admin_url()
    require(admin_url, "YINXIN_TEST_DATABASE_URL is not set (CI points it at 127.0.0.1:5432)")
    assert admin_url is not None
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"yinxin_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure here means "no server"
        admin.dispose()
        require(False, f"PostgreSQL at YINXIN_TEST_DATABASE_URL is unreachable: {exc}")
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: SQLite always, PostgreSQL when YINXIN_TEST_DATABASE_URL is set."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'yinxin.sqlite3'}"
    return request.getfixturevalue("postgres_url")
