"""Keyword search: CJK and Latin text found where reportlab drew it, in reading order,
spacing ignored; unreadable documents give a StampError."""

from __future__ import annotations

import io

import pytest
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from seal.errors import StampError
from seal.keyword import find_text
from tests.seal.conftest import KEYWORD


def _document(seal_font, lines_by_page: list[list[tuple[float, float, str]]]) -> bytes:
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    for lines in lines_by_page:
        for x, y, text in lines:
            pdf.setFont(seal_font.reportlab_name, 10)
            pdf.drawString(x, y, text)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def test_cjk_keyword_box_is_where_it_was_drawn(seal_font):
    document = _document(
        seal_font, [[(72, 700, "正文")], [(200, 300, f"请在{KEYWORD}签字")]]
    )
    (match,) = find_text(document, KEYWORD)
    assert match.page_index == 1
    x0, y0, x1, y1 = match.box
    assert x0 == pytest.approx(220, abs=0.5) and x1 == pytest.approx(
        250, abs=0.5
    )  # 10-pt glyphs
    assert y0 < 300 < y1


def test_occurrences_come_in_page_and_reading_order(seal_font):
    document = _document(
        seal_font,
        [
            [(72, 700, KEYWORD), (300, 400, KEYWORD)],
            [],
            [(100, 100, f"{KEYWORD}与{KEYWORD}")],
        ],
    )
    matches = find_text(document, KEYWORD)
    assert [(m.page_index, round(m.box[0])) for m in matches] == [
        (0, 72),
        (0, 300),
        (2, 100),
        (2, 140),
    ]
    assert [m.page_index for m in find_text(document, KEYWORD, page_indexes={2})] == [
        2,
        2,
    ]


def test_spacing_is_ignored_and_latin_text_is_found(seal_font):
    document = _document(
        seal_font, [[(72, 500, "盖 章 处"), (72, 400, "Signature here:")]]
    )
    assert len(find_text(document, KEYWORD)) == 1
    (latin,) = find_text(document, "Signature here")
    assert latin.box[0] == pytest.approx(72, abs=0.5)
    assert find_text(document, "不存在") == []


@pytest.mark.parametrize(
    "data", [b"%PDF-1.7 garbage", b"", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj"]
)
def test_unreadable_documents_are_stamp_errors(data):
    with pytest.raises(StampError, match="could not read the text"):
        find_text(data, KEYWORD)


def test_an_empty_keyword_is_refused(seal_font):
    with pytest.raises(StampError, match="empty"):
        find_text(_document(seal_font, [[]]), " \t")
