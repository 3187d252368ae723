"""`yinxin license ...`: electronic licences (电子证照) from the node operator's command line.

The operator issues licences for an agency (stamped with the agency's official seal on
the operator's behalf: `cli:<user>` in the stamp and audit logs), changes their status,
and makes usage codes and watermarked copies. The holder's side (`present`) and the
verifier's side (`verify`, `check-id`, `types`) need no HSM PIN: presenting signs with
the holder's own key, verifying needs no key at all.

Exit codes: the categories' (portal/errors.py) for errors; `check-id` exits 1 for an
invalid identifier; `verify` exits 0 for VALID, 1 for any other verdict and 2 for
input that cannot be read as a licence (MALFORMED); `batch` exits 1 when a file failed.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography.hazmat.primitives.asymmetric import ec
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from certs import (
    BatchIssuance,
    IssuedLicence,
    LicenceIdentifier,
    LicenceRecord,
    LicenceRegistry,
    LicenceRequest,
    LicenceTrust,
    LicenceVerification,
    LicenseError,
    StatusListCache,
    StatusListUnavailableError,
    StatusSource,
    Verdict,
    describe_types,
    get_licence_type,
    http_status_fetcher,
    verify_licence,
)
from hsm_sim.errors import ErrorCategory
from portal.cli_support import (
    check_output_path,
    cli_actor,
    cli_principal,
    console,
    emit_json,
    instance_options,
    json_option,
    load_settings,
    open_services,
    read_input_file,
    warn,
    write_output,
)
from portal.errors import EXIT_CHECK_FAILED, exit_code_for, one_line
from portal.licence_options import (
    MAX_DATA_BYTES,
    MAX_KEY_BYTES,
    LicenceOptionError,
    holder_private_key,
    holder_public_key,
    parse_field_list,
    parse_licence_data,
    parse_ttl,
)
from portal.services import Services
from seal.verify import VerifyLimits

__all__ = ["BATCH_CHUNK", "license_group"]

F = TypeVar("F", bound=Callable[..., Any])

# Licences issued per call of the registry in `license batch`: reservations stay young
# (the schedule deletes old ones) and the PDFs are written out as they come.
BATCH_CHUNK = 20
MAX_QR_IMAGE_BYTES = 32 * 1024 * 1024
MAX_TEXT_INPUT_BYTES = 64 * 1024  # an LC1 token or an SD-JWT presentation
EXIT_MALFORMED = exit_code_for(ErrorCategory.BAD_REQUEST)


@click.group(name="license")
def license_group() -> None:
    """Electronic licences: issue, show, present, verify, revoke."""


# -- shown to the operator -------------------------------------------------------------


def _type_label(type_code: str | None) -> str:
    if not type_code:
        return "unknown type"
    try:
        return f"{type_code} ({get_licence_type(type_code).name.zh})"
    except LicenseError:
        return type_code


def _record_rows(record: LicenceRecord) -> list[tuple[str, str]]:
    valid_until = (
        record.valid_until.isoformat() if record.valid_until else "long-term (长期)"
    )
    rows = [
        ("identifier", record.identifier),
        ("type", f"{record.type_code} ({record.type_name})"),
        ("agency", f"{record.agency_name} ({record.agency_uscc})"),
        ("holder", f"{record.holder_name} ({record.holder_code})"),
        ("number", f"{record.number}, version {record.version}"),
        ("issued", f"{record.issued_at:%Y-%m-%d %H:%M} UTC"),
        ("valid until", valid_until),
        (
            "status",
            record.status.value
            + (f": {record.status_note}" if record.status_note else ""),
        ),
        ("status list", f"{record.status_list_uri} #{record.status_index}"),
    ]
    if record.previous:
        rows.append(("replaces", record.previous))
    if record.successor:
        rows.append(("replaced by", record.successor))
    if record.qr_version is not None:
        rows.append(("QR code", f"version {record.qr_version}, ECC level Q"))
    return rows


def _print_rows(rows: list[tuple[str, str]]) -> None:
    out = console()
    for name, value in rows:
        out.print(f"  {name:<12} {value}", markup=False)


def _issued_document(issued: IssuedLicence, pdf_path: Path | None) -> dict[str, Any]:
    document = issued.to_dict()
    document["qr_version"] = issued.qr_version
    document["pdf"] = pdf_path
    return document


def _print_issued(issued: IssuedLicence, pdf_path: Path | None, verb: str) -> None:
    record = issued.record
    where = f"; the sealed PDF is in {pdf_path}" if pdf_path else ""
    click.echo(f"{verb} licence {record.identifier}{where}.")
    _print_rows(_record_rows(record))
    click.echo("  (--json also prints the LC1 token and the SD-JWT)")


def _print_status_change(record: LicenceRecord, as_json: bool) -> None:
    if as_json:
        emit_json(record.to_dict())
        return
    note = f" ({record.status_note})" if record.status_note else ""
    click.echo(f"Licence {record.identifier} is {record.status.value}{note}.")


# -- options ---------------------------------------------------------------------------


def _validity_options(command: F) -> F:
    options = [
        click.option(
            "--valid-until",
            type=click.DateTime(formats=["%Y-%m-%d"]),
            metavar="DATE",
            help="Last day of validity, YYYY-MM-DD [default: the type's validity].",
        ),
        click.option(
            "--long-term",
            is_flag=True,
            help="No end of validity (长期), where the type allows it.",
        ),
        click.option(
            "--holder-key",
            type=click.Path(exists=True, dir_okay=False, path_type=Path),
            help="Bind the SD-JWT to the holder's EC P-256 key: a PEM file (public or "
            "private key) or a JWK. Presentations then carry key binding.",
        ),
        click.option(
            "--seal",
            "seal_id",
            metavar="ID",
            help="Stamp with this official seal of the agency [default: its newest "
            "active official seal].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _valid_until(
    valid_until: dt.datetime | None, long_term: bool
) -> tuple[dt.date | None, bool]:
    if valid_until is not None and long_term:
        raise click.UsageError("give --valid-until or --long-term, not both")
    return (valid_until.date() if valid_until else None), long_term


def _read_data(path: Path) -> dict[str, Any]:
    return parse_licence_data(read_input_file(path, MAX_DATA_BYTES), source=str(path))


def _read_holder_key(path: Path | None) -> ec.EllipticCurvePublicKey | None:
    if path is None:
        return None
    return holder_public_key(read_input_file(path, MAX_KEY_BYTES), source=str(path))


# -- reading without an instance -------------------------------------------------------


@license_group.command("types")
@json_option
def license_types(as_json: bool) -> None:
    """The licence types this node issues, with their fields."""
    types = describe_types()
    if as_json:
        emit_json({"types": types})
        return
    out = console()
    for described in types:
        validity = described["validity"]
        if validity["default_years"]:
            lasts = f"{validity['default_years']} years by default"
        else:
            lasts = "long-term by default"
        if validity["long_term_allowed"]:
            lasts += ", long-term allowed"
        out.print(
            f"{described['code']}  {described['name']['zh']} "
            f"({described['name']['en']}); holder: {described['holder']['kind']}; "
            f"{lasts}",
            markup=False,
        )
        for field in described["fields"]:
            marks = [
                mark
                for mark, on in (
                    ("required", field["required"]),
                    ("on the QR code", field["on_qr"]),
                    ("disclosable", field["disclosable"]),
                )
                if on
            ]
            out.print(
                f"    {field['name']:<24} {field['label']['zh']} "
                f"({field['type']}{'; ' + ', '.join(marks) if marks else ''})",
                markup=False,
            )
    out.print(
        "Example data for each type: docs/examples/licences/<type code>.json",
        markup=False,
    )


@license_group.command("check-id")
@click.argument("identifier", metavar="ID")
@json_option
def license_check_id(identifier: str, as_json: bool) -> int:
    """Check a GB/T 36904 e-licence identifier: exit 0 valid, 1 invalid (with why)."""
    try:
        parsed = LicenceIdentifier.parse(identifier)
    except LicenseError as exc:
        reason = one_line(exc)
        if as_json:
            emit_json({"identifier": identifier, "valid": False, "reason": reason})
        else:
            click.echo(f"invalid: {reason}")
        return EXIT_CHECK_FAILED
    document = {
        "identifier": str(parsed),
        "valid": True,
        "type_code": parsed.type_code,
        "agency_code": parsed.agency_code,
        "number": parsed.number,
        "version": parsed.version,
        "check": parsed.check,
    }
    if as_json:
        emit_json(document)
    else:
        click.echo(
            f"valid: type {parsed.type_code}, agency {parsed.agency_code}, number "
            f"{parsed.number}, version {parsed.version:03d}, check character "
            f"{parsed.check}"
        )
    return 0


# -- issuing ---------------------------------------------------------------------------


@license_group.command("issue")
@instance_options
@click.option(
    "--type", "type_code", required=True, metavar="CODE", help="The licence type."
)
@click.option(
    "--agency",
    "agency_uscc",
    required=True,
    metavar="USCC",
    help="The issuing agency (it needs an active official seal).",
)
@click.option(
    "--data",
    "data_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The licence's fields as a JSON object (see docs/examples/licences/).",
)
@click.option(
    "--out-pdf",
    required=True,
    type=click.Path(path_type=Path),
    help="Write the sealed PDF here.",
)
@_validity_options
@json_option
def license_issue(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    type_code: str,
    agency_uscc: str,
    data_file: Path,
    out_pdf: Path,
    valid_until: dt.datetime | None,
    long_term: bool,
    holder_key: Path | None,
    seal_id: str | None,
    as_json: bool,
) -> None:
    """Issue a licence: sealed PDF with its QR code, LC1 token, SD-JWT."""
    end, long = _valid_until(valid_until, long_term)
    data = _read_data(data_file)
    key = _read_holder_key(holder_key)
    settings = load_settings(home, database_url, hsm)
    check_output_path(out_pdf)
    with open_services(settings) as services:
        issued = services.licence_registry().issue_licence(
            type_code,
            agency_uscc,
            data,
            actor=cli_actor(),
            principal=cli_principal(),
            valid_until=end,
            long_term=long,
            holder_key=key,
            seal_id=seal_id,
        )
    write_output(out_pdf, issued.pdf)
    if as_json:
        emit_json(_issued_document(issued, out_pdf))
    else:
        _print_issued(issued, out_pdf, "Issued")


@license_group.command("renew")
@instance_options
@click.argument("identifier", metavar="ID")
@click.option(
    "--data",
    "data_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The new version's fields as a JSON object (all of them).",
)
@click.option(
    "--out-pdf", type=click.Path(path_type=Path), help="Write the sealed PDF here."
)
@_validity_options
@json_option
def license_renew(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    identifier: str,
    data_file: Path,
    out_pdf: Path | None,
    valid_until: dt.datetime | None,
    long_term: bool,
    holder_key: Path | None,
    seal_id: str | None,
    as_json: bool,
) -> None:
    """Change or renew a licence: the next version, linked to this one, which becomes
    superseded (its QR codes then verify as REVOKED)."""
    end, long = _valid_until(valid_until, long_term)
    data = _read_data(data_file)
    key = _read_holder_key(holder_key)
    settings = load_settings(home, database_url, hsm)
    if out_pdf is not None:
        check_output_path(out_pdf)
    with open_services(settings) as services:
        issued = services.licence_registry().renew_or_change(
            identifier,
            data,
            actor=cli_actor(),
            principal=cli_principal(),
            valid_until=end,
            long_term=long,
            holder_key=key,
            seal_id=seal_id,
        )
    if out_pdf is not None:
        write_output(out_pdf, issued.pdf)
    if as_json:
        emit_json(_issued_document(issued, out_pdf))
    else:
        _print_issued(issued, out_pdf, f"Issued version {issued.record.version} of")


def _read_chunk(
    files: list[Path],
    type_code: str,
    agency_uscc: str,
    failed: list[dict[str, Any]],
) -> list[tuple[Path, LicenceRequest]]:
    requests = []
    for path in files:
        try:
            data = _read_data(path)
        except ValueError as exc:
            failed.append({"file": path, "error": one_line(exc)})
            continue
        requests.append(
            (
                path,
                LicenceRequest(type_code=type_code, agency_uscc=agency_uscc, data=data),
            )
        )
    return requests


@license_group.command("batch")
@instance_options
@click.option("--type", "type_code", required=True, metavar="CODE")
@click.option("--agency", "agency_uscc", required=True, metavar="USCC")
@click.option(
    "--in",
    "input_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Issue one licence for each *.json file in this directory.",
)
@click.option(
    "--out",
    "output_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Write <name>.pdf (sealed) and <name>.json (identifier, token, SD-JWT) "
    "here for each <name>.json (made if missing).",
)
@json_option
def license_batch(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    type_code: str,
    agency_uscc: str,
    input_dir: Path,
    output_dir: Path,
    as_json: bool,
) -> int:
    """Issue many licences of one type (tokens signed in batches); a file that cannot
    be issued is reported and skipped (exit 1 if any was)."""
    if output_dir.exists() and not output_dir.is_dir():
        raise LicenceOptionError(f"{output_dir} is not a directory")
    if output_dir.resolve() == input_dir.resolve():
        raise LicenceOptionError("the output directory must not be the input directory")
    sources = sorted(
        path
        for path in input_dir.iterdir()
        if path.suffix.lower() == ".json" and path.is_file()
    )
    settings = load_settings(home, database_url, hsm)
    issued_files: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    with open_services(settings) as services:
        licences = services.licence_registry()
        get_licence_type(type_code)  # an unknown type is refused before anything
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
            raise LicenceOptionError(f"cannot make {output_dir}: {reason}") from None
        errors = Console(stderr=True, soft_wrap=True, highlight=False)
        progress = Progress(
            TextColumn("issuing"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=errors,
            disable=as_json,
        )
        with progress:
            task = progress.add_task("issuing", total=len(sources))
            for start in range(0, len(sources), BATCH_CHUNK):
                chunk = sources[start : start + BATCH_CHUNK]
                requests = _read_chunk(chunk, type_code, agency_uscc, failed)
                # Unreadable files count as done; issued ones as the registry reports.
                base = start + len(chunk) - len(requests)
                result = licences.issue_licences(
                    [request for _, request in requests],
                    actor=cli_actor(),
                    principal=cli_principal(),
                    progress=lambda done, _total, base=base: progress.update(
                        task, completed=base + done
                    ),
                )
                _write_batch_results(requests, result, output_dir, issued_files, failed)
                progress.update(task, completed=start + len(chunk))
    for failure in failed:
        if not as_json:
            warn(f"skipped {failure['file'].name}: {failure['error']}")
    if as_json:
        emit_json(
            {
                "type_code": type_code,
                "agency": agency_uscc,
                "issued": issued_files,
                "failed": failed,
            }
        )
    else:
        click.echo(
            f"Issued {len(issued_files)} of {len(sources)} licence(s) into {output_dir}"
            + (f"; {len(failed)} skipped." if failed else ".")
        )
    if not sources:
        warn(f"{input_dir} holds no *.json files")
    return EXIT_CHECK_FAILED if failed else 0


def _write_batch_results(
    requests: list[tuple[Path, LicenceRequest]],
    result: BatchIssuance,
    output_dir: Path,
    issued_files: list[dict[str, Any]],
    failed: list[dict[str, Any]],
) -> None:
    """Write each issued licence's PDF and JSON; note each failure with its file."""
    failures = {failure.index: failure.reason for failure in result.failed}
    issued = iter(result.issued)
    for index, (path, _) in enumerate(requests):
        if index in failures:
            failed.append({"file": path, "error": failures[index]})
            continue
        licence = next(issued)
        pdf_path = output_dir / f"{path.stem}.pdf"
        json_path = output_dir / f"{path.stem}.json"
        write_output(pdf_path, licence.pdf)
        document = _issued_document(licence, pdf_path)
        write_output(
            json_path,
            json.dumps(document, ensure_ascii=False, default=str).encode("utf-8"),
        )
        issued_files.append(
            {
                "file": path,
                "identifier": licence.identifier,
                "pdf": pdf_path,
                "json": json_path,
            }
        )


# -- reading ---------------------------------------------------------------------------


@license_group.command("show")
@instance_options
@click.argument("identifier", metavar="ID")
@json_option
def license_show(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    identifier: str,
    as_json: bool,
) -> None:
    """Show a licence: its data, status and versions (--json: also its LC1 token)."""
    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services:
        licences = services.licence_registry()
        record = licences.get_licence(identifier)
        token = licences.licence_token(record.identifier)
    if as_json:
        emit_json({**record.to_dict(), "token": token})
        return
    _print_rows(_record_rows(record))
    out = console()
    out.print("  data", markup=False)
    licence_type = get_licence_type(record.type_code)
    for spec in licence_type.fields:
        if spec.name in record.data:
            value = record.data[spec.name]
            if spec.values:
                value = f"{value} ({spec.enum_label(value).zh})"
            out.print(f"    {spec.label.zh}: {value}", markup=False)


@license_group.command("list")
@instance_options
@click.option("--agency", "agency_uscc", metavar="USCC", help="Issued by this agency.")
@click.option("--type", "type_code", metavar="CODE", help="Of this type.")
@click.option(
    "--holder",
    metavar="TEXT",
    help="Whose holder's name contains TEXT, or whose holder code is TEXT.",
)
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="How many, newest first.",
)
@json_option
def license_list(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    agency_uscc: str | None,
    type_code: str | None,
    holder: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List licences, newest first."""
    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services:
        records = services.licence_registry().find_licences(
            holder=holder, type_code=type_code, agency_uscc=agency_uscc, limit=limit
        )
    if as_json:
        emit_json({"licences": [record.to_dict() for record in records]})
        return
    out = console()
    if not records:
        out.print("No licences.")
    for r in records:
        until = r.valid_until.isoformat() if r.valid_until else "long-term"
        out.print(
            f"{r.identifier}  {r.status.value:<10} until {until:<10}  {r.type_name}  "
            f"{r.holder_name} ({r.holder_code})",
            markup=False,
        )


# -- status ----------------------------------------------------------------------------


def _change_status(
    services: Services,
    identifier: str,
    change: Callable[[LicenceRegistry], LicenceRecord],
) -> LicenceRecord:
    """Run a status change. One that stands but whose status list could not be signed
    now (the key store locked, say) is a warning: the schedule signs the list later."""
    licences = services.licence_registry()
    try:
        return change(licences)
    except StatusListUnavailableError as exc:
        warn(one_line(exc))
        return licences.get_licence(identifier)


@license_group.command("revoke")
@instance_options
@click.argument("identifier", metavar="ID")
@click.option("--reason", required=True, help="Why (one line, kept with the licence).")
@json_option
def license_revoke(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    identifier: str,
    reason: str,
    as_json: bool,
) -> None:
    """Revoke a licence for good; its status list is signed again at once."""
    settings = load_settings(home, database_url, hsm)
    with open_services(settings) as services:
        record = _change_status(
            services,
            identifier,
            lambda licences: licences.revoke(identifier, reason, actor=cli_actor()),
        )
    _print_status_change(record, as_json)


@license_group.command("suspend")
@instance_options
@click.argument("identifier", metavar="ID")
@click.option("--reason", help="Why (one line, kept with the licence).")
@json_option
def license_suspend(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    identifier: str,
    reason: str | None,
    as_json: bool,
) -> None:
    """Suspend a licence until it is reinstated; its status list is signed again."""
    settings = load_settings(home, database_url, hsm)
    with open_services(settings) as services:
        record = _change_status(
            services,
            identifier,
            lambda licences: licences.suspend(
                identifier, actor=cli_actor(), note=reason
            ),
        )
    _print_status_change(record, as_json)


@license_group.command("reinstate")
@instance_options
@click.argument("identifier", metavar="ID")
@json_option
def license_reinstate(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    identifier: str,
    as_json: bool,
) -> None:
    """Lift a suspension; the status list is signed again."""
    settings = load_settings(home, database_url, hsm)
    with open_services(settings) as services:
        record = _change_status(
            services,
            identifier,
            lambda licences: licences.reinstate(identifier, actor=cli_actor()),
        )
    _print_status_change(record, as_json)


# -- the holder's side -----------------------------------------------------------------


@license_group.command("present")
@instance_options
@click.option("--id", "identifier", required=True, metavar="ID", help="The licence.")
@click.option(
    "--disclose",
    required=True,
    metavar="A,B",
    help="The fields to show, by name, comma-separated; nothing else is disclosed.",
)
@click.option(
    "--holder-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The holder's private key (PEM, EC P-256) the credential is bound to: the "
    "presentation then carries key binding for --nonce and --aud.",
)
@click.option("--nonce", metavar="N", help="The verifier's nonce (with --holder-key).")
@click.option(
    "--aud", metavar="A", help="The verifier, as audience (with --holder-key)."
)
@json_option
def license_present(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    identifier: str,
    disclose: str,
    holder_key: Path | None,
    nonce: str | None,
    aud: str | None,
    as_json: bool,
) -> None:
    """Make an SD-JWT presentation of a licence showing only the chosen fields (prints
    it: hand it to the verifier)."""
    fields = parse_field_list(disclose)
    if holder_key is None and (nonce is not None or aud is not None):
        raise click.UsageError("--nonce and --aud go with --holder-key")
    if holder_key is not None and (not nonce or not aud):
        raise click.UsageError("key binding needs both --nonce and --aud")
    key = (
        holder_private_key(
            read_input_file(holder_key, MAX_KEY_BYTES), source=str(holder_key)
        )
        if holder_key is not None
        else None
    )
    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services:
        presentation = services.licence_registry().present_licence(
            identifier, fields, holder_key=key, nonce=nonce, aud=aud
        )
    if as_json:
        emit_json(
            {
                "identifier": identifier.strip(),
                "presentation": presentation,
                "disclosed": list(fields),
                "key_bound": key is not None,
            }
        )
    else:
        click.echo(presentation)


@license_group.command("bind-key")
@instance_options
@click.argument("identifier", metavar="ID")
@click.option(
    "--holder-key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The holder's EC P-256 key: PEM (public or private) or JWK.",
)
@json_option
def license_bind_key(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    identifier: str,
    holder_key: Path,
    as_json: bool,
) -> None:
    """Issue the licence's SD-JWT again, bound to the holder's key (a licence issued
    without one, or a new phone); the old credential stays valid."""
    key = _read_holder_key(holder_key)
    settings = load_settings(home, database_url, hsm)
    with open_services(settings) as services:
        sd_jwt = services.licence_registry().bind_holder_key(
            identifier, key, actor=cli_actor()
        )
    if as_json:
        emit_json({"identifier": identifier.strip(), "sd_jwt": sd_jwt})
    else:
        click.echo(
            f"The SD-JWT of {identifier.strip()} is now bound to the holder's key "
            "(--json prints it)."
        )


@license_group.command("usage-code")
@instance_options
@click.option("--id", "identifier", required=True, metavar="ID", help="The licence.")
@click.option(
    "--ttl",
    default="10m",
    show_default=True,
    metavar="DURATION",
    help="How long the code lasts: 30s, 10m, 2h, 1d (1 minute to 7 days).",
)
@click.option(
    "--uses",
    default=1,
    show_default=True,
    type=click.IntRange(1, 100),
    help="How many fetches it allows.",
)
@click.option("--purpose", help="What the code is for (用途), e.g. 银行开户.")
@json_option
def license_usage_code(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    identifier: str,
    ttl: str,
    uses: int,
    purpose: str | None,
    as_json: bool,
) -> None:
    """Make a usage code (用证码) with which a verifier fetches the sealed PDF once
    (GET /api/v1/licenses/by-code/<code>); every fetch is logged."""
    lifetime = parse_ttl(ttl)
    settings = load_settings(home, database_url, hsm, read_pin=False)
    options: dict[str, Any] = {"ttl": lifetime, "uses": uses}
    if purpose is not None:
        options["purpose"] = purpose
    with open_services(settings) as services:
        code, expires_at = services.licence_registry().create_usage_code(
            identifier, actor=cli_actor(), **options
        )
        fetch_url = f"{settings.public_base_url}/api/v1/licenses/by-code/{code}"
    if as_json:
        emit_json(
            {
                "identifier": identifier.strip(),
                "code": code,
                "expires_at": expires_at,
                "uses": uses,
                "fetch_url": fetch_url,
            }
        )
    else:
        click.echo(
            f"Usage code {code} for {identifier.strip()}: {uses} use(s), until "
            f"{expires_at:%Y-%m-%d %H:%M:%S} UTC; fetch at {fetch_url}"
        )


@license_group.command("copy")
@instance_options
@click.option("--id", "identifier", required=True, metavar="ID", help="The licence.")
@click.option(
    "--purpose",
    required=True,
    help="What the copy is for: printed across it as 仅供<purpose>使用 with the date.",
)
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="The PDF to write."
)
@json_option
def license_copy(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    identifier: str,
    purpose: str,
    out: Path,
    as_json: bool,
) -> None:
    """A watermarked copy for one purpose, sealed again (the watermark under the seal)."""
    settings = load_settings(home, database_url, hsm)
    check_output_path(out)
    with open_services(settings) as services:
        pdf = services.licence_registry().copy_with_watermark(
            identifier, purpose, principal=cli_principal()
        )
    write_output(out, pdf)
    if as_json:
        emit_json(
            {
                "identifier": identifier.strip(),
                "purpose": purpose,
                "out": out,
                "bytes": len(pdf),
            }
        )
    else:
        click.echo(
            f"Wrote a sealed copy of {identifier.strip()} for {purpose} to {out}."
        )


# -- verifying -------------------------------------------------------------------------


def _text_argument(value: str, what: str) -> str:
    """The value, or standard input when it is "-" (a scanner's output piped in)."""
    if value != "-":
        return value
    data = sys.stdin.buffer.read(MAX_TEXT_INPUT_BYTES + 1)
    if len(data) > MAX_TEXT_INPUT_BYTES:
        raise LicenceOptionError(f"the {what} on standard input is too long")
    return data.decode("utf-8", errors="replace").strip()


def _status_source(
    licences: LicenceRegistry, trust: LicenceTrust, *, online: bool
) -> StatusSource:
    """Offline: this node's status lists as last signed (what it stores, read in
    process). Online: every list fetched over HTTP from its URI, as any verifier would."""
    if online:
        return StatusListCache(trust=trust.signers, fetch=http_status_fetcher())
    return licences.status_source()


@license_group.command("verify")
@instance_options
@click.option(
    "--qr-image",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A photo or scan of the licence's QR code (PNG, JPEG).",
)
@click.option("--token", metavar="LC1:...", help="The QR code's text; - reads stdin.")
@click.option(
    "--sd-jwt",
    "sd_jwt",
    metavar="PRESENTATION",
    help="An SD-JWT presentation; - reads stdin.",
)
@click.option(
    "--pdf",
    "pdf_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A sealed licence PDF.",
)
@click.option("--nonce", metavar="N", help="The nonce you gave the holder (SD-JWT).")
@click.option("--aud", metavar="A", help="Yourself, as the audience (SD-JWT).")
@click.option(
    "--online",
    is_flag=True,
    help="Fetch the status list over HTTP from the URI the licence names "
    "[default: this node's stored lists].",
)
@json_option
def license_verify(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    qr_image: Path | None,
    token: str | None,
    sd_jwt: str | None,
    pdf_file: Path | None,
    nonce: str | None,
    aud: str | None,
    online: bool,
    as_json: bool,
) -> int:
    """Verify a licence: exit 0 VALID, 1 any other verdict, 2 unreadable (MALFORMED).

    With --nonce and --aud, an SD-JWT presentation must carry key binding to them.
    """
    given = [v for v in (qr_image, token, sd_jwt, pdf_file) if v is not None]
    if len(given) != 1:
        raise click.UsageError(
            "give exactly one of --qr-image, --token, --sd-jwt or --pdf"
        )
    if (nonce is None) != (aud is None):
        raise click.UsageError("give --nonce and --aud together")
    if nonce is not None and sd_jwt is None:
        raise click.UsageError("--nonce and --aud go with --sd-jwt")
    inputs: dict[str, Any] = {}
    if qr_image is not None:
        inputs["qr_image"] = read_input_file(qr_image, MAX_QR_IMAGE_BYTES)
    elif pdf_file is not None:
        inputs["pdf"] = read_input_file(pdf_file, VerifyLimits().max_input_bytes)
    elif token is not None:
        inputs["token"] = _text_argument(token, "token")
    else:
        assert sd_jwt is not None
        inputs["sd_jwt"] = _text_argument(sd_jwt, "presentation")
    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services:
        licences = services.licence_registry()
        trust = services.licence_trust()
        result = verify_licence(
            **inputs,
            trust=trust,
            status_source=_status_source(licences, trust, online=online),
            now=dt.datetime.now(dt.UTC),
            nonce=nonce,
            aud=aud,
            require_key_binding=nonce is not None,
            explain=licences.status_detail,
        )
    if as_json:
        emit_json(result.to_dict())
    else:
        print_verification(result, Console(soft_wrap=True, highlight=False))
    if result.verdict is Verdict.VALID:
        return 0
    return EXIT_MALFORMED if result.verdict is Verdict.MALFORMED else EXIT_CHECK_FAILED


def _time(moment: dt.datetime | None) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC" if moment else "-"


def print_verification(result: LicenceVerification, out: Console) -> None:
    """The verdict as a clerk reads it: the bottom line, then what it rests on."""
    style = "bold green" if result.verdict is Verdict.VALID else "bold red"
    out.print(Text.assemble((result.verdict.value, style), f" — {result.reason}"))
    rows: list[tuple[str, str]] = []
    if result.licence_id:
        rows.append(("licence", result.licence_id))
        rows.append(("type", _type_label(result.type_code)))
    if result.issuer:
        rows.append(("issuer", f"region {result.issuer}"))
    if result.issued_at or result.expires_at:
        rows.append(
            ("valid", f"{_time(result.issued_at)} to {_time(result.expires_at)}")
        )
    if result.signer:
        rows.append(("signed by", result.signer))
    if result.status is not None:
        rows.append(("status", result.status.reason))
    if result.seal is not None:
        seal = result.seal
        made = "timestamped" if seal.timestamped else "signed"
        rows.append(
            (
                "seal",
                (
                    f"{seal.agency or 'unknown agency'} ({seal.agency_uscc or '-'}), "
                    f"seal code {seal.seal_code or '-'}, {made} "
                    f"{_time(seal.signing_time)}: {seal.reason}"
                ),
            )
        )
    if result.key_bound is not None:
        rows.append(("key binding", "yes" if result.key_bound else "no"))
    for name, value in rows:
        out.print(f"  {name:<12} {value}", markup=False)
    if result.fields:
        out.print("  fields", markup=False)
        for name, value in result.fields.items():
            out.print(f"    {name:<24} {value}", markup=False)
