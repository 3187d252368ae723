"""Which OCSP requests make the node sign now — the ones worth rate-limiting.

Most OCSP requests are answered with a response signed ahead of time (pki.revocation
pre-signs one per certificate, for SHA-1 CertIDs without a nonce: what OpenSSL and
most clients send), which costs a database read. Three kinds are signed on the spot,
each signature a key-store operation and an audit entry:

- a request with a nonce (the answer must echo it),
- a CertID hashed with anything but SHA-1,
- a certificate with no pre-signed answer: above all serials the issuer never issued,
  answered `unknown`, signed anew every time.

Anyone can send those as fast as they like; the web layer counts them per address
(the setting ocsp_live_rate_limit) and answers `tryLater` beyond the limit, while
the pre-signed answers stay unlimited. A certificate whose pre-signed answer is stale
is re-signed once by the next request and is then pre-signed again, so it counts as
pre-signed here. Malformed requests and unknown issuers are answered unsigned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from pki.ca import Issuer, serial_to_text
from pki.ca_models import OcspResponseRow
from pki.errors import MalformedOcspRequestError
from pki.ocsp import CertId, issuer_cert_id_hashes, parse_ocsp_request

__all__ = ["LiveSigningCheck"]

# The CertID hash of the responses pki.revocation pre-signs.
PRESIGNED_HASH = "sha1"
# A new CA (a ceremony in another process) is seen within this many seconds.
_ISSUER_RELOAD_SECONDS = 5.0

_IssuerKey = tuple[str, bytes, bytes]  # (hash name, issuerNameHash, issuerKeyHash)


class LiveSigningCheck:
    """Tells whether the node would sign a fresh response for an OCSP request."""

    def __init__(
        self,
        *,
        issuers: Callable[[], list[Issuer]],
        sessions: sessionmaker[Session],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuers = issuers
        self._sessions = sessions
        self._clock = clock
        self._by_cert_id: dict[_IssuerKey, int] | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def needs_live_signature(self, request_der: bytes) -> bool:
        try:
            request = parse_ocsp_request(request_der)
        except MalformedOcspRequestError:
            return False
        issuer_id = self._issuer_id(request.cert_id)
        if issuer_id is None:
            return False
        if request.nonce is not None or request.cert_id.hash_name != PRESIGNED_HASH:
            return True
        serial = serial_to_text(request.cert_id.serial_number)
        with self._sessions() as session:
            presigned = session.scalar(
                select(OcspResponseRow.id).where(
                    OcspResponseRow.issuer_id == issuer_id,
                    OcspResponseRow.serial == serial,
                )
            )
        return presigned is None

    def _issuer_id(self, cert_id: CertId) -> int | None:
        key = (cert_id.hash_name, cert_id.issuer_name_hash, cert_id.issuer_key_hash)
        with self._lock:
            known = self._by_cert_id
            stale = self._clock() - self._loaded_at >= _ISSUER_RELOAD_SECONDS
        if known is not None and (key in known or not stale):
            return known.get(key)
        loaded = {
            (name, name_hash, key_hash): issuer.id
            for issuer in self._issuers()
            for name, (name_hash, key_hash) in issuer_cert_id_hashes(
                issuer.certificate
            ).items()
        }
        with self._lock:
            self._by_cert_id = loaded
            self._loaded_at = self._clock()
        return loaded.get(key)
