"""certs.qr: tokens drawn as alphanumeric QR codes and read back, also from photo-like
images, by zxing-cpp and by an independent reader (zbarimg)."""

from __future__ import annotations

import datetime as dt
import io
import random
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image, ImageFilter
from qrcode.util import BIT_LIMIT_TABLE

from certs.errors import QrCapacityError, QrDecodeError
from certs.qr import qr_modules, qr_png, qr_version, read_qr
from certs.token import (
    LicenceClaims,
    SignerList,
    StatusReference,
    Verdict,
    encode_token,
    verify_token,
)
from tests.conftest import require_tool

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def token() -> str:
    """A business-licence token with the six short fields a QR code can afford (about
    690 characters: version 20 at ECC Q; the address alone would push it to 22)."""
    key = ec.derive_private_key(0x9A, ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "QR Test Signer")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(0x9A)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    claims = LicenceClaims(
        issuer="350100",
        issued_at=NOW,
        expires_at=NOW + dt.timedelta(days=180),
        licence_id="1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.002.S",
        type_code="11100000000013338W011",
        fields={
            "name": "福州市某某信息技术有限公司",
            "uscc": "91350100M000100Y43",
            "type": "有限责任公司（自然人投资或控股）",
            "legal_representative": "张三",
            "registered_capital": "壹佰万元整",
            "established": "2020-01-01",
        },
        status=StatusReference(48213, "https://pki.example.gov.cn/status/350100-1"),
    )
    token = encode_token(claims, signer_key=key, signer_certificate=certificate)
    assert (
        verify_token(token, trust=SignerList([certificate]), at=NOW).verdict
        is Verdict.VALID
    )
    return token


def alphanumeric_version(length: int, ecc_index: int) -> int:
    """The smallest version holding `length` characters in one alphanumeric segment
    (ISO/IEC 18004: 4 mode bits, a 9/11/13-bit count, 11 bits a pair, 6 for a single)."""
    for version in range(1, 41):
        count_bits = 9 if version < 10 else 11 if version < 27 else 13
        bits = 4 + count_bits + 11 * (length // 2) + 6 * (length % 2)
        if bits <= BIT_LIMIT_TABLE[ecc_index][version]:
            return version
    raise AssertionError("too long for any QR code")


def byte_mode_version(length: int, ecc_index: int) -> int:
    for version in range(1, 41):
        count_bits = 8 if version < 10 else 16
        if 4 + count_bits + 8 * length <= BIT_LIMIT_TABLE[ecc_index][version]:
            return version
    raise AssertionError("too long for any QR code")


def test_round_trip_and_the_code_is_alphanumeric(token: str) -> None:
    png = qr_png(token)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert read_qr(png) == token
    ecc_q = 3  # qrcode's index of level Q in BIT_LIMIT_TABLE
    version = qr_version(token, "Q")
    assert version == alphanumeric_version(len(token), ecc_q)
    assert version < byte_mode_version(len(token), ecc_q)
    assert version <= 20, "a licence token must stay printable (DESIGN: v20 at ECC Q)"
    modules = qr_modules(token)
    assert len(modules) == len(modules[0]) == 4 * version + 17 + 2 * 4
    assert qr_version(token, "L") < qr_version(token, "H")


def test_an_independent_reader_reads_it(token: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    zbarimg = require_tool("zbarimg")
    path = tmp_path / "token.png"
    path.write_bytes(qr_png(token, box_size=3))
    result = subprocess.run(
        [zbarimg, "--raw", "-q", str(path)], capture_output=True, text=True, check=True
    )
    assert result.stdout.rstrip("\n") == token


def photo(image: Image.Image, *, seed: int = 7) -> bytes:
    """The QR code pasted on a noisy grey background, saved as a mediocre JPEG."""
    rng = random.Random(seed)
    width, height = image.width + 240, image.height + 180
    noise = Image.frombytes(
        "L",
        (width, height),
        bytes(rng.randrange(90, 200) for _ in range(width * height)),
    )
    noise.paste(image.convert("L"), (130, 70))
    buffer = io.BytesIO()
    noise.save(buffer, format="JPEG", quality=45)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "transform",
    [
        pytest.param(
            lambda im: im.rotate(7, expand=True, fillcolor="white"), id="rotated-7"
        ),
        pytest.param(lambda im: im.rotate(90, expand=True), id="rotated-90"),
        pytest.param(
            lambda im: im.rotate(-172, expand=True, fillcolor="white"), id="upside-down"
        ),
        pytest.param(
            lambda im: im.resize(
                (im.width * 9 // 20, im.height * 9 // 20), Image.BILINEAR
            ),
            id="scaled-to-1.8px-a-module",
        ),
        pytest.param(lambda im: im.filter(ImageFilter.GaussianBlur(1.2)), id="blurred"),
        pytest.param(
            lambda im: (
                im.rotate(5, expand=True, fillcolor="white")
                .resize((im.width * 3 // 4, im.height * 3 // 4), Image.BILINEAR)
                .filter(ImageFilter.GaussianBlur(0.8))
            ),
            id="rotated-scaled-blurred",
        ),
    ],
)
def test_photo_like_images_are_read(token: str, transform) -> None:  # type: ignore[no-untyped-def]
    image = Image.open(io.BytesIO(qr_png(token, box_size=4))).convert("L")
    assert read_qr(photo(transform(image))) == token


def test_read_qr_refuses_what_is_not_one_qr_code(token: str) -> None:
    with pytest.raises(QrDecodeError, match="not a readable PNG or JPEG"):
        read_qr(b"%PDF-1.7 not an image")
    blank = io.BytesIO()
    Image.new("L", (300, 300), 255).save(blank, format="PNG")
    with pytest.raises(QrDecodeError, match="no readable QR code"):
        read_qr(blank.getvalue())
    first = Image.open(io.BytesIO(qr_png(token, box_size=2)))
    second = Image.open(io.BytesIO(qr_png("LC1:OTHER", box_size=2)))
    both = Image.new("L", (first.width + second.width + 40, first.height), 255)
    both.paste(first, (0, 0))
    both.paste(second, (first.width + 40, 0))
    buffer = io.BytesIO()
    both.save(buffer, format="PNG")
    with pytest.raises(QrDecodeError, match="2 different QR codes"):
        read_qr(buffer.getvalue())


def test_a_huge_image_is_refused_before_it_is_decoded() -> None:
    buffer = io.BytesIO()
    Image.new("1", (8000, 6000), 1).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 200_000, "small file, 48 megapixels"
    with pytest.raises(QrDecodeError, match="more than 40000000"):
        read_qr(buffer.getvalue())


def test_qr_png_refuses_what_it_cannot_draw(token: str) -> None:
    with pytest.raises(QrCapacityError, match="alphanumeric"):
        qr_png("lc1:lowercase")
    with pytest.raises(QrCapacityError, match="alphanumeric"):
        qr_png("LC1:证照")
    with pytest.raises(QrCapacityError, match="more than the allowed 10"):
        qr_png(token, max_version=10)
    with pytest.raises(QrCapacityError, match="does not fit"):
        qr_version("LC1:" + "A" * 2500, "H")
    with pytest.raises(ValueError, match="ecc"):
        qr_png(token, ecc="X")


def _image_bytes(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["DDS", "TIFF", "GIF", "BMP", "ICO"])
def test_read_qr_reads_only_png_and_jpeg(token: str, fmt: str) -> None:
    """Pillow opens dozens of formats, some of whose parsers raise what read_qr does
    not expect (a DDS with unknown pixel flags: NotImplementedError); only the two
    formats the reader is for are opened."""
    image = Image.open(io.BytesIO(qr_png(token, box_size=2))).convert("RGB")
    data = bytearray(_image_bytes(image, fmt))
    if fmt == "DDS":
        data[80:84] = (0x00180000).to_bytes(4, "little")  # unknown pixel format flags
    with pytest.raises(QrDecodeError, match="not a readable PNG or JPEG"):
        read_qr(bytes(data))


def test_read_qr_refuses_an_image_wider_than_the_decoder_takes() -> None:
    """zxing-cpp raises ValueError for a side over 65535 pixels; a 70000x1 PNG is far
    under the pixel limit and must be refused with a reason, not a traceback."""
    data = _image_bytes(Image.new("L", (70_000, 1), 255), "PNG")
    with pytest.raises(QrDecodeError, match="70000x1"):
        read_qr(data)
