"""What of a request URL, and of an exception, may be written to a log.

A request line is personal data as soon as a query names a holder
(`GET /api/v1/licenses?holder=<ID number>`), and a usage code in a path
(`GET /api/v1/licenses/by-code/<code>`) is a bearer secret: whoever reads it fetches
the licence while the code lasts. Logs are kept for a long time and read by many, so
neither may land there: logs get paths without their query string, and `<code>` in
place of a usage code.

A database error's text is personal data too: PostgreSQL's DETAIL repeats the values
of a violated key ("Key (id_number)=(350102...) already exists"), and some messages
quote the offending input. In a logged traceback such an error shows its class, its
SQLSTATE and the statement (without parameters) instead.
"""

from __future__ import annotations

import re
import sqlite3
import traceback

import psycopg
from sqlalchemy.exc import DBAPIError

from hsm_sim.storage import database_error_code

__all__ = ["loggable_path", "loggable_traceback"]

_DATABASE_ERRORS = (DBAPIError, psycopg.Error, sqlite3.Error)

# The usage code after `by-code/`, however the path was spelled on the wire.
_USAGE_CODE = re.compile(r"(by-code/+)[^/]+", re.IGNORECASE)


def loggable_path(path: str) -> str:
    """`path` (or a whole URL) as logs may show it: no query or fragment, no usage
    code."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    return _USAGE_CODE.sub(r"\1<code>", path)


def loggable_traceback(error: BaseException) -> str:
    """The traceback of `error` and the exceptions chained to it, laid out as
    `traceback.format_exception` does, but with each database error's message
    replaced by what it is and where it happened."""
    chain: list[tuple[BaseException, str]] = []  # newest first, with its link
    current: BaseException | None = error
    link = ""
    seen: set[int] = set()
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        chain.append((current, link))
        if current.__cause__ is not None:
            current, link = current.__cause__, _CAUSED
        elif current.__context__ is not None and not current.__suppress_context__:
            current, link = current.__context__, _DURING
        else:
            current = None
    parts: list[str] = []
    for exception, link_to_next in reversed(chain):
        if exception.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts.extend(traceback.format_tb(exception.__traceback__))
        parts.append(f"{_describe(exception)}\n")
        parts.append(link_to_next)
    return "".join(parts)


_CAUSED = "\nThe above exception was the direct cause of the following exception:\n\n"
_DURING = "\nDuring handling of the above exception, another exception occurred:\n\n"


def _describe(exception: BaseException) -> str:
    name = f"{type(exception).__module__}.{type(exception).__qualname__}"
    if not isinstance(exception, _DATABASE_ERRORS):
        return "".join(traceback.format_exception_only(exception)).rstrip("\n")
    code = database_error_code(exception)
    statement = getattr(exception, "statement", None)
    text = f"{name} (message withheld: it may quote data"
    if code:
        text += f"; code {code}"
    text += ")"
    if statement:
        text += f" in: {' '.join(str(statement).split())[:500]}"
    return text
