"""The REST API in process (Flask's test client) on a copy of the seal template:
authentication on every route, the cross-site guard, an agency's own seals only,
stamping and what is (not) signed and logged, upload limits, verification, bounded
JSON, security headers and the OpenAPI document."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from portal.app import create_app
from portal.config import SettingOverrides, resolve_settings
from portal.context import current_services
from tests.portal.conftest import SealWorld, count_rows, granted_signatures
from tests.portal.seal_checks import pdfsig_says_valid, seal_layout, verify_on_node

PROBLEM_JSON = "application/problem+json"
# Routes anyone may call: the API's description, verification (any relying party), and
# fetching a licence with the holder's usage code (the code is the consent).
PUBLIC_ENDPOINTS = {
    "api.openapi",
    "api.verify_pdf_upload",
    "api_licences.fetch_by_usage_code",
    "api_licences.verify_licence_input",
}
API_BLUEPRINTS = ("api", "api_licences")
AT_150_240 = json.dumps({"page": 1, "x_mm": 150, "y_mm": 240})
# What scripts send with a multipart upload; a browser cannot send it cross-site.
CLIENT_MARKER = {"X-Yinxin-Client": "1"}


def basic(client_id: str, secret: str) -> dict[str, str]:
    token = base64.b64encode(f"{client_id}:{secret}".encode()).decode("ascii")
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def app(seal_home: Path) -> Iterator[Flask]:
    settings = resolve_settings(SettingOverrides(home=seal_home), environ={})
    app = create_app({"TESTING": True}, settings=settings)
    yield app
    with app.app_context():
        current_services().close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def demo(seal_world: SealWorld) -> dict[str, str]:
    return basic(seal_world.demo_client_id, seal_world.demo_secret)


@pytest.fixture
def other(seal_world: SealWorld) -> dict[str, str]:
    return basic(seal_world.other_client_id, seal_world.other_secret)


def api_routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, path with sample arguments) for every API route."""
    routes = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.split(".")[0] not in API_BLUEPRINTS:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", "sl_0123456789abcdef", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            routes.append((rule.endpoint, method, path))
    return routes


def assert_problem(
    response: TestResponse, status: int, words: str = ""
) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM_JSON
    body: dict[str, Any] = response.get_json()
    assert body["status"] == status
    assert words in body.get("detail", ""), body
    return body


def stamp(
    client: FlaskClient,
    seal_id: str,
    headers: dict[str, str],
    document: bytes,
    filename: str = "notice.pdf",
    **fields: str,
) -> TestResponse:
    return client.post(
        f"/api/v1/seals/{seal_id}/stamp",
        headers={**headers, **CLIENT_MARKER},
        data={"file": (io.BytesIO(document), filename), **fields},
    )


def stamp_log(home: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(f"file:{home / 'yinxin.sqlite3'}?mode=ro", uri=True) as db:
        return db.execute(
            "SELECT principal_kind || ':' || principal_id, outcome, document_sha256 "
            "FROM stamp_log ORDER BY id"
        ).fetchall()


# -- authentication ---------------------------------------------------------------------


def test_every_route_is_listed_public_or_authenticated(app: Flask) -> None:
    endpoints = {endpoint for endpoint, _, _ in api_routes(app)}
    assert PUBLIC_ENDPOINTS <= endpoints
    assert len(endpoints - PUBLIC_ENDPOINTS) >= 11
    assert all(
        rule.rule.startswith("/api/v1/")
        for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] in API_BLUEPRINTS
    )


@pytest.mark.parametrize(
    "credentials",
    [
        None,
        "Bearer abc",
        "Basic !!!not-base64",
        "basic-wrong-secret",
        "basic-unknown-client",
    ],
)
def test_every_private_route_needs_a_client(
    app: Flask, client: FlaskClient, seal_world: SealWorld, credentials: str | None
) -> None:
    headers: dict[str, str] = {}
    if credentials == "basic-wrong-secret":
        headers = basic(seal_world.demo_client_id, seal_world.demo_secret + "x")
    elif credentials == "basic-unknown-client":
        headers = basic("cl_0000000000000000", seal_world.demo_secret)
    elif credentials is not None:
        headers = {"Authorization": credentials}
    details = set()
    for number, (endpoint, method, path) in enumerate(api_routes(app), start=1):
        if endpoint in PUBLIC_ENDPOINTS:
            continue
        # One address per route: more failures than the limit from one address are
        # slowed down (429), which is tested on its own below.
        response = client.open(
            path,
            method=method,
            headers=headers,
            environ_base={"REMOTE_ADDR": f"192.0.2.{number}"},
        )
        body = assert_problem(response, 401)
        # Never a Basic challenge: a browser would prompt, keep the credentials and
        # send them with requests any other web page makes.
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="yinxin-api"'
        details.add(body["detail"])
    # Wrong secret or unknown client: the same answer, no hint which part was wrong.
    assert len(details) == 1


def test_a_wrong_secret_and_an_unknown_client_get_the_same_answer(
    client: FlaskClient, seal_world: SealWorld
) -> None:
    wrong_secret = client.get(
        "/api/v1/seals", headers=basic(seal_world.demo_client_id, "ycs_wrong")
    )
    unknown_client = client.get(
        "/api/v1/seals", headers=basic("cl_ffffffffffffffff", seal_world.demo_secret)
    )
    assert wrong_secret.get_json() == unknown_client.get_json()
    assert (
        assert_problem(wrong_secret, 401)["detail"] == "invalid API client credentials"
    )
    assert wrong_secret.headers == unknown_client.headers


def test_public_routes_need_no_client(app: Flask, client: FlaskClient) -> None:
    assert client.get("/api/v1/openapi.json").status_code == 200
    response = client.post("/api/v1/verify/pdf", data={})
    assert_problem(response, 400, "'file'")


def test_bearer_credentials_work_like_basic_ones(
    client: FlaskClient, seal_world: SealWorld, demo: dict[str, str]
) -> None:
    bearer = {
        "Authorization": f"Bearer {seal_world.demo_client_id}:{seal_world.demo_secret}"
    }
    by_bearer = client.get("/api/v1/seals", headers=bearer)
    assert by_bearer.status_code == 200
    assert by_bearer.get_json() == client.get("/api/v1/seals", headers=demo).get_json()
    wrong = client.get(
        "/api/v1/seals",
        headers={"Authorization": f"Bearer {seal_world.demo_client_id}:ycs_wrong"},
    )
    assert assert_problem(wrong, 401)["detail"] == "invalid API client credentials"


@pytest.mark.parametrize(
    "authorization",
    ["Basic \xff\xfe", "Basic Y2w6eA==\xe9", "Bearer \xe9:\xe9"],
)
def test_an_authorization_header_that_is_not_ascii_is_401_not_500(
    client: FlaskClient, authorization: str
) -> None:
    """Werkzeug raises ValueError decoding Basic credentials that are not ASCII: an
    anonymous caller must not reach the 500 handler (and its traceback in the log)."""
    response = client.get("/api/v1/seals", headers={"Authorization": authorization})
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_failures_are_counted_per_address_and_client_id(
    seal_home: Path,
    seal_world: SealWorld,
    demo: dict[str, str],
    other: dict[str, str],
) -> None:
    """One attacker behind an office's proxy guessing one client's secret slows down
    that client id from that address only: the other clients there keep working."""
    settings = resolve_settings(SettingOverrides(home=seal_home), environ={})
    app = create_app(
        {"TESTING": True, "YINXIN_AUTH_FAILURE_LIMIT": 3}, settings=settings
    )
    client = app.test_client()
    office = {"REMOTE_ADDR": "192.0.2.66"}
    for guess in ("ycs_guess1", "ycs_guess2", "ycs_guess3"):
        wrong = basic(seal_world.demo_client_id, guess)
        response = client.get("/api/v1/seals", headers=wrong, environ_base=office)
        assert response.status_code == 401
    # The guessed-at pair is slowed down even with the right secret: else the answer
    # would tell the guesser when a guess was right.
    blocked = client.get("/api/v1/seals", headers=demo, environ_base=office)
    assert_problem(blocked, 429, "too many failed authentications for this client id")
    assert 1 <= int(blocked.headers["Retry-After"]) <= 300
    # Another client at the same address, and the same client elsewhere, go on.
    colleague = client.get("/api/v1/seals", headers=other, environ_base=office)
    assert colleague.status_code == 200
    elsewhere = client.get(
        "/api/v1/seals", headers=demo, environ_base={"REMOTE_ADDR": "192.0.2.7"}
    )
    assert elsewhere.status_code == 200
    # Guesses at made-up client ids lock nobody real out either, and missing
    # credentials do not count at all.
    for number in range(5):
        made_up = basic(f"cl_{number:016x}", "ycs_guess")
        client.get("/api/v1/seals", headers=made_up, environ_base=office)
        assert client.get("/api/v1/seals", environ_base=office).status_code == 401
    assert (
        client.get("/api/v1/seals", headers=other, environ_base=office).status_code
        == 200
    )
    with app.app_context():
        current_services().close()


@pytest.mark.parametrize("proxies", [0, 1])
def test_forwarded_addresses_count_only_behind_trusted_proxies(
    seal_home: Path, proxies: int
) -> None:
    """Behind one trusted proxy, each forwarded client has its own limits; without
    one, X-Forwarded-For is anyone's to write and changes nothing."""
    settings = resolve_settings(
        SettingOverrides(home=seal_home),
        environ={"YINXIN_TRUSTED_PROXIES": str(proxies)},
    )
    assert settings.trusted_proxies == proxies
    app = create_app(
        {"TESTING": True, "YINXIN_VERIFY_RATE_LIMIT": 1}, settings=settings
    )
    client = app.test_client()
    statuses = [
        client.post(
            "/api/v1/verify/pdf",
            data={"file": (io.BytesIO(b"x"), "x.pdf")},
            headers={"X-Forwarded-For": forwarded},
            environ_base={"REMOTE_ADDR": "10.0.0.1"},
        ).status_code
        for forwarded in ("198.51.100.1", "198.51.100.2")
    ]
    assert statuses == ([200, 200] if proxies else [200, 429])
    with app.app_context():
        current_services().close()


# -- the cross-site guard -----------------------------------------------------------------


def test_every_state_changing_route_refuses_a_request_a_browser_could_forge(
    app: Flask,
    client: FlaskClient,
    seal_home: Path,
    seal_world: SealWorld,
    demo: dict[str, str],
    sample_pdf: bytes,
) -> None:
    """A cached credential sent by a browser with a form another site posts is no
    client's request: 415 without a JSON body or the X-Yinxin-Client header, before
    anything is read, signed or logged."""
    signed = granted_signatures(seal_home)

    def forgeable_bodies() -> list[dict[str, Any]]:
        """What a form on another site makes a browser send (CORS simple requests)."""
        return [
            {},  # no body at all: suspend, reinstate and usage-codes took that
            {"data": "type=x", "content_type": "application/x-www-form-urlencoded"},
            {"data": '{"reason": "x"}', "content_type": "text/plain"},
            {"data": {"file": (io.BytesIO(sample_pdf), "notice.pdf")}},  # multipart
        ]

    paths = [
        path.replace("sl_0123456789abcdef", seal_world.official.id)
        for endpoint, method, path in api_routes(app)
        if method == "POST" and endpoint not in PUBLIC_ENDPOINTS
    ]
    assert len(paths) >= 8
    for path in paths:
        for body in forgeable_bodies():
            response = client.post(path, headers=demo, **body)
            assert_problem(response, 415, "X-Yinxin-Client")
        # What a browser asks before it sends the header or JSON across sites: the
        # node never allows it.
        preflight = client.options(
            path,
            headers={
                "Origin": "https://elsewhere.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-yinxin-client, authorization",
            },
        )
        assert not any(
            name.lower().startswith("access-control-allow-")
            for name in preflight.headers.keys()
        )
    assert granted_signatures(seal_home) == signed
    assert stamp_log(seal_home) == []
    # The same stamp with the header is a client's request.
    stamped = stamp(client, seal_world.official.id, demo, sample_pdf, level="B-B")
    assert stamped.status_code == 200


# -- seals --------------------------------------------------------------------------------


def test_list_shows_only_the_clients_agency(
    client: FlaskClient,
    seal_world: SealWorld,
    demo: dict[str, str],
    other: dict[str, str],
) -> None:
    response = client.get("/api/v1/seals", headers=demo)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    seals = response.get_json()["seals"]
    assert [(s["id"], s["status"], s["granted_to_client"]) for s in seals] == [
        (seal_world.official.id, "active", True),
        (seal_world.suspended.id, "suspended", True),
        (seal_world.ungranted.id, "active", False),
    ]
    assert all("key_label" not in s for s in seals)
    theirs = client.get("/api/v1/seals", headers=other).get_json()["seals"]
    assert [s["id"] for s in theirs] == [seal_world.foreign.id]
    active = client.get("/api/v1/seals?status=active", headers=demo).get_json()["seals"]
    assert [s["id"] for s in active] == [
        seal_world.official.id,
        seal_world.ungranted.id,
    ]
    assert_problem(
        client.get("/api/v1/seals?status=lost", headers=demo),
        400,
        "status must be one of",
    )


def test_one_seal_of_the_agency_only(
    client: FlaskClient, seal_world: SealWorld, demo: dict[str, str]
) -> None:
    by_id = client.get(f"/api/v1/seals/{seal_world.official.id}", headers=demo)
    assert by_id.status_code == 200
    assert by_id.get_json()["es_id"] == seal_world.official.es_id
    by_code = client.get(f"/api/v1/seals/{seal_world.official.es_id}", headers=demo)
    assert by_code.get_json()["id"] == seal_world.official.id


def test_another_agencys_seal_is_answered_like_one_that_does_not_exist(
    client: FlaskClient, seal_world: SealWorld, demo: dict[str, str]
) -> None:
    """Seal codes are sequential: the answer about another agency's seal must not
    confirm it exists, nor name its id."""
    foreign = seal_world.foreign
    unused_code = str(int(foreign.es_id) + 1000).zfill(len(foreign.es_id))
    for theirs, nobodys in (
        (foreign.es_id, unused_code),
        (foreign.id, "sl_ffffffffffffffff"),
    ):
        answers = [
            client.get(f"/api/v1/seals/{reference}", headers=demo)
            for reference in (theirs, nobodys)
        ]
        bodies = [assert_problem(answer, 404) for answer in answers]
        assert bodies[0]["detail"].replace(theirs, "REF") == bodies[1][
            "detail"
        ].replace(nobodys, "REF")
        assert bodies[0]["detail"] == (
            f"this agency has no seal with id or seal code {theirs!r}"
        )
        assert answers[0].headers == answers[1].headers
    text = client.get(f"/api/v1/seals/{foreign.es_id}", headers=demo).get_data(
        as_text=True
    )
    assert foreign.id not in text and foreign.name not in text


# -- stamping -----------------------------------------------------------------------------


def test_stamp_with_own_seal(
    client: FlaskClient,
    seal_home: Path,
    seal_world: SealWorld,
    demo: dict[str, str],
    sample_pdf: bytes,
    tmp_path: Path,
) -> None:
    response = stamp(
        client,
        seal_world.official.id,
        demo,
        sample_pdf,
        filename="关于印发通知.pdf",
        placement=json.dumps(
            [
                {"page": 1, "x_mm": 150, "y_mm": 240},
                {"keyword": "盖章处", "occurrence": "all"},
            ]
        ),
        seam="left",
        level="B-LTA",
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/pdf"
    assert response.headers["Cache-Control"] == "no-store"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith(
        "attachment; filename=\"document-sealed.pdf\"; filename*=UTF-8''"
    )
    assert "%E5%85%B3%E4%BA%8E" in disposition  # 关于
    sealed = response.get_data()
    layout = seal_layout(sealed)
    assert layout.field_page == 1 and layout.drawn_pages == {1, 2, 3}
    report = verify_on_node(seal_home, sealed)
    assert report.valid, report.reason
    assert report.seals[0].seal is not None
    assert report.seals[0].seal.es_id == seal_world.official.es_id
    path = tmp_path / "sealed.pdf"
    path.write_bytes(sealed)
    pdfsig_says_valid(path)

    # Logged: the stamp log names the client and the document, and the key store's
    # audit entry of the seal's signature names the stamp-log entry.
    ((principal, outcome, digest),) = stamp_log(seal_home)
    assert (principal, outcome) == (f"client:{seal_world.demo_client_id}", "stamped")
    assert digest == hashlib.sha256(sample_pdf).hexdigest()
    actors = count_rows(
        seal_home,
        "SELECT count(*) FROM audit_entry WHERE key_label = ? AND actor LIKE ? AND result = 'granted'",
        seal_world.official.key_label,
        f"client:{seal_world.demo_client_id}#stamp-%",
    )
    assert actors == 1


@pytest.mark.parametrize(
    ("seal", "headers", "words", "problem_type"),
    [
        (
            "foreign",
            "demo",
            "this agency has no seal",
            "urn:yinxin:problem:not_found",
        ),
        (
            "official",
            "other",
            "this agency has no seal",
            "urn:yinxin:problem:not_found",
        ),
        ("ungranted", "demo", "has no grant", "urn:yinxin:problem:forbidden"),
        ("suspended", "demo", "suspended", "urn:yinxin:problem:seal-not-usable"),
    ],
)
def test_stamp_refused_signs_and_logs_nothing(
    client: FlaskClient,
    seal_home: Path,
    seal_world: SealWorld,
    sample_pdf: bytes,
    seal: str,
    headers: str,
    words: str,
    problem_type: str,
    request: pytest.FixtureRequest,
) -> None:
    before = granted_signatures(seal_home)
    record = getattr(seal_world, seal)
    response = stamp(
        client,
        record.id,
        request.getfixturevalue(headers),
        sample_pdf,
        placement=AT_150_240,
        level="B-LT",
    )
    not_found = problem_type.endswith("not_found")
    body = assert_problem(response, 404 if not_found else 403, words)
    assert body["type"] == problem_type
    if not_found:
        # The words of a seal that does not exist: nothing about the seal but the
        # reference the client sent.
        assert body["detail"] == (
            f"this agency has no seal with id or seal code {record.id!r}"
        )
    assert granted_signatures(seal_home) == before
    assert stamp_log(seal_home) == []


def test_a_seal_suspended_after_listing_cannot_stamp(
    client: FlaskClient,
    seal_home: Path,
    seal_world: SealWorld,
    demo: dict[str, str],
    sample_pdf: bytes,
    app: Flask,
) -> None:
    first = stamp(client, seal_world.official.id, demo, sample_pdf, level="B-B")
    assert first.status_code == 200
    with app.app_context():
        current_services().seal_registry().suspend_seal(seal_world.official.id)
    signed = granted_signatures(seal_home)
    again = stamp(client, seal_world.official.id, demo, sample_pdf, level="B-B")
    assert_problem(again, 403, "suspended")
    assert granted_signatures(seal_home) == signed
    assert [outcome for _, outcome, _ in stamp_log(seal_home)] == ["stamped"]


def test_stamp_bad_requests(
    client: FlaskClient,
    seal_home: Path,
    seal_world: SealWorld,
    demo: dict[str, str],
    sample_pdf: bytes,
) -> None:
    seal_id = seal_world.official.id
    signed = granted_signatures(seal_home)
    cases: list[tuple[dict[str, str], bytes | None, str]] = [
        ({}, b"just some text, no PDF", "not a PDF"),
        ({"placement": "{not json"}, sample_pdf, "not valid JSON"),
        ({"placement": '{"page": 1, "x_mm": 10}'}, sample_pdf, "missing y_mm"),
        (
            {"placement": '{"page": 0, "x_mm": 10, "y_mm": 10}'},
            sample_pdf,
            "page must be a whole number",
        ),
        (
            {"placement": '{"page": 1, "x_mm": "ten", "y_mm": 10}'},
            sample_pdf,
            "x_mm must be a number",
        ),
        (
            {"placement": '{"keyword": "盖章处", "occurrence": 0}'},
            sample_pdf,
            "counted from 1",
        ),
        (
            {"placement": '{"keyword": "盖章处", "colour": "red"}'},
            sample_pdf,
            "unknown field(s) colour",
        ),
        (
            {"placement": json.dumps([{"page": 1, "x_mm": 1, "y_mm": 1}] * 51)},
            sample_pdf,
            "at most 50",
        ),
        (
            {"placement": '{"page": 7, "x_mm": 10, "y_mm": 10}'},
            sample_pdf,
            "page 7 does not exist",
        ),
        ({"placement": '{"keyword": "没有的字"}'}, sample_pdf, "was not found"),
        ({"level": "B-XXL"}, sample_pdf, "unknown PAdES level"),
        ({"seam": "top"}, sample_pdf, "seam must be false, true, right or left"),
        ({"seam": "true", "seam_pages": "1"}, sample_pdf, "2 to 200 pages"),
        # str.isdigit() takes superscripts, which int() refuses (a 500 before).
        ({"seam": "true", "seam_pages": "²"}, sample_pdf, "a whole number from 2"),
        ({"certify": "perhaps"}, sample_pdf, "certify must be true or false"),
        ({}, None, "'file'"),
    ]
    for fields, document, words in cases:
        if document is None:
            response = client.post(
                f"/api/v1/seals/{seal_id}/stamp",
                headers={**demo, **CLIENT_MARKER},
                data=fields,
            )
        else:
            response = stamp(client, seal_id, demo, document, **fields)
        assert_problem(response, 400, words)
    assert granted_signatures(seal_home) == signed
    assert all(outcome == "failed" for _, outcome, _ in stamp_log(seal_home))


def test_stamp_unknown_seal_is_404(
    client: FlaskClient, demo: dict[str, str], sample_pdf: bytes
) -> None:
    assert_problem(
        stamp(client, "sl_ffffffffffffffff", demo, sample_pdf), 404, "no seal"
    )


def test_uploads_over_the_limit_are_413(
    client: FlaskClient, seal_home: Path, seal_world: SealWorld, demo: dict[str, str]
) -> None:
    signed = granted_signatures(seal_home)
    too_big = b"%PDF-1.7\n" + b"0" * (50 * 1024 * 1024 + 1)
    for path, headers in (
        (f"/api/v1/seals/{seal_world.official.id}/stamp", {**demo, **CLIENT_MARKER}),
        ("/api/v1/verify/pdf", {}),
    ):
        response = client.post(
            path, headers=headers, data={"file": (io.BytesIO(too_big), "big.pdf")}
        )
        body = assert_problem(response, 413, "larger than")
        assert body["limit"] == 50 * 1024 * 1024
    assert granted_signatures(seal_home) == signed
    assert stamp_log(seal_home) == []


def test_a_file_part_over_a_lower_limit_is_413(
    seal_home: Path, seal_world: SealWorld, demo: dict[str, str], sample_pdf: bytes
) -> None:
    settings = resolve_settings(SettingOverrides(home=seal_home), environ={})
    app = create_app(
        {"TESTING": True, "YINXIN_MAX_UPLOAD_BYTES": len(sample_pdf) - 1},
        settings=settings,
    )
    client = app.test_client()
    # Under the body limit (which allows room for the form), over the file limit.
    response = stamp(client, seal_world.official.id, demo, sample_pdf)
    assert_problem(response, 413, f"larger than {len(sample_pdf) - 1} bytes")
    with app.app_context():
        current_services().close()
    assert stamp_log(seal_home) == []


# -- verification -------------------------------------------------------------------------


def test_verify_endpoint(
    client: FlaskClient, seal_world: SealWorld, demo: dict[str, str], sample_pdf: bytes
) -> None:
    sealed = stamp(
        client, seal_world.official.id, demo, sample_pdf, placement=AT_150_240
    ).get_data()
    valid = client.post(
        "/api/v1/verify/pdf", data={"file": (io.BytesIO(sealed), "sealed.pdf")}
    )
    assert valid.status_code == 200
    report = valid.get_json()
    assert (report["valid"], report["usable"], report["exit_code"]) == (True, True, 0)
    assert report["signatures"][0]["seal"]["es_id"] == seal_world.official.es_id

    tampered = bytearray(sealed)
    tampered[tampered.index(b"stream", 200) + 20] ^= 0x01
    invalid = client.post(
        "/api/v1/verify/pdf", data={"file": (io.BytesIO(bytes(tampered)), "x.pdf")}
    )
    assert invalid.status_code == 200
    assert (invalid.get_json()["valid"], invalid.get_json()["exit_code"]) == (False, 1)

    garbage = client.post(
        "/api/v1/verify/pdf", data={"file": (io.BytesIO(b"GIF89a..."), "x.pdf")}
    )
    assert garbage.status_code == 200
    assert (garbage.get_json()["usable"], garbage.get_json()["exit_code"]) == (False, 2)

    unsigned = client.post(
        "/api/v1/verify/pdf", data={"file": (io.BytesIO(sample_pdf), "x.pdf")}
    )
    assert (
        unsigned.get_json()["reason"] == "the document carries no seals or signatures"
    )


def test_verify_refuses_trust_roots_from_the_caller(
    client: FlaskClient,
    seal_home: Path,
    seal_world: SealWorld,
    demo: dict[str, str],
    sample_pdf: bytes,
) -> None:
    """A "valid" from the node rests on its own roots only: a caller's root (a
    look-alike of a real agency's CA, say) is refused, never trusted."""
    sealed = stamp(
        client, seal_world.official.id, demo, sample_pdf, placement=AT_150_240
    ).get_data()
    root_pem = client.get("/pki/ca/root.pem").get_data()
    for trust in (root_pem, b"not a certificate"):
        response = client.post(
            "/api/v1/verify/pdf",
            data={
                "file": (io.BytesIO(sealed), "x.pdf"),
                "trust": (io.BytesIO(trust), "root.pem"),
            },
        )
        body = assert_problem(response, 400, "against its own root CAs only")
        assert "yinxin verify pdf --trust" in body["detail"]
    as_text = client.post(
        "/api/v1/verify/pdf",
        data={"file": (io.BytesIO(sealed), "x.pdf"), "trust": root_pem.decode()},
    )
    assert_problem(as_text, 400, "against its own root CAs only")


def test_verify_is_rate_limited_per_address(seal_home: Path) -> None:
    settings = resolve_settings(SettingOverrides(home=seal_home), environ={})
    app = create_app(
        {"TESTING": True, "YINXIN_VERIFY_RATE_LIMIT": 2}, settings=settings
    )
    client = app.test_client()
    crowd = {"REMOTE_ADDR": "198.51.100.1"}
    for _ in range(2):
        response = client.post(
            "/api/v1/verify/pdf",
            data={"file": (io.BytesIO(b"x"), "x.pdf")},
            environ_base=crowd,
        )
        assert response.status_code == 200
    limited = client.post(
        "/api/v1/verify/pdf",
        data={"file": (io.BytesIO(b"x"), "x.pdf")},
        environ_base=crowd,
    )
    assert_problem(limited, 429, "too many verifications")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    elsewhere = client.post(
        "/api/v1/verify/pdf",
        data={"file": (io.BytesIO(b"x"), "x.pdf")},
        environ_base={"REMOTE_ADDR": "198.51.100.2"},
    )
    assert elsewhere.status_code == 200
    with app.app_context():
        current_services().close()


# -- the OpenAPI document -----------------------------------------------------------------


def test_openapi_document_describes_every_route(
    app: Flask, client: FlaskClient
) -> None:
    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["clientSecret"] == {
        **document["components"]["securitySchemes"]["clientSecret"],
        "type": "http",
        "scheme": "basic",
    }
    documented = {
        (path, method.upper())
        for path, operations in document["paths"].items()
        for method in operations
    }
    served = set()
    for endpoint, method, _ in api_routes(app):
        rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))
        served.add((path, method))
        operation = document["paths"][path][method.lower()]
        public = operation.get("security") == []
        assert public == (endpoint in PUBLIC_ENDPOINTS), endpoint
        if not public:
            assert "401" in operation["responses"], endpoint
        if not public and method == "POST":
            assert "415" in operation["responses"], endpoint
    assert documented == served
    assert set(document["components"]["schemas"]["VerifyForm"]["properties"]) == {
        "file"
    }
    assert document["components"]["securitySchemes"]["clientBearer"]["scheme"] == (
        "bearer"
    )
    # Every reference resolves.
    text = json.dumps(document)
    for reference in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        node: Any = document
        for part in reference.split("/"):
            node = node[part]


# -- bounded JSON and security headers --------------------------------------------------


def test_deeply_nested_json_is_refused_with_a_reason_not_a_500(
    client: FlaskClient,
    seal_home: Path,
    seal_world: SealWorld,
    demo: dict[str, str],
    sample_pdf: bytes,
) -> None:
    deep = "[" * 50_000 + "]" * 50_000
    # Public: anyone could otherwise make the node fail at will.
    public = client.post(
        "/api/v1/verify/licence",
        data='{"token": ' + deep + "}",
        content_type="application/json",
    )
    assert_problem(public, 400, "the body nests arrays or objects deeper than 32")
    nested_placement = stamp(
        client,
        seal_world.official.id,
        demo,
        sample_pdf,
        placement="[" * 5_000 + "]" * 5_000,
    )
    assert_problem(nested_placement, 400, "placement nests arrays or objects deeper")
    issue = client.post(
        "/api/v1/licenses",
        data='{"type": "x", "data": {"a": ' + deep + "}}",
        content_type="application/json",
        headers=demo,
    )
    assert_problem(issue, 400, "deeper than 32 levels")
    assert stamp_log(seal_home) == []


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1" * 5_000, "too many digits"),  # int()'s digit limit: a plain ValueError
        ('"\\ud800"', "lone UTF-16 surrogate"),  # no character: cannot be encoded
        ('"a\\u0000b"', "NUL"),  # PostgreSQL cannot store it
    ],
)
def test_json_python_cannot_use_is_refused_not_a_500(
    client: FlaskClient,
    seal_world: SealWorld,
    demo: dict[str, str],
    sample_pdf: bytes,
    text: str,
    words: str,
) -> None:
    public = client.post(
        "/api/v1/verify/licence",
        data='{"token": ' + text + "}",
        content_type="application/json",
    )
    assert_problem(public, 400, "not valid JSON")
    search = client.post(
        "/api/v1/licenses/search",
        data='{"holder": ' + text + "}",
        content_type="application/json",
        headers=demo,
    )
    assert_problem(search, 400, "not valid JSON")
    placement = stamp(
        client,
        seal_world.official.id,
        demo,
        sample_pdf,
        placement='{"page": 1, "x_mm": ' + text + ', "y_mm": 5}',
    )
    assert_problem(placement, 400, "placement is not valid JSON")


def test_every_response_carries_the_security_headers(
    client: FlaskClient, seal_world: SealWorld, demo: dict[str, str], sample_pdf: bytes
) -> None:
    responses = {
        "JSON": client.get("/api/v1/seals", headers=demo),
        "problem": client.get("/api/v1/seals"),
        "OpenAPI": client.get("/api/v1/openapi.json"),
        "PDF": stamp(client, seal_world.official.id, demo, sample_pdf, level="B-B"),
        "DER": client.get("/pki/ca/root.crt"),
        "not found": client.get("/nowhere"),
        "health": client.get("/healthz"),
    }
    for name, response in responses.items():
        headers = response.headers
        assert headers["X-Content-Type-Options"] == "nosniff", name
        assert headers["Content-Security-Policy"] == (
            "default-src 'none'; frame-ancestors 'none'"
        ), name
        assert headers["Referrer-Policy"] == "no-referrer", name
    assert responses["PDF"].status_code == 200
    assert responses["PDF"].headers["Content-Disposition"].startswith("attachment;")
