"""Stamping: put an agency's seal on a PDF as a PAdES signature with the seal image.

    stamper = Stamper(credential, services=TrustServices(timestamp=..., revocation=...))
    sealed = stamper.stamp(pdf_bytes, StampRequest(placements=(At(page=1, x_mm=150, y_mm=240),)))

Where the seal goes:
- `At(page, x_mm, y_mm)`: the CENTRE of the seal, in millimetres from the top-left
  corner of the page as it is displayed (its crop box, after /Rotate);
- `OnKeyword(text, occurrence)`: centred on the text (first, last, all or the N-th
  occurrence, counted through the whole document);
- `SeamSeal(side)`: the seam seal (骑缝章): one seal image cut into vertical strips,
  one strip at the right (or left) edge of every page, vertically centred; long
  documents are split into groups of at most `pages_per_image` pages, each group
  showing one whole seal when the pages are fanned out.

The first placement is the signature field's visible appearance. Every other seal
image and every seam strip is drawn into the pages' content in the same incremental
update, before the signature dictionary, so the one signature covers all of them.
Seals are drawn upright as the page is displayed, in multiply blend mode, so text
under the red ink stays legible as on paper.

Levels: B-B; B-T adds the TSA's timestamp on the signature; B-LT also embeds OCSP
responses and CRLs for the chain in the document security store; B-LTA adds a
document timestamp over all of that. SubFilter ETSI.CAdES.detached throughout.

A document that already carries seals gets one more revision (联合发文): the new seal
is a new signature field, which earlier signatures' modification analysis accepts.
Drawing into page content would not be accepted, so extra images and seam seals are
refused on such documents.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import io
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from cryptography import x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.content import AppearanceContent, ResourceType
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.layout import BoxConstraints
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.rw_common import find_inherited_value_in_tree
from pyhanko.sign import fields, signers
from pyhanko.sign.fields import MDPPerm, SigFieldSpec, SigSeedSubFilter
from pyhanko.sign.general import SigningError
from pyhanko.sign.validation import read_certification_data
from pyhanko.stamp import BaseStampStyle
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.errors import PathBuildingError, ValidationError
from pyhanko_certvalidator.util import get_pyca_cryptography_hash

from hsm_sim.api import signing_context
from hsm_sim.errors import HsmError
from hsm_sim.keys import KeyHandle
from seal.errors import DocumentLockedError, SealError, StampError, TrustServiceError
from seal.keyword import TextMatch, find_text
from seal.signer import HsmSigner, to_asn1_certificate
from seal.trust_services import CallableTimeStamper, TrustServices, revocation_fetchers

__all__ = [
    "DEFAULT_MAX_INPUT_BYTES",
    "At",
    "BatchItem",
    "BatchReport",
    "Level",
    "OnKeyword",
    "Placement",
    "SealCredential",
    "SeamSeal",
    "Side",
    "StampRequest",
    "Stamper",
    "stamp_batch",
    "stamp_pdf",
]

DEFAULT_MAX_INPUT_BYTES = 100 * 1024 * 1024
POINTS_PER_MM = 72 / 25.4
# Room above pyHanko's own estimate of the CMS size: timestamp tokens differ by a few
# bytes from one to the next (serial, nonce, time fraction).
_RESERVE_MARGIN = 1024
_FIELD_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")

Matrix = tuple[float, float, float, float, float, float]


class Level(enum.Enum):
    """PAdES baseline level."""

    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"

    @classmethod
    def parse(cls, text: str) -> Level:
        """The level named by `text` (`B-LT`, `b_lt`, `lt`), or ValueError listing them."""
        wanted = text.strip().upper().replace("_", "-")
        for level in cls:
            if wanted in (level.value, level.value.removeprefix("B-")):
                return level
        known = ", ".join(level.value for level in cls)
        raise ValueError(f"unknown PAdES level {text!r}; use one of: {known}")

    @property
    def timestamped(self) -> bool:
        return self is not Level.B_B

    @property
    def long_term(self) -> bool:
        return self in (Level.B_LT, Level.B_LTA)


class Side(enum.Enum):
    RIGHT = "right"
    LEFT = "left"


@dataclasses.dataclass(frozen=True)
class At:
    """The seal's centre on page `page` (1-based), in mm from the displayed page's top-left."""

    page: int
    x_mm: float
    y_mm: float


@dataclasses.dataclass(frozen=True)
class OnKeyword:
    """The seal centred on `text`: its first, last, every, or N-th (1-based) occurrence."""

    text: str
    occurrence: str | int = "first"


Placement = At | OnKeyword


@dataclasses.dataclass(frozen=True)
class SeamSeal:
    """A seam seal across the edge of every page, one whole seal per group of pages."""

    side: Side = Side.RIGHT
    pages_per_image: int = 20


@dataclasses.dataclass(frozen=True)
class StampRequest:
    """Where the seal goes and what kind of signature carries it.

    No placement and no seam seal makes an invisible seal (a signature without image).
    """

    placements: tuple[Placement, ...] = ()
    seam: SeamSeal | None = None
    level: Level = Level.B_LT
    certify: bool = False  # a certification signature: no later changes allowed
    reason: str | None = None
    location: str | None = None


@dataclasses.dataclass(frozen=True)
class SealCredential:
    """Everything the stamper needs about one seal.

    `chain` is the certificate's issuers up to the region root (the root is the trust
    anchor for B-LT revocation data). `image_pdf` is a one-page vector PDF of the
    seal, its page the seal's real size unless `size_mm` (width, height) says
    otherwise. `seal_data` is the GB/T 38540 SESeal DER carried as a signed
    attribute. `name` (the seal code, say) names the signature fields.
    """

    key: KeyHandle
    certificate: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    image_pdf: bytes
    seal_data: bytes | None
    name: str
    size_mm: tuple[float, float] | None = None
    rsa_pss: bool = False


@dataclasses.dataclass(frozen=True)
class BatchItem:
    source: Path
    output: Path | None  # None when the file was skipped
    error: str | None = None


@dataclasses.dataclass(frozen=True)
class BatchReport:
    stamped: tuple[BatchItem, ...]
    failed: tuple[BatchItem, ...]


# -- page geometry ---------------------------------------------------------------


def _multiply(first: Matrix, then: Matrix) -> Matrix:
    """The matrix applying `first`, then `then` (PDF row-vector convention)."""
    a1, b1, c1, d1, e1, f1 = first
    a2, b2, c2, d2, e2, f2 = then
    return (
        a1 * a2 + b1 * c2,
        a1 * b2 + b1 * d2,
        c1 * a2 + d1 * c2,
        c1 * b2 + d1 * d2,
        e1 * a2 + f1 * c2 + e2,
        e1 * b2 + f1 * d2 + f2,
    )


def _apply(matrix: Matrix, x: float, y: float) -> tuple[float, float]:
    a, b, c, d, e, f = matrix
    return a * x + c * y + e, b * x + d * y + f


def _translate(x: float, y: float) -> Matrix:
    return (1.0, 0.0, 0.0, 1.0, x, y)


def _format_matrix(matrix: Matrix) -> bytes:
    return b" ".join(b"%.4f" % value for value in matrix)


def _normalised_box(
    value: object, what: str, page_number: int
) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise StampError(f"page {page_number} has a malformed {what}") from None
    box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    if (
        not all(math.isfinite(v) for v in box)
        or box[2] - box[0] < 1
        or box[3] - box[1] < 1
    ):
        raise StampError(f"page {page_number} has an empty or malformed {what}")
    return box


@dataclasses.dataclass(frozen=True)
class _PageFrame:
    """A page as displayed: its visible box in user space and its rotation.

    "Display space" has its origin at the bottom-left of the displayed page, x to the
    right, y up, in points; `to_user` maps it into the page's default user space.
    """

    box: tuple[float, float, float, float]
    rotate: int

    @property
    def size(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        width, height = x1 - x0, y1 - y0
        return (height, width) if self.rotate in (90, 270) else (width, height)

    @property
    def to_display(self) -> Matrix:
        x0, y0, x1, y1 = self.box
        return {
            0: (1.0, 0.0, 0.0, 1.0, -x0, -y0),
            90: (0.0, -1.0, 1.0, 0.0, -y0, x1),
            180: (-1.0, 0.0, 0.0, -1.0, x1, y1),
            270: (0.0, 1.0, -1.0, 0.0, y1, -x0),
        }[self.rotate]

    @property
    def to_user(self) -> Matrix:
        a, b, c, d, e, f = self.to_display
        det = a * d - b * c
        ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
        return (ia, ib, ic, id_, -(e * ia + f * ic), -(e * ib + f * id_))


def _page_frame(page: generic.DictionaryObject, page_number: int) -> _PageFrame:
    media = find_inherited_value_in_tree(page, "/MediaBox", "/Parent")
    if media is None:
        raise StampError(f"page {page_number} has no /MediaBox")
    box = _normalised_box(media, "/MediaBox", page_number)
    crop = find_inherited_value_in_tree(page, "/CropBox", "/Parent")
    if crop is not None:
        cx0, cy0, cx1, cy1 = _normalised_box(crop, "/CropBox", page_number)
        visible = (
            max(box[0], cx0),
            max(box[1], cy0),
            min(box[2], cx1),
            min(box[3], cy1),
        )
        if visible[2] - visible[0] >= 1 and visible[3] - visible[1] >= 1:
            box = visible
    rotate_value = find_inherited_value_in_tree(page, "/Rotate", "/Parent")
    try:
        rotate = int(rotate_value or 0) % 360
    except (TypeError, ValueError):
        raise StampError(f"page {page_number} has a malformed /Rotate") from None
    if rotate % 90:
        raise StampError(
            f"page {page_number} has /Rotate {rotate}, not a multiple of 90"
        )
    return _PageFrame(box=box, rotate=rotate)


# -- the seal image in a document -----------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _SealImage:
    """The seal's form XObject imported into one output document."""

    xobject: generic.IndirectObject
    graphics_state: generic.IndirectObject  # multiply blend mode
    bbox: tuple[float, float, float, float]
    size: tuple[float, float]  # drawn size in points

    def to_display(self, centre: tuple[float, float]) -> Matrix:
        """Form space → display space, the seal upright with its centre at `centre`."""
        bx0, by0, bx1, by1 = self.bbox
        width, height = self.size
        sx, sy = width / (bx1 - bx0), height / (by1 - by0)
        return (
            sx,
            0.0,
            0.0,
            sy,
            centre[0] - width / 2 - bx0 * sx,
            centre[1] - height / 2 - by0 * sy,
        )


@dataclasses.dataclass(frozen=True)
class _Drawing:
    """One seal image (or a clipped strip of it) to draw on one page."""

    page_index: int
    frame: _PageFrame
    centre: tuple[float, float]  # display space
    clip: tuple[float, float, float, float] | None = None  # display space x, y, w, h

    def content(self, image: _SealImage, xobject_name: str, gs_name: str) -> bytes:
        parts = [b"q", _format_matrix(self.frame.to_user) + b" cm"]
        if self.clip is not None:
            parts.append(b"%.4f %.4f %.4f %.4f re W n" % self.clip)
        parts += [
            _format_matrix(image.to_display(self.centre)) + b" cm",
            f"{gs_name} gs {xobject_name} Do".encode("ascii"),
            b"Q",
        ]
        return b"\n".join(parts)

    def user_matrix(self, image: _SealImage) -> Matrix:
        return _multiply(image.to_display(self.centre), self.frame.to_user)


class _SealAppearance(AppearanceContent):
    def __init__(
        self, writer, box: BoxConstraints, style: _SealAppearanceStyle
    ) -> None:
        super().__init__(writer=writer, box=box)
        self._style = style
        self.set_resource(ResourceType.XOBJECT, pdf_name("/Seal"), style.xobject)
        self.set_resource(
            ResourceType.EXT_G_STATE, pdf_name("/SealInk"), style.graphics_state
        )

    def render(self) -> bytes:
        return (
            b"q " + _format_matrix(self._style.matrix) + b" cm /SealInk gs /Seal Do Q"
        )


@dataclasses.dataclass(frozen=True)
class _SealAppearanceStyle(BaseStampStyle):
    """The signature widget's appearance: the seal, upright, filling the widget."""

    xobject: generic.IndirectObject | None = None
    graphics_state: generic.IndirectObject | None = None
    matrix: Matrix = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    border_width: int = 0

    def create_stamp(
        self, writer, box: BoxConstraints, text_params: dict
    ) -> _SealAppearance:
        return _SealAppearance(writer, box, self)


def _unused_name(taken: Iterable[object], stem: str) -> str:
    names = {str(name) for name in taken}
    candidate, counter = f"/{stem}", 1
    while candidate in names:
        counter += 1
        candidate = f"/{stem}{counter}"
    return candidate


_MALFORMED_TREE = "the document's page tree is malformed"


class _PageTree:
    """The document's pages: one by index, reading only the nodes on the way to it
    (by the /Count of each subtree), or all of them in one walk.

    (pyHanko walks the tree from the root for each page it is asked for, which makes
    touching every page of a long document quadratic; reading every page dictionary
    when one is needed costs milliseconds per 50 pages.)
    """

    def __init__(self, writer: IncrementalPdfFileWriter) -> None:
        self._root_ref = writer.root.raw_get("/Pages")
        self.count = self._count(self._node(self._root_ref))

    @staticmethod
    def _node(ref: object) -> generic.DictionaryObject:
        if not isinstance(ref, generic.IndirectObject):
            raise StampError(_MALFORMED_TREE)
        node = ref.get_object()
        if not isinstance(node, generic.DictionaryObject):
            raise StampError(_MALFORMED_TREE)
        return node

    @staticmethod
    def _kids(node: generic.DictionaryObject) -> list[object] | None:
        """The kids of an intermediate node, None for a page."""
        if node.get("/Type") != "/Pages" and "/Kids" not in node:
            return None
        kids = node.get("/Kids")
        if not isinstance(kids, generic.ArrayObject):
            raise StampError(_MALFORMED_TREE)
        return [kids.raw_get(i) for i in range(len(kids))]

    def _count(self, node: generic.DictionaryObject) -> int:
        if self._kids(node) is None:
            return 1
        count = node.get("/Count")
        if not isinstance(count, int) or count < 0:
            raise StampError(_MALFORMED_TREE)
        return count

    def page(self, index: int) -> generic.IndirectObject:
        ref, seen = self._root_ref, set()
        while True:
            node = self._node(ref)
            if ref.idnum in seen:
                raise StampError("the document's page tree has a loop")
            seen.add(ref.idnum)
            kids = self._kids(node)
            if kids is None:
                if index != 0:
                    raise StampError(_MALFORMED_TREE)
                return ref
            for kid in kids:
                size = self._count(self._node(kid))
                if index < size:
                    ref = kid
                    break
                index -= size
            else:
                raise StampError(_MALFORMED_TREE)

    def all(self) -> list[generic.IndirectObject]:
        pages: list[generic.IndirectObject] = []
        seen: set[int] = set()
        pending: list[object] = [self._root_ref]
        while pending:
            ref = pending.pop()
            node = self._node(ref)
            if ref.idnum in seen:
                raise StampError("the document's page tree has a loop")
            seen.add(ref.idnum)
            kids = self._kids(node)
            if kids is None:
                pages.append(ref)
            else:
                pending.extend(reversed(kids))
        if len(pages) != self.count:
            raise StampError(_MALFORMED_TREE)
        return pages


def _draw_on_page(
    writer: IncrementalPdfFileWriter,
    page_ref: generic.IndirectObject,
    drawings: Sequence[_Drawing],
    image: _SealImage,
    wrap_stream: generic.IndirectObject,
) -> None:
    """Draw the seal images onto a page, after its content, in its own graphics state.

    The page gets its own copy of its (possibly inherited or shared) resources, so
    other pages sharing them do not change.
    """
    page = page_ref.get_object()
    resources = find_inherited_value_in_tree(page, "/Resources", "/Parent")
    resources = (
        generic.DictionaryObject(dict(resources.items()))
        if resources
        else generic.DictionaryObject()
    )
    xobjects = generic.DictionaryObject(
        dict(resources.get("/XObject", generic.DictionaryObject()).items())
    )
    states = generic.DictionaryObject(
        dict(resources.get("/ExtGState", generic.DictionaryObject()).items())
    )
    xobject_name = _unused_name(xobjects.keys(), "YinxinSeal")
    gs_name = _unused_name(states.keys(), "YinxinSealInk")
    xobjects[pdf_name(xobject_name)] = image.xobject
    states[pdf_name(gs_name)] = image.graphics_state
    resources[pdf_name("/XObject")] = xobjects
    resources[pdf_name("/ExtGState")] = states
    page[pdf_name("/Resources")] = resources

    drawn = (
        b"\nQ\n"
        + b"\n".join(d.content(image, xobject_name, gs_name) for d in drawings)
        + b"\n"
    )
    raw = page.raw_get("/Contents") if "/Contents" in page else None
    resolved = raw.get_object() if isinstance(raw, generic.IndirectObject) else raw
    if resolved is None:
        existing: list[generic.PdfObject] = []
    elif isinstance(resolved, generic.ArrayObject):
        existing = [resolved.raw_get(i) for i in range(len(resolved))]
    else:
        existing = [raw]
    # The page's own content runs inside q ... Q, so whatever graphics state it leaves
    # behind cannot move or recolour the seal drawn after it.
    page[pdf_name("/Contents")] = generic.ArrayObject(
        [
            wrap_stream,
            *existing,
            writer.add_object(generic.StreamObject(stream_data=drawn)),
        ]
    )
    writer.mark_update(page_ref)


# -- the stamper -------------------------------------------------------------------


def _read_input(pdf: bytes | BinaryIO, limit: int) -> bytes:
    if isinstance(pdf, (bytes, bytearray, memoryview)):
        data = bytes(pdf)
    else:
        data = pdf.read(limit + 1)
    if len(data) > limit:
        raise StampError(
            f"the document is larger than the limit of {limit // (1024 * 1024)} MiB"
        )
    if b"%PDF-" not in data[:1024]:
        raise StampError("the document is not a PDF (no %PDF- header)")
    return data


def _safe_field_stem(name: str) -> str:
    stem = _FIELD_NAME_UNSAFE.sub("_", name).strip("_")
    return f"Seal_{stem}" if stem else "Seal"


def _seam_groups(page_count: int, pages_per_image: int) -> list[range]:
    """Pages split into as few groups as allowed, as evenly as possible."""
    group_count = math.ceil(page_count / pages_per_image)
    base, extra = divmod(page_count, group_count)
    groups, start = [], 0
    for index in range(group_count):
        size = base + (1 if index < extra else 0)
        groups.append(range(start, start + size))
        start += size
    return groups


class Stamper:
    """Stamps documents with one seal. Build once, reuse: it keeps the parsed seal
    image, the encoded certificates, the signer and the reserved signature size."""

    def __init__(
        self,
        credential: SealCredential,
        *,
        services: TrustServices | None = None,
        max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
    ) -> None:
        self.credential = credential
        self.services = services = services or TrustServices()
        self.max_input_bytes = max_input_bytes
        self._signer = HsmSigner(
            key=credential.key,
            certificate=credential.certificate,
            chain=credential.chain,
            seal_data=credential.seal_data,
            rsa_pss=credential.rsa_pss,
        )
        self._chain = [to_asn1_certificate(c) for c in credential.chain]
        self._trust_roots = [c for c in self._chain if c.self_signed != "no"]
        self._timestamper = (
            CallableTimeStamper(services.timestamp)
            if services.timestamp is not None
            else None
        )
        try:
            self._image_reader = PdfFileReader(io.BytesIO(credential.image_pdf))
            image_page = self._image_reader.root["/Pages"]["/Kids"][0].get_object()
            media = image_page["/MediaBox"]
        except (PdfError, KeyError, IndexError, TypeError, ValueError) as exc:
            raise SealError("the seal image is not a readable one-page PDF") from exc
        self._image_bbox = _normalised_box(media, "/MediaBox", 1)
        if credential.size_mm is not None:
            width_mm, height_mm = credential.size_mm
            if not (0 < width_mm <= 300 and 0 < height_mm <= 300):
                raise SealError("the seal size must be between 0 and 300 mm")
            self._image_size = (width_mm * POINTS_PER_MM, height_mm * POINTS_PER_MM)
        else:
            bx0, by0, bx1, by1 = self._image_bbox
            self._image_size = (bx1 - bx0, by1 - by0)
        self._image_lock = threading.Lock()
        self._reserved: dict[bool, int] = {}

    # -- public --------------------------------------------------------------------

    def stamp(
        self, pdf: bytes | BinaryIO, request: StampRequest, *, actor: str | None = None
    ) -> bytes:
        """The sealed document (the input plus new revisions). `actor` names who
        stamps in the audit log. StampError for a document or request that cannot be
        stamped, TrustServiceError when the TSA or revocation data is unavailable."""
        self._check_request(request)
        data = _read_input(pdf, self.max_input_bytes)
        with signing_context(actor=actor, operation="stamp"):
            try:
                return self._stamp(data, request)
            except (SealError, HsmError):
                raise
            except SigningError as exc:
                raise StampError(f"the document could not be signed: {exc}") from exc
            except (
                PdfError,
                ValueError,
                KeyError,
                IndexError,
                TypeError,
                AttributeError,
                RecursionError,
            ) as exc:
                # pyHanko's reader raises these on malformed structures it reaches late.
                raise StampError(
                    f"the document is not a well-formed PDF ({type(exc).__name__})"
                ) from exc

    def stamp_batch(
        self,
        inputs: Path | Iterable[Path],
        output_dir: Path,
        request: StampRequest,
        *,
        actor: str | None = None,
        progress: Callable[[int, int, BatchItem], None] | None = None,
    ) -> BatchReport:
        """Stamp every PDF of a directory (or the given files) into `output_dir`, under
        the same names. A file that cannot be stamped is reported and skipped."""
        self._check_request(request)
        if isinstance(inputs, Path):
            if not inputs.is_dir():
                raise StampError(f"{inputs} is not a directory")
            sources = sorted(
                p
                for p in inputs.iterdir()
                if p.suffix.lower() == ".pdf" and p.is_file()
            )
        else:
            sources = list(inputs)
        output_dir.mkdir(parents=True, exist_ok=True)
        resolved_out = output_dir.resolve()
        if any(source.resolve().parent == resolved_out for source in sources):
            raise StampError("the output directory must not be the input directory")
        stamped: list[BatchItem] = []
        failed: list[BatchItem] = []
        for done, source in enumerate(sources, start=1):
            item = self._stamp_file(source, resolved_out / source.name, request, actor)
            (stamped if item.error is None else failed).append(item)
            if progress is not None:
                progress(done, len(sources), item)
        return BatchReport(stamped=tuple(stamped), failed=tuple(failed))

    # -- internals -----------------------------------------------------------------

    def _stamp_file(
        self, source: Path, target: Path, request: StampRequest, actor: str | None
    ) -> BatchItem:
        try:
            with source.open("rb") as handle:
                sealed = self.stamp(handle, request, actor=actor)
        except OSError as exc:
            return BatchItem(
                source=source,
                output=None,
                error=f"cannot read the file ({exc.strerror})",
            )
        except StampError as exc:
            return BatchItem(source=source, output=None, error=str(exc))
        descriptor, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=".stamping-", suffix=".pdf"
        )
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(sealed)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return BatchItem(source=source, output=target)

    def _check_request(self, request: StampRequest) -> None:
        for placement in request.placements:
            if isinstance(placement, At):
                if placement.page < 1:
                    raise StampError("page numbers start at 1")
                if not (
                    math.isfinite(placement.x_mm) and math.isfinite(placement.y_mm)
                ):
                    raise StampError(
                        "the seal position must be a finite number of millimetres"
                    )
            elif isinstance(placement, OnKeyword):
                occurrence = placement.occurrence
                if isinstance(occurrence, int) and not isinstance(occurrence, bool):
                    if occurrence < 1:
                        raise StampError("keyword occurrences are counted from 1")
                elif occurrence not in ("first", "last", "all"):
                    raise StampError(
                        "the occurrence must be first, last, all or a number"
                    )
            else:
                raise TypeError("a placement is At or OnKeyword")
        if request.seam is not None and request.seam.pages_per_image < 2:
            raise StampError("a seam seal needs at least two pages per seal image")
        if request.level.timestamped and self.services.timestamp is None:
            raise StampError(
                f"level {request.level.value} needs a timestamp authority; none is configured"
            )
        if request.level.long_term and self.services.revocation is None:
            raise StampError(
                f"level {request.level.value} needs a revocation source; none is configured"
            )

    def _stamp(self, data: bytes, request: StampRequest) -> bytes:
        try:
            writer = IncrementalPdfFileWriter(io.BytesIO(data))
        except (
            PdfError,
            ValueError,
            KeyError,
            IndexError,
            TypeError,
            RecursionError,
        ) as exc:
            raise StampError("the document is not a readable PDF") from exc
        if writer.prev.encrypted:
            raise StampError(
                "the document is encrypted; remove its password before sealing it"
            )
        existing = list(fields.enumerate_sig_fields(writer.prev))
        already_sealed = any(value is not None for _, value, _ in existing)
        certification = read_certification_data(writer.prev)
        if certification is not None and certification.permission == MDPPerm.NO_CHANGES:
            raise DocumentLockedError(
                "the document is certified with no changes allowed; it cannot be sealed again"
            )
        if request.certify and already_sealed:
            raise StampError("only the first seal on a document can certify it")

        tree = _PageTree(writer)
        page_count = tree.count
        if page_count < 1:
            raise StampError("the document has no pages")
        pages: dict[int, generic.IndirectObject] = (
            dict(enumerate(tree.all())) if request.seam is not None else {}
        )
        frames: dict[int, _PageFrame] = {}

        def page_ref(index: int) -> generic.IndirectObject:
            if index not in pages:
                pages[index] = tree.page(index)
            return pages[index]

        def frame_of(index: int) -> _PageFrame:
            if index not in frames:
                frames[index] = _page_frame(page_ref(index).get_object(), index + 1)
            return frames[index]

        drawings = self._placements(data, request.placements, page_count, frame_of)
        seam_drawings = (
            self._seam(request.seam, page_count, frame_of) if request.seam else []
        )
        if already_sealed and (len(drawings) > 1 or seam_drawings):
            raise StampError(
                "the document already carries a seal: a further seal can only be one visible"
                " seal (extra images or a seam seal would change pages the earlier seals cover)"
            )

        image = self._import_image(writer)
        on_pages: dict[int, list[_Drawing]] = {}
        for drawing in [*drawings[1:], *seam_drawings]:
            on_pages.setdefault(drawing.page_index, []).append(drawing)
        if on_pages:
            wrap = writer.add_object(generic.StreamObject(stream_data=b"q\n"))
            for page_index, page_drawings in sorted(on_pages.items()):
                _draw_on_page(writer, page_ref(page_index), page_drawings, image, wrap)

        taken = {name for name, _, _ in existing}
        field_name = _unused_field_name(taken, _safe_field_stem(self.credential.name))
        return self._sign(
            writer, request, field_name, drawings[0] if drawings else None, image
        )

    def _placements(
        self,
        data: bytes,
        placements: Sequence[Placement],
        page_count: int,
        frame_of: Callable[[int], _PageFrame],
    ) -> list[_Drawing]:
        drawings: list[_Drawing] = []
        for placement in placements:
            if isinstance(placement, At):
                index = placement.page - 1
                if index >= page_count:
                    raise StampError(
                        f"page {placement.page} does not exist; the document has {page_count} pages"
                    )
                frame = frame_of(index)
                width, height = frame.size
                centre = (
                    placement.x_mm * POINTS_PER_MM,
                    height - placement.y_mm * POINTS_PER_MM,
                )
                if not (0 <= centre[0] <= width and 0 <= centre[1] <= height):
                    raise StampError(
                        f"the seal centre ({placement.x_mm:g} mm, {placement.y_mm:g} mm) is outside page"
                        f" {placement.page} ({width / POINTS_PER_MM:.0f} × {height / POINTS_PER_MM:.0f} mm)"
                    )
                drawings.append(_Drawing(page_index=index, frame=frame, centre=centre))
            else:
                for match in _select(find_text(data, placement.text), placement):
                    frame = frame_of(match.page_index)
                    centre = _apply(frame.to_display, *match.centre)
                    drawings.append(
                        _Drawing(
                            page_index=match.page_index, frame=frame, centre=centre
                        )
                    )
        return drawings

    def _seam(
        self, seam: SeamSeal, page_count: int, frame_of: Callable[[int], _PageFrame]
    ) -> list[_Drawing]:
        if page_count < 2:
            raise StampError("a seam seal needs a document of at least two pages")
        seal_width, _ = self._image_size
        drawings = []
        for group in _seam_groups(page_count, seam.pages_per_image):
            strip = seal_width / len(group)
            for position, page_index in enumerate(group):
                frame = frame_of(page_index)
                width, height = frame.size
                # Fanned out, the first page shows the seal's outer-left strip on the
                # right edge (outer-right on the left edge), the last page the other end.
                if seam.side is Side.RIGHT:
                    left = width - strip - position * strip
                    clip = (width - strip, 0.0, strip, height)
                else:
                    left = -(len(group) - 1 - position) * strip
                    clip = (0.0, 0.0, strip, height)
                centre = (left + seal_width / 2, height / 2)
                drawings.append(
                    _Drawing(
                        page_index=page_index, frame=frame, centre=centre, clip=clip
                    )
                )
        return drawings

    def _import_image(self, writer: IncrementalPdfFileWriter) -> _SealImage:
        # The seal image's reader reads its one stream: threads take turns.
        with self._image_lock:
            xobject = writer.import_page_as_xobject(self._image_reader, page_ix=0)
        ink = writer.add_object(
            generic.DictionaryObject(
                {
                    pdf_name("/Type"): pdf_name("/ExtGState"),
                    pdf_name("/BM"): pdf_name("/Multiply"),
                }
            )
        )
        return _SealImage(
            xobject=xobject,
            graphics_state=ink,
            bbox=self._image_bbox,
            size=self._image_size,
        )

    def _validation_context(self) -> ValidationContext:
        assert self.services.revocation is not None
        return ValidationContext(
            trust_roots=self._trust_roots,
            other_certs=self._chain,
            allow_fetching=True,
            fetchers=revocation_fetchers(self.services.revocation),
            revocation_mode="require",
        )

    def _reserve(self, timestamped: bool) -> int:
        """Hex characters to reserve for the CMS: pyHanko's dry run, done once."""
        if timestamped not in self._reserved:
            digest = bytes(
                get_pyca_cryptography_hash(self._signer.digest_algorithm).digest_size
            )
            estimate = asyncio.run(
                self._signer.async_sign(
                    digest,
                    self._signer.digest_algorithm,
                    dry_run=True,
                    use_pades=True,
                    timestamper=self._timestamper if timestamped else None,
                )
            )
            self._reserved[timestamped] = 2 * (len(estimate.dump()) + _RESERVE_MARGIN)
        return self._reserved[timestamped]

    def _sign(
        self,
        writer: IncrementalPdfFileWriter,
        request: StampRequest,
        field_name: str,
        visible: _Drawing | None,
        image: _SealImage,
    ) -> bytes:
        level = request.level
        metadata = signers.PdfSignatureMetadata(
            field_name=field_name,
            md_algorithm=self._signer.digest_algorithm,
            subfilter=SigSeedSubFilter.PADES,
            reason=request.reason,
            location=request.location,
            certify=request.certify,
            docmdp_permissions=MDPPerm.NO_CHANGES
            if request.certify
            else MDPPerm.FILL_FORMS,
            embed_validation_info=level.long_term,
            use_pades_lta=level is Level.B_LTA,
            validation_context=self._validation_context() if level.long_term else None,
        )
        if visible is None:
            field_spec = SigFieldSpec(field_name)
            style: BaseStampStyle = _SealAppearanceStyle()
        else:
            matrix = visible.user_matrix(image)
            bx0, by0, bx1, by1 = image.bbox
            corners = [_apply(matrix, x, y) for x in (bx0, bx1) for y in (by0, by1)]
            rect = (
                min(x for x, _ in corners),
                min(y for _, y in corners),
                max(x for x, _ in corners),
                max(y for _, y in corners),
            )
            field_spec = SigFieldSpec(field_name, on_page=visible.page_index, box=rect)
            style = _SealAppearanceStyle(
                xobject=image.xobject,
                graphics_state=image.graphics_state,
                matrix=_multiply(matrix, _translate(-rect[0], -rect[1])),
            )
        pdf_signer = signers.PdfSigner(
            metadata,
            signer=self._signer,
            timestamper=self._timestamper if level.timestamped else None,
            stamp_style=style,
            new_field_spec=field_spec,
        )
        try:
            output = pdf_signer.sign_pdf(
                writer, bytes_reserved=self._reserve(level.timestamped)
            )
        except SigningError as exc:
            if level.long_term and isinstance(
                exc.__cause__, (ValidationError, PathBuildingError)
            ):
                raise TrustServiceError(
                    "could not collect revocation data for the seal certificate's chain"
                ) from exc
            raise
        return output.getvalue()


def _select(matches: list[TextMatch], placement: OnKeyword) -> list[TextMatch]:
    if not matches:
        raise StampError(f"the text {placement.text!r} was not found in the document")
    occurrence = placement.occurrence
    if occurrence == "first":
        return matches[:1]
    if occurrence == "last":
        return matches[-1:]
    if occurrence == "all":
        return matches
    assert isinstance(occurrence, int)
    if occurrence > len(matches):
        raise StampError(
            f"the text {placement.text!r} occurs {len(matches)} time(s); there is no occurrence {occurrence}"
        )
    return [matches[occurrence - 1]]


def _unused_field_name(taken: set[str], stem: str) -> str:
    candidate, counter = stem, 1
    while candidate in taken:
        counter += 1
        candidate = f"{stem}_{counter}"
    return candidate


def stamp_pdf(
    pdf: bytes | BinaryIO,
    request: StampRequest,
    *,
    credential: SealCredential,
    services: TrustServices | None = None,
    actor: str | None = None,
    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES,
) -> bytes:
    """Stamp one document (for many, build a `Stamper` once and reuse it)."""
    stamper = Stamper(credential, services=services, max_input_bytes=max_input_bytes)
    return stamper.stamp(pdf, request, actor=actor)


def stamp_batch(
    inputs: Path | Iterable[Path],
    output_dir: Path,
    request: StampRequest,
    *,
    credential: SealCredential,
    services: TrustServices | None = None,
    actor: str | None = None,
    progress: Callable[[int, int, BatchItem], None] | None = None,
) -> BatchReport:
    """Stamp every PDF in a directory (or the given files); bad files are skipped."""
    stamper = Stamper(credential, services=services)
    return stamper.stamp_batch(
        inputs, output_dir, request, actor=actor, progress=progress
    )
