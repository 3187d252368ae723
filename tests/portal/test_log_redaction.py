"""Tracebacks written to logs keep their shape but not the data a database error
quotes (PostgreSQL's DETAIL repeats a violated key's values)."""

from __future__ import annotations

import traceback

import pytest
from sqlalchemy import text

from portal.db import make_engine
from portal.log_redaction import loggable_traceback

ID_NUMBER = "350102199001011234"


def _duplicate_key_error(database_url: str) -> BaseException:
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE holder (id_number VARCHAR(18) UNIQUE)"))
            conn.execute(text("INSERT INTO holder VALUES (:n)"), {"n": ID_NUMBER})
        try:
            with engine.begin() as conn:
                conn.execute(text("INSERT INTO holder VALUES (:n)"), {"n": ID_NUMBER})
        except Exception as exc:  # noqa: BLE001 - the error under test
            try:
                raise RuntimeError("issuing failed") from exc
            except RuntimeError as wrapped:
                return wrapped
        raise AssertionError("the duplicate was accepted")
    finally:
        engine.dispose()


def test_a_database_error_shows_its_kind_and_statement_not_its_data(
    database_url: str,
) -> None:
    error = _duplicate_key_error(database_url)
    if "postgresql" in database_url:
        # What a plain traceback would have written.
        assert ID_NUMBER in "".join(traceback.format_exception(error))

    logged = loggable_traceback(error)

    assert ID_NUMBER not in logged
    assert "sqlalchemy.exc.IntegrityError (message withheld: it may quote data" in logged
    assert "INSERT INTO holder VALUES" in logged
    assert "The above exception was the direct cause" in logged
    assert logged.rstrip().endswith("RuntimeError: issuing failed")


def test_other_errors_keep_their_message_and_context() -> None:
    try:
        try:
            {}["missing"]
        except KeyError:
            raise ValueError("bad setting") from None
    except ValueError as error:
        suppressed = loggable_traceback(error)
        standard = "".join(traceback.format_exception(error))
    assert suppressed.startswith("Traceback (most recent call last):")
    assert "KeyError" not in suppressed
    assert suppressed.rstrip().endswith("ValueError: bad setting")
    assert suppressed == standard

    try:
        try:
            raise KeyError("first")
        except KeyError:
            raise ValueError("second")  # noqa: B904 - the implicit context is the test
    except ValueError as error:
        chained = loggable_traceback(error)
        standard = "".join(traceback.format_exception(error))
    assert chained == standard


@pytest.mark.parametrize("depth", [1, 3])
def test_the_layout_matches_the_standard_one_without_database_errors(depth: int) -> None:
    def fail(level: int) -> None:
        if level == 0:
            raise OSError("disk full")
        fail(level - 1)

    try:
        fail(depth)
    except OSError as error:
        assert loggable_traceback(error) == "".join(traceback.format_exception(error))
