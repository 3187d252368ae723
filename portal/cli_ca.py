"""`yinxin ca ...`: the region's certificate authority from the command line.

Every command that signs names the operator (`cli:<user>`) in the audit log. Files
are written whole or not at all, and an --out path that cannot be written is refused
before anything is issued or published.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import click
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from hsm_sim.api import KeyAlgorithm, signing_context
from pki.ca import CertificateAuthority, Issuer
from pki.ca_models import ServicePurpose
from pki.errors import UnknownCaError
from pki.ra import MAX_CSR_BYTES
from pki.revocation import RevocationOutcome, parse_reason
from pki.timestamping import service_credential
from portal.cli_support import (
    OutputFileError,
    check_output_path,
    cli_actor,
    console,
    emit_json,
    instance_options,
    json_option,
    load_settings,
    open_services,
    table,
    write_output,
)
from portal.config import ENV_CEREMONY_CONFIG
from portal.errors import EXIT_CHECK_FAILED

__all__ = ["ca", "ceremony_file_setting"]

# An --out name with one of these suffixes gets DER; any other gets PEM.
DER_SUFFIXES = frozenset({".der", ".crl", ".cer", ".crt"})


def ceremony_file_setting(flag: Path | None) -> Path | None:
    """The ceremony file: the flag, else YINXIN_CEREMONY_CONFIG, else none."""
    if flag is not None:
        return flag
    from_env = os.environ.get(ENV_CEREMONY_CONFIG, "").strip()
    return Path(from_env) if from_env else None


def _pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certificates)


def _serial(certificate: x509.Certificate) -> str:
    return format(certificate.serial_number, "x")


def _common_name(certificate: x509.Certificate) -> str:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else certificate.subject.rfc4514_string()


@click.group()
def ca() -> None:
    """The certificate authority: hierarchy, issuance, revocation, CRLs."""


# -- the hierarchy ---------------------------------------------------------------------


@ca.command("ceremony")
@instance_options
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"The ceremony file [env {ENV_CEREMONY_CONFIG}]; pki/demo_ceremony.toml is "
    "the demo's.",
)
@json_option
def ca_ceremony(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    config_file: Path | None,
    as_json: bool,
) -> None:
    """Make the region's CA hierarchy in the HSM (only on a node that has none)."""
    from portal.instance import create_hierarchy, read_ceremony_file

    config_file = ceremony_file_setting(config_file)
    if config_file is None:
        raise click.UsageError(
            f"say which ceremony to run: --config FILE (or {ENV_CEREMONY_CONFIG})"
        )
    source = read_ceremony_file(config_file)
    settings = load_settings(home, database_url, hsm)
    with open_services(settings) as services:
        result = create_hierarchy(
            settings,
            source,
            keystore=services.keystore(),
            sessions=services.sessions,
            actor=cli_actor(),
        )
    document = {
        "cas": [
            {
                "name": made.name,
                "role": made.role,
                "subject": made.subject,
                "serial": made.serial,
                "key_label": made.key_label,
                "not_after": made.not_after,
            }
            for made in result.cas
        ],
        "services": result.services,
        "key_labels": list(result.key_labels),
        "ceremony_file": settings.ceremony_file,
    }
    if as_json:
        emit_json(document)
        return
    out = console()
    out.print(f"Made the CA hierarchy from {config_file}:")
    for made in result.cas:
        out.print(f"  {made.name:<20} {made.subject} (until {made.not_after:%Y-%m-%d})")
    out.print(f"Kept a copy of the ceremony file in {settings.ceremony_file}.")


def _ca_document(
    ca_service: CertificateAuthority, issuer: Issuer, names: dict[int, str]
) -> dict[str, Any]:
    certificate = issuer.certificate
    endpoints = ca_service.endpoints
    return {
        "name": issuer.name,
        "role": issuer.role.value,
        "subject": certificate.subject.rfc4514_string(),
        "common_name": _common_name(certificate),
        "serial": _serial(certificate),
        "not_before": certificate.not_valid_before_utc,
        "not_after": certificate.not_valid_after_utc,
        "key_label": issuer.key_label,
        "algorithm": issuer.algorithm.value,
        "parent": names.get(issuer.parent_id) if issuer.parent_id else None,
        "certificate_url": endpoints.ca_certificate_url(issuer.name),
        "crl_url": endpoints.crl_url(issuer.name),
    }


def _service_documents(ca_service: CertificateAuthority) -> list[dict[str, Any]]:
    documents = []
    for purpose in ServicePurpose:
        try:
            key_label, certificate, chain = service_credential(ca_service, purpose)
        except UnknownCaError:
            continue
        documents.append(
            {
                "purpose": purpose.value,
                "key_label": key_label,
                "subject": certificate.subject.rfc4514_string(),
                "common_name": _common_name(certificate),
                "serial": _serial(certificate),
                "issuer": chain[0].subject.rfc4514_string(),
                "not_after": certificate.not_valid_after_utc,
            }
        )
    return documents


@ca.command("list")
@instance_options
@json_option
def ca_list(
    home: Path | None, database_url: str | None, hsm: str | None, as_json: bool
) -> None:
    """List the CAs of the hierarchy and the node's service credentials."""
    settings = load_settings(home, database_url, hsm)
    with open_services(settings) as services:
        ca_service = services.certificate_authority()
        issuers = ca_service.issuers()
        names = {issuer.id: issuer.name for issuer in issuers}
        cas = [_ca_document(ca_service, issuer, names) for issuer in issuers]
        credentials = _service_documents(ca_service)
    if as_json:
        emit_json({"cas": cas, "services": credentials})
        return
    out = console()
    if not cas:
        out.print("This node has no CA hierarchy yet: yinxin ca ceremony --config FILE")
        return
    out.print(
        table(
            "Certificate authorities",
            ("name", "role", "common name", "until", "key", "algorithm"),
            [
                (
                    c["name"],
                    c["role"],
                    c["common_name"],
                    f"{c['not_after']:%Y-%m-%d}",
                    c["key_label"],
                    c["algorithm"],
                )
                for c in cas
            ],
        )
    )
    out.print(
        table(
            "Service credentials",
            ("purpose", "common name", "until", "key"),
            [
                (
                    s["purpose"],
                    s["common_name"],
                    f"{s['not_after']:%Y-%m-%d}",
                    s["key_label"],
                )
                for s in credentials
            ],
        )
    )
    out.print("Serials and full subjects: yinxin ca list --json")


@ca.command("export")
@instance_options
@click.option("--name", required=True, help="The CA (see: yinxin ca list).")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="PEM file: the CA's certificate, then its parents up to the root.",
)
@json_option
def ca_export(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    name: str,
    out: Path,
    as_json: bool,
) -> None:
    """Write a CA's certificate chain (PEM, up to the root)."""
    settings = load_settings(home, database_url, hsm)
    check_output_path(out)
    with open_services(settings) as services:
        ca_service = services.certificate_authority()
        chain = ca_service.chain(ca_service.issuer(name))
    write_output(out, _pem(*chain))
    if as_json:
        emit_json(
            {
                "name": name,
                "out": out,
                "subjects": [c.subject.rfc4514_string() for c in chain],
            }
        )
    else:
        click.echo(f"Wrote the {name} CA and {len(chain) - 1} parent(s) to {out}.")


# -- issuance --------------------------------------------------------------------------


def _read_csr(path: Path) -> bytes:
    with path.open("rb") as stream:
        # load_csr refuses anything longer with a clear message; read no more than that.
        return stream.read(MAX_CSR_BYTES + 1)


@ca.command("issue")
@instance_options
@click.option("--profile", required=True, help="seal, document-signer, api-client, ...")
@click.option(
    "--agency",
    "agency_uscc",
    metavar="USCC",
    help="The registered agency the certificate is for (agency profiles).",
)
@click.option(
    "--csr",
    "csr_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A PKCS#10 request (PEM or DER) for a key the agency holds.",
)
@click.option(
    "--generate", is_flag=True, help="Make the key in our HSM instead of taking a CSR."
)
@click.option("--label", help="With --generate: the new key's label in the HSM.")
@click.option(
    "--algorithm",
    metavar="NAME",
    help="With --generate: "
    + ", ".join(a.value for a in KeyAlgorithm)
    + " [default: the profile's].",
)
@click.option("--common-name", help="CN [default: the agency's name, or the node's].")
@click.option(
    "--issuer", "issuer_name", metavar="CA", help="Issuing CA [default: the profile's]."
)
@click.option(
    "--days", type=click.IntRange(1, 10958), help="Validity [default: the profile's]."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="PEM file: the certificate, then its issuing CAs below the root.",
)
@json_option
def ca_issue(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    profile: str,
    agency_uscc: str | None,
    csr_file: Path | None,
    generate: bool,
    label: str | None,
    algorithm: str | None,
    common_name: str | None,
    issuer_name: str | None,
    days: int | None,
    out: Path,
    as_json: bool,
) -> None:
    """Issue a certificate through the lint gate; the subject comes from the registry.

    Whatever a CSR says about its subject is ignored: an agency certificate names the
    registered agency (O, organizationIdentifier NTRCN-<USCC>, C=CN).
    """
    if generate == (csr_file is not None):
        raise click.UsageError("give either --csr FILE or --generate --label LABEL")
    if generate and not label:
        raise click.UsageError(
            "--generate needs --label: the new key's label in the HSM"
        )
    if not generate and (label or algorithm):
        raise click.UsageError("--label and --algorithm go with --generate")
    parsed_algorithm = KeyAlgorithm.parse(algorithm) if algorithm else None
    csr_data = _read_csr(csr_file) if csr_file is not None else None
    validity = dt.timedelta(days=days) if days else None
    settings = load_settings(home, database_url, hsm)
    check_output_path(out)
    with open_services(settings) as services:
        ra = services.registration_authority()
        with signing_context(actor=cli_actor()):
            if csr_data is not None:
                issued = ra.issue_with_csr(
                    profile_name=profile,
                    csr_data=csr_data,
                    agency_uscc=agency_uscc,
                    common_name=common_name,
                    validity=validity,
                    issuer_name=issuer_name,
                )
            else:
                assert label is not None
                issued = ra.issue_with_new_key(
                    profile_name=profile,
                    key_label=label,
                    algorithm=parsed_algorithm,
                    agency_uscc=agency_uscc,
                    common_name=common_name,
                    validity=validity,
                    issuer_name=issuer_name,
                )
        ca_service = services.certificate_authority()
        chain = ca_service.chain(ca_service.issuer(issued.issuer))
    # The trust anchor is never bundled: a relying party must get it out of band.
    below_root = [c for c in chain if c.issuer != c.subject]
    certificate = issued.certificate
    try:
        write_output(out, _pem(certificate, *below_root))
    except OutputFileError as exc:
        raise OutputFileError(
            f"certificate {issued.serial} was issued, but {exc}; it is also stored in "
            "the CA's database"
        ) from None
    document = {
        "serial": issued.serial,
        "issuer": issued.issuer,
        "profile": issued.profile,
        "subject": certificate.subject.rfc4514_string(),
        "not_before": certificate.not_valid_before_utc,
        "not_after": certificate.not_valid_after_utc,
        "key_label": label,
        "out": out,
        "chain": [c.subject.rfc4514_string() for c in below_root],
        "tolerated_findings": list(issued.tolerated_findings),
    }
    if as_json:
        emit_json(document)
        return
    click.echo(
        f"Issued {issued.profile} certificate {issued.serial} by {issued.issuer} for "
        f"{document['subject']}, valid until {certificate.not_valid_after_utc:%Y-%m-%d}; "
        f"wrote it with {len(below_root)} issuing CA(s) to {out}."
    )


# -- revocation ------------------------------------------------------------------------


def _outcome_document(outcome: RevocationOutcome) -> dict[str, Any]:
    return {
        "serial": outcome.serial,
        "issuer": outcome.issuer,
        "reason": outcome.reason.value if outcome.reason else None,
        "revoked_at": outcome.revoked_at,
        "changed": outcome.changed,
        "message": outcome.message,
    }


@ca.command("revoke")
@instance_options
@click.argument("serial")
@click.option(
    "--reason",
    required=True,
    help="RFC 5280 reason: keyCompromise, cACompromise, affiliationChanged, "
    "superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, "
    "aACompromise, unspecified.",
)
@click.option(
    "--issuer", "issuer_name", metavar="CA", help="When the serial is ambiguous."
)
@json_option
def ca_revoke(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    serial: str,
    reason: str,
    issuer_name: str | None,
    as_json: bool,
) -> None:
    """Revoke a certificate; OCSP and the delta CRL show it at once.

    Revoking again changes nothing (exit 0); a certificateHold may become final.
    """
    parsed_reason = parse_reason(reason)
    settings = load_settings(home, database_url, hsm)
    with open_services(settings) as services, signing_context(actor=cli_actor()):
        outcome = services.revocation().revoke(
            serial, parsed_reason, issuer_name=issuer_name
        )
    if as_json:
        emit_json(_outcome_document(outcome))
    else:
        click.echo(outcome.message)


@ca.command("release")
@instance_options
@click.argument("serial")
@click.option(
    "--issuer", "issuer_name", metavar="CA", help="When the serial is ambiguous."
)
@json_option
def ca_release(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    serial: str,
    issuer_name: str | None,
    as_json: bool,
) -> None:
    """Release a certificate from certificateHold (other revocations are final)."""
    settings = load_settings(home, database_url, hsm)
    with open_services(settings) as services, signing_context(actor=cli_actor()):
        outcome = services.revocation().release_hold(serial, issuer_name=issuer_name)
    if as_json:
        emit_json(_outcome_document(outcome))
    else:
        click.echo(outcome.message)


@ca.command("crl")
@instance_options
@click.option("--name", required=True, help="The CA whose CRL to publish.")
@click.option("--delta", is_flag=True, help="A delta CRL since the latest full one.")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Where to write it: DER for .crl/.der/.cer/.crt names or with --der, else PEM.",
)
@click.option("--der", "force_der", is_flag=True, help="Write DER whatever the name.")
@json_option
def ca_crl(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    name: str,
    delta: bool,
    out: Path,
    force_der: bool,
    as_json: bool,
) -> None:
    """Publish a new CRL now (served at /pki/crl/NAME.crl) and write it to a file."""
    settings = load_settings(home, database_url, hsm)
    check_output_path(out)
    with open_services(settings) as services, signing_context(actor=cli_actor()):
        info = services.revocation().publish_crl(name, delta=delta)
    der = force_der or out.suffix.lower() in DER_SUFFIXES
    data = (
        info.der if der else x509.load_der_x509_crl(info.der).public_bytes(Encoding.PEM)
    )
    write_output(out, data)
    document = {
        "issuer": info.issuer,
        "number": info.number,
        "delta": info.delta,
        "base_number": info.base_number,
        "this_update": info.this_update,
        "next_update": info.next_update,
        "entry_count": info.entry_count,
        "out": out,
        "format": "der" if der else "pem",
    }
    if as_json:
        emit_json(document)
        return
    kind = f"delta CRL (base {info.base_number})" if info.delta else "CRL"
    if delta and not info.delta:
        kind += " (a full one: there was no full CRL to be a delta of)"
    click.echo(
        f"Published {info.issuer} {kind} number {info.number} with "
        f"{info.entry_count} entries, next update {info.next_update:%Y-%m-%d %H:%M} UTC; "
        f"wrote it to {out}."
    )


@ca.command("refresh")
@instance_options
@json_option
def ca_refresh(
    home: Path | None, database_url: str | None, hsm: str | None, as_json: bool
) -> int:
    """Re-sign CRLs past half their life, stale OCSP responses and due licence status
    lists; clear licence reservations and stamps a dead process left (for cron)."""
    settings = load_settings(home, database_url, hsm)
    with open_services(settings) as services, signing_context(actor=cli_actor()):
        report = services.scheduled_refresh(keep_going=False)
    if as_json:
        emit_json(report)
    else:
        click.echo(
            f"Re-signed {report['crls']} CRL(s), each with its delta CRL, "
            f"{report['ocsp']} OCSP response(s) and {report['status_lists']} licence "
            f"status list(s); discarded {report['discarded_licences']} unfinished "
            f"licence reservation(s); failed {report['abandoned_stamps']} abandoned "
            f"stamp(s) and {report['abandoned_issuances']} abandoned certificate "
            f"issuance(s); signed {report['audit_checkpoints']} audit checkpoint(s)."
        )
        if report.get("failed"):
            click.echo(
                f"{report['failed']} CA(s) could not be refreshed; the warnings above "
                "say which and why.",
                err=True,
            )
    # Cron must hear of a CA left stale: the others were refreshed, this one was not.
    return EXIT_CHECK_FAILED if report.get("failed") else 0
