"""The PDF of a licence: its type's layout, drawn with reportlab.

Three styles, after the paper licences they stand for:
- business-licence: A4 landscape, a red frame with a gold guilloche band, the title
  spaced wide across the top, the unified social credit code top left, the QR code top
  right, two columns of fields, the registering office and date bottom right;
- permit: A4 portrait, a blue frame, the fields in a ruled table, the QR code bottom
  left, the issuing office and date bottom right;
- certificate: A4 portrait, a green frame, a person's fields on ruled lines.

Text is set in a CJK TrueType face, subset and embedded: the Song face the seal
package uses (AR PL UMing, or `$YINXIN_SEAL_FONT`), with WenQuanYi Zen Hei for titles
and for any character the Song face lacks (rare characters in names). The PDF is not
sealed here: `seal_spot` says where the issuing agency's seal goes, and the issuer
label printed there (登记机关, 发证机关) is a keyword the stamper can find too.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from xml.sax.saxutils import escape

from PIL import Image, UnidentifiedImageError
from reportlab.lib.colors import Color, HexColor
from reportlab.lib.enums import TA_CENTER, TA_LEFT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph

from certs.errors import LicenceFontUnavailableError, LicenceLayoutError
from certs.identifiers import LicenceIdentifier
from certs.types import (
    LONG_TERM,
    FieldKind,
    LayoutStyle,
    LicenceType,
    validate_licence_data,
)
from seal.fonts import ZENHEI_PATH, SealFontUnavailableError, load_seal_font

__all__ = [
    "CHINA_STANDARD_TIME",
    "QrSpot",
    "SealSpot",
    "format_amount_zh",
    "format_date_zh",
    "qr_spot",
    "render_licence_pdf",
    "seal_spot",
    "usage_watermark",
]

MM = 72 / 25.4
# Dates on a licence are the issuing office's dates: China has one time zone and no
# daylight saving, so a fixed offset is exact.
CHINA_STANDARD_TIME = dt.timezone(dt.timedelta(hours=8), "CST")
SEAL_DIAMETER_MM = 42.0
MAX_QR_PNG_BYTES = 2 * 1024 * 1024
MAX_WATERMARK_LENGTH = 60
MAX_ISSUER_NAME_LENGTH = 40

_INK = HexColor("#1A1A1A")
_MUTED = HexColor("#555555")
_RENDER_LOCK = threading.Lock()  # reportlab keeps subsetting state on the font objects


@dataclass(frozen=True)
class SealSpot:
    """Where the issuing agency's seal goes: its centre on page `page` (1-based), in mm
    from the page's top-left corner, as `seal.stamping.At` takes it. `keyword` is the
    issuer label printed there, found once on the page."""

    page: int
    x_mm: float
    y_mm: float
    keyword: str


@dataclass(frozen=True)
class QrSpot:
    """Where the QR code is printed: its top-left corner and side, in mm from the page's
    top-left corner."""

    page: int
    x_mm: float
    y_mm: float
    size_mm: float


@dataclass(frozen=True)
class _Style:
    page_size: tuple[float, float]  # points
    frame: HexColor
    band: HexColor
    rosette: HexColor
    qr: QrSpot
    seal_centre: tuple[float, float]  # mm from top-left
    body_top_mm: float
    body_bottom_mm: float


_STYLES: dict[LayoutStyle, _Style] = {
    LayoutStyle.BUSINESS_LICENCE: _Style(
        page_size=landscape(A4),
        frame=HexColor("#B0161E"),
        band=HexColor("#C9A14A"),
        rosette=HexColor("#F6E4D8"),
        qr=QrSpot(page=1, x_mm=236.0, y_mm=23.0, size_mm=40.0),
        seal_centre=(232.0, 168.0),
        body_top_mm=74.0,
        body_bottom_mm=176.0,
    ),
    LayoutStyle.PERMIT: _Style(
        page_size=A4,
        frame=HexColor("#1F4E79"),
        band=HexColor("#8FB3D9"),
        rosette=HexColor("#DCE8F5"),
        qr=QrSpot(page=1, x_mm=26.0, y_mm=214.0, size_mm=42.0),
        seal_centre=(150.0, 236.0),
        body_top_mm=60.0,
        body_bottom_mm=206.0,
    ),
    LayoutStyle.CERTIFICATE: _Style(
        page_size=A4,
        frame=HexColor("#2E6B3F"),
        band=HexColor("#9CC5A1"),
        rosette=HexColor("#E1EFE2"),
        qr=QrSpot(page=1, x_mm=26.0, y_mm=214.0, size_mm=42.0),
        seal_centre=(150.0, 236.0),
        body_top_mm=84.0,
        body_bottom_mm=200.0,
    ),
}


def seal_spot(licence_type: LicenceType) -> SealSpot:
    """Where the seal goes on PDFs of `licence_type`."""
    x_mm, y_mm = _STYLES[licence_type.layout.style].seal_centre
    return SealSpot(
        page=1, x_mm=x_mm, y_mm=y_mm, keyword=licence_type.layout.issuer_label
    )


def qr_spot(licence_type: LicenceType) -> QrSpot:
    """Where the QR code is printed on PDFs of `licence_type`."""
    return _STYLES[licence_type.layout.style].qr


def usage_watermark(purpose: str, on: dt.date) -> str:
    """The watermark of a copy handed over for one purpose: 仅供…使用 and the date."""
    purpose = " ".join(purpose.split())
    if not purpose:
        raise LicenceLayoutError("the purpose of a watermarked copy is empty")
    return f"仅供{purpose}使用 {format_date_zh(on)}"


def format_date_zh(day: dt.date) -> str:
    """2025年06月01日, as licences print dates."""
    return f"{day.year}年{day.month:02d}月{day.day:02d}日"


_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_SMALL_UNITS = ("", "拾", "佰", "仟")
# The fourth group is 万亿, written 万 when the 亿 group follows it: 壹万零壹亿.
_LARGE_UNITS = ("", "万", "亿", "万")


def format_amount_zh(amount: str | Decimal) -> str:
    """An amount in yuan in financial upper-case numerals: 1000000.00 -> 壹佰万元整."""
    value = Decimal(amount).quantize(Decimal("0.01"))
    if value < 0 or value >= Decimal(10) ** 16:
        raise LicenceLayoutError(
            "amounts from 0 to below 10^16 yuan can be written out"
        )
    yuan = int(value)
    jiao, fen = divmod(int((value - yuan) * 100), 10)
    text = _integer_zh(yuan) + "元" if yuan else ""
    if jiao == 0 and fen == 0:
        return (text or "零元") + "整"
    if jiao:
        text += _DIGITS[jiao] + "角"
    elif yuan:
        text += "零"
    if fen:
        text += _DIGITS[fen] + "分"
    return text


def _integer_zh(number: int) -> str:
    groups: list[int] = []
    while number:
        number, group = divmod(number, 10000)
        groups.append(group)
    parts: list[str] = []
    need_zero = False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if group == 0:
            need_zero = bool(parts)
            continue
        if parts and (need_zero or group < 1000):
            parts.append("零")
        parts.append(_group_zh(group) + _LARGE_UNITS[index])
        if index == 3 and groups[2] == 0:
            parts.append("亿")
        need_zero = False
    return "".join(parts)


def _group_zh(group: int) -> str:
    text = ""
    zero = False
    for position in range(3, -1, -1):
        digit = group // 10**position % 10
        if digit == 0:
            zero = bool(text)
            continue
        if zero:
            text += "零"
            zero = False
        text += _DIGITS[digit] + _SMALL_UNITS[position]
    return text


# Fonts.


@dataclass(frozen=True)
class _Fonts:
    body: str
    title: str
    fallback: str | None
    _glyphs: Mapping[str, frozenset[int]]

    def has(self, font: str, char: str) -> bool:
        return ord(char) in self._glyphs[font] or char in "\n "

    def runs(self, text: str, font: str) -> list[tuple[str, str]]:
        """`text` cut into (font, run) pieces, falling back where `font` has no glyph."""
        runs: list[tuple[str, str]] = []
        for char in text:
            chosen = font
            if not self.has(font, char):
                if self.fallback is not None and self.has(self.fallback, char):
                    chosen = self.fallback
                elif self.has(self.body, char):
                    chosen = self.body
                else:
                    raise _MissingGlyph(char)
            if runs and runs[-1][0] == chosen:
                runs[-1] = (chosen, runs[-1][1] + char)
            else:
                runs.append((chosen, char))
        return runs

    def markup(self, text: str, font: str) -> str:
        """Paragraph markup for `text`, with font tags where a fallback face is needed."""
        pieces: list[str] = []
        for run_font, run in self.runs(text, font):
            escaped = escape(run).replace("\n", "<br/>")
            pieces.append(
                escaped
                if run_font == font
                else f'<font face="{run_font}">{escaped}</font>'
            )
        return "".join(pieces)

    def width(
        self, text: str, font: str, size: float, char_space: float = 0.0
    ) -> float:
        return sum(
            pdfmetrics.stringWidth(run, run_font, size)
            for run_font, run in self.runs(text, font)
        ) + char_space * max(len(text) - 1, 0)


class _MissingGlyph(Exception):
    def __init__(self, char: str) -> None:
        super().__init__(f"U+{ord(char):04X}")
        self.char = char


@functools.cache
def _fonts_for(body_path: Path) -> _Fonts:
    glyphs: dict[str, frozenset[int]] = {}
    body = _register(body_path)
    glyphs[body.fontName] = frozenset(body.face.charToGlyph)
    fallback_name: str | None = None
    if ZENHEI_PATH.is_file() and ZENHEI_PATH != body_path:
        hei = _register(ZENHEI_PATH)
        glyphs[hei.fontName] = frozenset(hei.face.charToGlyph)
        fallback_name = hei.fontName
    return _Fonts(
        body=body.fontName,
        title=fallback_name or body.fontName,
        fallback=fallback_name,
        _glyphs=glyphs,
    )


def _register(path: Path) -> TTFont:
    # One reportlab name per file, apart from the seal package's own registration.
    name = "YinxinLicence-" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    try:
        font = TTFont(name, str(path), subfontIndex=0)
    except TTFError as exc:
        raise LicenceFontUnavailableError(
            f"licence font {path} cannot be embedded: {exc}"
        ) from None
    pdfmetrics.registerFont(font)
    return font


def _load_fonts() -> _Fonts:
    try:
        seal_font = load_seal_font()
    except SealFontUnavailableError as exc:
        raise LicenceFontUnavailableError(str(exc)) from None
    return _fonts_for(seal_font.path)


# Rendering.


def render_licence_pdf(
    licence_type: LicenceType,
    data: Mapping[str, object],
    *,
    identifier: LicenceIdentifier | str,
    qr_png: bytes,
    issuer_name: str,
    issued_at: dt.datetime,
    valid_until: dt.date | None,
    watermark: str | None = None,
) -> bytes:
    """The licence as a one-page PDF, ready for the issuing agency's seal.

    `data` is checked against the type first. `issued_at` (aware) is printed as the
    date in China; `valid_until` None prints 长期 (long-term). A `watermark` (see
    `usage_watermark`) is drawn diagonally across the page, lightly, for copies.
    """
    values = validate_licence_data(licence_type, data)
    identifier = (
        identifier
        if isinstance(identifier, LicenceIdentifier)
        else LicenceIdentifier.parse(identifier)
    )
    if identifier.type_code != licence_type.code:
        raise LicenceLayoutError(
            f"the identifier's type code {identifier.type_code} is not this licence "
            f"type's ({licence_type.code})"
        )
    if issued_at.tzinfo is None or issued_at.utcoffset() is None:
        raise LicenceLayoutError("the issue time must be timezone-aware")
    issuer_name = " ".join(str(issuer_name).split())
    if not issuer_name or len(issuer_name) > MAX_ISSUER_NAME_LENGTH:
        raise LicenceLayoutError(
            f"the issuer name must have 1 to {MAX_ISSUER_NAME_LENGTH} characters"
        )
    if watermark is not None:
        watermark = " ".join(watermark.split())
        if not watermark or len(watermark) > MAX_WATERMARK_LENGTH:
            raise LicenceLayoutError(
                f"a watermark has 1 to {MAX_WATERMARK_LENGTH} characters"
            )
    qr_image = _read_qr_png(qr_png)
    fonts = _load_fonts()
    page = _Page(
        licence_type=licence_type,
        values=values,
        fonts=fonts,
        identifier=str(identifier),
        issuer_name=issuer_name,
        issued_on=issued_at.astimezone(CHINA_STANDARD_TIME).date(),
        valid_until=valid_until,
        watermark=watermark,
        qr_image=qr_image,
    )
    with _RENDER_LOCK:
        try:
            return page.render()
        except _MissingGlyph as missing:
            # The character is named by code point only: it may come from a name.
            raise LicenceLayoutError(
                f"no licence font has a glyph for character {missing}; install a font "
                "that covers it (WenQuanYi Zen Hei covers most)"
            ) from None


def _read_qr_png(qr_png: bytes) -> ImageReader:
    if not isinstance(qr_png, bytes | bytearray) or not qr_png:
        raise LicenceLayoutError("the QR code image is empty")
    if len(qr_png) > MAX_QR_PNG_BYTES:
        raise LicenceLayoutError("the QR code image is larger than 2 MiB")
    try:
        with Image.open(io.BytesIO(qr_png)) as image:
            kind = image.format
            width, height = image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise LicenceLayoutError(f"the QR code image cannot be read: {exc}") from None
    if kind != "PNG":
        raise LicenceLayoutError("the QR code image must be a PNG")
    if width != height or width < 21:
        raise LicenceLayoutError(
            "the QR code image must be square, at least 21 pixels wide"
        )
    return ImageReader(io.BytesIO(bytes(qr_png)))


@dataclass(frozen=True)
class _Item:
    """One labelled value in a column."""

    label: str
    value: str
    long: bool  # a paragraph that may be set smaller to fit


class _Page:
    def __init__(
        self,
        *,
        licence_type: LicenceType,
        values: Mapping[str, str],
        fonts: _Fonts,
        identifier: str,
        issuer_name: str,
        issued_on: dt.date,
        valid_until: dt.date | None,
        watermark: str | None,
        qr_image: ImageReader,
    ) -> None:
        self.type = licence_type
        self.layout = licence_type.layout
        self.style = _STYLES[licence_type.layout.style]
        self.values = values
        self.fonts = fonts
        self.identifier = identifier
        self.issuer_name = issuer_name
        self.issued_on = issued_on
        self.valid_until = valid_until
        self.watermark = watermark
        self.qr_image = qr_image
        self.width, self.height = self.style.page_size
        self.buffer = io.BytesIO()
        self.canvas = Canvas(
            self.buffer,
            pagesize=self.style.page_size,
            pageCompression=1,
            # Otherwise reportlab names Helvetica, a font the PDF would not embed.
            initialFontName=fonts.body,
        )

    # Coordinates are given in mm from the top-left corner, as people measure a page.
    def x(self, mm: float) -> float:
        return mm * MM

    def y(self, mm: float) -> float:
        return self.height - mm * MM

    def render(self) -> bytes:
        c = self.canvas
        c.setTitle(self.type.name.zh)
        c.setSubject(f"{self.type.name.en} ({self.type.code})")
        c.setCreator("Yinxin")
        c.setAuthor(self.issuer_name)
        draw = {
            LayoutStyle.BUSINESS_LICENCE: self.draw_business_licence,
            LayoutStyle.PERMIT: self.draw_permit,
            LayoutStyle.CERTIFICATE: self.draw_certificate,
        }[self.layout.style]
        self.draw_frame()
        draw()
        self.draw_issuer_block()
        self.draw_footer()
        if self.watermark:
            self.draw_watermark(self.watermark)
        self.draw_qr()
        c.showPage()
        c.save()
        return self.buffer.getvalue()

    # Values as printed.

    def printed(self, name: str) -> str:
        spec = self.type.field(name)
        value = self.values[name]
        if spec.kind is FieldKind.DATE:
            return (
                "长期"
                if value == LONG_TERM
                else format_date_zh(dt.date.fromisoformat(value))
            )
        if spec.kind is FieldKind.MONEY:
            return "人民币" + format_amount_zh(value)
        if spec.kind is FieldKind.ENUM:
            return spec.enum_label(value).zh
        return value

    def item(self, name: str) -> _Item | None:
        if name not in self.values:
            return None
        spec = self.type.field(name)
        template = self.layout.templates.get(name)
        if template is None:
            value = self.printed(name)
        else:
            value = template.format_map(_Printed(self.printed, self.values))
        return _Item(label=spec.label.zh, value=value, long=spec.kind is FieldKind.TEXT)

    def items(self, names: Sequence[str]) -> list[_Item]:
        return [item for name in names if (item := self.item(name)) is not None]

    def validity_text(self) -> str:
        return "长期" if self.valid_until is None else format_date_zh(self.valid_until)

    # Drawing primitives.

    def text(
        self,
        x_mm: float,
        y_mm: float,
        text: str,
        size: float,
        *,
        font: str | None = None,
        anchor: str = "left",
        char_space: float = 0.0,
        color: Color = _INK,
        weight: float = 0.0,
    ) -> float:
        """Draw one line with its baseline at y; returns its width in points."""
        c = self.canvas
        font = font or self.fonts.body
        width = self.fonts.width(text, font, size, char_space)
        # Character spacing and render mode outlive the text object in PDF: keep them in.
        c.saveState()
        x = self.x(x_mm)
        if anchor == "centre":
            x -= width / 2
        elif anchor == "right":
            x -= width
        text_object = c.beginText(x, self.y(y_mm))
        text_object.setCharSpace(char_space)
        text_object.setFillColor(color)
        if weight:
            # The CJK faces come in one weight; a thin outline of the glyphs sets bold.
            text_object.setTextRenderMode(2)
            c.setStrokeColor(color)
            c.setLineWidth(weight)
        for run_font, run in self.fonts.runs(text, font):
            text_object.setFont(run_font, size)
            text_object.textOut(run)
        c.drawText(text_object)
        c.restoreState()
        return width

    def spaced_label(
        self, x_mm: float, y_mm: float, label: str, size: float, span_em: float
    ) -> None:
        """A label spread over `span_em` ems, as licences print 名　　称."""
        span = span_em * size
        natural = self.fonts.width(label, self.fonts.body, size)
        if natural > span:  # a long label is set smaller rather than run into its value
            size *= span / natural
            natural = span
        gaps = len(label) - 1
        char_space = max((span - natural) / gaps, 0.0) if gaps else 0.0
        self.text(x_mm, y_mm, label, size, char_space=char_space, weight=0.35)

    def paragraph(
        self,
        text: str,
        size: float,
        width_mm: float,
        *,
        align: int = TA_LEFT,
        color: Color = _INK,
        leading: float = 1.45,
    ) -> Paragraph:
        style = ParagraphStyle(
            "licence",
            fontName=self.fonts.body,
            fontSize=size,
            leading=size * leading,
            alignment=align,
            wordWrap="CJK",
            textColor=color,
        )
        return Paragraph(self.fonts.markup(text, self.fonts.body), style)

    def paragraph_height(
        self, text: str, size: float, width_mm: float, **kwargs: object
    ) -> float:
        """Height in mm of `text` set at `size` in a column `width_mm` wide."""
        _, height = self.paragraph(text, size, width_mm, **kwargs).wrap(
            width_mm * MM, 10_000
        )
        return height / MM

    def draw_paragraph(
        self,
        x_mm: float,
        top_mm: float,
        text: str,
        size: float,
        width_mm: float,
        **kwargs: object,
    ) -> float:
        """Draw `text` from `top_mm` down; returns the height used in mm."""
        paragraph = self.paragraph(text, size, width_mm, **kwargs)
        _, height = paragraph.wrap(width_mm * MM, 10_000)
        paragraph.drawOn(self.canvas, self.x(x_mm), self.y(top_mm) - height)
        return height / MM

    # Page furniture.

    def draw_frame(self) -> None:
        c = self.canvas
        style = self.style
        w_mm, h_mm = self.width / MM, self.height / MM
        self.draw_rosette(w_mm / 2, h_mm / 2 + 4, min(w_mm, h_mm) * 0.33, style.rosette)
        outer, inner = 8.0, 15.0
        c.setStrokeColor(style.frame)
        c.setLineWidth(2.2)
        c.rect(
            self.x(outer),
            self.y(h_mm - outer),
            (w_mm - 2 * outer) * MM,
            (h_mm - 2 * outer) * MM,
        )
        c.setLineWidth(0.6)
        c.rect(
            self.x(outer + 1.2),
            self.y(h_mm - outer - 1.2),
            (w_mm - 2 * outer - 2.4) * MM,
            (h_mm - 2 * outer - 2.4) * MM,
        )
        self.draw_guilloche_band(outer + 1.2, inner - 0.4, style.band)
        self.draw_corners(outer + 1.2, inner)
        c.setStrokeColor(style.frame)
        c.setLineWidth(0.9)
        c.rect(
            self.x(inner),
            self.y(h_mm - inner),
            (w_mm - 2 * inner) * MM,
            (h_mm - 2 * inner) * MM,
        )
        c.setStrokeColor(style.band)
        c.setLineWidth(0.4)
        c.rect(
            self.x(inner + 1.0),
            self.y(h_mm - inner - 1.0),
            (w_mm - 2 * inner - 2.0) * MM,
            (h_mm - 2 * inner - 2.0) * MM,
        )

    def draw_corners(self, outer_mm: float, inner_mm: float) -> None:
        """A square with a diamond in each corner of the band, where the waves turn."""
        c = self.canvas
        w_mm, h_mm = self.width / MM, self.height / MM
        side = inner_mm - outer_mm
        for left in (outer_mm, w_mm - inner_mm):
            for top in (outer_mm, h_mm - inner_mm):
                c.setFillColor(self.style.frame)
                c.rect(
                    self.x(left),
                    self.y(top + side),
                    side * MM,
                    side * MM,
                    stroke=0,
                    fill=1,
                )
                cx, cy, r = left + side / 2, top + side / 2, side * 0.36
                diamond = c.beginPath()
                diamond.moveTo(self.x(cx), self.y(cy - r))
                diamond.lineTo(self.x(cx + r), self.y(cy))
                diamond.lineTo(self.x(cx), self.y(cy + r))
                diamond.lineTo(self.x(cx - r), self.y(cy))
                diamond.close()
                c.setFillColor(self.style.band)
                c.drawPath(diamond, stroke=0, fill=1)

    def draw_guilloche_band(
        self, outer_mm: float, inner_mm: float, color: Color
    ) -> None:
        """Interlaced sine waves running round the page between two frame lines."""
        c = self.canvas
        w_mm, h_mm = self.width / MM, self.height / MM
        middle = (outer_mm + inner_mm) / 2
        amplitude = (inner_mm - outer_mm) / 2 - 0.5
        # The path round the band's middle line, walked clockwise from the top-left.
        corners = [
            (middle, middle),
            (w_mm - middle, middle),
            (w_mm - middle, h_mm - middle),
            (middle, h_mm - middle),
        ]
        perimeter = 2 * ((w_mm - 2 * middle) + (h_mm - 2 * middle))
        wavelength = perimeter / round(perimeter / 9.0)
        c.setStrokeColor(color)
        c.setLineWidth(0.35)
        for phase in range(4):
            path = c.beginPath()
            travelled = 0.0
            first = True
            for side in range(4):
                (x0, y0), (x1, y1) = corners[side], corners[(side + 1) % 4]
                length = math.hypot(x1 - x0, y1 - y0)
                nx, ny = (y1 - y0) / length, -(x1 - x0) / length  # outward normal
                steps = max(int(length / 0.6), 1)
                for step in range(steps + 1):
                    t = step / steps
                    s = travelled + t * length
                    offset = amplitude * math.sin(
                        2 * math.pi * s / wavelength + phase * math.pi / 2
                    )
                    px = x0 + (x1 - x0) * t + nx * offset
                    py = y0 + (y1 - y0) * t + ny * offset
                    if first:
                        path.moveTo(self.x(px), self.y(py))
                        first = False
                    else:
                        path.lineTo(self.x(px), self.y(py))
                travelled += length
            path.close()
            c.drawPath(path, stroke=1, fill=0)

    def draw_rosette(
        self, cx_mm: float, cy_mm: float, radius_mm: float, color: Color
    ) -> None:
        """A faint spirograph rosette behind the text, as on security paper."""
        c = self.canvas
        c.setStrokeColor(color)
        c.setLineWidth(0.3)
        big, small, pen = 1.0, 0.26, 0.62  # hypotrochoid radii, relative
        scale = radius_mm / (big - small + pen)
        path = c.beginPath()
        turns = 13  # small / big = 0.26 closes after 13 turns
        steps = 2600
        for step in range(steps + 1):
            t = 2 * math.pi * turns * step / steps
            x = (big - small) * math.cos(t) + pen * math.cos((big - small) / small * t)
            y = (big - small) * math.sin(t) - pen * math.sin((big - small) / small * t)
            px, py = self.x(cx_mm + x * scale), self.y(cy_mm + y * scale)
            if step == 0:
                path.moveTo(px, py)
            else:
                path.lineTo(px, py)
        c.drawPath(path, stroke=1, fill=0)

    def draw_title(self, y_mm: float, size: float) -> None:
        title = self.layout.title
        char_space = size * (0.9 if len(title) <= 4 else 0.35)
        self.text(
            self.width / MM / 2,
            y_mm,
            title,
            size,
            font=self.fonts.title,
            anchor="centre",
            char_space=char_space,
        )
        if self.layout.subtitle:
            self.text(
                self.width / MM / 2,
                y_mm + size / MM * 0.55,
                self.layout.subtitle,
                size * 0.3,
                anchor="centre",
                char_space=size * 0.08,
                color=_MUTED,
            )

    def draw_qr(self) -> None:
        spot = self.style.qr
        self.canvas.drawImage(
            self.qr_image,
            self.x(spot.x_mm),
            self.y(spot.y_mm + spot.size_mm),
            spot.size_mm * MM,
            spot.size_mm * MM,
        )
        self.text(
            spot.x_mm + spot.size_mm / 2,
            spot.y_mm + spot.size_mm + 4.0,
            "扫描二维码核验电子证照",
            7.5,
            anchor="centre",
            color=_MUTED,
        )

    def draw_issuer_block(self) -> None:
        x_mm, y_mm = self.style.seal_centre
        self.text(
            x_mm,
            y_mm - 6.0,
            self.layout.issuer_label,
            13.0,
            anchor="centre",
            char_space=4.0,
            weight=0.35,
        )
        # The name wraps onto a second line, then gets smaller, within the seal's reach.
        width = 64.0
        size = 10.5
        while (
            self.paragraph_height(self.issuer_name, size, width)
            > 2.2 * size * 1.45 / MM
            and size > 7.0
        ):
            size -= 0.5
        used = self.draw_paragraph(
            x_mm - width / 2, y_mm - 2.0, self.issuer_name, size, width, align=TA_CENTER
        )
        self.text(
            x_mm,
            y_mm + max(used, 4.0) + 3.0,
            format_date_zh(self.issued_on),
            12.0,
            anchor="centre",
        )

    def draw_footer(self) -> None:
        h_mm = self.height / MM
        left = 22.0
        y_mm = h_mm - 20.0
        self.text(left, y_mm, f"电子证照标识：{self.identifier}", 7.0, color=_MUTED)
        for note in reversed(self.layout.footnotes):
            y_mm -= 4.2
            self.text(left, y_mm, note, 8.0, color=_MUTED)

    def draw_watermark(self, text: str) -> None:
        c = self.canvas
        c.saveState()
        c.setFillColor(Color(0.55, 0.55, 0.55, alpha=0.22))
        size = 24.0
        width = self.fonts.width(text, self.fonts.body, size) + 30 * MM
        c.translate(self.width / 2, self.height / 2)
        c.rotate(30)
        reach = math.hypot(self.width, self.height) / 2
        rows = int(reach / (34 * MM)) + 1
        for row in range(-rows, rows + 1):
            shift = (row % 2) * width / 2
            count = int(reach / width) + 2
            for column in range(-count, count + 1):
                text_object = c.beginText(column * width + shift, row * 34 * MM)
                for run_font, run in self.fonts.runs(text, self.fonts.body):
                    text_object.setFont(run_font, size)
                    text_object.textOut(run)
                c.drawText(text_object)
        c.restoreState()

    # Styles.

    def draw_business_licence(self) -> None:
        self.draw_title(40.0, 46.0)
        header = self.items(self.layout.header)
        y_mm = 56.0
        for item in header:
            self.text(26.0, y_mm, item.label, 11.0, weight=0.3)
            label_width = self.fonts.width(item.label, self.fonts.body, 11.0) / MM
            self.text(26.0 + label_width + 3.0, y_mm, item.value, 13.0, char_space=0.6)
            y_mm += 7.0
        left, right = self.layout.columns
        top, bottom = self.style.body_top_mm, self.style.body_bottom_mm
        self.draw_labelled_column(
            self.items(left), 26.0, 128.0, top, bottom, label_em=5.0
        )
        # The right column stops above the seal.
        seal_top = self.style.seal_centre[1] - SEAL_DIAMETER_MM / 2 - 2.0
        self.draw_labelled_column(
            self.items(right), 164.0, 112.0, top, seal_top, label_em=5.0
        )

    def draw_labelled_column(
        self,
        items: list[_Item],
        x_mm: float,
        width_mm: float,
        top_mm: float,
        bottom_mm: float,
        *,
        label_em: float,
        base_size: float = 12.0,
    ) -> None:
        """Items as `label   value`, the value wrapping beside its label."""
        label_size = 12.0
        value_x = x_mm + label_em * label_size / MM + 5.0
        value_width = x_mm + width_mm - value_x

        def heights(sizes: list[float]) -> list[float]:
            return [
                max(
                    self.paragraph_height(item.value, size, value_width),
                    label_size / MM * 1.2,
                )
                for item, size in zip(items, sizes, strict=True)
            ]

        gap = self.roomy_gap(items, heights, bottom_mm - top_mm, base_size, 3.2, 7.5)
        sizes = self.fit(items, heights, bottom_mm - top_mm, gap, base_size)
        y_mm = top_mm
        for item, size, height in zip(items, sizes, heights(sizes), strict=True):
            # Labels share the first line's baseline with their value.
            first_baseline = y_mm + size / MM * 1.1
            self.spaced_label(x_mm, first_baseline, item.label, label_size, label_em)
            self.draw_paragraph(value_x, y_mm, item.value, size, value_width)
            y_mm += height + gap

    @staticmethod
    def roomy_gap(
        items: list[_Item],
        heights: Callable[[list[float]], list[float]],
        available_mm: float,
        base_size: float,
        least: float,
        most: float,
    ) -> float:
        """The space between items: generous when the values are short, as on paper."""
        if len(items) < 2:
            return least
        spare = available_mm - sum(heights([base_size] * len(items)))
        return min(max(spare / (len(items) - 1), least), most)

    def fit(
        self,
        items: list[_Item],
        heights: Callable[[list[float]], list[float]],
        available_mm: float,
        gap_mm: float,
        base_size: float,
        min_size: float = 6.5,
    ) -> list[float]:
        """Value sizes that fit: long paragraphs shrink first, then everything."""
        sizes = [base_size] * len(items)

        def total(candidate: list[float]) -> float:
            return sum(heights(candidate)) + gap_mm * max(len(items) - 1, 0)

        size = base_size
        while total(sizes) > available_mm and size > min_size:
            size -= 0.5
            sizes = [size if item.long else base_size for item in items]
        size = base_size
        while total(sizes) > available_mm and size > min_size:
            size -= 0.5
            sizes = [min(s, size) for s in sizes]
        if total(sizes) > available_mm:
            names = ", ".join(item.label for item in items if item.long) or "the fields"
            raise LicenceLayoutError(
                f"the licence data does not fit on the page even in small type ({names})"
            )
        return sizes

    def draw_permit(self) -> None:
        self.draw_title(38.0, 34.0)
        header = self.items(self.layout.header)
        for item in header:
            self.text(
                self.width / MM - 26.0,
                52.0,
                f"{item.label}：{item.value}",
                11.5,
                anchor="right",
            )
        (column,) = self.layout.columns
        items = self.items(column) + [
            _Item("有效期至", self.validity_text(), long=False)
        ]
        self.draw_table(
            items,
            22.0,
            self.width / MM - 44.0,
            self.style.body_top_mm,
            self.style.body_bottom_mm,
        )

    def draw_table(
        self,
        items: list[_Item],
        x_mm: float,
        width_mm: float,
        top_mm: float,
        bottom_mm: float,
    ) -> None:
        """Items in a ruled two-column table: label cell, value cell."""
        c = self.canvas
        label_width = 42.0
        padding = 2.6
        value_width = width_mm - label_width - 2 * padding
        label_size = 10.5

        def heights(sizes: list[float], least: float = 6.0) -> list[float]:
            rows = []
            for item, size in zip(items, sizes, strict=True):
                value = self.paragraph_height(item.value, size, value_width)
                label = self.paragraph_height(
                    item.label, label_size, label_width - 2 * padding
                )
                rows.append(max(value, label, least) + 2 * padding)
            return rows

        sizes = self.fit(items, heights, bottom_mm - top_mm, 0.0, 11.0)
        # Short tables get taller rows, up to what a printed form would have.
        least = 6.0
        while least < 8.0 and sum(heights(sizes, least + 0.5)) <= bottom_mm - top_mm:
            least += 0.5
        row_heights = heights(sizes, least)
        c.setStrokeColor(self.style.frame)
        c.setLineWidth(0.8)
        total = sum(row_heights)
        c.rect(self.x(x_mm), self.y(top_mm + total), width_mm * MM, total * MM)
        c.setLineWidth(0.4)
        c.line(
            self.x(x_mm + label_width),
            self.y(top_mm),
            self.x(x_mm + label_width),
            self.y(top_mm + total),
        )
        y_mm = top_mm
        for index, (item, size, height) in enumerate(
            zip(items, sizes, row_heights, strict=True)
        ):
            if index:
                c.line(
                    self.x(x_mm), self.y(y_mm), self.x(x_mm + width_mm), self.y(y_mm)
                )
            label_height = self.paragraph_height(
                item.label, label_size, label_width - 2 * padding
            )
            self.draw_paragraph(
                x_mm + padding,
                y_mm + (height - label_height) / 2,
                item.label,
                label_size,
                label_width - 2 * padding,
                align=TA_CENTER,
            )
            value_height = self.paragraph_height(item.value, size, value_width)
            self.draw_paragraph(
                x_mm + label_width + padding,
                y_mm + (height - value_height) / 2,
                item.value,
                size,
                value_width,
            )
            y_mm += height

    def draw_certificate(self) -> None:
        self.draw_title(46.0, 40.0)
        header = self.items(self.layout.header)
        for item in header:
            self.text(
                self.width / MM / 2,
                72.0,
                f"{item.label}  {item.value}",
                13.0,
                anchor="centre",
            )
        (column,) = self.layout.columns
        items = self.items(column) + [
            _Item("有效期至", self.validity_text(), long=False)
        ]
        self.draw_ruled_lines(
            items,
            40.0,
            self.width / MM - 80.0,
            self.style.body_top_mm,
            self.style.body_bottom_mm,
        )

    def draw_ruled_lines(
        self,
        items: list[_Item],
        x_mm: float,
        width_mm: float,
        top_mm: float,
        bottom_mm: float,
    ) -> None:
        """Items as `label   value` over a fine rule, as certificates print them."""
        c = self.canvas
        label_size = 12.5
        label_em = 5.0
        value_x = x_mm + label_em * label_size / MM + 6.0
        value_width = x_mm + width_mm - value_x

        def heights(sizes: list[float]) -> list[float]:
            return [
                max(self.paragraph_height(item.value, size, value_width), 8.0)
                for item, size in zip(items, sizes, strict=True)
            ]

        gap = self.roomy_gap(items, heights, bottom_mm - top_mm, 13.0, 3.0, 6.0)
        sizes = self.fit(items, heights, bottom_mm - top_mm, gap, 13.0)
        y_mm = top_mm
        c.setStrokeColor(self.style.band)
        c.setLineWidth(0.5)
        for item, size, height in zip(items, sizes, heights(sizes), strict=True):
            first_baseline = y_mm + size / MM * 1.1
            self.spaced_label(x_mm, first_baseline, item.label, label_size, label_em)
            self.draw_paragraph(value_x, y_mm, item.value, size, value_width)
            rule = y_mm + height + 1.0
            c.setStrokeColor(self.style.band)
            c.line(self.x(value_x), self.y(rule), self.x(x_mm + width_mm), self.y(rule))
            y_mm += height + gap


class _Printed(dict):
    """Template values: each placeholder gets its field as printed."""

    def __init__(
        self, printed: Callable[[str], str], values: Mapping[str, str]
    ) -> None:
        super().__init__()
        self._printed = printed
        self._values = values

    def __missing__(self, key: str) -> str:
        return self._printed(key) if key in self._values else "—"
