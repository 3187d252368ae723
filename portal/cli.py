"""The `yinxin` command line: instance set-up, the web server, and operator commands.

`main()` is the console script. It turns every Yinxin error (anything carrying a
`category`) and every bad input into ONE line on stderr and the exit code of its
category (see portal/errors.py); an unexpected exception prints one line pointing at a
log file holding the traceback (set YINXIN_DEBUG=1 to get the traceback instead).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from hsm_sim.api import KeyAlgorithm, KeyUsage, signing_context
from hsm_sim.errors import PinMissingError
from pki.registry import DEFAULT_CLIENT_SCOPES, ClientScope
from portal.cli_ca import ca, ceremony_file_setting
from portal.cli_license import license_group
from portal.cli_seal import seal
from portal.cli_support import (
    CliState,
    cli_actor,
    console,
    emit_json,
    instance_options,
    json_option,
    load_settings,
    open_services,
    require_instance,
    table,
    warn,
)
from portal.cli_verify import verify
from portal.config import (
    DEFAULT_PUBLIC_BASE_URL,
    DEFAULT_REFRESH_INTERVAL,
    ENV_HSM_PIN,
    MAX_REFRESH_INTERVAL,
    read_secret_file,
)
from portal.errors import (
    EXIT_CHECK_FAILED,
    EXIT_UNEXPECTED,
    category_of,
    exit_code_for,
    one_line,
)
from portal.log_redaction import loggable_traceback

__all__ = ["cli", "main"]

ERROR_LOG_NAME = "yinxin-errors.log"
ENV_SO_PIN = "YINXIN_HSM_SO_PIN"

# -- error handling: every failure ends as one line on stderr ------------------------


def _error_log_directory(home: Path | None) -> Path | None:
    """Where the traceback goes: the instance's logs directory when there is an
    instance, else a directory of this user's own in the temp directory. Only a real
    directory (no symlink) of this user's that nobody else may enter or change; None
    when there is none."""
    if home is not None and home.is_dir():
        directory = home / "logs"
    else:
        directory = Path(tempfile.gettempdir()) / f"yinxin-{os.geteuid()}"
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        status = os.lstat(directory)
    except OSError:
        return None
    if (
        not stat.S_ISDIR(status.st_mode)
        or status.st_uid != os.geteuid()
        or status.st_mode & 0o077
    ):
        return None
    return directory


def _write_error_log(error: BaseException, state: CliState) -> Path | None:
    directory = _error_log_directory(state.home)
    if directory is None:
        return None
    path = directory / ERROR_LOG_NAME
    try:
        # Never through a symlink, never into a file of someone else's.
        descriptor = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600
        )
        with os.fdopen(descriptor, "a", encoding="utf-8") as log:
            status = os.fstat(log.fileno())
            if not stat.S_ISREG(status.st_mode) or status.st_uid != os.geteuid():
                return None
            stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            log.write(f"--- {stamp} {state.command_path}\n")
            log.write(loggable_traceback(error))
    except OSError:
        return None
    return path


def _squash(text: str) -> str:
    return " ".join(text.split())


def _fail(message: str, code: int) -> int:
    click.echo(f"yinxin: error: {message}", err=True)
    return code


class YinxinGroup(click.Group):
    """The root command: runs a subcommand and turns any failure into one line on
    stderr and an exit code (so `yinxin` and click's CliRunner behave the same)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> int:
        state = extra.setdefault("obj", CliState())
        code = self._run(args, prog_name, complete_var, state, extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(
        self,
        args: Sequence[str] | None,
        prog_name: str | None,
        complete_var: str | None,
        state: CliState,
        extra: dict[str, Any],
    ) -> int:
        try:
            result = super().main(
                args=list(args) if args is not None else None,
                prog_name=prog_name or "yinxin",
                complete_var=complete_var,
                standalone_mode=False,
                **extra,
            )
        except click.exceptions.Abort:
            return _fail("aborted", 130)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            return exc.exit_code
        except click.UsageError as exc:
            hint = (
                f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            )
            return _fail(f"{_squash(exc.format_message())}{hint}", exc.exit_code)
        except click.ClickException as exc:
            return _fail(_squash(exc.format_message()), exc.exit_code)
        except KeyboardInterrupt:
            return _fail("interrupted", 130)
        except Exception as exc:
            category = category_of(exc)
            if category is not None:
                return _fail(one_line(exc), exit_code_for(category))
            if os.environ.get("YINXIN_DEBUG") == "1":
                raise
            log_path = _write_error_log(exc, state)
            where = f"details in {log_path}" if log_path else "no log could be written"
            return _fail(
                f"unexpected internal error ({type(exc).__name__}); {where} "
                "(YINXIN_DEBUG=1 shows the traceback)",
                EXIT_UNEXPECTED,
            )
        return result if isinstance(result, int) else 0


# -- the commands --------------------------------------------------------------------


@click.group(
    name="yinxin",
    cls=YinxinGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="yinxin", prog_name="yinxin")
def cli() -> None:
    """Yinxin (印信): CA, official electronic seals and electronic licences."""


@cli.command()
@instance_options
@click.option(
    "--region",
    metavar="CODE",
    help="GB/T 2260 region code [env YINXIN_REGION; default 110000].",
)
@click.option(
    "--public-url",
    metavar="URL",
    help="The node's public http:// base URL, written into every certificate "
    f"[env YINXIN_PUBLIC_URL; default {DEFAULT_PUBLIC_BASE_URL}].",
)
@click.option(
    "--ceremony-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Run the CA key ceremony from this file [env YINXIN_CEREMONY_CONFIG; "
    "with --demo the demo ceremony; else none: run `yinxin ca ceremony` later].",
)
@click.option(
    "--demo",
    is_flag=True,
    help="Also register a demo agency, API client and staff user, and run the demo "
    "ceremony unless another is given.",
)
@click.option(
    "--so-pin-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the software HSM's SO PIN to this new file (e.g. on an offline "
    "medium) [default: <home>/move-offline/hsm-so.pin, to be moved offline].",
)
@json_option
def init(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    region: str | None,
    public_url: str | None,
    ceremony_config: Path | None,
    demo: bool,
    so_pin_file: Path | None,
    as_json: bool,
) -> None:
    """Create an instance: config, database, HSM token and PINs, audit key, CA."""
    from portal.instance import init_instance

    settings = load_settings(
        home, database_url, hsm, region=region, public_base_url=public_url
    )
    result = init_instance(
        settings,
        demo=demo,
        ceremony_file=ceremony_file_setting(ceremony_config),
        so_pin_file=so_pin_file,
    )
    for note in result.notes:
        warn(note)
    if as_json:
        emit_json(dataclasses.asdict(result))
        return
    out = console()
    out.print(f"Created the Yinxin instance in {result.home} (region {result.region}).")
    rows: list[tuple[str, object]] = [
        ("config", result.config_file),
        ("database", result.database),
        ("HSM", result.hsm),
        ("audit key", f"{result.audit_key_label} (ec-p256), first checkpoint signed"),
        ("public URL", result.public_base_url),
    ]
    if result.ceremony is not None:
        rows += [
            ("CA", f"{ca_made.name}: {ca_made.subject} ({ca_made.role})")
            for ca_made in result.ceremony.cas
        ]
        rows.append(("ceremony", f"copy kept in {result.ceremony_file}"))
    if result.user_pin_file is not None:
        rows.append(("user PIN", f"in {result.user_pin_file} (owner only)"))
    if result.so_pin_file is not None:
        rows.append(
            ("SO PIN", f"in {result.so_pin_file} (owner only): move it offline now")
        )
    if result.demo is not None:
        rows += [
            ("demo agency", f"{result.demo.agency_name} ({result.demo.agency_uscc})"),
            (
                "API client",
                f"{result.demo.client_id}, secret in {result.demo.client_secret_file}",
            ),
            (
                "staff user",
                f"{result.demo.staff_username}, password in {result.demo.staff_password_file}",
            ),
        ]
        if result.demo.official_seal_id is not None:
            rows.append(
                (
                    "demo seal",
                    (
                        f"official seal {result.demo.official_seal_id} (seal code "
                        f"{result.demo.official_seal_code}), granted to the API client"
                    ),
                )
            )
    for name, value in rows:
        out.print(f"  {name:<12} {value}")
    out.print(f"Start it with: yinxin serve --home {result.home}")


@cli.command()
@instance_options
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes.",
)
@click.option(
    "--threads",
    default=4,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Threads per worker (each serves one connection at a time).",
)
@click.option(
    "--refresh-interval",
    type=click.IntRange(0, MAX_REFRESH_INTERVAL),
    metavar="SECONDS",
    help="How often one worker re-signs stale CRLs and OCSP responses, 0 for never "
    f"[env YINXIN_REFRESH_INTERVAL; default {DEFAULT_REFRESH_INTERVAL}].",
)
def serve(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    host: str,
    port: int,
    workers: int,
    threads: int,
    refresh_interval: int | None,
) -> None:
    """Serve the web app with gunicorn until stopped (Ctrl-C)."""
    from portal.server import serve as run_server

    settings = load_settings(home, database_url, hsm, refresh_interval=refresh_interval)
    # Fail here, with one clear line, rather than in every worker as it boots.
    with open_services(settings) as services:
        services.keystore()
    run_server(settings, host=host, port=port, workers=workers, threads=threads)


@cli.group()
def agency() -> None:
    """Agencies that hold seals and issue licences."""


def _agency_document(record: Any) -> dict[str, Any]:
    return {
        "name": record.name,
        "uscc": record.uscc,
        "region": record.region_code,
        "created_at": record.created_at,
    }


@agency.command("add")
@instance_options
@click.option("--name", required=True, help="The agency's full name.")
@click.option(
    "--code",
    "uscc",
    required=True,
    metavar="USCC",
    help="Its unified social credit code (18 characters).",
)
@click.option("--region", metavar="CODE", help="Its region [default: the instance's].")
@json_option
def agency_add(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    name: str,
    uscc: str,
    region: str | None,
    as_json: bool,
) -> None:
    """Register an agency."""
    from pki.registry import register_agency

    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services, services.session() as session:
        record = register_agency(
            session, name=name, uscc=uscc, region=region or settings.region
        )
    if as_json:
        emit_json(_agency_document(record))
    else:
        console().print(
            f"Registered {record.name} ({record.uscc}, region {record.region_code})."
        )


@agency.command("list")
@instance_options
@json_option
def agency_list(
    home: Path | None, database_url: str | None, hsm: str | None, as_json: bool
) -> None:
    """List the registered agencies."""
    from pki.registry import list_agencies

    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services, services.session() as session:
        records = list_agencies(session)
    if as_json:
        emit_json({"agencies": [_agency_document(r) for r in records]})
        return
    rows = [
        (r.uscc, r.name, r.region_code, f"{r.created_at:%Y-%m-%d %H:%M} UTC")
        for r in records
    ]
    console().print(table("Agencies", ("USCC", "name", "region", "registered"), rows))


@cli.group()
def client() -> None:
    """API clients: programs that act for an agency."""


SCOPES_HELP = (
    "What it may do (repeatable): "
    + ", ".join(scope.value for scope in ClientScope)
    + " [default: "
    + ", ".join(sorted(scope.value for scope in DEFAULT_CLIENT_SCOPES))
    + "]."
)


def _client_document(record: Any) -> dict[str, Any]:
    return {
        "client_id": record.client_id,
        "agency_uscc": record.agency_uscc,
        "name": record.name,
        "scopes": sorted(scope.value for scope in record.scopes),
        "created_at": record.created_at,
        "disabled_at": record.disabled_at,
    }


@client.command("add")
@instance_options
@click.option(
    "--agency",
    "agency_uscc",
    required=True,
    metavar="USCC",
    help="The agency the client acts for.",
)
@click.option(
    "--name", default="default", show_default=True, help="A name for the client."
)
@click.option("--scope", "scopes", multiple=True, metavar="SCOPE", help=SCOPES_HELP)
@json_option
def client_add(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    agency_uscc: str,
    name: str,
    scopes: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create an API client; its secret is printed this once and never again."""
    from pki.registry import add_api_client

    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services, services.session() as session:
        record, secret = add_api_client(
            session, agency_uscc=agency_uscc, name=name, scopes=scopes or None
        )
    warn(
        "the client secret is shown only now; store it safely, it cannot be shown again"
    )
    if as_json:
        emit_json({**_client_document(record), "secret": secret})
        return
    click.echo(f"client id: {record.client_id}")
    click.echo(f"secret:    {secret}")
    click.echo(f"scopes:    {' '.join(_client_document(record)['scopes'])}")


@client.command("list")
@instance_options
@click.option("--agency", "agency_uscc", required=True, metavar="USCC")
@json_option
def client_list(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    agency_uscc: str,
    as_json: bool,
) -> None:
    """The agency's API clients and what each may do (never their secrets)."""
    from pki.registry import list_api_clients

    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services, services.session() as session:
        records = list_api_clients(session, agency_uscc)
    documents = [_client_document(record) for record in records]
    if as_json:
        emit_json({"clients": documents})
        return
    out = console()
    if not documents:
        out.print(f"Agency {agency_uscc} has no API clients.")
    for document in documents:
        state = " (disabled)" if document["disabled_at"] else ""
        out.print(
            f"{document['client_id']}  {document['name']}{state}: "
            f"{' '.join(document['scopes']) or 'no scopes'}",
            markup=False,
        )


@client.command("scopes")
@instance_options
@click.argument("client_id", metavar="CLIENT")
@click.argument("scopes", nargs=-1, required=True, metavar="SCOPE...")
@json_option
def client_scopes(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    client_id: str,
    scopes: tuple[str, ...],
    as_json: bool,
) -> None:
    """Set what an API client may do: exactly the scopes given ("none": nothing)."""
    from pki.registry import set_client_scopes

    wanted = () if scopes == ("none",) else scopes
    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services, services.session() as session:
        record = set_client_scopes(session, client_id, wanted)
    document = _client_document(record)
    if as_json:
        emit_json(document)
    else:
        click.echo(
            f"{record.client_id} may now: {' '.join(document['scopes']) or 'nothing'}."
        )


@cli.group()
def hsm() -> None:
    """The key store: list and generate keys, unlock the token."""


def _key_document(info: Any) -> dict[str, Any]:
    return {
        "label": info.label,
        "algorithm": info.algorithm.value,
        "usages": sorted(u.value for u in info.usages),
        "created_at": info.created_at,
        "public_key_sha256": hashlib.sha256(info.public_key_der).hexdigest(),
    }


@hsm.command("keys")
@instance_options
@json_option
def hsm_keys(
    home: Path | None, database_url: str | None, hsm: str | None, as_json: bool
) -> None:
    """List the keys in the token (public information only)."""
    settings = load_settings(home, database_url, hsm)
    with open_services(settings) as services:
        keys = [_key_document(info) for info in services.keystore().list_keys()]
    if as_json:
        emit_json({"keys": keys})
        return
    rows = [
        (
            k["label"],
            k["algorithm"],
            ", ".join(k["usages"]),
            f"{k['created_at']:%Y-%m-%d %H:%M} UTC",
            k["public_key_sha256"][:16],
        )
        for k in keys
    ]
    console().print(
        table("Keys", ("label", "algorithm", "usages", "created", "SPKI SHA-256"), rows)
    )


@hsm.command("generate")
@instance_options
@click.option("--label", required=True, help="The new key's label.")
@click.option(
    "--algorithm",
    required=True,
    metavar="NAME",
    help="One of: " + ", ".join(a.value for a in KeyAlgorithm) + ".",
)
@click.option(
    "--usage",
    "usages",
    required=True,
    multiple=True,
    metavar="USAGE",
    help="What the key may sign (repeatable): "
    + ", ".join(u.value for u in KeyUsage)
    + ".",
)
@json_option
def hsm_generate(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    label: str,
    algorithm: str,
    usages: tuple[str, ...],
    as_json: bool,
) -> None:
    """Generate a key pair inside the token."""
    parsed_algorithm = KeyAlgorithm.parse(algorithm)
    parsed_usages = frozenset(KeyUsage.parse(u) for u in usages)
    settings = load_settings(home, database_url, hsm)
    with open_services(settings) as services:
        info = services.keystore().generate_key(label, parsed_algorithm, parsed_usages)
    document = _key_document(info)
    if as_json:
        emit_json(document)
    else:
        console().print(
            f"Generated {document['label']} ({document['algorithm']}, for "
            f"{', '.join(document['usages'])}); public key SHA-256 "
            f"{document['public_key_sha256']}."
        )


def _so_pin(so_pin_file: Path | None) -> str:
    """The SO PIN: --so-pin-file, else YINXIN_HSM_SO_PIN, else a prompt on a terminal."""
    if so_pin_file is not None:
        return read_secret_file(so_pin_file, "SO PIN")
    from_env = os.environ.get(ENV_SO_PIN, "").strip()
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        raise PinMissingError(
            f"unlocking needs the SO PIN: give --so-pin-file or {ENV_SO_PIN}"
        )
    pin: str = click.prompt("SO PIN", hide_input=True)
    return pin.strip()


@hsm.command("unlock")
@instance_options
@click.option(
    "--so-pin-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"File holding the SO PIN [env {ENV_SO_PIN}; else a prompt].",
)
@click.option(
    "--new-user-pin-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Set the user PIN to the one in this file.",
)
@click.option(
    "--new-user-pin",
    "prompt_new_pin",
    is_flag=True,
    help="Set a new user PIN, typed at a prompt.",
)
@json_option
def hsm_unlock(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    so_pin_file: Path | None,
    new_user_pin_file: Path | None,
    prompt_new_pin: bool,
    as_json: bool,
) -> None:
    """Clear the token's wrong-PIN lock with the SO PIN, optionally setting a new user PIN.

    When the instance reads its user PIN from its PIN file, the file is updated too.
    """
    from hsm_sim.spec import unlock_token
    from portal.instance import write_secret_file

    if new_user_pin_file is not None and prompt_new_pin:
        raise click.UsageError("give --new-user-pin-file or --new-user-pin, not both")
    settings = load_settings(home, database_url, hsm, read_pin=False)
    require_instance(settings)
    so_pin = _so_pin(so_pin_file)
    new_pin: str | None = None
    if new_user_pin_file is not None:
        new_pin = read_secret_file(new_user_pin_file, "new user PIN")
    elif prompt_new_pin:
        new_pin = click.prompt(
            "New user PIN", hide_input=True, confirmation_prompt=True
        ).strip()
    unlock_token(settings.hsm, so_pin=so_pin, new_user_pin=new_pin)

    pin_file_updated = None
    if new_pin is not None:
        uses_pin_file = not os.environ.get(ENV_HSM_PIN, "").strip()
        if (
            uses_pin_file
            and settings.hsm_pin_file is not None
            and settings.hsm_pin_file.exists()
        ):
            write_secret_file(settings.hsm_pin_file, new_pin, replace=True)
            pin_file_updated = settings.hsm_pin_file
        else:
            warn(f"the user PIN changed: update {ENV_HSM_PIN} wherever it is set")
    if as_json:
        emit_json(
            {
                "unlocked": True,
                "user_pin_changed": new_pin is not None,
                "user_pin_file_updated": pin_file_updated,
            }
        )
        return
    message = "The token is unlocked"
    if new_pin is not None:
        message += " and has a new user PIN"
    if pin_file_updated is not None:
        message += f" (written to {pin_file_updated})"
    click.echo(message + ".")


@cli.group()
def audit() -> None:
    """The audit log of every key-store operation."""


@audit.command("verify")
@instance_options
@json_option
def audit_verify(
    home: Path | None, database_url: str | None, hsm: str | None, as_json: bool
) -> int:
    """Check every entry, the hash chain and the signed checkpoints (exit 1 if broken)."""
    from hsm_sim.audit import verify_audit_log

    settings = load_settings(home, database_url, hsm)
    with open_services(settings) as services:
        report = verify_audit_log(services.engine, services.keystore())
    if as_json:
        emit_json(dataclasses.asdict(report))
    elif report.ok:
        click.echo(
            f"audit log OK: {report.entry_count} entries, "
            f"{report.checkpoints_verified} signed checkpoints verified"
        )
    else:
        where = (
            f" at entry {report.first_bad_seq}"
            if report.first_bad_seq is not None
            else ""
        )
        click.echo(f"audit log BROKEN{where}: {report.reason}")
    return 0 if report.ok else EXIT_CHECK_FAILED


@audit.command("checkpoint")
@instance_options
@json_option
def audit_checkpoint(
    home: Path | None, database_url: str | None, hsm: str | None, as_json: bool
) -> None:
    """Sign a checkpoint of the audit log now, with the region's audit key."""
    settings = load_settings(home, database_url, hsm)
    with (
        open_services(settings) as services,
        signing_context(actor=cli_actor(), operation="audit-checkpoint"),
    ):
        checkpoint = services.audit_log.write_checkpoint(
            services.keystore(), settings.audit_key_label
        )
    document = {
        "entry_count": checkpoint.entry_count,
        "head_hash": checkpoint.head_hash,
        "key_label": checkpoint.key_label,
        "algorithm": checkpoint.algorithm,
        "at": checkpoint.at,
    }
    if as_json:
        emit_json(document)
    else:
        click.echo(
            f"checkpoint signed by {checkpoint.key_label} over "
            f"{checkpoint.entry_count} entries (head {checkpoint.head_hash[:16]}...)"
        )


cli.add_command(ca)
cli.add_command(seal)
cli.add_command(verify)
cli.add_command(license_group)


def main(argv: Sequence[str] | None = None) -> int:
    """The `yinxin` console script: run the CLI and return its exit code."""
    return cli.main(args=argv, prog_name="yinxin", standalone_mode=False)
