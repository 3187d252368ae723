"""Acceptance 4: several processes revoking, publishing CRLs and issuing at once on
one database never give two CRLs one number, never lose a revocation and never reuse
a serial. Each process opens the node as a separate server process would: its own
engine, its own login to the shared soft token, its own audit-log connection."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from sqlalchemy import select

import pki.ca
import pki.certificates
from pki.ca import IssuanceRequest
from pki.ca_models import (
    CertificateRow,
    CertificateState,
    CrlRow,
    OcspResponseRow,
    RevocationReason,
)
from pki.certificates import AgencySubject, agency_subject_name
from tests.helpers.node import AGENCY_NAME, AGENCY_USCC, Node, build_node, open_node
from tests.helpers.processes import Job, run_together

SUBJECT = agency_subject_name(AgencySubject(name=AGENCY_NAME, uscc=AGENCY_USCC))
WORKERS = 4
REVOCATIONS_PER_WORKER = 10
ISSUANCES_PER_WORKER = 10
OCSP_WORKERS = 2
OCSP_ROUNDS = 3
# Every process first tries the same serial for its k-th certificate, so for each k
# all but one collide, and only the database's unique constraint and the CA's retry
# keep them apart. The retry draws a serial of the process's own.
CONTESTED_SERIAL = 2**158
OWN_SERIAL = 2**157
FINAL_REASONS = [
    r for r in RevocationReason if r is not RevocationReason.CERTIFICATE_HOLD
]


def _issue(node: Node) -> str:
    request = IssuanceRequest(
        profile="seal",
        subject=SUBJECT,
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
    )
    return node.ca.issue(request).serial


def _revoke_worker(
    home: str, database_url: str, serials: list[str], barrier
) -> list[str]:
    node = open_node(Path(home), database_url=database_url)
    try:
        barrier.wait()
        for number, serial in enumerate(serials):
            node.revocation.revoke(serial, FINAL_REASONS[number % len(FINAL_REASONS)])
            if number % 3 == 0:
                node.revocation.publish_crl("seal-ca")
        return serials
    finally:
        node.close()


def _ocsp_worker(
    home: str, database_url: str, serials: list[str], rounds: int, barrier
) -> int:
    """An OCSP responder process answering no-nonce requests while revocations happen."""
    node = open_node(Path(home), database_url=database_url)
    try:
        responder = node.revocation.responder(node.ca.issuer("seal-ca"))
        requests = []
        for serial in serials:
            cert_id = responder.cert_id(int(serial, 16), "sha1")
            request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
                cert_id.issuer_name_hash,
                cert_id.issuer_key_hash,
                cert_id.serial_number,
                hashes.SHA1(),
            )
            requests.append(request.build().public_bytes(Encoding.DER))
        barrier.wait()
        answered = 0
        for _ in range(rounds):
            for request in requests:
                response = ocsp.load_der_ocsp_response(
                    node.revocation.respond_ocsp(request)
                )
                assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
                answered += 1
        return answered
    finally:
        node.close()


def _issue_worker(
    home: str, database_url: str, worker: int, count: int, barrier
) -> list[str]:
    node = open_node(Path(home), database_url=database_url)
    try:
        barrier.wait()
        serials = []
        for number in range(count):
            draws = iter(
                [CONTESTED_SERIAL + number, OWN_SERIAL + 1000 * worker + number]
            )
            pki.ca.random_serial = lambda draws=draws: (
                next(draws, None) or pki.certificates.random_serial()
            )
            serials.append(_issue(node))
        return serials
    finally:
        node.close()


@pytest.fixture
def pg_node(tmp_path: Path, postgres_url: str):
    node = build_node(tmp_path / "node", database_url=postgres_url)
    yield node
    node.close()


def test_concurrent_revocations_and_crls_lose_nothing(pg_node: Node) -> None:
    node = pg_node
    serials = [_issue(node) for _ in range(WORKERS * REVOCATIONS_PER_WORKER)]
    shares = [serials[i::WORKERS] for i in range(WORKERS)]
    home, url = str(node.home), node.database_url
    run_together(
        [Job(_revoke_worker, (home, url, share)) for share in shares]
        + [
            Job(_ocsp_worker, (home, url, serials, OCSP_ROUNDS))
            for _ in range(OCSP_WORKERS)
        ]
    )
    last = node.revocation.publish_crl("seal-ca")

    seal_ca = node.ca.issuer("seal-ca")
    with node.sessions() as session:
        revoked = {
            int(serial, 16): sequence
            for serial, sequence in session.execute(
                select(CertificateRow.serial, CertificateRow.revocation_sequence).where(
                    CertificateRow.issuer_id == seal_ca.id,
                    CertificateRow.revoked_at.is_not(None),
                )
            )
        }
        crls = list(
            session.scalars(
                select(CrlRow)
                .where(CrlRow.issuer_id == seal_ca.id)
                .order_by(CrlRow.number)
            )
        )
    assert set(revoked) == {int(serial, 16) for serial in serials}
    assert sorted(revoked.values()) == list(
        range(1, len(serials) + 1)
    )  # one sequence value each

    numbers = [crl.number for crl in crls]
    assert len(numbers) == len(set(numbers))
    full_published = [crl for crl in crls if crl.base_number is None]
    assert len(full_published) >= 1 + WORKERS * -(-REVOCATIONS_PER_WORKER // 3)
    assert set(x509.load_der_x509_crl(last.der)) and {
        entry.serial_number for entry in x509.load_der_x509_crl(last.der)
    } == set(revoked)

    covers = {crl.number: crl.covers_sequence for crl in crls}
    for crl in crls:
        parsed = x509.load_der_x509_crl(crl.der)
        assert parsed.is_signature_valid(seal_ca.certificate.public_key())
        assert (
            parsed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
            == crl.number
        )
        listed = {entry.serial_number for entry in parsed}
        after = covers[crl.base_number] if crl.base_number is not None else 0
        expected = {
            serial
            for serial, sequence in revoked.items()
            if after < sequence <= crl.covers_sequence
        }
        assert listed == expected, f"CRL {crl.number} (delta of {crl.base_number})"

    with node.sessions() as session:
        presigned = dict(
            session.execute(
                select(OcspResponseRow.serial, OcspResponseRow.der).where(
                    OcspResponseRow.serial.in_(serials)
                )
            ).all()
        )
    assert set(presigned) == set(serials)
    for der in presigned.values():
        assert (
            ocsp.load_der_ocsp_response(der).certificate_status
            is ocsp.OCSPCertStatus.REVOKED
        )

    report = node.verify_audit()
    assert report.ok, report.reason


def test_concurrent_issuance_never_reuses_a_serial(pg_node: Node) -> None:
    node = pg_node
    before = {(row.issuer_id, row.serial) for row in node.certificate_rows()}
    batches = run_together(
        [
            Job(
                _issue_worker,
                (str(node.home), node.database_url, worker, ISSUANCES_PER_WORKER),
            )
            for worker in range(WORKERS)
        ]
    )
    serials = [serial for batch in batches for serial in batch]
    assert len(serials) == WORKERS * ISSUANCES_PER_WORKER
    assert len(set(serials)) == len(serials)
    contested = sorted(
        int(serial, 16) - CONTESTED_SERIAL
        for serial in serials
        if 0 <= int(serial, 16) - CONTESTED_SERIAL < ISSUANCES_PER_WORKER
    )
    assert contested == list(
        range(ISSUANCES_PER_WORKER)
    )  # each won by exactly one process
    rows = [
        row
        for row in node.certificate_rows()
        if (row.issuer_id, row.serial) not in before
    ]
    assert sorted(row.serial for row in rows) == sorted(serials)
    assert all(row.state is CertificateState.ISSUED for row in rows)
    for row in rows:
        assert x509.load_der_x509_certificate(row.der).serial_number == int(
            row.serial, 16
        )
    report = node.verify_audit()
    assert report.ok, report.reason
