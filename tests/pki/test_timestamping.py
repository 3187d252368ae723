"""The node's timestamp service: tokens from the ceremony's TSA key that `openssl ts`
verifies against the node's root, and serial numbers that are never reused."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import tsp
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import select

import pki.certificates
import pki.timestamping
from hsm_sim.errors import ErrorCategory
from pki.ca_models import TimestampRow
from pki.errors import IssuanceError, UnknownCaError
from pki.timestamping import SERIAL_ATTEMPTS, TimestampService
from pki.tsa import TimestampStatus
from tests.conftest import require_tool
from tests.helpers.node import Node, build_node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = build_node(tmp_path_factory.mktemp("tsa") / "node")
    yield node
    node.close()


def _request(digest: bytes, *, nonce: int | None = 7, cert_req: bool = True) -> bytes:
    request = {
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": {"algorithm": "sha256"},
            "hashed_message": digest,
        },
        "cert_req": cert_req,
    }
    if nonce is not None:
        request["nonce"] = nonce
    return tsp.TimeStampReq(request).dump()


def _token_serial(response_der: bytes) -> int:
    response = tsp.TimeStampResp.load(response_der)
    return (
        response["time_stamp_token"]["content"]["encap_content_info"]["content"]
        .parsed["serial_number"]
        .native
    )


def _stored_serials(node: Node) -> list[str]:
    with node.sessions() as session:
        return list(session.scalars(select(TimestampRow.serial)))


def _openssl(tmp_path: Path, *args) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("openssl"), *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )


@pytest.mark.parametrize("with_certificates", [True, False], ids=["cert", "no-cert"])
def test_openssl_verifies_tokens_against_the_node_root(
    node, tmp_path, with_certificates
) -> None:
    (tmp_path / "document.pdf").write_bytes("盖章处 a document to timestamp".encode())
    (tmp_path / "root.pem").write_bytes(
        node.ca.issuer("root").certificate.public_bytes(Encoding.PEM)
    )
    option = "-cert" if with_certificates else "-no_nonce"
    made = _openssl(
        tmp_path,
        "ts",
        "-query",
        "-data",
        "document.pdf",
        "-sha256",
        option,
        "-out",
        "request.tsq",
    )
    assert made.returncode == 0, made.stderr
    outcome = node.timestamps.respond((tmp_path / "request.tsq").read_bytes())
    assert outcome.status is TimestampStatus.GRANTED
    (tmp_path / "response.tsr").write_bytes(outcome.response_der)

    untrusted = []
    if not with_certificates:
        signer = node.timestamps.signer()
        (tmp_path / "untrusted.pem").write_bytes(
            b"".join(
                c.public_bytes(Encoding.PEM)
                for c in (signer.certificate, *signer.chain)
            )
        )
        untrusted = ["-untrusted", "untrusted.pem"]
    for check in (["-queryfile", "request.tsq"], ["-data", "document.pdf"]):
        verified = _openssl(
            tmp_path,
            "ts",
            "-verify",
            "-in",
            "response.tsr",
            *check,
            "-CAfile",
            "root.pem",
            *untrusted,
        )
        assert verified.returncode == 0 and "Verification: OK" in verified.stdout, (
            verified.stdout + verified.stderr
        )

    (tmp_path / "other.pdf").write_bytes(b"another document")
    forged = _openssl(
        tmp_path,
        "ts",
        "-verify",
        "-in",
        "response.tsr",
        "-data",
        "other.pdf",
        "-CAfile",
        "root.pem",
        *untrusted,
    )
    assert forged.returncode != 0


def test_serials_are_unique_and_recorded(node) -> None:
    before = set(_stored_serials(node))
    serials = []
    for number in range(60):
        digest = hashlib.sha256(f"document {number}".encode()).digest()
        outcome = node.timestamps.respond(_request(digest, nonce=number + 1))
        assert outcome.status is TimestampStatus.GRANTED
        assert _token_serial(outcome.response_der) == outcome.serial
        assert 0 < outcome.serial < 2**159
        serials.append(outcome.serial)
    assert len(set(serials)) == len(serials)
    stored = set(_stored_serials(node)) - before
    assert stored == {format(serial, "x") for serial in serials}
    with node.sessions() as session:
        row = session.scalar(
            select(TimestampRow).where(TimestampRow.serial == format(serials[0], "x"))
        )
    assert row.message_imprint == hashlib.sha256(b"document 0").hexdigest()
    assert row.hash_algorithm == "sha256"


def test_a_serial_collision_is_signed_again_under_a_new_serial(
    node, monkeypatch
) -> None:
    taken = node.timestamps.respond(_request(hashlib.sha256(b"first").digest())).serial
    handed_out = []

    def colliding_then_random() -> int:
        serial = taken if not handed_out else pki.certificates.random_serial()
        handed_out.append(serial)
        return serial

    monkeypatch.setattr(pki.timestamping, "random_serial", colliding_then_random)
    signatures = node.granted_signatures()
    outcome = node.timestamps.respond(_request(hashlib.sha256(b"second").digest()))
    assert handed_out[0] == taken and outcome.serial == handed_out[1] != taken
    assert _token_serial(outcome.response_der) == outcome.serial
    assert node.granted_signatures() == signatures + 2
    assert _stored_serials(node).count(format(taken, "x")) == 1


def test_endless_collisions_give_up(node, monkeypatch) -> None:
    taken = node.timestamps.respond(_request(hashlib.sha256(b"taken").digest())).serial
    monkeypatch.setattr(pki.timestamping, "random_serial", lambda: taken)
    signatures = node.granted_signatures()
    with pytest.raises(IssuanceError, match="unique timestamp serial"):
        node.timestamps.respond(_request(hashlib.sha256(b"never").digest()))
    assert node.granted_signatures() == signatures + SERIAL_ATTEMPTS


@pytest.mark.parametrize(
    "body",
    [b"", b"\x30\x03\x02\x01\x01", _request(b"\x00" * 20)],
    ids=["empty", "not-a-request", "wrong-digest-length"],
)
def test_a_rejected_request_is_neither_signed_nor_recorded(node, body) -> None:
    signatures = node.granted_signatures()
    stored = len(_stored_serials(node))
    outcome = node.timestamps.respond(body)
    assert outcome.status is TimestampStatus.REJECTION and outcome.reason
    assert node.granted_signatures() == signatures
    assert len(_stored_serials(node)) == stored


def test_tokens_are_signed_by_the_ceremony_tsa_key_and_audited(node) -> None:
    signer = node.timestamps.signer()
    assert signer.certificate.public_key() == node.keystore.public_key("tsa-1")
    assert [c.subject for c in signer.chain] == [
        node.ca.issuer("infrastructure-ca").certificate.subject,
        node.ca.issuer("root").certificate.subject,
    ]
    node.timestamps.respond(_request(hashlib.sha256(b"audited").digest()))
    last = node.audit.recent_entries(1)[0]
    assert (last.operation, last.key_label, last.result.value) == (
        "timestamp",
        "tsa-1",
        "granted",
    )


def test_a_node_without_a_tsa_says_to_run_the_ceremony(tmp_path) -> None:
    node = build_node(tmp_path / "node", ceremony=False)
    try:
        with pytest.raises(UnknownCaError, match="run the CA ceremony") as refused:
            TimestampService(ca=node.ca).respond(
                _request(hashlib.sha256(b"x").digest())
            )
        assert refused.value.category is ErrorCategory.NOT_FOUND
    finally:
        node.close()
