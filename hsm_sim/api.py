"""The key-store interface every backend implements, and the vocabulary it speaks.

Keys are addressed by label. A key has one algorithm and a set of usages fixed when it
is generated; a signing request names the usage it is for, and a key refuses any
usage it was not made for. Every signature is preceded by an audit event.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt
import enum
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

__all__ = [
    "KeyAlgorithm",
    "KeyUsage",
    "HashName",
    "RsaPadding",
    "SignatureMechanism",
    "KeyInfo",
    "KeyStore",
    "AuditResult",
    "AuditEvent",
    "AuditSink",
    "signing_context",
    "current_signing_context",
    "SigningContext",
]


class KeyAlgorithm(enum.Enum):
    EC_P256 = "ec-p256"
    EC_P384 = "ec-p384"
    ED25519 = "ed25519"
    RSA_2048 = "rsa-2048"
    RSA_3072 = "rsa-3072"

    @classmethod
    def parse(cls, text: str) -> KeyAlgorithm:
        """The algorithm named by `text`, or ValueError listing the known names."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            known = ", ".join(a.value for a in cls)
            raise ValueError(f"unknown key algorithm {text!r}; use one of: {known}") from None


class KeyUsage(enum.Enum):
    CERT_SIGN = "cert-sign"
    CRL_SIGN = "crl-sign"
    OCSP_SIGN = "ocsp-sign"
    TSA = "tsa"
    SEAL = "seal"
    TOKEN = "token"
    AUDIT = "audit"
    CLIENT = "client"

    @classmethod
    def parse(cls, text: str) -> KeyUsage:
        """The usage named by `text`, or ValueError listing the known names."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            known = ", ".join(u.value for u in cls)
            raise ValueError(f"unknown key usage {text!r}; use one of: {known}") from None


class HashName(enum.Enum):
    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"


class RsaPadding(enum.Enum):
    PKCS1V15 = "pkcs1v15"
    PSS = "pss"


@dataclasses.dataclass(frozen=True)
class SignatureMechanism:
    """How to sign: the hash (None for Ed25519), RSA padding, and whether the data
    handed over is already the digest (cryptography's `Prehashed`)."""

    hash: HashName | None
    rsa_padding: RsaPadding | None = None
    prehashed: bool = False


@dataclasses.dataclass(frozen=True)
class KeyInfo:
    label: str
    algorithm: KeyAlgorithm
    usages: frozenset[KeyUsage]
    created_at: dt.datetime
    public_key_der: bytes  # SubjectPublicKeyInfo


@runtime_checkable
class KeyStore(Protocol):
    """A token holding private keys that never leave it."""

    def generate_key(
        self, label: str, algorithm: KeyAlgorithm, usages: frozenset[KeyUsage]
    ) -> KeyInfo:
        """Make a new key pair inside the token; KeyExistsError if the label is taken."""
        ...

    def public_key(self, label: str) -> PublicKeyTypes:
        ...

    def key_info(self, label: str) -> KeyInfo:
        ...

    def list_keys(self) -> list[KeyInfo]:
        ...

    def sign(
        self, label: str, data: bytes, mechanism: SignatureMechanism, *, usage: KeyUsage
    ) -> bytes:
        """Sign `data` for `usage` after writing the audit event; ECDSA signatures DER."""
        ...

    def sign_batch(
        self,
        label: str,
        items: Sequence[bytes],
        mechanism: SignatureMechanism,
        *,
        usage: KeyUsage,
    ) -> list[bytes]:
        """Sign every item for `usage`; one audit entry per item, written in one append."""
        ...

    def private_key(self, label: str, *, usage: KeyUsage):  # -> hsm_sim.keys handle
        """A cryptography private-key object bound to `usage` whose sign() calls the token."""
        ...

    def destroy_key(self, label: str) -> None:
        ...

    def close(self) -> None:
        ...


class AuditResult(enum.Enum):
    GRANTED = "granted"  # written before the signature is made
    REFUSED = "refused"  # the key store refused (wrong usage, unknown key, ...)
    FAILED = "failed"  # granted, but the signing operation itself failed


@dataclasses.dataclass(frozen=True)
class AuditEvent:
    actor: str
    operation: str
    key_label: str
    data_sha256: str  # hex SHA-256 of the bytes handed to sign()
    result: AuditResult
    detail: str = ""


class AuditSink(Protocol):
    def record(self, event: AuditEvent) -> None:
        """Durably append `event`; AuditUnavailableError if it cannot be written."""
        ...

    def record_all(self, events: Sequence[AuditEvent]) -> None:
        """Durably append `events` in order, all or none (one per item of a batch)."""
        ...


@dataclasses.dataclass(frozen=True)
class SigningContext:
    actor: str = "system"
    operation: str = ""


_signing_context: contextvars.ContextVar[SigningContext] = contextvars.ContextVar(
    "yinxin_signing_context", default=SigningContext()
)


def current_signing_context() -> SigningContext:
    return _signing_context.get()


@contextlib.contextmanager
def signing_context(*, actor: str | None = None, operation: str | None = None) -> Iterator[None]:
    """Name who signs and why, for the audit entries of signatures made inside the block.

    cryptography's builders call `key.sign(data, algorithm)` with nothing else, so the
    actor and the operation travel in a context variable rather than as arguments.
    """
    outer = _signing_context.get()
    token = _signing_context.set(
        SigningContext(
            actor=actor if actor is not None else outer.actor,
            operation=operation if operation is not None else outer.operation,
        )
    )
    try:
        yield
    finally:
        _signing_context.reset(token)
