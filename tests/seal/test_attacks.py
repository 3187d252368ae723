"""Acceptance 3: every attack class, built by our own generators (tests/seal/attacks.py)
from a document we sealed, is reported INVALID with a specific reason — and where
poppler's pdfsig calls the same file "Signature is Valid.", the test records that too.

pdfsig is run with -nocert (no NSS trust database): only its integrity verdict counts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import MDPPerm, SigFieldSpec
from pyhanko.stamp import TextStampStyle
from pyhanko_certvalidator.registry import SimpleCertificateStore

from hsm_sim.api import KeyUsage
from pki.ca_models import RevocationReason
from seal.sesdata import build_seal, parse_seal
from seal.stamping import At, Level, Stamper, StampRequest
from seal.trust_services import NodeRevocationSource
from seal.verify import PdfVerification, RevocationStatus, VerifyLimits, verify_pdf
from tests.conftest import require_tool
from tests.helpers.node import AGENCY_NAME
from tests.seal import attacks
from tests.seal.verify_fixtures import (  # noqa: F401 - fixtures used by name
    SEAL_CODE,
    agency_credential_fixture,
    agency_stamper_fixture,
    certify_with,
    make_credential,
    other_agency_credential_fixture,
    root_certificate_fixture,
    seal_maker_fixture,
    sealed_fixture,
)

PLACED = StampRequest(placements=(At(page=1, x_mm=150, y_mm=230),), level=Level.B_T)


@dataclasses.dataclass(frozen=True)
class PdfsigView:
    """pdfsig's verdict on the first signature of a file."""

    signature_valid: bool  # "Signature Validation: Signature is Valid."
    total_document: bool  # "Total document signed"
    text: str


def pdfsig_view(pdf: bytes, tmp_path: Path) -> PdfsigView:
    pdfsig = require_tool("pdfsig")
    path = tmp_path / "attacked.pdf"
    path.write_bytes(pdf)
    run = subprocess.run(
        [pdfsig, "-nocert", str(path)], capture_output=True, text=True, check=False
    )
    text = run.stdout + run.stderr
    first = re.split(r"Signature #2:", text)[0]
    return PdfsigView(
        signature_valid="Signature Validation: Signature is Valid." in first,
        total_document="Total document signed" in first,
        text=text,
    )


def assert_invalid(report: PdfVerification, keyword: str) -> None:
    assert report.usable, report.reason
    assert not report.valid
    assert report.exit_code == 1
    assert keyword in report.reason, report.reason
    assert "\n" not in report.reason


@dataclasses.dataclass(frozen=True)
class Attack:
    make: Callable[[bytes], bytes]
    reason: str  # a phrase our reason must contain
    pdfsig_fooled: bool  # pdfsig 22.12 says "Signature is Valid." for the seal


BYTE_ATTACKS = {
    "usf-byterange-zeroed": Attack(
        attacks.usf_byte_range_zeroed, "altered after sealing", False
    ),
    "usf-byterange-elsewhere": Attack(
        attacks.usf_byte_range_elsewhere, "altered after sealing", False
    ),
    "usf-byterange-null": Attack(
        attacks.usf_byte_range_null, "cannot be validated", False
    ),
    "usf-byterange-removed": Attack(
        attacks.usf_byte_range_removed, "cannot be read", False
    ),
    "usf-contents-zeroed": Attack(attacks.usf_contents_zeroed, "cannot be read", False),
    "usf-contents-null": Attack(attacks.usf_contents_null, "cannot be read", False),
    "usf-contents-removed": Attack(
        attacks.usf_contents_removed, "cannot be read", False
    ),
    "isa-page-content": Attack(attacks.isa_page_content, "changed after sealing", True),
    "isa-without-xref": Attack(
        attacks.isa_without_xref, "appended after the end of the document", True
    ),
    "isa-wrong-offsets": Attack(attacks.isa_wrong_offsets, "cannot be validated", True),
    "isa-free-object": Attack(attacks.isa_free_object, "damaged or ambiguous", True),
    "isa-startxref-into-signed-range": Attack(
        attacks.isa_startxref_into_signed_range,
        "appended after the end of the document",
        True,
    ),
    "hybrid-xref-update": Attack(
        attacks.hybrid_xref_update, "hybrid cross-reference", True
    ),
    "swa-objects-in-gap": Attack(
        attacks.swa_objects_in_gap, "does not cover its whole revision", True
    ),
    "byte-flip-in-signed-range": Attack(
        attacks.flip_signed_byte, "altered after sealing", False
    ),
}


@pytest.mark.parametrize(
    "level", [Level.B_B, Level.B_LTA], ids=lambda level: level.value
)
@pytest.mark.parametrize("name", BYTE_ATTACKS)
def test_byte_level_attacks_are_invalid(
    name, level, sealed, root_certificate, tmp_path
):
    attack = BYTE_ATTACKS[name]
    original = sealed(level)
    assert verify_pdf(original, trust_roots=[root_certificate]).valid
    attacked = attack.make(original)
    assert attacked != original

    assert_invalid(verify_pdf(attacked, trust_roots=[root_certificate]), attack.reason)
    assert pdfsig_view(attacked, tmp_path).signature_valid is attack.pdfsig_fooled


# -- shadow attacks: the attacker shapes the document before it is sealed -------------------------

SHADOW = {
    "hide": (attacks.shadow_hide_prepare, attacks.shadow_hide_attack),
    "replace": (attacks.shadow_replace_prepare, attacks.shadow_replace_attack),
    "hide-and-replace": (
        attacks.shadow_hide_and_replace_prepare,
        attacks.shadow_hide_and_replace_attack,
    ),
}


@pytest.mark.parametrize("name", SHADOW)
def test_shadow_attacks_are_invalid(
    name, agency_stamper, pdf_factory, root_certificate, tmp_path
):
    prepare, attack = SHADOW[name]
    shadowed = agency_stamper.stamp(prepare(pdf_factory(1)), PLACED)
    assert verify_pdf(
        shadowed, trust_roots=[root_certificate]
    ).valid  # sealing it was fine

    attacked = attack(shadowed)
    report = verify_pdf(attacked, trust_roots=[root_certificate])
    assert_invalid(report, "changed after sealing")
    (seal,) = report.signatures
    assert seal.modifications is not None and seal.modifications.level == "other"
    assert not seal.modifications.allowed
    view = pdfsig_view(attacked, tmp_path)
    assert view.signature_valid and not view.total_document


# -- certification attacks ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certified(agency_credential, services, pdf_factory) -> Callable[[MDPPerm], bytes]:
    made: dict[MDPPerm, bytes] = {}

    def at(permission: MDPPerm) -> bytes:
        if permission not in made:
            made[permission] = certify_with(
                agency_credential, services, pdf_factory(1), permission
            )
        return made[permission]

    return at


CERTIFICATION_ATTACKS = {
    "eaa-freetext": lambda pdf: attacks.eaa_annotation(pdf, "/FreeText"),
    "eaa-stamp": lambda pdf: attacks.eaa_annotation(pdf, "/Stamp"),
    "ssa-unsigned-field": attacks.ssa_unsigned_field,
}


@pytest.mark.parametrize("permission", list(MDPPerm), ids=lambda p: p.name.lower())
@pytest.mark.parametrize("name", CERTIFICATION_ATTACKS)
def test_certification_attacks_are_invalid(
    name, permission, certified, root_certificate, tmp_path
):
    document = certified(permission)
    report = verify_pdf(document, trust_roots=[root_certificate])
    assert report.valid, report.reason
    assert report.signatures[0].certification_permission is not None

    attacked = CERTIFICATION_ATTACKS[name](document)
    assert_invalid(
        verify_pdf(attacked, trust_roots=[root_certificate]), "changed after sealing"
    )
    assert pdfsig_view(attacked, tmp_path).signature_valid


def _attacker_signer() -> signers.SimpleSigner:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Attacker")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.KeyUsage(False, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    asn1_cert = asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))
    return signers.SimpleSigner(
        signing_cert=asn1_cert,
        signing_key=asn1_keys.PrivateKeyInfo.load(
            key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        ),
        cert_registry=SimpleCertificateStore.from_certs([asn1_cert]),
    )


def test_sneaky_signature_over_a_form_filling_certification_is_invalid(
    certified, root_certificate, tmp_path
):
    """SSA as published: on a P2 certification (signing allowed), a new signature whose
    appearance paints over the page. The difference analysis refuses the widget's
    appearance after a certification, and the attacker's own signature is untrusted."""
    writer = IncrementalPdfFileWriter(io.BytesIO(certified(MDPPerm.FILL_FORMS)))
    attacked = (
        signers.PdfSigner(
            signers.PdfSignatureMetadata(field_name="Sneaky"),
            signer=_attacker_signer(),
            stamp_style=TextStampStyle(stamp_text="PAID 1,000,000"),
            new_field_spec=SigFieldSpec("Sneaky", on_page=0, box=(50, 300, 550, 700)),
        )
        .sign_pdf(writer)
        .getvalue()
    )
    report = verify_pdf(attacked, trust_roots=[root_certificate])
    assert_invalid(report, "changed after sealing")
    certification, sneaky = report.signatures
    assert certification.modifications.level == "other"
    assert not sneaky.valid and not sneaky.is_seal
    assert "does not chain to a trusted root" in sneaky.reason
    assert pdfsig_view(attacked, tmp_path).signature_valid


# -- seal data and certificates ------------------------------------------------------------------


def test_seal_data_of_another_agency_is_invalid(
    node,
    seal_image,
    seal_maker,
    other_agency_credential,
    services,
    pdf_factory,
    root_certificate,
    tmp_path,
):
    foreign = seal_maker.seal_data(
        other_agency_credential.certificate,
        name="某某市生态环境局",
        code="35010000000092",
    )
    credential, _ = make_credential(
        node, "verify-wrong-seal-data", seal_image, lambda _: foreign
    )
    sealed_pdf = Stamper(credential, services=services).stamp(pdf_factory(1), PLACED)

    report = verify_pdf(sealed_pdf, trust_roots=[root_certificate])
    assert_invalid(report, "the seal belongs to 某某市生态环境局")
    (signature,) = report.signatures
    assert signature.seal is not None
    assert (
        signature.seal.agency == "某某市生态环境局"
        and signature.signer.agency == AGENCY_NAME
    )
    assert signature.seal.agency_uscc != signature.signer.agency_uscc
    assert (
        not signature.seal.agrees_with_certificate and not signature.seal.signer_listed
    )
    assert signature.intact and signature.chain.trusted  # everything else is fine
    view = pdfsig_view(sealed_pdf, tmp_path)
    assert view.signature_valid and view.total_document


def test_a_broken_maker_signature_is_invalid(
    node, seal_image, seal_maker, services, pdf_factory, root_certificate
):
    def broken(certificate):
        data = bytearray(
            seal_maker.seal_data(certificate, name=AGENCY_NAME, code=SEAL_CODE)
        )
        data[-1] ^= 0x01  # the last byte of the maker's signature value
        return bytes(data)

    credential, _ = make_credential(node, "verify-broken-maker", seal_image, broken)
    report = verify_pdf(
        Stamper(credential, services=services).stamp(pdf_factory(1), PLACED),
        trust_roots=[root_certificate],
    )
    assert_invalid(report, "seal maker's signature does not verify")
    assert report.signatures[0].seal.maker_signature_ok is False


def test_seal_data_not_made_by_a_seal_maker_is_invalid(
    node, seal_image, seal_maker, services, pdf_factory, root_certificate
):
    """Seal data signed by an agency's own seal key (a trusted certificate, but not a
    seal maker's) must not pass: any agency could otherwise name itself anything."""

    def self_made(certificate):
        key = node.keystore.private_key("verify-self-made", usage=KeyUsage.SEAL)
        genuine = parse_seal(
            seal_maker.seal_data(certificate, name=AGENCY_NAME, code=SEAL_CODE)
        )
        return build_seal(
            genuine.info,
            maker_certificate=certificate.public_bytes(Encoding.DER),
            sign=lambda data: key.sign(data, ec.ECDSA(hashes.SHA256())),
        )

    credential, _ = make_credential(node, "verify-self-made", seal_image, self_made)
    report = verify_pdf(
        Stamper(credential, services=services).stamp(pdf_factory(1), PLACED),
        trust_roots=[root_certificate],
    )
    assert_invalid(report, "not made by a seal maker")


def test_seal_data_outside_its_validity_is_invalid(
    node, seal_image, seal_maker, services, pdf_factory, root_certificate
):
    ended = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    credential, _ = make_credential(
        node,
        "verify-seal-data-ended",
        seal_image,
        lambda cert: seal_maker.seal_data(
            cert,
            name=AGENCY_NAME,
            code=SEAL_CODE,
            valid_start=ended - dt.timedelta(days=30),
            valid_end=ended,
        ),
    )
    report = verify_pdf(
        Stamper(credential, services=services).stamp(pdf_factory(1), PLACED),
        trust_roots=[root_certificate],
    )
    assert_invalid(report, "the seal was not valid at the signing time")
    assert report.signatures[0].seal.within_validity is False


def test_an_expired_seal_certificate_is_invalid(
    node, seal_image, seal_maker, services, pdf_factory, root_certificate, tmp_path
):
    credential, _ = make_credential(
        node,
        "verify-expired",
        seal_image,
        lambda cert: seal_maker.seal_data(cert, name=AGENCY_NAME, code=SEAL_CODE),
        validity=dt.timedelta(
            minutes=1
        ),  # issued 5 minutes back-dated: expired already
    )
    stamped = Stamper(credential, services=services).stamp(pdf_factory(1), PLACED)
    report = verify_pdf(stamped, trust_roots=[root_certificate])
    assert_invalid(report, "had expired")
    (signature,) = report.signatures
    assert (
        signature.timestamp is not None and signature.timestamp.valid
    )  # judged at the TSA's time
    assert signature.chain.validated_at == signature.timestamp.time
    assert pdfsig_view(stamped, tmp_path).signature_valid


def test_a_seal_certificate_revoked_before_signing_is_invalid(
    node, seal_image, seal_maker, services, pdf_factory, root_certificate, tmp_path
):
    credential, serial = make_credential(
        node,
        "verify-revoked",
        seal_image,
        lambda cert: seal_maker.seal_data(cert, name=AGENCY_NAME, code=SEAL_CODE),
    )
    node.revocation.revoke(serial, RevocationReason.KEY_COMPROMISE)
    stamped = Stamper(credential, services=services).stamp(pdf_factory(1), PLACED)

    offline = verify_pdf(stamped, trust_roots=[root_certificate])
    assert (
        offline.valid
    )  # nothing in the file says otherwise, and no online check was allowed
    assert offline.signatures[0].revocation.status is RevocationStatus.NOT_CHECKED
    strict = verify_pdf(
        stamped, trust_roots=[root_certificate], require_revocation=True
    )
    assert_invalid(strict, "could not be checked")

    online = verify_pdf(
        stamped,
        trust_roots=[root_certificate],
        revocation=NodeRevocationSource(node.revocation),
    )
    assert_invalid(online, "revoked before the signing time")
    revocation = online.signatures[0].revocation
    assert (
        revocation.status is RevocationStatus.REVOKED and revocation.source == "online"
    )
    assert pdfsig_view(stamped, tmp_path).signature_valid


def test_an_untrusted_root_is_invalid(sealed, tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Some Other Root")])
    now = dt.datetime.now(dt.UTC)
    other_root = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    report = verify_pdf(sealed(Level.B_LT), trust_roots=[other_root])
    assert_invalid(report, "does not chain to a trusted root")
    (signature,) = report.signatures
    assert signature.intact and signature.crypto_valid and not signature.chain.trusted


# -- acceptance 2: broken and hostile files end unusable or INVALID, within the budget --------------

BUDGET = VerifyLimits().time_budget_seconds
# The worker gets the interruption at the deadline; allow for the grace period.
WITHIN_BUDGET = BUDGET + 5


def verify_broken(pdf: bytes, root) -> PdfVerification:
    started = time.monotonic()
    report = verify_pdf(pdf, trust_roots=[root])
    elapsed = time.monotonic() - started
    assert elapsed < WITHIN_BUDGET, f"took {elapsed:.1f} s"
    assert not report.valid, report.reason
    assert report.exit_code in (1, 2)
    assert report.reason and "\n" not in report.reason
    return report


HOSTILE = {
    "deep-nesting": (attacks.deep_nesting, "no seals"),
    "huge-length": (attacks.huge_length, "no seals"),
    "xref-loop": (attacks.xref_loop, "loop"),
    "self-referencing-object-stream": (
        attacks.self_referencing_object_stream,
        "not a readable PDF",
    ),
    "huge-xref-subsection": (attacks.huge_xref_subsection, "not a readable PDF"),
    "zlib-bomb-content-stream": (attacks.zlib_bomb_content, "no seals"),
    "zlib-bomb-object-stream": (
        attacks.zlib_bomb_object_stream,
        "decodes to more data than allowed",
    ),
    "garbage": (lambda: bytes(range(256)) * 64, "not a readable PDF"),
    "empty": (lambda: b"", "not a readable PDF"),
    "header-only": (lambda: b"%PDF-1.7\n%%EOF\n", "not a readable PDF"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_classic_hostile_files_are_unusable(name, root_certificate):
    make, reason = HOSTILE[name]
    report = verify_broken(make(), root_certificate)
    assert not report.usable and report.exit_code == 2
    assert reason in report.reason, report.reason


HOSTILE_UPDATES = {
    "deep-nesting": (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
    "huge-length": (
        b"<< /Length 99999999999 >>\nstream\nq Q\nendstream",
        "cannot be validated",
    ),
    "zlib-bomb": (None, "changed after sealing"),
}


@pytest.mark.parametrize("name", HOSTILE_UPDATES)
def test_hostile_objects_appended_to_a_sealed_file_are_invalid(
    name, sealed, root_certificate
):
    body, reason = HOSTILE_UPDATES[name]
    if body is None:
        bomb = attacks.zlib_bomb_content()
        body = bomb[bomb.index(b"4 0 obj\n") + 8 : bomb.rindex(b"\nendobj")]
    report = verify_broken(
        attacks.hostile_update(sealed(Level.B_B), body), root_certificate
    )
    assert report.usable
    assert reason in report.reason, report.reason


def test_too_many_revisions_are_not_examined(sealed, root_certificate):
    report = verify_broken(
        attacks.many_revisions(sealed(Level.B_B), 300), root_certificate
    )
    assert "revisions, more than the 256 examined" in report.reason


def _padding(pdf: bytes) -> range:
    """The zero padding inside the seal's /Contents: no signature covers it and no
    reader interprets it, so flipping it changes nothing."""
    layout = attacks.locate_signature(pdf)
    start, end = layout.contents
    return range(start + 1 + layout.cms_hex_digits, end - 1)


MUTATION_SETTINGS = settings(
    max_examples=80,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@MUTATION_SETTINGS
@given(data=st.data())
def test_truncated_sealed_files_are_never_valid(data, sealed, root_certificate):
    original = sealed(Level.B_B)
    cut = data.draw(st.integers(min_value=0, max_value=len(original) - 1), label="cut")
    verify_broken(original[:cut], root_certificate)


@MUTATION_SETTINGS
@given(data=st.data())
def test_sealed_files_with_flipped_bytes_are_never_valid(
    data, sealed, root_certificate
):
    original = sealed(Level.B_B)
    padding = _padding(original)
    offsets = data.draw(
        st.lists(
            st.integers(min_value=0, max_value=len(original) - 1).filter(
                lambda i: i not in padding
            ),
            min_size=1,
            max_size=8,
            unique=True,
        ),
        label="offsets",
    )
    mutated = bytearray(original)
    for offset in offsets:
        mutated[offset] ^= data.draw(
            st.integers(min_value=1, max_value=255), label="xor"
        )
    verify_broken(bytes(mutated), root_certificate)


@MUTATION_SETTINGS
@given(data=st.data())
def test_sealed_files_with_deleted_spans_are_never_valid(
    data, sealed, root_certificate
):
    original = sealed(Level.B_B)
    start = data.draw(
        st.integers(min_value=0, max_value=len(original) - 1), label="start"
    )
    length = data.draw(st.integers(min_value=1, max_value=4096), label="length")
    verify_broken(original[:start] + original[start + length :], root_certificate)


@settings(max_examples=60, derandomize=True, deadline=None)
@given(garbage=st.binary(max_size=4096))
def test_random_bytes_are_unusable(garbage, root_certificate):
    report = verify_broken(b"%PDF-1.7\n" + garbage, root_certificate)
    assert not report.usable
