"""pki.tsa: RFC 3161 tokens checked by `openssl ts` and by pyHanko; hostile requests.

The test PKI is a P-384 root, a P-256 issuing CA, and one TSA certificate per key type,
built here with the extensions a real TSA certificate carries.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pki.certificates import signature_hash_for
from pki.errors import UnsuitableSigningCertificateError
from pki.oids import ProjectOID
from pki.tsa import (
    MAX_TIMESTAMP_REQUEST_SIZE,
    TimestampFailure,
    TimestampStatus,
    TsaSigner,
    respond_timestamp,
    system_failure_response,
)
from tests.conftest import require_tool
from tests.helpers.keys import sign_only_key


class TimeStampResp(core.Sequence):
    """RFC 3161 as written: asn1crypto's class wants a token even in a rejection."""

    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


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
    eku: list[x509.ObjectIdentifier] | None = None,
    eku_critical: bool = True,
) -> x509.Certificate:
    public_key = key.public_key()  # type: ignore[attr-defined]
    issuer_name = issuer.subject if issuer else _name(subject)
    issuer_public = issuer.public_key() if issuer else public_key
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
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
    if eku is not None:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage(eku), critical=eku_critical
        )
    return builder.sign(issuer_key, signature_hash_for(issuer_key))  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class Pki:
    root: x509.Certificate
    issuing_ca: x509.Certificate
    issuing_key: ec.EllipticCurvePrivateKey
    signers: dict[str, TsaSigner]
    directory: Path


def _write_pem(path: Path, *certificates: x509.Certificate) -> Path:
    path.write_bytes(
        b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
    )
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("tsa")
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = _certificate(
        "Test Root", root_key, issuer=None, issuer_key=root_key, ca=True
    )
    issuing_key = ec.generate_private_key(ec.SECP256R1())
    issuing_ca = _certificate(
        "Test Issuing CA", issuing_key, issuer=root, issuer_key=root_key, ca=True
    )
    tsa_keys = {
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "p384": ec.generate_private_key(ec.SECP384R1()),
        "rsa3072": rsa.generate_private_key(public_exponent=65537, key_size=3072),
    }
    signers = {
        label: TsaSigner(
            private_key=key,
            certificate=_certificate(
                f"Test TSA {label}",
                key,
                issuer=issuing_ca,
                issuer_key=issuing_key,
                ca=False,
                eku=[ExtendedKeyUsageOID.TIME_STAMPING],
            ),
            chain=(issuing_ca,),
        )
        for label, key in tsa_keys.items()
    }
    _write_pem(directory / "root.pem", root)
    _write_pem(directory / "chain.pem", issuing_ca)
    return Pki(root, issuing_ca, issuing_key, signers, directory)


def _openssl(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    openssl = require_tool("openssl")
    result = subprocess.run(
        [openssl, *map(str, args)], capture_output=True, text=True, timeout=60
    )
    assert not check or result.returncode == 0, result.stderr
    return result


def _query(directory: Path, *options: str, name: str = "req.tsq") -> Path:
    data = directory / "data.txt"
    data.write_text("盖章处 — a document to timestamp\n", encoding="utf-8")
    request = directory / name
    _openssl("ts", "-query", "-data", data, *options, "-out", request)
    return request


def _respond(request_der: bytes, signer: TsaSigner, serial: int = 4242):
    return respond_timestamp(request_der, signer=signer, serial=serial, now=NOW)


def _status(response_der: bytes) -> tsp.PKIStatusInfo:
    return TimeStampResp.load(response_der, strict=True)["status"]


def _tst_info(response_der: bytes) -> tsp.TSTInfo:
    token = TimeStampResp.load(response_der)["time_stamp_token"]
    return token["content"]["encap_content_info"]["content"].parsed


@pytest.mark.parametrize(
    ("label", "options"),
    [
        ("p256", ["-sha256", "-cert"]),
        ("p256", ["-sha256", "-cert", "-no_nonce"]),
        ("p384", ["-sha384", "-cert"]),
        (
            "p256",
            [
                "-sha512",
                "-cert",
                "-tspolicy",
                ProjectOID.TIMESTAMP_POLICY.dotted_string,
            ],
        ),
        ("rsa3072", ["-sha256", "-cert"]),
    ],
)
def test_openssl_verifies_granted_token(
    pki: Pki, tmp_path: Path, label: str, options: list[str]
) -> None:
    request = _query(tmp_path, *options)
    outcome = _respond(request.read_bytes(), pki.signers[label])

    assert outcome.status is TimestampStatus.GRANTED
    assert outcome.serial == 4242
    assert outcome.gen_time == NOW
    response = tmp_path / "resp.tsr"
    response.write_bytes(outcome.response_der)
    text = _openssl("ts", "-reply", "-in", response, "-text").stdout
    assert "Status: Granted." in text
    assert f"Policy OID: {ProjectOID.TIMESTAMP_POLICY.dotted_string}" in text
    assert "Accuracy: 0x01 seconds" in text
    assert ("Nonce: unspecified" in text) == ("-no_nonce" in options)
    verified = _openssl(
        "ts",
        "-verify",
        "-in",
        response,
        "-queryfile",
        request,
        "-CAfile",
        pki.directory / "root.pem",
        "-untrusted",
        pki.directory / "chain.pem",
        check=False,
    )
    assert verified.returncode == 0, verified.stderr
    assert "Verification: OK" in verified.stdout


def test_token_without_cert_request_carries_no_certificates(
    pki: Pki, tmp_path: Path
) -> None:
    signer = pki.signers["p256"]
    request = _query(tmp_path, "-sha256")
    outcome = _respond(request.read_bytes(), signer)

    token = TimeStampResp.load(outcome.response_der)["time_stamp_token"]
    assert not token["content"]["certificates"]
    response = tmp_path / "resp.tsr"
    response.write_bytes(outcome.response_der)
    untrusted = _write_pem(
        tmp_path / "untrusted.pem", signer.certificate, pki.issuing_ca
    )
    verified = _openssl(
        "ts",
        "-verify",
        "-in",
        response,
        "-queryfile",
        request,
        "-CAfile",
        pki.directory / "root.pem",
        "-untrusted",
        untrusted,
        check=False,
    )
    assert verified.returncode == 0, verified.stderr


def test_openssl_rejects_a_token_for_other_data(pki: Pki, tmp_path: Path) -> None:
    request = _query(tmp_path, "-sha256", "-cert")
    outcome = _respond(request.read_bytes(), pki.signers["p256"])
    response = tmp_path / "resp.tsr"
    response.write_bytes(outcome.response_der)
    other = tmp_path / "other.txt"
    other.write_text("a different document\n")

    verified = _openssl(
        "ts",
        "-verify",
        "-in",
        response,
        "-data",
        other,
        "-CAfile",
        pki.directory / "root.pem",
        "-untrusted",
        pki.directory / "chain.pem",
        check=False,
    )
    assert verified.returncode != 0
    assert "message imprint mismatch" in verified.stderr


def test_token_contents(pki: Pki, tmp_path: Path) -> None:
    signer = pki.signers["p384"]
    request_der = _query(tmp_path, "-sha384", "-cert").read_bytes()
    request = tsp.TimeStampReq.load(request_der)
    outcome = _respond(request_der, signer, serial=2**159 + 7)

    info = _tst_info(outcome.response_der)
    assert info["version"].native == "v1"
    assert info["serial_number"].native == 2**159 + 7
    assert info["nonce"].native == request["nonce"].native
    assert info["message_imprint"].dump() == request["message_imprint"].dump()
    assert info["gen_time"].dump().endswith(b"Z")
    assert b"." not in info["gen_time"].dump()
    assert (
        info["tsa"].chosen.native
        == asn1_x509.Name.load(signer.certificate.subject.public_bytes()).native
    )
    assert outcome.hash_name == "sha384"
    assert (
        outcome.message_imprint == request["message_imprint"]["hashed_message"].native
    )

    signed_data = TimeStampResp.load(outcome.response_der)["time_stamp_token"][
        "content"
    ]
    assert signed_data["version"].native == "v3"
    signer_info = signed_data["signer_infos"][0]
    assert signer_info["sid"].name == "issuer_and_serial_number"
    assert signer_info["digest_algorithm"]["algorithm"].native == "sha384"
    attributes = {a["type"].native: a["values"][0] for a in signer_info["signed_attrs"]}
    assert set(attributes) == {
        "content_type",
        "message_digest",
        "signing_certificate_v2",
    }
    ess = attributes["signing_certificate_v2"]["certs"][0]
    certificate_der = signer.certificate.public_bytes(serialization.Encoding.DER)
    assert ess["cert_hash"].native == hashlib.sha256(certificate_der).digest()
    assert (
        ess["issuer_serial"]["serial_number"].native == signer.certificate.serial_number
    )
    assert len(signed_data["certificates"]) == 2


def test_fractional_gen_time_when_accuracy_is_below_a_second(
    pki: Pki, tmp_path: Path
) -> None:
    signer = dataclasses.replace(
        pki.signers["p256"], accuracy=dt.timedelta(milliseconds=250)
    )
    request_der = _query(tmp_path, "-sha256").read_bytes()
    now = NOW.replace(microsecond=120_000)
    outcome = respond_timestamp(request_der, signer=signer, serial=1, now=now)

    info = _tst_info(outcome.response_der)
    assert info["gen_time"].dump().endswith(b".12Z")
    assert info["accuracy"].native == {"seconds": None, "millis": 250, "micros": None}
    assert outcome.gen_time == now


def test_pyhanko_validates_the_token(pki: Pki, tmp_path: Path) -> None:
    from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
    from pyhanko.sign.validation.status import TimestampSignatureStatus
    from pyhanko_certvalidator import ValidationContext

    def asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(
            certificate.public_bytes(serialization.Encoding.DER)
        )

    request_der = _query(tmp_path, "-sha256", "-cert").read_bytes()
    imprint = tsp.TimeStampReq.load(request_der)["message_imprint"][
        "hashed_message"
    ].native
    outcome = _respond(request_der, pki.signers["p256"])
    signed_data = TimeStampResp.load(outcome.response_der)["time_stamp_token"][
        "content"
    ]
    context = ValidationContext(
        trust_roots=[asn1(pki.root)],
        other_certs=[asn1(pki.issuing_ca)],
        allow_fetching=False,
    )

    def expected(hash_name: str) -> bytes:
        assert hash_name == "sha256"
        return imprint

    status = TimestampSignatureStatus(
        **asyncio.run(validate_tst_signed_data(signed_data, context, expected))
    )
    assert status.intact and status.valid and status.trusted
    assert status.timestamp == NOW

    tampered = TimestampSignatureStatus(
        **asyncio.run(
            validate_tst_signed_data(signed_data, context, lambda _: b"\0" * 32)
        )
    )
    assert not tampered.intact


def _request(
    *,
    hash_name: str = "sha256",
    digest: bytes | None = None,
    version: int = 1,
    policy: str | None = None,
    extensions: list[dict[str, object]] | None = None,
) -> bytes:
    size = {"sha1": 20, "md5": 16, "sha256": 32, "sha384": 48, "sha512": 64}[hash_name]
    algorithm: dict[str, object] = {"algorithm": hash_name}
    fields: dict[str, object] = {
        "version": version,
        "message_imprint": {
            "hash_algorithm": algorithm,
            "hashed_message": digest if digest is not None else b"\x5a" * size,
        },
        "nonce": 12345,
        "cert_req": True,
    }
    if policy is not None:
        fields["req_policy"] = policy
    if extensions is not None:
        fields["extensions"] = extensions
    return tsp.TimeStampReq(fields).dump()


SHA256_OID = bytes.fromhex("0609608648016503040201")
SHA256_WITH_NULL = SHA256_OID + b"\x05\x00"
SHA256_WITH_OCTET_STRING = SHA256_OID + b"\x04\x00"


@pytest.mark.parametrize(
    ("request_der", "failure"),
    [
        pytest.param(
            b"\x01\x02garbage", TimestampFailure.BAD_DATA_FORMAT, id="garbage"
        ),
        pytest.param(b"", TimestampFailure.BAD_DATA_FORMAT, id="empty"),
        pytest.param(_request()[:-5], TimestampFailure.BAD_DATA_FORMAT, id="truncated"),
        pytest.param(
            _request() + b"\x00", TimestampFailure.BAD_DATA_FORMAT, id="trailing-byte"
        ),
        pytest.param(
            _request(digest=b"\x01" * 31),
            TimestampFailure.BAD_DATA_FORMAT,
            id="short-digest",
        ),
        pytest.param(
            _request(hash_name="sha384", digest=b"\x01" * 32),
            TimestampFailure.BAD_DATA_FORMAT,
            id="sha384-with-32-bytes",
        ),
        pytest.param(
            _request(version=2), TimestampFailure.BAD_DATA_FORMAT, id="version-2"
        ),
        pytest.param(
            _request().replace(SHA256_WITH_NULL, SHA256_WITH_OCTET_STRING),
            TimestampFailure.BAD_DATA_FORMAT,
            id="hash-parameters-not-null",
        ),
        pytest.param(_request(hash_name="sha1"), TimestampFailure.BAD_ALG, id="sha1"),
        pytest.param(_request(hash_name="md5"), TimestampFailure.BAD_ALG, id="md5"),
        pytest.param(
            _request(policy="1.2.3.4"),
            TimestampFailure.UNACCEPTED_POLICY,
            id="foreign-policy",
        ),
        pytest.param(
            _request(
                extensions=[
                    {
                        "extn_id": "1.2.3.4.5",
                        "critical": False,
                        "extn_value": b"\x05\x00",
                    }
                ]
            ),
            TimestampFailure.UNACCEPTED_EXTENSION,
            id="extension",
        ),
        pytest.param(
            b"\x30" * (MAX_TIMESTAMP_REQUEST_SIZE + 1),
            TimestampFailure.BAD_REQUEST,
            id="oversized",
        ),
    ],
)
def test_hostile_request_gets_rejection(
    pki: Pki, request_der: bytes, failure: TimestampFailure
) -> None:
    outcome = _respond(request_der, pki.signers["p256"])

    assert outcome.status is TimestampStatus.REJECTION
    assert outcome.failure is failure
    assert outcome.serial is None and outcome.message_imprint is None
    assert outcome.reason and "\n" not in outcome.reason
    status = _status(outcome.response_der)
    assert status["status"].native == "rejection"
    assert status["fail_info"].native == {failure.value}
    assert status["status_string"].native == [outcome.reason]
    assert not TimeStampResp.load(outcome.response_der)["time_stamp_token"]


def test_policy_named_in_the_request_is_accepted(pki: Pki) -> None:
    outcome = _respond(
        _request(policy=ProjectOID.TIMESTAMP_POLICY.dotted_string), pki.signers["p256"]
    )
    assert outcome.status is TimestampStatus.GRANTED


def test_openssl_reads_rejections(pki: Pki, tmp_path: Path) -> None:
    request = _query(tmp_path, "-sha1", "-cert")
    outcome = _respond(request.read_bytes(), pki.signers["p256"])
    assert outcome.failure is TimestampFailure.BAD_ALG
    response = tmp_path / "resp.tsr"
    response.write_bytes(outcome.response_der)

    text = _openssl("ts", "-reply", "-in", response, "-text").stdout
    assert "Status: Rejected." in text
    assert "unrecognized or unsupported algorithm identifier" in text
    failure = tmp_path / "failure.tsr"
    failure.write_bytes(system_failure_response())
    text = _openssl("ts", "-reply", "-in", failure, "-text").stdout
    assert "the request cannot be handled due to system failure" in text


def test_every_truncation_is_rejected(pki: Pki, tmp_path: Path) -> None:
    request_der = _query(tmp_path, "-sha256", "-cert").read_bytes()
    for length in range(len(request_der)):
        outcome = _respond(request_der[:length], pki.signers["p256"])
        assert outcome.failure is TimestampFailure.BAD_DATA_FORMAT, length


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
@example(data=None)
def test_mutated_requests_never_escape_as_exceptions(
    pki: Pki, data: st.DataObject | None
) -> None:
    request_der = bytearray(_request())
    if data is not None:
        for _ in range(data.draw(st.integers(1, 4))):
            position = data.draw(st.integers(0, len(request_der) - 1))
            request_der[position] = data.draw(st.integers(0, 255))
    outcome = _respond(bytes(request_der), pki.signers["p256"])

    status = _status(outcome.response_der)
    assert status["status"].native == outcome.status.value
    if outcome.status is TimestampStatus.GRANTED:
        assert _tst_info(outcome.response_der)["serial_number"].native == 4242


@given(st.binary(max_size=512))
@example(b"\x30\x80\x00\x00")
@example(b"\x30\x84\xff\xff\xff\xff")
@example(b"\x30\x03\x02\x01\x01")
@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_random_bytes_are_rejected(pki: Pki, garbage: bytes) -> None:
    outcome = _respond(garbage, pki.signers["p256"])
    assert outcome.status is TimestampStatus.REJECTION
    assert _status(outcome.response_der)["status"].native == "rejection"


def _tsa_certificate(pki: Pki, key: object, **kwargs: object) -> x509.Certificate:
    return _certificate(
        "Bad TSA",
        key,
        issuer=pki.issuing_ca,
        issuer_key=pki.issuing_key,
        ca=False,
        **kwargs,  # type: ignore[arg-type]
    )


def test_signer_refuses_unsuitable_certificates(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cases = {
        "no EKU": _tsa_certificate(pki, key),
        "EKU not critical": _tsa_certificate(
            pki, key, eku=[ExtendedKeyUsageOID.TIME_STAMPING], eku_critical=False
        ),
        "extra EKU": _tsa_certificate(
            pki,
            key,
            eku=[ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.CODE_SIGNING],
        ),
        "other key": _tsa_certificate(
            pki,
            ec.generate_private_key(ec.SECP256R1()),
            eku=[ExtendedKeyUsageOID.TIME_STAMPING],
        ),
    }
    for certificate in cases.values():
        with pytest.raises(UnsuitableSigningCertificateError):
            TsaSigner(private_key=key, certificate=certificate)
    edwards_key = ed25519.Ed25519PrivateKey.generate()
    edwards_certificate = _tsa_certificate(
        pki, edwards_key, eku=[ExtendedKeyUsageOID.TIME_STAMPING]
    )
    with pytest.raises(UnsuitableSigningCertificateError, match="EC or RSA"):
        TsaSigner(private_key=edwards_key, certificate=edwards_certificate)


def test_caller_mistakes_raise(pki: Pki) -> None:
    signer = pki.signers["p256"]
    request_der = _request()
    with pytest.raises(ValueError, match="serial"):
        respond_timestamp(request_der, signer=signer, serial=0, now=NOW)
    with pytest.raises(ValueError, match="serial"):
        respond_timestamp(request_der, signer=signer, serial=2**160, now=NOW)
    with pytest.raises(ValueError, match="timezone"):
        respond_timestamp(
            request_der, signer=signer, serial=1, now=NOW.replace(tzinfo=None)
        )
    with pytest.raises(TypeError):
        respond_timestamp(
            "not bytes",  # type: ignore[arg-type]
            signer=signer,
            serial=1,
            now=NOW,
        )
    with pytest.raises(UnsuitableSigningCertificateError):
        respond_timestamp(
            request_der, signer=signer, serial=1, now=NOW + dt.timedelta(days=60)
        )
    with pytest.raises(ValueError, match="accepted_hashes"):
        dataclasses.replace(signer, accepted_hashes=frozenset({"sha1"}))


def test_signer_uses_only_sign_and_public_key(pki: Pki) -> None:
    """An HSM key handle has only sign() and public_key(); the TSA needs no more."""
    inner = ec.generate_private_key(ec.SECP256R1())

    key = sign_only_key(inner)
    signer = TsaSigner(
        private_key=key,
        certificate=_tsa_certificate(pki, key, eku=[ExtendedKeyUsageOID.TIME_STAMPING]),
    )
    outcome = _respond(_request(), signer)

    assert outcome.status is TimestampStatus.GRANTED
    signer_info = TimeStampResp.load(outcome.response_der)["time_stamp_token"][
        "content"
    ]["signer_infos"][0]
    signed_attributes = signer_info["signed_attrs"].untag().dump(force=True)
    assert signed_attributes[0] == 0x31
    inner.public_key().verify(
        signer_info["signature"].native, signed_attributes, ec.ECDSA(hashes.SHA256())
    )
