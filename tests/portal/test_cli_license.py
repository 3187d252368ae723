"""`yinxin license ...` in process on copies of the licence template (the demo instance,
its official seal, and one licence of each shipped type issued by `license issue`):
types and identifiers, issuance (every shipped example accepted as it is, every data
problem named), reading, status changes, usage codes, copies, batches, and the
verifier's exit codes. Acceptance 2: a presentation made by `license present` is
accepted by the sd-jwt reference implementation and shows only the chosen fields;
with key binding a wrong nonce is refused by both."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto.jwk import JWK
from sd_jwt.verifier import SDJWTVerifier

from certs.sdjwt import present
from hsm_sim.errors import ErrorCategory
from portal.cli import cli
from portal.cli_support import operator_name
from portal.config import SettingOverrides, resolve_settings
from portal.services import Services
from tests.portal.conftest import (
    BUSINESS_LICENCE,
    FOOD_PERMIT,
    SHIPPED_TYPES,
    TOUR_GUIDE,
    LicenceWorld,
    cli_json,
    example_data,
    example_file,
)
from tests.portal.live_server import YINXIN_SCRIPT, subprocess_environment
from tests.portal.seal_checks import one_error_line, verify_on_node

# GB/T 36904 identifiers of real licences (issue 5).
REAL_IDENTIFIERS = (
    "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.002.S",
    "1.2.156.3005.2.11100000000013338W087.11370800MB28559184.37080001202411010001.001.3",
    "1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.0",
)


def invoke(home: Path | None, *args: str, stdin: str | None = None) -> Result:
    arguments = [*args] if home is None else [*args, "--home", str(home)]
    return CliRunner().invoke(cli, arguments, input=stdin)


def verify_json(home: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = invoke(home, "license", "verify", *args, "--json")
    assert result.stdout.count("\n") == 1, result.output
    return result.exit_code, json.loads(result.stdout)


def citizen_id(body: str) -> str:
    """A citizen identity number: 17 digits and their GB 11643 check character."""
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(
        int(digit) * weight for digit, weight in zip(body, weights, strict=True)
    )
    return body + "10X98765432"[total % 11]


def document_signer(home: Path) -> x509.Certificate:
    services = Services(resolve_settings(SettingOverrides(home=home), environ={}))
    try:
        (signer,) = services.licence_registry().document_signers()
        return signer.certificate
    finally:
        services.close()


# -- types and identifiers, no instance needed -----------------------------------------


def test_types_lists_every_shipped_type(tmp_path: Path) -> None:
    result = invoke(None, "license", "types", "--json")
    assert result.exit_code == 0, result.output
    types = {t["code"]: t for t in json.loads(result.stdout)["types"]}
    assert set(SHIPPED_TYPES) <= set(types)
    business = types[BUSINESS_LICENCE]
    assert business["name"] == {"zh": "营业执照", "en": "Business licence"}
    names = {field["name"] for field in business["fields"]}
    assert {"uscc", "name", "legal_representative", "registered_capital"} <= names
    assert "legal_representative" in business["disclosable_fields"]
    assert types[TOUR_GUIDE]["holder"]["kind"] == "person"

    human = invoke(None, "license", "types")
    assert human.exit_code == 0
    assert "营业执照" in human.stdout and "食品经营许可证" in human.stdout
    assert "docs/examples/licences/" in human.stdout


@pytest.mark.parametrize("identifier", REAL_IDENTIFIERS)
def test_check_id_accepts_real_identifiers(identifier: str) -> None:
    result = invoke(None, "license", "check-id", identifier, "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["valid"] is True and document["identifier"] == identifier
    assert invoke(None, "license", "check-id", identifier).stdout.startswith("valid: ")


@pytest.mark.parametrize(
    ("identifier", "reason"),
    [
        (REAL_IDENTIFIERS[0][:-1] + "T", "the check character should be S, got T"),
        (REAL_IDENTIFIERS[1].replace("W087", "W088"), "the check character should be"),
        (REAL_IDENTIFIERS[2].replace(".002.", ".02."), "the version is 3 digits"),
        (
            REAL_IDENTIFIERS[2].lower(),
            "character 33 of the identifier (in the type code) is 'w'",
        ),
        ("1.2.156.3005.2.11100000000013338W009", "5 fields after"),
    ],
)
def test_check_id_says_what_is_wrong(identifier: str, reason: str) -> None:
    result = invoke(None, "license", "check-id", identifier)
    assert result.exit_code == 1
    assert result.stdout.startswith("invalid: ") and reason in result.stdout
    document = json.loads(
        invoke(None, "license", "check-id", identifier, "--json").stdout
    )
    assert document["valid"] is False and reason in document["reason"]


# -- issuing ----------------------------------------------------------------------------


@pytest.mark.parametrize("type_code", SHIPPED_TYPES)
def test_each_shipped_example_is_issued_as_it_is(
    licence_world: LicenceWorld, type_code: str, tmp_path: Path
) -> None:
    """The template issued each example with `license issue`, unchanged."""
    issued = {
        BUSINESS_LICENCE: licence_world.business,
        FOOD_PERMIT: licence_world.food,
        TOUR_GUIDE: licence_world.guide,
    }[type_code]
    identifier = issued["identifier"]
    assert identifier.startswith(
        f"1.2.156.3005.2.{type_code}.{licence_world.demo_uscc}."
    )
    assert invoke(None, "license", "check-id", identifier).exit_code == 0
    assert issued["token"].startswith("LC1:")
    assert issued["sd_jwt"].endswith("~") and issued["sd_jwt"].count("~") > 3
    assert issued["qr_version"] <= 20
    assert issued["status"] == "valid" and issued["version"] == 1
    assert issued["data"] == {
        name: issued["data"][name] for name in example_data(type_code)
    }
    pdf = Path(issued["pdf"]).read_bytes()
    assert pdf.startswith(b"%PDF") and len(pdf) == issued["pdf_bytes"]


def test_issue_writes_the_sealed_pdf_and_says_what_it_made(
    licence_home: Path, licence_world: LicenceWorld, tmp_path: Path
) -> None:
    data = example_data(FOOD_PERMIT) | {"number": "JY24403050077777"}
    data_file = tmp_path / "food.json"
    data_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "food.pdf"
    result = invoke(
        licence_home, "license", "issue", "--type", FOOD_PERMIT,
        "--agency", licence_world.demo_uscc, "--data", str(data_file),
        "--out-pdf", str(out), "--valid-until", "2027-12-31",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    identifier = re.search(r"Issued licence (\S+?); the sealed PDF", result.stdout)
    assert identifier is not None, result.stdout
    assert "valid until  2027-12-31" in result.stdout
    report = verify_on_node(licence_home, out.read_bytes())
    assert report.valid, report.reason
    assert report.signatures[0].seal is not None
    shown = cli_json(licence_home, "license", "show", identifier[1])
    assert shown["valid_until"] == "2027-12-31" and shown["token"].startswith("LC1:")


def test_issue_names_every_problem_of_the_data(
    licence_home: Path, licence_world: LicenceWorld, tmp_path: Path
) -> None:
    data = example_data(BUSINESS_LICENCE)
    data.update(uscc="91440300MA5GYX001X", registered_capital="lots", colour="red")
    del data["address"]
    data_file = tmp_path / "bad.json"
    data_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "never.pdf"
    result = invoke(
        licence_home, "license", "issue", "--type", BUSINESS_LICENCE,
        "--agency", licence_world.demo_uscc, "--data", str(data_file),
        "--out-pdf", str(out),
    )  # fmt: skip
    line = one_error_line(result, ErrorCategory.BAD_REQUEST)
    assert "4 problems" in line
    for named in ("uscc", "registered_capital", "'colour'", "address"):
        assert named in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    ("changes", "category", "words"),
    [
        ({"--type": "11100000YXML00000Q999"}, ErrorCategory.NOT_FOUND, "Q999"),
        ({"--agency": "11410182005291054B"}, ErrorCategory.NOT_FOUND, "agency"),
        (
            {"--valid-until": "2030-01-01", "--long-term": None},
            ErrorCategory.BAD_REQUEST,
            "not both",
        ),
        ({"--data": "broken.json"}, ErrorCategory.BAD_REQUEST, "not valid JSON: "),
        ({"--data": "list.json"}, ErrorCategory.BAD_REQUEST, "one JSON object"),
        (
            {"--holder-key": "list.json"},
            ErrorCategory.BAD_REQUEST,
            "holds no public key",
        ),
        (
            {"--holder-key": "p384.pem"},
            ErrorCategory.BAD_REQUEST,
            "not an EC P-256 key",
        ),
    ],
)
def test_issue_refusals_are_one_line(
    licence_home: Path,
    licence_world: LicenceWorld,
    tmp_path: Path,
    changes: dict[str, str | None],
    category: ErrorCategory,
    words: str,
) -> None:
    (tmp_path / "broken.json").write_text('{"uscc": ', encoding="utf-8")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    (tmp_path / "p384.pem").write_bytes(
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    options: dict[str, str | None] = {
        "--type": TOUR_GUIDE,
        "--agency": licence_world.demo_uscc,
        "--data": str(example_file(TOUR_GUIDE)),
        "--out-pdf": str(tmp_path / "out.pdf"),
    }
    for name, value in changes.items():
        in_work = value is not None and value.endswith((".json", ".pem"))
        options[name] = str(tmp_path / value) if in_work and value else value
    arguments = [
        item
        for name, value in options.items()
        for item in ((name,) if value is None else (name, value))
    ]
    result = invoke(licence_home, "license", "issue", *arguments)
    assert words in one_error_line(result, category)
    assert not (tmp_path / "out.pdf").exists()


def test_an_agency_without_an_official_seal_cannot_issue(
    licence_home: Path, tmp_path: Path
) -> None:
    cli_json(
        licence_home,
        "agency",
        "add",
        "--name",
        "荥阳市司法局",
        "--code",
        "11410182005291054B",
    )
    result = invoke(
        licence_home, "license", "issue", "--type", TOUR_GUIDE,
        "--agency", "11410182005291054B", "--data", str(example_file(TOUR_GUIDE)),
        "--out-pdf", str(tmp_path / "out.pdf"),
    )  # fmt: skip
    assert "no active official seal" in one_error_line(result, ErrorCategory.CONFLICT)


# -- reading, renewing, status ------------------------------------------------------------


def test_show_and_list(licence_home: Path, licence_world: LicenceWorld) -> None:
    identifier = licence_world.business["identifier"]
    shown = cli_json(licence_home, "license", "show", identifier)
    assert shown["token"] == licence_world.business["token"]
    assert shown["holder_name"] == example_data(BUSINESS_LICENCE)["name"]
    human = invoke(licence_home, "license", "show", identifier).stdout
    assert "统一社会信用代码" in human and "long-term (长期)" in human

    listed = cli_json(licence_home, "license", "list")["licences"]
    assert [r["type_code"] for r in listed] == [
        TOUR_GUIDE,
        FOOD_PERMIT,
        BUSINESS_LICENCE,
    ]
    by_holder = cli_json(licence_home, "license", "list", "--holder", "印信示例科技")
    assert [r["identifier"] for r in by_holder["licences"]] == [identifier]
    by_type = cli_json(licence_home, "license", "list", "--type", FOOD_PERMIT)
    assert [r["type_code"] for r in by_type["licences"]] == [FOOD_PERMIT]
    missing = invoke(licence_home, "license", "show", identifier[:-1] + "0")
    assert "no licence with identifier" in one_error_line(
        missing, ErrorCategory.NOT_FOUND
    )


def test_renew_makes_the_next_version_and_the_old_one_verifies_revoked(
    licence_home: Path, licence_world: LicenceWorld, tmp_path: Path
) -> None:
    old = licence_world.food
    data = example_data(FOOD_PERMIT) | {"premises": "深圳市南山区示例路2号"}
    data_file = tmp_path / "changed.json"
    data_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    new = cli_json(
        licence_home, "license", "renew", old["identifier"], "--data", str(data_file),
        "--out-pdf", str(tmp_path / "v2.pdf"),
    )  # fmt: skip
    assert new["version"] == 2 and new["previous"] == old["identifier"]
    assert new["identifier"].split(".")[-2] == "002"
    assert (tmp_path / "v2.pdf").read_bytes().startswith(b"%PDF")
    assert (
        cli_json(licence_home, "license", "show", old["identifier"])["status"]
        == "superseded"
    )
    code, verdict = verify_json(licence_home, "--token", old["token"])
    assert (code, verdict["verdict"]) == (1, "REVOKED")
    assert f"replaced by version {new['identifier']}" in verdict["reason"]
    code, verdict = verify_json(licence_home, "--token", new["token"])
    assert (code, verdict["verdict"]) == (0, "VALID")


def test_suspend_reinstate_revoke(
    licence_home: Path, licence_world: LicenceWorld
) -> None:
    identifier, token = (
        licence_world.business["identifier"],
        licence_world.business["token"],
    )
    suspended = cli_json(
        licence_home, "license", "suspend", identifier, "--reason", "核查中"
    )
    assert suspended["status"] == "suspended" and "核查中" in suspended["status_note"]
    assert verify_json(licence_home, "--token", token)[1]["verdict"] == "SUSPENDED"
    again = invoke(licence_home, "license", "suspend", identifier)
    assert "cannot become suspended" in one_error_line(again, ErrorCategory.CONFLICT)
    assert (
        cli_json(licence_home, "license", "reinstate", identifier)["status"] == "valid"
    )
    assert verify_json(licence_home, "--token", token)[1]["verdict"] == "VALID"
    no_reason = invoke(licence_home, "license", "revoke", identifier)
    assert no_reason.exit_code == 2 and "--reason" in no_reason.stderr
    human = invoke(licence_home, "license", "revoke", identifier, "--reason", "吊销")
    assert human.exit_code == 0
    assert (
        human.stdout
        == f"Licence {identifier} is revoked (吊销 (cli:{operator_name()})).\n"
    )
    code, verdict = verify_json(licence_home, "--token", token)
    assert (code, verdict["verdict"], verdict["status"]["status"]) == (
        1,
        "REVOKED",
        "invalid",
    )
    reinstated = invoke(licence_home, "license", "reinstate", identifier)
    assert "cannot become valid" in one_error_line(reinstated, ErrorCategory.CONFLICT)


# -- the holder's side --------------------------------------------------------------------


def reference_verifier_key(signer: x509.Certificate, region: str) -> Any:
    def issuer_key(issuer: str, header: Mapping[str, Any]) -> JWK:
        assert issuer == region
        return JWK.from_pyca(signer.public_key())

    return issuer_key


def test_a_presentation_shows_only_the_chosen_fields_to_the_reference_verifier(
    licence_home: Path, licence_world: LicenceWorld
) -> None:
    """Acceptance 2, without key binding."""
    identifier = licence_world.business["identifier"]
    made = cli_json(
        licence_home, "license", "present", "--id", identifier,
        "--disclose", "name,legal_representative",
    )  # fmt: skip
    assert (
        made["disclosed"] == ["name", "legal_representative"] and not made["key_bound"]
    )
    signer = document_signer(licence_home)
    payload = SDJWTVerifier(
        made["presentation"], reference_verifier_key(signer, "110000")
    ).get_verified_payload()
    data = example_data(BUSINESS_LICENCE)
    assert payload["name"] == data["name"]
    assert payload["legal_representative"] == data["legal_representative"]
    assert payload["licence_id"] == identifier
    hidden = {"uscc", "address", "registered_capital", "business_scope", "company_type"}
    assert not hidden & set(payload)

    code, ours = verify_json(licence_home, "--sd-jwt", made["presentation"])
    assert (code, ours["verdict"]) == (0, "VALID")
    assert sorted(ours["disclosed"]) == ["legal_representative", "name"]
    # Plain output is the presentation alone, for a pipe.
    plain = invoke(
        licence_home, "license", "present", "--id", identifier, "--disclose", "name"
    )
    assert plain.stdout.count("~") >= 2 and plain.stdout.count("\n") == 1


def test_key_binding_a_wrong_nonce_is_refused_by_both(
    licence_home: Path, licence_world: LicenceWorld
) -> None:
    """Acceptance 2, with key binding (the guide card is bound to the holder's key)."""
    identifier = licence_world.guide["identifier"]
    made = cli_json(
        licence_home, "license", "present", "--id", identifier, "--disclose", "name,level",
        "--holder-key", str(licence_world.holder_key), "--nonce", "n-1", "--aud", "bank",
    )  # fmt: skip
    assert made["key_bound"] is True
    presentation = made["presentation"]
    callback = reference_verifier_key(document_signer(licence_home), "110000")
    payload = SDJWTVerifier(
        presentation, callback, expected_aud="bank", expected_nonce="n-1"
    ).get_verified_payload()
    assert payload["name"] == example_data(TOUR_GUIDE)["name"]
    assert not {"id_number", "card_number", "gender"} & set(payload)
    with pytest.raises(ValueError, match="Invalid nonce"):
        SDJWTVerifier(presentation, callback, expected_aud="bank", expected_nonce="n-2")

    code, right = verify_json(
        licence_home, "--sd-jwt", presentation, "--nonce", "n-1", "--aud", "bank"
    )
    assert (code, right["verdict"], right["key_bound"]) == (0, "VALID", True)
    code, wrong = verify_json(
        licence_home, "--sd-jwt", presentation, "--nonce", "n-2", "--aud", "bank"
    )
    assert (code, wrong["verdict"]) == (1, "INVALID_SIGNATURE")
    assert "nonce" in wrong["reason"]
    code, audience = verify_json(
        licence_home, "--sd-jwt", presentation, "--nonce", "n-1", "--aud", "shop"
    )
    assert code == 1 and "aud" in audience["reason"]
    # The CLI presents a bound credential only with its key ...
    unbound = CliRunner().invoke(
        cli,
        ["license", "present", "--id", identifier, "--disclose", "name"]
        + ["--home", str(licence_home)],
    )
    assert unbound.exit_code == 2
    assert "is bound to its holder's key" in one_error_line(
        unbound, ErrorCategory.BAD_REQUEST
    )
    # ... and a presentation made without it anyway is refused by a verifier that
    # asked for key binding.
    services = Services(resolve_settings(SettingOverrides(home=licence_home), {}))
    try:
        issued_form = services.licence_registry().licence_sd_jwt(identifier)
    finally:
        services.close()
    code, refused = verify_json(
        licence_home,
        "--sd-jwt",
        present(issued_form, disclose=["name"]),
        "--nonce",
        "n-1",
        "--aud",
        "bank",
    )
    assert code == 1 and refused["verdict"] != "VALID"


def test_presenting_with_another_key_or_an_unknown_field_fails_clearly(
    licence_home: Path, licence_world: LicenceWorld
) -> None:
    guide, business = (
        licence_world.guide["identifier"],
        licence_world.business["identifier"],
    )
    cases = [
        (
            (guide, "name", "--holder-key", str(licence_world.stranger_key), "--nonce", "n", "--aud", "a"),
            "not the key the credential is bound to",
        ),
        (
            (business, "name", "--holder-key", str(licence_world.holder_key), "--nonce", "n", "--aud", "a"),
            "not bound to a holder key",
        ),
        ((business, "name,shoe_size"), "no selectively disclosable field named shoe_size"),
        ((business, "Name!"), "is not a field name"),
    ]  # fmt: skip
    for (identifier, disclose, *extra), words in cases:
        result = invoke(
            licence_home,
            "license",
            "present",
            "--id",
            identifier,
            "--disclose",
            disclose,
            *extra,
        )
        assert words in one_error_line(result, ErrorCategory.BAD_REQUEST)
    usage = invoke(
        licence_home,
        "license",
        "present",
        "--id",
        business,
        "--disclose",
        "name",
        "--nonce",
        "n",
    )
    assert usage.exit_code == 2 and "--holder-key" in usage.stderr


def test_bind_key_then_present_with_key_binding(
    licence_home: Path, licence_world: LicenceWorld
) -> None:
    identifier = licence_world.business["identifier"]
    bound = cli_json(
        licence_home,
        "license",
        "bind-key",
        identifier,
        "--holder-key",
        str(licence_world.stranger_key),
    )
    assert bound["sd_jwt"] != licence_world.business["sd_jwt"]
    made = cli_json(
        licence_home, "license", "present", "--id", identifier, "--disclose", "name",
        "--holder-key", str(licence_world.stranger_key), "--nonce", "n-9", "--aud", "bank",
    )  # fmt: skip
    code, verdict = verify_json(
        licence_home,
        "--sd-jwt",
        made["presentation"],
        "--nonce",
        "n-9",
        "--aud",
        "bank",
    )
    assert (code, verdict["verdict"], verdict["key_bound"]) == (0, "VALID", True)


# -- usage codes and copies ---------------------------------------------------------------


def test_usage_codes_parse_their_lifetime(
    licence_home: Path, licence_world: LicenceWorld
) -> None:
    identifier = licence_world.food["identifier"]
    for ttl, lifetime in (
        ("10m", dt.timedelta(minutes=10)),
        ("2h", dt.timedelta(hours=2)),
        ("1d", dt.timedelta(days=1)),
        ("90s", dt.timedelta(seconds=90)),
    ):
        made = cli_json(
            licence_home, "license", "usage-code", "--id", identifier, "--ttl", ttl
        )
        assert re.fullmatch(r"[0-9A-Z]{5}-[0-9A-Z]{5}", made["code"])
        assert made["fetch_url"].endswith(f"/api/v1/licenses/by-code/{made['code']}")
        assert made["uses"] == 1
        left = dt.datetime.fromisoformat(made["expires_at"]) - dt.datetime.now(dt.UTC)
        assert abs(left - lifetime) < dt.timedelta(seconds=30)
    for ttl, words in (
        ("10x", "not a number and a unit"),
        ("30s", "from 1 minute to 7 days"),
        ("8d", "7 days"),
    ):
        result = invoke(
            licence_home, "license", "usage-code", "--id", identifier, "--ttl", ttl
        )
        assert words in one_error_line(result, ErrorCategory.BAD_REQUEST)
    human = invoke(
        licence_home, "license", "usage-code", "--id", identifier, "--uses", "3",
        "--purpose", "银行开户",
    )  # fmt: skip
    assert human.exit_code == 0 and "3 use(s)" in human.stdout


def test_a_watermarked_copy_is_sealed_and_verifies(
    licence_home: Path, licence_world: LicenceWorld, tmp_path: Path
) -> None:
    out = tmp_path / "copy.pdf"
    made = cli_json(
        licence_home, "license", "copy", "--id", licence_world.food["identifier"],
        "--purpose", "银行开户", "--out", str(out),
    )  # fmt: skip
    assert made["bytes"] == out.stat().st_size
    code, verdict = verify_json(licence_home, "--pdf", str(out))
    assert (code, verdict["verdict"]) == (0, "VALID"), verdict["reason"]
    assert verdict["seal"]["agency_uscc"] == licence_world.demo_uscc


def test_batch_issues_each_file_and_reports_the_bad_one(
    licence_home: Path, licence_world: LicenceWorld, tmp_path: Path
) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    base = example_data(TOUR_GUIDE)
    people = [
        ("李四", citizen_id("11010519900307001"), "D-1101-000777"),
        ("王五", citizen_id("11010519880808003"), "D-1101-000778"),
    ]
    for n, (name, id_number, card) in enumerate(people):
        data = base | {"name": name, "id_number": id_number, "card_number": card}
        (source / f"guide-{n}.json").write_text(
            json.dumps(data, ensure_ascii=False), encoding="utf-8"
        )
    (source / "guide-9.json").write_text(
        json.dumps(base | {"level": "legendary"}), encoding="utf-8"
    )
    (source / "notes.txt").write_text("not a licence", encoding="utf-8")
    result = invoke(
        licence_home, "license", "batch", "--type", TOUR_GUIDE, "--agency",
        licence_world.demo_uscc, "--in", str(source), "--out", str(target), "--json",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert [Path(i["file"]).name for i in report["issued"]] == [
        "guide-0.json",
        "guide-1.json",
    ]
    assert [Path(f["file"]).name for f in report["failed"]] == ["guide-9.json"]
    assert "level" in report["failed"][0]["error"]
    for n in (0, 1):
        written = json.loads((target / f"guide-{n}.json").read_text(encoding="utf-8"))
        assert written["token"].startswith("LC1:")
        assert verify_json(licence_home, "--token", written["token"])[0] == 0
        assert (target / f"guide-{n}.pdf").read_bytes().startswith(b"%PDF")
    assert not (target / "guide-9.pdf").exists()


# -- verifying ------------------------------------------------------------------------------


def test_verify_exit_codes_and_inputs(
    licence_home: Path, licence_world: LicenceWorld, tmp_path: Path
) -> None:
    token = licence_world.food["token"]
    code, valid = verify_json(licence_home, "--token", token)
    assert (code, valid["verdict"]) == (0, "VALID")
    assert valid["fields"]["number"] == example_data(FOOD_PERMIT)["number"]
    assert valid["status"]["checked"] is True

    from_stdin = invoke(
        licence_home, "license", "verify", "--token", "-", "--json", stdin=token + "\n"
    )
    assert (
        from_stdin.exit_code == 0
        and json.loads(from_stdin.stdout)["verdict"] == "VALID"
    )

    code, garbage = verify_json(licence_home, "--token", "LC1:NOT-BASE45~~")
    assert (code, garbage["verdict"]) == (2, "MALFORMED")
    tampered = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    code, broken = verify_json(licence_home, "--token", tampered)
    assert code in (1, 2) and broken["verdict"] != "VALID"

    not_an_image = tmp_path / "x.png"
    not_an_image.write_bytes(b"GIF89a not really")
    code, unreadable = verify_json(licence_home, "--qr-image", str(not_an_image))
    assert (code, unreadable["verdict"]) == (2, "MALFORMED")

    human = invoke(licence_home, "license", "verify", "--token", token)
    assert human.exit_code == 0
    assert human.stdout.startswith("VALID — ") and "食品经营许可证" in human.stdout

    for arguments, words in (
        ((), "exactly one of"),
        (("--token", token, "--sd-jwt", "x~"), "exactly one of"),
        (("--token", token, "--nonce", "n", "--aud", "a"), "go with --sd-jwt"),
        (("--sd-jwt", "x~", "--nonce", "n"), "together"),
    ):
        result = invoke(licence_home, "license", "verify", *arguments)
        assert result.exit_code == 2 and words in result.stderr, result.output


def test_verify_needs_no_pin(licence_home: Path, licence_world: LicenceWorld) -> None:
    """Verifying needs no key: with the PIN file gone, the console script still verifies,
    offline from the node's stored status lists."""
    (licence_home / "secrets" / "hsm-user.pin").unlink()
    run = subprocess.run(
        [
            str(YINXIN_SCRIPT), "license", "verify", "--home", str(licence_home),
            "--token", licence_world.business["token"], "--json",
        ],
        env=subprocess_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    verdict = json.loads(run.stdout)
    assert verdict["verdict"] == "VALID" and verdict["status"]["checked"] is True
    # Issuing does need it: one line saying so.
    issue = invoke(
        licence_home, "license", "issue", "--type", TOUR_GUIDE, "--agency",
        licence_world.demo_uscc, "--data", str(example_file(TOUR_GUIDE)),
        "--out-pdf", str(licence_home.parent / "x.pdf"),
    )  # fmt: skip
    assert issue.exit_code == 3, issue.output
