"""Write or check migrations against the models.

    python -m portal.migrations revision "add seals"   # autogenerate a new revision
    python -m portal.migrations check                  # fail if models and migrations differ

Both compare the models with a scratch SQLite database brought to the newest revision.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from alembic import command

from portal.db import migration_config, upgrade_database


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m portal.migrations")
    commands = parser.add_subparsers(dest="command", required=True)
    revision = commands.add_parser("revision", help="autogenerate a new revision")
    revision.add_argument("message", help="what the revision changes, in a few words")
    commands.add_parser("check", help="fail if the models and the migrations differ")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'scratch.sqlite3'}"
        upgrade_database(url)
        config = migration_config()
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        if args.command == "revision":
            command.revision(config, message=args.message, autogenerate=True)
        else:
            command.check(config)


if __name__ == "__main__":
    main()
