"""The /pki endpoints in process (Flask's test client): formats, errors, a locked HSM,
and the per-address limits on what makes the node sign now (OCSP live, TSA).

What standard clients make of them over a real socket is in test_pki_live.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import tsp
from asn1crypto.core import Sequence
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from flask import Flask
from flask.testing import FlaskClient

from portal.app import create_app
from portal.cli import cli
from portal.config import SettingOverrides, Settings, resolve_settings
from portal.context import current_services
from tests.portal.conftest import count_rows, granted_signatures

PROBLEM_JSON = "application/problem+json"


def make_client(settings: Settings, **config: Any) -> Iterator[FlaskClient]:
    app: Flask = create_app({"TESTING": True, **config}, settings=settings)
    yield app.test_client()
    with app.app_context():
        current_services().close()


@pytest.fixture
def client(instance_settings: Settings) -> Iterator[FlaskClient]:
    yield from make_client(instance_settings)


@pytest.fixture
def locked_client(instance_home: Path) -> Iterator[FlaskClient]:
    """The instance's web app with a wrong PIN: nothing can be signed."""
    settings = resolve_settings(
        SettingOverrides(home=instance_home), {"YINXIN_HSM_PIN": "not-the-pin"}
    )
    yield from make_client(settings)


def timestamp_query(nonce: int = 4711) -> bytes:
    digest = hashlib.sha256(b"a document").digest()
    query = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": digest,
            },
            "nonce": nonce,
            "cert_req": True,
        }
    )
    return query.dump()


def timestamp_status(reply: bytes) -> str:
    """The PKIStatus of a TimeStampResp (its first element)."""
    status_info = tsp.PKIStatusInfo.load(Sequence.load(reply)[0].dump())
    status: str = status_info["status"].native
    return status


def foreign_ocsp_request() -> bytes:
    """A well-formed request about an issuer this node does not have."""
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        b"\x01" * 20, b"\x02" * 20, 7, hashes.SHA1()
    )
    return builder.build().public_bytes(serialization.Encoding.DER)


def ocsp_request(
    client: FlaskClient,
    ca: str = "seal-ca",
    serial: int = 12345,
    *,
    nonce: bytes | None = None,
) -> bytes:
    issuer = x509.load_der_x509_certificate(client.get(f"/pki/ca/{ca}.crt").data)
    name_hash = hashes.Hash(hashes.SHA1())
    name_hash.update(issuer.subject.public_bytes())
    key_hash = hashes.Hash(hashes.SHA1())
    key_hash.update(
        issuer.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash.finalize(), key_hash.finalize(), serial, hashes.SHA1()
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def response_status(reply: bytes) -> ocsp.OCSPResponseStatus:
    return ocsp.load_der_ocsp_response(reply).response_status


def test_ca_certificates_are_served_as_der_and_as_a_pem_chain(
    client: FlaskClient,
) -> None:
    crt = client.get("/pki/ca/seal-ca.crt")
    pem = client.get("/pki/ca/seal-ca.pem")

    assert crt.status_code == 200 and crt.mimetype == "application/pkix-cert"
    assert pem.mimetype == "application/pem-certificate-chain"
    chain = x509.load_pem_x509_certificates(pem.data)
    assert chain[0].public_bytes(serialization.Encoding.DER) == crt.data
    assert len(chain) == 2 and chain[1].subject == chain[1].issuer
    assert "max-age" in crt.headers["Cache-Control"]
    again = client.get(
        "/pki/ca/seal-ca.crt", headers={"If-None-Match": crt.headers["ETag"]}
    )
    assert again.status_code == 304 and again.data == b""


def test_full_and_delta_crls_are_served_as_der(client: FlaskClient) -> None:
    full = client.get("/pki/crl/seal-ca.crl")
    delta = client.get("/pki/crl/seal-ca-delta.crl")

    assert full.mimetype == delta.mimetype == "application/pkix-crl"
    full_crl = x509.load_der_x509_crl(full.data)
    delta_crl = x509.load_der_x509_crl(delta.data)
    freshest = full_crl.extensions.get_extension_for_class(x509.FreshestCRL).value
    assert freshest[0].full_name[0].value.endswith("/pki/crl/seal-ca-delta.crl")
    indicator = delta_crl.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    assert indicator.value.crl_number == (
        full_crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    )
    assert full.headers["Cache-Control"] == "public, no-cache"
    assert full.headers["Last-Modified"] and full.headers["Expires"]


@pytest.mark.parametrize(
    "path",
    [
        "/pki/ca/nope.crt",
        "/pki/ca/nope.pem",
        "/pki/crl/nope.crl",
        "/pki/crl/nope-delta.crl",
        "/pki/ca/Root.crt",
        "/pki/crl/..%2Fsecrets.crl",
    ],
)
def test_unknown_names_get_a_404_problem(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.mimetype == PROBLEM_JSON
    assert response.json is not None and response.json["status"] == 404


def test_ocsp_by_get_must_carry_a_request_and_post_is_the_only_other_method(
    client: FlaskClient,
) -> None:
    empty = client.get("/pki/ocsp/")
    assert ocsp.load_der_ocsp_response(empty.data).response_status is (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )
    wrong_method = client.put("/pki/ocsp", data=b"x")
    assert wrong_method.status_code == 405 and wrong_method.mimetype == PROBLEM_JSON


def test_a_foreign_issuer_gets_unauthorized(client: FlaskClient) -> None:
    response = client.post("/pki/ocsp", data=foreign_ocsp_request())
    assert ocsp.load_der_ocsp_response(response.data).response_status is (
        ocsp.OCSPResponseStatus.UNAUTHORIZED
    )
    assert response.headers["Cache-Control"] == "no-store"


def test_the_tsa_grants_a_token_and_rejects_garbage(client: FlaskClient) -> None:
    granted = client.post(
        "/pki/tsa",
        data=timestamp_query(),
        content_type="application/timestamp-query",
    )
    rejected = client.post("/pki/tsa", data=b"\x30\x03\x02\x01\x01")

    assert granted.mimetype == rejected.mimetype == "application/timestamp-reply"
    assert timestamp_status(granted.data) == "granted"
    assert timestamp_status(rejected.data) == "rejection"
    assert granted.headers["Cache-Control"] == "no-store"


def test_with_the_hsm_locked_certificates_and_crls_are_still_served(
    locked_client: FlaskClient, instance_home: Path
) -> None:
    assert locked_client.get("/pki/ca/root.crt").status_code == 200
    assert locked_client.get("/pki/crl/seal-ca.crl").status_code == 200

    status = ocsp.load_der_ocsp_response(
        locked_client.post("/pki/ocsp", data=ocsp_request(locked_client)).data
    ).response_status
    assert status is ocsp.OCSPResponseStatus.TRY_LATER
    reply = locked_client.post("/pki/tsa", data=timestamp_query())
    assert timestamp_status(reply.data) == "rejection"
    health = locked_client.get("/healthz")
    assert health.status_code == 503


def test_a_node_without_a_hierarchy_answers_in_the_protocols(tmp_path: Path) -> None:
    home = tmp_path / "bare"
    assert CliRunner().invoke(cli, ["init", "--home", str(home)]).exit_code == 0
    settings = resolve_settings(SettingOverrides(home=home), {})
    for client in make_client(settings):
        assert client.get("/pki/ca/root.crt").status_code == 404
        assert client.get("/pki/crl/root.crl").status_code == 404
        encoded = base64.b64encode(foreign_ocsp_request()).decode()
        answer = ocsp.load_der_ocsp_response(client.get(f"/pki/ocsp/{encoded}").data)
        assert answer.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
        reply = client.post("/pki/tsa", data=timestamp_query())
        assert timestamp_status(reply.data) == "rejection"


# -- limits on live signing ---------------------------------------------------------------


def presigned_serial(home: Path) -> tuple[str, int]:
    """(CA name, serial) of a certificate with a pre-signed OCSP response."""
    with sqlite3.connect(f"file:{home / 'yinxin.sqlite3'}?mode=ro", uri=True) as db:
        name, serial = db.execute(
            "SELECT c.name, o.serial FROM ocsp_response o "
            "JOIN certificate_authority c ON c.id = o.issuer_id ORDER BY o.id LIMIT 1"
        ).fetchone()
    return name, int(serial, 16)


def test_ocsp_answers_signed_live_are_limited_per_address_presigned_ones_are_not(
    instance_settings: Settings, instance_home: Path
) -> None:
    """Requests with a nonce, or for serials nobody issued, are each signed (and
    audited) on the spot: beyond the limit an address gets tryLater and the node
    signs nothing. Pre-signed answers cost no signature and are never limited."""
    for client in make_client(instance_settings, YINXIN_OCSP_LIVE_RATE_LIMIT=3):
        ca, serial = presigned_serial(instance_home)
        flooder = {"REMOTE_ADDR": "203.0.113.9"}
        signed = granted_signatures(instance_home)

        def ask(
            request_der: bytes,
            address: dict[str, str] = flooder,
            client: FlaskClient = client,
        ) -> Any:
            return client.post("/pki/ocsp", data=request_der, environ_base=address)

        with_nonces = [
            ask(ocsp_request(client, ca, serial, nonce=os.urandom(16)))
            for _ in range(5)
        ]
        assert [response_status(r.data) for r in with_nonces] == (
            [ocsp.OCSPResponseStatus.SUCCESSFUL] * 3
            + [ocsp.OCSPResponseStatus.TRY_LATER] * 2
        )
        assert all(r.status_code == 200 for r in with_nonces)
        assert with_nonces[-1].headers["Cache-Control"] == "no-store"
        unknown_serial = ask(ocsp_request(client, "seal-ca", 0x5EED))
        assert response_status(unknown_serial.data) is ocsp.OCSPResponseStatus.TRY_LATER
        assert granted_signatures(instance_home) == signed + 3

        cache = client.application.extensions["yinxin-ocsp-cache"]
        for _ in range(10):
            cache.clear()  # every answer read from the database, not the worker's cache
            presigned = ocsp.load_der_ocsp_response(
                ask(ocsp_request(client, ca, serial)).data
            )
            assert presigned.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
            assert presigned.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert granted_signatures(instance_home) == signed + 3

        elsewhere = ask(
            ocsp_request(client, ca, serial, nonce=os.urandom(16)),
            {"REMOTE_ADDR": "203.0.113.10"},
        )
        assert response_status(elsewhere.data) is ocsp.OCSPResponseStatus.SUCCESSFUL
        assert granted_signatures(instance_home) == signed + 4

        # Serials nobody issued have no pre-signed answer: each one is signed live
        # ("unknown"), so they count too, nonce or not.
        prober = {"REMOTE_ADDR": "203.0.113.11"}
        unknown = [
            ocsp.load_der_ocsp_response(
                ask(ocsp_request(client, "seal-ca", 0x5EED + n), prober).data
            )
            for n in range(4)
        ]
        assert [r.response_status for r in unknown] == (
            [ocsp.OCSPResponseStatus.SUCCESSFUL] * 3
            + [ocsp.OCSPResponseStatus.TRY_LATER]
        )
        assert {r.certificate_status for r in unknown[:3]} == {
            ocsp.OCSPCertStatus.UNKNOWN
        }
        assert granted_signatures(instance_home) == signed + 7


def test_timestamps_are_limited_per_address(
    instance_settings: Settings, instance_home: Path
) -> None:
    """Each timestamp is signed and stored: beyond the limit an address gets 429 with
    Retry-After and a TimeStampResp saying why, and nothing is signed or stored."""
    for client in make_client(instance_settings, YINXIN_TSA_RATE_LIMIT=2):
        flooder = {"REMOTE_ADDR": "203.0.113.9"}
        signed = granted_signatures(instance_home)
        stored = count_rows(instance_home, "SELECT count(*) FROM timestamp_token")
        replies = [
            client.post("/pki/tsa", data=timestamp_query(nonce), environ_base=flooder)
            for nonce in (1, 2, 3, 4)
        ]
        assert [r.status_code for r in replies] == [200, 200, 429, 429]
        assert [timestamp_status(r.data) for r in replies] == (
            ["granted"] * 2 + ["rejection"] * 2
        )
        limited = replies[-1]
        assert limited.mimetype == "application/timestamp-reply"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        status_info = tsp.PKIStatusInfo.load(Sequence.load(limited.data)[0].dump())
        assert "too many timestamp requests" in status_info["status_string"][0].native
        assert status_info["fail_info"].native == {"system_failure"}
        assert granted_signatures(instance_home) == signed + 2
        assert (
            count_rows(instance_home, "SELECT count(*) FROM timestamp_token")
            == stored + 2
        )
        elsewhere = client.post(
            "/pki/tsa",
            data=timestamp_query(5),
            environ_base={"REMOTE_ADDR": "203.0.113.10"},
        )
        assert timestamp_status(elsewhere.data) == "granted"
