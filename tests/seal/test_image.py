"""Generated seal images: every kind renders as a vector PDF and an RGBA PNG that agree,
the layout keeps text inside the rim and symmetric, and bad requests are refused."""

from __future__ import annotations

import io
import itertools
import math
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from PIL import Image
from pyhanko.pdf_utils.generic import DictionaryObject
from pyhanko.pdf_utils.reader import PdfFileReader

from hsm_sim.errors import ErrorCategory
from seal import fonts
from seal.errors import SealError
from seal.fonts import SealFontUnavailableError, load_seal_font
from seal.image import (
    GLYPH_WEIGHT,
    POINTS_PER_MM,
    SEAL_RED,
    EllipseBorder,
    Glyph,
    RectBorder,
    SealImageError,
    SealImageSpec,
    SealKind,
    StarShape,
    layout_seal,
    render_seal_pdf,
    render_seal_png,
    render_seam_strips,
    seal_size_mm,
)
from tests.conftest import require, require_tool

VECTORS = Path(__file__).resolve().parent.parent / "vectors" / "seal"
AGENCY = "某某市市场监督管理局"
LONG_AGENCY = "广州市黄埔区某某某科技创新产业发展有限公司研究院"  # 24 characters
CODE = "4401030012345"
TAXPAYER_ID = "91440101MA5CXXXX1Q"

SPECS = {
    "official": SealImageSpec(AGENCY, SealKind.OFFICIAL, code=CODE),
    "official-long": SealImageSpec(LONG_AGENCY, SealKind.OFFICIAL, code=CODE),
    "contract": SealImageSpec("某某科技有限公司", SealKind.CONTRACT, code=CODE),
    "contract-long": SealImageSpec(LONG_AGENCY, SealKind.CONTRACT, code=CODE),
    "finance": SealImageSpec("某某区财政局", SealKind.FINANCE, code=CODE),
    "finance-long": SealImageSpec(LONG_AGENCY[:20], SealKind.FINANCE, code=CODE),
    "invoice": SealImageSpec(
        "某某科技有限公司", SealKind.INVOICE, taxpayer_id=TAXPAYER_ID
    ),
    "invoice-long": SealImageSpec(
        LONG_AGENCY[:20], SealKind.INVOICE, taxpayer_id=TAXPAYER_ID
    ),
    "legal-rep": SealImageSpec("张三", SealKind.LEGAL_REP),
    "legal-rep-long": SealImageSpec("阿依古丽买买提江", SealKind.LEGAL_REP),
}
SPEC_IDS = list(SPECS)


@pytest.fixture(scope="module")
def font() -> fonts.SealFont:
    require(
        fonts.UMING_PATH.is_file(),
        "AR PL UMing is not installed (Debian fonts-arphic-uming)",
    )
    return load_seal_font()


@pytest.fixture(scope="module")
def pdfs(font: fonts.SealFont) -> dict[str, bytes]:
    return {key: render_seal_pdf(spec) for key, spec in SPECS.items()}


def _page(pdf: bytes) -> DictionaryObject:
    reader = PdfFileReader(io.BytesIO(pdf))
    pages = reader.root["/Pages"]
    assert pages["/Count"] == 1
    return pages["/Kids"][0]


def _page_size_mm(pdf: bytes) -> tuple[float, float]:
    x0, y0, x1, y1 = (float(v) for v in _page(pdf)["/MediaBox"])
    return (x1 - x0) / POINTS_PER_MM, (y1 - y0) / POINTS_PER_MM


def _alpha(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).getchannel("A")


def _pdf_alpha(pdf: bytes, dpi: int, directory: Path) -> Image.Image:
    """Coverage of the PDF as poppler's cairo backend renders it, transparent page."""
    pdftocairo = require_tool("pdftocairo")
    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "seal.pdf"
    source.write_bytes(pdf)
    command = [pdftocairo, "-png", "-transp", "-singlefile", "-r", str(dpi)]
    subprocess.run([*command, str(source), str(directory / "out")], check=True)
    return Image.open(directory / "out.png").convert("RGBA").getchannel("A")


def _overlap(a: Image.Image, b: Image.Image) -> float:
    """Intersection over union of the inked pixels of two coverage masks."""
    width, height = min(a.width, b.width), min(a.height, b.height)
    ink_a = (
        a.crop((0, 0, width, height)).point(lambda v: 255 if v > 127 else 0).tobytes()
    )
    ink_b = (
        b.crop((0, 0, width, height)).point(lambda v: 255 if v > 127 else 0).tobytes()
    )
    both = sum(1 for x, y in zip(ink_a, ink_b) if x and y)
    either = sum(1 for x, y in zip(ink_a, ink_b) if x or y)
    return both / either


# --- the PDF ------------------------------------------------------------------------


@pytest.mark.parametrize("key", SPEC_IDS)
def test_pdf_is_one_page_of_the_seals_size(pdfs: dict[str, bytes], key: str) -> None:
    width, height = _page_size_mm(pdfs[key])
    assert (width, height) == pytest.approx(seal_size_mm(SPECS[key]), abs=0.01)


def test_standard_sizes() -> None:
    assert seal_size_mm(SPECS["official"]) == (42.0, 42.0)
    assert seal_size_mm(SPECS["contract"]) == (40.0, 40.0)
    assert seal_size_mm(SPECS["finance"]) == (45.0, 30.0)
    assert seal_size_mm(SPECS["invoice"]) == (40.0, 30.0)
    assert seal_size_mm(SPECS["legal-rep"]) == (20.0, 20.0)


def test_size_override_sets_the_page(font: fonts.SealFont) -> None:
    spec = SealImageSpec(AGENCY, SealKind.OFFICIAL, code=CODE, size_mm=(38.0, 38.0))
    assert _page_size_mm(render_seal_pdf(spec)) == pytest.approx((38.0, 38.0), abs=0.01)


@pytest.mark.parametrize("key", ["official", "invoice", "legal-rep"])
def test_pdf_embeds_only_the_subset_cjk_font(
    pdfs: dict[str, bytes], key: str, tmp_path: Path
) -> None:
    pdffonts = require_tool("pdffonts")
    path = tmp_path / "seal.pdf"
    path.write_bytes(pdfs[key])
    lines = subprocess.run(
        [pdffonts, str(path)], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split() for line in lines.splitlines()[2:]]
    assert rows, lines
    for row in rows:
        name, emb, sub = row[0], row[-5], row[-4]
        assert "UMingCN" in name and "+" in name, lines
        assert (emb, sub) == ("yes", "yes"), lines


def test_pdf_is_vector_on_a_transparent_page(pdfs: dict[str, bytes]) -> None:
    page = _page(pdfs["official"])
    resources = page["/Resources"]
    assert "/XObject" not in resources  # no raster image anywhere
    content = page["/Contents"].data
    assert b" re f" not in content  # no background fill under the seal
    assert b"Tj" in content and b" Tr" in content


def test_pdf_is_reproducible(font: fonts.SealFont) -> None:
    assert render_seal_pdf(SPECS["official"]) == render_seal_pdf(SPECS["official"])


# --- the PNG ------------------------------------------------------------------------


# A point of each kind of seal where nothing is drawn: (x, y from the top) as fractions.
EMPTY_POINT = {
    SealKind.OFFICIAL: (0.5, 0.5 - 9 / 42),  # between the star's top point and the name
    SealKind.CONTRACT: (0.5, 0.5 - 9 / 42),
    SealKind.FINANCE: (0.5, 0.5 - 5 / 30),  # between the name and the middle line
    SealKind.INVOICE: (0.5, 0.5 - 5 / 30),
    SealKind.LEGAL_REP: (1.35 / 20, 0.5),  # between the rim and the characters
}


@pytest.mark.parametrize("key", SPEC_IDS)
def test_png_is_rgba_with_a_red_rim_on_transparency(
    font: fonts.SealFont, key: str
) -> None:
    spec = SPECS[key]
    dpi = 150
    image = Image.open(io.BytesIO(render_seal_png(spec, dpi=dpi)))
    width_mm, height_mm = seal_size_mm(spec)
    assert image.mode == "RGBA"
    assert image.size == (round(width_mm * dpi / 25.4), round(height_mm * dpi / 25.4))
    rim = layout_seal(spec).shapes[0]
    assert isinstance(rim, EllipseBorder | RectBorder)
    # The top middle of the rim, on the stroke's centre line, is solid seal red.
    red, green, blue, alpha = image.getpixel(
        (image.width // 2, round(rim.width / 2 * dpi / 25.4))
    )
    assert alpha == 255
    assert (red, green, blue) == tuple(round(c * 255) for c in SEAL_RED)
    if isinstance(rim, EllipseBorder):
        last_x, last_y = image.width - 1, image.height - 1
        for corner in [(0, 0), (last_x, 0), (0, last_y), (last_x, last_y)]:
            assert image.getpixel(corner)[3] == 0
    fx, fy = EMPTY_POINT[spec.kind]
    assert image.getpixel((round(fx * image.width), round(fy * image.height)))[3] == 0


@pytest.mark.parametrize(
    "key", ["official", "contract-long", "finance", "invoice", "legal-rep"]
)
def test_png_and_pdf_draw_the_same_seal(
    pdfs: dict[str, bytes], key: str, tmp_path: Path
) -> None:
    # 254 dpi is exactly 10 pixels a millimetre, so both images have the same size;
    # the two rasterisers differ only in antialiasing at the edges of strokes.
    png = _alpha(render_seal_png(SPECS[key], dpi=254))
    assert _overlap(png, _pdf_alpha(pdfs[key], 254, tmp_path)) > 0.94


@pytest.mark.parametrize(
    ("key", "golden"),
    [
        ("official", "OfficialSeal42mm127dpi.png"),
        ("invoice", "InvoiceSeal40x30mm127dpi.png"),
    ],
)
def test_render_matches_the_golden_image(
    font: fonts.SealFont, key: str, golden: str
) -> None:
    """The goldens were looked at and judged to look like real seals; a change of
    layout shows up here (regenerate them only after looking at the new render)."""
    expected = Image.open(VECTORS / golden)
    rendered = _alpha(render_seal_png(SPECS[key], dpi=127))
    assert rendered.size == expected.size
    assert _overlap(rendered, expected.getchannel("A")) > 0.97


# --- geometry -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["official", "official-long", "contract", "finance-long", "invoice"]
)
def test_name_reads_clockwise_and_is_symmetric(font: fonts.SealFont, key: str) -> None:
    spec = SPECS[key]
    drawing = layout_seal(spec)
    glyphs = drawing.glyphs[: len(spec.name)]
    assert "".join(g.char for g in glyphs) == spec.name
    centre_x = drawing.width / 2
    assert glyphs[0].x < centre_x < glyphs[-1].x
    for left, right in zip(glyphs, reversed(glyphs)):
        assert left.x + right.x == pytest.approx(2 * centre_x, abs=1e-6)
        assert left.y == pytest.approx(right.y, abs=1e-6)
        assert left.rotation == pytest.approx(-right.rotation, abs=1e-6)
        assert left.hscale == right.hscale
    # Clockwise from the left: the angle from the centre falls glyph after glyph.
    angles = [math.atan2(g.y - drawing.height / 2, g.x - centre_x) for g in glyphs]
    angles = [a if a > -math.pi / 2 else a + 2 * math.pi for a in angles]
    assert angles == sorted(angles, reverse=True)
    # On one ellipse about the centre, evenly spaced along it.
    gaps = _arc_gaps(glyphs, centre_x, drawing.height / 2)
    assert max(gaps) - min(gaps) < 0.005 * max(gaps)


def _arc_gaps(glyphs: Sequence[Glyph], cx: float, cy: float) -> list[float]:
    """Arc lengths between neighbouring glyph centres along the axis-aligned ellipse
    through them, after checking that they all lie on it."""
    (x1, y1), (x2, y2) = [
        (g.x - cx, g.y - cy) for g in (glyphs[0], glyphs[len(glyphs) // 2])
    ]
    # x²·p + y²·q = 1 through two points gives p = 1/a², q = 1/b².
    det = x1 * x1 * y2 * y2 - x2 * x2 * y1 * y1
    p, q = (y2 * y2 - y1 * y1) / det, (x1 * x1 - x2 * x2) / det
    a, b = 1 / math.sqrt(p), 1 / math.sqrt(q)
    params = []
    for g in glyphs:
        x, y = g.x - cx, g.y - cy
        assert (x / a) ** 2 + (y / b) ** 2 == pytest.approx(1.0, abs=1e-3)
        params.append(math.atan2(y / b, x / a))
    gaps = []
    for t0, t1 in itertools.pairwise(params):
        step = (t1 - t0 + math.pi) % (2 * math.pi) - math.pi
        ts = [t0 + step * k / 400 for k in range(401)]
        points = [(a * math.cos(t), b * math.sin(t)) for t in ts]
        gaps.append(sum(math.dist(u, v) for u, v in itertools.pairwise(points)))
    return gaps


@pytest.mark.parametrize("key", ["official", "contract", "finance"])
def test_code_reads_left_to_right_upright_at_the_bottom(
    font: fonts.SealFont, key: str
) -> None:
    spec = SPECS[key]
    drawing = layout_seal(spec)
    code = [g for g in drawing.glyphs if g.char.isdigit()]
    assert "".join(g.char for g in code) == CODE
    assert [g.x for g in code] == sorted(g.x for g in code)
    assert all(g.y < drawing.height / 4 for g in code)
    middle = math.radians(code[len(code) // 2].rotation)
    assert (math.cos(middle), math.sin(middle)) == pytest.approx((1.0, 0.0), abs=1e-6)


@pytest.mark.parametrize("key", ["official", "contract"])
def test_star_is_centred_and_a_third_of_the_diameter(
    font: fonts.SealFont, key: str
) -> None:
    drawing = layout_seal(SPECS[key])
    (star,) = [s for s in drawing.shapes if isinstance(s, StarShape)]
    assert (star.cx, star.cy) == pytest.approx((drawing.width / 2, drawing.height / 2))
    tips = star.points[::2]
    assert all(
        math.dist((x, y), (star.cx, star.cy)) == pytest.approx(drawing.width / 6)
        for x, y in tips
    )
    assert tips[0] == pytest.approx((star.cx, star.cy + drawing.width / 6))  # point up


def test_only_round_seals_have_a_star(font: fonts.SealFont) -> None:
    for key in ("finance", "invoice", "legal-rep"):
        assert not any(isinstance(s, StarShape) for s in layout_seal(SPECS[key]).shapes)


@pytest.mark.parametrize("key", SPEC_IDS)
def test_no_glyph_touches_the_rim(font: fonts.SealFont, key: str) -> None:
    drawing = layout_seal(SPECS[key])
    rim = drawing.shapes[0]
    for glyph in drawing.glyphs:
        cos_r, sin_r = (
            math.cos(math.radians(glyph.rotation)),
            math.sin(math.radians(glyph.rotation)),
        )
        weight = GLYPH_WEIGHT * glyph.size / 2
        half_w = glyph.size * glyph.hscale * font.advance(glyph.char) / 2 + weight
        half_h = glyph.size / 2 + weight
        for u, v in [
            (-half_w, -half_h),
            (half_w, -half_h),
            (-half_w, half_h),
            (half_w, half_h),
        ]:
            x = glyph.x + cos_r * u - sin_r * v
            y = glyph.y + sin_r * u + cos_r * v
            if isinstance(rim, EllipseBorder):
                a, b = rim.rx - rim.width / 2, rim.ry - rim.width / 2
                assert ((x - rim.cx) / a) ** 2 + ((y - rim.cy) / b) ** 2 <= 1.0, glyph
            else:
                assert isinstance(rim, RectBorder)
                assert rim.x + rim.width / 2 <= x <= rim.x + rim.w - rim.width / 2, (
                    glyph
                )
                assert rim.y + rim.width / 2 <= y <= rim.y + rim.h - rim.width / 2, (
                    glyph
                )


def test_contract_seal_says_what_it_is_under_the_star(font: fonts.SealFont) -> None:
    drawing = layout_seal(SPECS["contract"])
    row = [g for g in drawing.glyphs if g.rotation == 0 and g.char in "合同专用章"]
    assert "".join(g.char for g in row) == "合同专用章"
    (star,) = [s for s in drawing.shapes if isinstance(s, StarShape)]
    assert all(g.y < min(y for _, y in star.points) for g in row)


def test_official_seal_has_nothing_under_the_star(font: fonts.SealFont) -> None:
    drawing = layout_seal(SPECS["official"])
    assert "".join(g.char for g in drawing.glyphs) == AGENCY + CODE


def test_invoice_seal_follows_the_tax_rules(font: fonts.SealFont) -> None:
    drawing = layout_seal(SPECS["invoice"])
    assert (drawing.width, drawing.height) == (40.0, 30.0)
    assert drawing.shapes[0].width == pytest.approx(1.0)
    name_length = len(SPECS["invoice"].name)
    digits = drawing.glyphs[name_length : name_length + len(TAXPAYER_ID)]
    label = drawing.glyphs[name_length + len(TAXPAYER_ID) :]
    assert "".join(g.char for g in digits) == TAXPAYER_ID
    assert all(g.rotation == 0 and g.y == digits[0].y for g in digits)
    assert digits[-1].x - digits[0].x == pytest.approx(26.0 * 17 / 18)
    assert digits[0].size * font.digit_height == pytest.approx(3.7)
    assert "".join(g.char for g in label) == "发票专用章"
    top_of_label = label[0].y + label[0].size / 2
    assert drawing.height / 2 - top_of_label == pytest.approx(4.2)


@pytest.mark.parametrize(
    ("name", "suffix", "grid"),
    [
        ("张三", True, ["张", "三", "之", "印"]),
        ("王小明", True, ["王", "小", "明", "印"]),
        ("欧阳明月", True, ["欧", "阳", "明", "月"]),
    ],
)
def test_legal_rep_seal_reads_right_column_first(
    font: fonts.SealFont, name: str, suffix: bool, grid: list[str]
) -> None:
    drawing = layout_seal(SealImageSpec(name, SealKind.LEGAL_REP, seal_suffix=suffix))
    by_char = {g.char: g for g in drawing.glyphs}
    top_right, bottom_right, top_left, bottom_left = (by_char[c] for c in grid)
    assert top_right.x == bottom_right.x > top_left.x == bottom_left.x
    assert top_right.y == top_left.y > bottom_right.y == bottom_left.y


def test_legal_rep_without_suffix_keeps_the_name(font: fonts.SealFont) -> None:
    drawing = layout_seal(
        SealImageSpec("王小明", SealKind.LEGAL_REP, seal_suffix=False)
    )
    glyphs = sorted(drawing.glyphs, key=lambda g: -g.x)
    assert "".join(g.char for g in glyphs) == "王小明"


# --- seam strips ----------------------------------------------------------------------


@pytest.mark.parametrize("count", [2, 5])
def test_seam_strips_tile_the_seal(font: fonts.SealFont, count: int) -> None:
    strips = render_seam_strips(SPECS["official"], count)
    assert len(strips) == count
    sizes = [_page_size_mm(strip) for strip in strips]
    assert sum(w for w, _ in sizes) == pytest.approx(42.0, abs=0.01)
    assert all(h == pytest.approx(42.0, abs=0.01) for _, h in sizes)
    for strip in strips:
        content = _page(strip)["/Contents"].data
        assert (
            b"W* n" in content or b"W n" in content
        )  # clipped, not cut out of a raster


def test_seam_strips_join_into_the_whole_seal(
    pdfs: dict[str, bytes], tmp_path: Path
) -> None:
    # At 127 dpi a 14 mm strip is exactly 70 pixels wide, so the strips abut exactly.
    dpi = 127
    strips = render_seam_strips(SPECS["official"], 3)
    parts = [
        _pdf_alpha(strip, dpi, tmp_path / f"strip{i}") for i, strip in enumerate(strips)
    ]
    # Poppler rounds each page up to 71 pixels; the extra column is empty.
    parts = [part.crop((0, 0, 70, part.height)) for part in parts]
    joined = Image.new("L", (210, parts[0].height), 0)
    for index, part in enumerate(parts):
        joined.paste(part, (70 * index, 0))
    whole = _pdf_alpha(pdfs["official"], dpi, tmp_path / "whole")
    assert _overlap(joined, whole) > 0.98


@pytest.mark.parametrize("count", [0, -1, 43])
def test_seam_strips_refuse_impossible_counts(font: fonts.SealFont, count: int) -> None:
    with pytest.raises(SealImageError, match="strips"):
        render_seam_strips(SPECS["official"], count)


# --- refusals -------------------------------------------------------------------------


def test_missing_glyph_is_named(font: fonts.SealFont) -> None:
    with pytest.raises(SealImageError, match="no glyph for: 𠀀") as caught:
        render_seal_pdf(SealImageSpec("某𠀀局", SealKind.OFFICIAL))
    assert caught.value.category is ErrorCategory.BAD_REQUEST
    assert isinstance(caught.value, SealError)
    assert "UMing" in str(caught.value)


def test_too_long_name_says_how_many_fit(font: fonts.SealFont) -> None:
    with pytest.raises(
        SealImageError, match=r"has 30 characters; this 42 mm 公章 fits at most \d+"
    ):
        layout_seal(SealImageSpec("某" * 30, SealKind.OFFICIAL))
    with pytest.raises(SealImageError, match="fits at most"):
        layout_seal(SealImageSpec("某" * 30, SealKind.INVOICE, taxpayer_id=TAXPAYER_ID))
    with pytest.raises(SealImageError, match="seal code has 30 characters"):
        layout_seal(SealImageSpec(AGENCY, SealKind.OFFICIAL, code="1" * 30))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SealImageSpec("", SealKind.OFFICIAL), "needs a name"),
        (lambda: SealImageSpec("某某 局", SealKind.OFFICIAL), "spaces"),
        (lambda: SealImageSpec(AGENCY, SealKind.OFFICIAL, code="44 01"), "seal code"),
        (lambda: SealImageSpec(AGENCY, SealKind.INVOICE), "taxpayer number"),
        (
            lambda: SealImageSpec(AGENCY, SealKind.INVOICE, taxpayer_id="123"),
            "taxpayer number",
        ),
        (
            lambda: SealImageSpec(AGENCY, SealKind.OFFICIAL, taxpayer_id=TAXPAYER_ID),
            "only an invoice",
        ),
        (lambda: SealImageSpec(AGENCY, SealKind.OFFICIAL, size_mm=(42, 40)), "round"),
        (lambda: SealImageSpec(AGENCY, SealKind.FINANCE, size_mm=(30, 30)), "oval"),
        (lambda: SealImageSpec(AGENCY, SealKind.OFFICIAL, size_mm=(5, 5)), "size"),
        (
            lambda: SealImageSpec(AGENCY, SealKind.OFFICIAL, colour=(2.0, 0, 0)),
            "colour",
        ),
        (lambda: layout_seal(SealImageSpec("王", SealKind.LEGAL_REP)), "2 to 9"),
        (lambda: render_seal_png(SPECS["official"], dpi=5000), "dpi"),
    ],
)
def test_bad_requests_are_refused(
    font: fonts.SealFont, make: Callable[[], object], message: str
) -> None:
    with pytest.raises(SealImageError, match=message):
        make()


def test_wrong_types_are_type_errors() -> None:
    with pytest.raises(TypeError):
        SealImageSpec(AGENCY, "official")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        render_seam_strips(SPECS["official"], 2.5)  # type: ignore[arg-type]


# --- the font -------------------------------------------------------------------------


def test_font_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    require(
        fonts.ZENHEI_PATH.is_file(),
        "WenQuanYi Zen Hei is not installed (fonts-wqy-zenhei)",
    )
    monkeypatch.setenv(fonts.SEAL_FONT_ENV, str(fonts.ZENHEI_PATH))
    font = load_seal_font()
    assert font.family == "WenQuanYiZenHei"
    drawing = layout_seal(SPECS["official"], font)
    assert len(drawing.glyphs) == len(AGENCY) + len(CODE)


def test_environment_naming_a_missing_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(fonts.SEAL_FONT_ENV, str(tmp_path / "nothing.ttf"))
    with pytest.raises(SealFontUnavailableError, match="YINXIN_SEAL_FONT") as caught:
        load_seal_font()
    assert caught.value.category is ErrorCategory.UNAVAILABLE


def test_cff_font_is_refused() -> None:
    noto = next(
        Path("/usr/share/fonts/opentype/noto").glob("NotoSerifCJK-Regular.ttc"), None
    )
    require(noto, "Noto Serif CJK is not installed (fonts-noto-cjk)")
    with pytest.raises(SealFontUnavailableError, match="TrueType"):
        load_seal_font(noto)


def test_no_font_installed_names_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(fonts.SEAL_FONT_ENV, raising=False)
    monkeypatch.setattr(fonts, "UMING_PATH", tmp_path / "uming.ttc")
    monkeypatch.setattr(fonts, "ZENHEI_PATH", tmp_path / "wqy-zenhei.ttc")
    with pytest.raises(SealFontUnavailableError, match="fonts-arphic-uming"):
        load_seal_font()
