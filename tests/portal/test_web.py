"""The web skeleton: /healthz, RFC 9457 problems, hidden 500s, a session per request."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator

import pytest
from flask import Flask, abort
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlalchemy.orm import Session

from hsm_sim.errors import ErrorCategory
from hsm_sim.soft_token import MAX_FAILED_USER_LOGINS
from pki.errors import AgencyNotFoundError
from portal.app import create_app
from portal.config import Settings
from portal.context import current_services, db_session
from portal.errors import HTTP_STATUS_BY_CATEGORY

PROBLEM_JSON = "application/problem+json"
UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/x"


def build_app(settings: Settings) -> Flask:
    app = create_app({"TESTING": True}, settings=settings)
    add_test_routes(app)
    return app


def add_test_routes(app: Flask) -> None:
    @app.get("/api/v1/test/category/<name>")
    def raise_category(name: str) -> None:
        category = ErrorCategory(name)
        error_type = type("CategorisedError", (Exception,), {"category": category})
        raise error_type(f"a {name} error\nwith a second line")

    @app.get("/api/v1/test/agency")
    def raise_agency_not_found() -> None:
        raise AgencyNotFoundError(
            "no agency with unified social credit code 11110000MB01762097"
        )

    @app.get("/api/v1/test/bug")
    def raise_bug() -> None:
        raise RuntimeError("password=hunter2 leaked into an exception")

    @app.get("/api/v1/test/database-error")
    def raise_database_error() -> None:
        session = db_session()
        session.execute(text("CREATE TEMP TABLE holder (id_number TEXT UNIQUE)"))
        for _ in range(2):
            session.execute(
                text("INSERT INTO holder VALUES (:n)"), {"n": "350102199001011234"}
            )

    @app.get("/api/v1/test/bad-request")
    def api_bad_request() -> None:
        abort(400, "the field 'name' is required")

    @app.get("/page/bad-request")
    def page_bad_request() -> None:
        abort(400)

    @app.get("/api/v1/test/session")
    def use_session() -> dict[str, object]:
        session = db_session()
        app.extensions["test_sessions"].append(session)
        value = session.execute(text("SELECT 41 + 1")).scalar_one()
        return {"same": db_session() is session, "value": value}

    app.extensions["test_sessions"] = []


@pytest.fixture
def app(instance_settings: Settings) -> Iterator[Flask]:
    app = build_app(instance_settings)
    yield app
    with app.app_context():
        current_services().close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def test_healthz_reports_database_and_hsm(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {"status": "ok", "database": "ok", "hsm": "ok"}


def test_healthz_is_503_problem_when_the_database_is_down(
    instance_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dataclasses.replace(instance_settings, database_url=UNREACHABLE_DATABASE)
    app = build_app(settings)
    try:
        response = app.test_client().get("/healthz")
    finally:
        with app.app_context():
            current_services().close()

    assert response.status_code == 503
    assert response.mimetype == PROBLEM_JSON
    assert response.get_json() == {
        "type": "about:blank",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "unavailable: database",
        "database": "unavailable",
        "hsm": "ok",
    }
    assert "127.0.0.1:1" not in response.get_data(as_text=True)
    assert "connection refused" in caplog.text


def test_a_wrong_pin_is_not_retried_by_every_health_probe(
    instance_settings: Settings,
) -> None:
    wrong = dataclasses.replace(instance_settings, hsm_pin="not-the-user-pin")
    app = build_app(wrong)
    client = app.test_client()
    try:
        for _ in range(MAX_FAILED_USER_LOGINS + 2):
            response = client.get("/healthz")
            assert response.status_code == 503
            assert response.get_json()["hsm"] == "unavailable"
    finally:
        with app.app_context():
            current_services().close()

    right = build_app(instance_settings)
    try:
        assert right.test_client().get("/healthz").status_code == 200
    finally:
        with right.app_context():
            current_services().close()


@pytest.mark.parametrize("path", ["/no/such/page", "/api/v1/no/such/resource"])
def test_not_found_is_a_problem_everywhere(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json()
    assert (body["type"], body["title"], body["status"]) == (
        "about:blank",
        "Not Found",
        404,
    )
    assert body["detail"]


def test_method_not_allowed_is_a_problem_with_allow(client: FlaskClient) -> None:
    response = client.post("/healthz")
    assert response.status_code == 405
    assert response.mimetype == PROBLEM_JSON
    assert response.get_json()["title"] == "Method Not Allowed"
    assert "GET" in response.headers["Allow"]


def test_other_http_errors_are_problems_only_under_the_api(client: FlaskClient) -> None:
    api = client.get("/api/v1/test/bad-request")
    page = client.get("/page/bad-request")

    assert api.status_code == page.status_code == 400
    assert api.mimetype == PROBLEM_JSON
    assert api.get_json()["detail"] == "the field 'name' is required"
    assert page.mimetype == "text/html"


@pytest.mark.parametrize(
    "category", [c for c in ErrorCategory if c is not ErrorCategory.INTERNAL]
)
def test_each_error_category_has_its_status(
    client: FlaskClient, category: ErrorCategory
) -> None:
    response = client.get(f"/api/v1/test/category/{category.value}")

    status = HTTP_STATUS_BY_CATEGORY[category]
    assert response.status_code == status
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json()
    assert body["type"] == f"urn:yinxin:problem:{category.value}"
    assert body["status"] == status
    assert body["detail"] == f"a {category.value} error with a second line"


def test_a_package_error_keeps_its_message(client: FlaskClient) -> None:
    response = client.get("/api/v1/test/agency")
    assert response.status_code == 404
    assert response.get_json()["detail"].startswith(
        "no agency with unified social credit code"
    )


@pytest.mark.parametrize("path", ["/api/v1/test/bug", "/api/v1/test/category/internal"])
def test_a_500_hides_the_exception_and_logs_it_under_a_correlation_id(
    client: FlaskClient, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    caplog.set_level(logging.ERROR)
    response = client.get(path)

    assert response.status_code == 500
    assert response.mimetype == PROBLEM_JSON
    body = response.get_json()
    correlation_id = body["correlation_id"]
    assert response.headers["X-Correlation-ID"] == correlation_id
    assert body["title"] == "Internal Server Error"
    assert body["detail"] == (
        f"An unexpected error occurred. Quote correlation id {correlation_id} when "
        "reporting it."
    )
    assert "hunter2" not in response.get_data(as_text=True)
    (record,) = [r for r in caplog.records if correlation_id in r.getMessage()]
    assert "Traceback (most recent call last)" in record.getMessage()


def test_a_database_error_is_logged_without_the_data_it_quotes(
    client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    response = client.get("/api/v1/test/database-error")

    assert response.status_code == 500
    (record,) = [
        r
        for r in caplog.records
        if response.get_json()["correlation_id"] in r.getMessage()
    ]
    logged = record.getMessage()
    assert "sqlalchemy.exc.IntegrityError (message withheld" in logged
    assert "INSERT INTO holder VALUES" in logged
    assert "350102199001011234" not in logged
    assert record.exc_info is None


def test_one_session_per_request_closed_on_teardown(
    app: Flask, client: FlaskClient
) -> None:
    first = client.get("/api/v1/test/session")
    second = client.get("/api/v1/test/session")

    assert first.get_json() == second.get_json() == {"same": True, "value": 42}
    sessions: list[Session] = app.extensions["test_sessions"]
    assert len(sessions) == 2 and sessions[0] is not sessions[1]
    assert not any(session.in_transaction() for session in sessions)
