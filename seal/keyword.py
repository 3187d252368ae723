"""Find text on PDF pages, for placing a seal on a keyword such as 盖章处.

pyHanko has no text extraction, so pdfminer.six reads the glyphs. Each page is
interpreted with the identity matrix, so positions come out in the page's default
user space (the space of /MediaBox and annotation /Rect), whatever the page's
/Rotate: the stamper turns them into a placement itself.

Whitespace is ignored on both sides, so "盖 章 处" on the page matches "盖章处".
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Collection, Iterator

from pdfminer.converter import PDFPageAggregator
from pdfminer.layout import LTChar, LTContainer, LTItem
from pdfminer.pdfdocument import PDFDocument
from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
from pdfminer.pdfpage import PDFPage
from pdfminer.pdfparser import PDFParser

from seal.errors import StampError

__all__ = ["TextMatch", "find_text"]

_IDENTITY = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class TextMatch:
    """One occurrence of the text: its page (0-based) and box in default user space."""

    page_index: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2


def _characters(item: LTItem) -> Iterator[LTChar]:
    if isinstance(item, LTChar):
        yield item
    elif isinstance(item, LTContainer):
        for child in item:
            yield from _characters(child)


def _squeeze(text: str) -> str:
    return "".join(text.split())


def _matches_on_page(
    page_index: int, chars: list[LTChar], wanted: str
) -> Iterator[TextMatch]:
    # One entry per non-space character of the page text, pointing at the glyph it came
    # from (a ligature glyph yields several characters).
    text: list[str] = []
    owner: list[int] = []
    for index, char in enumerate(chars):
        for letter in _squeeze(char.get_text()):
            text.append(letter)
            owner.append(index)
    haystack = "".join(text)
    start = haystack.find(wanted)
    while start >= 0:
        glyphs = [chars[i] for i in sorted(set(owner[start : start + len(wanted)]))]
        yield TextMatch(
            page_index=page_index,
            box=(
                min(g.x0 for g in glyphs),
                min(g.y0 for g in glyphs),
                max(g.x1 for g in glyphs),
                max(g.y1 for g in glyphs),
            ),
        )
        start = haystack.find(wanted, start + len(wanted))


def find_text(
    pdf: bytes, text: str, *, page_indexes: Collection[int] | None = None
) -> list[TextMatch]:
    """Every occurrence of `text`, in page order and reading order within a page.

    `page_indexes` (0-based) limits the search. StampError if the text is empty or
    the document's text cannot be read.
    """
    wanted = _squeeze(text)
    if not wanted:
        raise StampError("the keyword to place the seal on is empty")
    matches: list[TextMatch] = []
    resources = PDFResourceManager(caching=True)
    device = PDFPageAggregator(resources, laparams=None)
    interpreter = PDFPageInterpreter(resources, device)
    page_index = -1
    try:
        document = PDFDocument(PDFParser(io.BytesIO(pdf)))
        for page_index, page in enumerate(PDFPage.create_pages(document)):
            if page_indexes is not None and page_index not in page_indexes:
                continue
            device.begin_page(page, _IDENTITY)
            interpreter.render_contents(page.resources, page.contents, ctm=_IDENTITY)
            device.end_page(page)
            chars = list(_characters(device.get_result()))
            matches.extend(_matches_on_page(page_index, chars, wanted))
    except StampError:
        raise
    # pdfminer raises many unrelated types on malformed input; any of them means the
    # text of this document cannot be searched.
    except Exception as exc:
        where = f"page {page_index + 1}" if page_index >= 0 else "the document"
        raise StampError(
            f"could not read the text of {where} to find the keyword"
        ) from exc
    return matches
