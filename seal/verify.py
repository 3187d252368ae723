"""Verifying sealed PDFs: one report per signature and one bottom line a clerk can read.

    report = verify_pdf(pdf_bytes, trust_roots=[region_root])
    report.valid, report.reason          # the bottom line, one line
    report.usable                        # False: not a readable PDF, or nothing signed
    report.signatures[0].seal.agency     # which official seal, which agency
    print(report.to_json())

What makes a seal valid, in the order the reasons are reported:
- the signed bytes hash to what the CMS signature covers and the signature verifies;
- the signature covers its whole revision (pyHanko's coverage check), and every later
  revision is one of: later seals or signatures, validation data (DSS), document
  timestamps, or a change of the document properties in /Info or XMP metadata, which
  are not part of what a seal vouches for. Filled-in form fields and any other change
  (page content, annotations, a new /Root ...) make the seal INVALID, as does a
  certification seal whose permission forbids the change;
- the seal certificate chains to a trusted root at the signing time — the time of a
  valid trusted signature timestamp (B-T and above), else the verification time — and
  was not revoked then. Revocation data comes from the file (DSS, CMS) first, then,
  when allowed, online; "not checked" (nothing embedded, no online check) is reported
  but does not invalidate unless `require_revocation` is set;
- the GB/T 38540 seal data carried in the signature (a signed CMS attribute): the
  seal maker's signature verifies, the maker's certificate carries the seal-maker
  policy and chains to a trusted root, the seal's validity period contains the signing
  time, and the seal certificate is one the seal data lists (certificate list or
  digest list). The agency and USCC the seal data's certificates name must be the seal
  certificate's (O and organizationIdentifier NTRCN-<USCC>).
A signature without seal data is judged the same way but is not a seal; a document is
valid only when every signature is and at least one of them is a seal.

Choices a reviewer should know:
- pdfsig says "Signature is Valid." for every incremental-update attack; pyHanko's
  difference analysis is what catches them, and this module adds what pyHanko lets
  through: bytes after the end of the last revision (pyHanko ignores them; a viewer
  that repairs files may not), and revisions the strict reader cannot read.
- Files are read strictly. Hybrid cross-reference files (a table and a stream for the
  same revision) are refused: different readers can resolve them to different
  documents, and pyHanko will not validate signatures in them in strict mode. A file
  the strict reader rejects is re-read leniently only to tell "damaged signed
  document" (INVALID) from "not a PDF" (unusable); nothing is validated leniently.
- Signed-at-time semantics use revocation data issued after the signing time
  (retroactive revocation info, as PAdES B-LT requires): a certificate released from
  hold after a seal was made on hold is not caught. Embedded revocation data too old
  to speak for the validation time is set aside (certvalidator would count it as a
  failed check even in soft-fail mode).
- Timestamps themselves (signature timestamps, document timestamps) are judged at the
  verification time, or at the time of a later valid document timestamp: once the
  TSA's certificate expires, only a B-LTA chain of document timestamps keeps a seal
  valid, as PAdES intends. pyHanko 0.38 no longer has validate_pdf_ltv_signature;
  this module does the LT part itself (validation at the timestamp's time with the
  DSS's revocation data) and leaves pyHanko's incubating AdES validator alone.
- An /Info-only update (pyHanko: LTA_UPDATES) does not invalidate a seal: title,
  author and producer are not part of what a seal vouches for, and nothing shown on
  the page changes. It is reported as `Change.DOCUMENT_INFO_CHANGED`.
- Every step runs under a wall-clock budget in a worker thread. When the budget is
  spent the caller gets INVALID "verification took too long" and the worker is
  interrupted with an asynchronous exception: no signals, so it works in any thread of
  any (non-gevent) gunicorn worker. Decoding is bounded by pyHanko's decode limits.
"""

from __future__ import annotations

import asyncio
import contextvars
import ctypes
import dataclasses
import datetime as dt
import enum
import hashlib
import io
import json
import logging
import threading
import traceback
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from asn1crypto import cms, core, crl, ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.decode_limits import (
    DEFAULT_PURPOSE_LIMITS,
    DecodeLimits,
    DecodePurpose,
    DocumentDecodeBudget,
    StreamDecodeLimits,
)
from pyhanko.pdf_utils.misc import PdfDecodeLimitError, PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import (
    DiffResult,
    ModificationLevel,
    SuspiciousModification,
)
from pyhanko.sign.fields import MDPPerm, SigSeedSubFilter, enumerate_sig_fields
from pyhanko.sign.validation import (
    DocumentSecurityStore,
    EmbeddedPdfSignature,
    async_validate_pdf_signature,
    async_validate_pdf_timestamp,
)
from pyhanko.sign.validation.errors import NoDSSFoundError, SignatureValidationError
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    DisallowedAlgorithmError,
    ExpiredError,
    InsufficientRevinfoError,
    InvalidCertificateError,
    NotYetValidError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.fetchers import FetcherBackend, Fetchers
from pyhanko_certvalidator.fetchers.api import FetchLimits

from pki.oids import ProjectOID, StandardOID
from seal.sesdata import CertListType, SealData, SealDataError, parse_seal, verify_seal
from seal.signer import SEAL_DATA_ATTRIBUTE_OID
from seal.trust_services import RevocationSource, revocation_fetchers

__all__ = [
    "DEFAULT_MAX_INPUT_BYTES",
    "ChainDetails",
    "Change",
    "Coverage",
    "Modifications",
    "PdfVerification",
    "RevocationDetails",
    "RevocationStatus",
    "SealDetails",
    "SignatureKind",
    "SignatureReport",
    "SignerDetails",
    "TimestampDetails",
    "VerifyLimits",
    "verify_pdf",
]

_LOG = logging.getLogger(__name__)
# pyHanko and its certificate validator log what they meet in a file: warnings with
# tracebacks that quote certificate subjects (the person named on a legal
# representative's seal) and other text the file's author chose, newlines included,
# which would forge log lines. While a document is verified, their records below ERROR
# are dropped and the others keep only their level and logger name. A context
# variable scopes this to the verification, so stamping keeps pyHanko's diagnostics.
_LIBRARY_LOGGERS = ("pyhanko", "pyhanko_certvalidator")
_VERIFYING = contextvars.ContextVar("yinxin_verifying_pdf", default=False)
_WITHHELD = (
    "pyHanko reported an error verifying a document"
    " (details withheld: they may quote the document)"
)
MiB = 1024 * 1024
DEFAULT_MAX_INPUT_BYTES = 100 * MiB
_WHITESPACE = b"\x00\t\n\x0c\r "
_MESSAGE_LIMIT = 160
# GB/T 38540-2020 SES_ESPropertyInfo.type.
_SEAL_TYPE_NAMES = {1: "单位印章", 2: "个人印章"}
_USCC_PREFIX = "NTRCN-"
_MAKER_POLICY = ProjectOID.SEAL_MAKER_POLICY.dotted_string
_DIGESTS = {
    "sm3": hashes.SM3,
    "sha256": hashes.SHA256,
    "sha-256": hashes.SHA256,
    "sha1": hashes.SHA1,
}


@dataclasses.dataclass(frozen=True)
class VerifyLimits:
    """Bounds on the work one verification may do."""

    max_input_bytes: int = DEFAULT_MAX_INPUT_BYTES
    max_signatures: int = 32
    max_revisions: int = 256
    time_budget_seconds: float = 30.0
    max_stream_bytes: int = 64 * MiB  # one decoded stream
    max_decoded_bytes: int = 256 * MiB  # all decoding for the document
    fetch_timeout_seconds: float = 5.0  # one online revocation request

    def __post_init__(self) -> None:
        for name in (
            "max_input_bytes",
            "max_signatures",
            "max_revisions",
            "max_stream_bytes",
            "max_decoded_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer")
        for name in ("time_budget_seconds", "fetch_timeout_seconds"):
            value = getattr(self, name)
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not value > 0
            ):
                raise ValueError(f"{name} must be a positive number of seconds")

    def decode_limits(self) -> DecodeLimits:
        stream = StreamDecodeLimits(max_output_size=self.max_stream_bytes)
        return DecodeLimits(
            per_stream=stream,
            per_purpose=dict(DEFAULT_PURPOSE_LIMITS),
            document_budget=DocumentDecodeBudget(
                base_allowance=self.max_decoded_bytes, max_ratio=1
            ),
        )


class SignatureKind(enum.Enum):
    APPROVAL = "approval"
    CERTIFICATION = "certification"
    DOCUMENT_TIMESTAMP = "document-timestamp"


class Coverage(enum.Enum):
    """How much of the file the signature's byte range covers."""

    ENTIRE_FILE = "entire-file"
    ENTIRE_REVISION = (
        "entire-revision"  # later revisions follow; judged by `Modifications`
    )
    PARTIAL = "partial"  # a non-standard byte range: never valid
    UNKNOWN = "unknown"  # the signature could not be read far enough to tell


class Change(enum.Enum):
    """What a revision after the signature did."""

    SIGNATURE_ADDED = "signature-added"
    DOCUMENT_TIMESTAMP_ADDED = "document-timestamp-added"
    VALIDATION_DATA_ADDED = "validation-data-added"
    DOCUMENT_INFO_CHANGED = "document-info-changed"
    FORM_FILLED = "form-filled"
    OTHER = "other"


class RevocationStatus(enum.Enum):
    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"  # revocation data was there or fetched but did not settle it
    NOT_CHECKED = "not-checked"  # none embedded and no online check allowed


@dataclasses.dataclass(frozen=True)
class SignerDetails:
    """The signing certificate: for a seal, the agency's seal certificate."""

    subject: str
    serial: str  # hex
    issuer: str
    agency: str | None  # O
    agency_uscc: str | None  # organizationIdentifier without NTRCN-


@dataclasses.dataclass(frozen=True)
class TimestampDetails:
    time: dt.datetime | None
    valid: (
        bool  # token intact, its signature verifies, the TSA chains to a trusted root
    )
    tsa: str | None
    reason: str


@dataclasses.dataclass(frozen=True)
class ChainDetails:
    trusted: bool
    subjects: tuple[str, ...]  # the certificate first, the trust root last
    validated_at: dt.datetime
    reason: str


@dataclasses.dataclass(frozen=True)
class RevocationDetails:
    status: RevocationStatus
    source: str | None  # "embedded" (DSS or CMS) or "online"
    at: dt.datetime  # the time the status refers to
    reason: str


@dataclasses.dataclass(frozen=True)
class Modifications:
    """The revisions after the signed one, as pyHanko's difference analysis judged them."""

    level: str  # pyHanko's ModificationLevel: none, lta-updates, form-filling, other
    revisions_after: int
    changes: tuple[Change, ...]
    allowed: bool
    explanation: str


@dataclasses.dataclass(frozen=True)
class SealDetails:
    """The GB/T 38540 seal data carried in the signature, and how it checked out."""

    name: str
    seal_type: int
    seal_type_name: str | None
    es_id: str  # the seal code
    vendor_id: str
    agency: str | None  # from the certificates the seal data lists
    agency_uscc: str | None
    valid_from: dt.datetime
    valid_until: dt.datetime
    maker: str | None
    maker_signature_ok: bool
    maker_trusted: bool
    within_validity: bool
    signer_listed: bool
    agrees_with_certificate: bool
    valid: bool
    reason: str


@dataclasses.dataclass(frozen=True)
class SignatureReport:
    field_name: str
    kind: SignatureKind
    seal: SealDetails | None
    seal_data_present: bool  # a seal-data attribute is there, even if unreadable
    signer: SignerDetails | None
    signing_time: dt.datetime | None  # as the signer claims it
    timestamp: TimestampDetails | None
    intact: bool
    crypto_valid: bool
    coverage: Coverage
    modifications: Modifications | None
    chain: ChainDetails | None
    revocation: RevocationDetails | None
    certification_permission: (
        str | None
    )  # for a certification: no-changes, fill-forms, annotate
    valid: bool
    reason: str

    @property
    def is_seal(self) -> bool:
        return self.seal_data_present

    def describe(self) -> str:
        """How the bottom line names this signature: the seal and agency where known."""
        if self.kind is SignatureKind.DOCUMENT_TIMESTAMP:
            return f"document timestamp {self.field_name!r}"
        who = (self.seal.agency if self.seal else None) or (
            self.signer.agency if self.signer else None
        )
        noun = "seal" if self.is_seal else "signature"
        return f"{noun} {self.field_name!r}" + (f" ({who})" if who else "")


@dataclasses.dataclass(frozen=True)
class PdfVerification:
    valid: bool
    reason: str
    usable: bool
    signatures: tuple[SignatureReport, ...]
    sha256: str
    size: int
    verified_at: dt.datetime

    @property
    def exit_code(self) -> int:
        """0 valid, 1 invalid, 2 unusable input (the CLI's exit status)."""
        if not self.usable:
            return 2
        return 0 if self.valid else 1

    @property
    def seals(self) -> tuple[SignatureReport, ...]:
        return tuple(s for s in self.signatures if s.is_seal)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary: valid, reason, usable, signatures, sha256, ..."""
        return _plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        result = {
            f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
        }
        if isinstance(value, SignatureReport):
            result["is_seal"] = value.is_seal
        if isinstance(value, PdfVerification):
            result["exit_code"] = value.exit_code
        return result
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value


# -- the public entry point ----------------------------------------------------------


def verify_pdf(
    data: bytes,
    *,
    trust_roots: Sequence[x509.Certificate | asn1_x509.Certificate],
    allow_fetching: bool = False,
    revocation: RevocationSource | None = None,
    now: dt.datetime | None = None,
    require_revocation: bool = False,
    limits: VerifyLimits = VerifyLimits(),
) -> PdfVerification:
    """Verify every seal and signature in a PDF.

    Never raises for bad input: a file that is not a PDF, has no signatures, is too
    large, hostile or takes too long ends in a report with `valid` False and a reason.
    `allow_fetching` lets revocation data be fetched over HTTP from the URLs the
    certificates name; `revocation` answers such requests in process instead (this
    node's own OCSP and CRLs). Raises TypeError/ValueError only for wrong arguments.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    roots = _asn1_roots(trust_roots)
    if now is not None and (
        not isinstance(now, dt.datetime) or now.utcoffset() is None
    ):
        raise ValueError("now must be an aware datetime")
    if not isinstance(limits, VerifyLimits):
        raise TypeError("limits must be a VerifyLimits")
    document = bytes(data)
    started = now or dt.datetime.now(dt.UTC)
    digest = hashlib.sha256(document).hexdigest()

    def finish(
        valid: bool,
        reason: str,
        usable: bool,
        signatures: tuple[SignatureReport, ...] = (),
    ) -> PdfVerification:
        return PdfVerification(
            valid=valid,
            reason=reason,
            usable=usable,
            signatures=signatures,
            sha256=digest,
            size=len(document),
            verified_at=started.astimezone(dt.UTC),
        )

    if len(document) > limits.max_input_bytes:
        return finish(
            False,
            f"the file is larger than the {_size(limits.max_input_bytes)} limit; it was not read",
            False,
        )
    verifier = _Verifier(
        data=document,
        roots=roots,
        allow_fetching=bool(allow_fetching),
        revocation=revocation,
        now=now,
        started=started,
        require_revocation=bool(require_revocation),
        limits=limits,
        finish=finish,
    )
    result = _run_with_deadline(verifier.run, limits.time_budget_seconds)
    if result is None:
        return finish(
            False,
            f"verification took too long (over {limits.time_budget_seconds:g} s); the file is treated as invalid",
            True,
        )
    return result


def _size(count: int) -> str:
    return f"{count / MiB:g} MiB" if count >= MiB else f"{count} bytes"


class _WithholdDocumentDetails(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not _VERIFYING.get():
            return True
        if record.levelno < logging.ERROR:
            return False
        record.msg, record.args = _WITHHELD, None
        record.exc_info = record.exc_text = record.stack_info = None
        return True


_WITHHOLD = _WithholdDocumentDetails()


def _withhold_library_details() -> None:
    """Put the filter on every pyHanko logger.

    A logger's filters see only its own records, not its children's, and pyHanko makes
    one logger per module as it is imported: this runs before each verification and
    after the lazy import of the online fetchers."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        if (
            isinstance(logger, logging.Logger)
            and name.partition(".")[0] in _LIBRARY_LOGGERS
            and _WITHHOLD not in logger.filters
        ):
            logger.addFilter(_WITHHOLD)


def _asn1_roots(trust_roots: object) -> list[asn1_x509.Certificate]:
    if isinstance(trust_roots, (str, bytes)) or not isinstance(trust_roots, Iterable):
        raise TypeError("trust_roots must be a list of certificates")
    roots = []
    for root in trust_roots:
        if isinstance(root, x509.Certificate):
            roots.append(asn1_x509.Certificate.load(root.public_bytes(Encoding.DER)))
        elif isinstance(root, asn1_x509.Certificate):
            roots.append(root)
        else:
            raise TypeError(
                "each trust root must be a cryptography or asn1crypto certificate"
            )
    if not roots:
        raise ValueError(
            "at least one trust root is needed (an empty list would trust nothing)"
        )
    return roots


# -- the wall-clock budget -----------------------------------------------------------


class _DeadlineExceeded(BaseException):
    """Raised inside the verifying thread when its time is up.

    A BaseException, so that pyHanko's `except Exception` handlers let it through.
    """


_SET_ASYNC_EXC = ctypes.pythonapi.PyThreadState_SetAsyncExc
_SET_ASYNC_EXC.argtypes = (ctypes.c_ulong, ctypes.py_object)
_GRACE_SECONDS = 2.0


def _settle() -> None:
    """A Python-level call: a pending interruption is raised here, inside the worker's try."""


def _run_with_deadline(work: Any, seconds: float) -> Any:
    """`work()` in a worker thread; None if it did not finish within `seconds`.

    Exceptions from `work` (programming errors; bad input never raises) are re-raised
    here. On timeout the worker gets `_DeadlineExceeded` at its next bytecode, which
    ends pure-Python loops in pyHanko; the caller does not wait for that beyond a
    short grace period.
    """
    outcome: dict[str, Any] = {}
    lock = threading.Lock()
    finished = threading.Event()

    def target() -> None:
        try:
            try:
                outcome["result"] = work()
            except _DeadlineExceeded:
                raise
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                outcome["error"] = exc
            with lock:
                finished.set()
            _settle()
        except _DeadlineExceeded:
            pass

    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(target,), name="yinxin-verify-pdf", daemon=True
    )
    thread.start()
    finished.wait(seconds)
    with lock:
        if not finished.is_set():
            assert thread.ident is not None
            _SET_ASYNC_EXC(thread.ident, _DeadlineExceeded)
            timed_out = True
        else:
            timed_out = False
    thread.join(_GRACE_SECONDS if timed_out else None)
    if timed_out:
        return None
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


# -- reading the document --------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= _MESSAGE_LIMIT else line[: _MESSAGE_LIMIT - 3] + "..."


def _failure(exc: BaseException) -> str:
    """What went wrong reading or validating hostile input, in words a report can show.

    pyHanko's own errors describe the file's structure; anything else (asn1crypto,
    Python errors on unexpected object types) is named by kind only.
    """
    if isinstance(exc, PdfDecodeLimitError):
        return "a stream decodes to more data than allowed"
    if isinstance(
        exc,
        (PdfError, SignatureValidationError, SuspiciousModification, ValidationError),
    ):
        return _first_line(exc)
    if isinstance(exc, RecursionError):
        return "objects are nested too deeply"
    if isinstance(exc, MemoryError):
        return "the file needs more memory than allowed"
    if isinstance(exc, ValueError):
        return "malformed data (ASN.1 or PDF syntax)"
    return f"malformed structure ({type(exc).__name__})"


def _subject(certificate: asn1_x509.Certificate) -> str:
    try:
        return x509.load_der_x509_certificate(
            certificate.dump()
        ).subject.rfc4514_string()
    except (ValueError, TypeError):
        return certificate.subject.human_friendly


def _agency_of(certificate_der: bytes) -> tuple[str | None, str | None]:
    """(O, USCC) of a certificate's subject; None where absent or unreadable."""
    try:
        subject = x509.load_der_x509_certificate(certificate_der).subject
    except (ValueError, TypeError):
        return None, None
    names = subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
    identifiers = subject.get_attributes_for_oid(StandardOID.ORGANIZATION_IDENTIFIER)
    agency = str(names[0].value) if names else None
    uscc = None
    if identifiers:
        value = str(identifiers[0].value)
        uscc = value.removeprefix(_USCC_PREFIX)
    return agency, uscc


def _signer_details(certificate: asn1_x509.Certificate) -> SignerDetails:
    agency, uscc = _agency_of(certificate.dump())
    return SignerDetails(
        subject=_subject(certificate),
        serial=format(certificate.serial_number, "x"),
        issuer=certificate.issuer.human_friendly,
        agency=agency,
        agency_uscc=uscc,
    )


def _certification_permission(sig_object: generic.DictionaryObject) -> MDPPerm | None:
    """The DocMDP permission when this signature certifies the document."""
    try:
        references = sig_object.get("/Reference") or ()
        for reference in references:
            reference = reference.get_object()
            if reference.get("/TransformMethod") == "/DocMDP":
                params = reference.get("/TransformParams")
                value = params.get_object().get("/P", 2) if params is not None else 2
                return MDPPerm(int(value))
    except (ValueError, TypeError, KeyError, AttributeError):
        return MDPPerm.NO_CHANGES  # an unreadable certification: the strictest reading
    return None


_PERMISSION_NAMES = {
    MDPPerm.NO_CHANGES: "no-changes",
    MDPPerm.FILL_FORMS: "fill-forms",
    MDPPerm.ANNOTATE: "annotate",
}


def _seal_data_attribute(signer_info: cms.SignerInfo) -> bytes | None:
    """The SESeal DER from the signed seal-data attribute, None if there is none.

    Raises ValueError when the attribute is there but not one OCTET STRING."""
    attributes = signer_info["signed_attrs"]
    found = [a for a in attributes if a["type"].dotted == SEAL_DATA_ATTRIBUTE_OID]
    if not found:
        return None
    if len(found) > 1 or len(found[0]["values"]) != 1:
        raise ValueError("the seal-data attribute must hold exactly one value")
    value = found[0]["values"][0]
    octets = value.parse(core.OctetString) if isinstance(value, core.Any) else value
    if not isinstance(octets, core.OctetString):
        raise TypeError("the seal-data attribute is not an OCTET STRING")
    return octets.native


def _cms_revocation_info(
    signer_info: cms.SignerInfo,
) -> tuple[list[crl.CertificateList], list[ocsp.OCSPResponse]]:
    """CRLs and OCSP responses in the Adobe revocation-info-archival signed attribute."""
    crls: list[crl.CertificateList] = []
    ocsps: list[ocsp.OCSPResponse] = []
    for attribute in signer_info["signed_attrs"]:
        if attribute["type"].native != "adobe_revocation_info_archival":
            continue
        for archival in attribute["values"]:
            crls.extend(archival["crl"] or ())
            ocsps.extend(archival["ocsp"] or ())
    return crls, ocsps


def _unaccounted_tail(reader: PdfFileReader, data: bytes) -> int:
    """Non-whitespace bytes after the end of the last revision the reader uses.

    pyHanko ignores them; a viewer that repairs files may read objects from them (the
    incremental-saving attack without cross-reference data).
    """
    last = reader.xrefs.total_revisions - 1
    end = reader.xrefs.get_xref_container_info(last).end_location
    marker = data.find(b"%%EOF", end)
    if marker < 0:
        return len(data) - end
    return len(data[marker + 5 :].strip(_WHITESPACE))


def _count_signatures_leniently(data: bytes, limits: VerifyLimits) -> int:
    """How many filled signature fields a lenient reader finds (0 if it cannot read)."""
    try:
        reader = PdfFileReader(
            io.BytesIO(data), strict=False, decode_limits=limits.decode_limits()
        )
        return sum(1 for _ in enumerate_sig_fields(reader, filled_status=True))
    except Exception:  # noqa: BLE001 - hostile input: any failure means "none found"
        return 0


def _looks_signed(data: bytes) -> bool:
    return b"/ByteRange" in data and (b"/Contents" in data or b"/Sig" in data)


# -- the verification ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Embedded:
    """Validation data the document carries for every signature."""

    certs: tuple[asn1_x509.Certificate, ...]
    crls: tuple[crl.CertificateList, ...]
    ocsps: tuple[ocsp.OCSPResponse, ...]


@dataclasses.dataclass(frozen=True)
class _ChainOutcome:
    chain: ChainDetails
    revocation: RevocationDetails
    path_certs: tuple[asn1_x509.Certificate, ...]


class _Verifier:
    def __init__(
        self,
        *,
        data: bytes,
        roots: list[asn1_x509.Certificate],
        allow_fetching: bool,
        revocation: RevocationSource | None,
        now: dt.datetime | None,
        started: dt.datetime,
        require_revocation: bool,
        limits: VerifyLimits,
        finish: Callable[..., PdfVerification],
    ) -> None:
        self.data = data
        self.roots = roots
        self.allow_fetching = allow_fetching
        self.revocation = revocation
        self.explicit_now = now
        self.now = started.astimezone(dt.UTC)
        self.require_revocation = require_revocation
        self.limits = limits
        self.finish = finish
        self._backend: FetcherBackend | None = None
        self._fetchers: Fetchers | None = None

    # the entry point, in the worker thread
    def run(self) -> PdfVerification:
        _withhold_library_details()
        _VERIFYING.set(True)
        return asyncio.run(self._run())

    async def _run(self) -> PdfVerification:
        try:
            return await self._verify()
        finally:
            if self._backend is not None:
                await self._backend.close()

    async def _verify(self) -> PdfVerification:
        finish = self.finish
        try:
            reader = PdfFileReader(
                io.BytesIO(self.data),
                strict=True,
                decode_limits=self.limits.decode_limits(),
            )
            encrypted = reader.encrypted
            fields = (
                []
                if encrypted
                else list(enumerate_sig_fields(reader, filled_status=True))
            )
        except Exception as exc:  # noqa: BLE001 - any failure of the strict reader
            return self._unreadable(exc)
        if encrypted:
            return finish(
                False,
                "the document is encrypted; only unencrypted documents can be verified",
                False,
            )
        if not fields:
            return finish(False, "the document carries no seals or signatures", False)
        if reader.xrefs.hybrid_xrefs_present:
            return finish(
                False,
                "the file has hybrid cross-reference sections, which different PDF readers can resolve"
                " to different documents; its seals cannot be verified safely",
                True,
            )
        revisions = reader.xrefs.total_revisions
        if revisions > self.limits.max_revisions:
            return finish(
                False,
                f"the file has {revisions} revisions, more than the {self.limits.max_revisions} examined",
                True,
            )
        if len(fields) > self.limits.max_signatures:
            return finish(
                False,
                f"the file has {len(fields)} signatures, more than the {self.limits.max_signatures} examined",
                True,
            )
        try:
            embedded = self._read_embedded(reader)
            tail = _unaccounted_tail(reader, self.data)
        except Exception as exc:  # noqa: BLE001 - a hostile DSS or xref section
            return finish(
                False,
                f"the document's validation data cannot be read: {_failure(exc)}",
                True,
            )

        signatures = await self._examine_all(reader, fields, embedded)
        if tail:
            return finish(
                False,
                f"{tail} bytes were appended after the end of the document; no seal covers them and"
                " some PDF readers would show them",
                True,
                signatures,
            )
        first_bad = next((s for s in signatures if not s.valid), None)
        if first_bad is not None:
            return finish(
                False, f"{first_bad.describe()}: {first_bad.reason}", True, signatures
            )
        seals = [s for s in signatures if s.is_seal]
        if not seals:
            return finish(
                False,
                "the document carries signatures but no official seal",
                True,
                signatures,
            )
        unchecked = sum(
            1
            for s in seals
            if s.revocation and s.revocation.status is RevocationStatus.NOT_CHECKED
        )
        reason = (
            f"all {len(seals)} seals valid" if len(seals) != 1 else "the seal is valid"
        )
        if unchecked:
            reason += f" (revocation not checked for {unchecked}: no revocation data in the file, no online check)"
        return finish(True, reason, True, signatures)

    def _unreadable(self, exc: Exception) -> PdfVerification:
        if _looks_signed(self.data):
            count = _count_signatures_leniently(self.data, self.limits)
            if count:
                return self.finish(
                    False,
                    f"the file is damaged or ambiguous ({_failure(exc)}); its {count} signature(s)"
                    " cannot be verified",
                    True,
                )
        return self.finish(False, f"not a readable PDF: {_failure(exc)}", False)

    def _read_embedded(self, reader: PdfFileReader) -> _Embedded:
        try:
            dss = DocumentSecurityStore.read_dss(reader)
        except NoDSSFoundError:
            return _Embedded(certs=(), crls=(), ocsps=())
        # Parsed once, here, so a malformed entry fails the document, not one signature.
        certs = tuple(dss.load_certs())
        ocsps = tuple(
            ocsp.OCSPResponse.load(
                ref.get_object().read_data(DecodePurpose.OCSP_RESPONSE)
            )
            for ref in dss.ocsps
        )
        crls = tuple(
            crl.CertificateList.load(ref.get_object().read_data(DecodePurpose.CRL))
            for ref in dss.crls
        )
        for value in (*certs, *ocsps, *crls):
            value.native  # noqa: B018 - asn1crypto parses lazily; force it now
        return _Embedded(certs=certs, crls=crls, ocsps=ocsps)

    # -- fetching ---------------------------------------------------------------------

    def _online(self) -> Fetchers | None:
        """Fetchers for online revocation checks, or None when none are allowed."""
        if self._fetchers is None:
            if self.revocation is not None:
                self._fetchers = revocation_fetchers(self.revocation)
            elif self.allow_fetching:
                from pyhanko_certvalidator.fetchers.aiohttp_fetchers import (
                    AIOHttpFetcherBackend,
                )

                _withhold_library_details()
                self._backend = AIOHttpFetcherBackend(
                    per_request_timeout=self.limits.fetch_timeout_seconds,
                    limits=FetchLimits(max_requests=32, max_cert_requests=8),
                )
                self._fetchers = self._backend.get_fetchers()
        return self._fetchers

    def _context(
        self,
        moment: dt.datetime | None,
        embedded: _Embedded,
        *,
        mode: str = "soft-fail",
        online: bool = False,
        extra_crls: Sequence[crl.CertificateList] = (),
        extra_ocsps: Sequence[ocsp.OCSPResponse] = (),
    ) -> ValidationContext:
        fetchers = self._online() if online else None
        at = moment or self.now
        return ValidationContext(
            trust_roots=self.roots,
            other_certs=list(embedded.certs),
            moment=moment,
            crls=[
                c
                for c in (*embedded.crls, *extra_crls)
                if _still_current(_crl_next_update(c), at)
            ],
            ocsps=[
                o
                for o in (*embedded.ocsps, *extra_ocsps)
                if _still_current(_ocsp_next_update(o), at)
            ],
            revocation_mode=mode,
            retroactive_revinfo=True,
            allow_fetching=fetchers is not None,
            fetchers=fetchers,
        )

    def _moment(self, when: dt.datetime | None) -> dt.datetime | None:
        """The validation time to hand certvalidator: None means "now" (not point-in-time)."""
        if when is not None:
            return when
        return self.explicit_now

    # -- every signature ----------------------------------------------------------------

    async def _examine_all(
        self, reader: PdfFileReader, fields: list, embedded: _Embedded
    ) -> tuple[SignatureReport, ...]:
        opened: list[
            tuple[str, EmbeddedPdfSignature | None, Exception | None, Any]
        ] = []
        for name, sig_object, sig_field in fields:
            try:
                signature = EmbeddedPdfSignature(reader, sig_field, name)
                opened.append((name, signature, None, sig_object))
            except Exception as exc:  # noqa: BLE001 - a malformed signature dictionary or CMS
                opened.append((name, None, exc, sig_object))
        signed_revisions = {
            signature.signed_revision: signature
            for _, signature, _, _ in opened
            if signature is not None
        }

        # Document timestamps, latest first: each valid one proves that every earlier
        # revision existed at its time, so earlier timestamps are judged at that time.
        proofs: list[tuple[int, dt.datetime]] = []
        reports: dict[int, SignatureReport] = {}
        order = sorted(
            (i for i, (_, s, _, _) in enumerate(opened) if s is not None),
            key=lambda i: opened[i][1].signed_revision,  # type: ignore[union-attr]
            reverse=True,
        )
        for index in order:
            name, signature, _, _ = opened[index]
            assert signature is not None
            if _object_type(signature) != "/DocTimeStamp":
                continue
            proof_time = _proof_time(proofs, signature.signed_revision)
            report = await self._guarded(
                self._document_timestamp(
                    name, signature, reader, embedded, proof_time, signed_revisions
                ),
                name,
                SignatureKind.DOCUMENT_TIMESTAMP,
            )
            reports[index] = report
            if report.valid and report.timestamp and report.timestamp.time:
                proofs.append((signature.signed_revision, report.timestamp.time))
        for index in order:
            if index in reports:
                continue
            name, signature, _, _ = opened[index]
            assert signature is not None
            proof_time = _proof_time(proofs, signature.signed_revision)
            reports[index] = await self._guarded(
                self._signature(
                    name, signature, reader, embedded, proof_time, signed_revisions
                ),
                name,
                SignatureKind.APPROVAL,
            )
        for index, (name, signature, error, sig_object) in enumerate(opened):
            if signature is None:
                assert error is not None
                reports[index] = _unreadable_signature(name, sig_object, error)
        ordered = sorted(
            range(len(opened)),
            key=lambda i: (
                opened[i][1].signed_revision if opened[i][1] is not None else -1,
                i,
            ),
        )
        return tuple(reports[i] for i in ordered)

    async def _guarded(
        self, examination: Awaitable[SignatureReport], name: str, kind: SignatureKind
    ) -> SignatureReport:
        """The examination's report; INVALID if it fails on something unforeseen.

        The steps that read hostile data catch their failures themselves; this is the
        backstop that keeps one odd signature from failing the whole verification. It
        is logged, since it may also be a bug here."""
        try:
            return await examination
        except Exception as exc:  # noqa: BLE001 - see above
            # Where, not what: the exception's text may quote the document.
            where = traceback.extract_tb(exc.__traceback__)[-1]
            _LOG.warning(
                "examining signature %r failed unexpectedly: %s at %s:%s",
                name[:64],
                type(exc).__name__,
                where.filename,
                where.lineno,
            )
            return _ReportBuilder(name, kind).fail(
                f"the signature cannot be validated: {_failure(exc)}"
            )

    async def _document_timestamp(
        self,
        name: str,
        signature: EmbeddedPdfSignature,
        reader: PdfFileReader,
        embedded: _Embedded,
        proof_time: dt.datetime | None,
        signed_revisions: dict[int, EmbeddedPdfSignature],
    ) -> SignatureReport:
        base = _ReportBuilder(name, SignatureKind.DOCUMENT_TIMESTAMP)
        try:
            if (
                signature.sig_object.get("/SubFilter")
                != SigSeedSubFilter.ETSI_RFC3161.value
            ):
                return base.fail(
                    "a document timestamp must have SubFilter ETSI.RFC3161"
                )
            status = await async_validate_pdf_timestamp(
                signature,
                validation_context=self._context(
                    self._moment(proof_time), embedded, online=True
                ),
            )
        except Exception as exc:  # noqa: BLE001 - pyHanko on hostile input
            return base.fail(
                f"the document timestamp cannot be validated: {_failure(exc)}"
            )
        base.signer = _signer_details(status.signing_cert)
        base.intact, base.crypto_valid = bool(status.intact), bool(status.valid)
        base.coverage = _coverage(status.coverage)
        base.modifications = _modifications(
            reader, signature, status.diff_result, signed_revisions, None
        )
        base.timestamp = TimestampDetails(
            time=status.timestamp,
            valid=bool(status.intact and status.valid and status.trusted),
            tsa=_subject(status.signing_cert),
            reason=_timestamp_reason(status),
        )
        outcome = await self._check_chain(
            status.signing_cert,
            list(signature.other_embedded_certs),
            proof_time,
            embedded,
            key_usage=set(),
        )
        base.chain, base.revocation = outcome.chain, outcome.revocation
        if not status.intact:
            return base.fail("the timestamped bytes were altered (digest mismatch)")
        if not status.valid:
            return base.fail("the document timestamp's signature does not verify")
        problem = _coverage_problem(base.coverage) or _modification_problem(
            base.modifications
        )
        if problem:
            return base.fail(problem)
        if not status.trusted or not outcome.chain.trusted:
            return base.fail(
                "the document timestamp's authority does not chain to a trusted root"
            )
        if outcome.revocation.status in (
            RevocationStatus.REVOKED,
            RevocationStatus.UNKNOWN,
        ):
            return base.fail(f"the timestamp authority: {outcome.revocation.reason}")
        return base.ok("the document timestamp is valid")

    async def _signature(
        self,
        name: str,
        signature: EmbeddedPdfSignature,
        reader: PdfFileReader,
        embedded: _Embedded,
        proof_time: dt.datetime | None,
        signed_revisions: dict[int, EmbeddedPdfSignature],
    ) -> SignatureReport:
        permission = _certification_permission(signature.sig_object)
        kind = (
            SignatureKind.APPROVAL
            if permission is None
            else SignatureKind.CERTIFICATION
        )
        base = _ReportBuilder(name, kind)
        base.certification_permission = (
            _PERMISSION_NAMES.get(permission) if permission else None
        )
        if _object_type(signature) != "/Sig":
            return base.fail("the signature dictionary has an unknown /Type")
        subfilter = signature.sig_object.get("/SubFilter")
        if subfilter not in (
            SigSeedSubFilter.PADES.value,
            SigSeedSubFilter.ADOBE_PKCS7_DETACHED.value,
        ):
            return base.fail(f"unsupported signature format (SubFilter {subfilter})")
        try:
            seal_der = _seal_data_attribute(signature.signer_info)
            seal_problem = None
        except (ValueError, TypeError, KeyError) as exc:
            seal_der, seal_problem = None, _first_line(exc)
        base.seal_data_present = seal_der is not None or seal_problem is not None
        try:
            signer_cert = signature.signer_cert
            base.signer = _signer_details(signer_cert)
            cms_crls, cms_ocsps = _cms_revocation_info(signature.signer_info)
            status = await async_validate_pdf_signature(
                signature,
                signer_validation_context=self._context(self.explicit_now, embedded),
                ts_validation_context=self._context(
                    self._moment(proof_time), embedded, online=True
                ),
            )
        except Exception as exc:  # noqa: BLE001 - pyHanko and asn1crypto on hostile input
            return base.fail(f"the signature cannot be validated: {_failure(exc)}")

        base.intact, base.crypto_valid = bool(status.intact), bool(status.valid)
        base.signing_time = status.signer_reported_dt
        base.coverage = _coverage(status.coverage)
        base.modifications = _modifications(
            reader, signature, status.diff_result, signed_revisions, permission
        )
        stamp = status.timestamp_validity
        if stamp is not None:
            stamp_ok = bool(stamp.intact and stamp.valid and stamp.trusted)
            base.timestamp = TimestampDetails(
                time=stamp.timestamp,
                valid=stamp_ok,
                tsa=_subject(stamp.signing_cert),
                reason=_timestamp_reason(stamp),
            )
        signing_moment = (
            base.timestamp.time if base.timestamp and base.timestamp.valid else None
        )
        validated_at = signing_moment or self.now

        outcome = await self._check_chain(
            signer_cert,
            list(signature.other_embedded_certs),
            signing_moment,
            embedded,
            key_usage={"non_repudiation"},
            extra_crls=cms_crls,
            extra_ocsps=cms_ocsps,
        )
        base.chain, base.revocation = outcome.chain, outcome.revocation

        seal: SealDetails | None = None
        if seal_der is not None:
            seal = await self._check_seal(
                seal_der,
                signer_cert,
                [*signature.other_embedded_certs, *outcome.path_certs],
                signing_moment,
                validated_at,
                embedded,
            )
            base.seal = seal

        # The first problem, in the order a clerk should hear about it.
        if not status.intact:
            return base.fail(
                "the sealed bytes were altered after sealing (digest mismatch)"
            )
        if not status.valid:
            return base.fail(
                "the signature value does not verify with the signer's certificate"
            )
        problem = _coverage_problem(base.coverage) or _modification_problem(
            base.modifications
        )
        if problem:
            return base.fail(problem)
        if base.timestamp is not None and not base.timestamp.valid:
            return base.fail(
                f"the signature timestamp is not valid: {base.timestamp.reason}"
            )
        if not outcome.chain.trusted:
            return base.fail(outcome.chain.reason)
        revocation_status = outcome.revocation.status
        if (
            revocation_status is RevocationStatus.REVOKED
            or revocation_status is RevocationStatus.UNKNOWN
        ):
            return base.fail(outcome.revocation.reason)
        if (
            revocation_status is RevocationStatus.NOT_CHECKED
            and self.require_revocation
        ):
            return base.fail(
                "the revocation status of the certificate could not be checked"
            )
        if seal_problem is not None:
            return base.fail(f"the seal data attribute is malformed: {seal_problem}")
        if seal is not None and not seal.valid:
            return base.fail(seal.reason)
        return base.ok(
            "the seal is valid"
            if seal is not None
            else "the signature is valid (it carries no seal data)"
        )

    # -- certificates ---------------------------------------------------------------------

    async def _check_chain(
        self,
        certificate: asn1_x509.Certificate,
        intermediates: list[asn1_x509.Certificate],
        proven_time: dt.datetime | None,
        embedded: _Embedded,
        *,
        key_usage: set[str],
        extra_crls: Sequence[crl.CertificateList] = (),
        extra_ocsps: Sequence[ocsp.OCSPResponse] = (),
    ) -> _ChainOutcome:
        """Trust and revocation status of `certificate` at the time a timestamp proves
        (`proven_time`), or at the verification time when nothing proves a time."""
        moment = self._moment(proven_time)
        validated_at = proven_time or self.now
        have_embedded = bool(
            embedded.crls or embedded.ocsps or extra_crls or extra_ocsps
        )
        online = self._online() is not None

        # certvalidator counts an OCSP response for another certificate of the same
        # issuer as a failed check, so each path sees only responses about its own
        # certificates.
        authorities = [c for c in (*intermediates, *embedded.certs) if c.ca]
        serials = {certificate.serial_number, *(c.serial_number for c in authorities)}
        own = _Embedded(
            certs=embedded.certs,
            crls=embedded.crls,
            ocsps=_about(embedded.ocsps, serials),
        )
        own_extra_ocsps = _about(extra_ocsps, serials)

        async def attempt(mode: str, use_online: bool) -> tuple[Any, Exception | None]:
            context = self._context(
                moment,
                own,
                mode=mode,
                online=use_online,
                extra_crls=extra_crls,
                extra_ocsps=own_extra_ocsps,
            )
            validator = CertificateValidator(
                certificate,
                intermediate_certs=intermediates,
                validation_context=context,
            )
            try:
                return await validator.async_validate_usage(key_usage), None
            except (ValidationError, PathBuildingError, PathValidationError) as exc:
                return None, exc
            except Exception as exc:  # noqa: BLE001 - certvalidator on hostile certificates
                return None, exc

        # Trust first: soft-fail with everything available.
        path, failure = await attempt("soft-fail", online)
        if failure is not None and not isinstance(failure, RevokedError):
            chain = ChainDetails(
                trusted=False,
                subjects=(_subject(certificate),),
                validated_at=validated_at,
                reason=_chain_reason(failure, validated_at),
            )
            return _ChainOutcome(
                chain=chain,
                revocation=RevocationDetails(
                    RevocationStatus.NOT_CHECKED,
                    None,
                    validated_at,
                    "no trusted chain to check",
                ),
                path_certs=(),
            )
        if isinstance(failure, RevokedError):
            _, embedded_failure = await attempt("soft-fail", False)
            source = (
                "embedded" if isinstance(embedded_failure, RevokedError) else "online"
            )
            chain = ChainDetails(
                trusted=True,
                subjects=(_subject(certificate),),
                validated_at=validated_at,
                reason="the chain is trusted",
            )
            return _ChainOutcome(
                chain=chain,
                revocation=RevocationDetails(
                    RevocationStatus.REVOKED,
                    source,
                    validated_at,
                    _revoked_reason(failure, proven_time),
                ),
                path_certs=(),
            )
        certs = tuple(path)  # root first
        chain = ChainDetails(
            trusted=True,
            subjects=tuple(_subject(c) for c in reversed(certs)),
            validated_at=validated_at,
            reason="the chain to a trusted root is valid",
        )
        # Then where a definite revocation answer comes from.
        if have_embedded:
            _, strict_failure = await attempt("require", False)
            if strict_failure is None:
                status = RevocationDetails(
                    RevocationStatus.GOOD,
                    "embedded",
                    validated_at,
                    "not revoked (revocation data in the file)",
                )
                return _ChainOutcome(chain, status, certs)
        if online:
            _, strict_failure = await attempt("require", True)
            if strict_failure is None:
                status = RevocationDetails(
                    RevocationStatus.GOOD,
                    "online",
                    validated_at,
                    "not revoked (checked online)",
                )
                return _ChainOutcome(chain, status, certs)
            reason = f"the revocation status could not be established: {_first_line(strict_failure)}"
            return _ChainOutcome(
                chain,
                RevocationDetails(
                    RevocationStatus.UNKNOWN, "online", validated_at, reason
                ),
                certs,
            )
        if have_embedded:
            reason = "the revocation data in the file does not establish the certificate's status"
            return _ChainOutcome(
                chain,
                RevocationDetails(
                    RevocationStatus.UNKNOWN, "embedded", validated_at, reason
                ),
                certs,
            )
        reason = "not checked: the file carries no revocation data and no online check was allowed"
        return _ChainOutcome(
            chain,
            RevocationDetails(RevocationStatus.NOT_CHECKED, None, validated_at, reason),
            certs,
        )

    # -- seal data ---------------------------------------------------------------------------

    async def _check_seal(
        self,
        seal_der: bytes,
        signer_cert: asn1_x509.Certificate,
        intermediates: list[asn1_x509.Certificate],
        signing_moment: dt.datetime | None,
        validated_at: dt.datetime,
        embedded: _Embedded,
    ) -> SealDetails:
        try:
            seal = parse_seal(seal_der)
        except SealDataError as exc:
            return _unreadable_seal(f"the seal data cannot be read: {exc}")
        info = seal.info
        maker_check = verify_seal(seal)
        signer_der = signer_cert.dump()
        cert_agency, cert_uscc = _agency_of(signer_der)
        listed = _signer_listed(seal, signer_der)
        if info.cert_list_type is CertListType.DIGESTS:
            # A digest names no agency; when it matches, it binds the very certificate.
            seal_agencies = {(cert_agency, cert_uscc)} if listed else set()
        else:
            seal_agencies = {_agency_of(c) for c in info.certificates}
        seal_agency, seal_uscc = (
            next(iter(seal_agencies)) if len(seal_agencies) == 1 else (None, None)
        )
        agrees = listed and (seal_agency, seal_uscc) == (cert_agency, cert_uscc)
        within = info.valid_start <= validated_at <= info.valid_end
        maker_trusted, maker_reason = await self._check_maker(
            seal, intermediates, signing_moment, embedded
        )

        if not maker_check.maker_signature_ok:
            problem = (
                f"the seal maker's signature does not verify ({maker_check.reason})"
            )
        elif not maker_trusted:
            problem = maker_reason
        elif len(seal_agencies) > 1:
            problem = "it lists certificates of several agencies"
        elif not listed and seal_uscc is not None and not agrees:
            problem = (
                f"the seal belongs to {seal_agency} (USCC {seal_uscc}) but the seal"
                f" certificate to {cert_agency} (USCC {cert_uscc})"
            )
        elif not listed:
            problem = "the seal certificate is not among the certificates it lists"
        elif not within:
            problem = (
                f"the seal was not valid at the signing time {_when(validated_at)}"
                f" (valid {info.valid_start:%Y-%m-%d} to {info.valid_end:%Y-%m-%d})"
            )
        else:
            problem = None
        return SealDetails(
            name=info.name,
            seal_type=info.seal_type,
            seal_type_name=_SEAL_TYPE_NAMES.get(info.seal_type),
            es_id=info.es_id,
            vendor_id=info.vendor_id,
            agency=seal_agency,
            agency_uscc=seal_uscc,
            valid_from=info.valid_start,
            valid_until=info.valid_end,
            maker=maker_check.maker_subject,
            maker_signature_ok=maker_check.maker_signature_ok,
            maker_trusted=maker_trusted,
            within_validity=within,
            signer_listed=listed,
            agrees_with_certificate=agrees,
            valid=problem is None,
            reason=f"seal data: {problem}"
            if problem
            else "the seal data is genuine and names the seal certificate's agency",
        )

    async def _check_maker(
        self,
        seal: SealData,
        intermediates: list[asn1_x509.Certificate],
        signing_moment: dt.datetime | None,
        embedded: _Embedded,
    ) -> tuple[bool, str]:
        try:
            maker = asn1_x509.Certificate.load(seal.maker_certificate)
            policies = maker.certificate_policies_value
            policy_oids = (
                {p["policy_identifier"].dotted for p in policies} if policies else set()
            )
        except (ValueError, TypeError, KeyError):
            return False, "the seal maker's certificate cannot be read"
        if _MAKER_POLICY not in policy_oids:
            return (
                False,
                "the seal data was not made by a seal maker (its certificate lacks the seal-maker policy)",
            )
        outcome = await self._check_chain(
            maker,
            intermediates,
            signing_moment,
            embedded,
            key_usage={"non_repudiation"},
        )
        if not outcome.chain.trusted:
            return False, f"the seal maker's certificate: {outcome.chain.reason}"
        if outcome.revocation.status is RevocationStatus.REVOKED:
            return False, f"the seal maker's certificate: {outcome.revocation.reason}"
        return True, "the seal maker is trusted"


# -- small pieces --------------------------------------------------------------------------


class _ReportBuilder:
    """Collects what is known about one signature, then seals it into a report."""

    def __init__(self, name: str, kind: SignatureKind) -> None:
        self.name = name
        self.kind = kind
        self.seal: SealDetails | None = None
        self.seal_data_present = False
        self.signer: SignerDetails | None = None
        self.signing_time: dt.datetime | None = None
        self.timestamp: TimestampDetails | None = None
        self.intact = False
        self.crypto_valid = False
        self.coverage = Coverage.UNKNOWN
        self.modifications: Modifications | None = None
        self.chain: ChainDetails | None = None
        self.revocation: RevocationDetails | None = None
        self.certification_permission: str | None = None

    def _build(self, valid: bool, reason: str) -> SignatureReport:
        return SignatureReport(
            field_name=self.name,
            kind=self.kind,
            seal=self.seal,
            seal_data_present=self.seal_data_present,
            signer=self.signer,
            signing_time=self.signing_time,
            timestamp=self.timestamp,
            intact=self.intact,
            crypto_valid=self.crypto_valid,
            coverage=self.coverage,
            modifications=self.modifications,
            chain=self.chain,
            revocation=self.revocation,
            certification_permission=self.certification_permission,
            valid=valid,
            reason=reason,
        )

    def fail(self, reason: str) -> SignatureReport:
        return self._build(False, reason)

    def ok(self, reason: str) -> SignatureReport:
        return self._build(True, reason)


def _object_type(signature: EmbeddedPdfSignature) -> str:
    try:
        return str(signature.sig_object_type)
    except Exception:  # noqa: BLE001 - a hostile /Type
        return "?"


def _unreadable_signature(
    name: str, sig_object: Any, error: Exception
) -> SignatureReport:
    try:
        resolved = sig_object.get_object() if sig_object is not None else None
        is_timestamp = resolved is not None and resolved.get("/Type") == "/DocTimeStamp"
    except Exception:  # noqa: BLE001 - hostile dictionary
        is_timestamp = False
    builder = _ReportBuilder(
        name,
        SignatureKind.DOCUMENT_TIMESTAMP if is_timestamp else SignatureKind.APPROVAL,
    )
    builder.seal_data_present = not is_timestamp and _looks_like_our_seal(sig_object)
    return builder.fail(
        f"the signature cannot be read ({_failure(error)}); it cannot be verified"
    )


def _looks_like_our_seal(sig_object: Any) -> bool:
    """Whether an unreadable signature was a PAdES seal (for counting seals only)."""
    try:
        return sig_object.get_object().get("/SubFilter") == SigSeedSubFilter.PADES.value
    except Exception:  # noqa: BLE001 - hostile dictionary
        return False


def _unreadable_seal(reason: str) -> SealDetails:
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return SealDetails(
        name="",
        seal_type=0,
        seal_type_name=None,
        es_id="",
        vendor_id="",
        agency=None,
        agency_uscc=None,
        valid_from=epoch,
        valid_until=epoch,
        maker=None,
        maker_signature_ok=False,
        maker_trusted=False,
        within_validity=False,
        signer_listed=False,
        agrees_with_certificate=False,
        valid=False,
        reason=reason,
    )


def _signer_listed(seal: SealData, certificate: bytes) -> bool:
    info = seal.info
    if info.cert_list_type is CertListType.CERTIFICATES:
        return certificate in info.certificates
    for entry in info.cert_digests:
        algorithm = _DIGESTS.get(entry.digest_type.strip().lower())
        if algorithm is None:
            continue
        digest = hashes.Hash(algorithm())
        digest.update(certificate)
        if digest.finalize() == entry.value:
            return True
    return False


def _still_current(next_update: dt.datetime | None, at: dt.datetime) -> bool:
    """Whether revocation data can speak for `at`. certvalidator counts data that is
    too old as a failed check even in soft-fail mode, so a file's embedded data from
    years ago would invalidate what no data at all would leave "not checked"."""
    return next_update is None or next_update >= at


def _ocsp_next_update(response: ocsp.OCSPResponse) -> dt.datetime | None:
    try:
        basic = response["response_bytes"]["response"].parsed
        updates = [
            r["next_update"].native for r in basic["tbs_response_data"]["responses"]
        ]
    except (ValueError, TypeError, KeyError, AttributeError):
        return None  # let certvalidator judge (and reject) it
    known = [u for u in updates if u is not None]
    return max(known) if known else None


def _crl_next_update(certificate_list: crl.CertificateList) -> dt.datetime | None:
    try:
        return certificate_list["tbs_cert_list"]["next_update"].native
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def _about(
    responses: Iterable[ocsp.OCSPResponse], serials: set[int]
) -> tuple[ocsp.OCSPResponse, ...]:
    """The OCSP responses that answer for one of `serials`."""
    kept = []
    for response in responses:
        try:
            basic = response["response_bytes"]["response"].parsed
            answered = {
                r["cert_id"]["serial_number"].native
                for r in basic["tbs_response_data"]["responses"]
            }
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        if answered & serials:
            kept.append(response)
    return tuple(kept)


def _proof_time(
    proofs: list[tuple[int, dt.datetime]], revision: int
) -> dt.datetime | None:
    """The earliest valid document timestamp over a later revision, if any."""
    times = [time for proof_revision, time in proofs if proof_revision > revision]
    return min(times) if times else None


def _coverage(level: SignatureCoverageLevel | None) -> Coverage:
    if level is SignatureCoverageLevel.ENTIRE_FILE:
        return Coverage.ENTIRE_FILE
    if level is SignatureCoverageLevel.ENTIRE_REVISION:
        return Coverage.ENTIRE_REVISION
    if level is None:
        return Coverage.UNKNOWN
    return Coverage.PARTIAL


def _coverage_problem(coverage: Coverage) -> str | None:
    if coverage in (Coverage.ENTIRE_FILE, Coverage.ENTIRE_REVISION):
        return None
    return (
        "the signature does not cover its whole revision (a non-standard byte range: the signed"
        " bytes do not match the document's structure)"
    )


def _modification_problem(modifications: Modifications | None) -> str | None:
    if modifications is None or modifications.allowed:
        return None
    return modifications.explanation


def _changes_in(
    reader: PdfFileReader,
    revision: int,
    signed_revisions: dict[int, EmbeddedPdfSignature],
) -> set[Change]:
    """What one later revision did, for the report (the verdict is pyHanko's)."""
    changes: set[Change] = set()
    added = signed_revisions.get(revision)
    if added is not None:
        changes.add(
            Change.DOCUMENT_TIMESTAMP_ADDED
            if _object_type(added) == "/DocTimeStamp"
            else Change.SIGNATURE_ADDED
        )
    try:
        ids = {ref.idnum for ref in reader.xrefs.explicit_refs_in_revision(revision)}
        root = reader.get_historical_root(revision)
        before = reader.get_historical_root(revision - 1)
        if _updated(_raw(root, "/DSS"), _raw(before, "/DSS"), ids):
            changes.add(Change.VALIDATION_DATA_ADDED)
        if _updated(_raw(root, "/Metadata"), _raw(before, "/Metadata"), ids):
            changes.add(Change.DOCUMENT_INFO_CHANGED)
        trailer, trailer_before = (
            reader.trailer.flatten(revision),
            reader.trailer.flatten(revision - 1),
        )
        if _updated(_raw(trailer, "/Info"), _raw(trailer_before, "/Info"), ids):
            changes.add(Change.DOCUMENT_INFO_CHANGED)
    except Exception:  # noqa: BLE001 - only the description suffers
        changes.add(Change.OTHER)
    return changes


def _raw(dictionary: generic.DictionaryObject, key: str) -> generic.PdfObject | None:
    return dictionary.raw_get(key) if key in dictionary else None


def _updated(
    value: generic.PdfObject | None, before: generic.PdfObject | None, ids: set[int]
) -> bool:
    """Whether an entry is new, points elsewhere, or its object was rewritten in the revision."""
    if value is None:
        return False
    return value != before or (
        isinstance(value, generic.IndirectObject) and value.idnum in ids
    )


_CHANGE_WORDS = {
    Change.SIGNATURE_ADDED: "later seals or signatures added",
    Change.DOCUMENT_TIMESTAMP_ADDED: "document timestamps added",
    Change.VALIDATION_DATA_ADDED: "validation data (DSS) added",
    Change.DOCUMENT_INFO_CHANGED: "document properties (/Info, XMP) updated, which seals do not cover",
    Change.FORM_FILLED: "form fields filled in",
    Change.OTHER: "other changes",
}


def _modifications(
    reader: PdfFileReader,
    signature: EmbeddedPdfSignature,
    diff: DiffResult | SuspiciousModification | None,
    signed_revisions: dict[int, EmbeddedPdfSignature],
    permission: MDPPerm | None,
) -> Modifications:
    revision = signature.signed_revision
    later = range(revision + 1, reader.xrefs.total_revisions)
    changes: set[Change] = set()
    for number in later:
        changes |= _changes_in(reader, number, signed_revisions)
    count = len(later)
    if isinstance(diff, SuspiciousModification) or diff is None:
        explanation = (
            _first_line(diff)
            if diff is not None
            else "the changes could not be analysed"
        )
        return Modifications(
            level=ModificationLevel.OTHER.name.lower().replace("_", "-"),
            revisions_after=count,
            changes=tuple(sorted(changes | {Change.OTHER}, key=lambda c: c.value)),
            allowed=False,
            explanation=f"the document was changed after sealing: {explanation}",
        )
    level = diff.modification_level
    later_signatures = {
        s.field_name
        for number, s in signed_revisions.items()
        if number > revision and _object_type(s) == "/Sig"
    }
    filled = sorted(set(diff.changed_form_fields) - later_signatures)
    if filled:
        changes.add(Change.FORM_FILLED)
    level_name = level.name.lower().replace("_", "-")
    ordered = tuple(sorted(changes, key=lambda c: c.value))
    if level is ModificationLevel.OTHER:
        return Modifications(
            level_name,
            count,
            ordered,
            False,
            "the document was changed after sealing in a way no seal allows",
        )
    if permission is not None and level.value > permission.value:
        return Modifications(
            level_name,
            count,
            ordered,
            False,
            f"the certification seal allows {_PERMISSION_WORDS[permission]}, but the document was changed after it"
            f" ({', '.join(_CHANGE_WORDS[c] for c in ordered) or level_name})",
        )
    if filled:
        return Modifications(
            level_name,
            count,
            ordered,
            False,
            "form fields were filled in after sealing ("
            + ", ".join(filled[:5])
            + "); the seal does not cover them",
        )
    if not count:
        return Modifications(level_name, 0, (), True, "no changes after sealing")
    words = ", ".join(_CHANGE_WORDS[c] for c in ordered) or "no content changes"
    return Modifications(
        level_name, count, ordered, True, f"allowed changes after sealing: {words}"
    )


_PERMISSION_WORDS = {
    MDPPerm.NO_CHANGES: "no changes",
    MDPPerm.FILL_FORMS: "only form filling and signing",
    MDPPerm.ANNOTATE: "only form filling, signing and annotations",
}


def _timestamp_reason(stamp: Any) -> str:
    if not stamp.intact:
        return "the timestamp does not match the signature it claims to cover"
    if not stamp.valid:
        return "the timestamp's own signature does not verify"
    if not stamp.trusted:
        return "the timestamp authority does not chain to a trusted root"
    return "the timestamp is valid"


def _when(moment: dt.datetime) -> str:
    return f"{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


def _chain_reason(failure: Exception, at: dt.datetime) -> str:
    if isinstance(failure, PathBuildingError) or (
        isinstance(failure, InvalidCertificateError) and "self-signed" in str(failure)
    ):
        return "the certificate does not chain to a trusted root (untrusted issuer)"
    if isinstance(failure, ExpiredError):
        return f"the certificate had expired at {_when(at)}"
    if isinstance(failure, NotYetValidError):
        return f"the certificate was not yet valid at {_when(at)}"
    if isinstance(failure, InvalidCertificateError):
        return f"the certificate may not be used for seals: {_first_line(failure)}"
    if isinstance(failure, DisallowedAlgorithmError):
        return (
            f"the certificate chain uses a disallowed algorithm: {_first_line(failure)}"
        )
    if isinstance(failure, InsufficientRevinfoError):
        return f"the revocation status could not be established: {_first_line(failure)}"
    return f"the certificate chain is not valid: {_first_line(failure)}"


def _revoked_reason(failure: RevokedError, proven_time: dt.datetime | None) -> str:
    text = _first_line(failure)
    if proven_time is None:
        return f"the certificate is revoked, and no timestamp proves the seal was made before that ({text})"
    return f"the certificate was revoked before the signing time {_when(proven_time)} ({text})"
