"""Shared seal fixtures: a region node with a seal certificate, its seal image, sample PDFs.

One node per test session (building it takes under a second, but its key store, audit
log and CA are shared by every seal test): the agency's seal key lives in its soft
HSM, the certificate comes from its seal CA, timestamps and revocation data from its
own TSA and OCSP/CRL services, called in process.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.serialization import Encoding
from PIL import Image
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import PdfSignatureStatus
from pyhanko_certvalidator import ValidationContext
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from hsm_sim.api import KeyAlgorithm, KeyUsage
from seal.fonts import SealFont, SealFontUnavailableError, load_seal_font
from seal.image import SealImageSpec, SealKind, render_seal_pdf
from seal.stamping import SealCredential, Stamper
from seal.trust_services import TrustServices, node_trust_services
from tests.conftest import SHARED, require, require_tool
from tests.helpers.node import AGENCY_NAME, AGENCY_USCC, Node, build_node

SEAL_KEY_LABEL = "seal-official-1"
SEAL_CODE = "3501000000001"
KEYWORD = "盖章处"
# A real GB/T 38540 seal (shared/vectors/ses): the stamper carries it byte for byte.
SEAL_DATA_VECTOR = SHARED / "vectors" / "ses" / "UserV4.esl"
SEAL_DIAMETER_MM = 42.0


@pytest.fixture(scope="session")
def seal_font() -> SealFont:
    try:
        return load_seal_font()
    except SealFontUnavailableError as exc:
        require(False, f"no CJK TrueType font for seals and sample documents: {exc}")
        raise


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = build_node(tmp_path_factory.mktemp("seal-node") / "node")
    yield node
    node.close()


@pytest.fixture(scope="session")
def seal_data() -> bytes:
    require(SEAL_DATA_VECTOR.is_file(), f"{SEAL_DATA_VECTOR} is missing")
    return SEAL_DATA_VECTOR.read_bytes()


@pytest.fixture(scope="session")
def seal_image(seal_font: SealFont) -> bytes:
    return render_seal_pdf(
        SealImageSpec(name=AGENCY_NAME, kind=SealKind.OFFICIAL, code=SEAL_CODE)
    )


def issue_credential(
    node: Node,
    *,
    key_label: str,
    agency_uscc: str,
    image_pdf: bytes,
    seal_data: bytes | None,
    algorithm: KeyAlgorithm | None = None,
    rsa_pss: bool = False,
) -> SealCredential:
    """A new seal key in the node's HSM, its seal certificate, as a stamping credential."""
    issued = node.ra.issue_with_new_key(
        profile_name="seal",
        key_label=key_label,
        agency_uscc=agency_uscc,
        algorithm=algorithm,
    )
    return SealCredential(
        key=node.keystore.private_key(key_label, usage=KeyUsage.SEAL),
        certificate=issued.certificate,
        chain=tuple(node.ca.chain(node.ca.issuer(issued.issuer))),
        image_pdf=image_pdf,
        seal_data=seal_data,
        name=key_label,
        rsa_pss=rsa_pss,
    )


@pytest.fixture(scope="session")
def credential(node: Node, seal_image: bytes, seal_data: bytes) -> SealCredential:
    return issue_credential(
        node,
        key_label=SEAL_KEY_LABEL,
        agency_uscc=AGENCY_USCC,
        image_pdf=seal_image,
        seal_data=seal_data,
    )


@pytest.fixture(scope="session")
def services(node: Node) -> TrustServices:
    return node_trust_services(node.timestamps, node.revocation)


@pytest.fixture(scope="session")
def stamper(credential: SealCredential, services: TrustServices) -> Stamper:
    return Stamper(credential, services=services)


@pytest.fixture(scope="session")
def trust_root(node: Node) -> asn1_x509.Certificate:
    root = node.ca.issuer("root").certificate
    return asn1_x509.Certificate.load(root.public_bytes(Encoding.DER))


# -- sample documents ---------------------------------------------------------------


def make_pdf(
    font: SealFont,
    pages: int = 1,
    *,
    keyword_at: dict[int, list[tuple[float, float]]] | None = None,
    pagesize: tuple[float, float] = A4,
) -> bytes:
    """A reportlab document with CJK text; `keyword_at` puts 盖章处 at (x, y) points on
    the given 0-based pages (positions in user space, text starting at x on baseline y)."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=pagesize)
    for index in range(pages):
        pdf.setFont(font.reportlab_name, 14)
        pdf.drawString(
            72, pagesize[1] - 90, f"关于印发示范文件的通知（第{index + 1}页）"
        )
        pdf.drawString(
            72, pagesize[1] - 120, "各区县人民政府，市直各部门：现将有关事项通知如下。"
        )
        for x, y in (keyword_at or {}).get(index, []):
            pdf.drawString(x, y, KEYWORD)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


@pytest.fixture(scope="session")
def pdf_factory(seal_font: SealFont) -> Callable[..., bytes]:
    def factory(pages: int = 1, **kwargs: object) -> bytes:
        return make_pdf(seal_font, pages, **kwargs)  # type: ignore[arg-type]

    return factory


# -- checking the output --------------------------------------------------------------


def validate_all(
    pdf: bytes, trust_root: asn1_x509.Certificate
) -> list[PdfSignatureStatus]:
    """pyHanko's verdict on every signature (not document timestamps), in file order."""
    reader = PdfFileReader(io.BytesIO(pdf))
    context = ValidationContext(trust_roots=[trust_root])
    return [
        validate_pdf_signature(signature, context)
        for signature in reader.embedded_regular_signatures
    ]


def render_page(pdf: bytes, page: int, tmp_path: Path, dpi: int = 50) -> Image.Image:
    """Page `page` (1-based) rendered by poppler's pdftoppm."""
    pdftoppm = require_tool("pdftoppm")
    source = tmp_path / f"render-{page}.pdf"
    source.write_bytes(pdf)
    prefix = tmp_path / f"render-{page}"
    subprocess.run(
        [
            pdftoppm,
            "-r",
            str(dpi),
            "-f",
            str(page),
            "-l",
            str(page),
            "-singlefile",
            "-png",
            str(source),
            str(prefix),
        ],
        check=True,
        capture_output=True,
    )
    return Image.open(f"{prefix}.png").convert("RGB")


def is_seal_red(pixel: tuple[int, int, int]) -> bool:
    r, g, b = pixel
    return r > 150 and g < 110 and b < 110


def pixels(image: Image.Image) -> list[tuple[int, int, int]]:
    data = image.convert("RGB").tobytes()
    return list(zip(data[0::3], data[1::3], data[2::3], strict=True))


def red_count(image: Image.Image) -> int:
    return sum(1 for p in pixels(image) if is_seal_red(p))


def red_bounds(image: Image.Image) -> tuple[int, int, int, int] | None:
    """The bounding box of all seal-red pixels (left, top, right, bottom), or None."""
    mask = Image.new("L", image.size)
    mask.putdata([255 if is_seal_red(p) else 0 for p in pixels(image)])
    return mask.getbbox()
