"""The one SQLAlchemy metadata every Yinxin package's models share.

It lives in the lowest layer that stores rows (the audit log) so that every package
above can declare models on it and Alembic sees one schema.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
from collections.abc import Iterator
from typing import Any

from sqlalchemy import DateTime, Enum, MetaData
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Base",
    "UTCDateTime",
    "database_error_code",
    "enum_by_value",
    "utcnow",
    "WRITE_TRANSACTION",
    "write_transaction",
]

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def database_error_code(error: BaseException) -> str | None:
    """The driver's code for a database error (PostgreSQL's SQLSTATE, SQLite's error
    name), or None: what a log may say of an error whose message can quote data."""
    original = getattr(error, "orig", None) or error
    code = getattr(original, "sqlstate", None) or getattr(
        original, "sqlite_errorname", None
    )
    return str(code) if code else None


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike.

    A naive datetime is refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime given where an aware UTC datetime is required")
        value = value.astimezone(dt.timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


def enum_by_value(enum_type: type[enum.Enum], length: int = 32) -> Enum:
    """A column type storing an enum by its value (not its Python name), as text."""
    return Enum(
        enum_type,
        values_callable=lambda members: [m.value for m in members],
        native_enum=False,
        validate_strings=True,
        length=length,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime()}


# Execution option asking the engine to start the transaction as a writer. On SQLite
# (WAL) a transaction that reads and then writes fails at once with "database is
# locked" if another process committed in between; one that begins IMMEDIATE takes
# the write lock first and waits its turn instead. portal/db.py acts on this option.
WRITE_TRANSACTION = {"yinxin_write_transaction": True}


@contextlib.contextmanager
def write_transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session in a transaction that will write: commit on success, roll back on error."""
    with sessions.begin() as session:
        session.connection(execution_options=WRITE_TRANSACTION)
        yield session
