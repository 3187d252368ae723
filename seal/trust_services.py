"""Where stamping gets trusted time and revocation data, and pyHanko's adapters for them.

A stamp at level B-T or above needs an RFC 3161 timestamp; B-LT and B-LTA also embed
OCSP responses and CRLs for the seal certificate's chain. Both come through small
injected functions, so the same stamping code talks to this node's services in
process (the portal, and the tests) or to any node over HTTP:

    services = TrustServices(
        timestamp=lambda request: node.timestamps.respond(request).response_der,
        revocation=MyNodeRevocation(...),
    )
    services = http_trust_services("http://pki.example.gov.cn/pki/tsa")
"""

from __future__ import annotations

import dataclasses
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, Callable, Iterable
from email.message import Message
from typing import IO, Protocol

from asn1crypto import cms, crl, ocsp, pem, tsp, x509
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko_certvalidator import errors as certvalidator_errors
from pyhanko_certvalidator.authority import Authority
from pyhanko_certvalidator.fetchers import (
    CertificateFetcher,
    CRLFetcher,
    Fetchers,
    OCSPFetcher,
)
from pyhanko_certvalidator.fetchers.common_utils import (
    enumerate_delivery_point_urls,
    format_ocsp_request,
    process_ocsp_response_data,
)
from pyhanko_certvalidator.util import (
    get_ocsp_urls,
    get_relevant_crl_dps,
    issuer_serial,
)

from pki.revocation import RevocationService
from pki.timestamping import TimestampService
from seal.errors import TrustServiceError

__all__ = [
    "CallableTimeStamper",
    "HttpRevocationSource",
    "NodeRevocationSource",
    "RevocationSource",
    "TimestampClient",
    "TrustServices",
    "http_timestamp_client",
    "http_trust_services",
    "node_trust_services",
    "revocation_fetchers",
]

MAX_RESPONSE_BYTES = 8 * 1024 * 1024  # a CRL of a large CA is a few MiB at most

TimestampClient = Callable[[bytes], bytes]
"""Sends a DER TimeStampReq to the timestamp authority, returns the DER TimeStampResp."""


class RevocationSource(Protocol):
    """Answers OCSP requests and hands out CRLs, addressed by the URLs in certificates."""

    def ocsp(self, url: str, request_der: bytes) -> bytes:
        """The DER OCSPResponse of the responder at `url` for `request_der`."""
        ...

    def crl(self, url: str) -> bytes:
        """The DER (or PEM) CRL published at the distribution point `url`."""
        ...


@dataclasses.dataclass(frozen=True)
class TrustServices:
    """The timestamp authority and the revocation source a stamper uses.

    Either may be None; a level that needs the missing one is refused.
    """

    timestamp: TimestampClient | None = None
    revocation: RevocationSource | None = None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is answered as the HTTP error it is: the URLs come from certificates
    in uploaded documents, and urllib would follow them to ftp:// or another host."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)
# urllib opens file://, ftp:// and data: URLs too; certificates name what they like.
_SCHEMES = ("http", "https")
_CHUNK = 64 * 1024


def _http_exchange(
    url: str, body: bytes | None, content_type: str | None, timeout: float
) -> bytes:
    """POST `body` (GET without one) to an http(s) URL; the answer's body.

    At most MAX_RESPONSE_BYTES, within `timeout` seconds in all (not per read: a server
    sending a byte at a time cannot hold the caller)."""
    shown = _shown(url)
    try:
        parts = urllib.parse.urlsplit(url)
        fetchable = parts.scheme.lower() in _SCHEMES and bool(parts.hostname)
    except ValueError:
        fetchable = False
    if not fetchable:
        raise TrustServiceError(
            f"{shown} is not an http or https URL; it is not fetched"
        )
    request = urllib.request.Request(
        url, data=body, method="POST" if body is not None else "GET"
    )
    if content_type is not None:
        request.add_header("Content-Type", content_type)
    deadline = time.monotonic() + timeout
    data = bytearray()
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            while chunk := response.read1(_CHUNK):
                data += chunk
                if len(data) > MAX_RESPONSE_BYTES:
                    raise TrustServiceError(
                        f"{shown} answered with more than {MAX_RESPONSE_BYTES} bytes"
                    )
                if time.monotonic() > deadline:
                    raise TrustServiceError(
                        f"{shown} did not answer within {timeout:g} s"
                    )
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TrustServiceError(f"{shown} did not answer: {_reason(exc)}") from exc
    return bytes(data)


def _shown(url: str) -> str:
    """The URL as an error message may show it: one line, not too long."""
    text = "".join(char if char.isprintable() else "?" for char in url)
    return text if len(text) <= 200 else text[:197] + "..."


def _reason(exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return _shown(str(exc.reason))
    return type(exc).__name__


def http_timestamp_client(url: str, *, timeout: float = 10.0) -> TimestampClient:
    """A client for the RFC 3161 timestamp authority at `url` (HTTP POST)."""

    def exchange(request_der: bytes) -> bytes:
        return _http_exchange(url, request_der, "application/timestamp-query", timeout)

    return exchange


@dataclasses.dataclass(frozen=True)
class HttpRevocationSource:
    """Fetches OCSP responses (RFC 6960 POST) and CRLs over HTTP from the certificates' URLs."""

    timeout: float = 10.0

    def ocsp(self, url: str, request_der: bytes) -> bytes:
        return _http_exchange(
            url, request_der, "application/ocsp-request", self.timeout
        )

    def crl(self, url: str) -> bytes:
        return _http_exchange(url, None, None, self.timeout)


def http_trust_services(tsa_url: str | None, *, timeout: float = 10.0) -> TrustServices:
    """Trust services reached over HTTP: the TSA at `tsa_url`, revocation data from the
    URLs the certificates name (http and https only, no redirects, bounded answers)."""
    return TrustServices(
        timestamp=http_timestamp_client(tsa_url, timeout=timeout) if tsa_url else None,
        revocation=HttpRevocationSource(timeout=timeout),
    )


class NodeRevocationSource:
    """This node's OCSP responder and CRLs, called in process (no HTTP to ourselves)."""

    def __init__(self, revocation: RevocationService) -> None:
        self._revocation = revocation
        self._endpoints = revocation.ca.endpoints

    def ocsp(self, url: str, request_der: bytes) -> bytes:
        if url != self._endpoints.ocsp_url:
            raise TrustServiceError(f"{url} is not this node's OCSP responder")
        return self._revocation.respond_ocsp(request_der)

    def crl(self, url: str) -> bytes:
        for issuer in self._revocation.ca.issuers():
            for delta in (False, True):
                wanted = (
                    self._endpoints.delta_crl_url if delta else self._endpoints.crl_url
                )(issuer.name)
                if url == wanted:
                    latest = self._revocation.latest_crl(issuer.name, delta=delta)
                    if (
                        latest is None
                        or latest.next_update <= self._revocation.ca.clock()
                    ):
                        latest = self._revocation.publish_crl(issuer.name, delta=delta)
                    return latest.der
        raise TrustServiceError(f"{url} is not a CRL this node publishes")


def node_trust_services(
    timestamps: TimestampService, revocation: RevocationService
) -> TrustServices:
    """This node's TSA and revocation data, called in process."""

    def timestamp(request_der: bytes) -> bytes:
        return timestamps.respond(request_der).response_der

    return TrustServices(
        timestamp=timestamp, revocation=NodeRevocationSource(revocation)
    )


class CallableTimeStamper(TimeStamper):
    """pyHanko's TimeStamper over a `TimestampClient` (in process or HTTP)."""

    def __init__(self, client: TimestampClient) -> None:
        super().__init__(include_nonce=True)
        self._client = client

    async def async_request_tsa_response(
        self, req: tsp.TimeStampReq
    ) -> tsp.TimeStampResp:
        try:
            return tsp.TimeStampResp.load(self._client(req.dump()))
        except ValueError as exc:
            raise TrustServiceError(
                "the timestamp authority sent an unreadable response"
            ) from exc

    async def async_timestamp(
        self, message_digest: bytes, md_algorithm: str
    ) -> cms.ContentInfo:
        try:
            return await super().async_timestamp(message_digest, md_algorithm)
        except (TimestampRequestError, ValueError, KeyError) as exc:
            raise TrustServiceError(
                f"the timestamp authority gave no usable timestamp: {exc}"
            ) from exc


class _OcspFetcher(OCSPFetcher):
    def __init__(self, source: RevocationSource) -> None:
        self._source = source
        self._responses: dict[tuple[bytes, bytes], ocsp.OCSPResponse] = {}

    async def fetch(
        self, cert: x509.Certificate | cms.AttributeCertificateV2, authority: Authority
    ) -> ocsp.OCSPResponse:
        tag = (issuer_serial(cert), authority.hashable)
        cached = self._responses.get(tag)
        if cached is not None:
            return cached
        # SHA-1 CertID without a nonce: what responders pre-sign, so it is served from cache.
        request = format_ocsp_request(
            cert, authority, certid_hash_algo="sha1", request_nonces=False
        )
        urls = get_ocsp_urls(cert)
        if not urls:
            raise certvalidator_errors.OCSPFetchError(
                "the certificate names no OCSP responder"
            )
        failure: Exception | None = None
        for url in urls:
            try:
                response = process_ocsp_response_data(
                    self._source.ocsp(url, request.dump()),
                    ocsp_request=request,
                    ocsp_url=url,
                )
            except (TrustServiceError, certvalidator_errors.OCSPValidationError) as exc:
                failure = exc
                continue
            self._responses[tag] = response
            return response
        raise certvalidator_errors.OCSPFetchError(f"no OCSP response: {failure}")

    def fetched_responses(self) -> Iterable[ocsp.OCSPResponse]:
        return list(self._responses.values())

    def fetched_responses_for_cert(
        self, cert: x509.Certificate | cms.AttributeCertificateV2
    ) -> Iterable[ocsp.OCSPResponse]:
        wanted = issuer_serial(cert)
        return [r for (serial, _), r in self._responses.items() if serial == wanted]


class _CrlFetcher(CRLFetcher):
    def __init__(self, source: RevocationSource) -> None:
        self._source = source
        self._by_url: dict[str, crl.CertificateList] = {}
        self._by_cert: dict[bytes, list[crl.CertificateList]] = {}

    async def fetch(
        self,
        cert: x509.Certificate | cms.AttributeCertificateV2,
        *,
        use_deltas: bool = True,
    ) -> Iterable[crl.CertificateList]:
        key = issuer_serial(cert)
        if key in self._by_cert:
            return self._by_cert[key]
        fetched: list[crl.CertificateList] = []
        for point in get_relevant_crl_dps(cert, use_deltas=use_deltas):
            for url in enumerate_delivery_point_urls(point):
                fetched.append(self._fetch_url(url))
        if use_deltas:
            # A CRL may name its delta CRL itself (freshestCRL in the CRL, RFC 5280
            # 5.2.6); certvalidator then insists on that delta, so fetch it too.
            for full in list(fetched):
                for point in full.freshest_crl_value or ():
                    for url in enumerate_delivery_point_urls(point):
                        fetched.append(self._fetch_url(url))
        self._by_cert[key] = fetched
        return fetched

    def _fetch_url(self, url: str) -> crl.CertificateList:
        cached = self._by_url.get(url)
        if cached is not None:
            return cached
        try:
            data = self._source.crl(url)
            if pem.detect(data):
                _, _, data = pem.unarmor(data)
            parsed = crl.CertificateList.load(data)
        except (TrustServiceError, ValueError) as exc:
            raise certvalidator_errors.CRLFetchError(
                f"no CRL from {url}: {exc}"
            ) from exc
        self._by_url[url] = parsed
        return parsed

    def fetched_crls(self) -> Iterable[crl.CertificateList]:
        return list(self._by_url.values())

    def fetched_crls_for_cert(
        self, cert: x509.Certificate | cms.AttributeCertificateV2
    ) -> Iterable[crl.CertificateList]:
        return self._by_cert[issuer_serial(cert)]


class _NoCertificateFetcher(CertificateFetcher):
    """The stamper hands pyHanko the whole chain, so issuers are never fetched."""

    async def fetch_cert_issuers(
        self, cert: x509.Certificate | cms.AttributeCertificateV2
    ) -> AsyncGenerator[x509.Certificate, None]:
        for issuer in ():
            yield issuer

    async def fetch_crl_issuers(
        self, certificate_list
    ) -> AsyncGenerator[x509.Certificate, None]:
        for issuer in ():
            yield issuer

    def fetched_certs(self) -> Iterable[x509.Certificate]:
        return ()


def revocation_fetchers(source: RevocationSource) -> Fetchers:
    """pyhanko-certvalidator fetchers that get OCSP responses and CRLs from `source`."""
    return Fetchers(
        ocsp_fetcher=_OcspFetcher(source),
        crl_fetcher=_CrlFetcher(source),
        cert_fetcher=_NoCertificateFetcher(),
    )
