"""Generated seal images: one layout per seal, drawn as a vector PDF and as a PNG.

`layout_seal` turns a request into a `SealDrawing` (border, star, and every glyph with
its centre, rotation, size and width compression, in millimetres from the bottom-left
corner). The PDF and the PNG are both drawn from that one drawing, so the stamped seal
and its preview cannot drift apart.

Proportions follow what seal makers work to:
- round seals (国发〔1999〕25号 and the public-security engraving specifications): the
  official seal 42 mm across with a 1.2 mm rim, special-purpose seals 40 mm with a 1 mm
  rim, a star 14 mm across its points (a third of the diameter), the name in Song type
  reading clockwise along the upper arc; nothing under the star on an official seal,
  the purpose (合同专用章) under the star on a special-purpose seal; the seal code along
  the lower arc as on the seals issued since the national seal-code scheme;
- the invoice seal (国家税务总局公告2011年第7号): an oval 40×30 mm, 1 mm rim, the
  taxpayer number in the centre, "发票专用章" below it, no star;
- the finance seal: the oval 45×30 mm form, no star, "财务专用章" across the middle;
- the legal representative's seal: a 20 mm square, the name in columns read right to
  left, completed to four characters with 之印 or 印 as is customary.
"""

from __future__ import annotations

import bisect
import enum
import io
import math
import re
import threading
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw
from reportlab.pdfgen import canvas

from hsm_sim.errors import ErrorCategory
from seal.errors import SealError
from seal.fonts import SealFont, load_seal_font

__all__ = [
    "SEAL_RED",
    "EllipseBorder",
    "Glyph",
    "RectBorder",
    "SealDrawing",
    "SealImageError",
    "SealImageSpec",
    "SealKind",
    "StarShape",
    "layout_seal",
    "render_seal_pdf",
    "render_seal_png",
    "render_seam_strips",
    "seal_size_mm",
]

SEAL_RED: tuple[float, float, float] = (0.85, 0.05, 0.05)
POINTS_PER_MM = 72 / 25.4
MIN_SIZE_MM = 10.0
MAX_SIZE_MM = 80.0
MIN_STRIP_MM = 1.0
MAX_PNG_DPI = 1200

# Width compression below these makes characters unreadable: refuse instead. Ovals
# bend the text harder at their ends, and the invoice rules say to abbreviate there.
MIN_ARC_HSCALE = 0.35
MIN_OVAL_ARC_HSCALE = 0.5
MIN_CODE_HSCALE = 0.7
# Space between neighbouring glyphs on an arc, as a fraction of the glyph's width.
ARC_GLYPH_GAP = 0.08
# Engraved seal type is heavier than a book Song face: every glyph is outlined with a
# stroke this fraction of its size (half of it falls outside the outline).
GLYPH_WEIGHT = 0.035

# reportlab keeps font-subsetting state on the shared font object and Pillow's faces are
# cached per process; drawing is a few milliseconds, so one lock keeps threads apart.
_DRAWING_LOCK = threading.Lock()

_CODE_PATTERN = re.compile(r"[0-9A-Za-z-]{1,32}")
_TAXPAYER_ID_PATTERN = re.compile(r"[0-9A-Z]{15,20}")


class SealImageError(SealError, ValueError):
    """The seal image cannot be made from this request; the message says why."""

    category = ErrorCategory.BAD_REQUEST


class SealKind(enum.Enum):
    """Kinds of seal, by the value stored and used on the command line."""

    OFFICIAL = "official"
    CONTRACT = "contract"
    FINANCE = "finance"
    INVOICE = "invoice"
    LEGAL_REP = "legal-rep"

    @property
    def label(self) -> str:
        """The seal's Chinese name."""
        return _LABELS[self]


_LABELS = {
    SealKind.OFFICIAL: "公章",
    SealKind.CONTRACT: "合同专用章",
    SealKind.FINANCE: "财务专用章",
    SealKind.INVOICE: "发票专用章",
    SealKind.LEGAL_REP: "法定代表人章",
}

_DEFAULT_SIZE_MM = {
    SealKind.OFFICIAL: (42.0, 42.0),
    SealKind.CONTRACT: (40.0, 40.0),
    SealKind.FINANCE: (45.0, 30.0),
    SealKind.INVOICE: (40.0, 30.0),
    SealKind.LEGAL_REP: (20.0, 20.0),
}

_ROUND_KINDS = frozenset({SealKind.OFFICIAL, SealKind.CONTRACT})


@dataclass(frozen=True)
class SealImageSpec:
    """What to draw.

    `name` is the agency's name (the person's name for a legal representative's seal).
    `code` is the seal code (esID), printed along the lower arc of round and finance
    seals; the invoice and legal representative's seals have no place for it under
    their rules, and it travels in the seal data anyway. `taxpayer_id` (the unified
    social credit code) is required for, and only printed on, the invoice seal.
    `size_mm` overrides the kind's standard (width, height); round seals stay round.
    `seal_suffix` completes a legal representative's name with 之印/印.
    """

    name: str
    kind: SealKind
    code: str | None = None
    taxpayer_id: str | None = None
    size_mm: tuple[float, float] | None = None
    colour: tuple[float, float, float] = SEAL_RED
    seal_suffix: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.kind, SealKind):
            raise TypeError("kind must be a SealKind")
        if not isinstance(self.name, str):
            raise TypeError("name must be a string")
        if not self.name:
            raise SealImageError("the seal needs a name")
        if any(char.isspace() or not char.isprintable() for char in self.name):
            raise SealImageError("the name contains spaces or control characters")
        if self.code is not None and not _CODE_PATTERN.fullmatch(self.code):
            raise SealImageError(
                "the seal code must be 1 to 32 ASCII letters, digits or hyphens"
            )
        if self.kind is SealKind.INVOICE:
            if self.taxpayer_id is None:
                raise SealImageError("an invoice seal needs the taxpayer number")
            if not _TAXPAYER_ID_PATTERN.fullmatch(self.taxpayer_id):
                raise SealImageError(
                    "the taxpayer number must be 15 to 20 digits or capital letters"
                )
        elif self.taxpayer_id is not None:
            raise SealImageError("only an invoice seal carries the taxpayer number")
        if self.size_mm is not None:
            _check_size(self.kind, self.size_mm)
        if len(self.colour) != 3 or not all(
            isinstance(c, int | float) and 0.0 <= c <= 1.0 for c in self.colour
        ):
            raise SealImageError("the colour must be three RGB components from 0 to 1")


def _check_size(kind: SealKind, size: tuple[float, float]) -> None:
    if len(size) != 2 or not all(isinstance(v, int | float) for v in size):
        raise SealImageError("the size must be (width, height) in millimetres")
    width, height = size
    if not (
        MIN_SIZE_MM <= width <= MAX_SIZE_MM and MIN_SIZE_MM <= height <= MAX_SIZE_MM
    ):
        raise SealImageError(
            f"the seal size must be from {MIN_SIZE_MM:g} to {MAX_SIZE_MM:g} mm each way"
        )
    if kind in _ROUND_KINDS and width != height:
        raise SealImageError(f"a {kind.label} is round: width and height must be equal")
    if (
        kind in (SealKind.FINANCE, SealKind.INVOICE)
        and not 1.1 <= width / height <= 2.0
    ):
        raise SealImageError(
            f"a {kind.label} is a horizontal oval: width must be 1.1 to 2 times height"
        )


def seal_size_mm(spec: SealImageSpec) -> tuple[float, float]:
    """The seal's (width, height) in millimetres."""
    return spec.size_mm if spec.size_mm is not None else _DEFAULT_SIZE_MM[spec.kind]


# --- the drawing: what both renderers draw ------------------------------------------


@dataclass(frozen=True)
class EllipseBorder:
    """An elliptical rim; (rx, ry) are the half-axes of the stroke's centre line."""

    cx: float
    cy: float
    rx: float
    ry: float
    width: float


@dataclass(frozen=True)
class RectBorder:
    """A rectangular rim; (x, y, w, h) is the stroke's centre line."""

    x: float
    y: float
    w: float
    h: float
    width: float


@dataclass(frozen=True)
class StarShape:
    """A filled five-pointed star: its ten corners, outer point first."""

    cx: float
    cy: float
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Glyph:
    """One character: its em box centred on (x, y), turned `rotation` degrees
    counter-clockwise, `size` mm high and `hscale` times its natural width."""

    char: str
    x: float
    y: float
    size: float
    rotation: float = 0.0
    hscale: float = 1.0


Shape = EllipseBorder | RectBorder | StarShape


@dataclass(frozen=True)
class SealDrawing:
    """A seal laid out in millimetres, origin at the bottom-left corner."""

    width: float
    height: float
    colour: tuple[float, float, float]
    font: SealFont
    shapes: tuple[Shape, ...]
    glyphs: tuple[Glyph, ...]


def layout_seal(spec: SealImageSpec, font: SealFont | None = None) -> SealDrawing:
    """Lay the seal out; raises SealImageError if the text does not fit or the font
    lacks a character."""
    font = font if font is not None else load_seal_font()
    texts = [spec.name, spec.code or "", spec.taxpayer_id or ""]
    missing = font.missing_characters("".join(texts) + _fixed_text(spec))
    if missing:
        raise SealImageError(
            f"the seal font {font.family} has no glyph for: {' '.join(missing)}"
        )
    width, height = seal_size_mm(spec)
    if spec.kind in _ROUND_KINDS:
        shapes, glyphs = _layout_round(spec, font, width)
    elif spec.kind is SealKind.FINANCE:
        shapes, glyphs = _layout_finance(spec, font, width, height)
    elif spec.kind is SealKind.INVOICE:
        shapes, glyphs = _layout_invoice(spec, font, width, height)
    else:
        shapes, glyphs = _layout_legal_rep(spec, width, height)
    return SealDrawing(width, height, spec.colour, font, tuple(shapes), tuple(glyphs))


def _fixed_text(spec: SealImageSpec) -> str:
    if spec.kind is SealKind.LEGAL_REP:
        return "之印" if spec.seal_suffix else ""
    if spec.kind is SealKind.OFFICIAL:
        return ""
    return spec.kind.label


# --- laying out text along an ellipse -----------------------------------------------


class _EllipseTrack:
    """Arc length along an ellipse, so that text is spaced evenly on ovals too.

    Parameter t runs over two turns so that offsets either side of the top
    (t = 5π/2) or the bottom (t = 3π/2) never wrap.
    """

    _SAMPLES_PER_TURN = 2048
    TOP = 2.5 * math.pi
    BOTTOM = 1.5 * math.pi

    def __init__(self, cx: float, cy: float, a: float, b: float) -> None:
        self.cx, self.cy, self.a, self.b = cx, cy, a, b
        count = 2 * self._SAMPLES_PER_TURN
        self._ts = [4 * math.pi * k / count for k in range(count + 1)]
        lengths = [0.0]
        prev_x, prev_y = a, 0.0
        for t in self._ts[1:]:
            x, y = a * math.cos(t), b * math.sin(t)
            lengths.append(lengths[-1] + math.hypot(x - prev_x, y - prev_y))
            prev_x, prev_y = x, y
        self._lengths = lengths

    def _length_at(self, t: float) -> float:
        position = t / (4 * math.pi) * (len(self._ts) - 1)
        index = min(int(position), len(self._ts) - 2)
        frac = position - index
        return self._lengths[index] * (1 - frac) + self._lengths[index + 1] * frac

    def _t_at(self, length: float) -> float:
        index = bisect.bisect_left(self._lengths, length)
        index = min(max(index, 1), len(self._lengths) - 1)
        lo, hi = self._lengths[index - 1], self._lengths[index]
        frac = 0.0 if hi == lo else (length - lo) / (hi - lo)
        return self._ts[index - 1] + frac * (self._ts[index] - self._ts[index - 1])

    def offset_of_angle(self, anchor: float, half_span_deg: float) -> float:
        """Arc length from the anchor to the point `half_span_deg` away from it as
        seen from the centre (the rules give arc spans as angles at the centre)."""
        phi = anchor + math.radians(half_span_deg)
        t = math.atan2(self.a * math.sin(phi), self.b * math.cos(phi))
        while t < anchor - math.pi:
            t += 2 * math.pi
        while t > anchor + math.pi:
            t -= 2 * math.pi
        return self._length_at(t) - self._length_at(anchor)

    def place(self, anchor: float, offset: float) -> tuple[float, float, float]:
        """Point `offset` mm counter-clockwise from the anchor, and the direction of
        the outward normal there in degrees."""
        t = self._t_at(self._length_at(anchor) + offset)
        x = self.cx + self.a * math.cos(t)
        y = self.cy + self.b * math.sin(t)
        normal = math.degrees(math.atan2(self.a * math.sin(t), self.b * math.cos(t)))
        return x, y, normal


def _upper_arc_glyphs(
    text: str,
    track: _EllipseTrack,
    *,
    size: float,
    min_span_deg: float,
    max_span_deg: float,
    min_hscale: float,
    what: str,
    seal: str,
) -> list[Glyph]:
    """`text` along the upper arc reading clockwise from the left, each glyph upright
    towards the rim; spread to at least `min_span_deg`, compressed to fit
    `max_span_deg` (angles at the centre between the first and last glyph)."""
    count = len(text)
    if count == 1:
        x, y, _ = track.place(track.TOP, 0.0)
        return [Glyph(text, x, y, size)]
    natural = (count - 1) * size * 1.25
    shortest = 2 * track.offset_of_angle(
        track.TOP, min(min_span_deg, (count - 1) * 50) / 2
    )
    longest = 2 * track.offset_of_angle(track.TOP, max_span_deg / 2)
    length = min(max(natural, shortest), longest)
    pitch = length / (count - 1)
    hscale = min(1.0, pitch / (size * (1 + ARC_GLYPH_GAP)))
    if hscale < min_hscale:
        fits = int(longest / (size * (1 + ARC_GLYPH_GAP) * min_hscale)) + 1
        raise SealImageError(
            f"the {what} has {count} characters; this {seal} fits at most {fits}"
        )
    glyphs = []
    for index, char in enumerate(text):
        offset = ((count - 1) / 2 - index) * pitch
        x, y, normal = track.place(track.TOP, offset)
        glyphs.append(Glyph(char, x, y, size, _half_turn(normal - 90.0), hscale))
    return glyphs


def _lower_arc_glyphs(
    text: str,
    track: _EllipseTrack,
    font: SealFont,
    *,
    size: float,
    max_span_deg: float,
    seal: str,
) -> list[Glyph]:
    """`text` (the seal code) along the lower arc reading left to right, each glyph's
    foot towards the rim."""
    count = len(text)
    widest = max(font.advance(char) for char in text) * size
    pitch = widest * 1.3
    longest = 2 * track.offset_of_angle(track.BOTTOM, max_span_deg / 2)
    hscale = 1.0
    if count > 1 and (count - 1) * pitch > longest:
        pitch = longest / (count - 1)
        hscale = pitch / (widest * 1.1)
        if hscale < MIN_CODE_HSCALE:
            fits = int(longest / (widest * 1.1 * MIN_CODE_HSCALE)) + 1
            raise SealImageError(
                f"the seal code has {count} characters; this {seal} fits at most {fits}"
            )
    glyphs = []
    for index, char in enumerate(text):
        offset = (index - (count - 1) / 2) * pitch
        x, y, normal = track.place(track.BOTTOM, offset)
        glyphs.append(Glyph(char, x, y, size, _half_turn(normal + 90.0), hscale))
    return glyphs


def _half_turn(degrees: float) -> float:
    """The same angle in (-180, 180]."""
    return -((180.0 - degrees) % 360.0) + 180.0


def _row_glyphs(
    text: str, cx: float, cy: float, *, size: float, hscale: float, pitch: float
) -> list[Glyph]:
    """`text` as one horizontal line centred on (cx, cy)."""
    count = len(text)
    return [
        Glyph(char, cx + (index - (count - 1) / 2) * pitch, cy, size, 0.0, hscale)
        for index, char in enumerate(text)
    ]


def _star(cx: float, cy: float, radius: float) -> StarShape:
    # Inner radius of a regular five-pointed star: R·sin18°/sin126°.
    inner = radius * math.sin(math.radians(18)) / math.sin(math.radians(126))
    points = []
    for k in range(10):
        angle = math.radians(90 + 36 * k)
        r = radius if k % 2 == 0 else inner
        points.append((cx + r * math.cos(angle), cy + r * math.sin(angle)))
    return StarShape(cx, cy, tuple(points))


# --- the kinds of seal ---------------------------------------------------------------


def _layout_round(
    spec: SealImageSpec, font: SealFont, diameter: float
) -> tuple[list[Shape], list[Glyph]]:
    unit = diameter / 42.0
    radius = diameter / 2
    official = spec.kind is SealKind.OFFICIAL
    rim = diameter * (1.2 / 42.0 if official else 1.0 / 40.0)
    gap = 0.6 * unit
    inside = radius - rim
    seal = f"{diameter:g} mm {spec.kind.label}"
    shapes: list[Shape] = [
        EllipseBorder(radius, radius, radius - rim / 2, radius - rim / 2, rim)
    ]
    shapes.append(_star(radius, radius, diameter / 6))

    name_size = 6.6 * unit
    name_radius = inside - gap - name_size / 2
    glyphs = _upper_arc_glyphs(
        spec.name,
        _EllipseTrack(radius, radius, name_radius, name_radius),
        size=name_size,
        min_span_deg=150.0,
        max_span_deg=240.0 if official else 225.0,
        min_hscale=MIN_ARC_HSCALE,
        what="name",
        seal=seal,
    )
    if not official:
        type_size = 4.4 * unit
        star_foot = radius - diameter / 6 * math.cos(math.radians(36))
        glyphs += _row_glyphs(
            spec.kind.label,
            radius,
            star_foot - 1.6 * unit - type_size / 2,
            size=type_size,
            hscale=0.8,
            pitch=type_size * 0.9,
        )
    if spec.code:
        code_size = 2.6 * unit
        code_radius = inside - gap - code_size / 2
        glyphs += _lower_arc_glyphs(
            spec.code,
            _EllipseTrack(radius, radius, code_radius, code_radius),
            font,
            size=code_size,
            max_span_deg=70.0,
            seal=seal,
        )
    return shapes, glyphs


def _layout_finance(
    spec: SealImageSpec, font: SealFont, width: float, height: float
) -> tuple[list[Shape], list[Glyph]]:
    unit = height / 30.0
    rim = 1.0 * unit
    gap = 0.5 * unit
    cx, cy = width / 2, height / 2
    a, b = cx - rim, cy - rim
    seal = f"{width:g}×{height:g} mm {spec.kind.label}"
    shapes: list[Shape] = [EllipseBorder(cx, cy, cx - rim / 2, cy - rim / 2, rim)]
    name_size = 4.8 * unit
    inset = gap + name_size / 2
    glyphs = _upper_arc_glyphs(
        spec.name,
        _EllipseTrack(cx, cy, a - inset, b - inset),
        size=name_size,
        min_span_deg=160.0,
        max_span_deg=230.0,
        min_hscale=MIN_OVAL_ARC_HSCALE,
        what="name",
        seal=seal,
    )
    type_size = 4.6 * unit
    glyphs += _row_glyphs(
        spec.kind.label,
        cx,
        cy - 1.0 * unit,
        size=type_size,
        hscale=0.75,
        pitch=type_size * 0.85,
    )
    if spec.code:
        code_size = 2.4 * unit
        inset = gap + code_size / 2
        glyphs += _lower_arc_glyphs(
            spec.code,
            _EllipseTrack(cx, cy, a - inset, b - inset),
            font,
            size=code_size,
            max_span_deg=90.0,
            seal=seal,
        )
    return shapes, glyphs


def _layout_invoice(
    spec: SealImageSpec, font: SealFont, width: float, height: float
) -> tuple[list[Shape], list[Glyph]]:
    # Dimensions from the 2011 No. 7 notice, scaled with the height if overridden.
    unit = height / 30.0
    rim = 1.0 * unit
    gap = 0.5 * unit
    cx, cy = width / 2, height / 2
    a, b = cx - rim, cy - rim
    seal = f"{width:g}×{height:g} mm {spec.kind.label}"
    shapes: list[Shape] = [EllipseBorder(cx, cy, cx - rim / 2, cy - rim / 2, rim)]
    name_size = 4.2 * unit
    inset = gap + name_size / 2
    glyphs = _upper_arc_glyphs(
        spec.name,
        _EllipseTrack(cx, cy, a - inset, b - inset),
        size=name_size,
        min_span_deg=210.0,
        max_span_deg=250.0,
        min_hscale=MIN_OVAL_ARC_HSCALE,
        what="name",
        seal=seal,
    )
    assert spec.taxpayer_id is not None
    digit_size = 3.7 * unit / font.digit_height
    digit_width = 1.3 * unit
    widest = max(font.advance(char) for char in spec.taxpayer_id) * digit_size
    glyphs += _row_glyphs(
        spec.taxpayer_id,
        cx,
        cy + (font.em_centre - font.digit_height / 2) * digit_size,
        size=digit_size,
        hscale=digit_width / widest,
        pitch=26.0 * unit / 18,
    )
    type_size = 4.6 * unit
    glyphs += _row_glyphs(
        spec.kind.label,
        cx,
        cy - 4.2 * unit - type_size / 2,
        size=type_size,
        hscale=3.0 / 4.6,
        pitch=3.4 * unit,
    )
    return shapes, glyphs


def _legal_rep_text(spec: SealImageSpec) -> str:
    name = spec.name
    if not spec.seal_suffix:
        return name
    if len(name) == 2:
        return name + "之印"
    if len(name) % 2 == 1:
        return name + "印"
    return name


def _layout_legal_rep(
    spec: SealImageSpec, width: float, height: float
) -> tuple[list[Shape], list[Glyph]]:
    if not 2 <= len(spec.name) <= 9:
        raise SealImageError(
            "a legal representative's seal takes a name of 2 to 9 characters"
        )
    unit = min(width, height) / 20.0
    rim = 1.0 * unit
    padding = 0.7 * unit
    text = _legal_rep_text(spec)
    count = len(text)
    columns = 2 if count % 2 == 0 else (count if count <= 3 else 2)
    rows = math.ceil(count / columns)
    left, bottom = rim + padding, rim + padding
    cell_w = (width - 2 * left) / columns
    cell_h = (height - 2 * bottom) / rows
    size = min(cell_h * 0.94, cell_w * 0.94 / 0.45)
    hscale = min(1.5, cell_w * 0.94 / size)
    shapes: list[Shape] = [RectBorder(rim / 2, rim / 2, width - rim, height - rim, rim)]
    glyphs = []
    # Read as a seal is read: columns from the right, each from the top.
    for index, char in enumerate(text):
        column = columns - 1 - index // rows
        row = index % rows
        x = left + (column + 0.5) * cell_w
        y = height - bottom - (row + 0.5) * cell_h
        glyphs.append(Glyph(char, x, y, size, 0.0, hscale))
    return shapes, glyphs


# --- drawing: PDF --------------------------------------------------------------------


def render_seal_pdf(spec: SealImageSpec) -> bytes:
    """The seal as a one-page vector PDF exactly the seal's size, on a transparent
    page, with the font subset and embedded."""
    drawing = layout_seal(spec)
    with _DRAWING_LOCK:
        return _draw_pdf(drawing, 0.0, drawing.width)


def render_seam_strips(spec: SealImageSpec, count: int) -> list[bytes]:
    """The seal cut into `count` vertical strips for a seam seal (骑缝章), left to
    right: strip i is a one-page PDF of width/count, clipped from the vector seal."""
    if not isinstance(count, int) or isinstance(count, bool):
        raise TypeError("count must be an int")
    drawing = layout_seal(spec)
    strip = drawing.width / count if count > 0 else 0.0
    if count < 1 or strip < MIN_STRIP_MM:
        raise SealImageError(
            f"a {drawing.width:g} mm seal can be cut into 1 to "
            f"{int(drawing.width / MIN_STRIP_MM)} strips"
        )
    with _DRAWING_LOCK:
        return [_draw_pdf(drawing, index * strip, strip) for index in range(count)]


def _draw_pdf(drawing: SealDrawing, left: float, width: float) -> bytes:
    out = io.BytesIO()
    pdf = canvas.Canvas(
        out,
        pagesize=(width * POINTS_PER_MM, drawing.height * POINTS_PER_MM),
        invariant=True,
        pageCompression=True,
        # Otherwise reportlab's page preamble selects Helvetica, which is not embedded.
        initialFontName=drawing.font.reportlab_name,
    )
    pdf.setCreator("Yinxin")
    pdf.scale(POINTS_PER_MM, POINTS_PER_MM)
    pdf.translate(-left, 0)
    clip = pdf.beginPath()
    clip.rect(left, 0, width, drawing.height)
    pdf.clipPath(clip, stroke=0, fill=0)
    pdf.setStrokeColorRGB(*drawing.colour)
    pdf.setFillColorRGB(*drawing.colour)
    for shape in drawing.shapes:
        if isinstance(shape, EllipseBorder):
            pdf.setLineWidth(shape.width)
            pdf.ellipse(
                shape.cx - shape.rx,
                shape.cy - shape.ry,
                shape.cx + shape.rx,
                shape.cy + shape.ry,
                stroke=1,
                fill=0,
            )
        elif isinstance(shape, RectBorder):
            pdf.setLineWidth(shape.width)
            pdf.setLineJoin(0)
            pdf.rect(shape.x, shape.y, shape.w, shape.h, stroke=1, fill=0)
        else:
            path = pdf.beginPath()
            path.moveTo(*shape.points[0])
            for point in shape.points[1:]:
                path.lineTo(*point)
            path.close()
            pdf.drawPath(path, stroke=0, fill=1)
    font = drawing.font
    for glyph in drawing.glyphs:
        # A strip carries only the glyphs it shows, so its text is only what it shows.
        if abs(glyph.x - (left + width / 2)) > width / 2 + glyph.size * 0.75:
            continue
        pdf.saveState()
        pdf.translate(glyph.x, glyph.y)
        pdf.rotate(glyph.rotation)
        pdf.scale(glyph.hscale, 1.0)
        pdf.setFont(font.reportlab_name, glyph.size)
        pdf.setLineWidth(GLYPH_WEIGHT * glyph.size)
        pdf.setLineJoin(1)
        pdf.drawCentredString(0, -font.em_centre * glyph.size, glyph.char, mode=2)
        pdf.restoreState()
    pdf.showPage()
    pdf.save()
    return out.getvalue()


# --- drawing: PNG --------------------------------------------------------------------


def render_seal_png(spec: SealImageSpec, dpi: int = 300) -> bytes:
    """The seal as an RGBA PNG with a transparent background, at `dpi`."""
    if not isinstance(dpi, int) or isinstance(dpi, bool):
        raise TypeError("dpi must be an int")
    if not 36 <= dpi <= MAX_PNG_DPI:
        raise SealImageError(f"the PNG resolution must be from 36 to {MAX_PNG_DPI} dpi")
    drawing = layout_seal(spec)
    with _DRAWING_LOCK:
        mask = _rasterise(drawing, dpi)
    red, green, blue = (round(c * 255) for c in drawing.colour)
    image = Image.new("RGBA", mask.size, (red, green, blue, 0))
    image.putalpha(mask)
    out = io.BytesIO()
    image.save(out, format="PNG", dpi=(dpi, dpi), optimize=True)
    return out.getvalue()


def _rasterise(drawing: SealDrawing, dpi: int) -> Image.Image:
    """Coverage mask of the drawing: drawn supersampled, then box-filtered down."""
    px_per_mm = dpi / 25.4
    out_w = max(1, round(drawing.width * px_per_mm))
    out_h = max(1, round(drawing.height * px_per_mm))
    supersample = max(1, min(4, 6000 // max(out_w, out_h)))
    scale = px_per_mm * supersample
    mask = Image.new("L", (out_w * supersample, out_h * supersample), 0)
    pen = ImageDraw.Draw(mask)

    def to_px(x: float, y: float) -> tuple[float, float]:
        return x * scale, (drawing.height - y) * scale

    for shape in drawing.shapes:
        if isinstance(shape, EllipseBorder):
            half = shape.width / 2
            x0, y0 = to_px(shape.cx - shape.rx - half, shape.cy + shape.ry + half)
            x1, y1 = to_px(shape.cx + shape.rx + half, shape.cy - shape.ry - half)
            pen.ellipse(
                (x0, y0, x1, y1), outline=255, width=max(1, round(shape.width * scale))
            )
        elif isinstance(shape, RectBorder):
            half = shape.width / 2
            x0, y0 = to_px(shape.x - half, shape.y + shape.h + half)
            x1, y1 = to_px(shape.x + shape.w + half, shape.y - half)
            pen.rectangle(
                (x0, y0, x1, y1), outline=255, width=max(1, round(shape.width * scale))
            )
        else:
            pen.polygon([to_px(x, y) for x, y in shape.points], fill=255)
    for glyph in drawing.glyphs:
        _stamp_glyph(mask, glyph, drawing, scale)
    return mask.reduce(supersample) if supersample > 1 else mask


def _stamp_glyph(
    mask: Image.Image, glyph: Glyph, drawing: SealDrawing, scale: float
) -> None:
    font = drawing.font
    size_px = max(1, round(glyph.size * scale))
    face = font.pillow_font(size_px)
    weight = GLYPH_WEIGHT * size_px / 2
    bbox = face.getbbox(glyph.char, anchor="ms", stroke_width=weight)
    left, top = math.floor(bbox[0]), math.floor(bbox[1])
    right, bottom = math.ceil(bbox[2]), math.ceil(bbox[3])
    pad = 2
    upright = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    anchor_x, anchor_y = pad - left, pad - top
    ImageDraw.Draw(upright).text(
        (anchor_x, anchor_y),
        glyph.char,
        fill=255,
        font=face,
        anchor="ms",
        stroke_width=weight,
        stroke_fill=255,
    )
    # The em-box centre of the upright glyph goes to the glyph's place on the seal.
    centre_x = anchor_x
    centre_y = anchor_y - font.em_centre * size_px
    cos_r = math.cos(math.radians(glyph.rotation))
    sin_r = math.sin(math.radians(glyph.rotation))
    hs = glyph.hscale
    target_x, target_y = glyph.x * scale, (drawing.height - glyph.y) * scale

    def forward(gx: float, gy: float) -> tuple[float, float]:
        dx, dy = gx - centre_x, gy - centre_y
        return (
            target_x + cos_r * hs * dx + sin_r * dy,
            target_y - sin_r * hs * dx + cos_r * dy,
        )

    corners = [forward(x, y) for x in (0, upright.width) for y in (0, upright.height)]
    box = (
        max(0, math.floor(min(x for x, _ in corners))),
        max(0, math.floor(min(y for _, y in corners))),
        min(mask.width, math.ceil(max(x for x, _ in corners))),
        min(mask.height, math.ceil(max(y for _, y in corners))),
    )
    if box[0] >= box[2] or box[1] >= box[3]:
        return
    # Pillow's affine transform maps each output pixel back to the upright glyph.
    ox, oy = box[0] - target_x, box[1] - target_y
    coefficients = (
        cos_r / hs,
        -sin_r / hs,
        centre_x + (cos_r * ox - sin_r * oy) / hs,
        sin_r,
        cos_r,
        centre_y + sin_r * ox + cos_r * oy,
    )
    patch = upright.transform(
        (box[2] - box[0], box[3] - box[1]),
        Image.Transform.AFFINE,
        coefficients,
        resample=Image.Resampling.BICUBIC,
    )
    mask.paste(ImageChops.lighter(mask.crop(box), patch), box)
