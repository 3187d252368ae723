"""`yinxin verify ...`: check sealed documents, as any relying party would.

Verifying needs no key: it runs without the HSM PIN. On a node it trusts the node's
root CA and asks the node's own OCSP responses and CRLs (as stored; nothing is signed
for it) about the node's certificates; `--trust` adds other roots, and it also runs
with no instance at all when `--trust` names the roots. Exit code: 0 valid, 1 invalid,
2 unusable input (not a PDF, nothing signed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import click
from cryptography import x509
from rich.console import Console
from rich.table import Table
from rich.text import Text

from hsm_sim.errors import ErrorCategory
from portal.cli_support import (
    InputFileError,
    emit_json,
    instance_options,
    json_option,
    load_settings,
    open_services,
)
from portal.errors import InstanceNotFoundError
from seal.errors import TrustServiceError
from seal.trust_services import HttpRevocationSource, RevocationSource
from seal.verify import (
    Change,
    PdfVerification,
    RevocationStatus,
    SignatureKind,
    SignatureReport,
    VerifyLimits,
    verify_pdf,
)

__all__ = ["FirstAnswerRevocationSource", "load_trust_roots", "verify"]

MAX_TRUST_FILE_BYTES = 1024 * 1024


class TrustFileError(ValueError):
    """A --trust file that holds no usable certificate."""

    category = ErrorCategory.BAD_REQUEST


def load_trust_roots(path: Path) -> list[x509.Certificate]:
    """The certificates in a PEM file (one or more) or a DER file."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_TRUST_FILE_BYTES + 1)
    except OSError as exc:
        raise TrustFileError(
            f"cannot read {path}: {(exc.strerror or type(exc).__name__).lower()}"
        ) from None
    if len(data) > MAX_TRUST_FILE_BYTES:
        raise TrustFileError(f"{path} is too large for a certificate file")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise TrustFileError(
            f"{path} holds no certificate (PEM or DER) to trust"
        ) from None


class FirstAnswerRevocationSource:
    """Asks each source in turn; the first that answers wins."""

    def __init__(self, *sources: RevocationSource) -> None:
        self._sources = sources

    def ocsp(self, url: str, request_der: bytes) -> bytes:
        return self._first(lambda source: source.ocsp(url, request_der))

    def crl(self, url: str) -> bytes:
        return self._first(lambda source: source.crl(url))

    def _first(self, ask: Callable[[RevocationSource], bytes]) -> bytes:
        failure: TrustServiceError | None = None
        for source in self._sources:
            try:
                return ask(source)
            except TrustServiceError as exc:
                failure = exc
        raise failure or TrustServiceError("no revocation source")


@click.group()
def verify() -> None:
    """Verify sealed documents (no key or PIN needed)."""


@verify.command("pdf")
@instance_options
@click.argument(
    "pdf_file",
    metavar="FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option(
    "--trust",
    "trust_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also trust the root certificate(s) in this PEM or DER file (repeatable). "
    "Without an instance, the only roots trusted.",
)
@click.option(
    "--online",
    is_flag=True,
    help="Fetch revocation data over HTTP from the URLs other nodes' certificates name.",
)
@json_option
def verify_pdf_command(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    pdf_file: Path,
    trust_files: tuple[Path, ...],
    online: bool,
    as_json: bool,
) -> int:
    """Verify every seal in a PDF: exit 0 valid, 1 invalid, 2 unusable input."""
    extra_roots = [root for path in trust_files for root in load_trust_roots(path)]
    limits = VerifyLimits()
    try:
        with pdf_file.open("rb") as stream:
            # One byte over the limit is enough for verify_pdf to refuse it as too large.
            data = stream.read(limits.max_input_bytes + 1)
    except OSError as exc:
        raise InputFileError(
            f"cannot read {pdf_file}: {(exc.strerror or type(exc).__name__).lower()}"
        ) from None
    settings = load_settings(home, database_url, hsm, read_pin=False)
    http = HttpRevocationSource(timeout=limits.fetch_timeout_seconds)
    if settings.config_file.is_file():
        with open_services(settings) as services:
            node = services.verification_revocation()
            report = verify_pdf(
                data,
                trust_roots=[*services.trust_roots(), *extra_roots],
                revocation=FirstAnswerRevocationSource(node, http) if online else node,
                limits=limits,
            )
    elif extra_roots:
        report = verify_pdf(
            data,
            trust_roots=extra_roots,
            revocation=http if online else None,
            limits=limits,
        )
    else:
        raise InstanceNotFoundError(
            f"no Yinxin instance at {settings.home} to take trust roots from; "
            "give --home, or --trust FILE with the root certificate(s) to trust"
        )
    if as_json:
        emit_json(report.to_dict())
    else:
        print_report(report, pdf_file, Console(soft_wrap=True, highlight=False))
    return report.exit_code


# -- the human-readable report -----------------------------------------------------------


def _time(moment: dt.datetime | None) -> str:
    if moment is None:
        return "unknown"
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


def _verdict(valid: bool) -> Text:
    return (
        Text("VALID", style="bold green")
        if valid
        else Text("INVALID", style="bold red")
    )


def _check(ok: bool, text: str) -> Text:
    return Text(("✓ " if ok else "✗ ") + text, style="green" if ok else "red")


_CHANGE_WORDS = {
    Change.SIGNATURE_ADDED: "a later seal or signature",
    Change.DOCUMENT_TIMESTAMP_ADDED: "a document timestamp",
    Change.VALIDATION_DATA_ADDED: "validation data (DSS)",
    Change.DOCUMENT_INFO_CHANGED: "document properties (/Info, XMP)",
    Change.FORM_FILLED: "form fields filled in",
    Change.OTHER: "other changes",
}


def _signature_rows(signature: SignatureReport) -> list[tuple[str, Text | str]]:
    rows: list[tuple[str, Text | str]] = []
    seal = signature.seal
    if seal is not None:
        kind = seal.seal_type_name or f"type {seal.seal_type}"
        rows.append(("seal", f"{seal.name} ({kind}), seal code {seal.es_id}"))
        rows.append(
            (
                "agency",
                f"{seal.agency or 'unknown'} · USCC {seal.agency_uscc or 'unknown'}",
            )
        )
    elif signature.kind is not SignatureKind.DOCUMENT_TIMESTAMP:
        rows.append(
            ("seal", Text("no seal data: a plain signature, not a seal", "yellow"))
        )
    signer = signature.signer
    if signer is not None:
        rows.append(("certificate", f"{signer.subject} (serial {signer.serial})"))
        if seal is None and signer.agency:
            rows.append(
                ("agency", f"{signer.agency} · USCC {signer.agency_uscc or 'unknown'}")
            )
    if signature.kind is not SignatureKind.DOCUMENT_TIMESTAMP:
        rows.append(
            ("signed at", f"{_time(signature.signing_time)} (as the signer claims)")
        )
    stamp = signature.timestamp
    if stamp is None:
        rows.append(
            ("timestamp", Text("none: the signing time is not proven", "yellow"))
        )
    else:
        rows.append(
            (
                "timestamp",
                _check(
                    stamp.valid,
                    f"{_time(stamp.time)} by {stamp.tsa or 'unknown TSA'}: {stamp.reason}",
                ),
            )
        )
    rows.append(
        (
            "integrity",
            _check(
                signature.intact and signature.crypto_valid,
                "intact, the signature verifies"
                if signature.intact and signature.crypto_valid
                else (
                    "the signed bytes were changed"
                    if not signature.intact
                    else "the signature does not verify"
                ),
            ),
        )
    )
    rows.append(("coverage", signature.coverage.value))
    modifications = signature.modifications
    if modifications is not None:
        if modifications.revisions_after == 0:
            rows.append(("changes after", _check(True, "none")))
        else:
            what = ", ".join(_CHANGE_WORDS[c] for c in modifications.changes) or "none"
            rows.append(
                (
                    "changes after",
                    _check(
                        modifications.allowed,
                        f"{modifications.revisions_after} revision(s): {what} — {modifications.explanation}",
                    ),
                )
            )
    if signature.certification_permission:
        rows.append(
            ("certification", f"changes allowed: {signature.certification_permission}")
        )
    chain = signature.chain
    if chain is not None:
        path = " → ".join(chain.subjects) if chain.subjects else ""
        rows.append(
            (
                "chain",
                _check(
                    chain.trusted, f"{chain.reason}" + (f": {path}" if path else "")
                ),
            )
        )
    revocation = signature.revocation
    if revocation is not None:
        settled = revocation.status is RevocationStatus.GOOD
        text = f"{revocation.status.value} at {_time(revocation.at)}"
        if revocation.source:
            text += f" ({revocation.source})"
        text += f": {revocation.reason}"
        rows.append(
            (
                "revocation",
                _check(True, text)
                if settled
                else Text(
                    ("✗ " if revocation.status is RevocationStatus.REVOKED else "? ")
                    + text,
                    style="red"
                    if revocation.status is RevocationStatus.REVOKED
                    else "yellow",
                ),
            )
        )
    if seal is not None:
        checks = [
            ("maker's signature", seal.maker_signature_ok),
            ("maker trusted", seal.maker_trusted),
            ("signing time within validity", seal.within_validity),
            ("certificate listed", seal.signer_listed),
            ("agrees with the certificate", seal.agrees_with_certificate),
        ]
        summary = ", ".join(("✓ " if ok else "✗ ") + name for name, ok in checks)
        rows.append(
            (
                "seal data",
                Text(
                    f"{summary}; made by {seal.maker or 'unknown'}, valid "
                    f"{seal.valid_from:%Y-%m-%d} to {seal.valid_until:%Y-%m-%d}: {seal.reason}",
                    style="green" if seal.valid else "red",
                ),
            )
        )
    rows.append(
        ("verdict", Text.assemble(_verdict(signature.valid), f": {signature.reason}"))
    )
    return rows


def print_report(report: PdfVerification, source: Path, out: Console) -> None:
    """The report as a clerk reads it: each signature, then the bottom line."""
    out.print(
        f"{source}  ({report.size:,} bytes, SHA-256 {report.sha256}), "
        f"verified {_time(report.verified_at)}",
        markup=False,
    )
    count = len(report.signatures)
    for index, signature in enumerate(report.signatures, start=1):
        noun = {
            SignatureKind.DOCUMENT_TIMESTAMP: "Document timestamp",
            SignatureKind.CERTIFICATION: "Certification seal"
            if signature.is_seal
            else "Certification signature",
        }.get(signature.kind, "Seal" if signature.is_seal else "Signature")
        out.print()
        out.print(
            Text.assemble(
                (f"{noun} {index} of {count}: ", "bold"),
                (signature.field_name, "bold"),
                "  ",
                _verdict(signature.valid),
            )
        )
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="dim", no_wrap=True)
        grid.add_column()
        for name, value in _signature_rows(signature):
            grid.add_row(name, value)
        out.print(grid)
    out.print()
    bottom = "Bottom line: " if report.usable else "Bottom line (unusable input): "
    out.print(
        Text.assemble((bottom, "bold"), _verdict(report.valid), f" — {report.reason}")
    )
