"""seal.verify: genuine seals at every PAdES level verify with the right report fields;
co-seals, certification seals and the /Info stance; revocation at the signing time;
unusable input, limits and the wall-clock budget; the JSON the CLI prints; nothing of an
upload's certificates in the logs."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import logging
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from reportlab.pdfgen import canvas

from pki.ca_models import RevocationReason
from seal.stamping import At, Level, Stamper, StampRequest
from seal.trust_services import NodeRevocationSource
from seal.verify import (
    Change,
    Coverage,
    PdfVerification,
    RevocationStatus,
    SignatureKind,
    VerifyLimits,
    _run_with_deadline,
    verify_pdf,
)
from tests.helpers.node import AGENCY_NAME, AGENCY_USCC
from tests.seal import attacks
from tests.seal.verify_fixtures import (  # noqa: F401 - fixtures used by name
    OTHER_AGENCY_NAME,
    OTHER_AGENCY_USCC,
    OTHER_SEAL_CODE,
    SEAL_CODE,
    agency_credential_fixture,
    agency_stamper_fixture,
    make_credential,
    other_agency_credential_fixture,
    other_agency_stamper_fixture,
    root_certificate_fixture,
    seal_maker_fixture,
    sealed_fixture,
)

PLACED = At(page=1, x_mm=150, y_mm=230)


def _verify(pdf: bytes, root, **options) -> PdfVerification:
    return verify_pdf(pdf, trust_roots=[root], **options)


# -- genuine seals -----------------------------------------------------------------------------


@pytest.mark.parametrize("level", list(Level), ids=lambda level: level.value)
def test_a_genuine_seal_verifies_at_every_level(
    level, sealed, root_certificate, agency_credential
):
    pdf = sealed(level)
    report = _verify(pdf, root_certificate)

    assert report.valid and report.usable and report.exit_code == 0, report.reason
    assert report.reason.startswith("the seal is valid")
    assert report.sha256 == hashlib.sha256(pdf).hexdigest() and report.size == len(pdf)
    (seal,) = report.seals
    assert (
        seal.valid
        and seal.kind is SignatureKind.APPROVAL
        and seal.certification_permission is None
    )
    assert seal.intact and seal.crypto_valid

    data = seal.seal
    assert data is not None and data.valid, data
    assert (data.name, data.es_id, data.seal_type, data.seal_type_name) == (
        AGENCY_NAME,
        SEAL_CODE,
        1,
        "单位印章",
    )
    assert (data.agency, data.agency_uscc) == (AGENCY_NAME, AGENCY_USCC)
    assert data.maker_signature_ok and data.maker_trusted and data.within_validity
    assert data.signer_listed and data.agrees_with_certificate
    assert "Seal Maker" in data.maker

    signer = seal.signer
    assert (signer.agency, signer.agency_uscc) == (AGENCY_NAME, AGENCY_USCC)
    assert signer.serial == format(agency_credential.certificate.serial_number, "x")
    assert seal.signing_time is not None

    assert seal.chain.trusted
    assert (
        seal.chain.subjects[0] == agency_credential.certificate.subject.rfc4514_string()
    )
    assert "Seal CA" in seal.chain.subjects[1] and "Root CA" in seal.chain.subjects[-1]

    if level is Level.B_B:
        assert seal.timestamp is None
        assert seal.chain.validated_at == report.verified_at
    else:
        assert seal.timestamp.valid and "Timestamp Authority" in seal.timestamp.tsa
        assert seal.chain.validated_at == seal.timestamp.time
        assert abs(seal.timestamp.time - seal.signing_time) < dt.timedelta(minutes=1)

    if level.long_term:
        assert seal.coverage is Coverage.ENTIRE_REVISION
        assert (
            seal.revocation.status is RevocationStatus.GOOD
            and seal.revocation.source == "embedded"
        )
        assert seal.modifications.allowed and seal.modifications.level == "lta-updates"
        assert Change.VALIDATION_DATA_ADDED in seal.modifications.changes
        assert "revocation not checked" not in report.reason
    else:
        assert seal.coverage is Coverage.ENTIRE_FILE
        assert seal.revocation.status is RevocationStatus.NOT_CHECKED
        assert seal.modifications.changes == () and seal.modifications.level == "none"
        assert "revocation not checked for 1" in report.reason

    if level is Level.B_LTA:
        seal_report, stamp_report = report.signatures
        assert (
            stamp_report.kind is SignatureKind.DOCUMENT_TIMESTAMP and stamp_report.valid
        )
        assert not stamp_report.is_seal and stamp_report.timestamp.valid
        assert (
            stamp_report.chain.trusted
            and "Timestamp Authority" in stamp_report.chain.subjects[0]
        )
        assert stamp_report.revocation.status is RevocationStatus.GOOD
        assert Change.DOCUMENT_TIMESTAMP_ADDED in seal_report.modifications.changes
    else:
        assert len(report.signatures) == 1


def test_the_json_report_has_the_bottom_line_and_every_signature(
    sealed, root_certificate
):
    report = _verify(sealed(Level.B_LTA), root_certificate)
    printed = json.loads(report.to_json())
    assert (
        printed["valid"] is True
        and printed["usable"] is True
        and printed["exit_code"] == 0
    )
    assert printed["reason"] == report.reason
    assert [s["kind"] for s in printed["signatures"]] == [
        "approval",
        "document-timestamp",
    ]
    seal = printed["signatures"][0]
    assert seal["is_seal"] is True and seal["valid"] is True
    assert (
        seal["seal"]["agency_uscc"] == AGENCY_USCC
        and seal["signer"]["agency"] == AGENCY_NAME
    )
    assert (
        seal["revocation"]["status"] == "good" and seal["coverage"] == "entire-revision"
    )
    assert dt.datetime.fromisoformat(seal["timestamp"]["time"]).tzinfo is not None


def test_online_revocation_checks_use_the_given_source(sealed, root_certificate, node):
    report = _verify(
        sealed(Level.B_T),
        root_certificate,
        revocation=NodeRevocationSource(node.revocation),
    )
    assert report.valid and report.reason == "the seal is valid"
    revocation = report.signatures[0].revocation
    assert revocation.status is RevocationStatus.GOOD and revocation.source == "online"


def test_a_seal_data_digest_list_binds_the_certificate(
    node, seal_image, seal_maker, services, pdf_factory, root_certificate
):
    credential, _ = make_credential(
        node,
        "verify-digest-list",
        seal_image,
        lambda cert: seal_maker.seal_data(
            cert, name=AGENCY_NAME, code=SEAL_CODE, by_digest=True
        ),
    )
    pdf = Stamper(credential, services=services).stamp(
        pdf_factory(1), StampRequest(level=Level.B_B)
    )
    report = _verify(pdf, root_certificate)
    assert report.valid, report.reason
    seal = report.signatures[0].seal
    assert (
        seal.signer_listed
        and seal.agrees_with_certificate
        and seal.agency_uscc == AGENCY_USCC
    )


# -- several seals, certification ---------------------------------------------------------------------


def test_co_sealing_by_two_agencies_keeps_both_seals_valid(
    agency_stamper, other_agency_stamper, pdf_factory, root_certificate
):
    first = agency_stamper.stamp(pdf_factory(2), StampRequest(placements=(PLACED,)))
    both = other_agency_stamper.stamp(
        first, StampRequest(placements=(At(page=2, x_mm=60, y_mm=230),))
    )
    report = _verify(both, root_certificate)

    assert report.valid and report.reason == "all 2 seals valid", report.reason
    first_seal, second_seal = report.seals
    assert (first_seal.seal.agency, first_seal.seal.agency_uscc) == (
        AGENCY_NAME,
        AGENCY_USCC,
    )
    assert (second_seal.seal.agency, second_seal.seal.agency_uscc) == (
        OTHER_AGENCY_NAME,
        OTHER_AGENCY_USCC,
    )
    assert second_seal.seal.es_id == OTHER_SEAL_CODE
    assert (
        Change.SIGNATURE_ADDED in first_seal.modifications.changes
        and first_seal.modifications.allowed
    )
    assert (
        first_seal.modifications.level == "form-filling"
    )  # pyHanko's level for a new signature field
    assert second_seal.revocation.status is RevocationStatus.GOOD


@pytest.mark.parametrize(
    "level", [Level.B_T, Level.B_LTA], ids=lambda level: level.value
)
def test_a_certification_seal_verifies(
    level, agency_stamper, pdf_factory, root_certificate
):
    pdf = agency_stamper.stamp(
        pdf_factory(1), StampRequest(placements=(PLACED,), certify=True, level=level)
    )
    report = _verify(pdf, root_certificate)
    assert report.valid, report.reason
    seal = report.seals[0]
    assert (
        seal.kind is SignatureKind.CERTIFICATION
        and seal.certification_permission == "no-changes"
    )


# -- the /Info stance and the end of the file -----------------------------------------------------------


def test_an_info_only_update_is_reported_but_does_not_invalidate(
    sealed, root_certificate
):
    """pyHanko accepts an update touching only /Info (LTA_UPDATES). So do we: title,
    author and producer are not what a seal vouches for, and nothing the reader shows
    on the page can change that way. The report names the change."""
    updated = attacks.info_only_update(sealed(Level.B_B))
    report = _verify(updated, root_certificate)
    assert report.valid, report.reason
    seal = report.signatures[0]
    assert seal.coverage is Coverage.ENTIRE_REVISION
    assert seal.modifications.changes == (Change.DOCUMENT_INFO_CHANGED,)
    assert seal.modifications.level == "lta-updates" and seal.modifications.allowed
    assert "document properties" in seal.modifications.explanation


def test_whitespace_after_the_last_eof_is_harmless(sealed, root_certificate):
    report = _verify(sealed(Level.B_B) + b"\r\n\n", root_certificate)
    assert report.valid, report.reason


# -- revocation at the signing time --------------------------------------------------------------------


@pytest.fixture
def revoke_after_sealing(node, seal_image, seal_maker, services, pdf_factory):
    """Seal at `level` with a fresh certificate, then revoke that certificate."""

    def seal_then_revoke(label: str, level: Level) -> bytes:
        credential, serial = make_credential(
            node,
            label,
            seal_image,
            lambda cert: seal_maker.seal_data(cert, name=AGENCY_NAME, code=SEAL_CODE),
        )
        pdf = Stamper(credential, services=services).stamp(
            pdf_factory(1), StampRequest(level=level)
        )
        time.sleep(
            1.1
        )  # the revocation time must come after the timestamp (whole seconds)
        node.revocation.revoke(serial, RevocationReason.KEY_COMPROMISE)
        return pdf

    return seal_then_revoke


def test_a_timestamped_seal_stays_valid_when_revoked_later(
    revoke_after_sealing, node, root_certificate
):
    pdf = revoke_after_sealing("verify-revoked-later-bt", Level.B_T)
    report = _verify(
        pdf, root_certificate, revocation=NodeRevocationSource(node.revocation)
    )
    assert report.valid, report.reason
    assert report.signatures[0].revocation.status is RevocationStatus.GOOD


def test_an_untimestamped_seal_fails_once_revoked(
    revoke_after_sealing, node, root_certificate
):
    """Without a timestamp nothing proves the seal predates the revocation."""
    pdf = revoke_after_sealing("verify-revoked-later-bb", Level.B_B)
    report = _verify(
        pdf, root_certificate, revocation=NodeRevocationSource(node.revocation)
    )
    assert (
        not report.valid
        and "no timestamp proves the seal was made before" in report.reason
    )


def test_a_b_lt_seal_verifies_offline_after_revocation(
    revoke_after_sealing, root_certificate
):
    pdf = revoke_after_sealing("verify-revoked-later-blt", Level.B_LT)
    report = _verify(pdf, root_certificate)
    assert report.valid, report.reason
    assert report.signatures[0].revocation.source == "embedded"


def test_a_timestamp_keeps_a_seal_valid_after_its_certificate_expires(
    sealed, root_certificate
):
    three_years_on = dt.datetime.now(dt.UTC) + dt.timedelta(days=3 * 365)
    untimestamped = _verify(sealed(Level.B_B), root_certificate, now=three_years_on)
    assert not untimestamped.valid and "had expired" in untimestamped.reason
    for level in (Level.B_T, Level.B_LT):
        report = _verify(sealed(level), root_certificate, now=three_years_on)
        assert report.valid, report.reason


# -- not seals, not PDFs --------------------------------------------------------------------------------


def test_a_signature_without_seal_data_is_not_a_seal(
    node, seal_image, services, pdf_factory, root_certificate
):
    credential, _ = make_credential(
        node, "verify-no-seal-data", seal_image, lambda cert: None
    )
    pdf = Stamper(credential, services=services).stamp(
        pdf_factory(1), StampRequest(level=Level.B_B)
    )
    report = _verify(pdf, root_certificate)
    assert not report.valid and report.usable and report.exit_code == 1
    assert report.reason == "the document carries signatures but no official seal"
    (signature,) = report.signatures
    assert signature.valid and not signature.is_seal and signature.seal is None


def test_seal_data_made_elsewhere_does_not_pass(stamper, pdf_factory, root_certificate):
    """The shared stamping fixture carries ofdrw's GB/T 38540 test seal: a real seal,
    but not made by this region's seal maker and not listing our certificate."""
    report = _verify(
        stamper.stamp(pdf_factory(1), StampRequest(level=Level.B_B)), root_certificate
    )
    assert not report.valid
    assert "seal data:" in report.reason
    assert report.signatures[0].seal.name == "OFD R&W 测试用印章"


def test_a_document_without_signatures_is_unusable(pdf_factory, root_certificate):
    report = _verify(pdf_factory(1), root_certificate)
    assert not report.usable and report.exit_code == 2
    assert report.reason == "the document carries no seals or signatures"


def test_an_encrypted_document_is_unusable(root_certificate):
    buffer = io.BytesIO()
    document = canvas.Canvas(buffer, encrypt="secret")
    document.drawString(72, 720, "encrypted")
    document.save()
    report = _verify(buffer.getvalue(), root_certificate)
    assert not report.usable and "encrypted" in report.reason


def test_files_over_the_size_limit_are_not_read(sealed, root_certificate):
    report = _verify(
        sealed(Level.B_B),
        root_certificate,
        limits=VerifyLimits(max_input_bytes=1024 * 1024 // 16),
    )
    assert not report.usable and "larger than" in report.reason


def test_too_many_signatures_are_not_examined(
    agency_stamper, other_agency_stamper, pdf_factory, root_certificate
):
    both = other_agency_stamper.stamp(
        agency_stamper.stamp(pdf_factory(1), StampRequest(level=Level.B_B)),
        StampRequest(level=Level.B_B),
    )
    report = _verify(both, root_certificate, limits=VerifyLimits(max_signatures=1))
    assert (
        not report.valid and "2 signatures, more than the 1 examined" in report.reason
    )


# -- the wall-clock budget ---------------------------------------------------------------------------------


def test_verification_over_budget_is_invalid(sealed, root_certificate):
    report = _verify(
        sealed(Level.B_LTA),
        root_certificate,
        limits=VerifyLimits(time_budget_seconds=0.001),
    )
    assert not report.valid and report.usable and report.exit_code == 1
    assert "verification took too long" in report.reason


def test_the_deadline_interrupts_a_busy_worker():
    worker: list[threading.Thread] = []

    def spin() -> None:
        worker.append(threading.current_thread())
        while True:
            pass

    assert _run_with_deadline(spin, 0.2) is None
    worker[0].join(5)
    assert not worker[0].is_alive()


def test_the_deadline_passes_results_and_programming_errors_through():
    assert _run_with_deadline(lambda: 42, 5) == 42
    with pytest.raises(ZeroDivisionError):
        _run_with_deadline(lambda: 1 / 0, 5)


# -- wrong arguments are programming errors -------------------------------------------------------------------


def test_wrong_arguments_raise(root_certificate):
    with pytest.raises(TypeError, match="bytes"):
        verify_pdf("not bytes", trust_roots=[root_certificate])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="trust root"):
        verify_pdf(b"%PDF", trust_roots=[])
    with pytest.raises(TypeError, match="certificate"):
        verify_pdf(b"%PDF", trust_roots=[root_certificate.public_bytes(Encoding.DER)])
    with pytest.raises(ValueError, match="aware"):
        verify_pdf(b"%PDF", trust_roots=[root_certificate], now=dt.datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="positive"):
        VerifyLimits(time_budget_seconds=0)


# -- what pyHanko may log while it reads an upload ------------------------------------------------------------


def _stranger_root() -> x509.Certificate:
    """A self-signed root no seal chains to: every chain fails, and pyHanko logs why."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Stranger Root")])
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def test_no_certificate_subject_or_traceback_of_an_upload_is_logged(
    sealed, agency_credential, caplog
):
    # Subjects name people (a legal representative's seal) and carry text an attacker
    # chose, newlines included, which would forge log lines.
    caplog.set_level(logging.DEBUG)
    report = _verify(sealed(Level.B_LT), _stranger_root())
    assert not report.valid
    subject = agency_credential.certificate.subject
    names = [attribute.value for attribute in subject]
    assert names and not any(str(name) in caplog.text for name in names)
    assert "Traceback" not in caplog.text
    assert not any(record.exc_info for record in caplog.records)
