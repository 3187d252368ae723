"""The REST API on a PostgreSQL instance: input PostgreSQL cannot hold (a NUL in a
text parameter is a DataError there, unlike SQLite) is refused before any query, so
an anonymous or authenticated caller gets a 4xx, never a 500 with a traceback."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from portal.app import create_app
from portal.config import SettingOverrides, resolve_settings
from portal.context import current_services
from portal.instance import init_instance
from tests.portal.test_api import assert_problem, basic

JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def pg_app(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Flask, dict[str, str]]]:
    home = tmp_path / "instance"
    settings = resolve_settings(
        SettingOverrides(home=home, database_url=postgres_url), environ={}
    )
    result = init_instance(settings, demo=True)
    assert result.demo is not None
    secret = result.demo.client_secret_file.read_text().strip()
    app = create_app(
        {"TESTING": True},
        settings=resolve_settings(SettingOverrides(home=home), environ={}),
    )
    yield app, basic(result.demo.client_id, secret)
    with app.app_context():
        current_services().close()


def test_credentials_with_a_nul_are_refused_like_wrong_ones(
    pg_app: tuple[Flask, dict[str, str]],
) -> None:
    app, _ = pg_app
    client: FlaskClient = app.test_client()
    for client_id, secret in (("cl_\x00", "ycs_x"), ("cl_x", "ycs_\x00")):
        response = client.get("/api/v1/seals", headers=basic(client_id, secret))
        assert_problem(response, 401, "invalid API client credentials")
    bearer = {"Authorization": "Bearer cl_\x00x:ycs_x"}
    assert_problem(client.get("/api/v1/seals", headers=bearer), 401)


def test_a_nul_in_a_reference_or_filter_is_no_500(
    pg_app: tuple[Flask, dict[str, str]],
) -> None:
    app, demo = pg_app
    client: FlaskClient = app.test_client()
    assert_problem(client.get("/api/v1/seals/a%00b", headers=demo), 404)
    assert_problem(client.get("/api/v1/licenses?holder=a%00b", headers=demo), 400)
    search = client.post(
        "/api/v1/licenses/search",
        json={"holder": "a\x00b"},
        headers=demo,
    )
    assert_problem(search, 400)
