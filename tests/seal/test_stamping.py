"""Stamping: every placement lands where asked (checked in the PDF and on pdftoppm's
pixels), one signature covers all the seal images, each PAdES level carries what it
promises, co-sealing keeps earlier seals valid, batches skip bad files, and hostile
input ends in a one-line StampError."""

from __future__ import annotations

import io
import subprocess
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.fields import MDPPerm
from pyhanko.sign.validation import (
    DocumentSecurityStore,
    read_certification_data,
    validate_pdf_signature,
    validate_pdf_timestamp,
)
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from reportlab.lib.pagesizes import A4, landscape
from reportlab.pdfgen import canvas

from hsm_sim.errors import ErrorCategory
from pki.registry import register_agency
from pki.uscc import compute_uscc_check_character
from seal.errors import DocumentLockedError, StampError, TrustServiceError
from seal.stamping import (
    POINTS_PER_MM,
    At,
    Level,
    OnKeyword,
    SeamSeal,
    Side,
    Stamper,
    StampRequest,
    _seam_groups,
    stamp_batch,
)
from seal.trust_services import TrustServices
from tests.conftest import require_tool
from tests.seal import attacks
from tests.seal.conftest import (
    KEYWORD,
    SEAL_DIAMETER_MM,
    issue_credential,
    pixels,
    red_bounds,
    red_count,
    render_page,
    validate_all,
)

DPI = 50
PX_PER_MM = DPI / 25.4
SEAL_PX = SEAL_DIAMETER_MM * PX_PER_MM
A4_W, A4_H = A4


def _reader(pdf: bytes) -> PdfFileReader:
    return PdfFileReader(io.BytesIO(pdf))


def _widget_rect(pdf: bytes) -> tuple[int, tuple[float, float, float, float]]:
    """The page index and /Rect of the (only) new signature's widget."""
    reader = _reader(pdf)
    (signature,) = reader.embedded_regular_signatures[-1:]
    field = signature.sig_field
    rect = tuple(float(v) for v in field["/Rect"])
    page_ref = field.raw_get("/P")
    for index in range(int(reader.root["/Pages"]["/Count"])):
        if reader.find_page_for_modification(index)[0].idnum == page_ref.idnum:
            return index, rect  # type: ignore[return-value]
    raise AssertionError("the widget's page is not in the document")


def _centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _assert_seal_at(image, x_mm: float, y_mm: float) -> None:
    """A whole seal (its rim's bounding box) centred on (x_mm, y_mm) from the top-left."""
    cx, cy = x_mm * PX_PER_MM, y_mm * PX_PER_MM
    margin = SEAL_PX * 0.75
    window = (int(cx - margin), int(cy - margin), int(cx + margin), int(cy + margin))
    bounds = red_bounds(image.crop(window))
    assert bounds is not None, f"no seal near ({x_mm}, {y_mm}) mm"
    left, top, right, bottom = bounds
    assert abs(window[0] + (left + right) / 2 - cx) <= 2
    assert abs(window[1] + (top + bottom) / 2 - cy) <= 2
    assert abs((right - left) - SEAL_PX) <= 3 and abs((bottom - top) - SEAL_PX) <= 3


def _assert_one_covering_signature(pdf: bytes, trust_root) -> None:
    (status,) = validate_all(pdf, trust_root)
    assert status.bottom_line, status.pretty_print_details()
    assert status.intact and status.valid and status.trusted
    assert status.coverage is SignatureCoverageLevel.ENTIRE_FILE


B_B = Level.B_B


# -- placement -----------------------------------------------------------------------


def test_coordinates_put_the_seal_centre_there(
    stamper, pdf_factory, trust_root, tmp_path
):
    sealed = stamper.stamp(
        pdf_factory(2),
        StampRequest(placements=(At(page=2, x_mm=60, y_mm=80),), level=B_B),
    )

    page_index, rect = _widget_rect(sealed)
    assert page_index == 1
    cx, cy = _centre(rect)
    assert cx == pytest.approx(60 * POINTS_PER_MM, abs=0.01)
    assert cy == pytest.approx(A4_H - 80 * POINTS_PER_MM, abs=0.01)
    assert rect[2] - rect[0] == pytest.approx(
        SEAL_DIAMETER_MM * POINTS_PER_MM, abs=0.01
    )
    _assert_seal_at(render_page(sealed, 2, tmp_path, DPI), 60, 80)
    assert red_bounds(render_page(sealed, 1, tmp_path, DPI)) is None
    _assert_one_covering_signature(sealed, trust_root)


def _rotated_pdf(seal_font) -> bytes:
    """An A4 portrait page stored landscape-wide with /Rotate 90 (as scanners write)."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=landscape(A4))
    pdf.setFont(seal_font.reportlab_name, 14)
    pdf.drawString(100, 100, KEYWORD)
    pdf.showPage()
    pdf.save()
    writer = IncrementalPdfFileWriter(io.BytesIO(buffer.getvalue()))
    page_ref, _ = writer.find_page_for_modification(0)
    page_ref.get_object()[generic.NameObject("/Rotate")] = generic.NumberObject(90)
    writer.update_container(page_ref.get_object())
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_rotated_pages_get_an_upright_seal_at_the_displayed_position(
    stamper, pdf_factory, seal_font, trust_root, tmp_path
):
    rotated = _rotated_pdf(seal_font)
    request = StampRequest(placements=(At(page=1, x_mm=60, y_mm=80),), level=B_B)
    on_rotated = render_page(stamper.stamp(rotated, request), 1, tmp_path, DPI)
    on_plain = render_page(stamper.stamp(pdf_factory(), request), 1, tmp_path, DPI)
    assert on_rotated.size == on_plain.size  # displayed portrait

    _assert_seal_at(on_rotated, 60, 80)
    # Upright: the same pixels as on an unrotated page.
    box = red_bounds(on_plain)
    assert box is not None
    differing = sum(
        1
        for a, b in zip(
            pixels(on_rotated.crop(box)), pixels(on_plain.crop(box)), strict=True
        )
        if max(abs(x - y) for x, y in zip(a, b, strict=True)) > 96
    )
    assert differing < 0.03 * (box[2] - box[0]) * (box[3] - box[1])


def test_keyword_in_a_cjk_document_centres_the_seal_on_it(
    stamper, pdf_factory, trust_root, tmp_path
):
    document = pdf_factory(3, keyword_at={1: [(300.0, 200.0)]})
    sealed = stamper.stamp(
        document, StampRequest(placements=(OnKeyword(KEYWORD),), level=B_B)
    )

    page_index, rect = _widget_rect(sealed)
    assert page_index == 1
    cx, cy = _centre(rect)
    assert cx == pytest.approx(300 + 3 * 14 / 2, abs=1)  # three 14-pt characters
    assert 200 < cy < 200 + 14
    image = render_page(sealed, 2, tmp_path, DPI)
    _assert_seal_at(image, cx / POINTS_PER_MM, (A4_H - cy) / POINTS_PER_MM)
    _assert_one_covering_signature(sealed, trust_root)


@pytest.mark.parametrize(
    ("occurrence", "expected_pages"),
    [("first", [0]), ("last", [2]), (2, [1]), ("all", [0, 1, 2])],
)
def test_keyword_occurrences(
    stamper, pdf_factory, trust_root, tmp_path, occurrence, expected_pages
):
    spots = {page: [(100.0 + 100 * page, 300.0)] for page in range(3)}
    sealed = stamper.stamp(
        pdf_factory(3, keyword_at=spots),
        StampRequest(placements=(OnKeyword(KEYWORD, occurrence),), level=B_B),
    )
    _assert_one_covering_signature(sealed, trust_root)
    sealed_pages = [
        page
        for page in range(3)
        if red_bounds(render_page(sealed, page + 1, tmp_path, DPI)) is not None
    ]
    assert sealed_pages == expected_pages
    for page in expected_pages:
        x, y = spots[page][0]
        _assert_seal_at(
            render_page(sealed, page + 1, tmp_path, DPI),
            (x + 21) / POINTS_PER_MM,
            (A4_H - y - 5) / POINTS_PER_MM,
        )


def test_several_placements_are_drawn_and_covered_by_one_signature(
    stamper, pdf_factory, trust_root, tmp_path
):
    document = pdf_factory(3, keyword_at={2: [(350.0, 150.0)]})
    request = StampRequest(
        placements=(
            At(page=1, x_mm=150, y_mm=60),
            At(page=3, x_mm=40, y_mm=40),
            OnKeyword(KEYWORD),
        ),
        level=B_B,
    )
    sealed = stamper.stamp(document, request)

    _assert_one_covering_signature(sealed, trust_root)
    assert len(_reader(sealed).embedded_signatures) == 1
    _assert_seal_at(render_page(sealed, 1, tmp_path, DPI), 150, 60)
    third = render_page(sealed, 3, tmp_path, DPI)
    _assert_seal_at(third, 40, 40)
    _assert_seal_at(third, (350 + 21) / POINTS_PER_MM, (A4_H - 155) / POINTS_PER_MM)
    assert red_bounds(render_page(sealed, 2, tmp_path, DPI)) is None


def test_page_content_that_leaves_its_graphics_state_changed_cannot_move_the_seal(
    stamper, pdf_factory, tmp_path
):
    """Content split over several streams, ending scaled and recoloured without q/Q."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf_factory(1)))
    careless = writer.add_object(
        generic.StreamObject(stream_data=b"0.5 0 0 0.5 0 0 cm 0 1 0 rg")
    )
    writer.add_stream_to_page(0, careless)
    out = io.BytesIO()
    writer.write(out)
    request = StampRequest(
        placements=(At(page=1, x_mm=40, y_mm=40), At(page=1, x_mm=150, y_mm=200)),
        level=B_B,
    )
    page = render_page(stamper.stamp(out.getvalue(), request), 1, tmp_path, DPI)
    _assert_seal_at(page, 40, 40)
    _assert_seal_at(page, 150, 200)  # drawn into the content, after the careless stream


def test_no_placement_makes_an_invisible_seal(
    stamper, pdf_factory, trust_root, tmp_path
):
    sealed = stamper.stamp(pdf_factory(), StampRequest(level=B_B))
    _, rect = _widget_rect(sealed)
    assert rect[2] - rect[0] == 0 and rect[3] - rect[1] == 0
    assert red_bounds(render_page(sealed, 1, tmp_path, DPI)) is None
    _assert_one_covering_signature(sealed, trust_root)


# -- the seam seal -------------------------------------------------------------------


@pytest.mark.parametrize("side", [Side.RIGHT, Side.LEFT])
def test_seam_seal_puts_a_strip_at_the_edge_of_every_page(
    stamper, pdf_factory, trust_root, tmp_path, side
):
    pages = 4
    sealed = stamper.stamp(
        pdf_factory(pages), StampRequest(seam=SeamSeal(side=side), level=B_B)
    )
    _assert_one_covering_signature(sealed, trust_root)

    strip_px = SEAL_PX / pages
    widths = []
    for page in range(1, pages + 1):
        image = render_page(sealed, page, tmp_path, DPI)
        bounds = red_bounds(image)
        assert bounds is not None, f"no seam strip on page {page}"
        left, top, right, bottom = bounds
        if side is Side.RIGHT:
            assert right >= image.width - 2 and left >= image.width - strip_px - 2
        else:
            assert left <= 1 and right <= strip_px + 2
        assert abs((top + bottom) / 2 - image.height / 2) <= 2
        assert abs((bottom - top) - SEAL_PX) <= 4 or page in (
            1,
            pages,
        )  # ring's ends are shorter
        widths.append(right - left)
    assert sum(widths) == pytest.approx(SEAL_PX, abs=pages * 2)


def test_seam_strips_together_make_the_whole_seal(stamper, pdf_factory, tmp_path):
    """Strip i of page i, put side by side, gives the seal drawn whole elsewhere."""
    pages = 3
    sealed = stamper.stamp(
        pdf_factory(pages),
        StampRequest(
            placements=(At(page=1, x_mm=100, y_mm=100),), seam=SeamSeal(), level=B_B
        ),
    )
    first = render_page(sealed, 1, tmp_path, 100)
    whole_box = red_bounds(first.crop((0, 0, first.width // 2 + 200, first.height)))
    assert whole_box is not None
    whole_red = red_count(first.crop(whole_box))
    strips_red = 0
    for page in range(1, pages + 1):
        image = render_page(sealed, page, tmp_path, 100)
        edge = image.crop(
            (
                image.width - int(SEAL_DIAMETER_MM / 25.4 * 100) - 4,
                0,
                image.width,
                image.height,
            )
        )
        strips_red += red_count(edge)
    assert strips_red == pytest.approx(whole_red, rel=0.05)


def test_long_documents_get_one_seam_seal_per_group(stamper, pdf_factory, tmp_path):
    sealed = stamper.stamp(
        pdf_factory(5), StampRequest(seam=SeamSeal(pages_per_image=2), level=B_B)
    )
    # 5 pages in groups of at most 2: 2 + 2 + 1; a group's first page shows its first strip.
    widths = []
    for page in range(1, 6):
        bounds = red_bounds(render_page(sealed, page, tmp_path, DPI))
        assert bounds is not None
        widths.append(bounds[2] - bounds[0])
    half, whole = SEAL_PX / 2, SEAL_PX
    for width, expected in zip(widths, [half, half, half, half, whole], strict=True):
        assert abs(width - expected) <= 3


def test_seam_groups_are_as_even_as_allowed():
    assert [len(g) for g in _seam_groups(45, 20)] == [15, 15, 15]
    assert [len(g) for g in _seam_groups(20, 20)] == [20]
    assert [len(g) for g in _seam_groups(21, 20)] == [11, 10]
    assert [list(g) for g in _seam_groups(5, 2)] == [[0, 1], [2, 3], [4]]


# -- verifiers -------------------------------------------------------------------------


def test_pdfsig_and_qpdf_accept_a_b_b_seal(stamper, pdf_factory, tmp_path, credential):
    pdfsig = require_tool("pdfsig")
    qpdf = require_tool("qpdf")
    document = pdf_factory(3, keyword_at={2: [(300.0, 200.0)]})
    sealed = stamper.stamp(
        document,
        StampRequest(placements=(OnKeyword(KEYWORD),), seam=SeamSeal(), level=B_B),
    )
    path = tmp_path / "sealed.pdf"
    path.write_bytes(sealed)

    report = subprocess.run(
        [pdfsig, str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert "Signature Validation: Signature is Valid." in report
    assert "Total document signed" in report
    assert "Signature Type: ETSI.CAdES.detached" in report
    assert (
        f"Signer Certificate Common Name: {credential.certificate.subject.rfc4514_string().split(',')[0][3:]}"
        in report
    )
    check = subprocess.run(
        [qpdf, "--check", str(path)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No syntax or stream encoding errors found" in check.stdout


# -- levels ----------------------------------------------------------------------------


def test_b_t_carries_a_timestamp_pyhanko_trusts(stamper, pdf_factory, trust_root):
    sealed = stamper.stamp(
        pdf_factory(), StampRequest(placements=(At(1, 100, 100),), level=Level.B_T)
    )
    (status,) = validate_all(sealed, trust_root)
    assert status.bottom_line, status.pretty_print_details()
    assert status.coverage is SignatureCoverageLevel.ENTIRE_FILE
    timestamp = status.timestamp_validity
    assert (
        timestamp is not None
        and timestamp.intact
        and timestamp.valid
        and timestamp.trusted
    )
    assert "/DSS" not in _reader(sealed).root


def _offline_context(reader: PdfFileReader, trust_root) -> ValidationContext:
    """Only what the file embeds: no fetching, and every certificate must have revocation data."""
    return DocumentSecurityStore.read_dss(reader).as_validation_context(
        {
            "trust_roots": [trust_root],
            "allow_fetching": False,
            "revocation_mode": "require",
        }
    )


def test_b_lt_embeds_revocation_data_and_validates_offline(
    stamper, pdf_factory, trust_root
):
    sealed = stamper.stamp(
        pdf_factory(), StampRequest(placements=(At(1, 100, 100),))
    )  # default level
    assert StampRequest().level is Level.B_LT
    dss = _reader(sealed).root["/DSS"]
    assert len(dss["/Certs"]) >= 3
    assert (
        len(dss.get("/OCSPs", [])) + len(dss.get("/CRLs", [])) >= 3
    )  # seal cert, seal CA, TSA chain
    reader = _reader(sealed)
    (signature,) = reader.embedded_regular_signatures
    status = validate_pdf_signature(signature, _offline_context(reader, trust_root))
    assert status.bottom_line, status.pretty_print_details()
    assert status.timestamp_validity is not None and status.timestamp_validity.trusted


def test_b_lta_adds_a_document_timestamp(stamper, pdf_factory, trust_root):
    sealed = stamper.stamp(
        pdf_factory(), StampRequest(placements=(At(1, 100, 100),), level=Level.B_LTA)
    )
    reader = _reader(sealed)
    (document_timestamp,) = reader.embedded_timestamp_signatures
    stamp_status = validate_pdf_timestamp(
        document_timestamp, _offline_context(reader, trust_root)
    )
    assert stamp_status.intact and stamp_status.valid and stamp_status.trusted
    # After the document timestamp pyHanko stores the TSA chain's revocation data.
    assert stamp_status.coverage is SignatureCoverageLevel.ENTIRE_REVISION
    assert stamp_status.modification_level is ModificationLevel.LTA_UPDATES
    (signature,) = reader.embedded_regular_signatures
    status = validate_pdf_signature(signature, _offline_context(reader, trust_root))
    assert status.bottom_line, status.pretty_print_details()


def test_levels_need_their_services(credential, pdf_factory):
    bare = Stamper(credential, services=TrustServices())
    with pytest.raises(StampError, match="timestamp authority"):
        bare.stamp(pdf_factory(), StampRequest(level=Level.B_T))
    with pytest.raises(StampError, match="revocation source"):
        Stamper(credential, services=TrustServices(timestamp=lambda r: b"")).stamp(
            pdf_factory(), StampRequest(level=Level.B_LT)
        )


def test_a_tsa_that_answers_garbage_is_a_trust_service_error(credential, pdf_factory):
    broken = Stamper(
        credential,
        services=TrustServices(timestamp=lambda request: b"\x30\x03\x02\x01\x00"),
    )
    with pytest.raises(TrustServiceError) as failure:
        broken.stamp(pdf_factory(), StampRequest(level=Level.B_T))
    assert failure.value.category is ErrorCategory.UNAVAILABLE


def test_level_names_parse():
    assert Level.parse("b-lta") is Level.B_LTA
    assert Level.parse("LT") is Level.B_LT
    assert Level.parse("B_T") is Level.B_T
    with pytest.raises(ValueError, match="B-B, B-T, B-LT, B-LTA"):
        Level.parse("B-X")


# -- certification and co-sealing ---------------------------------------------------------


def test_certified_documents_refuse_any_further_seal(stamper, pdf_factory, trust_root):
    sealed = stamper.stamp(
        pdf_factory(), StampRequest(placements=(At(1, 100, 100),), certify=True)
    )
    certification = read_certification_data(_reader(sealed))
    assert certification is not None and certification.permission is MDPPerm.NO_CHANGES
    assert validate_all(sealed, trust_root)[0].bottom_line
    with pytest.raises(DocumentLockedError) as locked:
        stamper.stamp(sealed, StampRequest(placements=(At(1, 50, 50),), level=B_B))
    assert locked.value.category is ErrorCategory.CONFLICT


@pytest.fixture(scope="module")
def second_agency_stamper(node, seal_image, services):
    body = "11350100MB0002001"
    uscc = body + compute_uscc_check_character(body)
    with node.sessions.begin() as session:
        register_agency(session, name="某某市财政局", uscc=uscc, region="350100")
    credential = issue_credential(
        node,
        key_label="seal-finance-bureau",
        agency_uscc=uscc,
        image_pdf=seal_image,
        seal_data=b"\x04\x01\x02",
    )
    return Stamper(credential, services=services)


def test_co_sealing_by_two_agencies_keeps_both_seals_valid(
    stamper, second_agency_stamper, pdf_factory, trust_root, tmp_path
):
    document = pdf_factory(2)
    first = stamper.stamp(
        document, StampRequest(placements=(At(2, 60, 200),), seam=SeamSeal())
    )
    both = second_agency_stamper.stamp(
        first, StampRequest(placements=(At(2, 150, 200),))
    )

    assert both.startswith(first)  # a new revision; the first agency's bytes untouched
    statuses = validate_all(both, trust_root)
    assert len(statuses) == 2
    for status in statuses:
        assert status.bottom_line, status.pretty_print_details()
    assert [s.signing_cert.subject.native["organization_name"] for s in statuses] == [
        "某某市市场监督管理局",
        "某某市财政局",
    ]
    page = render_page(both, 2, tmp_path, DPI)
    _assert_seal_at(page, 60, 200)
    _assert_seal_at(page, 150, 200)
    field_names = [s.field_name for s in _reader(both).embedded_regular_signatures]
    assert len(set(field_names)) == 2


def test_a_further_seal_cannot_add_page_content(
    stamper, second_agency_stamper, pdf_factory
):
    first = stamper.stamp(
        pdf_factory(2), StampRequest(placements=(At(1, 60, 60),), level=B_B)
    )
    with pytest.raises(StampError, match="already carries a seal"):
        second_agency_stamper.stamp(
            first,
            StampRequest(placements=(At(1, 150, 60),), seam=SeamSeal(), level=B_B),
        )
    again = stamper.stamp(first, StampRequest(placements=(At(1, 150, 60),), level=B_B))
    names = [s.field_name for s in _reader(again).embedded_regular_signatures]
    assert names[0] != names[1]


# -- batch -------------------------------------------------------------------------------


def test_batch_skips_a_bad_file_and_stamps_the_rest(
    credential, services, pdf_factory, trust_root, tmp_path
):
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    for name in ("a.pdf", "b.pdf", "d.pdf"):
        (inbox / name).write_bytes(pdf_factory(2))
    (inbox / "c.pdf").write_bytes(b"this is a scanned letter, not a PDF")
    (inbox / "notes.txt").write_text("not a PDF name, not picked up")
    seen = []

    report = stamp_batch(
        inbox,
        outbox,
        StampRequest(placements=(At(1, 100, 100),), level=B_B),
        credential=credential,
        services=services,
        progress=lambda done, total, item: seen.append(
            (done, total, item.source.name, item.error is None)
        ),
    )
    assert [item.source.name for item in report.stamped] == ["a.pdf", "b.pdf", "d.pdf"]
    (failure,) = report.failed
    assert failure.source.name == "c.pdf" and failure.output is None
    assert "not a PDF" in (failure.error or "")
    assert seen == [
        (1, 4, "a.pdf", True),
        (2, 4, "b.pdf", True),
        (3, 4, "c.pdf", False),
        (4, 4, "d.pdf", True),
    ]
    assert sorted(p.name for p in outbox.iterdir()) == ["a.pdf", "b.pdf", "d.pdf"]
    for item in report.stamped:
        assert item.output is not None
        _assert_one_covering_signature(item.output.read_bytes(), trust_root)


def test_batch_refuses_to_write_over_its_inputs(stamper, tmp_path):
    (tmp_path / "a.pdf").write_bytes(b"%PDF-1.4")
    with pytest.raises(StampError, match="must not be the input directory"):
        stamper.stamp_batch(tmp_path, tmp_path, StampRequest(level=B_B))


def test_one_stamper_serves_several_threads(stamper, pdf_factory, trust_root):
    document = pdf_factory(2)
    request = StampRequest(
        placements=(At(1, 100, 100),), seam=SeamSeal(), level=Level.B_T
    )
    with ThreadPoolExecutor(max_workers=4) as pool:
        sealed = list(pool.map(lambda _: stamper.stamp(document, request), range(8)))
    for output in sealed:
        _assert_one_covering_signature(output, trust_root)


# -- refusals ----------------------------------------------------------------------------


def _truncated(pdf: bytes) -> bytes:
    return pdf[: len(pdf) // 2]


def _encrypted(pdf: bytes, tmp_path: Path) -> bytes:
    qpdf = require_tool("qpdf")
    source, target = tmp_path / "plain.pdf", tmp_path / "locked.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        [qpdf, "--encrypt", "user", "owner", "256", "--", str(source), str(target)],
        check=True,
    )
    return target.read_bytes()


def _page_tree_loop(pdf: bytes, tmp_path: Path) -> bytes:
    """A well-formed file whose page tree lists itself as its first kid."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    pages_ref = writer.root.raw_get("/Pages")
    pages_ref.get_object()["/Kids"].insert(0, pages_ref)
    writer.mark_update(pages_ref)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda pdf, tmp: b"GIF89a not a document", "not a PDF"),
        (lambda pdf, tmp: _truncated(pdf), "PDF"),
        (lambda pdf, tmp: b"%PDF-1.7\n" + b"\x00" * 4096, "PDF"),
        (_page_tree_loop, "page tree has a loop"),
        (_encrypted, "encrypted"),
    ],
    ids=["not-pdf", "truncated", "header-only", "page-tree-loop", "encrypted"],
)
def test_hostile_or_broken_input_is_a_stamp_error(
    stamper, pdf_factory, tmp_path, make, reason
):
    with pytest.raises(StampError, match=reason) as refused:
        stamper.stamp(
            make(pdf_factory(), tmp_path),
            StampRequest(placements=(At(1, 50, 50),), level=B_B),
        )
    assert refused.value.category is ErrorCategory.BAD_REQUEST
    assert "\n" not in str(refused.value)


def test_a_page_tree_loop_is_refused_when_every_page_is_visited(
    stamper, pdf_factory, tmp_path
):
    looped = _page_tree_loop(pdf_factory(2), tmp_path)
    with pytest.raises(StampError, match="page tree has a loop"):
        stamper.stamp(looped, StampRequest(seam=SeamSeal(), level=B_B))


def test_a_decompression_bomb_is_refused_when_the_seal_goes_on_a_keyword(stamper):
    # A quarter-megabyte upload whose page content inflates to 256 MiB: finding the
    # keyword in it must not take the worker's memory (the review saw 3.2 GB).
    bomb = attacks.zlib_bomb_content()
    tracemalloc.start()
    try:
        with pytest.raises(StampError, match="expands beyond 64 MiB") as refused:
            stamper.stamp(
                bomb, StampRequest(placements=(OnKeyword(KEYWORD),), level=B_B)
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.category is ErrorCategory.BAD_REQUEST
    assert peak < 200 * 1024 * 1024


def test_documents_over_the_size_limit_are_refused_unread(credential, pdf_factory):
    small = Stamper(credential, max_input_bytes=1024)
    with pytest.raises(StampError, match="larger than the limit"):
        small.stamp(io.BytesIO(pdf_factory() + b" " * 2048), StampRequest(level=B_B))


@pytest.mark.parametrize(
    ("placement", "reason"),
    [
        (At(page=3, x_mm=50, y_mm=50), "page 3 does not exist"),
        (At(page=0, x_mm=50, y_mm=50), "start at 1"),
        (At(page=1, x_mm=250, y_mm=50), "outside page 1"),
        (At(page=1, x_mm=float("nan"), y_mm=50), "finite"),
        (OnKeyword("不存在的文字"), "not found"),
        (OnKeyword(KEYWORD, 5), "occurs 1 time"),
        (OnKeyword(KEYWORD, 0), "counted from 1"),
        (OnKeyword(KEYWORD, "middle"), "first, last, all"),
        (OnKeyword("  "), "empty"),
    ],
)
def test_impossible_placements_are_refused(stamper, pdf_factory, placement, reason):
    document = pdf_factory(2, keyword_at={0: [(100.0, 100.0)]})
    with pytest.raises(StampError, match=reason):
        stamper.stamp(document, StampRequest(placements=(placement,), level=B_B))


def test_a_seam_seal_needs_two_pages(stamper, pdf_factory):
    with pytest.raises(StampError, match="at least two pages"):
        stamper.stamp(pdf_factory(1), StampRequest(seam=SeamSeal(), level=B_B))
    with pytest.raises(StampError, match="two pages per seal image"):
        stamper.stamp(
            pdf_factory(3), StampRequest(seam=SeamSeal(pages_per_image=1), level=B_B)
        )
