"""Alembic environment: runs on the connection portal.db hands over, or on a URL."""

from __future__ import annotations

from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection

from hsm_sim.storage import UTCDateTime
from portal.db import make_engine, target_metadata

config = context.config
metadata = target_metadata()


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    # Migrations stay free of application types: UTCDateTime is a timezone-aware
    # DateTime in the database; the conversion happens in Python.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        render_item=render_item,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("Yinxin migrations run against a live database (no --sql mode)")

given = config.attributes.get("connection")
if given is not None:
    run_migrations(given)
else:
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    try:
        with engine.begin() as connection:
            run_migrations(connection)
    finally:
        engine.dispose()
