"""pki.ocsp: requests made by `openssl ocsp`, responses checked by it and by pkilint.

The test PKI is a P-384 root, a P-256 issuing CA, two leaves, and one delegated
responder certificate (id-kp-OCSPSigning + ocsp-nocheck) per responder key type.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pki.certificates import signature_hash_for
from pki.errors import (
    MalformedOcspRequestError,
    OcspIssuerMismatchError,
    UnsuitableSigningCertificateError,
)
from pki.ocsp import (
    GOOD,
    MAX_NONCE_LENGTH,
    MAX_OCSP_REQUEST_SIZE,
    UNKNOWN,
    CertId,
    CertificateStatus,
    OcspResponder,
    build_ocsp_response,
    internal_error_response,
    malformed_request_response,
    matches_issuer,
    parse_ocsp_request,
    try_later_response,
    unauthorized_response,
)
from tests.conftest import require_tool
from tests.helpers.keys import sign_only_key

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
INTERVAL = dt.timedelta(hours=4)
UNISSUED_SERIAL = 0x1234


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "印信测试"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _certificate(
    subject: str,
    key: object,
    *,
    issuer: x509.Certificate | None,
    issuer_key: object,
    ca: bool,
    responder: bool = False,
) -> x509.Certificate:
    public_key = key.public_key()  # type: ignore[attr-defined]
    issuer_public = issuer.public_key() if issuer else public_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject if issuer else _name(subject))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public),
            critical=False,
        )
    )
    if responder:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
        ).add_extension(x509.OCSPNoCheck(), critical=False)
    return builder.sign(issuer_key, signature_hash_for(issuer_key))  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class Pki:
    root: x509.Certificate
    issuing_ca: x509.Certificate
    issuing_key: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate
    responders: dict[str, OcspResponder]
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name


def _write_pem(path: Path, certificate: x509.Certificate) -> None:
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("ocsp")
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = _certificate(
        "Test Root", root_key, issuer=None, issuer_key=root_key, ca=True
    )
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing_ca = _certificate(
        "Test Issuing CA", issuing_key, issuer=root, issuer_key=root_key, ca=True
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = _certificate(
        "Test Leaf", leaf_key, issuer=issuing_ca, issuer_key=issuing_key, ca=False
    )
    responder_keys = {
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "rsa3072": rsa.generate_private_key(public_exponent=65537, key_size=3072),
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }
    responders = {
        label: OcspResponder(
            issuer_certificate=issuing_ca,
            responder_certificate=_certificate(
                f"Test OCSP {label}",
                key,
                issuer=issuing_ca,
                issuer_key=issuing_key,
                ca=False,
                responder=True,
            ),
            responder_key=key,
            next_update_interval=INTERVAL,
        )
        for label, key in responder_keys.items()
    }
    _write_pem(directory / "root.pem", root)
    _write_pem(directory / "ca.pem", issuing_ca)
    _write_pem(directory / "leaf.pem", leaf)
    return Pki(root, issuing_ca, issuing_key, leaf, responders, directory)


def _openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    openssl = require_tool("openssl")
    return subprocess.run(
        [openssl, *map(str, args)], capture_output=True, text=True, timeout=60
    )


def _openssl_request(pki: Pki, tmp_path: Path, *options: str) -> Path:
    """`openssl ocsp` writes the request for the leaf; options go before -cert."""
    request = tmp_path / "req.der"
    made = _openssl(
        "ocsp",
        *options,
        "-issuer",
        pki.path("ca.pem"),
        "-cert",
        pki.path("leaf.pem"),
        "-reqout",
        request,
    )
    assert made.returncode == 0, made.stderr
    return request


def _write(tmp_path: Path, der: bytes, name: str = "resp.der") -> Path:
    path = tmp_path / name
    path.write_bytes(der)
    return path


SIGNATURE_ALGORITHMS = {
    "p256": SignatureAlgorithmOID.ECDSA_WITH_SHA256,
    "p384": SignatureAlgorithmOID.ECDSA_WITH_SHA384,
    "rsa3072": SignatureAlgorithmOID.RSA_WITH_SHA256,
    "ed25519": SignatureAlgorithmOID.ED25519,
}


@pytest.mark.parametrize("label", sorted(SIGNATURE_ALGORITHMS))
def test_openssl_checks_signature_and_nonce(
    pki: Pki, tmp_path: Path, label: str
) -> None:
    request_path = _openssl_request(pki, tmp_path)
    request = parse_ocsp_request(request_path.read_bytes())
    assert request.nonce is not None and len(request.nonce) == 16
    responder = pki.responders[label]

    der = build_ocsp_response(
        request.cert_id, responder=responder, status=GOOD, now=NOW, nonce=request.nonce
    )

    assert (
        ocsp.load_der_ocsp_response(der).signature_algorithm_oid
        == SIGNATURE_ALGORITHMS[label]
    )
    checked = _openssl(
        "ocsp",
        "-reqin",
        request_path,
        "-respin",
        _write(tmp_path, der),
        "-CAfile",
        pki.path("root.pem"),
        "-verify_other",
        pki.path("ca.pem"),
        "-resp_text",
    )
    assert checked.returncode == 0, checked.stderr
    assert "Response verify OK" in checked.stderr
    assert "Nonce Verify error" not in checked.stderr
    assert "no nonce in response" not in checked.stderr
    assert "Cert Status: good" in checked.stdout


def test_openssl_notices_a_wrong_nonce(pki: Pki, tmp_path: Path) -> None:
    request_path = _openssl_request(pki, tmp_path)
    request = parse_ocsp_request(request_path.read_bytes())
    der = build_ocsp_response(
        request.cert_id,
        responder=pki.responders["p256"],
        status=GOOD,
        now=NOW,
        nonce=b"\x00" * 16,
    )
    checked = _openssl(
        "ocsp",
        "-reqin",
        request_path,
        "-respin",
        _write(tmp_path, der),
        "-CAfile",
        pki.path("root.pem"),
        "-verify_other",
        pki.path("ca.pem"),
    )
    assert checked.returncode != 0
    assert "Nonce Verify error" in checked.stderr


REVOKED_AT = NOW - dt.timedelta(days=2, hours=3)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (GOOD, ["leaf.pem: good"]),
        (
            CertificateStatus.revoked(REVOKED_AT, x509.ReasonFlags.key_compromise),
            [
                "leaf.pem: revoked",
                "Reason: keyCompromise",
                f"Revocation Time: {REVOKED_AT:%b %e %H:%M:%S %Y} GMT",
            ],
        ),
        (CertificateStatus.revoked(REVOKED_AT), ["leaf.pem: revoked"]),
        (UNKNOWN, ["leaf.pem: unknown"]),
    ],
    ids=["good", "revoked-key-compromise", "revoked-no-reason", "unknown"],
)
def test_openssl_reads_each_status(
    pki: Pki, tmp_path: Path, status: CertificateStatus, expected: list[str]
) -> None:
    request = parse_ocsp_request(
        _openssl_request(pki, tmp_path, "-no_nonce").read_bytes()
    )
    assert request.nonce is None
    der = build_ocsp_response(
        request.cert_id, responder=pki.responders["p256"], status=status, now=NOW
    )
    checked = _openssl(
        "ocsp",
        "-no_nonce",
        "-respin",
        _write(tmp_path, der),
        "-issuer",
        pki.path("ca.pem"),
        "-cert",
        pki.path("leaf.pem"),
        "-CAfile",
        pki.path("root.pem"),
        "-resp_text",
    )
    assert checked.returncode == 0, checked.stderr
    assert "Response verify OK" in checked.stderr
    for line in expected:
        assert line in checked.stdout
    assert ("Reason:" in checked.stdout) == (status.revocation_reason is not None)


def test_unissued_serial_answered_unknown(pki: Pki, tmp_path: Path) -> None:
    request_path = tmp_path / "req.der"
    made = _openssl(
        "ocsp",
        "-no_nonce",
        "-issuer",
        pki.path("ca.pem"),
        "-serial",
        hex(UNISSUED_SERIAL),
        "-reqout",
        request_path,
    )
    assert made.returncode == 0, made.stderr
    request = parse_ocsp_request(request_path.read_bytes())
    assert request.cert_id.serial_number == UNISSUED_SERIAL
    der = build_ocsp_response(
        request.cert_id, responder=pki.responders["p256"], status=UNKNOWN, now=NOW
    )
    checked = _openssl(
        "ocsp",
        "-no_nonce",
        "-respin",
        _write(tmp_path, der),
        "-issuer",
        pki.path("ca.pem"),
        "-serial",
        hex(UNISSUED_SERIAL),
        "-CAfile",
        pki.path("root.pem"),
    )
    assert checked.returncode == 0, checked.stderr
    assert f"{hex(UNISSUED_SERIAL)}: unknown" in checked.stdout


@pytest.mark.parametrize("hash_option", ["-sha1", "-sha256", "-sha384", "-sha512"])
def test_cert_id_hash_algorithms(pki: Pki, tmp_path: Path, hash_option: str) -> None:
    request_path = _openssl_request(pki, tmp_path, hash_option)
    request = parse_ocsp_request(request_path.read_bytes())
    responder = pki.responders["p256"]

    assert request.cert_id.hash_name == hash_option[1:]
    assert matches_issuer(request, pki.issuing_ca)
    assert not matches_issuer(request, pki.root)
    assert responder.serves(request.cert_id)
    assert request.cert_id == responder.cert_id(pki.leaf.serial_number, hash_option[1:])
    der = build_ocsp_response(
        request.cert_id, responder=responder, status=GOOD, now=NOW, nonce=request.nonce
    )
    checked = _openssl(
        "ocsp",
        "-reqin",
        request_path,
        "-respin",
        _write(tmp_path, der),
        "-CAfile",
        pki.path("root.pem"),
        "-verify_other",
        pki.path("ca.pem"),
    )
    assert checked.returncode == 0, checked.stderr
    assert "Response verify OK" in checked.stderr


def test_response_fields(pki: Pki) -> None:
    responder = pki.responders["p384"]
    cert_id = responder.cert_id(pki.leaf.serial_number)
    revoked = CertificateStatus.revoked(REVOKED_AT, x509.ReasonFlags.key_compromise)
    now = NOW.replace(microsecond=654_321)

    response = ocsp.load_der_ocsp_response(
        build_ocsp_response(
            cert_id, responder=responder, status=revoked, now=now, nonce=b"n" * 32
        )
    )

    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    responder_key_id = x509.SubjectKeyIdentifier.from_public_key(
        responder.responder_certificate.public_key()
    ).digest
    assert response.responder_key_hash == responder_key_id
    assert response.responder_name is None
    assert response.certificates == [responder.responder_certificate]
    assert response.serial_number == pki.leaf.serial_number
    assert response.issuer_name_hash == cert_id.issuer_name_hash
    assert response.issuer_key_hash == cert_id.issuer_key_hash
    assert isinstance(response.hash_algorithm, hashes.SHA1)
    assert response.this_update_utc == NOW
    assert response.next_update_utc == NOW + INTERVAL
    assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert response.revocation_time_utc == REVOKED_AT
    assert response.revocation_reason is x509.ReasonFlags.key_compromise
    assert (
        response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        == b"n" * 32
    )
    responder.responder_certificate.public_key().verify(  # type: ignore[call-arg]
        response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA384())
    )


def test_pre_signed_response_has_no_nonce(pki: Pki) -> None:
    responder = pki.responders["p256"]
    der = build_ocsp_response(
        responder.cert_id(pki.leaf.serial_number, "sha256"),
        responder=responder,
        status=GOOD,
        now=NOW,
    )
    response = ocsp.load_der_ocsp_response(der)
    assert len(response.extensions) == 0
    assert isinstance(response.hash_algorithm, hashes.SHA256)


@pytest.mark.parametrize(
    "status",
    [
        GOOD,
        CertificateStatus.revoked(REVOKED_AT, x509.ReasonFlags.key_compromise),
        UNKNOWN,
    ],
    ids=["good", "revoked", "unknown"],
)
def test_pkilint_finds_nothing(
    pki: Pki, tmp_path: Path, status: CertificateStatus
) -> None:
    lint = Path(sys.executable).parent / "lint_ocsp_response"
    responder = pki.responders["p256"]
    der = build_ocsp_response(
        responder.cert_id(pki.leaf.serial_number),
        responder=responder,
        status=status,
        now=NOW,
        nonce=b"\x42" * 32,
    )
    result = subprocess.run(
        [str(lint), "lint", "-s", "WARNING", "-f", "JSON", str(_write(tmp_path, der))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["results"] == []


@pytest.mark.parametrize(
    ("der", "status_text"),
    [
        (malformed_request_response(), "malformedrequest (1)"),
        (internal_error_response(), "internalerror (2)"),
        (try_later_response(), "trylater (3)"),
        (unauthorized_response(), "unauthorized (6)"),
    ],
)
def test_openssl_reads_error_responses(
    pki: Pki, tmp_path: Path, der: bytes, status_text: str
) -> None:
    checked = _openssl(
        "ocsp",
        "-respin",
        _write(tmp_path, der),
        "-issuer",
        pki.path("ca.pem"),
        "-cert",
        pki.path("leaf.pem"),
        "-CAfile",
        pki.path("root.pem"),
    )
    assert f"Responder Error: {status_text}" in checked.stdout


def _request_der(
    pki: Pki,
    *,
    algorithm: hashes.HashAlgorithm | None = None,
    nonce: bytes | None = None,
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        pki.leaf, pki.issuing_ca, algorithm or hashes.SHA1()
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _negative_serial_request(request_der: bytes, serial: int) -> bytes:
    """Flip the serial's leading bit: same length, now a negative INTEGER."""
    encoded = serial.to_bytes((serial.bit_length() + 8) // 8, "big")
    assert encoded in request_der
    return request_der.replace(encoded, bytes([encoded[0] | 0x80]) + encoded[1:])


def _short_issuer_hash_request(request_der: bytes) -> bytes:
    request = asn1_ocsp.OCSPRequest.load(request_der)
    cert_id = request["tbs_request"]["request_list"][0]["req_cert"]
    cert_id["issuer_name_hash"] = cert_id["issuer_name_hash"].native[:19]
    return request.dump(force=True)


def test_hostile_requests_are_malformed(pki: Pki, tmp_path: Path) -> None:
    good = _request_der(pki)
    several = _openssl(
        "ocsp",
        "-issuer",
        pki.path("ca.pem"),
        "-cert",
        pki.path("leaf.pem"),
        "-cert",
        pki.path("ca.pem"),
        "-reqout",
        tmp_path / "several.der",
    )
    assert several.returncode == 0, several.stderr
    hostile = {
        "empty": (b"", "not valid DER"),
        "garbage": (b"\x01\x02 not an OCSP request", "not valid DER"),
        "truncated": (good[:-3], "not valid DER"),
        "trailing byte": (good + b"\x00", "not valid DER"),
        "oversized": (b"\x30" * (MAX_OCSP_REQUEST_SIZE + 1), "larger than"),
        "several certificates": (
            (tmp_path / "several.der").read_bytes(),
            "exactly one",
        ),
        "sha224 CertID": (
            _request_der(pki, algorithm=hashes.SHA224()),
            "hash algorithm",
        ),
        "long nonce": (
            _request_der(pki, nonce=b"\x01" * (MAX_NONCE_LENGTH + 1)),
            "nonce",
        ),
        "negative serial": (
            _negative_serial_request(good, pki.leaf.serial_number),
            "positive",
        ),
        "empty nonce": (_request_der(pki, nonce=b""), "nonce"),
        "short issuer hash": (_short_issuer_hash_request(good), "wrong length"),
    }
    for case, (der, reason) in hostile.items():
        with pytest.raises(MalformedOcspRequestError, match=reason) as raised:
            parse_ocsp_request(der)
        assert "\n" not in str(raised.value), case
    assert parse_ocsp_request(_request_der(pki, nonce=b"\x01" * MAX_NONCE_LENGTH)).nonce


@given(st.binary(max_size=600))
@example(b"\x30\x80\x00\x00")
@example(b"\x30\x84\xff\xff\xff\xff")
@settings(max_examples=300, deadline=None)
def test_random_bytes_never_escape_as_other_errors(garbage: bytes) -> None:
    with contextlib.suppress(MalformedOcspRequestError):
        parse_ocsp_request(garbage)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_mutated_requests_parse_or_are_malformed(pki: Pki, data: st.DataObject) -> None:
    request_der = bytearray(_request_der(pki, nonce=b"\x07" * 16))
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(request_der) - 1))
        request_der[position] = data.draw(st.integers(0, 255))
    try:
        request = parse_ocsp_request(bytes(request_der))
    except MalformedOcspRequestError:
        return
    responder = pki.responders["p256"]
    if responder.serves(request.cert_id):
        ocsp.load_der_ocsp_response(
            build_ocsp_response(
                request.cert_id,
                responder=responder,
                status=GOOD,
                now=NOW,
                nonce=request.nonce,
            )
        )
    else:
        assert not matches_issuer(request, pki.issuing_ca)


def test_foreign_issuer_is_refused(pki: Pki) -> None:
    responder = pki.responders["p256"]
    foreign = CertId("sha1", b"\x01" * 20, b"\x02" * 20, 7)

    assert not responder.serves(foreign)
    assert not matches_issuer(foreign, pki.issuing_ca)
    with pytest.raises(OcspIssuerMismatchError):
        build_ocsp_response(foreign, responder=responder, status=GOOD, now=NOW)


def test_caller_mistakes_raise(pki: Pki) -> None:
    responder = pki.responders["p256"]
    cert_id = responder.cert_id(pki.leaf.serial_number)
    with pytest.raises(ValueError, match="timezone"):
        build_ocsp_response(
            cert_id, responder=responder, status=GOOD, now=NOW.replace(tzinfo=None)
        )
    with pytest.raises(ValueError, match="nonce"):
        build_ocsp_response(
            cert_id, responder=responder, status=GOOD, now=NOW, nonce=b""
        )
    with pytest.raises(ValueError, match="revocation time"):
        CertificateStatus(ocsp.OCSPCertStatus.REVOKED)
    with pytest.raises(ValueError, match="only a revoked status"):
        CertificateStatus(
            ocsp.OCSPCertStatus.GOOD, revocation_reason=x509.ReasonFlags.superseded
        )
    with pytest.raises(ValueError, match="hash algorithm"):
        responder.cert_id(1, "md5")
    with pytest.raises(ValueError, match="positive"):
        dataclasses.replace(responder, next_update_interval=dt.timedelta(0))
    with pytest.raises(UnsuitableSigningCertificateError, match="not valid"):
        build_ocsp_response(
            cert_id, responder=responder, status=GOOD, now=NOW + dt.timedelta(days=31)
        )


def test_responder_refuses_unsuitable_certificates(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    delegated = _certificate(
        "Responder",
        key,
        issuer=pki.issuing_ca,
        issuer_key=pki.issuing_key,
        ca=False,
        responder=True,
    )
    without_eku = _certificate(
        "Responder", key, issuer=pki.issuing_ca, issuer_key=pki.issuing_key, ca=False
    )
    other_ca_key = ec.generate_private_key(ec.SECP256R1())
    forged = _certificate(
        "Responder",
        key,
        issuer=pki.issuing_ca,
        issuer_key=other_ca_key,
        ca=False,
        responder=True,
    )
    cases = [
        (pki.root, delegated, key, "not issued by"),
        (pki.issuing_ca, without_eku, key, "OCSPSigning"),
        (pki.issuing_ca, forged, key, "not signed by"),
        (
            pki.issuing_ca,
            delegated,
            ec.generate_private_key(ec.SECP256R1()),
            "does not match",
        ),
    ]
    for issuer, certificate, responder_key, message in cases:
        with pytest.raises(UnsuitableSigningCertificateError, match=message):
            OcspResponder(issuer, certificate, responder_key, INTERVAL)


def test_responder_key_needs_only_sign_and_public_key(pki: Pki, tmp_path: Path) -> None:
    """An HSM key handle has only sign() and public_key(); that is all we need."""
    inner = ec.generate_private_key(ec.SECP256R1())

    key = sign_only_key(inner)
    certificate = _certificate(
        "HSM Responder",
        key,
        issuer=pki.issuing_ca,
        issuer_key=pki.issuing_key,
        ca=False,
        responder=True,
    )
    responder = OcspResponder(pki.issuing_ca, certificate, key, INTERVAL)
    request = parse_ocsp_request(
        _openssl_request(pki, tmp_path, "-no_nonce").read_bytes()
    )
    der = build_ocsp_response(
        request.cert_id, responder=responder, status=GOOD, now=NOW
    )
    checked = _openssl(
        "ocsp",
        "-no_nonce",
        "-respin",
        _write(tmp_path, der),
        "-issuer",
        pki.path("ca.pem"),
        "-cert",
        pki.path("leaf.pem"),
        "-CAfile",
        pki.path("root.pem"),
    )
    assert checked.returncode == 0, checked.stderr
    assert "leaf.pem: good" in checked.stdout
