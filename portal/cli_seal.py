"""`yinxin seal ...`: an agency's official seals from the node operator's command line.

The operator (the person holding the HSM PIN) makes seals, changes their status, says
which API clients and staff users may use them, and stamps documents. Stamping from
here acts as the operator (`operator:<user>` in the stamp log and audit log), which
needs no grant; every stamp is still authorized (the seal must be active) and logged
before and after it is signed, one stamp-log entry per document.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from hsm_sim.api import KeyAlgorithm
from portal.cli_support import (
    check_output_path,
    cli_actor,
    console,
    emit_json,
    instance_options,
    json_option,
    load_settings,
    open_services,
    operator_name,
    read_input_file,
    warn,
    write_output,
)
from portal.errors import EXIT_CHECK_FAILED
from portal.stamp_options import (
    DEFAULT_SEAM_PAGES,
    MAX_SEAM_PAGES,
    StampOptionError,
    build_stamp_request,
    parse_level,
    parse_occurrence,
)
from seal.errors import StampError
from seal.image import SealKind
from seal.lifecycle import (
    GrantRecord,
    SealRecord,
    SealRequest,
    SealStatus,
    StampLogRecord,
    describe_seal_record,
)
from seal.stamping import (
    DEFAULT_MAX_INPUT_BYTES,
    At,
    OnKeyword,
    Placement,
    Side,
    StampRequest,
)

__all__ = ["seal"]

F = TypeVar("F", bound=Callable[..., Any])

SEAL_TYPES = tuple(kind.value for kind in SealKind)
# What a seal may be revoked for (seal/lifecycle.py: final reasons only).
REVOCATION_REASONS = (
    "keyCompromise, affiliationChanged, superseded, cessationOfOperation, "
    "privilegeWithdrawn, unspecified"
)


@click.group()
def seal() -> None:
    """Official seals: make them, manage who may use them, stamp PDFs."""


# -- shown to the operator -----------------------------------------------------------


def _seal_line(record: SealRecord) -> str:
    return f"{record.name} ({record.id}, seal code {record.es_id})"


def _grant_document(grant: GrantRecord) -> dict[str, Any]:
    return {
        "seal": grant.seal_id,
        "principal": str(grant.principal),
        "granted_at": grant.granted_at,
        "withdrawn_at": grant.withdrawn_at,
    }


def _log_document(entry: StampLogRecord) -> dict[str, Any]:
    return {
        "id": entry.log_id,
        "seal": entry.seal_id,
        "es_id": entry.es_id,
        "principal": str(entry.principal),
        "document_sha256": entry.document_sha256,
        "document_bytes": entry.document_bytes,
        "level": entry.level,
        "outcome": entry.outcome.value,
        "sealed_sha256": entry.sealed_sha256,
        "error": entry.error,
        "started_at": entry.started_at,
        "finished_at": entry.finished_at,
    }


def _print_status(record: SealRecord, as_json: bool) -> None:
    if as_json:
        emit_json(describe_seal_record(record))
    else:
        click.echo(f"{_seal_line(record)}: {record.status_reason}.")


# -- making and reading ----------------------------------------------------------------


@seal.command("make")
@instance_options
@click.option(
    "--agency",
    "agency_uscc",
    required=True,
    metavar="USCC",
    help="The registered agency the seal belongs to.",
)
@click.option(
    "--type",
    "kind",
    required=True,
    type=click.Choice(SEAL_TYPES),
    help="official (公章), contract (合同专用章), finance (财务专用章), invoice "
    "(发票专用章) or legal-rep (法定代表人章).",
)
@click.option(
    "--name",
    help="legal-rep: the person's name (required). Any other type bears the agency's "
    "registered name and nothing else: leave --name out or repeat that name exactly "
    "(another name is refused).",
)
@click.option(
    "--valid-until",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    metavar="DATE",
    help="Last day of validity, YYYY-MM-DD (to the end of that day, China time) "
    "[default and longest: the seal certificate profile's].",
)
@click.option(
    "--algorithm",
    metavar="NAME",
    help="The seal key: " + ", ".join(a.value for a in KeyAlgorithm) + " "
    "[default: the seal profile's].",
)
@json_option
def seal_make(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    agency_uscc: str,
    kind: str,
    name: str | None,
    valid_until: dt.datetime | None,
    algorithm: str | None,
    as_json: bool,
) -> None:
    """Make a seal: key in the HSM, seal certificate, seal code, image, seal data."""
    request = SealRequest(
        agency_uscc=agency_uscc,
        kind=kind,
        name=name,
        valid_until=valid_until.date() if valid_until is not None else None,
        algorithm=KeyAlgorithm.parse(algorithm) if algorithm else None,
    )
    settings = load_settings(home, database_url, hsm)
    with open_services(settings) as services:
        record = services.seal_registry().make_seal(request, actor=cli_actor())
    if as_json:
        emit_json(describe_seal_record(record))
        return
    click.echo(
        f"Made {_seal_line(record)} for {record.agency_name} ({record.agency_uscc}), "
        f"valid until {record.valid_until:%Y-%m-%d %H:%M} UTC; certificate "
        f"{record.certificate_serial} by {record.certificate_issuer}."
    )


@seal.command("list")
@instance_options
@click.option(
    "--agency", "agency_uscc", metavar="USCC", help="Only this agency's seals."
)
@click.option(
    "--status",
    type=click.Choice([status.value for status in SealStatus]),
    help="Only seals in this status.",
)
@json_option
def seal_list(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    agency_uscc: str | None,
    status: str | None,
    as_json: bool,
) -> None:
    """List seals, oldest first."""
    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services:
        records = services.seal_registry().list_seals(
            agency_uscc, status=SealStatus(status) if status else None
        )
    if as_json:
        emit_json({"seals": [describe_seal_record(r) for r in records]})
        return
    # Lines, not a table: ids and seal codes must never be cut to fit a terminal.
    out = console()
    if not records:
        out.print(
            "No seals." if not agency_uscc else f"Agency {agency_uscc} has no seals."
        )
    for r in records:
        out.print(
            f"{r.id}  {r.es_id}  {r.kind.value:<9} {r.status.value:<9} "
            f"until {r.valid_until:%Y-%m-%d}  {r.name} ({r.agency_uscc})",
            markup=False,
        )


@seal.command("show")
@instance_options
@click.argument("seal_ref", metavar="SEAL")
@json_option
def seal_show(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    seal_ref: str,
    as_json: bool,
) -> None:
    """Show a seal (by id or seal code) and who may stamp with it."""
    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services:
        registry = services.seal_registry()
        record = registry.get_seal(seal_ref)
        grants = registry.list_grants(record.id)
    document = describe_seal_record(record)
    document["grants"] = [_grant_document(g) for g in grants]
    if as_json:
        emit_json(document)
        return
    out = console()
    rows: list[tuple[str, object]] = [
        ("id", record.id),
        ("seal code", record.es_id),
        ("name", record.name),
        ("type", f"{record.kind.value} ({record.kind.label})"),
        ("agency", f"{record.agency_name} ({record.agency_uscc})"),
        ("status", f"{record.status.value}: {record.status_reason}"),
        (
            "valid",
            f"{record.valid_from:%Y-%m-%d %H:%M} to {record.valid_until:%Y-%m-%d %H:%M} UTC",
        ),
        ("size", f"{record.size_mm[0]:g} × {record.size_mm[1]:g} mm"),
        (
            "certificate",
            f"{record.certificate_serial} by {record.certificate_issuer}",
        ),
        ("key", record.key_label),
        (
            "may stamp",
            ", ".join(str(g.principal) for g in grants)
            or "nobody but the operator (no grants)",
        ),
    ]
    if record.person_name:
        rows.insert(3, ("person", record.person_name))
    for name, value in rows:
        out.print(f"  {name:<12} {value}")


@seal.command("log")
@instance_options
@click.argument("seal_ref", metavar="[SEAL]", required=False)
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(1, 10000),
    help="How many entries, newest first.",
)
@json_option
def seal_log(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    seal_ref: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The stamp log, newest first: who stamped which document (SHA-256) with which
    seal, and how it ended."""
    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services:
        entries = services.seal_registry().stamp_log(seal_ref, limit=limit)
    if as_json:
        emit_json({"stamps": [_log_document(e) for e in entries]})
        return
    out = console()
    if not entries:
        out.print("No stamps logged.")
    for e in entries:
        line = (
            f"#{e.log_id}  {e.started_at:%Y-%m-%d %H:%M:%S} UTC  {e.es_id}  "
            f"{e.principal}  {e.level}  {e.outcome.value}  document {e.document_sha256}"
        )
        if e.error:
            line += f"  ({e.error})"
        out.print(line, markup=False)


# -- lifecycle -----------------------------------------------------------------------


@seal.command("suspend")
@instance_options
@click.argument("seal_ref", metavar="SEAL")
@click.option("--note", help="Why (one line, kept with the seal).")
@json_option
def seal_suspend(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    seal_ref: str,
    note: str | None,
    as_json: bool,
) -> None:
    """Stop a seal from stamping until it is reinstated (documents stay valid)."""
    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services:
        record = services.seal_registry().suspend_seal(seal_ref, note=note)
    _print_status(record, as_json)


@seal.command("reinstate")
@instance_options
@click.argument("seal_ref", metavar="SEAL")
@json_option
def seal_reinstate(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    seal_ref: str,
    as_json: bool,
) -> None:
    """Let a suspended seal stamp again."""
    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services:
        record = services.seal_registry().reinstate_seal(seal_ref)
    _print_status(record, as_json)


@seal.command("revoke")
@instance_options
@click.argument("seal_ref", metavar="SEAL")
@click.option(
    "--reason",
    required=True,
    help=f"RFC 5280 reason, one of: {REVOCATION_REASONS}.",
)
@json_option
def seal_revoke(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    seal_ref: str,
    reason: str,
    as_json: bool,
) -> None:
    """Revoke a seal for good: its certificate is revoked and its key destroyed."""
    settings = load_settings(home, database_url, hsm)
    with open_services(settings) as services:
        record = services.seal_registry().revoke_seal(
            seal_ref, reason, actor=cli_actor()
        )
    _print_status(record, as_json)


def _principal_options(command: F) -> F:
    options = [
        click.option("--client", "client_id", metavar="ID", help="An API client id."),
        click.option("--staff", "staff_username", metavar="USER", help="A staff user."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _one_principal(client_id: str | None, staff_username: str | None) -> None:
    if (client_id is None) == (staff_username is None):
        raise click.UsageError("name one principal: --client ID or --staff USER")


@seal.command("grant")
@instance_options
@click.argument("seal_ref", metavar="SEAL")
@_principal_options
@json_option
def seal_grant(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    seal_ref: str,
    client_id: str | None,
    staff_username: str | None,
    as_json: bool,
) -> None:
    """Allow an API client or staff user of the seal's agency to stamp with it."""
    _one_principal(client_id, staff_username)
    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services:
        grant = services.seal_registry().grant(
            seal_ref, client_id=client_id, staff_username=staff_username
        )
    if as_json:
        emit_json(_grant_document(grant))
    else:
        click.echo(f"{grant.principal} may stamp with seal {grant.seal_id}.")


@seal.command("withdraw")
@instance_options
@click.argument("seal_ref", metavar="SEAL")
@_principal_options
@json_option
def seal_withdraw(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    seal_ref: str,
    client_id: str | None,
    staff_username: str | None,
    as_json: bool,
) -> None:
    """Take back a grant: the client or staff user can no longer stamp with the seal."""
    _one_principal(client_id, staff_username)
    settings = load_settings(home, database_url, hsm, read_pin=False)
    with open_services(settings) as services:
        grant = services.seal_registry().withdraw_grant(
            seal_ref, client_id=client_id, staff_username=staff_username
        )
    if as_json:
        emit_json(_grant_document(grant))
    else:
        click.echo(f"{grant.principal} may no longer stamp with seal {grant.seal_id}.")


@seal.command("export-image")
@instance_options
@click.option("--seal", "seal_ref", required=True, metavar="ID", help="The seal.")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="FILE.png (a 300 dpi preview) or FILE.pdf (the vector image as stamped).",
)
@json_option
def seal_export_image(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    seal_ref: str,
    out: Path,
    as_json: bool,
) -> None:
    """Write the seal's image: PNG, or the vector PDF when the name ends in .pdf."""
    image_format = "pdf" if out.suffix.lower() == ".pdf" else "png"
    settings = load_settings(home, database_url, hsm, read_pin=False)
    check_output_path(out)
    with open_services(settings) as services:
        data = services.seal_registry().export_image(seal_ref, image_format)
    write_output(out, data)
    if as_json:
        emit_json(
            {"seal": seal_ref, "out": out, "format": image_format, "bytes": len(data)}
        )
    else:
        click.echo(f"Wrote the seal's {image_format.upper()} image to {out}.")


# -- stamping --------------------------------------------------------------------------


def _placement_options(command: F) -> F:
    options = [
        click.option(
            "--page",
            "pages",
            multiple=True,
            type=click.IntRange(1),
            metavar="N",
            help="Page of a placement (1-based); repeat --page/--x/--y for more seals.",
        ),
        click.option(
            "--x",
            "xs",
            multiple=True,
            type=click.FloatRange(0),
            metavar="MM",
            help="The seal centre's distance from the page's left edge, mm.",
        ),
        click.option(
            "--y",
            "ys",
            multiple=True,
            type=click.FloatRange(0),
            metavar="MM",
            help="The seal centre's distance from the page's top edge, mm.",
        ),
        click.option(
            "--keyword",
            metavar="TEXT",
            help="Centre the seal on this text (e.g. 盖章处).",
        ),
        click.option(
            "--occurrence",
            metavar="WHICH",
            help="With --keyword: first (default), last, all, or N.",
        ),
        click.option(
            "--seam", is_flag=True, help="Add a seam seal (骑缝章) across every page."
        ),
        click.option(
            "--side",
            type=click.Choice([side.value for side in Side]),
            help="With --seam: the page edge [default: right].",
        ),
        click.option(
            "--seam-pages",
            type=click.IntRange(2, MAX_SEAM_PAGES),
            metavar="N",
            help=f"With --seam: pages per seal image [default: {DEFAULT_SEAM_PAGES}].",
        ),
        click.option(
            "--level",
            default="B-LT",
            show_default=True,
            metavar="LEVEL",
            help="PAdES level: B-B, B-T (with this node's timestamp), B-LT "
            "(revocation data embedded), B-LTA (plus a document timestamp).",
        ),
        click.option(
            "--certify",
            is_flag=True,
            help="A certification seal: no changes allowed after it.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _stamp_request(
    pages: tuple[int, ...],
    xs: tuple[float, ...],
    ys: tuple[float, ...],
    keyword: str | None,
    occurrence: str | None,
    seam: bool,
    side: str | None,
    seam_pages: int | None,
    level: str,
    certify: bool,
) -> StampRequest:
    if not len(pages) == len(xs) == len(ys):
        raise click.UsageError(
            "each placement needs all three of --page, --x and --y "
            f"(got {len(pages)} --page, {len(xs)} --x, {len(ys)} --y)"
        )
    if occurrence is not None and keyword is None:
        raise click.UsageError("--occurrence goes with --keyword")
    if (side is not None or seam_pages is not None) and not seam:
        raise click.UsageError("--side and --seam-pages go with --seam")
    placements: list[Placement] = [
        At(page, x, y) for page, x, y in zip(pages, xs, ys, strict=True)
    ]
    if keyword is not None:
        if not keyword.strip():
            raise StampOptionError("the keyword must not be empty")
        placements.append(OnKeyword(keyword, parse_occurrence(occurrence or "first")))
    return build_stamp_request(
        placements,
        seam=Side(side or Side.RIGHT.value) if seam else None,
        seam_pages=seam_pages or DEFAULT_SEAM_PAGES,
        level=parse_level(level),
        certify=certify,
    )


def _describe_request(request: StampRequest) -> str:
    parts = [f"level {request.level.value}"]
    if request.placements:
        parts.append(f"{len(request.placements)} placement(s)")
    if request.seam is not None:
        parts.append(f"seam seal on the {request.seam.side.value} edge")
    if not request.placements and request.seam is None:
        parts.append("invisible")
    if request.certify:
        parts.append("certifying")
    return ", ".join(parts)


@seal.command("stamp")
@instance_options
@click.option("--seal", "seal_ref", required=True, metavar="ID", help="The seal.")
@click.argument(
    "input_file",
    metavar="IN.pdf",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.argument("output_file", metavar="OUT.pdf", type=click.Path(path_type=Path))
@_placement_options
@json_option
def seal_stamp(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    seal_ref: str,
    input_file: Path,
    output_file: Path,
    pages: tuple[int, ...],
    xs: tuple[float, ...],
    ys: tuple[float, ...],
    keyword: str | None,
    occurrence: str | None,
    seam: bool,
    side: str | None,
    seam_pages: int | None,
    level: str,
    certify: bool,
    as_json: bool,
) -> None:
    """Stamp a PDF with a seal, as the node operator (logged in the stamp log).

    Placements: --page N --x MM --y MM (repeatable; the seal's centre, measured from
    the page's top-left corner) and/or --keyword TEXT. Without any, the seal is
    invisible unless --seam is given.
    """
    request = _stamp_request(
        pages, xs, ys, keyword, occurrence, seam, side, seam_pages, level, certify
    )
    settings = load_settings(home, database_url, hsm)
    check_output_path(output_file)
    document = read_input_file(input_file, DEFAULT_MAX_INPUT_BYTES)
    with open_services(settings) as services:
        registry = services.seal_registry()
        authorization = registry.authorize_stamp(seal_ref, operator=operator_name())
        stamper = services.stamper(authorization)
        sealed = registry.stamp_document(authorization, stamper, document, request)
    write_output(output_file, sealed)
    record = authorization.seal
    result = {
        "seal": record.id,
        "es_id": record.es_id,
        "seal_name": record.name,
        "in": input_file,
        "out": output_file,
        "level": request.level.value,
        "placements": len(request.placements),
        "seam": request.seam.side.value if request.seam else None,
        "certify": request.certify,
        "document_sha256": hashlib.sha256(document).hexdigest(),
        "sealed_sha256": hashlib.sha256(sealed).hexdigest(),
        "bytes": len(sealed),
    }
    if as_json:
        emit_json(result)
        return
    click.echo(
        f"Sealed {output_file} with {_seal_line(record)} ({_describe_request(request)}); "
        f"SHA-256 {result['sealed_sha256']}."
    )


def _batch_sources(input_dir: Path, output_dir: Path) -> list[Path]:
    if output_dir.exists() and not output_dir.is_dir():
        raise StampOptionError(f"{output_dir} is not a directory")
    if output_dir.resolve() == input_dir.resolve():
        raise StampOptionError("the output directory must not be the input directory")
    return sorted(
        path
        for path in input_dir.iterdir()
        if path.suffix.lower() == ".pdf" and path.is_file()
    )


@seal.command("batch")
@instance_options
@click.option("--seal", "seal_ref", required=True, metavar="ID", help="The seal.")
@click.option(
    "--in",
    "input_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Stamp every *.pdf file in this directory.",
)
@click.option(
    "--out",
    "output_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Write the sealed files here, under the same names (made if missing).",
)
@_placement_options
@json_option
def seal_batch(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    seal_ref: str,
    input_dir: Path,
    output_dir: Path,
    pages: tuple[int, ...],
    xs: tuple[float, ...],
    ys: tuple[float, ...],
    keyword: str | None,
    occurrence: str | None,
    seam: bool,
    side: str | None,
    seam_pages: int | None,
    level: str,
    certify: bool,
    as_json: bool,
) -> int:
    """Stamp every PDF in a directory; a file that cannot be stamped is reported and
    skipped, the rest go on (exit 1 if any was skipped). One stamp-log entry per file."""
    request = _stamp_request(
        pages, xs, ys, keyword, occurrence, seam, side, seam_pages, level, certify
    )
    settings = load_settings(home, database_url, hsm)
    sources = _batch_sources(input_dir, output_dir)
    stamped: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    with open_services(settings) as services:
        registry = services.seal_registry()
        authorization = registry.authorize_stamp(seal_ref, operator=operator_name())
        stamper = services.stamper(authorization)
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
            raise StampOptionError(f"cannot make {output_dir}: {reason}") from None
        errors = Console(stderr=True, soft_wrap=True, highlight=False)
        progress = Progress(
            TextColumn("stamping"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[name]}"),
            console=errors,
            disable=as_json,
        )
        with progress:
            task = progress.add_task("stamping", total=len(sources), name="")
            for source in sources:
                progress.update(task, name=source.name)
                target = output_dir / source.name
                try:
                    document = read_input_file(source, DEFAULT_MAX_INPUT_BYTES)
                    sealed = registry.stamp_document(
                        authorization, stamper, document, request
                    )
                    write_output(target, sealed)
                except (StampError, ValueError) as exc:
                    reason = " ".join(str(exc).split())
                    failed.append({"file": source, "error": reason})
                    if not as_json:
                        progress.console.print(
                            f"yinxin: warning: skipped {source.name}: {reason}",
                            markup=False,
                        )
                else:
                    stamped.append(
                        {
                            "file": source,
                            "out": target,
                            "document_sha256": hashlib.sha256(document).hexdigest(),
                            "sealed_sha256": hashlib.sha256(sealed).hexdigest(),
                        }
                    )
                progress.advance(task)
    if as_json:
        emit_json(
            {
                "seal": authorization.seal.id,
                "level": request.level.value,
                "stamped": stamped,
                "failed": failed,
            }
        )
    else:
        click.echo(
            f"Stamped {len(stamped)} of {len(sources)} PDF file(s) into {output_dir} "
            f"with {_seal_line(authorization.seal)} ({_describe_request(request)})"
            + (f"; {len(failed)} skipped." if failed else ".")
        )
    if not sources:
        warn(f"{input_dir} holds no *.pdf files")
    return EXIT_CHECK_FAILED if failed else 0
