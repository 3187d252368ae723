"""The database: engines, sessions, and the Alembic migrations that make the schema.

SQLite (a file in the instance directory) is the embedded default; PostgreSQL (through
psycopg 3) is for production. The schema is only ever made by the migrations in
`portal/migrations`, never by `create_all`, so every installation has the same one.

SQLite connections run in WAL mode, so readers do not block the writer, with foreign
keys on. The driver opens a transaction only at the first write, which lets a request
read, have the key store sign (the audit log writes on its own connection), then write.
A session opened with hsm_sim.storage.write_transaction() instead begins IMMEDIATE,
taking the write lock before its first read. Either way: commit before you sign (see
hsm_sim.audit), because the audit log needs that same lock.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from hsm_sim.errors import ErrorCategory
from hsm_sim.storage import WRITE_TRANSACTION, Base

__all__ = [
    "MODEL_MODULES",
    "DatabaseError",
    "DatabaseConfigError",
    "DatabaseUnavailableError",
    "make_engine",
    "check_database",
    "session_factory",
    "upgrade_database",
    "current_revision",
    "head_revision",
    "migration_config",
    "target_metadata",
    "describe_url",
]

# Every module that declares models on hsm_sim.storage.Base: the migrations see the
# schema through these imports. A package that adds models adds its module here.
MODEL_MODULES = (
    "hsm_sim.audit",
    "pki.models",
    "pki.ca_models",
    "seal.models",
    "certs.models",
)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
_WRITE_OPTIONS = WRITE_TRANSACTION  # hsm_sim.storage.write_transaction() sets these
POSTGRESQL_CONNECT_TIMEOUT_S = 10


class DatabaseError(Exception):
    category: ErrorCategory = ErrorCategory.INTERNAL


class DatabaseConfigError(DatabaseError, ValueError):
    """The database URL cannot be used; the message says why."""

    category = ErrorCategory.BAD_REQUEST


class DatabaseUnavailableError(DatabaseError):
    """The database cannot be reached or opened; the message names it, without password."""

    category = ErrorCategory.UNAVAILABLE


def describe_url(url: str | URL) -> str:
    """`url` as it may be shown to a person: no password, no query, no driver name."""
    parsed = url if isinstance(url, URL) else make_url(url)
    shown = URL.create(
        parsed.get_backend_name(),
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
    )
    return shown.render_as_string(hide_password=False)


def _parse_url(url: str | URL) -> URL:
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        raise DatabaseConfigError(
            "the database URL cannot be parsed; use sqlite:///path/to/file.sqlite3 or "
            "postgresql://user@host:port/database"
        ) from None
    if parsed.drivername in {"postgresql", "postgres", "postgresql+psycopg"}:
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in {"sqlite", "sqlite+pysqlite"}:
        return parsed
    raise DatabaseConfigError(
        f"unsupported database URL scheme {parsed.drivername!r}; use sqlite:///path or "
        "postgresql://user@host:port/database"
    )


def make_engine(url: str | URL) -> Engine:
    """An engine for `url` (SQLite file or PostgreSQL), configured as Yinxin needs it."""
    parsed = _parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _make_sqlite_engine(parsed)
    return create_engine(
        parsed,
        pool_pre_ping=True,
        # Statement parameters hold licence data and personal names: a database
        # error's text must not carry them into logs or tracebacks.
        hide_parameters=True,
        connect_args={"connect_timeout": POSTGRESQL_CONNECT_TIMEOUT_S},
    )


def _make_sqlite_engine(url: URL) -> Engine:
    if url.database in (None, "", ":memory:"):
        raise DatabaseConfigError(
            "Yinxin needs an SQLite database file, not an in-memory database: the "
            "audit log opens a connection of its own"
        )
    path = Path(url.database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if isinstance(exc, FileExistsError):
            reason = f"{path.parent} exists and is not a directory"
        else:
            reason = (exc.strerror or type(exc).__name__).lower()
        raise DatabaseUnavailableError(
            f"cannot create the directory for the SQLite database at {path}: {reason}"
        ) from exc
    engine = create_engine(url, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A transaction that will write takes the write lock first and waits its turn
        # (busy_timeout); one that read first could only fail when it came to write.
        if _WRITE_OPTIONS.items() <= conn.get_execution_options().items():
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _failure_reason(exc: BaseException, url: URL) -> str:
    """A short, password-free reason for a failed connection."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    first = lines[0] if lines else type(original).__name__
    lowered = first.lower()
    if "connection refused" in lowered:
        reason = "connection refused"
    elif "password authentication failed" in lowered:
        reason = "password authentication failed"
    elif "timeout expired" in lowered or "timed out" in lowered:
        reason = "connection timed out"
    else:
        # libpq prefixes "connection failed: connection to server at ... failed: ".
        reason = first.rsplit("failed: ", 1)[-1].strip() or first
    if url.password:
        reason = reason.replace(str(url.password), "***")
    return reason


def check_database(engine: Engine) -> None:
    """Connect once; DatabaseUnavailableError naming the database if that fails."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        raise DatabaseUnavailableError(
            f"cannot reach the database at {describe_url(engine.url)}: "
            f"{_failure_reason(exc, engine.url)}"
        ) from exc


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (no reload round trip)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def target_metadata() -> MetaData:
    """The metadata holding every Yinxin table (imports each model module first)."""
    for module in MODEL_MODULES:
        importlib.import_module(module)
    return Base.metadata


def migration_config() -> Config:
    """Alembic's configuration, made in code: no alembic.ini is needed on disk."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_database(database: str | URL | Engine) -> None:
    """Bring the schema to the newest migration (does nothing if it is there already)."""
    engine = database if isinstance(database, Engine) else make_engine(database)
    try:
        check_database(engine)
        config = migration_config()
        try:
            with engine.begin() as conn:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
        except (SQLAlchemyError, OSError) as exc:
            raise DatabaseUnavailableError(
                f"cannot migrate the database at {describe_url(engine.url)}: "
                f"{_failure_reason(exc, engine.url)}"
            ) from exc
    finally:
        if not isinstance(database, Engine):
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (None for an empty database)."""
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except (SQLAlchemyError, OSError) as exc:
        raise DatabaseUnavailableError(
            f"cannot reach the database at {describe_url(engine.url)}: "
            f"{_failure_reason(exc, engine.url)}"
        ) from exc


def head_revision() -> str:
    """The newest migration this version of Yinxin ships."""
    head = ScriptDirectory.from_config(migration_config()).get_current_head()
    if head is None:
        raise DatabaseError("no database migrations are installed")
    return head
