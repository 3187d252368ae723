"""Licence PDFs: every type renders, fonts embedded, the QR code scans, watermarks, seal spot."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import random
import re
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import qrcode
from pdfminer.high_level import extract_pages
from pdfminer.layout import LTChar, LTContainer, LTItem
from PIL import Image

from certs.errors import (
    LicenceDataError,
    LicenceFontUnavailableError,
    LicenceLayoutError,
)
from certs.identifiers import LicenceIdentifier
from certs.layout import (
    CHINA_STANDARD_TIME,
    SEAL_DIAMETER_MM,
    format_amount_zh,
    format_date_zh,
    qr_spot,
    render_licence_pdf,
    seal_spot,
    usage_watermark,
)
from certs.types import FieldKind, LicenceType, default_licence_types, get_licence_type
from hsm_sim.errors import ErrorCategory
from seal.keyword import find_text
from tests.conftest import require, require_tool

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "licences"
CODES = list(default_licence_types())
BUSINESS_LICENCE, FOOD_PERMIT, TOUR_GUIDE_CARD = CODES
AGENCY_USCC = "11440300YXJG000013"
ISSUER = "深圳市市场监督管理局"
ISSUED_AT = dt.datetime(2025, 6, 1, 2, 30, tzinfo=dt.UTC)
MM = 72 / 25.4
# As long as a real LC1 token (about 650 characters), from the QR alphanumeric set.
QR_TEXT = "LC1:" + "".join(
    random.Random(7).choice("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:")
    for _ in range(640)
)


def make_qr_png(text: str) -> bytes:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_Q, box_size=4)
    code.add_data(text)
    code.make(fit=True)
    buffer = io.BytesIO()
    code.make_image().save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def qr_png() -> bytes:
    return make_qr_png(QR_TEXT)


def example(code: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{code}.json").read_text(encoding="utf-8"))


def render(
    code: str,
    qr_png: bytes,
    data: dict[str, Any] | None = None,
    **overrides: Any,
) -> bytes:
    licence_type = get_licence_type(code)
    arguments: dict[str, Any] = {
        "identifier": LicenceIdentifier.build(code, AGENCY_USCC, "2025000123"),
        "qr_png": qr_png,
        "issuer_name": ISSUER,
        "issued_at": ISSUED_AT,
        "valid_until": licence_type.validity.valid_until(ISSUED_AT.date()),
        "watermark": None,
    }
    arguments.update(overrides)
    return render_licence_pdf(
        licence_type, example(code) if data is None else data, **arguments
    )


@pytest.fixture(scope="module")
def rendered(qr_png: bytes) -> dict[str, bytes]:
    return {code: render(code, qr_png) for code in CODES}


def run_tool(name: str, *args: str, stdin: bytes | None = None) -> str:
    tool = require_tool(name)
    completed = subprocess.run(
        [tool, *args], input=stdin, capture_output=True, check=True, timeout=60
    )
    return completed.stdout.decode("utf-8")


def page_text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "licence.pdf"
    path.write_bytes(pdf)
    # In drawing order, so that the two columns do not interleave; spread titles and
    # labels come out with spaces between their characters.
    return re.sub(r"\s+", "", run_tool("pdftotext", "-raw", str(path), "-"))


def chars_of(pdf: bytes) -> list[LTChar]:
    found: list[LTChar] = []

    def walk(item: LTItem) -> None:
        if isinstance(item, LTChar):
            found.append(item)
        elif isinstance(item, LTContainer):
            for child in item:
                walk(child)

    for page in extract_pages(io.BytesIO(pdf)):
        walk(page)
    return found


@pytest.mark.parametrize("code", CODES)
def test_each_type_renders_its_fields(
    code: str, rendered: dict[str, bytes], tmp_path: Path
) -> None:
    pdf = rendered[code]
    licence_type = get_licence_type(code)
    assert pdf.startswith(b"%PDF-")
    text = page_text(pdf, tmp_path)
    assert licence_type.layout.title in text
    placed = licence_type.layout.header + sum(licence_type.layout.columns, ())
    for name in placed:
        assert licence_type.field(name).label.zh in text
    data = example(code)
    for name in placed:
        spec = licence_type.field(name)
        if spec.kind in (FieldKind.STRING, FieldKind.USC_CODE) and name in data:
            assert re.sub(r"\s+", "", data[name]) in text, name
    identifier = str(LicenceIdentifier.build(code, AGENCY_USCC, "2025000123"))
    assert f"电子证照标识：{identifier}" in text
    assert ISSUER in text
    assert "2025年06月01日" in text
    assert licence_type.layout.issuer_label in text
    for note in licence_type.layout.footnotes:
        assert re.sub(r"\s+", "", note) in text
    info = run_tool("pdfinfo", "-", stdin=pdf)
    landscape = licence_type.layout.style.value == "business-licence"
    size = "841.89 x 595.276" if landscape else "595.276 x 841.89"
    assert re.search(rf"Page size:\s+{size} pts \(A4\)", info)
    assert re.search(r"Pages:\s+1\n", info)
    assert re.search(rf"Author:\s+{ISSUER}\n", info)


def test_printed_values(rendered: dict[str, bytes], tmp_path: Path) -> None:
    business = page_text(rendered[BUSINESS_LICENCE], tmp_path)
    assert "注册资本人民币壹佰万元整" in business
    assert "有限责任公司（自然人投资或控股）" in business
    assert "营业期限2021年03月15日至长期" in business
    assert "统一社会信用代码91440300MA5GYX001N" in business
    permit = page_text(rendered[FOOD_PERMIT], tmp_path)
    assert "主体业态餐饮服务经营者" in permit
    assert "有效期至2030年05月31日" in permit
    assert "许可证编号：JY24403050012345" in permit
    guide = page_text(rendered[TOUR_GUIDE_CARD], tmp_path)
    assert "性别女" in guide
    assert "有效期至2028年05月31日" in guide


def test_a_person_licence_does_not_print_the_identity_number(
    rendered: dict[str, bytes], tmp_path: Path
) -> None:
    id_number = example(TOUR_GUIDE_CARD)["id_number"]
    assert id_number not in page_text(rendered[TOUR_GUIDE_CARD], tmp_path)
    assert id_number.encode() not in rendered[TOUR_GUIDE_CARD]


@pytest.mark.parametrize("code", CODES)
def test_fonts_are_embedded(code: str, rendered: dict[str, bytes]) -> None:
    listing = run_tool("pdffonts", "-", stdin=rendered[code]).splitlines()[2:]
    assert listing, "no fonts"
    for line in listing:
        kind = line.split()[1]
        assert re.search(r"\s(yes)\s+yes\s+yes\s+\d+\s+0$", line), line
        assert kind == "TrueType"
    names = " ".join(line.split()[0] for line in listing)
    assert "UMingCN" in names  # the Song face for the body


@pytest.mark.parametrize("code", CODES)
def test_the_qr_code_is_placed_and_scans(
    code: str, rendered: dict[str, bytes], qr_png: bytes, tmp_path: Path
) -> None:
    listing = run_tool("pdfimages", "-list", "-", stdin=rendered[code]).splitlines()[2:]
    assert len(listing) == 1
    columns = listing[0].split()
    width, height = Image.open(io.BytesIO(qr_png)).size
    assert (columns[2], int(columns[3]), int(columns[4])) == ("image", width, height)
    pdf = tmp_path / "licence.pdf"
    pdf.write_bytes(rendered[code])
    run_tool(
        "pdftoppm", "-r", "150", "-png", "-singlefile", str(pdf), str(tmp_path / "page")
    )
    # zbar is an independent reader: the printed code carries the token unchanged.
    scanned = run_tool("zbarimg", "--raw", "-q", str(tmp_path / "page.png"))
    assert scanned.strip() == QR_TEXT
    spot = qr_spot(get_licence_type(code))
    assert spot.size_mm >= 40  # 0.4 mm modules or more for a version 20 code


@pytest.mark.parametrize("code", CODES)
def test_the_seal_spot_is_free_for_the_seal(
    code: str, rendered: dict[str, bytes]
) -> None:
    licence_type = get_licence_type(code)
    spot = seal_spot(licence_type)
    pdf = rendered[code]
    # The stamper can place the seal by keyword too: the label is there once, in reach.
    (match,) = find_text(pdf, spot.keyword)
    page_height = (
        595.276 if licence_type.layout.style.value == "business-licence" else 841.89
    )
    x_mm, y_mm = match.centre[0] / MM, (page_height - match.centre[1]) / MM
    assert math.hypot(x_mm - spot.x_mm, y_mm - spot.y_mm) < SEAL_DIAMETER_MM / 4
    # Under the seal: only the issuer's label, name and the date, which seals cover on paper.
    allowed = set(spot.keyword + ISSUER + format_date_zh(dt.date(2025, 6, 1)))
    radius_mm = SEAL_DIAMETER_MM / 2 + 2
    for char in chars_of(pdf):
        cx = (char.x0 + char.x1) / 2 / MM
        cy = (page_height - (char.y0 + char.y1) / 2) / MM
        if math.hypot(cx - spot.x_mm, cy - spot.y_mm) < radius_mm:
            assert char.get_text() in allowed, char.get_text()
    qr = qr_spot(licence_type)
    nearest_x = min(max(spot.x_mm, qr.x_mm), qr.x_mm + qr.size_mm)
    nearest_y = min(max(spot.y_mm, qr.y_mm), qr.y_mm + qr.size_mm)
    assert math.hypot(nearest_x - spot.x_mm, nearest_y - spot.y_mm) > radius_mm


@pytest.mark.parametrize("code", [BUSINESS_LICENCE, TOUR_GUIDE_CARD])
def test_watermark_on_copies(
    code: str, qr_png: bytes, rendered: dict[str, bytes], tmp_path: Path
) -> None:
    mark = usage_watermark("办理银行开户", dt.date(2025, 6, 3))
    assert mark == "仅供办理银行开户使用 2025年06月03日"
    copy = render(code, qr_png, watermark=mark)
    text = page_text(copy, tmp_path)
    assert "仅供办理银行开户使用2025年06月03日" in text
    assert "仅供" not in page_text(rendered[code], tmp_path)
    # Light: drawn with a transparent fill, and the QR code still scans through it.
    assert re.search(rb"/ca 0?\.2\d*", copy)
    path = tmp_path / "copy.pdf"
    path.write_bytes(copy)
    run_tool(
        "pdftoppm",
        "-r",
        "150",
        "-png",
        "-singlefile",
        str(path),
        str(tmp_path / "copy"),
    )
    assert (
        run_tool("zbarimg", "--raw", "-q", str(tmp_path / "copy.png")).strip()
        == QR_TEXT
    )


def _worst_case(licence_type: LicenceType) -> dict[str, Any]:
    data = example(licence_type.code)
    filler = "深圳市南山区粤海街道科技园社区示例路号印信大厦经营范围技术开发咨询服务"
    for spec in licence_type.fields:
        if spec.kind in (FieldKind.STRING, FieldKind.TEXT) and spec.pattern is None:
            data[spec.name] = (filler * 100)[: spec.max_length]
    return data


@pytest.mark.parametrize("code", CODES)
def test_the_longest_data_a_type_allows_fits(
    code: str, qr_png: bytes, tmp_path: Path
) -> None:
    licence_type = get_licence_type(code)
    data = _worst_case(licence_type)
    pdf = render(code, qr_png, data=data, issuer_name=ISSUER * 4, valid_until=None)
    text = page_text(pdf, tmp_path)
    for name in licence_type.layout.columns[0]:
        if name in data and licence_type.field(name).kind is FieldKind.TEXT:
            assert data[name] in text


def test_rare_characters_fall_back_to_the_second_face(
    qr_png: bytes, tmp_path: Path
) -> None:
    # U+3400 is in WenQuanYi Zen Hei, not in AR PL UMing.
    data = example(TOUR_GUIDE_CARD) | {"name": "张㐀"}
    pdf = render(TOUR_GUIDE_CARD, qr_png, data=data)
    assert "张㐀" in page_text(pdf, tmp_path)


def test_characters_no_font_has_are_refused_without_naming_the_person(
    qr_png: bytes,
) -> None:
    data = example(TOUR_GUIDE_CARD) | {"name": "张\u9fcc"}
    with pytest.raises(LicenceLayoutError) as caught:
        render(TOUR_GUIDE_CARD, qr_png, data=data)
    assert "U+9FCC" in str(caught.value)
    assert "张" not in str(caught.value)


def test_bad_requests(qr_png: bytes) -> None:
    with pytest.raises(LicenceDataError, match="is required but missing"):
        render(FOOD_PERMIT, qr_png, data=example(FOOD_PERMIT) | {"operator": None})
    with pytest.raises(
        LicenceLayoutError, match="type code 11100000YXML00000Q001 is not"
    ):
        render(
            FOOD_PERMIT,
            qr_png,
            identifier=LicenceIdentifier.build(BUSINESS_LICENCE, AGENCY_USCC, "1"),
        )
    with pytest.raises(LicenceLayoutError, match="timezone-aware"):
        render(FOOD_PERMIT, qr_png, issued_at=dt.datetime(2025, 6, 1))
    with pytest.raises(LicenceLayoutError, match="issuer name must have 1 to 40"):
        render(FOOD_PERMIT, qr_png, issuer_name=" ")
    with pytest.raises(LicenceLayoutError, match="issuer name must have 1 to 40"):
        render(FOOD_PERMIT, qr_png, issuer_name="局" * 41)
    with pytest.raises(LicenceLayoutError, match="a watermark has 1 to 60"):
        render(FOOD_PERMIT, qr_png, watermark="仅" * 61)
    with pytest.raises(LicenceLayoutError, match="cannot be read"):
        render(FOOD_PERMIT, b"not an image")
    with pytest.raises(LicenceLayoutError, match="is empty"):
        render(FOOD_PERMIT, b"")
    jpeg = io.BytesIO()
    Image.new("RGB", (100, 100), "white").save(jpeg, format="JPEG")
    with pytest.raises(LicenceLayoutError, match="^the QR code image must be a PNG$"):
        render(FOOD_PERMIT, jpeg.getvalue())
    oblong = io.BytesIO()
    Image.new("1", (100, 80), 1).save(oblong, format="PNG")
    with pytest.raises(LicenceLayoutError, match="must be square"):
        render(FOOD_PERMIT, oblong.getvalue())
    with pytest.raises(
        LicenceLayoutError, match="purpose of a watermarked copy is empty"
    ):
        usage_watermark("  ", dt.date(2025, 6, 1))


def test_identifier_as_text_and_dates_in_china_time(
    qr_png: bytes, tmp_path: Path
) -> None:
    identifier = str(LicenceIdentifier.build(FOOD_PERMIT, AGENCY_USCC, "9"))
    late_evening_utc = dt.datetime(2025, 5, 31, 17, 0, tzinfo=dt.UTC)
    assert late_evening_utc.astimezone(CHINA_STANDARD_TIME).date() == dt.date(
        2025, 6, 1
    )
    pdf = render(
        FOOD_PERMIT,
        qr_png,
        identifier=identifier,
        issued_at=late_evening_utc,
        valid_until=None,
    )
    text = page_text(pdf, tmp_path)
    assert identifier in text
    assert "2025年06月01日" in text
    assert "有效期至长期" in text


@pytest.mark.parametrize(
    ("amount", "written"),
    [
        ("0", "零元整"),
        ("0.05", "伍分"),
        ("0.50", "伍角"),
        ("10.05", "壹拾元零伍分"),
        ("1005.50", "壹仟零伍元伍角"),
        ("1010", "壹仟零壹拾元整"),
        ("120000", "壹拾贰万元整"),
        ("101000", "壹拾万壹仟元整"),
        ("1000000", "壹佰万元整"),
        ("10000100", "壹仟万零壹佰元整"),
        ("10001000", "壹仟万壹仟元整"),
        ("100010000", "壹亿零壹万元整"),
        ("100000000", "壹亿元整"),
        ("1000000000000", "壹万亿元整"),
        (
            "999999999999999.99",
            "玖佰玖拾玖万玖仟玖佰玖拾玖亿玖仟玖佰玖拾玖万玖仟玖佰玖拾玖元玖角玖分",
        ),
    ],
)
def test_amounts_in_upper_case_numerals(amount: str, written: str) -> None:
    assert format_amount_zh(Decimal(amount)) == written
    assert format_amount_zh(amount) == written


def test_dates_as_printed() -> None:
    assert format_date_zh(dt.date(2021, 3, 5)) == "2021年03月05日"


def test_the_configured_font_is_used(
    qr_png: bytes, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    zenhei = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")
    require(
        zenhei.is_file(), "WenQuanYi Zen Hei is not installed (make test installs it)"
    )
    monkeypatch.setenv("YINXIN_SEAL_FONT", str(zenhei))
    pdf = render(FOOD_PERMIT, qr_png)
    fonts = run_tool("pdffonts", "-", stdin=pdf)
    assert "WenQuanYiZenHei" in fonts
    assert "UMing" not in fonts
    monkeypatch.setenv("YINXIN_SEAL_FONT", str(tmp_path / "missing.ttf"))
    with pytest.raises(LicenceFontUnavailableError) as caught:
        render(FOOD_PERMIT, qr_png)
    assert caught.value.category is ErrorCategory.UNAVAILABLE
