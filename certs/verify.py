"""The licence verifier: a QR image, an LC1 token, an SD-JWT presentation or a sealed PDF
in, one verdict out.

    trust = LicenceTrust(signers=SignerList([...]), seal_roots=[root])
    statuses = StatusListCache(trust=trust.signers, fetch=http_status_fetcher())
    result = verify_licence(qr_image=png, trust=trust, status_source=statuses, now=now)
    result.verdict, result.reason, result.fields, result.to_dict()

What each input goes through:
- QR image: zxing-cpp reads the code (photos too); the text is an LC1 token.
- LC1 token: `certs.token.verify_token` (bounded decoding, the signer by kid among the
  trusted document signers, issuer and dates), then the status.
- SD-JWT presentation: `certs.sdjwt.verify_presentation` (signature, disclosures,
  key binding with the expected nonce and audience, always for a credential bound to
  its holder's key), then the status.
- PDF: `seal.verify_pdf` must find a valid certification seal (the licence is sealed
  as a certification signature, so nothing may change after it), made by the agency
  the licence identifier names as issuer (the seal certificate's
  organizationIdentifier equals the identifier's agency code). The QR code is read
  from the page's image (no rendering: the image XObject is decoded and handed to
  zxing-cpp) and verified as a token, and the token's licence identifier must be
  printed on the page (the footer's 电子证照标识). So seal, QR code and printed text
  are tied together: the agency sealed exactly the licence the QR code is for.

The status is looked up in the licence's status list through a `StatusSource`. The
offline cache (`StatusListCache`) keeps each verified list until its `ttl` runs out
and, when it cannot fetch a newer one, uses it until its `exp` (never after its
signer's trust ends, and never replaced by an older list); the result says
which list and how fresh: "status as of <iat of the list>". A node's own lists are
read where they are stored (`StoredStatusSource`): nothing is signed on the way (a
verifier may have no PIN; re-signing is the schedule's job), and the result says
when the list was signed, whether it has expired, and whether changes recorded
since are not yet in it. A licence whose status cannot be established at all keeps
the verdict its signature and dates give, with `status.checked` False and the
reason saying so: the verdict enum has no "unknown" (a caller that must not accept
an unchecked status tests `status.checked`).

Order of verdicts: an input that cannot be read is MALFORMED; then the signature and
issuer; then REVOKED or SUSPENDED from the status (a revoked licence is reported as
revoked even when it has also expired); then EXPIRED or NOT_YET_VALID.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from cryptography import x509
from PIL import Image
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader

from certs.errors import (
    InvalidStatusListError,
    LicenseError,
    QrDecodeError,
    StatusListError,
)
from certs.identifiers import LicenceIdentifier
from certs.qr import read_qr
from certs.sdjwt import verify_presentation
from certs.status import (
    StatusType,
    VerifiedStatusList,
    decode_and_verify_status_list,
    decode_and_verify_status_list_cwt,
    status_of,
)
from certs.token import (
    SignerTrust,
    StatusReference,
    TokenVerification,
    verify_token,
)
from certs.verdict import Verdict
from hsm_sim.errors import ErrorCategory
from seal.keyword import find_text
from seal.trust_services import RevocationSource
from seal.verify import PdfVerification, SignatureKind, VerifyLimits, verify_pdf

__all__ = [
    "LicenceTrust",
    "LicenceVerification",
    "PdfSealCheck",
    "StatusAnswer",
    "StatusCheck",
    "StatusFetcher",
    "StatusListCache",
    "StatusSource",
    "StoredListReader",
    "StoredStatusList",
    "StoredStatusSource",
    "http_status_fetcher",
    "verify_licence",
]

_log = logging.getLogger(__name__)

LC1_PREFIX = "LC1:"
MAX_STATUS_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_QR_IMAGES = 16  # image XObjects on the page tried as QR codes
MAX_QR_IMAGE_PIXELS = 16_000_000
_QR_SCALE_UNDER = 300  # images narrower than this are enlarged before reading
_MODES = {"/DeviceGray": "L", "/DeviceRGB": "RGB", "/DeviceCMYK": "CMYK"}


# -- trust and status ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class LicenceTrust:
    """What a verifier trusts: document signers for tokens and credentials (this
    region's, or the national trust list's), and root certificates for PDF seals.

    `seal_revocation` answers OCSP/CRL requests in process (this node's own);
    `allow_fetching` lets seal verification fetch revocation data over HTTP. Without
    either, a B-LT licence PDF still verifies from the data embedded in it.
    """

    signers: SignerTrust
    seal_roots: Sequence[x509.Certificate] = ()
    seal_revocation: RevocationSource | None = None
    allow_fetching: bool = False


@dataclasses.dataclass(frozen=True)
class StatusAnswer:
    """A status source's answer for one reference; `status` None: not established."""

    status: StatusType | None
    reason: str
    as_of: dt.datetime | None = None  # when the list used was signed
    source: str | None = None  # "cache", "fetched", "cache past its ttl"


@runtime_checkable
class StatusSource(Protocol):
    """Gives the status at a licence's status-list reference."""

    def lookup(
        self, reference: StatusReference, *, issuer: str | None, now: dt.datetime
    ) -> StatusAnswer: ...


StatusFetcher = Callable[[str], "str | bytes | None"]
"""Fetches the status list token at a URI: a JWT (str) or a CWT (bytes); None when
there is no such list. Raises on a transport failure."""


_END_OF_TIME = dt.datetime.max.replace(tzinfo=dt.UTC)


class _CachedList:
    """A verified list and the moments that matter, computed once (lookups are hot)."""

    __slots__ = ("fresh_until", "token", "usable_until", "verified")

    def __init__(self, token: str | bytes, verified: VerifiedStatusList) -> None:
        self.token = token
        self.verified = verified
        # Not after its signer's trust ends: a list speaks for its signer now.
        self.usable_until = min(
            verified.expires_at or _END_OF_TIME, verified.signer.valid_until
        )
        self.fresh_until = min(verified.refresh_at or _END_OF_TIME, self.usable_until)

    def answer(self, index: int, issuer: str | None, source: str) -> StatusAnswer:
        verified = self.verified
        if (
            verified.issuer is not None
            and issuer is not None
            and verified.issuer != issuer
        ):
            return StatusAnswer(
                None, "status not checked: the status list is another issuer's"
            )
        try:
            status = status_of(verified.status_list, index)
        except (StatusListError, TypeError) as exc:
            return StatusAnswer(None, f"status not checked: {_first_line(exc)}")
        return StatusAnswer(status, "", as_of=verified.issued_at, source=source)


class StatusListCache:
    """Verified status lists by URI, fetched through `fetch` when missing or past
    their ttl. Lists are verified against `trust` before they are kept.

    `always_fetch` asks `fetch` on every lookup (for this node's own lists, read in
    process: a change is seen at once); an unchanged token is not verified again.
    """

    def __init__(
        self,
        *,
        trust: SignerTrust,
        fetch: StatusFetcher | None = None,
        always_fetch: bool = False,
    ) -> None:
        self.trust = trust
        self.fetch = fetch
        self.always_fetch = always_fetch
        self._lists: dict[str, _CachedList] = {}
        self._lock = threading.Lock()

    def add(
        self, token: str | bytes, *, uri: str, now: dt.datetime
    ) -> VerifiedStatusList:
        """Verify a status list token (JWT or CWT) for `uri` and keep it;
        InvalidStatusListError says why it was refused."""
        verified = _verify_list(token, trust=self.trust, uri=uri, now=now)
        with self._lock:
            held = self._lists.get(uri)
            # Whoever serves the URI may replay an older list still within its exp;
            # going back to it would undo the revocations made since.
            if held is not None and verified.issued_at < held.verified.issued_at:
                raise InvalidStatusListError(
                    f"the status list signed at {_iso(verified.issued_at)} is older "
                    f"than the copy held (signed at {_iso(held.verified.issued_at)})"
                )
            self._lists[uri] = _CachedList(token, verified)
        return verified

    def lookup(
        self, reference: StatusReference, *, issuer: str | None, now: dt.datetime
    ) -> StatusAnswer:
        cached = self._lists.get(reference.uri)
        if cached is not None and not self.always_fetch and now < cached.fresh_until:
            return cached.answer(reference.index, issuer, "cache")
        source = "cache past its ttl"
        problem: str | None = None
        if self.fetch is not None:
            try:
                token = self.fetch(reference.uri)
                if token is None:
                    problem = "there is no status list at its URI"
                elif cached is None or token != cached.token:
                    self.add(token, uri=reference.uri, now=now)
            except (LicenseError, OSError, ValueError) as exc:
                problem = f"the status list could not be fetched ({_first_line(exc)})"
            else:
                if problem is None:
                    source = "fetched"
            cached = self._lists.get(reference.uri)
        if cached is None or not now < cached.usable_until:
            why = problem or (
                "no copy of its status list"
                if cached is None
                else "the cached status list has expired"
            )
            return StatusAnswer(None, f"status not checked: {why}")
        return cached.answer(reference.index, issuer, source)


class StoredStatusList(Protocol):
    """A signed status list as its publisher stores it (this node's:
    certs.status_service.StatusListDocument)."""

    @property
    def token(self) -> str | bytes: ...

    @property
    def issued_at(self) -> dt.datetime: ...

    @property
    def expires_at(self) -> dt.datetime: ...

    @property
    def behind(self) -> bool: ...  # changes recorded after it was signed


StoredListReader = Callable[[str], "StoredStatusList | None"]
"""Reads the stored list at a URI, signing nothing; None when there is none there.
Raises a LicenseError when the list cannot be had (never signed)."""


class StoredStatusSource:
    """Status from lists read where their publisher stores them (this node's own, in
    process): read only, nothing is ever signed, and a change shows as soon as its
    list is signed. Each list is verified against `trust` (again only when its token
    changed). The answer says how fresh the list is: when it was signed, that it has
    expired, or that changes recorded since are not in it yet."""

    def __init__(self, *, trust: SignerTrust, read: StoredListReader) -> None:
        self.trust = trust
        self._read = read
        self._lists: dict[str, _CachedList] = {}
        self._lock = threading.Lock()

    def lookup(
        self, reference: StatusReference, *, issuer: str | None, now: dt.datetime
    ) -> StatusAnswer:
        try:
            stored = self._read(reference.uri)
        except LicenseError as exc:
            return StatusAnswer(None, f"status not checked: {_first_line(exc)}")
        if stored is None:
            return StatusAnswer(
                None, "status not checked: there is no status list at its URI"
            )
        if not now < stored.expires_at:
            return StatusAnswer(
                None,
                "status not checked: the status list signed at "
                f"{_iso(stored.issued_at)} expired at {_iso(stored.expires_at)} and "
                "has not been signed again",
                as_of=stored.issued_at,
                source="stored",
            )
        with self._lock:
            cached = self._lists.get(reference.uri)
        if cached is None or cached.token != stored.token:
            try:
                verified = _verify_list(
                    stored.token, trust=self.trust, uri=reference.uri, now=now
                )
            except (LicenseError, TypeError, ValueError) as exc:
                return StatusAnswer(
                    None, f"status not checked: the stored list: {_first_line(exc)}"
                )
            cached = _CachedList(stored.token, verified)
            with self._lock:
                self._lists[reference.uri] = cached
        answer = cached.answer(reference.index, issuer, "stored")
        if answer.status is not None and stored.behind:
            return dataclasses.replace(
                answer,
                reason=f"status as of {_iso(answer.as_of)} (stored); changes "
                "recorded since are not signed into the list yet",
            )
        return answer


def _verify_list(
    token: str | bytes, *, trust: SignerTrust, uri: str, now: dt.datetime
) -> VerifiedStatusList:
    if isinstance(token, str):
        return decode_and_verify_status_list(
            token, trust=trust, now=now, expected_uri=uri
        )
    return decode_and_verify_status_list_cwt(
        bytes(token), trust=trust, now=now, expected_uri=uri
    )


def http_status_fetcher(
    *, timeout: float = 5.0, max_seconds: float = 30.0
) -> StatusFetcher:
    """Fetches status lists over HTTP(S) from their URIs (the JWT form).

    `timeout` bounds each network wait; `max_seconds` the reading of the answer, which
    a server sending a byte now and then would otherwise stretch without end.
    """

    def fetch(uri: str) -> str | None:
        if not uri.startswith(("http://", "https://")):
            raise ValueError("the status list URI is not an http(s) URL")
        request = urllib.request.Request(
            uri, headers={"Accept": "application/statuslist+jwt"}
        )
        deadline = time.monotonic() + max_seconds
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = bytearray()
                while len(body) <= MAX_STATUS_RESPONSE_BYTES:
                    if time.monotonic() > deadline:
                        raise OSError(
                            f"the status list server took longer than {max_seconds:g} s"
                        )
                    chunk = response.read1(64 * 1024)
                    if not chunk:
                        break
                    body += chunk
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise OSError(f"HTTP {exc.code}") from None
        if len(body) > MAX_STATUS_RESPONSE_BYTES:
            raise ValueError("the status list response is too large")
        return body.decode("ascii", errors="replace").strip()

    return fetch


# -- results -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StatusCheck:
    """What the status list said about the licence, and how fresh it was."""

    checked: bool
    status: str | None  # "valid", "invalid", "suspended"; None when not checked
    uri: str | None
    index: int | None
    as_of: dt.datetime | None
    source: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "status": self.status,
            "uri": self.uri,
            "idx": self.index,
            "as_of": _iso(self.as_of),
            "source": self.source,
            "reason": self.reason,
        }


@dataclasses.dataclass(frozen=True)
class PdfSealCheck:
    """The PDF's certification seal, as seal.verify_pdf judged it."""

    valid: bool
    reason: str
    agency: str | None
    agency_uscc: str | None
    seal_code: str | None
    signing_time: dt.datetime | None
    timestamped: bool
    intact: bool  # the signature verifies over an unchanged byte range
    chain_trusted: bool  # the seal certificate chains to a trusted root

    def to_dict(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "reason": self.reason,
            "intact": self.intact,
            "chain_trusted": self.chain_trusted,
            "agency": self.agency,
            "agency_uscc": self.agency_uscc,
            "seal_code": self.seal_code,
            "signing_time": _iso(self.signing_time),
            "timestamped": self.timestamped,
        }


@dataclasses.dataclass(frozen=True)
class LicenceVerification:
    """The verdict on one licence input, with what could be trusted of it.

    `fields` is empty unless the signature checked: for a token, the type's QR fields;
    for a presentation, the envelope and the disclosed fields.
    """

    verdict: Verdict
    reason: str
    input: str  # "qr-image", "token", "sd-jwt", "pdf"
    fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    licence_id: str | None = None
    type_code: str | None = None
    issuer: str | None = None
    issued_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    signer: str | None = None  # the document signer's subject
    status: StatusCheck | None = None
    seal: PdfSealCheck | None = None
    key_bound: bool | None = None  # presentations only
    disclosed: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        return self.verdict is Verdict.VALID

    def to_dict(self) -> dict[str, Any]:
        """One JSON object: verdict, reason, fields, and the details."""
        return {
            "verdict": self.verdict.value,
            "reason": self.reason,
            "fields": dict(self.fields),
            "input": self.input,
            "licence_id": self.licence_id,
            "type_code": self.type_code,
            "issuer": self.issuer,
            "issued_at": _iso(self.issued_at),
            "expires_at": _iso(self.expires_at),
            "signer": self.signer,
            "status": self.status.to_dict() if self.status else None,
            "seal": self.seal.to_dict() if self.seal else None,
            "key_bound": self.key_bound,
            "disclosed": list(self.disclosed),
        }


class LicenceVerifyRequestError(LicenseError, ValueError):
    """The verifier was not given exactly one input."""

    category = ErrorCategory.BAD_REQUEST


# -- the verifier --------------------------------------------------------------------


def verify_licence(
    *,
    qr_image: bytes | None = None,
    token: str | None = None,
    sd_jwt: str | None = None,
    pdf: bytes | None = None,
    trust: LicenceTrust,
    status_source: StatusSource | None,
    now: dt.datetime,
    nonce: str | None = None,
    aud: str | None = None,
    require_key_binding: bool = False,
    explain: Callable[[str], str | None] | None = None,
) -> LicenceVerification:
    """Verify one licence input (exactly one of qr_image, token, sd_jwt, pdf).

    Hostile or broken input gives a verdict with a reason, never an exception;
    LicenceVerifyRequestError only when not exactly one input is given. `explain`
    (this node's registry) may add why a licence is revoked: "replaced by ...".
    """
    given = {
        name: value
        for name, value in (
            ("qr-image", qr_image),
            ("token", token),
            ("sd-jwt", sd_jwt),
            ("pdf", pdf),
        )
        if value is not None
    }
    if len(given) != 1:
        raise LicenceVerifyRequestError(
            "give exactly one of a QR image, an LC1 token, an SD-JWT presentation or a PDF"
        )
    if not isinstance(now, dt.datetime) or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    ((kind, value),) = given.items()
    context = _Context(trust, status_source, now, explain)
    if kind == "qr-image":
        if not isinstance(value, bytes | bytearray):
            raise TypeError("qr_image is the image file's bytes")
        try:
            text = read_qr(bytes(value))
        except QrDecodeError as exc:
            return LicenceVerification(Verdict.MALFORMED, str(exc), kind)
        return context.token(text.strip(), kind)
    if kind == "token":
        if not isinstance(value, str):
            raise TypeError("token is text")
        return context.token(value.strip(), kind)
    if kind == "sd-jwt":
        if not isinstance(value, str):
            raise TypeError("sd_jwt is text")
        return context.presentation(
            value.strip(), nonce=nonce, aud=aud, require_key_binding=require_key_binding
        )
    if not isinstance(value, bytes | bytearray):
        raise TypeError("pdf is the file's bytes")
    return context.pdf(bytes(value))


@dataclasses.dataclass(frozen=True)
class _Context:
    trust: LicenceTrust
    status_source: StatusSource | None
    now: dt.datetime
    explain: Callable[[str], str | None] | None

    # -- tokens --------------------------------------------------------------------

    def token(self, text: str, kind: str) -> LicenceVerification:
        try:
            checked = verify_token(text, trust=self.trust.signers, at=self.now)
        except (TypeError, ValueError) as exc:
            return LicenceVerification(Verdict.MALFORMED, _first_line(exc), kind)
        licence = checked.licence
        if licence is None or checked.claims is None:
            return LicenceVerification(checked.verdict, checked.reason, kind)
        result = LicenceVerification(
            verdict=checked.verdict,
            reason=_token_reason(checked),
            input=kind,
            fields=dict(licence.fields),
            licence_id=licence.licence_id,
            type_code=licence.type_code,
            issuer=licence.issuer,
            issued_at=licence.issued_at,
            expires_at=licence.expires_at,
            signer=_subject(checked.signer.certificate) if checked.signer else None,
        )
        return self.with_status(result, licence.status)

    def presentation(
        self,
        text: str,
        *,
        nonce: str | None,
        aud: str | None,
        require_key_binding: bool,
    ) -> LicenceVerification:
        try:
            checked = verify_presentation(
                text,
                trust=self.trust.signers,
                now=self.now,
                expected_nonce=nonce,
                expected_aud=aud,
                require_key_binding=require_key_binding,
            )
        except (TypeError, ValueError) as exc:
            return LicenceVerification(Verdict.MALFORMED, _first_line(exc), "sd-jwt")
        if checked.signer is None:
            return LicenceVerification(checked.verdict, checked.reason, "sd-jwt")
        fields = dict(checked.fields)
        licence_id = fields.get("licence_id")
        type_code = fields.get("licence_type")
        result = LicenceVerification(
            verdict=checked.verdict,
            reason=checked.reason,
            input="sd-jwt",
            fields=fields,
            licence_id=licence_id if isinstance(licence_id, str) else None,
            type_code=type_code if isinstance(type_code, str) else None,
            issuer=checked.issuer,
            issued_at=checked.issued_at,
            expires_at=checked.expires_at,
            signer=_subject(checked.signer.certificate),
            key_bound=checked.key_bound,
            disclosed=tuple(sorted(checked.disclosed)),
        )
        return self.with_status(result, checked.status)

    def with_status(
        self, result: LicenceVerification, reference: StatusReference | None
    ) -> LicenceVerification:
        if result.verdict not in (
            Verdict.VALID,
            Verdict.EXPIRED,
            Verdict.NOT_YET_VALID,
        ):
            return result
        if reference is None:
            check = StatusCheck(
                False, None, None, None, None, None,
                "the credential names no status list",
            )  # fmt: skip
        elif self.status_source is None:
            check = StatusCheck(
                False, None, reference.uri, reference.index, None, None,
                "status not checked: no status source (offline, no cached list)",
            )  # fmt: skip
        else:
            answer = self.status_source.lookup(
                reference, issuer=result.issuer, now=self.now
            )
            check = StatusCheck(
                checked=answer.status is not None,
                status=None if answer.status is None else answer.status.name.lower(),
                uri=reference.uri,
                index=reference.index,
                as_of=answer.as_of,
                source=answer.source,
                reason=answer.reason
                or f"status as of {_iso(answer.as_of)} ({answer.source})",
            )
        result = dataclasses.replace(result, status=check)
        if check.status == StatusType.INVALID.name.lower():
            detail = (
                self.explain(result.licence_id)
                if (self.explain is not None and result.licence_id)
                else None
            )
            revoked = (
                f"the licence is no longer valid: {detail}"
                if detail
                else "the licence has been revoked or replaced by a newer version"
            )
            return dataclasses.replace(
                result, verdict=Verdict.REVOKED, reason=f"{revoked}; {check.reason}"
            )
        if check.status == StatusType.SUSPENDED.name.lower():
            return dataclasses.replace(
                result,
                verdict=Verdict.SUSPENDED,
                reason=f"the licence is suspended; {check.reason}",
            )
        return dataclasses.replace(result, reason=f"{result.reason}; {check.reason}")

    # -- PDFs ----------------------------------------------------------------------

    def pdf(self, data: bytes) -> LicenceVerification:
        if not self.trust.seal_roots:
            return LicenceVerification(
                Verdict.UNTRUSTED_ISSUER,
                "this verifier trusts no root certificates for seals",
                "pdf",
            )
        report = verify_pdf(
            data,
            trust_roots=list(self.trust.seal_roots),
            allow_fetching=self.trust.allow_fetching,
            revocation=self.trust.seal_revocation,
            now=self.now,
        )
        if not report.usable:
            return LicenceVerification(Verdict.MALFORMED, report.reason, "pdf")
        seal = _certification_seal(report)
        if seal is None:
            return LicenceVerification(
                Verdict.MALFORMED,
                "not a sealed licence: the PDF has no certification seal",
                "pdf",
            )
        try:
            token = _token_from_pdf(data)
        except _NoToken as exc:
            return LicenceVerification(Verdict.MALFORMED, str(exc), "pdf", seal=seal)
        result = dataclasses.replace(self.token(token, "pdf"), seal=seal)
        if not seal.valid:
            verdict = (
                Verdict.UNTRUSTED_ISSUER
                if seal.intact and not seal.chain_trusted
                else Verdict.INVALID_SIGNATURE
            )
            return dataclasses.replace(
                result, verdict=verdict, reason=f"the seal: {seal.reason}"
            )
        if not report.valid:
            return dataclasses.replace(
                result, verdict=Verdict.INVALID_SIGNATURE, reason=report.reason
            )
        if result.licence_id is None:
            return dataclasses.replace(result, reason=f"the QR code: {result.reason}")
        try:
            identifier = LicenceIdentifier.parse(result.licence_id)
        except LicenseError as exc:
            return dataclasses.replace(
                result,
                verdict=Verdict.MALFORMED,
                reason=f"the QR code's licence identifier: {exc}",
            )
        if seal.agency_uscc != identifier.agency_code:
            return dataclasses.replace(
                result,
                verdict=Verdict.UNTRUSTED_ISSUER,
                reason=(
                    f"sealed by {seal.agency or 'another agency'} "
                    f"({seal.agency_uscc}), but the licence was issued by agency "
                    f"{identifier.agency_code}"
                ),
            )
        if not _printed(data, result.licence_id):
            return dataclasses.replace(
                result,
                verdict=Verdict.MALFORMED,
                reason="the licence identifier printed on the page is not the QR code's",
            )
        if result.verdict is Verdict.VALID:
            return dataclasses.replace(
                result,
                reason=(
                    f"sealed by {seal.agency} ({seal.agency_uscc}); QR code and "
                    f"printed identifier agree; {result.reason}"
                ),
            )
        return result


def _certification_seal(report: PdfVerification) -> PdfSealCheck | None:
    for signature in report.signatures:
        if signature.kind is SignatureKind.CERTIFICATION and signature.is_seal:
            seal = signature.seal
            signer = signature.signer
            agency_uscc = (seal.agency_uscc if seal else None) or (
                signer.agency_uscc if signer else None
            )
            agency = (seal.agency if seal else None) or (
                signer.agency if signer else None
            )
            stamp = signature.timestamp
            return PdfSealCheck(
                valid=signature.valid,
                reason=signature.reason,
                agency=agency,
                agency_uscc=agency_uscc,
                seal_code=seal.es_id if seal else None,
                signing_time=(stamp.time if stamp and stamp.valid else None)
                or signature.signing_time,
                timestamped=bool(stamp and stamp.valid),
                intact=signature.intact and signature.crypto_valid,
                chain_trusted=bool(signature.chain and signature.chain.trusted),
            )
    return None


class _NoToken(Exception):
    """No LC1 QR code could be read from the PDF; the message says why."""


def _token_from_pdf(data: bytes) -> str:
    """The LC1 token of the QR code printed on the first page, read from its image."""
    try:
        reader = PdfFileReader(
            io.BytesIO(data), strict=False, decode_limits=VerifyLimits().decode_limits()
        )
        page = reader.root["/Pages"]["/Kids"][0].get_object()
        resources = page.get("/Resources")
        resources = resources.get_object() if resources is not None else {}
        xobjects = resources.get("/XObject")
        xobjects = xobjects.get_object() if xobjects is not None else {}
        images = []
        for _name, reference in list(xobjects.items())[: MAX_QR_IMAGES * 4]:
            candidate = reference.get_object()
            if (
                isinstance(candidate, generic.StreamObject)
                and candidate.get("/Subtype") == "/Image"
            ):
                images.append(candidate)
    except Exception as exc:  # noqa: BLE001 - any failure of the reader on this file
        raise _NoToken(
            f"the PDF's first page cannot be read ({type(exc).__name__})"
        ) from None
    seen_qr = False
    for image in images[:MAX_QR_IMAGES]:
        png = _image_png(image)
        if png is None:
            continue
        try:
            text = read_qr(png).strip()
        except QrDecodeError:
            continue
        seen_qr = True
        if text.startswith(LC1_PREFIX):
            return text
    raise _NoToken(
        "the QR code on the PDF does not hold an LC1 token"
        if seen_qr
        else "no readable QR code on the PDF's first page"
    )


def _image_png(image: generic.StreamObject) -> bytes | None:
    """An image XObject as PNG bytes, for the QR reader; None if it is not a plain one."""
    try:
        width, height = int(image["/Width"]), int(image["/Height"])
        colour = image.get("/ColorSpace")
        bits = int(image.get("/BitsPerComponent", 8))
        if not (0 < width and 0 < height and width * height <= MAX_QR_IMAGE_PIXELS):
            return None
        if bits == 1 and colour in (None, "/DeviceGray"):
            mode = "1"
        elif bits == 8 and colour in _MODES:
            mode = _MODES[colour]
        else:
            return None
        picture = Image.frombytes(mode, (width, height), image.data)
    except Exception:  # noqa: BLE001 - an undecodable image is just not the QR code
        return None
    picture = picture.convert("L")
    if width < _QR_SCALE_UNDER:
        factor = -(-_QR_SCALE_UNDER // width)
        # A slim image (3x200000) would otherwise grow to billions of pixels.
        while factor > 1 and width * height * factor * factor > MAX_QR_IMAGE_PIXELS:
            factor -= 1
        if factor > 1:
            picture = picture.resize((width * factor, height * factor), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _printed(data: bytes, licence_id: str) -> bool:
    try:
        return bool(find_text(data, licence_id, page_indexes={0}))
    except Exception:  # noqa: BLE001 - unreadable text cannot show the identifier
        return False


# -- helpers ---------------------------------------------------------------------------


def _token_reason(checked: TokenVerification) -> str:
    if checked.verdict is Verdict.VALID:
        return "the QR token's signature, issuer and dates are valid"
    return checked.reason


def _subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
