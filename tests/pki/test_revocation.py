"""Revocation: reasons, holds, full and delta CRLs, and the OCSP responder, checked
with openssl (verify -crl_check, ocsp) and pkilint's CRL and OCSP linters."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from sqlalchemy import delete, event, func, insert, select, update
from sqlalchemy.exc import OperationalError

import pki.ca
import pki.revocation
from hsm_sim.errors import ErrorCategory, HsmError
from pki.ca import CertificateAuthority, IssuanceRequest, IssuedCertificate
from pki.ca_models import (
    CaRow,
    CertificateRow,
    CertificateState,
    CrlRow,
    OcspResponseRow,
    RevocationReason,
)
from pki.certificates import AgencySubject, agency_subject_name
from pki.errors import InvalidSerialError, RevocationError, UnknownSerialError
from pki.ocsp import GOOD
from pki.revocation import REASON_FLAGS, RevocationService, parse_reason
from tests.conftest import require_tool
from tests.helpers.node import AGENCY_NAME, AGENCY_USCC, Node, build_node

PKILINT_BIN = Path(sys.executable).parent
SHA1 = hashes.SHA1()  # what openssl and most clients hash CertIDs with
SUBJECT = agency_subject_name(AgencySubject(name=AGENCY_NAME, uscc=AGENCY_USCC))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = build_node(tmp_path_factory.mktemp("revocation") / "node")
    yield node
    node.close()


@pytest.fixture
def fresh_node(tmp_path: Path, database_url: str) -> Iterator[Node]:
    """A node of its own, on SQLite and (when configured) on PostgreSQL."""
    node = build_node(tmp_path / "node", database_url=database_url)
    yield node
    node.close()


def _issue(node: Node, profile: str = "seal", **changes) -> IssuedCertificate:
    request = IssuanceRequest(
        profile=profile,
        subject=SUBJECT,
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
    )
    return node.ca.issue(dataclasses.replace(request, **changes))


def _issuer_of(node: Node, issued: IssuedCertificate) -> x509.Certificate:
    return node.ca.issuer(issued.issuer).certificate


def _ocsp_request(
    node: Node,
    issued: IssuedCertificate,
    *,
    hash_algorithm: hashes.HashAlgorithm = SHA1,
    nonce: bytes | None = None,
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        issued.certificate, _issuer_of(node, issued), hash_algorithm
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(Encoding.DER)


def _ocsp(node: Node, request: bytes) -> ocsp.OCSPResponse:
    response = ocsp.load_der_ocsp_response(node.revocation.respond_ocsp(request))
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    return response


def _crl(info) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(info.der)


def _entries(crl: x509.CertificateRevocationList) -> dict[int, x509.RevokedCertificate]:
    return {entry.serial_number: entry for entry in crl}


def _reason_of(entry: x509.RevokedCertificate) -> x509.ReasonFlags | None:
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return None


def _sequence_of(node: Node, serial: str) -> int | None:
    with node.sessions() as session:
        return session.scalar(
            select(CertificateRow.revocation_sequence).where(
                CertificateRow.serial == serial
            )
        )


# -- reasons, holds and finality -----------------------------------------------------


@pytest.mark.parametrize("reason", list(RevocationReason), ids=lambda r: r.value)
def test_every_rfc5280_reason_reaches_ocsp_and_both_crls(node, reason) -> None:
    issued = _issue(node)
    outcome = node.revocation.revoke(issued.serial, reason)
    assert outcome.changed and outcome.reason is reason and outcome.issuer == "seal-ca"
    assert outcome.revoked_at is not None and outcome.revoked_at.microsecond == 0

    # Like a CRL entry, an OCSP response leaves out "unspecified" (RFC 5280 5.3.1).
    expected = None if reason is RevocationReason.UNSPECIFIED else REASON_FLAGS[reason]
    for request in (
        _ocsp_request(node, issued),
        _ocsp_request(node, issued, nonce=os.urandom(16)),
    ):
        response = _ocsp(node, request)
        assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert response.revocation_time_utc == outcome.revoked_at
        assert response.revocation_reason is expected

    delta = _crl(node.revocation.latest_crl("seal-ca", delta=True))
    full = _crl(node.revocation.publish_crl("seal-ca"))
    for crl in (delta, full):
        entry = _entries(crl)[issued.certificate.serial_number]
        assert entry.revocation_date_utc == outcome.revoked_at
        assert _reason_of(entry) is expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("keyCompromise", RevocationReason.KEY_COMPROMISE),
        ("key-compromise", RevocationReason.KEY_COMPROMISE),
        ("KEY_COMPROMISE", RevocationReason.KEY_COMPROMISE),
        (" certificateHold ", RevocationReason.CERTIFICATE_HOLD),
        ("cessation-of-operation", RevocationReason.CESSATION_OF_OPERATION),
        ("aACompromise", RevocationReason.AA_COMPROMISE),
    ],
)
def test_reasons_are_read_in_the_forms_people_type(text, reason) -> None:
    assert parse_reason(text) is reason


def test_an_unknown_reason_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="use one of: unspecified, keyCompromise"):
        parse_reason("removeFromCRL")


def test_a_hold_is_released_and_the_delta_crl_says_remove_from_crl(node) -> None:
    issued = _issue(node)
    node.revocation.publish_crl("seal-ca")
    node.revocation.revoke(issued.serial, RevocationReason.CERTIFICATE_HOLD)
    held = _ocsp(node, _ocsp_request(node, issued))
    assert held.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert held.revocation_reason is x509.ReasonFlags.certificate_hold

    outcome = node.revocation.release_hold(issued.serial)
    assert outcome.changed and "released from hold" in outcome.message
    assert (
        _ocsp(node, _ocsp_request(node, issued)).certificate_status
        is ocsp.OCSPCertStatus.GOOD
    )
    assert (
        _ocsp(node, _ocsp_request(node, issued, nonce=b"n" * 16)).certificate_status
        is ocsp.OCSPCertStatus.GOOD
    )

    delta = _crl(node.revocation.latest_crl("seal-ca", delta=True))
    assert (
        _reason_of(_entries(delta)[issued.certificate.serial_number])
        is x509.ReasonFlags.remove_from_crl
    )
    full = _crl(node.revocation.publish_crl("seal-ca"))
    assert issued.certificate.serial_number not in _entries(full)
    next_delta = _crl(node.revocation.publish_crl("seal-ca", delta=True))
    assert issued.certificate.serial_number not in _entries(next_delta)


def test_a_hold_can_become_final(node) -> None:
    issued = _issue(node)
    node.revocation.revoke(issued.serial, RevocationReason.CERTIFICATE_HOLD)
    outcome = node.revocation.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
    assert outcome.changed and outcome.reason is RevocationReason.KEY_COMPROMISE
    response = _ocsp(node, _ocsp_request(node, issued))
    assert response.revocation_reason is x509.ReasonFlags.key_compromise
    delta = _crl(node.revocation.latest_crl("seal-ca", delta=True))
    assert (
        _reason_of(_entries(delta)[issued.certificate.serial_number])
        is x509.ReasonFlags.key_compromise
    )
    with pytest.raises(RevocationError):
        node.revocation.release_hold(issued.serial)


@pytest.mark.parametrize(
    "reason",
    [r for r in RevocationReason if r is not RevocationReason.CERTIFICATE_HOLD],
    ids=lambda r: r.value,
)
def test_a_final_revocation_cannot_be_released(node, reason) -> None:
    issued = _issue(node)
    node.revocation.revoke(issued.serial, reason)
    sequence = _sequence_of(node, issued.serial)
    with pytest.raises(RevocationError, match="which is final") as refused:
        node.revocation.release_hold(issued.serial)
    assert refused.value.category is ErrorCategory.CONFLICT
    assert _sequence_of(node, issued.serial) == sequence
    assert (
        _ocsp(node, _ocsp_request(node, issued)).certificate_status
        is ocsp.OCSPCertStatus.REVOKED
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (RevocationReason.KEY_COMPROMISE, RevocationReason.KEY_COMPROMISE),
        (RevocationReason.SUPERSEDED, RevocationReason.KEY_COMPROMISE),
        (RevocationReason.KEY_COMPROMISE, RevocationReason.CERTIFICATE_HOLD),
        (RevocationReason.CERTIFICATE_HOLD, RevocationReason.CERTIFICATE_HOLD),
    ],
    ids=["same-reason", "other-reason", "hold-after-final", "hold-twice"],
)
def test_revoking_twice_is_a_no_op_with_a_clear_message(node, first, second) -> None:
    issued = _issue(node)
    done = node.revocation.revoke(issued.serial, first)
    signatures = node.granted_signatures()
    crl_count = _crl_count(node)
    again = node.revocation.revoke(issued.serial, second)
    assert not again.changed
    assert again.reason is first and again.revoked_at == done.revoked_at
    assert (
        f"certificate {issued.serial} was already revoked ({first.value})"
        in again.message
    )
    assert "nothing changed" in again.message
    assert node.granted_signatures() == signatures
    assert _crl_count(node) == crl_count


def _crl_count(node: Node) -> int:
    with node.sessions() as session:
        return len(session.scalars(select(CrlRow.id)).all())


def test_releasing_a_good_certificate_changes_nothing(node) -> None:
    issued = _issue(node)
    signatures = node.granted_signatures()
    outcome = node.revocation.release_hold(issued.serial)
    assert not outcome.changed and "is not on hold" in outcome.message
    assert node.granted_signatures() == signatures


def test_an_unknown_serial_is_refused_without_changing_anything(node) -> None:
    signatures = node.granted_signatures()
    crl_count = _crl_count(node)
    with pytest.raises(
        UnknownSerialError, match="no certificate with serial 1234abcd"
    ) as refused:
        node.revocation.revoke("0x1234ABCD", RevocationReason.KEY_COMPROMISE)
    assert refused.value.category is ErrorCategory.NOT_FOUND
    with pytest.raises(UnknownSerialError, match="issued by document-ca"):
        node.revocation.revoke(
            _issue(node).serial,
            RevocationReason.KEY_COMPROMISE,
            issuer_name="document-ca",
        )
    with pytest.raises(InvalidSerialError):
        node.revocation.revoke("not a serial", RevocationReason.KEY_COMPROMISE)
    with pytest.raises(UnknownSerialError):
        node.revocation.release_hold("99")
    assert (
        node.granted_signatures() == signatures + 1
    )  # only the certificate issued above
    assert _crl_count(node) == crl_count


def _pasted_forms(serial: str) -> list[str]:
    padded = serial.rjust(len(serial) + len(serial) % 2, "0")
    pairs = [padded[i : i + 2] for i in range(0, len(padded), 2)]
    return [
        "0x" + serial.upper(),
        ":".join(pairs).upper(),
        " ".join(pairs),
        serial.upper(),
    ]


@pytest.mark.parametrize(
    "form", range(4), ids=["0x-upper", "colons", "spaces", "upper"]
)
def test_serials_are_found_in_the_forms_people_paste(node, form) -> None:
    issued = _issue(node)
    outcome = node.revocation.revoke(
        _pasted_forms(issued.serial)[form],
        RevocationReason.SUPERSEDED,
        issuer_name="seal-ca",
    )
    assert outcome.changed and outcome.serial == issued.serial


def test_a_serial_under_two_cas_needs_the_issuer(node, monkeypatch) -> None:
    seal = _issue(node)
    monkeypatch.setattr(pki.ca, "random_serial", lambda: seal.certificate.serial_number)
    api = _issue(node, "api-client")
    monkeypatch.undo()
    with pytest.raises(UnknownSerialError, match="several CAs"):
        node.revocation.revoke(seal.serial, RevocationReason.SUPERSEDED)
    outcome = node.revocation.revoke(
        api.serial, RevocationReason.SUPERSEDED, issuer_name="infrastructure-ca"
    )
    assert outcome.issuer == "infrastructure-ca"
    assert (
        _ocsp(node, _ocsp_request(node, seal)).certificate_status
        is ocsp.OCSPCertStatus.GOOD
    )


# -- CRLs ------------------------------------------------------------------------------


def test_a_full_crl_lists_exactly_the_revoked_unexpired_certificates(
    fresh_node,
) -> None:
    node = fresh_node
    reasons = [
        RevocationReason.KEY_COMPROMISE,
        RevocationReason.UNSPECIFIED,
        RevocationReason.CERTIFICATE_HOLD,
        RevocationReason.AFFILIATION_CHANGED,
    ]
    revoked = {}
    for reason in reasons:
        issued = _issue(node)
        revoked[issued.certificate.serial_number] = (
            reason,
            node.revocation.revoke(issued.serial, reason),
        )
    _issue(node)  # never revoked
    released = _issue(node)
    node.revocation.revoke(released.serial, RevocationReason.CERTIFICATE_HOLD)
    node.revocation.release_hold(released.serial)
    short_lived = _issue(node, validity=dt.timedelta(days=2))
    node.revocation.revoke(short_lived.serial, RevocationReason.SUPERSEDED)

    info = node.revocation.publish_crl("seal-ca")
    crl = _crl(info)
    issuer = node.ca.issuer("seal-ca").certificate
    assert crl.is_signature_valid(issuer.public_key())
    assert crl.issuer == issuer.subject
    entries = _entries(crl)
    assert set(entries) == set(revoked) | {short_lived.certificate.serial_number}
    assert info.entry_count == len(entries) and not info.delta
    for serial, (reason, outcome) in revoked.items():
        assert entries[serial].revocation_date_utc == outcome.revoked_at
        assert _reason_of(entries[serial]) is (
            None if reason is RevocationReason.UNSPECIFIED else REASON_FLAGS[reason]
        )
    freshest = crl.extensions.get_extension_for_class(x509.FreshestCRL).value
    assert [name.value for name in freshest[0].full_name] == [
        node.ca.endpoints.delta_crl_url("seal-ca")
    ]
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert (
        aki.key_identifier
        == issuer.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value.digest
    )
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(hours=24)

    # Three days on, the short-lived certificate has expired and leaves the CRL.
    later = CertificateAuthority(
        keystore=node.keystore,
        sessions=node.sessions,
        endpoints=node.ca.endpoints,
        clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=3),
    )
    after_expiry = _crl(RevocationService(ca=later).publish_crl("seal-ca"))
    assert set(_entries(after_expiry)) == set(revoked)


def test_crl_numbers_strictly_increase_and_deltas_name_their_base(fresh_node) -> None:
    node = fresh_node
    published = []
    first_full = node.revocation.publish_crl("seal-ca")
    published.append(first_full)
    issued = _issue(node)
    node.revocation.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
    automatic_delta = node.revocation.latest_crl("seal-ca", delta=True)
    published.append(automatic_delta)
    published.append(node.revocation.publish_crl("seal-ca", delta=True))
    second_full = node.revocation.publish_crl("seal-ca")
    published.append(second_full)
    published.append(node.revocation.publish_crl("seal-ca", delta=True))
    numbers = [info.number for info in published]
    assert numbers == sorted(set(numbers))
    for info in published:
        crl = _crl(info)
        assert (
            crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            == info.number
        )
        if info.delta:
            indicator = crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
            assert indicator.critical
            with pytest.raises(x509.ExtensionNotFound):
                crl.extensions.get_extension_for_class(x509.FreshestCRL)
    assert [info.base_number for info in published if info.delta] == [
        first_full.number
    ] * 2 + [second_full.number]
    # The deltas after the first full CRL carry the revocation; the one after the
    # second full CRL (which has it) carries nothing.
    assert issued.certificate.serial_number in _entries(_crl(published[1]))
    assert issued.certificate.serial_number in _entries(_crl(published[2]))
    assert _entries(_crl(published[4])) == {}
    assert issued.certificate.serial_number in _entries(_crl(second_full))
    # Other CAs count on their own.
    assert node.revocation.publish_crl("document-ca").number < first_full.number + 10


def test_a_delta_crl_lists_only_changes_since_its_base(fresh_node) -> None:
    node = fresh_node
    before = _issue(node)
    node.revocation.revoke(before.serial, RevocationReason.KEY_COMPROMISE)
    base = node.revocation.publish_crl("seal-ca")
    after = [_issue(node) for _ in range(3)]
    node.revocation.revoke(after[0].serial, RevocationReason.SUPERSEDED)
    node.revocation.revoke(after[1].serial, RevocationReason.CERTIFICATE_HOLD)
    delta_info = node.revocation.latest_crl("seal-ca", delta=True)
    delta = _crl(delta_info)
    assert (
        delta.extensions.get_extension_for_class(
            x509.DeltaCRLIndicator
        ).value.crl_number
        == base.number
    )
    assert delta_info.base_number == base.number
    assert set(_entries(delta)) == {
        after[0].certificate.serial_number,
        after[1].certificate.serial_number,
    }


def test_a_delta_before_any_full_crl_is_a_full_crl(fresh_node) -> None:
    node = fresh_node
    with node.sessions.begin() as session:
        session.execute(delete(CrlRow))
    info = node.revocation.publish_crl("seal-ca", delta=True)
    assert not info.delta and info.base_number is None
    _crl(info).extensions.get_extension_for_class(x509.FreshestCRL)


def _openssl(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("openssl"), *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )


def _write_pem(path: Path, *certificates: x509.Certificate) -> str:
    path.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in certificates))
    return path.name


def test_openssl_verify_with_the_crls(fresh_node, tmp_path) -> None:
    node = fresh_node
    revoked, good, late = _issue(node), _issue(node), _issue(node)
    node.revocation.revoke(revoked.serial, RevocationReason.KEY_COMPROMISE)
    (tmp_path / "full.crl").write_bytes(node.revocation.publish_crl("seal-ca").der)
    node.revocation.revoke(late.serial, RevocationReason.CESSATION_OF_OPERATION)
    (tmp_path / "delta.crl").write_bytes(
        node.revocation.latest_crl("seal-ca", delta=True).der
    )
    _write_pem(tmp_path / "root.pem", node.ca.issuer("root").certificate)
    _write_pem(tmp_path / "issuer.pem", node.ca.issuer("seal-ca").certificate)
    chain = ["-CAfile", "root.pem", "-untrusted", "issuer.pem", "-inform", "DER"]

    def verify(
        issued: IssuedCertificate, *crls: str
    ) -> subprocess.CompletedProcess[str]:
        name = _write_pem(tmp_path / f"{issued.serial}.pem", issued.certificate)
        options = ["-crl_check"] + [arg for crl in crls for arg in ("-CRLfile", crl)]
        if len(crls) > 1:
            options.append("-use_deltas")
        return _openssl(tmp_path, "verify", *options, *chain[:4], name)

    refused = verify(revoked, "full.crl")
    assert (
        refused.returncode != 0
        and "error 23 at 0 depth lookup: certificate revoked"
        in refused.stdout + refused.stderr
    )
    accepted = verify(good, "full.crl")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert verify(late, "full.crl").returncode == 0  # revoked after the full CRL
    with_delta = verify(late, "full.crl", "delta.crl")
    assert (
        with_delta.returncode != 0
        and "error 23" in with_delta.stdout + with_delta.stderr
    )
    assert verify(good, "full.crl", "delta.crl").returncode == 0


def test_pkilint_finds_nothing_in_full_and_delta_crls(fresh_node, tmp_path) -> None:
    node = fresh_node
    for reason in (RevocationReason.KEY_COMPROMISE, RevocationReason.CERTIFICATE_HOLD):
        node.revocation.revoke(_issue(node).serial, reason)
    node.revocation.publish_crl("seal-ca")
    held = _issue(node)
    node.revocation.revoke(held.serial, RevocationReason.CERTIFICATE_HOLD)
    node.revocation.release_hold(held.serial)
    for name, info in (
        ("full", node.revocation.latest_crl("seal-ca")),
        ("delta", node.revocation.latest_crl("seal-ca", delta=True)),
        ("root", node.revocation.latest_crl("root")),
    ):
        path = tmp_path / f"{name}.crl"
        path.write_bytes(info.der)
        linted = subprocess.run(
            [
                str(PKILINT_BIN / "lint_crl"),
                "lint",
                "-t",
                "CRL",
                "-p",
                "PKIX",
                "-s",
                "WARNING",
                str(path),
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert linted.returncode == 0 and not linted.stdout.strip(), (
            f"{name}: {linted.stdout}{linted.stderr}"
        )


# -- OCSP ------------------------------------------------------------------------------


def _nonces(message: ocsp.OCSPRequest | ocsp.OCSPResponse) -> list[bytes]:
    return [
        e.value.nonce for e in message.extensions if isinstance(e.value, x509.OCSPNonce)
    ]


def _openssl_request(
    tmp_path: Path, node: Node, issuer: str, *target: str, nonce: bool
) -> bytes:
    _write_pem(tmp_path / "issuer.pem", node.ca.issuer(issuer).certificate)
    made = _openssl(
        tmp_path,
        "ocsp",
        "-issuer",
        "issuer.pem",
        *target,
        "-reqout",
        "request.der",
        "-nonce" if nonce else "-no_nonce",
    )
    assert made.returncode == 0, made.stderr
    return (tmp_path / "request.der").read_bytes()


def _openssl_check(
    tmp_path: Path, node: Node, request: bytes, response: bytes
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "request.der").write_bytes(request)
    (tmp_path / "response.der").write_bytes(response)
    _write_pem(tmp_path / "root.pem", node.ca.issuer("root").certificate)
    return _openssl(
        tmp_path,
        "ocsp",
        "-reqin",
        "request.der",
        "-respin",
        "response.der",
        "-CAfile",
        "root.pem",
        "-verify_other",
        "issuer.pem",
        "-resp_text",
    )


@pytest.mark.parametrize("nonce", [False, True], ids=["no-nonce", "nonce"])
def test_openssl_ocsp_sees_good_revoked_and_unknown(
    fresh_node, tmp_path, nonce
) -> None:
    node = fresh_node
    good, revoked = _issue(node), _issue(node)
    outcome = node.revocation.revoke(revoked.serial, RevocationReason.KEY_COMPROMISE)
    cases = [
        (good, "Cert Status: good"),
        (revoked, "Cert Status: revoked"),
    ]
    for issued, expected in cases:
        _write_pem(tmp_path / "leaf.pem", issued.certificate)
        request = _openssl_request(
            tmp_path, node, "seal-ca", "-cert", "leaf.pem", nonce=nonce
        )
        response = node.revocation.respond_ocsp(request)
        checked = _openssl_check(tmp_path, node, request, response)
        assert checked.returncode == 0, checked.stderr
        assert "Response verify OK" in checked.stderr
        assert "Nonce Verify error" not in checked.stderr
        assert _nonces(ocsp.load_der_ocsp_response(response)) == _nonces(
            ocsp.load_der_ocsp_request(request)
        )
        assert len(_nonces(ocsp.load_der_ocsp_request(request))) == int(nonce)
        assert expected in checked.stdout
    assert "Revocation Reason: keyCompromise (0x1)" in checked.stdout
    assert (
        f"Revocation Time: {outcome.revoked_at:%b %e %H:%M:%S %Y} GMT" in checked.stdout
    )

    request = _openssl_request(
        tmp_path, node, "seal-ca", "-serial", "0x1234567890abcdef", nonce=nonce
    )
    checked = _openssl_check(
        tmp_path, node, request, node.revocation.respond_ocsp(request)
    )
    assert checked.returncode == 0 and "Cert Status: unknown" in checked.stdout, (
        checked.stderr
    )


def test_pkilint_finds_nothing_in_ocsp_responses(fresh_node, tmp_path) -> None:
    node = fresh_node
    revoked = _issue(node)
    node.revocation.revoke(revoked.serial, RevocationReason.KEY_COMPROMISE)
    for name, request in (
        ("good", _ocsp_request(node, _issue(node))),
        ("revoked", _ocsp_request(node, revoked, nonce=b"0123456789abcdef")),
    ):
        path = tmp_path / f"{name}.der"
        path.write_bytes(node.revocation.respond_ocsp(request))
        linted = subprocess.run(
            [
                str(PKILINT_BIN / "lint_ocsp_response"),
                "lint",
                "-s",
                "WARNING",
                str(path),
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert linted.returncode == 0 and not linted.stdout.strip(), (
            f"{name}: {linted.stdout}{linted.stderr}"
        )


@pytest.mark.parametrize(
    "body",
    [os.urandom(64), b"", b"\x30\x03\x02\x01\x01", b"\x30" * 20_000],
    ids=["random", "empty", "not-ocsp", "oversized"],
)
def test_garbage_gets_malformed_request(node, body) -> None:
    signatures = node.granted_signatures()
    response = ocsp.load_der_ocsp_response(node.revocation.respond_ocsp(body))
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert node.granted_signatures() == signatures


def test_an_unknown_issuer_gets_unauthorized(node) -> None:
    foreign_key = ec.generate_private_key(ec.SECP256R1())
    foreign = (
        x509.CertificateBuilder()
        .subject_name(SUBJECT)
        .issuer_name(SUBJECT)
        .public_key(foreign_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2026, 1, 1))
        .not_valid_after(dt.datetime(2030, 1, 1))
        .sign(foreign_key, hashes.SHA256())
    )
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(foreign, foreign, hashes.SHA1())
        .build()
    )
    response = ocsp.load_der_ocsp_response(
        node.revocation.respond_ocsp(request.public_bytes(Encoding.DER))
    )
    assert response.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED


def test_presigned_responses_are_served_and_replaced_on_revocation(node) -> None:
    issued = _issue(node)
    request = _ocsp_request(node, issued)
    first = node.revocation.respond_ocsp(request)
    signatures = node.granted_signatures()
    assert node.revocation.respond_ocsp(request) == first
    assert node.revocation.respond_ocsp(_ocsp_request(node, issued)) == first
    assert node.granted_signatures() == signatures  # served from the store

    node.revocation.revoke(issued.serial, RevocationReason.PRIVILEGE_WITHDRAWN)
    signatures = node.granted_signatures()
    replaced = node.revocation.respond_ocsp(request)
    assert node.granted_signatures() == signatures  # pre-signed by the revocation
    assert replaced != first
    assert (
        ocsp.load_der_ocsp_response(replaced).certificate_status
        is ocsp.OCSPCertStatus.REVOKED
    )


def test_nonce_and_sha256_requests_are_signed_live(node) -> None:
    issued = _issue(node)
    node.revocation.respond_ocsp(_ocsp_request(node, issued))
    for request in (
        _ocsp_request(node, issued, nonce=b"a" * 16),
        _ocsp_request(node, issued, hash_algorithm=hashes.SHA256()),
    ):
        signatures = node.granted_signatures()
        response = _ocsp(node, request)
        assert node.granted_signatures() == signatures + 1
        asked = ocsp.load_der_ocsp_request(request)
        assert response.serial_number == asked.serial_number
        assert response.hash_algorithm.name == asked.hash_algorithm.name
        assert _nonces(response) == _nonces(asked)


def test_a_revocation_whose_publication_fails_is_still_answered_revoked(
    node, monkeypatch
) -> None:
    issued = _issue(node)
    request = _ocsp_request(node, issued)
    assert (
        _ocsp(node, request).certificate_status is ocsp.OCSPCertStatus.GOOD
    )  # now pre-signed

    def token_gone(*args, **kwargs):
        raise HsmError("the token is unavailable")

    monkeypatch.setattr(RevocationService, "presign_ocsp", token_gone)
    outcome = node.revocation.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
    assert outcome.changed and not outcome.published
    assert "yinxin ca refresh" in outcome.message
    monkeypatch.undo()
    assert _ocsp(node, request).certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert (
        node.revocation.revoke(issued.serial, RevocationReason.KEY_COMPROMISE).changed
        is False
    )


def test_a_response_signed_before_a_revocation_does_not_replace_the_revoked_one(
    node, monkeypatch
) -> None:
    issued = _issue(node)
    request = _ocsp_request(node, issued)
    original = pki.revocation.build_ocsp_response
    revoked_meanwhile = []

    def revoke_while_signing(*args, **kwargs):
        if not revoked_meanwhile:
            revoked_meanwhile.append(
                node.revocation.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
            )
        return original(*args, **kwargs)

    monkeypatch.setattr(pki.revocation, "build_ocsp_response", revoke_while_signing)
    answered_during = ocsp.load_der_ocsp_response(node.revocation.respond_ocsp(request))
    monkeypatch.undo()
    assert (
        revoked_meanwhile
        and answered_during.certificate_status is ocsp.OCSPCertStatus.GOOD
    )
    after = ocsp.load_der_ocsp_response(node.revocation.respond_ocsp(request))
    assert after.certificate_status is ocsp.OCSPCertStatus.REVOKED
    with node.sessions() as session:
        stored = session.scalar(
            select(OcspResponseRow.der).where(OcspResponseRow.serial == issued.serial)
        )
    assert (
        ocsp.load_der_ocsp_response(stored).certificate_status
        is ocsp.OCSPCertStatus.REVOKED
    )


def test_refresh_resigns_what_is_getting_old_and_nothing_else(fresh_node) -> None:
    node = fresh_node
    _issue(node)
    assert node.revocation.refresh() == {
        "crls": 0,
        "ocsp": 1,
    }  # the certificate issued above
    assert node.revocation.refresh() == {"crls": 0, "ocsp": 0}
    later = CertificateAuthority(
        keystore=node.keystore,
        sessions=node.sessions,
        endpoints=node.ca.endpoints,
        clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=13),
    )
    with node.sessions() as session:
        issued = len(session.scalars(select(CertificateRow.id)).all())
    assert RevocationService(ca=later).refresh() == {"crls": 4, "ocsp": issued}


def _foreign_request() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "elsewhere")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2026, 1, 1))
        .not_valid_after(dt.datetime(2030, 1, 1))
        .sign(key, hashes.SHA256())
    )
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        certificate, certificate, hashes.SHA1()
    )
    return builder.build().public_bytes(Encoding.DER)


@pytest.mark.parametrize(
    "reload_seconds", [None, 0.0], ids=["default-interval", "no-interval"]
)
def test_the_issuers_are_read_once_and_again_only_for_an_unknown_issuer(
    node, monkeypatch, reload_seconds
) -> None:
    if reload_seconds is not None:
        monkeypatch.setattr(pki.revocation, "_ISSUER_RELOAD_SECONDS", reload_seconds)
    service = RevocationService(ca=node.ca)
    reads = []
    original = node.ca.issuers
    monkeypatch.setattr(node.ca, "issuers", lambda: reads.append(1) or original())
    ours = _ocsp_request(node, _issue(node))
    foreign = _foreign_request()
    for _ in range(10):
        assert (
            ocsp.load_der_ocsp_response(service.respond_ocsp(ours)).response_status
            is ocsp.OCSPResponseStatus.SUCCESSFUL
        )
        assert (
            ocsp.load_der_ocsp_response(service.respond_ocsp(foreign)).response_status
            is ocsp.OCSPResponseStatus.UNAUTHORIZED
        )
    # Once at the first request; then, for a foreign issuer, again only once the last
    # read is older than the interval (every time, when the interval is zero).
    assert len(reads) == (1 if reload_seconds is None else 11)


def test_only_requests_answered_by_a_fresh_signature_need_a_live_one(node) -> None:
    issued = _issue(node)
    plain = _ocsp_request(node, issued)
    # A new certificate has no pre-signed answer until the first request or refresh.
    assert node.revocation.needs_live_signature(plain)
    _ocsp(node, plain)
    assert not node.revocation.needs_live_signature(plain)
    assert node.revocation.needs_live_signature(_ocsp_request(node, issued, nonce=b"n" * 16))
    assert node.revocation.needs_live_signature(
        _ocsp_request(node, issued, hash_algorithm=hashes.SHA256())
    )
    assert node.revocation.needs_live_signature(_ocsp_request(node, _issue(node)))
    # Garbage is answered malformedRequest, unsigned.
    assert not node.revocation.needs_live_signature(b"\x30\x03\x02\x01\x01")


# -- refreshing in chunks, one CA at a time ------------------------------------------


def _drop_presigned(node: Node) -> None:
    with node.sessions.begin() as session:
        session.execute(delete(OcspResponseRow))


def _due_for_ocsp(node: Node) -> int:
    """How many certificates, of every CA, a refresh pre-signs a response for."""
    with node.sessions() as session:
        return session.scalar(
            select(func.count())
            .select_from(CertificateRow)
            .where(
                CertificateRow.state == CertificateState.ISSUED,
                CertificateRow.not_after > dt.datetime.now(dt.UTC),
            )
        )


def _stored_responses(node: Node) -> int:
    with node.sessions() as session:
        return session.scalar(select(func.count()).select_from(OcspResponseRow))


def test_refresh_presigns_and_stores_a_chunk_at_a_time(fresh_node, monkeypatch) -> None:
    node = fresh_node
    for _ in range(5):
        _issue(node)
    _drop_presigned(node)
    monkeypatch.setattr(pki.revocation, "_PRESIGN_CHUNK", 2)
    batches = []
    original = RevocationService._store_responses

    def store(self, issuer_id, now, signed):
        signed = list(signed)
        batches.append(len(signed))
        return original(self, issuer_id, now, signed)

    monkeypatch.setattr(RevocationService, "_store_responses", store)

    report = node.revocation.refresh()

    due = _due_for_ocsp(node)
    assert report == {"crls": 0, "ocsp": due}
    assert _stored_responses(node) == due
    assert max(batches) <= 2 and len(batches) >= -(-due // 2)


def test_presigning_keeps_the_chunks_stored_before_a_failure(
    fresh_node, monkeypatch
) -> None:
    node = fresh_node
    serials = [_issue(node).serial for _ in range(5)]
    _drop_presigned(node)
    monkeypatch.setattr(pki.revocation, "_PRESIGN_CHUNK", 2)
    signed = []
    original = pki.revocation.build_ocsp_response

    def fail_on_the_fifth(*args, **kwargs):
        if len(signed) == 4:
            raise HsmError("the token went away")
        signed.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(pki.revocation, "build_ocsp_response", fail_on_the_fifth)
    seal_ca = node.ca.issuer("seal-ca")
    with pytest.raises(HsmError):
        node.revocation.presign_ocsp(seal_ca, serials)
    assert _stored_responses(node) == 4  # the first two chunks were committed

    monkeypatch.setattr(pki.revocation, "build_ocsp_response", original)
    assert node.revocation.presign_ocsp(seal_ca, serials) == 5
    assert _stored_responses(node) == 5


def test_more_responses_than_a_statement_may_bind_are_stored(tmp_path: Path) -> None:
    # Once every response went into one statement with a bind parameter per serial,
    # which failed after all the signing above PostgreSQL's 65,535 parameters; SQLite's
    # historic limit of 999 shows the same with fewer rows.
    node = build_node(tmp_path / "node")
    limit, count = 999, 2_000

    def limit_variables(connection, _record) -> None:
        connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)

    event.listen(node.engine, "connect", limit_variables)
    node.engine.dispose()  # new connections, with the limit
    try:
        seal_ca = node.ca.issuer("seal-ca")
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        serials = [f"4{number:039x}" for number in range(count)]
        with node.sessions.begin() as session:
            for start in range(0, count, 100):  # within the limit too
                session.execute(
                    insert(CertificateRow),
                    [
                        {
                            "issuer_id": seal_ca.id,
                            "serial": serial,
                            "profile": "seal",
                            "subject": "CN=bulk",
                            "state": CertificateState.ISSUED,
                            "lint_der": b"",
                            "not_before": now,
                            "not_after": now + dt.timedelta(days=365),
                        }
                        for serial in serials[start : start + 100]
                    ],
                )
        before = _stored_responses(node)
        signed = [(serial, GOOD, b"not-a-response") for serial in serials]
        assert node.revocation._store_responses(seal_ca.id, now, signed) == count
        assert _stored_responses(node) == before + count
    finally:
        node.close()


def _later_service(node: Node, hours: float) -> RevocationService:
    later = CertificateAuthority(
        keystore=node.keystore,
        sessions=node.sessions,
        endpoints=node.ca.endpoints,
        clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours),
    )
    return RevocationService(ca=later)


def test_a_cas_missing_ocsp_key_leaves_the_other_cas_refreshed(
    fresh_node, caplog
) -> None:
    node = fresh_node
    _issue(node)
    first = node.ca.issuers()[0]  # refreshed first: its failure once stopped the rest
    with node.sessions.begin() as session:
        session.execute(
            update(CaRow)
            .where(CaRow.id == first.id)
            .values(ocsp_key_label="no-such-key")
        )
    with node.sessions() as session:
        others = session.scalar(
            select(func.count())
            .select_from(CertificateRow)
            .where(
                CertificateRow.issuer_id != first.id,
                CertificateRow.state == CertificateState.ISSUED,
            )
        )

    with caplog.at_level(logging.WARNING, logger="pki.revocation"):
        report = _later_service(node, hours=13).refresh()

    assert report == {"crls": 4, "ocsp": others, "failed": 1}
    [record] = caplog.records
    assert first.name in record.getMessage() and "\n" not in record.getMessage()


def test_a_database_error_in_one_cas_crl_is_logged_without_its_text(
    fresh_node, monkeypatch, caplog
) -> None:
    node = fresh_node
    service = _later_service(node, hours=13)
    first, *_, last = node.ca.issuers()
    original = service.publish_crl

    def fail_for_the_first(issuer_name, **kwargs):
        if issuer_name == first.name:
            raise OperationalError(
                "INSERT INTO crl ...", {}, Exception("Key (der)=(personal data) exists")
            )
        return original(issuer_name, **kwargs)

    monkeypatch.setattr(service, "publish_crl", fail_for_the_first)
    with caplog.at_level(logging.WARNING, logger="pki.revocation"):
        report = service.refresh()

    assert report["crls"] == 3 and report["failed"] == 1
    [record] = caplog.records
    assert first.name in record.getMessage()
    assert "OperationalError" in record.getMessage()
    assert "personal data" not in record.getMessage()
    assert (
        service.latest_crl(first.name).next_update
        < service.latest_crl(last.name).next_update
    )


def test_refresh_publishes_every_crl_before_presigning(fresh_node, monkeypatch) -> None:
    node = fresh_node
    service = _later_service(node, hours=13)
    done = []
    publish, presign = service.publish_crl, service.presign_ocsp
    monkeypatch.setattr(
        service, "publish_crl", lambda *a, **k: done.append("crl") or publish(*a, **k)
    )
    monkeypatch.setattr(
        service, "presign_ocsp", lambda *a, **k: done.append("ocsp") or presign(*a, **k)
    )
    service.refresh()
    assert done == ["crl"] * 4 + ["ocsp"] * (len(done) - 4)


# -- live signatures -----------------------------------------------------------------


def test_a_stored_response_past_its_refresh_margin_needs_a_live_signature(
    node, monkeypatch
) -> None:
    request = _ocsp_request(node, _issue(node))
    _ocsp(node, request)  # stored, good for ocsp_lifetime (24 h), re-signed after 12
    signatures = []
    original = pki.revocation.build_ocsp_response
    monkeypatch.setattr(
        pki.revocation,
        "build_ocsp_response",
        lambda *a, **k: signatures.append(1) or original(*a, **k),
    )
    for hours, live in [(1, False), (13, True)]:
        service = _later_service(node, hours=hours)
        assert service.needs_live_signature(request) is live
        signatures.clear()
        service.respond_ocsp(request)
        assert bool(signatures) is live


# -- CRLs on SQLite, and the clock ---------------------------------------------------


def test_on_sqlite_a_crl_is_read_after_the_write_lock_is_released(
    node, monkeypatch
) -> None:
    assert node.engine.dialect.name == "sqlite"
    revoked_while_reading = _issue(node).serial
    lock_was_free = []
    original = RevocationService._entries

    def entries(session, issuer_id, now, since_sequence):
        if not lock_was_free:
            other = sqlite3.connect(node.engine.url.database, timeout=0)
            try:
                other.execute("BEGIN IMMEDIATE")
                other.execute("ROLLBACK")
                lock_was_free.append(True)
            except sqlite3.OperationalError:
                lock_was_free.append(False)
            finally:
                other.close()
            if lock_was_free[0]:
                node.revocation.revoke(revoked_while_reading, RevocationReason.SUPERSEDED)
        return original(session, issuer_id, now, since_sequence)

    monkeypatch.setattr(RevocationService, "_entries", staticmethod(entries))
    full = node.revocation.publish_crl("seal-ca")
    monkeypatch.undo()

    assert lock_was_free == [True]
    # Committed after the full CRL took its number, it is in the delta based on it.
    assert _sequence_of(node, revoked_while_reading) > _covers_sequence(node, full)
    delta = node.revocation.latest_crl("seal-ca", delta=True)
    assert delta.base_number == full.number
    assert int(revoked_while_reading, 16) in _entries(_crl(delta))


def _covers_sequence(node: Node, info) -> int:
    with node.sessions() as session:
        return session.scalar(
            select(CrlRow.covers_sequence).where(CrlRow.number == info.number)
        )


def test_dates_are_read_once_the_issuers_lock_is_taken(node) -> None:
    events: list[tuple[str, object]] = []
    ticks = itertools.count()
    start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)

    def clock() -> dt.datetime:
        now = start + dt.timedelta(seconds=next(ticks))
        events.append(("clock", now))
        return now

    def statement(conn, cursor, text, parameters, context, executemany) -> None:
        if text.startswith("UPDATE certificate_authority"):
            events.append(("lock", text))

    service = RevocationService(
        ca=CertificateAuthority(
            keystore=node.keystore,
            sessions=node.sessions,
            endpoints=node.ca.endpoints,
            clock=clock,
        )
    )
    serial = _issue(node).serial
    event.listen(node.engine, "before_cursor_execute", statement)
    try:
        events.clear()
        revoked = service.revoke(serial, RevocationReason.CERTIFICATE_HOLD)
        taken = events.index(("clock", revoked.revoked_at))
        assert any(kind == "lock" for kind, _ in events[:taken])
        events.clear()
        assert service.release_hold(serial).changed
        with node.sessions() as session:
            released_at = session.scalar(
                select(CertificateRow.hold_released_at).where(
                    CertificateRow.serial == serial
                )
            )
        taken = events.index(("clock", released_at))
        assert any(kind == "lock" for kind, _ in events[:taken])
        events.clear()
        crl = service._publish_crl("seal-ca", delta=False)
        taken = events.index(("clock", crl.this_update))
        assert any(kind == "lock" for kind, _ in events[:taken])
    finally:
        event.remove(node.engine, "before_cursor_execute", statement)
