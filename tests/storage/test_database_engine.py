"""portal.db engines: SQLite settings, URL handling, and errors that name the database
but never its password."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from hsm_sim.errors import ErrorCategory
from hsm_sim.storage import write_transaction
from portal.db import (
    DatabaseConfigError,
    DatabaseUnavailableError,
    check_database,
    describe_url,
    make_engine,
    session_factory,
)


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(tmp_path: Path):
    database = tmp_path / "nested" / "instance" / "yinxin.sqlite3"
    engine = make_engine(f"sqlite:///{database}")
    try:
        with engine.connect() as conn:
            pragmas = {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
            }
    finally:
        engine.dispose()
    assert pragmas == {
        "journal_mode": "wal",
        "foreign_keys": 1,
        "busy_timeout": 10_000,
        "synchronous": 1,  # NORMAL
    }
    assert database.is_file()


@pytest.mark.parametrize(
    "url", ["postgresql://u@db/yinxin", "postgres://u@db/yinxin", "postgresql+psycopg://u@db/yinxin"]
)
def test_postgresql_urls_use_psycopg(url: str):
    engine = make_engine(url)
    try:
        assert engine.url.drivername == "postgresql+psycopg"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "url, complaint",
    [
        ("mysql://u@db/yinxin", "unsupported database URL scheme 'mysql'"),
        ("not a url", "cannot be parsed"),
        ("sqlite://", "not an in-memory database"),
        ("sqlite:///:memory:", "not an in-memory database"),
    ],
)
def test_unusable_urls_are_refused_with_a_reason(url: str, complaint: str):
    with pytest.raises(DatabaseConfigError, match=complaint) as caught:
        make_engine(url)
    assert caught.value.category is ErrorCategory.BAD_REQUEST


def test_an_unreachable_postgresql_is_named_without_its_password():
    engine = make_engine("postgresql://postgres:hunter2-secret@127.0.0.1:5999/test")
    try:
        with pytest.raises(DatabaseUnavailableError) as caught:
            check_database(engine)
    finally:
        engine.dispose()
    assert str(caught.value) == (
        "cannot reach the database at postgresql://postgres@127.0.0.1:5999/test: "
        "connection refused"
    )
    assert caught.value.category is ErrorCategory.UNAVAILABLE


def test_a_sqlite_directory_that_cannot_be_made_is_named(tmp_path: Path):
    blocker = tmp_path / "instance"
    blocker.write_text("a file where the instance directory should be")
    with pytest.raises(DatabaseUnavailableError) as caught:
        make_engine(f"sqlite:///{blocker / 'yinxin.sqlite3'}")
    assert str(caught.value) == (
        f"cannot create the directory for the SQLite database at "
        f"{blocker / 'yinxin.sqlite3'}: {blocker} exists and is not a directory"
    )
    with pytest.raises(DatabaseUnavailableError, match="not a directory$"):
        make_engine(f"sqlite:///{blocker / 'deeper' / 'yinxin.sqlite3'}")


def test_a_file_that_is_not_a_database_is_reported(tmp_path: Path):
    database = tmp_path / "yinxin.sqlite3"
    database.write_bytes(b"this is not SQLite" * 100)
    engine = make_engine(f"sqlite:///{database}")
    try:
        with pytest.raises(DatabaseUnavailableError, match="file is not a database"):
            check_database(engine)
    finally:
        engine.dispose()


def test_describe_url_drops_password_query_and_driver():
    shown = describe_url("postgresql+psycopg://u:pw@h:5432/db?password=pw&sslmode=require")
    assert shown == "postgresql://u@h:5432/db"


def test_check_database_passes_on_a_live_database(database_url: str):
    engine = make_engine(database_url)
    try:
        check_database(engine)
    finally:
        engine.dispose()


def test_session_objects_stay_readable_after_commit(database_url: str):
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            value = session.execute(text("SELECT 1")).scalar_one()
            session.commit()
        assert value == 1
        assert session_factory(engine).kw["expire_on_commit"] is False
    finally:
        engine.dispose()


def test_a_write_transaction_takes_the_sqlite_write_lock_before_reading(tmp_path: Path):
    database = tmp_path / "yinxin.sqlite3"
    engine = make_engine(f"sqlite:///{database}")
    other = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        with write_transaction(session_factory(engine)) as session:
            session.execute(text("SELECT count(*) FROM t")).scalar_one()
            with pytest.raises(sqlite3.OperationalError, match="database is locked"):
                other.execute("BEGIN IMMEDIATE")
            session.execute(text("INSERT INTO t VALUES (1)"))
        with session_factory(engine)() as session:
            session.execute(text("SELECT count(*) FROM t")).scalar_one()
            other.execute("BEGIN IMMEDIATE")  # a plain session holds no lock to read
            other.execute("ROLLBACK")
        assert other.execute("SELECT count(*) FROM t").fetchone() == (1,)
    finally:
        other.close()
        engine.dispose()


def test_a_database_error_never_carries_the_statement_parameters(database_url: str):
    """Parameters hold licence data and names. (PostgreSQL's own DETAIL line still
    repeats a violated key: portal.log_redaction keeps that out of logs.)"""
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE holder (id_number VARCHAR(18) UNIQUE)"))
            conn.execute(text("INSERT INTO holder VALUES (:n)"), {"n": "350102199001011234"})
        with pytest.raises(Exception) as failure:
            with engine.begin() as conn:
                conn.execute(
                    text("INSERT INTO holder VALUES (:n)"), {"n": "350102199001011234"}
                )
        assert "[SQL parameters hidden" in str(failure.value)
        assert "350102199001011234" not in str(failure.value).split("[SQL:")[1]
    finally:
        engine.dispose()
