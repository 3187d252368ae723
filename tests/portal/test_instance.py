"""`yinxin init`: a complete instance, secrets kept out of sight, all or nothing."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect, text

from hsm_sim.errors import ErrorCategory
from pki.ceremony_config import DEMO_CEREMONY_PATH
from pki.uscc import validate_uscc
from portal.cli import cli
from portal.errors import EXIT_CODE_BY_CATEGORY
from tests.conftest import require_tool

YinxinRunner = Callable[..., subprocess.CompletedProcess[str]]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def every_file(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_init_makes_config_database_token_pins_and_audit_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = tmp_path / "instance"
    caplog.set_level(logging.DEBUG)

    result = CliRunner().invoke(cli, ["init", "--home", str(home), "--demo", "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["home"] == str(home)
    assert report["region"] == "110000"
    assert report["audit_key_label"] == "audit-110000"
    assert tomllib.loads((home / "yinxin.toml").read_text()) == {
        "region": "110000",
        "public_base_url": "http://127.0.0.1:8000",
    }
    assert (home / "ceremony.toml").read_text() == DEMO_CEREMONY_PATH.read_text()
    assert report["ceremony_file"] == str(home / "ceremony.toml")
    assert [ca["name"] for ca in report["ceremony"]["cas"]] == [
        "root",
        "seal-ca",
        "document-ca",
        "infrastructure-ca",
    ]
    # The first checkpoint, then the ceremony's certificates, CRLs and OCSP responses.
    assert report["audit_entries"] > len(report["ceremony"]["key_labels"])
    assert (home / "yinxin.sqlite3").is_file() and mode(
        home / "yinxin.sqlite3"
    ) == 0o600
    assert (home / "hsm" / "token.json").is_file()

    secrets = home / "secrets"
    assert mode(secrets) == 0o700
    secret_files = {
        "hsm-user.pin",
        "demo-api-client.secret",
        "demo-staff.password",
    }
    assert {p.name for p in secrets.iterdir()} == secret_files
    assert all(mode(secrets / name) == 0o600 for name in secret_files)
    assert report["user_pin_file"] == str(secrets / "hsm-user.pin")
    # The SO PIN is apart from everything the server reads, to be moved offline.
    offline = home / "move-offline"
    so_pin_file = offline / "hsm-so.pin"
    assert [p.name for p in offline.iterdir()] == ["hsm-so.pin"]
    assert (mode(offline), mode(so_pin_file)) == (0o700, 0o600)
    assert report["so_pin_file"] == str(so_pin_file)
    assert f"move the SO PIN file {so_pin_file} off this machine now" in result.stderr
    assert report["demo"]["client_secret_file"] == str(
        secrets / "demo-api-client.secret"
    )
    # The demo agency's official seal, granted to its client: licences and stamps work
    # out of the box.
    seal = report["demo"]["official_seal_id"]
    shown = CliRunner().invoke(
        cli, ["seal", "show", seal, "--home", str(home), "--json"]
    )
    assert shown.exit_code == 0, shown.output
    described = json.loads(shown.stdout)
    assert (described["type"], described["status"]) == ("official", "active")
    assert described["es_id"] == report["demo"]["official_seal_code"]
    assert described["agency"]["uscc"] == report["demo"]["agency_uscc"]
    assert [g["principal"] for g in described["grants"]] == [
        f"client:{report['demo']['client_id']}"
    ]

    secret_values = [(secrets / name).read_text().strip() for name in secret_files]
    secret_values.append(so_pin_file.read_text().strip())
    assert all(len(value) >= 16 for value in secret_values)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for value in secret_values:
        assert value not in result.stdout and value not in result.stderr
        assert value not in logged
        for path in every_file(home):
            if path.parent not in (secrets, offline):
                assert value.encode() not in path.read_bytes(), path


def test_init_with_a_broken_ceremony_file_makes_nothing(tmp_path: Path) -> None:
    broken = tmp_path / "region.toml"
    broken.write_text('[node]\norganization = "x"\n', encoding="utf-8")
    home = tmp_path / "instance"

    result = CliRunner().invoke(
        cli, ["init", "--home", str(home), "--ceremony-config", str(broken)]
    )

    assert result.exit_code == EXIT_CODE_BY_CATEGORY[ErrorCategory.BAD_REQUEST]
    assert result.stderr == "yinxin: error: ceremony: missing root, issuing\n"
    assert not home.exists()


def test_init_human_output_says_where_the_pins_are_not_what_they_are(
    tmp_path: Path,
) -> None:
    home = tmp_path / "instance"
    result = CliRunner().invoke(cli, ["init", "--home", str(home)])

    assert result.exit_code == 0, result.output
    assert f"user PIN     in {home / 'secrets' / 'hsm-user.pin'}" in result.stdout
    so_pin_file = home / "move-offline" / "hsm-so.pin"
    assert (
        f"SO PIN       in {so_pin_file} (owner only): move it offline now"
        in result.stdout
    )
    for pin_file in (home / "secrets" / "hsm-user.pin", so_pin_file):
        assert pin_file.read_text().strip() not in result.output
    assert not (home / "secrets" / "demo-api-client.secret").exists()


def test_init_writes_the_so_pin_where_it_is_told_and_nowhere_else(
    tmp_path: Path,
) -> None:
    medium = tmp_path / "usb-stick"
    medium.mkdir(mode=0o755)
    so_pin_file = medium / "yinxin-110000-so.pin"
    home = tmp_path / "instance"
    result = CliRunner().invoke(
        cli,
        ["init", "--home", str(home), "--so-pin-file", str(so_pin_file), "--json"],
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["so_pin_file"] == str(so_pin_file)
    assert mode(so_pin_file) == 0o600 and mode(medium) == 0o755
    assert not (home / "move-offline").exists()
    assert [p.name for p in (home / "secrets").iterdir()] == ["hsm-user.pin"]
    # The file is the SO PIN: it unlocks the token.
    unlocked = CliRunner().invoke(
        cli, ["hsm", "unlock", "--home", str(home), "--so-pin-file", str(so_pin_file)]
    )
    assert unlocked.exit_code == 0, unlocked.output

    # A file already there is never overwritten, and nothing is made.
    again = tmp_path / "again"
    refused = CliRunner().invoke(
        cli, ["init", "--home", str(again), "--so-pin-file", str(so_pin_file)]
    )
    assert refused.exit_code == EXIT_CODE_BY_CATEGORY[ErrorCategory.CONFLICT]
    assert refused.stderr == (
        f"yinxin: error: {so_pin_file} already exists; init will not overwrite it\n"
    )
    assert not again.exists()


def test_init_with_a_region_uses_it_for_the_audit_key_and_the_demo_agency(
    tmp_path: Path,
) -> None:
    home = tmp_path / "instance"
    result = CliRunner().invoke(
        cli, ["init", "--home", str(home), "--region", "440300", "--demo", "--json"]
    )

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["audit_key_label"] == "audit-440300"
    uscc = report["demo"]["agency_uscc"]
    assert validate_uscc(uscc) == uscc and uscc[2:8] == "440300"
    assert report["demo"]["agency_name"] == "某某市市场监督管理局"
    assert tomllib.loads((home / "yinxin.toml").read_text())["region"] == "440300"


def test_init_refuses_to_overwrite_an_instance(instance_home: Path) -> None:
    config_before = (instance_home / "yinxin.toml").read_bytes()
    pin_before = (instance_home / "secrets" / "hsm-user.pin").read_bytes()

    result = CliRunner().invoke(cli, ["init", "--home", str(instance_home), "--demo"])

    assert result.exit_code == EXIT_CODE_BY_CATEGORY[ErrorCategory.CONFLICT]
    assert result.stderr == (
        f"yinxin: error: an instance already exists at {instance_home} (yinxin.toml is "
        "there); init leaves it as it is\n"
    )
    assert (instance_home / "yinxin.toml").read_bytes() == config_before
    assert (instance_home / "secrets" / "hsm-user.pin").read_bytes() == pin_before


def test_init_refuses_a_token_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "instance" / "hsm").mkdir(parents=True)
    (tmp_path / "instance" / "hsm" / "token.json").write_text("{}")

    result = CliRunner().invoke(cli, ["init", "--home", str(tmp_path / "instance")])

    assert result.exit_code == EXIT_CODE_BY_CATEGORY[ErrorCategory.CONFLICT]
    assert "HSM token directory" in result.stderr and "is not empty" in result.stderr


def test_a_failed_step_is_named_and_everything_made_is_removed(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    home = tmp_path / "instance"

    result = CliRunner().invoke(
        cli, ["init", "--home", str(home), "--hsm", f"soft:{blocker}/hsm", "--demo"]
    )

    assert result.exit_code == EXIT_CODE_BY_CATEGORY[ErrorCategory.UNAVAILABLE]
    assert result.stderr.startswith(
        "yinxin: error: init failed while creating the HSM token:"
    )
    assert result.stderr.endswith("; nothing was left behind\n")
    assert result.stderr.count("\n") == 1
    assert not home.exists()

    retry = CliRunner().invoke(cli, ["init", "--home", str(home)])
    assert retry.exit_code == 0, retry.output


def test_init_on_postgresql_then_the_instance_works(
    tmp_path: Path, postgres_url: str
) -> None:
    home = tmp_path / "instance"
    result = CliRunner().invoke(
        cli,
        [
            "init",
            "--home",
            str(home),
            "--database-url",
            postgres_url,
            "--demo",
            "--json",
        ],
    )

    assert result.exit_code == 0, result.output
    assert not (home / "yinxin.sqlite3").exists()
    config = tomllib.loads((home / "yinxin.toml").read_text())
    assert config == {
        "region": "110000",
        "database_url": postgres_url,
        "public_base_url": "http://127.0.0.1:8000",
    }
    engine = create_engine(postgres_url)
    try:
        assert {"agency", "api_client", "staff_user", "audit_entry"} <= set(
            inspect(engine).get_table_names()
        )
        with engine.connect() as connection:
            cas = connection.execute(text("SELECT count(*) FROM certificate_authority"))
            assert cas.scalar_one() == 4
    finally:
        engine.dispose()

    verify = CliRunner().invoke(cli, ["audit", "verify", "--home", str(home), "--json"])
    assert verify.exit_code == 0, verify.output
    assert json.loads(verify.stdout)["ok"] is True

    again = CliRunner().invoke(
        cli,
        ["init", "--home", str(tmp_path / "second"), "--database-url", postgres_url],
    )
    assert again.exit_code == EXIT_CODE_BY_CATEGORY[ErrorCategory.CONFLICT]
    assert "already holds a Yinxin schema" in again.stderr
    assert not (tmp_path / "second").exists()


def test_a_failed_migration_on_postgresql_leaves_nothing(
    tmp_path: Path, postgres_url: str
) -> None:
    engine = create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE agency (id integer)"))
    home = tmp_path / "instance"

    result = CliRunner().invoke(
        cli, ["init", "--home", str(home), "--database-url", postgres_url]
    )

    assert result.exit_code != 0
    assert result.stderr.startswith(
        "yinxin: error: init failed while migrating the database:"
    )
    assert result.stderr.count("\n") == 1
    assert not home.exists()
    try:
        assert inspect(engine).get_table_names() == ["agency"]
    finally:
        engine.dispose()


def test_init_with_a_pkcs11_token_and_cleanup_after_a_late_failure(
    tmp_path: Path,
    softhsm_token_env: dict[str, str],
    postgres_url: str,
    run_yinxin: YinxinRunner,
) -> None:
    """Runs the real console script: SoftHSM reads its configuration once per process."""
    first = run_yinxin(
        "init",
        "--home",
        str(tmp_path / "first"),
        "--demo",
        "--json",
        **softhsm_token_env,
    )

    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["user_pin_file"] is None and report["so_pin_file"] is None
    secrets = tmp_path / "first" / "secrets"
    assert {p.name for p in secrets.iterdir()} == {
        "demo-api-client.secret",
        "demo-staff.password",
    }
    assert softhsm_token_env["YINXIN_HSM_PIN"] not in first.stdout + first.stderr

    def token_keys() -> list[str]:
        keys = run_yinxin(
            "hsm",
            "keys",
            "--home",
            str(tmp_path / "first"),
            "--json",
            **softhsm_token_env,
        )
        assert keys.returncode == 0, keys.stderr
        return sorted(k["label"] for k in json.loads(keys.stdout)["keys"])

    made = token_keys()
    demo_seal_key = f"seal/{report['demo']['official_seal_id']}"
    assert made == sorted(
        ["audit-110000", *report["ceremony"]["key_labels"], demo_seal_key]
    )

    # Another region, same token: its audit key is new, but the ceremony's first key
    # label is taken. The ceremony fails after the migrations; init removes its audit
    # key and the schema, and leaves the first instance's keys alone.
    other_region = run_yinxin(
        "init",
        "--home",
        str(tmp_path / "other-region"),
        "--region",
        "440300",
        "--database-url",
        postgres_url,
        "--demo",
        **softhsm_token_env,
    )

    assert other_region.returncode == EXIT_CODE_BY_CATEGORY[ErrorCategory.CONFLICT]
    assert other_region.stderr.startswith(
        "yinxin: error: init failed while running the CA ceremony:"
    ), other_region.stderr
    assert other_region.stderr.endswith("nothing was left behind\n")
    assert not (tmp_path / "other-region").exists()
    assert token_keys() == made

    # Same token, so the audit key exists: init fails after migrating PostgreSQL.
    second = run_yinxin(
        "init",
        "--home",
        str(tmp_path / "second"),
        "--database-url",
        postgres_url,
        **softhsm_token_env,
    )

    assert second.returncode == EXIT_CODE_BY_CATEGORY[ErrorCategory.CONFLICT]
    assert second.stderr.startswith(
        "yinxin: error: init failed while generating the audit key 'audit-110000':"
    )
    assert second.stderr.endswith("nothing was left behind\n")
    assert not (tmp_path / "second").exists()
    engine = create_engine(postgres_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()


def test_a_pkcs11_init_failing_after_the_demo_seal_leaves_no_key(
    tmp_path: Path, softhsm_token_env: dict[str, str], run_yinxin: YinxinRunner
) -> None:
    """The last step fails (the config file cannot be written): every key the run
    made in the token — audit key, the ceremony's, the demo seal's — is destroyed."""
    home = tmp_path / "instance"
    (home / "yinxin.toml.partial").mkdir(parents=True)

    result = run_yinxin("init", "--home", str(home), "--demo", **softhsm_token_env)

    assert result.returncode == EXIT_CODE_BY_CATEGORY[ErrorCategory.UNAVAILABLE]
    assert result.stderr.startswith(
        "yinxin: error: init failed while writing the config file:"
    ), result.stderr
    assert result.stderr.endswith("nothing was left behind\n")
    assert not (home / "yinxin.sqlite3").exists()
    tool = subprocess.run(
        [
            require_tool("pkcs11-tool"),
            "--module",
            softhsm_token_env["YINXIN_HSM"].split("module=")[1].split(";")[0],
            "--token-label",
            "yinxin-test",
            "--login",
            "--pin",
            softhsm_token_env["YINXIN_HSM_PIN"],
            "--list-objects",
        ],
        env={**os.environ, "SOFTHSM2_CONF": softhsm_token_env["SOFTHSM2_CONF"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "label:" not in tool.stdout, tool.stdout


def test_pkcs11_init_without_a_pin_says_so(
    tmp_path: Path, softhsm_token_env: dict[str, str], run_yinxin: YinxinRunner
) -> None:
    environment = {k: v for k, v in softhsm_token_env.items() if k != "YINXIN_HSM_PIN"}
    result = run_yinxin("init", "--home", str(tmp_path / "instance"), **environment)

    assert result.returncode == EXIT_CODE_BY_CATEGORY[ErrorCategory.UNAUTHORIZED]
    assert result.stderr == (
        "yinxin: error: a PKCS#11 token is initialised outside Yinxin; give its user PIN "
        "in YINXIN_HSM_PIN\n"
    )
    assert not (tmp_path / "instance").exists()
