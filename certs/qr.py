"""QR codes for tokens: drawn with `qrcode`, read back with zxing-cpp.

A token is Base45 behind a prefix, every character of which is in the QR
alphanumeric set, so it is written as ONE alphanumeric segment (5.5 bits a
character; byte mode would cost 8, and scanners re-encode bytes as text). The
segment's mode is checked after the code is built, not assumed.

Reading accepts PNG or JPEG bytes, including photos: rotated, scaled down, slightly
blurred, on a busy background (zxing-cpp searches every orientation and scale).
Images are size-checked before they are decoded.
"""

from __future__ import annotations

import io
import warnings

import qrcode
import qrcode.constants
import qrcode.exceptions
import qrcode.util
import zxingcpp
from PIL import Image, UnidentifiedImageError

from .errors import QrCapacityError, QrDecodeError

__all__ = [
    "ECC_LEVELS",
    "MAX_IMAGE_PIXELS",
    "qr_modules",
    "qr_png",
    "qr_version",
    "read_qr",
]

ECC_LEVELS = {
    "L": qrcode.constants.ERROR_CORRECT_L,
    "M": qrcode.constants.ERROR_CORRECT_M,
    "Q": qrcode.constants.ERROR_CORRECT_Q,
    "H": qrcode.constants.ERROR_CORRECT_H,
}
MAX_IMAGE_PIXELS = (
    40_000_000  # a 48-megapixel phone photo scaled a little; more is refused
)
MAX_IMAGE_BYTES = 32 * 1024 * 1024
# Only these are opened: Pillow's other parsers (DDS, TIFF, ICO, ...) are more code
# facing hostile bytes, and some raise what is not caught here.
_IMAGE_FORMATS = ("PNG", "JPEG")
_MAX_SIDE = 65535  # zxing-cpp raises ValueError for a wider or taller image
_QR_ALPHANUMERIC = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")


def _build(token: str, ecc: str, max_version: int | None) -> qrcode.QRCode:
    if ecc not in ECC_LEVELS:
        raise ValueError(f"ecc must be one of {', '.join(ECC_LEVELS)}")
    data = token.encode("ascii", errors="replace")
    if not data or not _QR_ALPHANUMERIC.issuperset(data):
        raise QrCapacityError(
            "a QR token must consist of QR alphanumeric characters only"
        )
    code = qrcode.QRCode(error_correction=ECC_LEVELS[ecc], border=4)
    code.add_data(qrcode.util.QRData(data, mode=qrcode.util.MODE_ALPHA_NUM))
    try:
        code.make(fit=True)
    # qrcode signals "too long" either way, depending on where its search overflows.
    except (qrcode.exceptions.DataOverflowError, ValueError):
        raise QrCapacityError(
            f"the token ({len(token)} characters) does not fit a QR code at ECC {ecc}"
        ) from None
    modes = {segment.mode for segment in code.data_list}
    if modes != {qrcode.util.MODE_ALPHA_NUM}:
        raise AssertionError(
            f"QR segments were built in modes {modes}, not alphanumeric"
        )
    if max_version is not None and code.version > max_version:
        raise QrCapacityError(
            f"the token needs QR version {code.version} at ECC {ecc}, "
            f"more than the allowed {max_version}"
        )
    return code


def qr_version(token: str, ecc: str = "Q") -> int:
    """The smallest QR version (1-40) that holds `token` at error-correction level `ecc`."""
    return _build(token, ecc, None).version


def qr_modules(
    token: str, *, ecc: str = "Q", max_version: int | None = None
) -> tuple[tuple[bool, ...], ...]:
    """The code's dark (True) and light modules, quiet zone included, for vector drawing."""
    code = _build(token, ecc, max_version)
    return tuple(tuple(bool(cell) for cell in row) for row in code.get_matrix())


def qr_png(
    token: str,
    *,
    ecc: str = "Q",
    box_size: int = 4,
    max_version: int | None = None,
) -> bytes:
    """A PNG of the token's QR code, `box_size` pixels a module, 4-module quiet zone."""
    if box_size < 1:
        raise ValueError("box_size must be at least 1")
    code = _build(token, ecc, max_version)
    code.box_size = box_size
    image = code.make_image(fill_color="black", back_color="white")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def read_qr(image_bytes: bytes) -> str:
    """The text of the one QR code in a PNG/JPEG image; QrDecodeError otherwise."""
    if not isinstance(image_bytes, bytes | bytearray | memoryview):
        raise TypeError("image_bytes must be bytes")
    if len(image_bytes) > MAX_IMAGE_BYTES:
        raise QrDecodeError(
            f"image is larger than {MAX_IMAGE_BYTES // (1024 * 1024)} MiB"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(image_bytes), formats=_IMAGE_FORMATS) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise QrDecodeError(
                        f"image has {width}x{height} pixels, more than {MAX_IMAGE_PIXELS}"
                    )
                if max(width, height) > _MAX_SIDE:
                    raise QrDecodeError(
                        f"image is {width}x{height} pixels, a side longer than {_MAX_SIDE}"
                    )
                grey = image.convert("L")
    except QrDecodeError:
        raise
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        OSError,
        ValueError,
        SyntaxError,
    ):
        raise QrDecodeError("the file is not a readable PNG or JPEG image") from None
    found = zxingcpp.read_barcodes(grey, formats=zxingcpp.BarcodeFormat.QRCode)
    texts = list(dict.fromkeys(barcode.text for barcode in found if barcode.valid))
    if not texts:
        raise QrDecodeError("no readable QR code in the image")
    if len(texts) > 1:
        raise QrDecodeError(
            f"the image holds {len(texts)} different QR codes; show one"
        )
    return texts[0]
