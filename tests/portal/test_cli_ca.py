"""`yinxin ca ...` on a real demo instance (soft HSM, SQLite, the demo ceremony)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from hsm_sim.errors import ErrorCategory
from pki.ceremony_config import DEMO_CEREMONY_PATH
from pki.oids import StandardOID
from portal.cli import cli
from portal.config import SettingOverrides, resolve_settings
from portal.errors import EXIT_CODE_BY_CATEGORY
from portal.services import Services

CA_NAMES = ["root", "seal-ca", "document-ca", "infrastructure-ca"]


def invoke(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--home", str(home)])


def run_json(home: Path, *args: str) -> dict[str, Any]:
    result = invoke(home, *args, "--json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def one_error_line(result: Result, category: ErrorCategory) -> str:
    assert result.exit_code == EXIT_CODE_BY_CATEGORY[category], result.output
    assert result.stdout == ""
    text = result.stderr
    assert text.startswith("yinxin: error: ") and text.count("\n") == 1, text
    assert "Traceback" not in text
    return text.removeprefix("yinxin: error: ").rstrip("\n")


def state_of(home: Path) -> dict[str, object]:
    """What issuing, revoking or publishing would change: rows, audit entries, keys."""
    with sqlite3.connect(f"file:{home / 'yinxin.sqlite3'}?mode=ro", uri=True) as db:
        counts: dict[str, object] = {
            table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("audit_entry", "certificate", "crl", "ocsp_response")
        }
        counts["revoked"] = db.execute(
            "SELECT count(*) FROM certificate WHERE revoked_at IS NOT NULL"
        ).fetchone()[0]
    counts["keys"] = sorted(k["label"] for k in run_json(home, "hsm", "keys")["keys"])
    return counts


def write_csr(path: Path, key: Any, *, der: bool = False) -> Path:
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Not The Agency"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "whatever the CSR says"),
                ]
            )
        )
        .sign(key, hashes.SHA256())
    )
    encoding = serialization.Encoding.DER if der else serialization.Encoding.PEM
    path.write_bytes(csr.public_bytes(encoding))
    return path


def certificates(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


# -- the hierarchy ---------------------------------------------------------------------


def test_ca_list_shows_the_hierarchy_and_the_service_credentials(
    instance_home: Path,
) -> None:
    listed = run_json(instance_home, "ca", "list")

    cas = {ca["name"]: ca for ca in listed["cas"]}
    assert list(cas) == CA_NAMES
    assert cas["root"]["role"] == "root" and cas["root"]["parent"] is None
    assert (
        cas["root"]["algorithm"] == "ec-p384" and cas["root"]["key_label"] == "ca-root"
    )
    assert cas["seal-ca"]["parent"] == "root"
    assert cas["seal-ca"]["subject"] == (
        "CN=Yinxin Demo Seal CA,O=示范省政务服务信任中心,C=CN"
    )
    assert cas["seal-ca"]["crl_url"] == "http://127.0.0.1:8000/pki/crl/seal-ca.crl"
    assert all(len(ca["serial"]) >= 30 for ca in cas.values())
    purposes = {s["purpose"]: s for s in listed["services"]}
    assert set(purposes) == {"tsa", "seal-maker", "document-signer"}
    assert purposes["tsa"]["key_label"] == "tsa-1"
    assert "Infrastructure CA" in purposes["tsa"]["issuer"]

    human = invoke(instance_home, "ca", "list")
    assert human.exit_code == 0, human.output
    for name in ("root", "seal-ca", "Timestamp Authority"):
        assert name in human.stdout


def test_ca_export_writes_the_chain_up_to_the_root(
    instance_home: Path, tmp_path: Path
) -> None:
    out = tmp_path / "seal-ca-chain.pem"
    exported = run_json(
        instance_home, "ca", "export", "--name", "seal-ca", "--out", str(out)
    )

    chain = certificates(out)
    assert [c.subject.rfc4514_string() for c in chain] == exported["subjects"]
    assert len(chain) == 2 and chain[1].subject == chain[1].issuer == chain[0].issuer
    chain[0].verify_directly_issued_by(chain[1])

    missing = invoke(
        instance_home, "ca", "export", "--name", "nope", "--out", str(tmp_path / "x")
    )
    assert "there is no CA named 'nope'" in one_error_line(
        missing, ErrorCategory.NOT_FOUND
    )
    assert not (tmp_path / "x").exists()


def test_ca_ceremony_makes_a_hierarchy_once(tmp_path: Path) -> None:
    home = tmp_path / "bare"
    made = invoke(home, "init")
    assert made.exit_code == 0, made.output
    assert "no CA hierarchy yet" in made.stderr
    assert not (home / "ceremony.toml").exists()
    issue = invoke(
        home, "ca", "issue", "--profile", "document-signer", "--generate",
        "--label", "ds", "--out", str(tmp_path / "ds.pem"),
    )  # fmt: skip
    assert "no CA hierarchy yet" in one_error_line(issue, ErrorCategory.NOT_FOUND)

    ceremony = run_json(home, "ca", "ceremony", "--config", str(DEMO_CEREMONY_PATH))

    assert [ca["name"] for ca in ceremony["cas"]] == CA_NAMES
    assert (home / "ceremony.toml").read_text() == DEMO_CEREMONY_PATH.read_text()
    assert [ca["name"] for ca in run_json(home, "ca", "list")["cas"]] == CA_NAMES
    before = state_of(home)

    again = invoke(home, "ca", "ceremony", "--config", str(DEMO_CEREMONY_PATH))
    assert "already has a CA hierarchy" in one_error_line(again, ErrorCategory.CONFLICT)
    assert state_of(home) == before


def test_ca_ceremony_refuses_a_bad_file_before_making_anything(
    tmp_path: Path,
) -> None:
    home = tmp_path / "bare"
    assert invoke(home, "init").exit_code == 0
    before = state_of(home)
    broken = tmp_path / "broken.toml"
    broken.write_text(
        DEMO_CEREMONY_PATH.read_text().replace(
            "lifetime_days = 7305", "lifetime = 7305"
        )
    )

    refused = invoke(home, "ca", "ceremony", "--config", str(broken))
    assert "root: unknown key(s) lifetime" in one_error_line(
        refused, ErrorCategory.BAD_REQUEST
    )
    missing = invoke(home, "ca", "ceremony")
    assert "--config FILE" in one_error_line(missing, ErrorCategory.BAD_REQUEST)
    assert state_of(home) == before
    assert not (home / "ceremony.toml").exists()


# -- issuance --------------------------------------------------------------------------


def test_ca_issue_with_a_new_hsm_key_names_the_registered_agency(
    instance_home: Path, demo_uscc: str, tmp_path: Path
) -> None:
    out = tmp_path / "seal.pem"
    issued = run_json(
        instance_home, "ca", "issue", "--profile", "seal", "--agency", demo_uscc,
        "--generate", "--label", "seal-official-1", "--out", str(out),
    )  # fmt: skip

    leaf, issuer = certificates(out)
    assert issued["serial"] == format(leaf.serial_number, "x")
    assert issued["issuer"] == "seal-ca" and issued["profile"] == "seal"
    assert leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == (
        "某某市市场监督管理局"
    )
    assert leaf.subject.get_attributes_for_oid(StandardOID.ORGANIZATION_IDENTIFIER)[
        0
    ].value == (f"NTRCN-{demo_uscc}")
    assert issued["chain"] == [issuer.subject.rfc4514_string()]
    leaf.verify_directly_issued_by(issuer)
    keys = {k["label"]: k for k in run_json(instance_home, "hsm", "keys")["keys"]}
    assert keys["seal-official-1"]["usages"] == ["seal"]
    key_usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert key_usage.content_commitment and not key_usage.digital_signature


@pytest.mark.parametrize("der", [False, True], ids=["pem-csr", "der-csr"])
def test_ca_issue_from_a_csr_takes_the_subject_from_the_registry(
    instance_home: Path, demo_uscc: str, tmp_path: Path, der: bool
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = write_csr(tmp_path / "client.csr", key, der=der)
    out = tmp_path / "client.pem"

    issued = run_json(
        instance_home, "ca", "issue", "--profile", "api-client", "--agency", demo_uscc,
        "--csr", str(csr), "--common-name", "某某市政务服务网", "--days", "90",
        "--out", str(out),
    )  # fmt: skip

    leaf = certificates(out)[0]
    assert issued["issuer"] == "infrastructure-ca" and issued["key_label"] is None
    assert "Not The Agency" not in leaf.subject.rfc4514_string()
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "某某市政务服务网"
    )
    assert leaf.public_key().public_numbers() == key.public_key().public_numbers()
    lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert lifetime.days == 90


def bad_signature_csr(path: Path) -> Path:
    good = write_csr(path, ec.generate_private_key(ec.SECP256R1()), der=True)
    data = bytearray(good.read_bytes())
    data[-5] ^= 0x01  # inside the signature value
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("case", "category", "reason"),
    [
        ("bad signature", ErrorCategory.BAD_REQUEST, "does not prove possession"),
        ("rsa-1024", ErrorCategory.BAD_REQUEST, "(RSA-1024) is too weak"),
        ("p-192", ErrorCategory.BAD_REQUEST, "(EC secp192r1) is too weak"),
        ("not a csr", ErrorCategory.BAD_REQUEST, "not a PKCS#10"),
        ("unknown profile", ErrorCategory.BAD_REQUEST, "unknown certificate profile"),
        ("ca profile", ErrorCategory.BAD_REQUEST, "only by the CA ceremony"),
        ("unknown agency", ErrorCategory.NOT_FOUND, "no agency"),
        ("taken label", ErrorCategory.CONFLICT, "ca-root"),
        (
            "both key paths",
            ErrorCategory.BAD_REQUEST,
            "either --csr FILE or --generate",
        ),
    ],
)
def test_ca_issue_refuses_bad_requests_with_one_line_and_changes_nothing(
    instance_home: Path,
    demo_uscc: str,
    tmp_path: Path,
    case: str,
    category: ErrorCategory,
    reason: str,
) -> None:
    csr = tmp_path / "request.csr"
    write_csr(csr, ec.generate_private_key(ec.SECP256R1()))
    profile, agency = "seal", demo_uscc
    key_path = ["--csr", str(csr)]
    if case == "bad signature":
        bad_signature_csr(csr)
    elif case == "rsa-1024":
        write_csr(csr, rsa.generate_private_key(65537, 1024))
    elif case == "p-192":
        write_csr(csr, ec.generate_private_key(ec.SECP192R1()))
    elif case == "not a csr":
        csr.write_bytes(b"-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n")
    elif case == "unknown profile":
        profile = "tls-server"
    elif case == "ca profile":
        profile = "sub-ca"
    elif case == "unknown agency":
        agency = "91350100M000100Y43"
    elif case == "taken label":
        key_path = ["--generate", "--label", "ca-root"]
    elif case == "both key paths":
        key_path += ["--generate", "--label", "x"]
    out = tmp_path / "out.pem"
    before = state_of(instance_home)

    result = invoke(
        instance_home, "ca", "issue", "--profile", profile, "--agency", agency,
        *key_path, "--out", str(out),
    )  # fmt: skip

    assert reason in one_error_line(result, category)
    after = state_of(instance_home)
    audit_before = before["audit_entry"]
    assert isinstance(audit_before, int)
    with sqlite3.connect(
        f"file:{instance_home / 'yinxin.sqlite3'}?mode=ro", uri=True
    ) as db:
        added = db.execute(
            "SELECT operation, key_label, result, detail FROM audit_entry "
            "WHERE seq > ? ORDER BY seq",
            (audit_before,),
        ).fetchall()
    # Only a taken label gets as far as the key store, which audits the attempt to make
    # the key before the token finds the label taken: nothing is signed or kept.
    taken = "a key labelled 'ca-root' already exists"
    expected_audit = (
        [
            ("generate-key", "ca-root", "granted", "ec-p256 for seal"),
            ("generate-key", "ca-root", "failed", taken),
        ]
        if case == "taken label"
        else []
    )
    assert added == expected_audit
    assert after == {**before, "audit_entry": audit_before + len(added)}
    assert not out.exists()


def test_ca_issue_refuses_an_unwritable_out_before_issuing(
    instance_home: Path, demo_uscc: str, tmp_path: Path
) -> None:
    before = state_of(instance_home)
    result = invoke(
        instance_home, "ca", "issue", "--profile", "seal", "--agency", demo_uscc,
        "--generate", "--label", "seal-x", "--out", str(tmp_path / "no" / "seal.pem"),
    )  # fmt: skip
    assert "does not exist" in one_error_line(result, ErrorCategory.BAD_REQUEST)
    assert state_of(instance_home) == before


# -- revocation and CRLs ---------------------------------------------------------------


def issue_seal(home: Path, uscc: str, tmp_path: Path, label: str) -> str:
    issued = run_json(
        home, "ca", "issue", "--profile", "seal", "--agency", uscc,
        "--generate", "--label", label, "--out", str(tmp_path / f"{label}.pem"),
    )  # fmt: skip
    serial: str = issued["serial"]
    return serial


def test_ca_revoke_then_again_is_a_no_op(
    instance_home: Path, demo_uscc: str, tmp_path: Path
) -> None:
    serial = issue_seal(instance_home, demo_uscc, tmp_path, "seal-r")
    pasted = ":".join(serial[i : i + 2] for i in range(0, len(serial), 2)).upper()

    revoked = run_json(
        instance_home, "ca", "revoke", pasted, "--reason", "key-compromise"
    )
    assert revoked == revoked | {
        "serial": serial,
        "issuer": "seal-ca",
        "reason": "keyCompromise",
        "changed": True,
    }
    before = state_of(instance_home)

    again = invoke(instance_home, "ca", "revoke", serial, "--reason", "superseded")
    assert again.exit_code == 0, again.output
    assert again.stdout.startswith(f"certificate {serial} was already revoked")
    assert again.stdout.rstrip().endswith("nothing changed")
    assert state_of(instance_home) == before


@pytest.mark.parametrize(
    ("args", "category", "reason"),
    [
        (["revoke", "abcdef0123", "--reason", "keyCompromise"], ErrorCategory.NOT_FOUND,
         "no certificate with serial abcdef0123"),
        (["revoke", "not-hex", "--reason", "keyCompromise"], ErrorCategory.BAD_REQUEST,
         "is not a hexadecimal serial number"),
        (["revoke", "abcdef0123", "--reason", "because"], ErrorCategory.BAD_REQUEST,
         "unknown revocation reason 'because'"),
        (["release", "abcdef0123"], ErrorCategory.NOT_FOUND,
         "no certificate with serial abcdef0123"),
        (["crl", "--name", "nope", "--out", "{tmp}/nope.crl"], ErrorCategory.NOT_FOUND,
         "there is no CA named 'nope'"),
        (["crl", "--name", "seal-ca", "--out", "{tmp}/missing/x.crl"],
         ErrorCategory.BAD_REQUEST, "does not exist"),
    ],
)  # fmt: skip
def test_revocation_commands_refuse_bad_input_and_change_nothing(
    instance_home: Path,
    tmp_path: Path,
    args: list[str],
    category: ErrorCategory,
    reason: str,
) -> None:
    before = state_of(instance_home)
    result = invoke(
        instance_home, "ca", *(a.replace("{tmp}", str(tmp_path)) for a in args)
    )
    assert reason in one_error_line(result, category)
    assert state_of(instance_home) == before


def test_a_hold_is_released_and_a_final_revocation_is_not(
    instance_home: Path, demo_uscc: str, tmp_path: Path
) -> None:
    serial = issue_seal(instance_home, demo_uscc, tmp_path, "seal-h")

    run_json(instance_home, "ca", "revoke", serial, "--reason", "certificateHold")
    released = run_json(instance_home, "ca", "release", serial)
    assert released["changed"] is True and released["reason"] is None
    not_held = invoke(instance_home, "ca", "release", serial)
    assert not_held.exit_code == 0 and "is not on hold" in not_held.stdout

    run_json(instance_home, "ca", "revoke", serial, "--reason", "cessationOfOperation")
    before = state_of(instance_home)
    final = invoke(instance_home, "ca", "release", serial)
    assert "which is final" in one_error_line(final, ErrorCategory.CONFLICT)
    assert state_of(instance_home) == before


def test_ca_crl_publishes_and_writes_der_or_pem(
    instance_home: Path, demo_uscc: str, tmp_path: Path
) -> None:
    serial = issue_seal(instance_home, demo_uscc, tmp_path, "seal-c")
    run_json(instance_home, "ca", "revoke", serial, "--reason", "superseded")

    full = run_json(
        instance_home,
        "ca",
        "crl",
        "--name",
        "seal-ca",
        "--out",
        str(tmp_path / "a.crl"),
    )
    as_pem = run_json(
        instance_home,
        "ca",
        "crl",
        "--name",
        "seal-ca",
        "--out",
        str(tmp_path / "b.pem"),
    )
    forced = run_json(
        instance_home, "ca", "crl", "--name", "seal-ca", "--der",
        "--out", str(tmp_path / "c.pem"),
    )  # fmt: skip
    delta = run_json(
        instance_home, "ca", "crl", "--name", "seal-ca", "--delta",
        "--out", str(tmp_path / "d.crl"),
    )  # fmt: skip

    der_crl = x509.load_der_x509_crl((tmp_path / "a.crl").read_bytes())
    pem_crl = x509.load_pem_x509_crl((tmp_path / "b.pem").read_bytes())
    x509.load_der_x509_crl((tmp_path / "c.pem").read_bytes())
    delta_crl = x509.load_der_x509_crl((tmp_path / "d.crl").read_bytes())
    assert (full["format"], as_pem["format"], forced["format"]) == ("der", "pem", "der")
    for crl in (der_crl, pem_crl):
        assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
    # The delta lists changes since its base, a full CRL that already has it.
    assert delta_crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is None
    assert full["delta"] is False and full["entry_count"] >= 1
    # Each full CRL is followed by its delta; CRL numbers are shared and increase.
    assert as_pem["number"] == full["number"] + 2
    assert delta["delta"] is True and delta["base_number"] == forced["number"]
    assert delta["number"] > forced["number"] + 1


def test_ca_refresh_signs_what_is_missing_then_nothing(
    instance_home: Path, demo_uscc: str, tmp_path: Path
) -> None:
    issue_seal(instance_home, demo_uscc, tmp_path, "seal-f")

    first = run_json(instance_home, "ca", "refresh")
    second = run_json(instance_home, "ca", "refresh")

    assert first["ocsp"] >= 1
    # What the first refresh signed is covered by a signed audit checkpoint at once.
    assert first["audit_checkpoints"] == 1
    assert second == {
        "crls": 0,
        "ocsp": 0,
        "status_lists": 0,
        "discarded_licences": 0,
        "abandoned_stamps": 0,
        "abandoned_issuances": 0,
        "audit_checkpoints": 0,
    }
    human = invoke(instance_home, "ca", "refresh")
    assert human.stdout == (
        "Re-signed 0 CRL(s), each with its delta CRL, 0 OCSP response(s) and 0 "
        "licence status list(s); discarded 0 unfinished licence reservation(s); "
        "failed 0 abandoned stamp(s) and 0 abandoned certificate issuance(s); "
        "signed 0 audit checkpoint(s).\n"
    )


def test_ca_refresh_reports_a_ca_it_could_not_refresh_and_exits_1(
    instance_home: Path,
    demo_uscc: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    issue_seal(instance_home, demo_uscc, tmp_path, "seal-g")
    services = Services(
        resolve_settings(SettingOverrides(home=instance_home), environ={})
    )
    try:
        # The seal CA's OCSP responder key is gone: its responses cannot be signed.
        label = services.revocation().responder(
            services.certificate_authority().issuer("seal-ca")
        ).responder_key.label
        services.keystore().destroy_key(label)
    finally:
        services.close()

    as_json = invoke(instance_home, "ca", "refresh", "--json")
    human = invoke(instance_home, "ca", "refresh")

    assert as_json.exit_code == human.exit_code == 1
    assert json.loads(as_json.stdout)["failed"] == 1
    assert "1 CA(s) could not be refreshed" in human.stderr
    assert any(
        "seal-ca" in record.getMessage() and record.levelname == "WARNING"
        for record in caplog.records
    )
