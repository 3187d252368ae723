"""The HSM-backed pyHanko signer: every key type the seal profile allows signs PAdES
that pyHanko trusts, each signature is audit-logged with the document digest, the
seal data rides as a signed attribute, and refusals come from the key store."""

from __future__ import annotations

import asyncio
import hashlib
import io

import pytest
from asn1crypto import cms
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import select

from hsm_sim.api import AuditResult, KeyAlgorithm
from hsm_sim.audit import AuditEntry
from hsm_sim.errors import ErrorCategory, HsmError
from seal.signer import SEAL_DATA_ATTRIBUTE_OID, HsmSigner
from seal.stamping import Level, SealCredential, Stamper, StampRequest, stamp_pdf
from tests.helpers.node import AGENCY_USCC, DESTROY_KEY, GENERATE_KEY, Node
from tests.seal.conftest import issue_credential, validate_all

B_B = StampRequest(level=Level.B_B)


def _signed_attributes(pdf: bytes) -> list[cms.CMSAttributes]:
    reader = PdfFileReader(io.BytesIO(pdf))
    return [s.signer_info["signed_attrs"] for s in reader.embedded_regular_signatures]


def _attribute(attributes: cms.CMSAttributes, oid: str) -> list[bytes]:
    return [a["values"][0].native for a in attributes if a["type"].dotted == oid]


def _audit_entries(node: Node, key_label: str) -> list[AuditEntry]:
    with node.sessions() as session:
        return list(
            session.scalars(
                select(AuditEntry)
                .where(AuditEntry.key_label == key_label)
                .order_by(AuditEntry.seq)
            )
        )


@pytest.mark.parametrize(
    ("algorithm", "rsa_pss", "mechanism"),
    [
        (KeyAlgorithm.EC_P256, False, "sha256_ecdsa"),
        (KeyAlgorithm.EC_P384, False, "sha384_ecdsa"),
        (KeyAlgorithm.RSA_2048, False, "sha256_rsa"),
        (KeyAlgorithm.RSA_2048, True, "rsassa_pss"),
        (KeyAlgorithm.ED25519, False, "ed25519"),
    ],
    ids=["p256", "p384", "rsa-pkcs1", "rsa-pss", "ed25519"],
)
def test_every_seal_key_type_makes_a_trusted_signature(
    node, seal_image, pdf_factory, trust_root, algorithm, rsa_pss, mechanism
):
    label = f"seal-signer-{algorithm.value}-{'pss' if rsa_pss else 'plain'}"
    credential = issue_credential(
        node,
        key_label=label,
        agency_uscc=AGENCY_USCC,
        image_pdf=seal_image,
        seal_data=b"\x04\x03seal",
        algorithm=algorithm,
        rsa_pss=rsa_pss,
    )
    sealed = stamp_pdf(pdf_factory(), B_B, credential=credential, actor="signer-test")

    (status,) = validate_all(sealed, trust_root)
    assert status.bottom_line, status.pretty_print_details()
    assert (
        status.md_algorithm
        == HsmSigner(
            key=credential.key, certificate=credential.certificate
        ).digest_algorithm
    )
    assert status.pkcs7_signature_mechanism == mechanism


def test_each_signature_is_audit_logged_with_actor_and_document_digest(
    node, stamper, credential, pdf_factory
):
    before = _audit_entries(node, credential.key.label)
    sealed = stamper.stamp(pdf_factory(), B_B, actor="clerk-zhang")
    after = _audit_entries(node, credential.key.label)

    (entry,) = after[len(before) :]
    assert entry.result is AuditResult.GRANTED
    assert entry.actor == "clerk-zhang"
    reader = PdfFileReader(io.BytesIO(sealed))
    (signature,) = reader.embedded_regular_signatures
    start, length, resume, rest = signature.sig_object["/ByteRange"]
    signed_bytes = sealed[start : start + length] + sealed[resume : resume + rest]
    assert (
        entry.operation
        == f"stamp pdf-sha256:{hashlib.sha256(signed_bytes).hexdigest()}"
    )
    (attributes,) = _signed_attributes(sealed)
    # The signature covers the attributes encoded as a SET OF, not as the [0] field.
    signed_der = b"\x31" + attributes.dump()[1:]
    assert entry.data_sha256 == hashlib.sha256(signed_der).hexdigest()


def test_size_estimate_never_reaches_the_key_store(node, credential):
    signer = HsmSigner(
        key=credential.key, certificate=credential.certificate, chain=credential.chain
    )
    before = node.granted_signatures(credential.key.label)
    estimate = asyncio.run(
        signer.async_sign(bytes(32), "sha256", dry_run=True, use_pades=True)
    )
    assert len(estimate.dump()) > 500
    assert node.granted_signatures(credential.key.label) == before


def test_seal_data_is_a_signed_attribute_equal_to_the_input(
    stamper, credential, pdf_factory, seal_data
):
    sealed = stamper.stamp(pdf_factory(), B_B)
    (attributes,) = _signed_attributes(sealed)
    assert _attribute(attributes, SEAL_DATA_ATTRIBUTE_OID) == [seal_data]
    assert SEAL_DATA_ATTRIBUTE_OID == "1.3.6.1.4.1.32473.1.3.1"


def test_without_seal_data_no_attribute_is_added(credential, pdf_factory, trust_root):
    bare = SealCredential(**{**credential.__dict__, "seal_data": None})
    sealed = Stamper(bare).stamp(pdf_factory(), B_B)
    (attributes,) = _signed_attributes(sealed)
    assert _attribute(attributes, SEAL_DATA_ATTRIBUTE_OID) == []
    assert {a["type"].native for a in attributes} == {
        "content_type",
        "message_digest",
        "signing_certificate_v2",
    }
    assert validate_all(sealed, trust_root)[0].bottom_line


def test_a_destroyed_key_is_refused_by_the_key_store_and_nothing_is_signed(
    node, seal_image, pdf_factory
):
    credential = issue_credential(
        node,
        key_label="seal-signer-destroyed",
        agency_uscc=AGENCY_USCC,
        image_pdf=seal_image,
        seal_data=None,
    )
    stamper = Stamper(credential)
    node.keystore.destroy_key(credential.key.label)
    with pytest.raises(HsmError) as refused:
        stamper.stamp(pdf_factory(), B_B)
    assert refused.value.category is ErrorCategory.NOT_FOUND
    assert node.granted_signatures(credential.key.label) == 0
    # The key's whole life on record: made, destroyed, then the stamp refused.
    made, destroyed, stamp = node.audit_trail(key_label=credential.key.label)
    assert (made[0], made[2]) == (GENERATE_KEY, AuditResult.GRANTED)
    assert (destroyed[0], destroyed[2]) == (DESTROY_KEY, AuditResult.GRANTED)
    assert stamp[0].startswith("stamp pdf-sha256:")
    assert stamp[2] is AuditResult.REFUSED


def test_key_and_certificate_must_match(node, credential):
    other = node.ca.issuer("seal-ca").certificate
    with pytest.raises(ValueError, match="does not belong"):
        HsmSigner(key=credential.key, certificate=other)
    with pytest.raises(TypeError, match="key-store handle"):
        HsmSigner(key=object(), certificate=credential.certificate)  # type: ignore[arg-type]
