"""`yinxin verify pdf`: exit codes 0/1/2, the report a clerk reads, --json, --trust, and
verification without the HSM PIN or without an instance at all."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hsm_sim.errors import ErrorCategory
from tests.portal.conftest import SealWorld
from tests.portal.seal_checks import invoke, one_error_line, run_json

DEMO_AGENCY = "某某市市场监督管理局"


def self_signed_root(common_name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def sealed_files(
    seal_home: Path, seal_world: SealWorld, sample_pdf: bytes, tmp_path: Path
) -> dict[str, Path]:
    """A B-LT sealed notice, a tampered copy of it, and a file that is no PDF."""
    source = tmp_path / "notice.pdf"
    source.write_bytes(sample_pdf)
    sealed = tmp_path / "sealed.pdf"
    run_json(
        seal_home,
        "seal",
        "stamp",
        "--seal",
        seal_world.official.id,
        str(source),
        str(sealed),
        "--keyword",
        "盖章处",
    )
    data = bytearray(sealed.read_bytes())
    # A byte of the first page's text, well inside the signed range.
    position = data.index(b"stream", 200) + 20
    data[position] ^= 0x01
    tampered = tmp_path / "tampered.pdf"
    tampered.write_bytes(bytes(data))
    garbage = tmp_path / "notes.txt"
    garbage.write_text("these are not the seals you are looking for\n")
    root = tmp_path / "root.pem"
    run_json(seal_home, "ca", "export", "--name", "root", "--out", str(root))
    return {"sealed": sealed, "tampered": tampered, "garbage": garbage, "root": root}


def test_exit_codes_valid_invalid_unusable(
    seal_home: Path, sealed_files: dict[str, Path]
) -> None:
    for name, code in (("sealed", 0), ("tampered", 1), ("garbage", 2)):
        result = invoke(seal_home, "verify", "pdf", str(sealed_files[name]))
        assert result.exit_code == code, (name, result.output)
        as_json = invoke(seal_home, "verify", "pdf", str(sealed_files[name]), "--json")
        assert as_json.exit_code == code
        report = json.loads(as_json.stdout)
        assert report["valid"] is (code == 0)
        assert report["usable"] is (code != 2)
        assert report["exit_code"] == code
        assert isinstance(report["reason"], str) and report["reason"]


def test_json_report_names_the_seal(
    seal_home: Path, seal_world: SealWorld, sealed_files: dict[str, Path]
) -> None:
    report = run_json(seal_home, "verify", "pdf", str(sealed_files["sealed"]))
    assert report["reason"] == "the seal is valid"
    (signature,) = report["signatures"]
    assert signature["is_seal"] and signature["valid"]
    assert signature["seal"]["es_id"] == seal_world.official.es_id
    assert signature["seal"]["agency_uscc"] == seal_world.demo_uscc
    assert signature["signer"]["agency"] == DEMO_AGENCY
    assert signature["timestamp"]["valid"]
    assert signature["revocation"]["status"] == "good"
    assert signature["chain"]["trusted"]


def test_human_report_shows_every_check(
    seal_home: Path, seal_world: SealWorld, sealed_files: dict[str, Path]
) -> None:
    result = invoke(seal_home, "verify", "pdf", str(sealed_files["sealed"]))
    text = " ".join(result.stdout.split())  # as read, whatever the terminal's width
    for words in (
        "Seal 1 of 1",
        f"{DEMO_AGENCY} (单位印章), seal code {seal_world.official.es_id}",
        f"USCC {seal_world.demo_uscc}",
        "signed at",
        "timestamp",
        "intact, the signature verifies",
        "coverage",
        "changes after",
        "validation data (DSS)",
        "chain",
        "Yinxin Demo Regional Root CA",
        "revocation",
        "good at",
        "seal data",
        "maker's signature",
        "Bottom line: VALID — the seal is valid",
    ):
        assert words in text, words
    bad = invoke(seal_home, "verify", "pdf", str(sealed_files["tampered"]))
    assert "Bottom line: INVALID" in bad.stdout
    assert "altered" in bad.stdout or "digest" in bad.stdout
    unusable = invoke(seal_home, "verify", "pdf", str(sealed_files["garbage"]))
    assert (
        "Bottom line (unusable input): INVALID — not a readable PDF" in unusable.stdout
    )


def test_verifies_without_the_hsm_pin(
    seal_home: Path, sealed_files: dict[str, Path]
) -> None:
    (seal_home / "secrets" / "hsm-user.pin").unlink()
    locked = invoke(seal_home, "hsm", "keys")
    one_error_line(locked, ErrorCategory.UNAUTHORIZED)
    report = run_json(seal_home, "verify", "pdf", str(sealed_files["sealed"]))
    assert report["valid"], report["reason"]


def test_without_an_instance_trust_comes_from_files(
    sealed_files: dict[str, Path], tmp_path: Path, seal_home: Path
) -> None:
    nowhere = tmp_path / "no-instance"
    result = invoke(
        nowhere,
        "verify",
        "pdf",
        str(sealed_files["sealed"]),
        "--trust",
        str(sealed_files["root"]),
    )
    assert result.exit_code == 0, result.output
    refused = invoke(nowhere, "verify", "pdf", str(sealed_files["sealed"]))
    assert "--trust FILE" in one_error_line(refused, ErrorCategory.NOT_FOUND)

    # Another region's root is not enough.
    other = tmp_path / "other-root.pem"
    other.write_bytes(self_signed_root("Another Region Root CA"))
    untrusted = invoke(
        nowhere,
        "verify",
        "pdf",
        str(sealed_files["sealed"]),
        "--trust",
        str(other),
        "--json",
    )
    assert untrusted.exit_code == 1
    assert json.loads(untrusted.stdout)["signatures"][0]["chain"]["trusted"] is False

    not_a_certificate = tmp_path / "nonsense.pem"
    not_a_certificate.write_text(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    )
    bad = invoke(
        nowhere,
        "verify",
        "pdf",
        str(sealed_files["sealed"]),
        "--trust",
        str(not_a_certificate),
    )
    assert "holds no certificate" in one_error_line(bad, ErrorCategory.BAD_REQUEST)


def test_a_copied_file_verifies_the_same(
    seal_home: Path, sealed_files: dict[str, Path], tmp_path: Path
) -> None:
    copy = tmp_path / "copy of 盖章文件.pdf"
    shutil.copyfile(sealed_files["sealed"], copy)
    assert invoke(seal_home, "verify", "pdf", str(copy)).exit_code == 0
