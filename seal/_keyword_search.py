"""The keyword search itself: pdfminer.six reading a document, in a process of its own.

seal.keyword runs this file as a script (`python -I _keyword_search.py <request>`):
the document on stdin, the request as JSON in argv[1], one JSON object on stdout.

Why a process: pdfminer is a large pure-Python parser, and a few bytes of a hostile
document make it build gigabytes: a /W width range or a ToUnicode bfrange over four
billion codes, an array of millions of numbers. Before it reads the document, this
process caps its own address space and CPU time, and the parent kills it when the
wall-clock budget is spent, so no document can take more than that.

Every stream pdfminer decodes is decoded here under verification's per-stream and
per-document bounds (the parent passes seal.verify.VerifyLimits' values). It has to be
pdfminer's own reading of each stream: pdfminer reads some files differently from
pyHanko (/F taken for /Filter, a fallback scan of damaged files), so checking the
streams pyHanko sees would not bound what pdfminer decodes. A decompression bomb is
thus refused with a clear reason, long before it meets the memory cap.

Imports only the standard library and pdfminer: importing the seal package would cost
every search most of a second.
"""

from __future__ import annotations

import io
import json
import math
import resource
import sys
import zlib
from collections.abc import Collection, Iterator
from typing import Any

from pdfminer.ascii85 import ascii85decode, asciihexdecode
from pdfminer.converter import PDFPageAggregator
from pdfminer.layout import LTChar, LTContainer, LTItem
from pdfminer.lzw import LZWDecoder
from pdfminer.pdfdocument import PDFDocument
from pdfminer.pdfexceptions import PDFNotImplementedError
from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
from pdfminer.pdfpage import PDFPage
from pdfminer.pdfparser import PDFParser
from pdfminer.pdftypes import (
    LITERALS_ASCII85_DECODE,
    LITERALS_ASCIIHEX_DECODE,
    LITERALS_DCT_DECODE,
    LITERALS_FLATE_DECODE,
    LITERALS_JBIG2_DECODE,
    LITERALS_JPX_DECODE,
    LITERALS_LZW_DECODE,
    LITERALS_RUNLENGTH_DECODE,
    PDFStream,
    int_value,
)
from pdfminer.psparser import PSKeyword
from pdfminer.utils import apply_png_predictor, apply_tiff_predictor

# Kinds of refusal the parent turns into messages.
STREAM_TOO_LARGE = "stream"
DECODED_TOO_MUCH = "decoded"
TOO_MANY_PAGES = "pages"
OUT_OF_MEMORY = "memory"

_IDENTITY = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
# Filters pdfminer passes through undecoded (image data it never needs for text).
_PASSED_THROUGH = (*LITERALS_DCT_DECODE, *LITERALS_JBIG2_DECODE, *LITERALS_JPX_DECODE)


class Refusal(BaseException):
    """The document asks for more than the limits allow.

    A BaseException, so that pdfminer's `except Exception` handlers let it through."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class Unreadable(Exception):
    """pdfminer failed on the document; `page_index` is -1 before the first page."""

    def __init__(self, page_index: int) -> None:
        super().__init__(page_index)
        self.page_index = page_index


class DecodeBudget:
    """What every stream may decode to, and all of them together."""

    def __init__(self, max_stream_bytes: int, max_decoded_bytes: int) -> None:
        self.stream_cap = max_stream_bytes
        self.remaining = max_decoded_bytes

    def charge(self, produced: bytes) -> bytes:
        if len(produced) > self.stream_cap:
            raise Refusal(STREAM_TOO_LARGE)
        self.remaining -= len(produced)
        if self.remaining < 0:
            raise Refusal(DECODED_TOO_MUCH)
        return produced


# -- bounded decoding, filter by filter, as pdfminer decodes ------------------------------


def _inflate(data: bytes, cap: int) -> bytes:
    """Flate-decoded data, never more than cap + 1 bytes of it.

    Like pdfminer: a stream damaged only in its last three bytes (the checksum) keeps
    what came before the damage; any other damaged stream reads as empty."""
    try:
        return zlib.decompressobj().decompress(data, cap + 1)
    except zlib.error:
        pass
    inflater = zlib.decompressobj()
    try:
        output = inflater.decompress(data[:-3], cap + 1)
    except zlib.error:
        return b""
    for at in range(max(len(data) - 3, 0), len(data)):
        if len(output) > cap:
            break
        try:
            output += inflater.decompress(data[at : at + 1], cap + 1 - len(output))
        except zlib.error:
            break
    return output


def _lzw(data: bytes, cap: int) -> bytes:
    output = bytearray()
    for chunk in LZWDecoder(io.BytesIO(data)).run():
        output += chunk
        if len(output) > cap:
            break
    return bytes(output)


def _run_length(data: bytes, cap: int) -> bytes:
    output = bytearray()
    at = 0
    while at < len(data) and len(output) <= cap:
        length = data[at]
        if length == 128:  # end of data
            break
        if length < 128:
            output += data[at + 1 : at + 2 + length]
            at += 2 + length
        else:
            output += data[at + 1 : at + 2] * (257 - length)
            at += 2
    return bytes(output)


def _unfilter(name: object, data: bytes, budget: DecodeBudget) -> bytes:
    cap = budget.stream_cap
    if name in LITERALS_FLATE_DECODE:
        return budget.charge(_inflate(data, cap))
    if name in LITERALS_LZW_DECODE:
        return budget.charge(_lzw(data, cap))
    if name in LITERALS_RUNLENGTH_DECODE:
        return budget.charge(_run_length(data, cap))
    if name in LITERALS_ASCII85_DECODE:
        # Each "z" stands for four bytes, every other five characters for four.
        if 4 * data.count(b"z") + len(data) > cap:
            raise Refusal(STREAM_TOO_LARGE)
        return budget.charge(ascii85decode(data))
    if name in LITERALS_ASCIIHEX_DECODE:
        return budget.charge(asciihexdecode(data))
    if name in _PASSED_THROUGH:
        return data
    # pdfminer decodes CCITT fax data only to export images, which the search never
    # does; in a content, font or object stream its size would have no bound.
    raise PDFNotImplementedError(f"unsupported filter {name!r}")


def _unpredict(data: bytes, params: Any) -> bytes:
    """pdfminer's predictors (they never lengthen the data)."""
    if not params or "Predictor" not in params:
        return data
    predictor = int_value(params["Predictor"])
    if predictor == 1:
        return data
    colors = int_value(params.get("Colors", 1))
    columns = int_value(params.get("Columns", 1))
    bits = int_value(params.get("BitsPerComponent", 8))
    if predictor == 2:
        return apply_tiff_predictor(colors, columns, bits, data)
    if predictor >= 10:
        return apply_png_predictor(predictor, colors, columns, bits, data)
    raise PDFNotImplementedError(f"unsupported predictor {predictor!r}")


class _BoundedStream(PDFStream):
    """A stream of the document whose decoding is charged to the search's budget."""

    def __init__(self, stream: PDFStream, budget: DecodeBudget) -> None:
        assert stream.rawdata is not None
        super().__init__(stream.attrs, stream.rawdata, stream.decipher)
        self.budget = budget

    def decode(self) -> None:
        data = self.rawdata
        assert data is not None
        if self.decipher:
            data = self.decipher(self.objid, self.genno, data, self.attrs)  # type: ignore[arg-type]
        for name, params in self.get_filters():
            data = _unpredict(_unfilter(name, data, self.budget), params)
        self.data, self.rawdata = data, None


class _BoundedParser(PDFParser):
    """pdfminer's parser, making every stream it reads (content, fonts, object and
    cross-reference streams, in a fallback scan too) a bounded one."""

    def __init__(self, pdf: bytes, budget: DecodeBudget) -> None:
        super().__init__(io.BytesIO(pdf))
        self.budget = budget

    def do_keyword(self, pos: int, token: PSKeyword) -> None:
        super().do_keyword(pos, token)
        if token is self.KEYWORD_STREAM and self.curstack:
            at, made = self.curstack[-1]
            if type(made) is PDFStream:
                self.curstack[-1] = (at, _BoundedStream(made, self.budget))


# -- finding the text ------------------------------------------------------------------


def _characters(item: LTItem) -> Iterator[LTChar]:
    if isinstance(item, LTChar):
        yield item
    elif isinstance(item, LTContainer):
        for child in item:
            yield from _characters(child)


def squeeze(text: str) -> str:
    return "".join(text.split())


def _matches_on_page(chars: list[LTChar], wanted: str) -> Iterator[list[float]]:
    # One entry per non-space character of the page text, pointing at the glyph it came
    # from (a ligature glyph yields several characters).
    text: list[str] = []
    owner: list[int] = []
    for index, char in enumerate(chars):
        for letter in squeeze(char.get_text()):
            text.append(letter)
            owner.append(index)
    haystack = "".join(text)
    start = haystack.find(wanted)
    while start >= 0:
        glyphs = [chars[i] for i in sorted(set(owner[start : start + len(wanted)]))]
        yield [
            min(g.x0 for g in glyphs),
            min(g.y0 for g in glyphs),
            max(g.x1 for g in glyphs),
            max(g.y1 for g in glyphs),
        ]
        start = haystack.find(wanted, start + len(wanted))


def search(
    pdf: bytes,
    wanted: str,
    *,
    page_indexes: Collection[int] | None,
    max_pages: int,
    budget: DecodeBudget,
) -> list[list[float]]:
    """[page index, x0, y0, x1, y1] of every occurrence, in page and reading order.

    Each page is interpreted with the identity matrix, so boxes are in the page's
    default user space (that of /MediaBox), whatever its /Rotate."""
    matches: list[list[float]] = []
    last = max(page_indexes, default=-1) if page_indexes is not None else None
    resources = PDFResourceManager(caching=True)
    device = PDFPageAggregator(resources, laparams=None)
    interpreter = PDFPageInterpreter(resources, device)
    page_index = -1
    try:
        document = PDFDocument(_BoundedParser(pdf, budget))
        for page_index, page in enumerate(PDFPage.create_pages(document)):
            if last is not None and page_index > last:
                break
            if page_index >= max_pages:
                raise Refusal(TOO_MANY_PAGES)
            if page_indexes is not None and page_index not in page_indexes:
                continue
            device.begin_page(page, _IDENTITY)
            interpreter.render_contents(page.resources, page.contents, ctm=_IDENTITY)
            device.end_page(page)
            chars = list(_characters(device.get_result()))
            matches.extend(
                [page_index, *box] for box in _matches_on_page(chars, wanted)
            )
    except MemoryError:
        raise
    # pdfminer raises many unrelated types on malformed input; any of them means the
    # text of this document cannot be searched.
    except Exception as exc:
        raise Unreadable(page_index) from exc
    return matches


def _confine(max_memory_bytes: int, seconds: float) -> None:
    """Cap this process's address space and CPU time; no core file when it is killed."""
    cpu = math.ceil(seconds) + 1
    for kind, soft, hard in (
        (resource.RLIMIT_AS, max_memory_bytes, max_memory_bytes),
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_CORE, 0, 0),
    ):
        _, allowed = resource.getrlimit(kind)
        if allowed != resource.RLIM_INFINITY:
            soft, hard = min(soft, allowed), min(hard, allowed)
        resource.setrlimit(kind, (soft, hard))


def main() -> None:
    request = json.loads(sys.argv[1])
    _confine(request["max_memory_bytes"], request["time_budget_seconds"])
    pdf = sys.stdin.buffer.read()
    pages = request["page_indexes"]
    answer: dict[str, Any]
    try:
        answer = {
            "matches": search(
                pdf,
                squeeze(request["text"]),
                page_indexes=frozenset(pages) if pages is not None else None,
                max_pages=request["max_pages"],
                budget=DecodeBudget(
                    request["max_stream_bytes"], request["max_decoded_bytes"]
                ),
            )
        }
    except Refusal as refusal:
        answer = {"refused": refusal.kind}
    except MemoryError:
        answer = {"refused": OUT_OF_MEMORY}
    except Unreadable as unreadable:
        answer = {"unreadable": unreadable.page_index}
    sys.stdout.write(json.dumps(answer))


if __name__ == "__main__":
    main()
