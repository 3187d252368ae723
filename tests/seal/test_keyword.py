"""Keyword search: CJK and Latin text found where reportlab drew it, in reading order,
spacing ignored; unreadable documents give a StampError, and so do hostile ones that
would take more memory, decoding, pages or time than the search's limits."""

from __future__ import annotations

import binascii
import io
import tracemalloc
import zlib

import pytest
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from seal.errors import StampError
from seal.keyword import SearchLimits, find_text
from tests.seal import attacks
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


# -- hostile documents: the search is bounded in memory, decoding, pages and time ------

MiB = 1024 * 1024


def _pdf(objects: list[bytes]) -> bytes:
    """A one-revision PDF of the given object bodies (object 1 is the catalog)."""
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _stream(data: bytes, entries: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n%s\nendstream" % (len(data), entries, data)


def _one_page(content: bytes, entries: bytes = b"", *extra: bytes) -> bytes:
    """A page whose content stream is `content` with `entries` in its dictionary."""
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            (
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R"
                b" /Resources << /Font << /F1 5 0 R >> >> >>"
            ),
            _stream(content, entries),
            *extra,
        ]
    )


def _deflated_spaces(size: int) -> bytes:
    deflater = zlib.compressobj(9)
    chunks = [MiB] * (size // MiB) + [size % MiB]
    return b"".join(deflater.compress(b" " * n) for n in chunks) + deflater.flush()


def _run_length_spaces(size: int) -> bytes:
    return b"\x81 " * (size // 128) + b"\x80"  # runs of 128 spaces, then end of data


@pytest.mark.parametrize(
    "make_bomb",
    [attacks.zlib_bomb_content, attacks.zlib_bomb_object_stream],
    ids=["content-stream", "object-stream"],
)
def test_a_flate_bomb_is_refused_before_it_expands(make_bomb):
    # A quarter-megabyte file that inflates to 256 MiB: pdfminer unbounded reads all
    # of it into memory (the review saw 1.5 MB take a worker to 3.2 GB).
    bomb = make_bomb()
    tracemalloc.start()
    try:
        with pytest.raises(
            StampError, match="a stream in the document expands beyond 64 MiB"
        ):
            find_text(bomb, KEYWORD)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200 * MiB


@pytest.mark.parametrize(
    ("encoded", "entries"),
    [
        pytest.param(_deflated_spaces(4 * MiB), b"/Filter /FlateDecode", id="flate"),
        # pdfminer takes /F (an external file's specification) for /Filter; pyHanko
        # does not: the bound must apply to pdfminer's own reading of the stream.
        pytest.param(_deflated_spaces(4 * MiB), b"/F /FlateDecode", id="flate-as-F"),
        pytest.param(
            binascii.hexlify(_deflated_spaces(4 * MiB)) + b">",
            b"/Filter [/ASCIIHexDecode /FlateDecode]",
            id="hex-then-flate",
        ),
        pytest.param(
            _run_length_spaces(4 * MiB), b"/Filter /RunLengthDecode", id="run-length"
        ),
        pytest.param(b"z" * MiB + b"~>", b"/Filter /ASCII85Decode", id="ascii85"),
    ],
)
def test_every_filter_pdfminer_decodes_is_bounded(encoded, entries):
    with pytest.raises(StampError, match="expands beyond 1 MiB"):
        find_text(
            _one_page(encoded, entries),
            KEYWORD,
            limits=SearchLimits(max_stream_bytes=MiB),
        )


def test_all_decoding_together_is_bounded():
    half = _deflated_spaces(MiB // 2 + 4096)
    document = _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            (
                b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842]"
                b" /Contents [4 0 R 5 0 R] >>"
            ),
            _stream(half, b"/Filter /FlateDecode"),
            _stream(half, b"/Filter /FlateDecode"),
        ]
    )
    with pytest.raises(StampError, match="streams expand beyond 1 MiB in all"):
        find_text(document, KEYWORD, limits=SearchLimits(max_decoded_bytes=MiB))


def test_a_width_range_over_millions_of_codes_meets_the_memory_cap():
    # 1 KB that pdfminer expands into a dictionary of 20 million widths (some 2 GB).
    font = b"<< /Type /Font /Subtype /Type0 /BaseFont /X /Encoding /Identity-H /DescendantFonts [6 0 R] >>"
    descendant = (
        b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /X /FontDescriptor 7 0 R"
        b" /CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >>"
        b" /W [0 20000000 500] >>"
    )
    descriptor = (
        b"<< /Type /FontDescriptor /FontName /X /Flags 4 /FontBBox [0 0 1000 1000]"
        b" /ItalicAngle 0 /Ascent 1000 /Descent 0 /CapHeight 1000 /StemV 80 >>"
    )
    document = _one_page(
        b"BT /F1 12 Tf 100 700 Td <0001> Tj ET", b"", font, descendant, descriptor
    )
    with pytest.raises(StampError, match="needs more than 256 MiB of memory"):
        find_text(document, KEYWORD, limits=SearchLimits(max_memory_bytes=256 * MiB))


def test_the_search_has_a_time_budget(seal_font):
    document = _document(seal_font, [[(72, 500, KEYWORD)]])
    with pytest.raises(StampError, match=r"took too long \(over 0.01 s\)"):
        find_text(document, KEYWORD, limits=SearchLimits(time_budget_seconds=0.01))


def test_at_most_max_pages_are_read(seal_font):
    document = _document(seal_font, [[(72, 500, KEYWORD)]] * 3)
    limits = SearchLimits(max_pages=2)
    with pytest.raises(StampError, match="reads at most 2 pages"):
        find_text(document, KEYWORD, limits=limits)
    assert len(find_text(document, KEYWORD, page_indexes={1}, limits=limits)) == 1


@pytest.mark.parametrize(
    "changes",
    [
        {"max_pages": 0},
        {"max_stream_bytes": -1},
        {"max_memory_bytes": True},
        {"time_budget_seconds": 0},
    ],
)
def test_search_limits_must_be_positive(changes):
    with pytest.raises(ValueError, match="must be a positive"):
        SearchLimits(**changes)
