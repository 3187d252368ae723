"""Fixtures for the verification tests: agencies with real seal data, sealed documents.

The seal data here is what a region makes for an agency: GB/T 38540 SESeal listing the
agency's seal certificate, signed by the node's seal-maker key (the `seal-maker`
service credential from the ceremony). Key labels, agency names and credit codes are
this module's own, so the session-wide node can be shared with the stamping tests.

Test modules import the fixtures they use by name. pytest then defines each fixture
once per importing module, so a session fixture would run once per module: what must
exist once per node (keys, agencies) is remembered here, keyed by the node.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from collections.abc import Callable

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import MDPPerm, SigFieldSpec, SigSeedSubFilter

from hsm_sim.api import KeyUsage
from pki.ca_models import ServicePurpose
from pki.registry import register_agency
from pki.timestamping import service_credential
from pki.uscc import compute_uscc_check_character
from seal.image import SealImageSpec, SealKind, render_seal_png
from seal.sesdata import CertDigest, CertListType, SealInfo, SealPicture, build_seal
from seal.signer import HsmSigner
from seal.stamping import At, Level, SealCredential, Stamper, StampRequest
from seal.trust_services import CallableTimeStamper, TrustServices
from tests.helpers.node import AGENCY_NAME, AGENCY_USCC, Node

SEAL_CODE = "35010000000091"
OTHER_AGENCY_NAME = "某某市生态环境局"
OTHER_AGENCY_USCC = "11350100MB0009001" + compute_uscc_check_character(
    "11350100MB0009001"
)
OTHER_SEAL_CODE = "35010000000092"


def uscc_of(body: str) -> str:
    return body + compute_uscc_check_character(body)


_ONCE: dict[tuple[int, str], object] = {}


def once_per_node(node: Node, name: str, make: Callable[[], object]) -> object:
    """`make()` the first time for this node and `name`, the same object afterwards."""
    key = (id(node), name)
    if key not in _ONCE:
        _ONCE[key] = make()
    return _ONCE[key]


def _whole_seconds(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(microsecond=0)


@dataclasses.dataclass(frozen=True)
class SealMaker:
    """The node's seal maker: builds GB/T 38540 seal data for a seal certificate."""

    sign: Callable[[bytes], bytes]
    certificate_der: bytes

    def seal_data(
        self,
        certificate: x509.Certificate,
        *,
        name: str,
        code: str,
        valid_start: dt.datetime | None = None,
        valid_end: dt.datetime | None = None,
        by_digest: bool = False,
    ) -> bytes:
        now = _whole_seconds(dt.datetime.now(dt.UTC))
        der = certificate.public_bytes(Encoding.DER)
        if by_digest:
            digest = hashes.Hash(hashes.SM3())
            digest.update(der)
            listing: dict = {
                "cert_list_type": CertListType.DIGESTS,
                "cert_digests": (CertDigest("SM3", digest.finalize()),),
            }
        else:
            listing = {
                "cert_list_type": CertListType.CERTIFICATES,
                "certificates": (der,),
            }
        info = SealInfo(
            es_id=code,
            name=name,
            seal_type=1,
            vendor_id="YINXIN",
            created=now,
            valid_start=_whole_seconds(valid_start)
            if valid_start
            else now - dt.timedelta(days=1),
            valid_end=_whole_seconds(valid_end)
            if valid_end
            else now + dt.timedelta(days=700),
            picture=SealPicture("PNG", _seal_png(name, code), 42, 42),
            **listing,
        )
        return build_seal(info, maker_certificate=self.certificate_der, sign=self.sign)


_PNG_CACHE: dict[tuple[str, str], bytes] = {}


def _seal_png(name: str, code: str) -> bytes:
    key = (name, code)
    if key not in _PNG_CACHE:
        _PNG_CACHE[key] = render_seal_png(
            SealImageSpec(name=name, kind=SealKind.OFFICIAL, code=code), dpi=60
        )
    return _PNG_CACHE[key]


@pytest.fixture(scope="session", name="seal_maker")
def seal_maker_fixture(node: Node) -> SealMaker:
    label, certificate, _ = service_credential(node.ca, ServicePurpose.SEAL_MAKER)
    key = node.keystore.private_key(label, usage=KeyUsage.SEAL)
    return SealMaker(
        sign=lambda data: key.sign(data, ec.ECDSA(hashes.SHA256())),
        certificate_der=certificate.public_bytes(Encoding.DER),
    )


def new_seal_certificate(
    node: Node,
    key_label: str,
    *,
    uscc: str = AGENCY_USCC,
    validity: dt.timedelta | None = None,
) -> tuple[x509.Certificate, tuple[x509.Certificate, ...], str]:
    """A new seal key in the node's HSM and its certificate: (certificate, chain, serial)."""
    issued = node.ra.issue_with_new_key(
        profile_name="seal", key_label=key_label, agency_uscc=uscc, validity=validity
    )
    return (
        issued.certificate,
        tuple(node.ca.chain(node.ca.issuer(issued.issuer))),
        issued.serial,
    )


def make_credential(
    node: Node,
    key_label: str,
    image_pdf: bytes,
    seal_data: Callable[[x509.Certificate], bytes | None],
    *,
    uscc: str = AGENCY_USCC,
    validity: dt.timedelta | None = None,
) -> tuple[SealCredential, str]:
    """A stamping credential whose seal data is made for its certificate; and its serial."""
    certificate, chain, serial = new_seal_certificate(
        node, key_label, uscc=uscc, validity=validity
    )
    credential = SealCredential(
        key=node.keystore.private_key(key_label, usage=KeyUsage.SEAL),
        certificate=certificate,
        chain=chain,
        image_pdf=image_pdf,
        seal_data=seal_data(certificate),
        name=key_label,
    )
    return credential, serial


@pytest.fixture(scope="session", name="agency_credential")
def agency_credential_fixture(
    node: Node, seal_image: bytes, seal_maker: SealMaker
) -> SealCredential:
    def make() -> SealCredential:
        credential, _ = make_credential(
            node,
            "verify-seal-a",
            seal_image,
            lambda cert: seal_maker.seal_data(cert, name=AGENCY_NAME, code=SEAL_CODE),
        )
        return credential

    return once_per_node(node, "agency_credential", make)  # type: ignore[return-value]


@pytest.fixture(scope="session", name="agency_stamper")
def agency_stamper_fixture(
    agency_credential: SealCredential, services: TrustServices
) -> Stamper:
    return Stamper(agency_credential, services=services)


@pytest.fixture(scope="session", name="other_agency_credential")
def other_agency_credential_fixture(
    node: Node, seal_image: bytes, seal_maker: SealMaker
) -> SealCredential:
    def make() -> SealCredential:
        with node.sessions.begin() as session:
            register_agency(
                session, name=OTHER_AGENCY_NAME, uscc=OTHER_AGENCY_USCC, region="350100"
            )
        credential, _ = make_credential(
            node,
            "verify-seal-b",
            seal_image,
            lambda cert: seal_maker.seal_data(
                cert, name=OTHER_AGENCY_NAME, code=OTHER_SEAL_CODE
            ),
            uscc=OTHER_AGENCY_USCC,
        )
        return credential

    return once_per_node(node, "other_agency_credential", make)  # type: ignore[return-value]


@pytest.fixture(scope="session", name="other_agency_stamper")
def other_agency_stamper_fixture(
    other_agency_credential: SealCredential, services: TrustServices
) -> Stamper:
    return Stamper(other_agency_credential, services=services)


@pytest.fixture(scope="session", name="sealed")
def sealed_fixture(
    node: Node, agency_stamper: Stamper, pdf_factory: Callable[..., bytes]
) -> Callable[[Level], bytes]:
    """`sealed(level)`: one two-page document sealed at that PAdES level, made once."""
    document = pdf_factory(2)
    made: dict[Level, bytes] = once_per_node(node, "sealed", dict)  # type: ignore[assignment]

    def at(level: Level) -> bytes:
        if level not in made:
            request = StampRequest(
                placements=(At(page=1, x_mm=150, y_mm=230),), level=level
            )
            made[level] = agency_stamper.stamp(document, request)
        return made[level]

    return at


@pytest.fixture(scope="session", name="root_certificate")
def root_certificate_fixture(node: Node) -> x509.Certificate:
    return node.ca.issuer("root").certificate


def certify_with(
    credential: SealCredential,
    services: TrustServices,
    pdf: bytes,
    permission: MDPPerm,
    *,
    field_name: str = "Certification",
) -> bytes:
    """A visible certification seal with the given DocMDP permission, made with pyHanko
    directly (the stamper certifies with NO_CHANGES only), B-T."""
    signer = HsmSigner(
        key=credential.key,
        certificate=credential.certificate,
        chain=credential.chain,
        seal_data=credential.seal_data,
    )
    assert services.timestamp is not None
    pdf_signer = signers.PdfSigner(
        signers.PdfSignatureMetadata(
            field_name=field_name,
            md_algorithm=signer.digest_algorithm,
            subfilter=SigSeedSubFilter.PADES,
            certify=True,
            docmdp_permissions=permission,
        ),
        signer=signer,
        timestamper=CallableTimeStamper(services.timestamp),
        new_field_spec=SigFieldSpec(field_name, on_page=0, box=(380, 80, 500, 200)),
    )
    return pdf_signer.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf))).getvalue()


def asn1(certificate: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))
