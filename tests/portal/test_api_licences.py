"""The licence API in process (Flask's test client) on copies of a template made once
for this module: the seal template (the demo agency's official seal granted to its
client by `yinxin init --demo`; another agency with its own seal and client) with a
business licence and a food permit issued through the API.

Covered: issuance and every refusal (nothing signed for them), an agency's own
licences only (403 from the identifier alone), status changes, usage codes (one
fetch, then the same 404 as an unknown code; every fetch logged; rate-limited),
verification of each input kind, and /status/<list> (forms, cache headers, 304)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient

from certs import decode_and_verify_status_list, qr_png
from certs.identifiers import compute_check_character
from certs.sdjwt import present, public_jwk
from certs.status import decode_and_verify_status_list_cwt
from pki.registry import add_api_client, register_agency
from pki.uscc import compute_uscc_check_character
from portal.app import create_app
from portal.config import SettingOverrides, resolve_settings
from portal.context import current_services
from tests.portal.conftest import (
    BUSINESS_LICENCE,
    FOOD_PERMIT,
    SealWorld,
    example_data,
    granted_signatures,
)
from tests.portal.seal_checks import verify_on_node
from tests.portal.test_api import assert_problem, basic

JSON_HEADERS = {"Content-Type": "application/json"}
CLIENT_MARKER = {"X-Yinxin-Client": "1"}
# An agency of the demo region with an API client and no seal.
THIRD_AGENCY = "11110000MB0009102" + compute_uscc_check_character("11110000MB0009102")


@dataclasses.dataclass(frozen=True)
class Issued:
    """The API's answers for the template's two licences."""

    business: dict[str, Any]
    food: dict[str, Any]


def make_app(home: Path, **config: Any) -> Flask:
    settings = resolve_settings(SettingOverrides(home=home), environ={})
    return create_app({"TESTING": True, **config}, settings=settings)


def close(app: Flask) -> None:
    with app.app_context():
        current_services().close()


def issue(
    client: FlaskClient, headers: dict[str, str], type_code: str, **fields: Any
) -> Any:
    body = {"type": type_code, "data": example_data(type_code), **fields}
    return client.post("/api/v1/licenses", json=body, headers=headers)


@pytest.fixture(scope="module")
def api_template(
    seal_template: tuple[Path, SealWorld], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Issued]:
    home = tmp_path_factory.mktemp("licence-api") / "instance"
    shutil.copytree(seal_template[0], home)
    world = seal_template[1]
    app = make_app(home)
    client = app.test_client()
    demo = basic(world.demo_client_id, world.demo_secret)
    try:
        business = issue(client, demo, BUSINESS_LICENCE)
        food = issue(client, demo, FOOD_PERMIT)
        assert business.status_code == food.status_code == 201, business.get_json()
    finally:
        close(app)
    return home, Issued(business.get_json(), food.get_json())


@pytest.fixture
def issued(api_template: tuple[Path, Issued]) -> Issued:
    return api_template[1]


@pytest.fixture
def home(api_template: tuple[Path, Issued], tmp_path: Path) -> Path:
    copy = tmp_path / "instance"
    shutil.copytree(api_template[0], copy)
    return copy


@pytest.fixture
def app(home: Path) -> Iterator[Flask]:
    app = make_app(home)
    yield app
    close(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def demo(seal_world: SealWorld) -> dict[str, str]:
    return basic(seal_world.demo_client_id, seal_world.demo_secret)


@pytest.fixture
def other(seal_world: SealWorld) -> dict[str, str]:
    return basic(seal_world.other_client_id, seal_world.other_secret)


# -- issuing ----------------------------------------------------------------------------


def test_issued_licence_reads_back_with_its_pdf(
    client: FlaskClient, home: Path, issued: Issued, demo: dict[str, str]
) -> None:
    document = issued.business
    identifier = document["identifier"]
    assert document["token"].startswith("LC1:") and document["sd_jwt"].endswith("~")
    assert document["links"] == {
        "self": f"/api/v1/licenses/{identifier}",
        "pdf": f"/api/v1/licenses/{identifier}/pdf",
        "status_list": document["status_list"]["uri"],
    }
    assert document["created_by"].startswith("client:cl_")

    one = client.get(document["links"]["self"], headers=demo)
    assert one.status_code == 200 and one.headers["Cache-Control"] == "no-store"
    assert one.get_json()["identifier"] == identifier
    assert one.get_json()["data"] == document["data"]
    pdf = client.get(document["links"]["pdf"], headers=demo)
    assert pdf.mimetype == "application/pdf"
    assert f'filename="{identifier}.pdf"' in pdf.headers["Content-Disposition"]
    report = verify_on_node(home, pdf.get_data())
    assert report.valid, report.reason

    listed = client.get("/api/v1/licenses", headers=demo).get_json()["licences"]
    assert [r["type_code"] for r in listed] == [FOOD_PERMIT, BUSINESS_LICENCE]
    only = client.get(f"/api/v1/licenses?type={FOOD_PERMIT}&limit=5", headers=demo)
    assert [r["type_code"] for r in only.get_json()["licences"]] == [FOOD_PERMIT]
    assert_problem(client.get("/api/v1/licenses?limit=0", headers=demo), 400, "limit")
    # str.isdigit() takes superscripts, which int() refuses (a 500 before).
    assert_problem(client.get("/api/v1/licenses?limit=²", headers=demo), 400, "limit")


def test_search_takes_the_holder_in_the_body(
    client: FlaskClient, issued: Issued, demo: dict[str, str]
) -> None:
    """A holder's name or ID number is personal data: POST /licenses/search keeps it
    out of the URL, and finds what GET /licenses?holder= finds."""
    holder = issued.food["data"]["uscc"]  # the holder's code: an ID number
    searched = client.post(
        "/api/v1/licenses/search", json={"holder": holder}, headers=demo
    )
    assert (
        searched.status_code == 200 and searched.headers["Cache-Control"] == "no-store"
    )
    found = [r["identifier"] for r in searched.get_json()["licences"]]
    assert found == [issued.food["identifier"]]
    by_query = client.get(f"/api/v1/licenses?holder={holder}", headers=demo)
    assert [r["identifier"] for r in by_query.get_json()["licences"]] == found
    typed = client.post(
        "/api/v1/licenses/search",
        json={"type": BUSINESS_LICENCE, "limit": 1},
        headers=demo,
    )
    assert [r["identifier"] for r in typed.get_json()["licences"]] == [
        issued.business["identifier"]
    ]
    for body, words in (
        ({"holder": "x" * 201}, "holder must be text of at most 200"),
        ({"limit": 0}, "limit must be a whole number from 1 to 1000"),
        ({"limit": "5"}, "limit must be a whole number"),
        ({"name": holder}, "unknown field(s) name"),
    ):
        assert_problem(
            client.post("/api/v1/licenses/search", json=body, headers=demo), 400, words
        )


def test_issue_answers_201_with_location(
    client: FlaskClient, demo: dict[str, str]
) -> None:
    holder = ec.generate_private_key(ec.SECP256R1())
    data = example_data(FOOD_PERMIT) | {"number": "JY24403050011111"}
    response = client.post(
        "/api/v1/licenses",
        json={
            "type": FOOD_PERMIT,
            "data": data,
            "valid_until": "2028-06-30",
            "holder_jwk": public_jwk(holder.public_key()),
        },
        headers=demo,
    )
    assert response.status_code == 201, response.get_json()
    document = response.get_json()
    assert response.headers["Location"] == document["links"]["self"]
    assert document["valid_until"] == "2028-06-30"
    assert document["sd_jwt"].count("~") > 3 and document["qr_version"] <= 20
    presentation = present(
        document["sd_jwt"], disclose=["operator"], holder_key=holder, nonce="n", aud="a"
    )
    verdict = client.post(
        "/api/v1/verify/licence",
        json={"sd_jwt": presentation, "nonce": "n", "aud": "a"},
    ).get_json()
    assert (verdict["verdict"], verdict["key_bound"]) == ("VALID", True)
    assert verdict["fields"]["operator"] == data["operator"]


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"type": BUSINESS_LICENCE, "data": "x"}, 400, "data must be a JSON object"),
        ({"data": {}}, 400, "type is required"),
        ({"type": "11100000YXML00000Q999", "data": {}}, 400, "Q999"),
        ({"type": BUSINESS_LICENCE, "data": {}, "colour": 1}, 400, "unknown field(s) colour"),
        ({"type": BUSINESS_LICENCE, "data": {}, "valid_until": "soon"}, 400, "YYYY-MM-DD"),
        ({"type": BUSINESS_LICENCE, "data": {}, "long_term": "yes"}, 400, "true or false"),
        (
            {"type": BUSINESS_LICENCE, "data": {}, "holder_jwk": {"kty": "RSA"}},
            400,
            "EC P-256",
        ),
        (
            {"type": BUSINESS_LICENCE, "data": {}, "agency": "11410182005291054B"},
            403,
            "cannot issue licences for 11410182005291054B",
        ),
        ({"type": BUSINESS_LICENCE, "data": {}, "seal": "foreign"}, 404, "this agency has no seal"),
        ({"type": BUSINESS_LICENCE, "data": {}, "seal": "ungranted"}, 403, "no grant"),
        ({"type": BUSINESS_LICENCE, "data": {}, "seal": "suspended"}, 403, "suspended"),
        ({"type": BUSINESS_LICENCE, "data": "example"}, 409, "already issued licence"),
    ],
)  # fmt: skip
def test_issue_refusals_sign_nothing(
    client: FlaskClient,
    home: Path,
    seal_world: SealWorld,
    demo: dict[str, str],
    body: dict[str, Any],
    status: int,
    words: str,
) -> None:
    if body.get("data") == "example":
        body = body | {"data": example_data(BUSINESS_LICENCE)}
    if body.get("seal") in ("foreign", "ungranted", "suspended"):
        body = body | {"seal": getattr(seal_world, body["seal"]).id}
    before = granted_signatures(home)
    response = client.post("/api/v1/licenses", json=body, headers=demo)
    assert_problem(response, status, words)
    assert granted_signatures(home) == before


def test_every_data_problem_is_named(client: FlaskClient, demo: dict[str, str]) -> None:
    data = example_data(BUSINESS_LICENCE)
    data.update(registered_capital="lots", established_on="2021-02-30")
    del data["name"]
    response = client.post(
        "/api/v1/licenses", json={"type": BUSINESS_LICENCE, "data": data}, headers=demo
    )
    body = assert_problem(response, 400, "3 problems")
    assert len(body["problems"]) == 3
    for field in ("registered_capital", "established_on", "name"):
        assert any(problem.startswith(field) for problem in body["problems"]), body


def test_bodies_that_are_not_json_objects(
    client: FlaskClient, demo: dict[str, str]
) -> None:
    not_json = client.post(
        "/api/v1/licenses", data=b"{", headers={**demo, **JSON_HEADERS}
    )
    assert_problem(not_json, 400, "not valid JSON")
    form = client.post("/api/v1/licenses", data={"type": "x"}, headers=demo)
    assert_problem(form, 415, "X-Yinxin-Client")
    # Not forgeable cross-site, but still no JSON.
    marked_form = client.post(
        "/api/v1/licenses", data={"type": "x"}, headers={**demo, **CLIENT_MARKER}
    )
    assert_problem(marked_form, 400, "Content-Type: application/json")
    a_list = client.post("/api/v1/licenses", json=[1], headers=demo)
    assert_problem(a_list, 400, "a JSON object")
    too_big = client.post(
        "/api/v1/licenses",
        data=b'{"data": "' + b"x" * (300 * 1024) + b'"}',
        headers={**demo, **JSON_HEADERS},
    )
    assert_problem(too_big, 413, "larger than")


def test_issuing_needs_a_grant_for_an_official_seal(
    app: Flask, client: FlaskClient, seal_world: SealWorld, demo: dict[str, str]
) -> None:
    with app.app_context():
        current_services().seal_registry().withdraw_grant(
            seal_world.official.id, client_id=seal_world.demo_client_id
        )
    data = example_data(FOOD_PERMIT) | {"number": "JY24403050022222"}
    refused = issue(client, demo, FOOD_PERMIT, data=data)
    assert_problem(refused, 403, f"yinxin seal grant {seal_world.official.id}")


def test_an_agency_without_an_official_seal_gets_409(
    app: Flask, client: FlaskClient
) -> None:
    with app.app_context(), current_services().session() as session:
        register_agency(
            session, name="某某市文化和旅游局", uscc=THIRD_AGENCY, region="110000"
        )
        record, secret = add_api_client(session, agency_uscc=THIRD_AGENCY, name="文旅")
    response = issue(client, basic(record.client_id, secret), FOOD_PERMIT)
    assert_problem(response, 409, "no active official seal")


# -- an agency's own licences -----------------------------------------------------------


def with_number(identifier: str, number: str) -> str:
    """The identifier with another licence number and its check character."""
    root, _ = identifier.rsplit(".", 1)
    fields = root.split(".")
    fields[7] = number
    type_code, agency, number, version = fields[5:9]
    check = compute_check_character(type_code + agency + number + version)
    return ".".join([*fields, check])


def test_another_agencys_licences_are_403_from_the_identifier(
    client: FlaskClient, issued: Issued, demo: dict[str, str], other: dict[str, str]
) -> None:
    identifier = issued.business["identifier"]
    for path in (
        f"/api/v1/licenses/{identifier}",
        f"/api/v1/licenses/{identifier}/pdf",
    ):
        assert_problem(client.get(path, headers=other), 403, "its own agency's")
    for action in ("revoke", "suspend", "reinstate", "usage-codes", "renew"):
        response = client.post(
            f"/api/v1/licenses/{identifier}/{action}", json={}, headers=other
        )
        assert_problem(response, 403, "its own agency's")
    # Never issued, but named as the demo agency's: the same 403 for the other client
    # (nothing is looked up), 404 for the demo client.
    unknown = with_number(identifier, "91440300MA5GYX0020")
    assert_problem(client.get(f"/api/v1/licenses/{unknown}", headers=other), 403)
    assert_problem(client.get(f"/api/v1/licenses/{unknown}", headers=demo), 404)
    assert_problem(
        client.get("/api/v1/licenses/not-an-identifier", headers=demo),
        400,
        "starts with 1.2.156.3005.2.",
    )


# -- renewing and status ----------------------------------------------------------------


def test_renew_makes_the_next_version(
    client: FlaskClient, issued: Issued, demo: dict[str, str]
) -> None:
    old = issued.food
    data = example_data(FOOD_PERMIT) | {"premises": "深圳市南山区示例路9号"}
    renewed = client.post(
        f"/api/v1/licenses/{old['identifier']}/renew", json={"data": data}, headers=demo
    )
    assert renewed.status_code == 201, renewed.get_json()
    new = renewed.get_json()
    assert (new["version"], new["previous"]) == (2, old["identifier"])
    again = client.post(
        f"/api/v1/licenses/{old['identifier']}/renew", json={"data": data}, headers=demo
    )
    assert_problem(again, 409, "superseded")
    verdict = client.post("/api/v1/verify/licence", json={"token": old["token"]})
    assert verdict.get_json()["verdict"] == "REVOKED"
    assert new["identifier"] in verdict.get_json()["reason"]


def test_suspend_reinstate_revoke(
    client: FlaskClient, issued: Issued, demo: dict[str, str]
) -> None:
    identifier, token = issued.business["identifier"], issued.business["token"]
    base = f"/api/v1/licenses/{identifier}"

    def verdict() -> str:
        answer = client.post("/api/v1/verify/licence", json={"token": token})
        return str(answer.get_json()["verdict"])

    suspended = client.post(f"{base}/suspend", json={"reason": "核查中"}, headers=demo)
    assert (
        suspended.status_code == 200 and suspended.get_json()["status"] == "suspended"
    )
    assert verdict() == "SUSPENDED"
    # No body at all: with the header that says a script, not a browser, sent it.
    reinstated = client.post(f"{base}/reinstate", headers={**demo, **CLIENT_MARKER})
    assert reinstated.get_json()["status"] == "valid" and verdict() == "VALID"
    assert_problem(client.post(f"{base}/revoke", json={}, headers=demo), 400, "say why")
    assert_problem(
        client.post(f"{base}/reinstate", json={"reason": "x"}, headers=demo),
        400,
        "unknown field(s) reason",
    )
    revoked = client.post(f"{base}/revoke", json={"reason": "吊销"}, headers=demo)
    assert revoked.get_json()["status"] == "revoked"
    assert revoked.get_json()["status_note"].startswith("吊销 (client:cl_")
    assert verdict() == "REVOKED"
    assert_problem(
        client.post(f"{base}/suspend", json={}, headers=demo),
        409,
        "cannot become suspended",
    )


# -- usage codes ------------------------------------------------------------------------


def fetches(home: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(f"file:{home / 'yinxin.sqlite3'}?mode=ro", uri=True) as db:
        return db.execute(
            "SELECT requester, outcome FROM licence_usage_fetch ORDER BY id"
        ).fetchall()


def test_a_usage_code_fetches_the_pdf_once(
    client: FlaskClient, home: Path, issued: Issued, demo: dict[str, str]
) -> None:
    identifier = issued.food["identifier"]
    made = client.post(
        f"/api/v1/licenses/{identifier}/usage-codes",
        json={"ttl": "10m", "purpose": "银行开户"},
        headers=demo,
    )
    assert made.status_code == 201, made.get_json()
    code = made.get_json()["code"]
    assert made.get_json()["fetch"] == f"/api/v1/licenses/by-code/{code}"
    expires = dt.datetime.fromisoformat(made.get_json()["expires_at"])
    assert (
        dt.timedelta(minutes=9)
        < expires - dt.datetime.now(dt.UTC)
        <= dt.timedelta(minutes=10)
    )

    probed = client.head(f"/api/v1/licenses/by-code/{code}")
    assert probed.status_code == 405 and probed.headers["Allow"] == "GET"
    first = client.get(f"/api/v1/licenses/by-code/{code.lower()}")
    assert first.status_code == 200 and first.mimetype == "application/pdf"
    assert first.headers["Cache-Control"] == "no-store"
    assert first.headers["Content-Disposition"] == f'attachment; filename="{identifier}.pdf"'
    own = client.get(f"/api/v1/licenses/{identifier}/pdf", headers=demo)
    assert first.get_data() == own.get_data()
    used_up = client.get(f"/api/v1/licenses/by-code/{code}")
    unknown = client.get("/api/v1/licenses/by-code/AAAAA-AAAAA")
    nonsense = client.get("/api/v1/licenses/by-code/%3Cscript%3E")
    for refused in (used_up, unknown, nonsense):
        assert_problem(refused, 404, "unknown, expired or used up")
    assert used_up.get_json() == unknown.get_json() == nonsense.get_json()
    assert fetches(home) == [
        ("http 127.0.0.1", "fetched"),
        ("http 127.0.0.1", "used-up"),
        ("http 127.0.0.1", "unknown-code"),
        ("http 127.0.0.1", "unknown-code"),
    ]


def test_usage_code_requests_are_checked(
    client: FlaskClient, issued: Issued, demo: dict[str, str]
) -> None:
    base = f"/api/v1/licenses/{issued.food['identifier']}/usage-codes"
    for body, words in (
        ({"ttl": "10 minutes"}, "not a number and a unit"),
        ({"ttl": 30}, "from 1 minute to 7 days"),
        ({"uses": "2"}, "uses must be a whole number"),
        ({"uses": 101}, "1 to 100 uses"),
        ({"code": "mine"}, "unknown field(s) code"),
    ):
        assert_problem(client.post(base, json=body, headers=demo), 400, words)
    two_uses = client.post(base, json={"uses": 2, "ttl": 3600}, headers=demo)
    assert two_uses.status_code == 201 and two_uses.get_json()["uses"] == 2


def test_usage_code_fetches_are_rate_limited(home: Path) -> None:
    app = make_app(home, YINXIN_USAGE_CODE_RATE_LIMIT=2)
    client = app.test_client()
    guesser = {"REMOTE_ADDR": "203.0.113.9"}
    try:
        for _ in range(2):
            response = client.get(
                "/api/v1/licenses/by-code/AAAAA-AAAAA", environ_base=guesser
            )
            assert response.status_code == 404
        limited = client.get(
            "/api/v1/licenses/by-code/AAAAA-AAAAA", environ_base=guesser
        )
        assert_problem(limited, 429, "too many usage-code fetches")
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        elsewhere = client.get(
            "/api/v1/licenses/by-code/AAAAA-AAAAA",
            environ_base={"REMOTE_ADDR": "203.0.113.10"},
        )
        assert elsewhere.status_code == 404
    finally:
        close(app)
    assert fetches(home) == [
        ("http 203.0.113.9", "unknown-code"),
        ("http 203.0.113.9", "unknown-code"),
        ("http 203.0.113.10", "unknown-code"),
    ]


# -- verification -----------------------------------------------------------------------


def test_verify_each_kind_of_input(
    client: FlaskClient, issued: Issued, seal_world: SealWorld, demo: dict[str, str]
) -> None:
    document = issued.business
    by_token = client.post("/api/v1/verify/licence", json={"token": document["token"]})
    assert (
        by_token.status_code == 200 and by_token.headers["Cache-Control"] == "no-store"
    )
    assert by_token.get_json()["verdict"] == "VALID"
    assert (
        by_token.get_json()["fields"]["uscc"] == example_data(BUSINESS_LICENCE)["uscc"]
    )

    image = qr_png(document["token"], ecc="Q")
    by_image = client.post(
        "/api/v1/verify/licence", data={"qr_image": (io.BytesIO(image), "qr.png")}
    )
    assert by_image.get_json()["verdict"] == "VALID"
    assert by_image.get_json()["input"] == "qr-image"

    pdf = client.get(document["links"]["pdf"], headers=demo).get_data()
    by_pdf = client.post(
        "/api/v1/verify/licence", data={"pdf": (io.BytesIO(pdf), "l.pdf")}
    )
    verdict = by_pdf.get_json()
    assert verdict["verdict"] == "VALID", verdict["reason"]
    assert verdict["seal"]["agency_uscc"] == seal_world.demo_uscc

    shown = present(document["sd_jwt"], disclose=["name"])
    by_presentation = client.post("/api/v1/verify/licence", json={"sd_jwt": shown})
    assert by_presentation.get_json()["verdict"] == "VALID"
    assert by_presentation.get_json()["disclosed"] == ["name"]
    asked_binding = client.post(
        "/api/v1/verify/licence", json={"sd_jwt": shown, "nonce": "n", "aud": "bank"}
    )
    assert asked_binding.status_code == 200
    assert asked_binding.get_json()["verdict"] != "VALID"

    for body in ({"token": "LC1:???"}, {"sd_jwt": "not-a-presentation"}):
        garbage = client.post("/api/v1/verify/licence", json=body)
        assert (
            garbage.status_code == 200 and garbage.get_json()["verdict"] == "MALFORMED"
        )
    not_an_image = client.post(
        "/api/v1/verify/licence", data={"qr_image": (io.BytesIO(b"GIF89a"), "x.png")}
    )
    assert not_an_image.get_json()["verdict"] == "MALFORMED"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"json": {}}, "exactly one of token or sd_jwt"),
        ({"json": {"token": "LC1:A", "sd_jwt": "x~"}}, "exactly one of token or sd_jwt"),
        ({"json": {"sd_jwt": "x~", "nonce": "n"}}, "nonce and aud together"),
        ({"json": {"token": "LC1:A", "nonce": "n", "aud": "a"}}, "go with sd_jwt"),
        ({"json": {"token": "LC1:A", "pdf": "x"}}, "unknown field(s) pdf"),
        ({"data": {"note": "x"}}, "or a multipart/form-data upload"),
        (
            {"data": {"pdf": (io.BytesIO(b"x"), "a"), "qr_image": (io.BytesIO(b"y"), "b")}},
            "exactly one file field",
        ),
    ],
)  # fmt: skip
def test_verify_requests_without_exactly_one_input_are_400(
    client: FlaskClient, kwargs: dict[str, Any], words: str
) -> None:
    assert_problem(client.post("/api/v1/verify/licence", **kwargs), 400, words)


def test_licence_and_pdf_verifications_share_the_rate_limit(home: Path) -> None:
    app = make_app(home, YINXIN_VERIFY_RATE_LIMIT=2)
    client = app.test_client()
    crowd = {"REMOTE_ADDR": "198.51.100.5"}
    try:
        pdf = client.post(
            "/api/v1/verify/pdf",
            data={"file": (io.BytesIO(b"x"), "x.pdf")},
            environ_base=crowd,
        )
        licence = client.post(
            "/api/v1/verify/licence", json={"token": "LC1:A"}, environ_base=crowd
        )
        assert pdf.status_code == licence.status_code == 200
        limited = client.post(
            "/api/v1/verify/licence", json={"token": "LC1:A"}, environ_base=crowd
        )
        assert_problem(limited, 429, "too many verifications")
    finally:
        close(app)


# -- status lists -----------------------------------------------------------------------


def test_status_list_forms_and_cache_headers(
    app: Flask, client: FlaskClient, issued: Issued
) -> None:
    uri = issued.business["status_list"]["uri"]
    path = "/status/" + uri.rsplit("/", 1)[1]
    with app.app_context():
        trust = current_services().licence_registry().signer_trust()
    now = dt.datetime.now(dt.UTC)

    jwt = client.get(path)
    assert jwt.status_code == 200 and jwt.mimetype == "application/statuslist+jwt"
    listed = decode_and_verify_status_list(
        jwt.get_data(as_text=True), trust=trust, now=now, expected_uri=uri
    )
    max_age = int(jwt.headers["Cache-Control"].removeprefix("public, max-age="))
    assert 3500 < max_age <= 3600
    assert jwt.headers["Vary"] == "Accept" and jwt.headers["Last-Modified"]
    assert listed.issued_at is not None
    not_modified = client.get(path, headers={"If-None-Match": jwt.headers["ETag"]})
    assert not_modified.status_code == 304

    cwt = client.get(path, headers={"Accept": "application/statuslist+cwt"})
    assert cwt.mimetype == "application/statuslist+cwt"
    decode_and_verify_status_list_cwt(
        cwt.get_data(), trust=trust, now=now, expected_uri=uri
    )
    assert cwt.headers["ETag"] != jwt.headers["ETag"]
    either = client.get(path, headers={"Accept": "*/*"})
    assert either.mimetype == "application/statuslist+jwt"

    for missing in ("/status/110000-999", "/status/../etc"):
        assert_problem(client.get(missing), 404)


def test_a_list_that_cannot_be_signed_past_its_exp_is_503(
    home: Path, issued: Issued
) -> None:
    """No PIN (the key store cannot open) and the stored list expired: nothing valid
    to serve. The verifier then keeps the token's verdict with the status unchecked."""
    (home / "secrets" / "hsm-user.pin").unlink()
    with sqlite3.connect(home / "yinxin.sqlite3") as db:
        db.execute(
            "UPDATE licence_status_list SET expires_at = '2000-01-01 00:00:00.000000'"
        )
    app = make_app(home)
    client = app.test_client()
    try:
        path = "/status/" + issued.business["status_list"]["uri"].rsplit("/", 1)[1]
        unavailable = client.get(path)
        assert_problem(unavailable, 503, "no valid signed form")
        assert unavailable.headers["Retry-After"] == "60"
        verdict = client.post(
            "/api/v1/verify/licence", json={"token": issued.business["token"]}
        ).get_json()
        assert verdict["verdict"] == "VALID"
        assert verdict["status"]["checked"] is False
        assert "status not checked" in verdict["reason"]
    finally:
        close(app)


def test_each_licence_route_needs_its_scope(
    app: Flask,
    client: FlaskClient,
    home: Path,
    issued: Issued,
    seal_world: SealWorld,
    sample_pdf: bytes,
) -> None:
    """Scopes are checked before anything else: a default client (seal:stamp,
    licence:issue, licence:read) may not revoke or make usage codes; a client with
    only licence:read may not issue or stamp."""
    with app.app_context(), current_services().session() as session:
        default, default_secret = add_api_client(
            session, agency_uscc=seal_world.demo_uscc, name="办件系统"
        )
        reader, reader_secret = add_api_client(
            session,
            agency_uscc=seal_world.demo_uscc,
            name="查询系统",
            scopes=["licence:read"],
        )
    default_headers = basic(default.client_id, default_secret)
    reader_headers = basic(reader.client_id, reader_secret)
    base = f"/api/v1/licenses/{issued.business['identifier']}"
    before = granted_signatures(home)
    for action, scope in (
        ("revoke", "licence:manage"),
        ("suspend", "licence:manage"),
        ("reinstate", "licence:manage"),
        ("usage-codes", "licence:usage-code"),
    ):
        refused = client.post(
            f"{base}/{action}",
            json={"reason": "x"} if action == "revoke" else {},
            headers=default_headers,
        )
        assert_problem(refused, 403, f"lacks the '{scope}' scope")
    assert client.get(base, headers=default_headers).status_code == 200
    assert client.get(base, headers=reader_headers).status_code == 200
    for refused, scope in (
        (issue(client, reader_headers, FOOD_PERMIT), "licence:issue"),
        (
            client.post(f"{base}/renew", json={"data": {}}, headers=reader_headers),
            "licence:issue",
        ),
        (
            client.post(
                f"/api/v1/seals/{seal_world.official.id}/stamp",
                headers={**reader_headers, **CLIENT_MARKER},
                data={"file": (io.BytesIO(sample_pdf), "n.pdf")},
            ),
            "seal:stamp",
        ),
    ):
        assert_problem(refused, 403, f"lacks the '{scope}' scope")
    assert granted_signatures(home) == before
    assert client.get(base, headers=default_headers).get_json()["status"] == "valid"
