"""The node's RFC 3161 timestamp authority: the protocol in pki/tsa.py, plus the
HSM key, the certificate chain and the record of every token issued.

Serial numbers are 159 random bits and unique: each granted token is recorded
before its response is handed out, and a (vanishingly unlikely) repeat is signed
again under a new serial.
"""

from __future__ import annotations

import threading

from cryptography import x509
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hsm_sim.api import KeyUsage, signing_context
from pki.ca import CertificateAuthority
from pki.ca_models import CertificateRow, ServiceCredentialRow, ServicePurpose, TimestampRow
from pki.certificates import random_serial
from pki.errors import IssuanceError, UnknownCaError
from pki.tsa import TimestampOutcome, TimestampStatus, TsaSigner, respond_timestamp

__all__ = ["TimestampService", "service_credential"]

SERIAL_ATTEMPTS = 5


def service_credential(
    ca: CertificateAuthority, purpose: ServicePurpose
) -> tuple[str, x509.Certificate, list[x509.Certificate]]:
    """The current key label, certificate and issuing chain of a node service."""
    with ca.sessions() as session:
        row = session.execute(
            select(ServiceCredentialRow.key_label, CertificateRow.der, CertificateRow.issuer_id)
            .join(CertificateRow, CertificateRow.id == ServiceCredentialRow.certificate_id)
            .where(
                ServiceCredentialRow.purpose == purpose,
                ServiceCredentialRow.retired_at.is_(None),
            )
            .order_by(ServiceCredentialRow.id.desc())
            .limit(1)
        ).first()
    if row is None or row[1] is None:
        raise UnknownCaError(f"this node has no {purpose.value} credential; run the CA ceremony")
    key_label, der, issuer_id = row
    issuer = next(i for i in ca.issuers() if i.id == issuer_id)
    return key_label, x509.load_der_x509_certificate(der), ca.chain(issuer)


class TimestampService:
    def __init__(self, *, ca: CertificateAuthority) -> None:
        self.ca = ca
        self._signer: TsaSigner | None = None
        self._lock = threading.Lock()

    def signer(self) -> TsaSigner:
        with self._lock:
            if self._signer is None:
                key_label, certificate, chain = service_credential(self.ca, ServicePurpose.TSA)
                self._signer = TsaSigner(
                    private_key=self.ca.keystore.private_key(key_label, usage=KeyUsage.TSA),
                    certificate=certificate,
                    chain=tuple(chain),
                )
            return self._signer

    def respond(self, request_der: bytes) -> TimestampOutcome:
        signer = self.signer()
        for _ in range(SERIAL_ATTEMPTS):
            serial = random_serial()
            with signing_context(operation="timestamp"):
                outcome = respond_timestamp(
                    request_der, signer=signer, serial=serial, now=self.ca.clock()
                )
            if outcome.status is not TimestampStatus.GRANTED:
                return outcome
            assert outcome.gen_time is not None and outcome.message_imprint is not None
            try:
                with self.ca.sessions.begin() as session:
                    session.add(
                        TimestampRow(
                            serial=format(serial, "x"),
                            gen_time=outcome.gen_time,
                            message_imprint=outcome.message_imprint.hex(),
                            hash_algorithm=outcome.hash_name or "",
                        )
                    )
            except IntegrityError:
                continue
            return outcome
        raise IssuanceError("could not allocate a unique timestamp serial; try again")
