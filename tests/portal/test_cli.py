"""The `yinxin` commands on a real instance (soft HSM, SQLite), and how they fail."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from hsm_sim.errors import ErrorCategory
from hsm_sim.soft_token import MAX_FAILED_USER_LOGINS
from pki.registry import authenticate_client
from pki.uscc import compute_uscc_check_character
from portal.cli import cli
from portal.cli_support import write_output
from portal.config import SettingOverrides, resolve_settings
from portal.errors import EXIT_CHECK_FAILED, EXIT_CODE_BY_CATEGORY, EXIT_UNEXPECTED
from portal.services import Services

YinxinRunner = Callable[..., subprocess.CompletedProcess[str]]
UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:1/x"
WRONG_CHECK_USCC = "11440300MB0176276X"  # the check character should be 5


def exit_code(category: ErrorCategory) -> int:
    return EXIT_CODE_BY_CATEGORY[category]


def invoke(home: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run `yinxin <args> --home <home>` in-process."""
    command = list(args)
    command[command.index("--json") if "--json" in command else len(command) : 0] = [
        "--home",
        str(home),
    ]
    return CliRunner().invoke(cli, command, env=env)


def one_error_line(text: str) -> str:
    """The single `yinxin: error:` line in `text`, failing if there is more."""
    assert text.endswith("\n") and text.count("\n") == 1, text
    assert text.startswith("yinxin: error: "), text
    assert "Traceback" not in text
    return text.removeprefix("yinxin: error: ").rstrip("\n")


def uscc_with_check(body: str) -> str:
    return body + compute_uscc_check_character(body)


# -- agencies and clients -------------------------------------------------------------


def test_agency_add_then_list(instance_home: Path, demo_uscc: str) -> None:
    code = uscc_with_check("11440300MB0176276")
    added = invoke(
        instance_home,
        "agency",
        "add",
        "--name",
        "某某区税务局",
        "--code",
        code,
        "--region",
        "440300",
        "--json",
    )

    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout) | {"created_at": None} == {
        "name": "某某区税务局",
        "uscc": code,
        "region": "440300",
        "created_at": None,
    }
    listed = invoke(instance_home, "agency", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert [a["uscc"] for a in json.loads(listed.stdout)["agencies"]] == [
        demo_uscc,
        code,
    ]

    human = invoke(instance_home, "agency", "list")
    assert human.exit_code == 0
    assert "某某区税务局" in human.stdout and code in human.stdout


def test_agency_add_defaults_to_the_instance_region(instance_home: Path) -> None:
    code = uscc_with_check("11110000MB0176276")
    added = invoke(
        instance_home, "agency", "add", "--name", "某某局", "--code", code, "--json"
    )
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["region"] == "110000"


def test_agency_add_twice_is_a_conflict(instance_home: Path, demo_uscc: str) -> None:
    again = invoke(
        instance_home, "agency", "add", "--name", "重复", "--code", demo_uscc
    )
    assert again.exit_code == exit_code(ErrorCategory.CONFLICT)
    assert "already registered" in one_error_line(again.stderr)


def test_client_add_shows_the_secret_once_and_it_authenticates(
    instance_home: Path, demo_uscc: str
) -> None:
    added = invoke(
        instance_home,
        "client",
        "add",
        "--agency",
        demo_uscc,
        "--name",
        "办件系统",
        "--json",
    )

    assert added.exit_code == 0, added.output
    document = json.loads(added.stdout)
    assert document["agency_uscc"] == demo_uscc and document["name"] == "办件系统"
    assert "shown only now" in added.stderr
    services = Services(
        resolve_settings(SettingOverrides(home=instance_home), environ={})
    )
    try:
        with services.session() as session:
            record = authenticate_client(
                session, document["client_id"], document["secret"]
            )
        assert record.agency_uscc == demo_uscc
    finally:
        services.close()

    human = invoke(instance_home, "client", "add", "--agency", demo_uscc)
    assert human.exit_code == 0
    assert human.stdout.count("ycs_") == 1


def test_client_scopes_are_set_listed_and_checked(
    instance_home: Path, demo_uscc: str
) -> None:
    added = invoke(
        instance_home, "client", "add", "--agency", demo_uscc, "--name", "查询系统",
        "--scope", "licence:read", "--json",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    client_id = json.loads(added.stdout)["client_id"]
    assert json.loads(added.stdout)["scopes"] == ["licence:read"]

    changed = invoke(
        instance_home, "client", "scopes", client_id, "licence:read", "licence:manage"
    )
    assert changed.exit_code == 0, changed.output
    assert changed.stdout == f"{client_id} may now: licence:manage licence:read.\n"
    listed = json.loads(
        invoke(instance_home, "client", "list", "--agency", demo_uscc, "--json").stdout
    )["clients"]
    scopes = {c["client_id"]: c["scopes"] for c in listed}
    assert scopes[client_id] == ["licence:manage", "licence:read"]
    assert "secret" not in json.dumps(listed)
    # The demo client may do everything, so the demo shows every route.
    demo_client = next(c for c in listed if c["client_id"] != client_id)
    assert demo_client["scopes"] == sorted(
        [
            "licence:issue",
            "licence:manage",
            "licence:read",
            "licence:usage-code",
            "seal:stamp",
        ]
    )
    nothing = invoke(instance_home, "client", "scopes", client_id, "none", "--json")
    assert json.loads(nothing.stdout)["scopes"] == []

    unknown = invoke(instance_home, "client", "scopes", client_id, "licence:everything")
    assert unknown.exit_code == exit_code(ErrorCategory.BAD_REQUEST)
    assert "unknown API client scope" in one_error_line(unknown.stderr)
    missing = invoke(
        instance_home, "client", "scopes", "cl_0000000000000000", "seal:stamp"
    )
    assert missing.exit_code == exit_code(ErrorCategory.NOT_FOUND)


def test_client_for_an_unknown_agency_is_not_found(instance_home: Path) -> None:
    result = invoke(
        instance_home, "client", "add", "--agency", uscc_with_check("11110000MB0176209")
    )
    assert result.exit_code == exit_code(ErrorCategory.NOT_FOUND)
    assert one_error_line(result.stderr).startswith(
        "no agency with unified social credit code"
    )


# -- the key store --------------------------------------------------------------------


def test_hsm_keys_lists_the_audit_key_and_the_ceremony_keys(
    instance_home: Path,
) -> None:
    result = invoke(instance_home, "hsm", "keys", "--json")

    assert result.exit_code == 0, result.output
    keys = {key["label"]: key for key in json.loads(result.stdout)["keys"]}
    audit_key = keys["audit-110000"]
    assert audit_key["algorithm"] == "ec-p256" and audit_key["usages"] == ["audit"]
    assert len(audit_key["public_key_sha256"]) == 64
    assert keys["ca-root"]["algorithm"] == "ec-p384"
    assert keys["ca-root"]["usages"] == ["cert-sign", "crl-sign"]
    assert keys["tsa-1"]["usages"] == ["tsa"]


def test_hsm_generate_makes_a_key_with_its_usages(instance_home: Path) -> None:
    before = [k["label"] for k in listed_keys(instance_home)]
    result = invoke(
        instance_home,
        "hsm",
        "generate",
        "--label",
        "seal-tax-2026",
        "--algorithm",
        "EC-P256",
        "--usage",
        "seal",
        "--usage",
        "token",
        "--json",
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["usages"] == ["seal", "token"]
    after = [k["label"] for k in listed_keys(instance_home)]
    assert sorted(after) == sorted([*before, "seal-tax-2026"])

    again = invoke(
        instance_home,
        "hsm",
        "generate",
        "--label",
        "seal-tax-2026",
        "--algorithm",
        "ec-p256",
        "--usage",
        "seal",
    )
    assert again.exit_code == exit_code(ErrorCategory.CONFLICT)
    one_error_line(again.stderr)


def listed_keys(home: Path) -> list[dict[str, object]]:
    keys: list[dict[str, object]] = json.loads(
        invoke(home, "hsm", "keys", "--json").stdout
    )["keys"]
    return keys


def lock_token(home: Path) -> None:
    for _ in range(MAX_FAILED_USER_LOGINS):
        wrong = invoke(home, "hsm", "keys", env={"YINXIN_HSM_PIN": "not-the-pin"})
        assert wrong.exit_code in (
            exit_code(ErrorCategory.UNAUTHORIZED),
            exit_code(ErrorCategory.LOCKED),
        )
    locked = invoke(home, "hsm", "keys")
    assert locked.exit_code == exit_code(ErrorCategory.LOCKED), locked.output
    one_error_line(locked.stderr)


def test_hsm_unlock_with_the_so_pin_clears_the_lock(instance_home: Path) -> None:
    lock_token(instance_home)

    unlocked = invoke(
        instance_home,
        "hsm",
        "unlock",
        "--so-pin-file",
        str(instance_home / "move-offline" / "hsm-so.pin"),
    )

    assert unlocked.exit_code == 0, unlocked.output
    assert invoke(instance_home, "hsm", "keys").exit_code == 0


@pytest.mark.parametrize("option", ["--so-pin-file", "--new-user-pin-file"])
def test_hsm_unlock_reads_no_pin_file_others_can_read(
    instance_home: Path, tmp_path: Path, option: str
) -> None:
    so_pin_file = instance_home / "move-offline" / "hsm-so.pin"
    exposed = tmp_path / "exposed.pin"
    exposed.write_text(so_pin_file.read_text())
    exposed.chmod(0o640)
    arguments = (
        [option, str(exposed)]
        if option == "--so-pin-file"
        else ["--so-pin-file", str(so_pin_file), option, str(exposed)]
    )
    pins_before = (instance_home / "secrets" / "hsm-user.pin").read_text()

    result = invoke(instance_home, "hsm", "unlock", *arguments)

    assert result.exit_code == exit_code(ErrorCategory.BAD_REQUEST)
    assert one_error_line(result.stderr) == (
        f"the {'SO PIN' if option == '--so-pin-file' else 'new user PIN'} file "
        f"{exposed} can be read or changed by others; make it yours only: "
        f"chmod 600 {exposed}"
    )
    assert exposed.read_text().strip() not in result.output
    assert (instance_home / "secrets" / "hsm-user.pin").read_text() == pins_before


def test_hsm_unlock_can_set_a_new_user_pin_and_updates_the_pin_file(
    instance_home: Path, tmp_path: Path
) -> None:
    pin_file = instance_home / "secrets" / "hsm-user.pin"
    old_pin = pin_file.read_text().strip()
    new_pin_file = tmp_path / "new.pin"
    new_pin_file.write_text("a-brand-new-user-pin\n")
    new_pin_file.chmod(0o600)
    so_pin = (instance_home / "move-offline" / "hsm-so.pin").read_text().strip()

    result = invoke(
        instance_home,
        "hsm",
        "unlock",
        "--new-user-pin-file",
        str(new_pin_file),
        "--json",
        env={"YINXIN_HSM_SO_PIN": so_pin},
    )

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "unlocked": True,
        "user_pin_changed": True,
        "user_pin_file_updated": str(pin_file),
    }
    assert "a-brand-new-user-pin" not in result.output
    assert pin_file.read_text().strip() == "a-brand-new-user-pin"
    assert invoke(instance_home, "hsm", "keys").exit_code == 0
    stale = invoke(instance_home, "hsm", "keys", env={"YINXIN_HSM_PIN": old_pin})
    assert stale.exit_code == exit_code(ErrorCategory.UNAUTHORIZED)


def test_hsm_unlock_without_an_so_pin_says_how_to_give_one(instance_home: Path) -> None:
    result = invoke(instance_home, "hsm", "unlock")
    assert result.exit_code == exit_code(ErrorCategory.UNAUTHORIZED)
    assert one_error_line(result.stderr) == (
        "unlocking needs the SO PIN: give --so-pin-file or YINXIN_HSM_SO_PIN"
    )


def test_hsm_unlock_with_a_wrong_so_pin_is_refused(instance_home: Path) -> None:
    result = invoke(
        instance_home, "hsm", "unlock", env={"YINXIN_HSM_SO_PIN": "wrong-so-pin"}
    )
    assert result.exit_code == exit_code(ErrorCategory.UNAUTHORIZED)
    assert one_error_line(result.stderr) == "wrong SO PIN"


# -- the audit log --------------------------------------------------------------------


def test_audit_checkpoint_then_verify(instance_home: Path) -> None:
    checkpoint = invoke(instance_home, "audit", "checkpoint", "--json")
    assert checkpoint.exit_code == 0, checkpoint.output
    signed = json.loads(checkpoint.stdout)
    assert signed["key_label"] == "audit-110000"
    entries = signed["entry_count"] + 1  # the signature of this checkpoint

    verified = invoke(instance_home, "audit", "verify", "--json")
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout) == {
        "ok": True,
        "entry_count": entries,
        "checkpoints_verified": 2,
        "first_bad_seq": None,
        "reason": "",
    }
    human = invoke(instance_home, "audit", "verify")
    assert (
        human.stdout
        == f"audit log OK: {entries} entries, 2 signed checkpoints verified\n"
    )


def test_audit_verify_finds_an_edited_entry_and_exits_1(instance_home: Path) -> None:
    assert invoke(instance_home, "audit", "checkpoint").exit_code == 0
    with sqlite3.connect(instance_home / "yinxin.sqlite3") as database:
        # Someone with file access removes the guard and rewrites history.
        database.execute("DROP TRIGGER audit_entry_no_update")
        database.execute("UPDATE audit_entry SET actor = 'someone-else' WHERE seq = 2")

    human = invoke(instance_home, "audit", "verify")
    as_json = invoke(instance_home, "audit", "verify", "--json")

    assert human.exit_code == as_json.exit_code == EXIT_CHECK_FAILED
    assert human.stdout.startswith("audit log BROKEN at entry 2: ")
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["first_bad_seq"] == 2


# -- errors: one clear line, a meaningful exit code -----------------------------------


ACCEPTANCE_FAILURES = [
    pytest.param(
        ("agency", "add", "--name", "某某局", "--code", WRONG_CHECK_USCC),
        {},
        ErrorCategory.BAD_REQUEST,
        "the unified social credit code's check character should be 5, got X",
        id="invalid USCC",
    ),
    pytest.param(
        (
            "hsm",
            "generate",
            "--label",
            "k",
            "--algorithm",
            "ec-p999",
            "--usage",
            "seal",
        ),
        {},
        ErrorCategory.BAD_REQUEST,
        "unknown key algorithm 'ec-p999'; use one of: ec-p256",
        id="unknown algorithm",
    ),
    pytest.param(
        (
            "hsm",
            "generate",
            "--label",
            "k",
            "--algorithm",
            "ec-p256",
            "--usage",
            "stamp",
        ),
        {},
        ErrorCategory.BAD_REQUEST,
        "unknown key usage 'stamp'; use one of: cert-sign",
        id="unknown usage",
    ),
    pytest.param(
        ("hsm", "keys"),
        {"REMOVE_PIN_FILE": "1"},
        ErrorCategory.UNAUTHORIZED,
        "the key store needs the user PIN",
        id="missing PIN",
    ),
    pytest.param(
        ("agency", "list"),
        {"YINXIN_DATABASE_URL": UNREACHABLE_DATABASE},
        ErrorCategory.UNAVAILABLE,
        "cannot reach the database at postgresql://postgres@127.0.0.1:1/x: connection refused",
        id="unreachable database",
    ),
]


def prepare_failure(home: Path, variables: dict[str, str]) -> dict[str, str]:
    if variables.get("REMOVE_PIN_FILE"):
        (home / "secrets" / "hsm-user.pin").unlink()
        return {}
    return variables


@pytest.mark.parametrize(
    ("args", "variables", "category", "message"), ACCEPTANCE_FAILURES
)
def test_bad_input_and_unavailable_parts_give_one_line_in_process(
    instance_home: Path,
    args: tuple[str, ...],
    variables: dict[str, str],
    category: ErrorCategory,
    message: str,
) -> None:
    env = prepare_failure(instance_home, variables)
    result = invoke(instance_home, *args, env=env)

    assert result.exit_code == exit_code(category)
    assert result.stdout == ""
    assert one_error_line(result.stderr).startswith(message)


@pytest.mark.parametrize(
    ("args", "variables", "category", "message"), ACCEPTANCE_FAILURES
)
def test_bad_input_and_unavailable_parts_give_one_line_from_the_console_script(
    instance_home: Path,
    run_yinxin: YinxinRunner,
    args: tuple[str, ...],
    variables: dict[str, str],
    category: ErrorCategory,
    message: str,
) -> None:
    env = prepare_failure(instance_home, variables)
    result = run_yinxin(*args, "--home", str(instance_home), **env)

    assert result.returncode == exit_code(category)
    assert result.stdout == ""
    assert one_error_line(result.stderr).startswith(message)


def test_a_command_without_an_instance_says_how_to_make_one(tmp_path: Path) -> None:
    result = invoke(tmp_path / "nowhere", "agency", "list")
    assert result.exit_code == exit_code(ErrorCategory.NOT_FOUND)
    assert one_error_line(result.stderr) == (
        f"no Yinxin instance at {tmp_path / 'nowhere'} (no yinxin.toml); create one with: "
        f"yinxin init --home {tmp_path / 'nowhere'}"
    )
    assert not (tmp_path / "nowhere").exists()


def test_an_unknown_config_key_is_one_line(instance_home: Path) -> None:
    with (instance_home / "yinxin.toml").open("a") as config:
        config.write('hsm_pin = "1234"\n')
    result = invoke(instance_home, "agency", "list")
    assert result.exit_code == exit_code(ErrorCategory.BAD_REQUEST)
    assert "unknown key(s) hsm_pin" in one_error_line(result.stderr)


def test_usage_errors_are_one_line_too(instance_home: Path) -> None:
    result = invoke(instance_home, "agency", "add", "--name", "某某局")
    assert result.exit_code == 2
    assert one_error_line(result.stderr) == (
        "Missing option '--code'. (see: yinxin agency add --help)"
    )


@pytest.fixture
def failing_command() -> Iterator[str]:
    """A command that fails the way a bug would, with a message that must not be shown."""

    @click.command("explode")
    @click.option("--home", type=click.Path(path_type=Path))
    def explode(home: Path) -> None:
        from portal.cli import load_settings

        load_settings(home, None, None, read_pin=False)
        raise RuntimeError("internal detail that must stay in the log")

    cli.add_command(explode)
    try:
        yield "explode"
    finally:
        cli.commands.pop("explode")


def test_an_unexpected_error_points_at_the_log_not_the_traceback(
    instance_home: Path, failing_command: str
) -> None:
    result = invoke(instance_home, failing_command)

    assert result.exit_code == EXIT_UNEXPECTED
    log_file = instance_home / "logs" / "yinxin-errors.log"
    assert one_error_line(result.stderr) == (
        f"unexpected internal error (RuntimeError); details in {log_file} "
        "(YINXIN_DEBUG=1 shows the traceback)"
    )
    assert "internal detail" not in result.output
    logged = log_file.read_text()
    assert logged.splitlines()[0].endswith(" yinxin explode")
    assert "Traceback (most recent call last)" in logged
    assert "RuntimeError: internal detail that must stay in the log" in logged


def test_without_an_instance_the_error_log_is_in_a_private_directory(
    tmp_path: Path, failing_command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not at a fixed name in the shared temp directory, where anyone may have put a
    symlink to a file of the user's beforehand."""
    shared = tmp_path / "tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (shared / "yinxin-errors.log").symlink_to(victim)

    result = invoke(tmp_path / "no-instance", failing_command)

    private = shared / f"yinxin-{os.geteuid()}"
    log_file = private / "yinxin-errors.log"
    assert f"details in {log_file} " in one_error_line(result.stderr)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert stat.S_IMODE(log_file.stat().st_mode) == 0o600
    assert "RuntimeError: internal detail" in log_file.read_text()
    assert victim.read_text() == "keep me\n"


@pytest.mark.parametrize("trap", ["symlinked directory", "open directory", "symlink"])
def test_the_error_log_goes_nowhere_it_was_led(
    tmp_path: Path, failing_command: str, monkeypatch: pytest.MonkeyPatch, trap: str
) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    private = shared / f"yinxin-{os.geteuid()}"
    if trap == "symlinked directory":
        private.symlink_to(elsewhere)
    elif trap == "open directory":
        private.mkdir()
        private.chmod(0o777)
    else:
        private.mkdir(mode=0o700)
        (private / "yinxin-errors.log").symlink_to(elsewhere / "log")

    result = invoke(tmp_path / "no-instance", failing_command)

    assert result.exit_code == EXIT_UNEXPECTED
    assert "no log could be written" in one_error_line(result.stderr)
    assert list(elsewhere.iterdir()) == []


def test_output_files_follow_nothing_put_in_their_way(tmp_path: Path) -> None:
    """The old partial file had a fixed name next to the output: a symlink there
    made the CLI write wherever it pointed."""
    victim = tmp_path / "victim"
    victim.write_text("keep me\n")
    (tmp_path / ".sealed.pdf.partial").symlink_to(victim)
    out = tmp_path / "sealed.pdf"

    write_output(out, b"%PDF-1.7 sealed")

    assert out.read_bytes() == b"%PDF-1.7 sealed"
    assert victim.read_text() == "keep me\n"
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".sealed.pdf.partial", "sealed.pdf", "victim"]
    write_output(out, b"second")  # replaces the file
    assert out.read_bytes() == b"second" and not out.is_symlink()


def test_yinxin_debug_lets_the_traceback_through(
    instance_home: Path, failing_command: str
) -> None:
    result = invoke(instance_home, failing_command, env={"YINXIN_DEBUG": "1"})
    assert isinstance(result.exception, RuntimeError)
    assert not (instance_home / "logs").exists()


def test_hsm_unlock_can_take_the_new_user_pin_at_a_prompt(instance_home: Path) -> None:
    so_pin = (instance_home / "move-offline" / "hsm-so.pin").read_text().strip()
    result = CliRunner().invoke(
        cli,
        ["hsm", "unlock", "--home", str(instance_home), "--new-user-pin"],
        input="typed-new-pin-77\ntyped-new-pin-77\n",
        env={"YINXIN_HSM_SO_PIN": so_pin},
    )

    assert result.exit_code == 0, result.output
    assert "typed-new-pin-77" not in result.output
    pin_file = instance_home / "secrets" / "hsm-user.pin"
    assert pin_file.read_text().strip() == "typed-new-pin-77"
    assert invoke(instance_home, "hsm", "keys").exit_code == 0
