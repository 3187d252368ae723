"""What every key-store backend shares: request checks, and audit before each signature.

A backend supplies three things: finding a key by label, making a raw signature with it,
and the key lifecycle. This base class turns them into the `KeyStore` protocol and
guarantees the order that makes the audit log trustworthy: refuse (and record the
refusal), or record GRANTED and only then sign; a failed signature is recorded FAILED.
Making and destroying a key follow the same order (operations "generate-key" and
"destroy-key"), so no key comes or goes without a trace.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, Protocol, TypeVar

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import load_der_public_key

from hsm_sim.api import (
    AuditEvent,
    AuditResult,
    AuditSink,
    HashName,
    KeyAlgorithm,
    KeyInfo,
    KeyUsage,
    RsaPadding,
    SignatureMechanism,
    current_signing_context,
)
from hsm_sim.errors import (
    AuditUnavailableError,
    HsmError,
    InvalidKeyRequestError,
    KeyNotFoundError,
    TokenTamperedError,
    UsageNotPermittedError,
)
from hsm_sim.keys import KeyHandle, make_key_handle

__all__ = [
    "MAX_LABEL_LENGTH",
    "AuditedKeyStore",
    "batch_sha256",
    "check_label",
    "check_mechanism",
    "check_usages",
    "hash_algorithm",
]

_log = logging.getLogger(__name__)

MAX_LABEL_LENGTH = 128

_HASHES: dict[HashName, type[hashes.HashAlgorithm]] = {
    HashName.SHA256: hashes.SHA256,
    HashName.SHA384: hashes.SHA384,
    HashName.SHA512: hashes.SHA512,
}
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_SIGNING_FAILED = "the token failed to make the signature"
_GENERATING_FAILED = "the token failed to make the key"
_DESTROYING_FAILED = "the token failed to destroy the key"


def hash_algorithm(name: HashName) -> hashes.HashAlgorithm:
    """cryptography's hash object for `name`."""
    return _HASHES[name]()


def check_label(label: object) -> str:
    """`label` if it is a usable key label, else InvalidKeyRequestError saying why."""
    if not isinstance(label, str):
        raise InvalidKeyRequestError("a key label must be a string")
    if not label or len(label) > MAX_LABEL_LENGTH:
        raise InvalidKeyRequestError(
            f"a key label must have 1 to {MAX_LABEL_LENGTH} characters"
        )
    if label != label.strip():
        raise InvalidKeyRequestError("a key label must not start or end with spaces")
    if not label.isprintable():
        raise InvalidKeyRequestError(
            "a key label must not contain control characters or unusual spaces"
        )
    return label


def check_usages(usages: Iterable[KeyUsage]) -> frozenset[KeyUsage]:
    """`usages` as a non-empty frozenset of KeyUsage, else InvalidKeyRequestError."""
    if isinstance(usages, KeyUsage):
        usages = (usages,)
    result = frozenset(usages)
    if not result:
        raise InvalidKeyRequestError("a key needs at least one usage")
    if not all(isinstance(usage, KeyUsage) for usage in result):
        raise InvalidKeyRequestError("key usages must be KeyUsage values")
    return result


def check_mechanism(
    algorithm: KeyAlgorithm, mechanism: SignatureMechanism, data: bytes
) -> None:
    """InvalidKeyRequestError unless `mechanism` can sign `data` with a key of `algorithm`."""
    if not (
        isinstance(mechanism, SignatureMechanism)
        and (mechanism.hash is None or isinstance(mechanism.hash, HashName))
        and (
            mechanism.rsa_padding is None
            or isinstance(mechanism.rsa_padding, RsaPadding)
        )
    ):
        raise InvalidKeyRequestError(
            "the mechanism must be a SignatureMechanism of HashName and RsaPadding values"
        )
    if algorithm is KeyAlgorithm.ED25519:
        if mechanism.hash is not None or mechanism.rsa_padding is not None:
            raise InvalidKeyRequestError(
                "an Ed25519 key signs with no hash and no padding"
            )
        if mechanism.prehashed:
            raise InvalidKeyRequestError(
                "an Ed25519 key cannot sign a prehashed digest"
            )
        return
    if mechanism.hash is None:
        raise InvalidKeyRequestError(
            f"a {algorithm.value} key needs a hash to sign with"
        )
    is_rsa = algorithm in (KeyAlgorithm.RSA_2048, KeyAlgorithm.RSA_3072)
    if is_rsa and mechanism.rsa_padding is None:
        raise InvalidKeyRequestError("an RSA key needs a padding (pkcs1v15 or pss)")
    if not is_rsa and mechanism.rsa_padding is not None:
        raise InvalidKeyRequestError("only RSA keys take a padding")
    if mechanism.prehashed:
        digest_size = hash_algorithm(mechanism.hash).digest_size
        if len(data) != digest_size:
            raise InvalidKeyRequestError(
                f"prehashed data must be the {digest_size}-byte {mechanism.hash.value} digest"
            )


def batch_sha256(item_digests: Sequence[bytes]) -> str:
    """Hex SHA-256 over the concatenated SHA-256 digests of a batch's items: names the
    batch in the audit log (each item's entry carries it) and in a refusal of it."""
    return hashlib.sha256(b"".join(item_digests)).hexdigest()


class FoundKey(Protocol):
    """What a backend's key lookup yields: at least the key's public description."""

    @property
    def info(self) -> KeyInfo: ...


K = TypeVar("K", bound=FoundKey)
T = TypeVar("T")


class AuditedKeyStore(abc.ABC, Generic[K]):
    """The `KeyStore` protocol on top of a backend's find/sign primitives."""

    def __init__(self, audit: AuditSink) -> None:
        self._audit = audit
        self._closed = False
        self._state_lock = threading.Lock()

    # -- what a backend provides -------------------------------------------------

    @abc.abstractmethod
    def _find_key(self, label: str) -> K | None:
        """The key named `label` as the token holds it now, or None."""

    @abc.abstractmethod
    def _sign_with_key(
        self, key: K, data: bytes, mechanism: SignatureMechanism
    ) -> bytes:
        """The raw signature (ECDSA as DER); called only after GRANTED is recorded."""

    @abc.abstractmethod
    def _sign_many_with_key(
        self, key: K, items: Sequence[bytes], mechanism: SignatureMechanism
    ) -> list[bytes]:
        """Signatures over each of `items`, in order."""

    @abc.abstractmethod
    def _list_found_keys(self) -> list[K]: ...

    @abc.abstractmethod
    def _generate_key(
        self, label: str, algorithm: KeyAlgorithm, usages: frozenset[KeyUsage]
    ) -> KeyInfo:
        """Make the key pair; the request is already checked. KeyExistsError if taken."""

    @abc.abstractmethod
    def _destroy_key(self, label: str) -> None:
        """Delete the key for good; KeyNotFoundError if there is none."""

    def generate_key(
        self, label: str, algorithm: KeyAlgorithm, usages: frozenset[KeyUsage]
    ) -> KeyInfo:
        """Make a new key pair inside the token; KeyExistsError if the label is taken."""
        self._check_open()
        label = check_label(label)
        usages = check_usages(usages)
        if not isinstance(algorithm, KeyAlgorithm):
            raise InvalidKeyRequestError("algorithm must be a KeyAlgorithm value")
        request = f"{algorithm.value} for {','.join(sorted(u.value for u in usages))}"
        return self._audited_lifecycle(
            "generate-key",
            label,
            request,
            lambda: self._generate_key(label, algorithm, usages),
            _GENERATING_FAILED,
        )

    def destroy_key(self, label: str) -> None:
        """Delete the key for good; KeyNotFoundError if there is none."""
        self._check_open()
        label = check_label(label)
        self._audited_lifecycle(
            "destroy-key",
            label,
            "",
            lambda: self._destroy_key(label),
            _DESTROYING_FAILED,
        )

    def _audited_lifecycle(
        self,
        operation: str,
        label: str,
        request: str,
        act: Callable[[], T],
        failure: str,
    ) -> T:
        """Record a key's creation or destruction before it happens (and a failure after).

        As for a signature: a failure of the backend that is not an HsmError (a full
        disk, a device error) is recorded FAILED too and raised as an HsmError, so the
        log never shows a key made or destroyed that was not.
        """
        context = current_signing_context()
        why = f"({context.operation})" if context.operation else ""
        digest = hashlib.sha256(f"{operation}\0{label}\0{request}".encode()).hexdigest()

        def event(result: AuditResult, detail: str) -> AuditEvent:
            return AuditEvent(
                actor=context.actor,
                operation=operation,
                key_label=label,
                data_sha256=digest,
                result=result,
                detail=detail,
            )

        def record_failure(reason: str) -> None:
            try:
                self._audit.record(event(AuditResult.FAILED, reason))
            except Exception:  # noqa: BLE001 - the original failure is what matters
                _log.exception(
                    "could not record a failed %s in the audit log", operation
                )

        try:
            self._audit.record(
                event(AuditResult.GRANTED, " ".join(filter(None, (request, why))))
            )
        except AuditUnavailableError:
            raise
        except Exception as exc:
            raise AuditUnavailableError(
                f"the audit log could not be written, so the {operation} was refused"
            ) from exc
        try:
            return act()
        except HsmError as exc:
            record_failure(str(exc))
            raise
        except Exception as exc:
            record_failure(failure)
            raise HsmError(failure) from exc

    @abc.abstractmethod
    def _release(self) -> None:
        """Forget the unwrapped keys and the login."""

    # -- the KeyStore protocol ---------------------------------------------------

    def key_info(self, label: str) -> KeyInfo:
        return self._require_key(label).info

    def public_key(self, label: str) -> PublicKeyTypes:
        return load_der_public_key(self.key_info(label).public_key_der)

    def list_keys(self) -> list[KeyInfo]:
        """Every key in the token, sorted by label."""
        self._check_open()
        return sorted(
            (key.info for key in self._list_found_keys()), key=lambda i: i.label
        )

    def sign(
        self, label: str, data: bytes, mechanism: SignatureMechanism, *, usage: KeyUsage
    ) -> bytes:
        """Sign `data` for `usage` after writing the audit event; ECDSA signatures DER."""
        data = _as_bytes(data)
        data_sha256 = hashlib.sha256(data).hexdigest()
        key = self._authorize(label, usage, data_sha256, mechanism, (data,))
        self._record_granted(label, usage, data_sha256, detail="")
        try:
            return self._sign_with_key(key, data, mechanism)
        except HsmError as exc:
            self._record_failure(label, usage, data_sha256, str(exc))
            raise
        except Exception as exc:
            self._record_failure(label, usage, data_sha256, _SIGNING_FAILED)
            raise HsmError(_SIGNING_FAILED) from exc

    def sign_batch(
        self,
        label: str,
        items: Sequence[bytes],
        mechanism: SignatureMechanism,
        *,
        usage: KeyUsage,
    ) -> list[bytes]:
        """Sign each item for `usage`. Every item gets its own GRANTED audit entry (its
        SHA-256; the detail names its place in the batch and the `batch_sha256`), all
        written in one append before the first signature."""
        batch = [_as_bytes(item) for item in items]
        digests = [hashlib.sha256(item).digest() for item in batch]
        batch_digest = batch_sha256(digests)
        key = self._authorize(label, usage, batch_digest, mechanism, batch)
        if not batch:
            return []
        places = [
            (digest.hex(), f"item {n} of {len(batch)} in batch {batch_digest}")
            for n, digest in enumerate(digests, start=1)
        ]
        self._write_granted(
            [
                self._event(label, usage, digest, AuditResult.GRANTED, place)
                for digest, place in places
            ]
        )
        try:
            return self._sign_many_with_key(key, batch, mechanism)
        except HsmError as exc:
            self._write_failures(self._batch_failures(label, usage, places, str(exc)))
            raise
        except Exception as exc:
            self._write_failures(
                self._batch_failures(label, usage, places, _SIGNING_FAILED)
            )
            raise HsmError(_SIGNING_FAILED) from exc

    def _batch_failures(
        self, label: str, usage: KeyUsage, places: list[tuple[str, str]], reason: str
    ) -> list[AuditEvent]:
        return [
            self._event(label, usage, digest, AuditResult.FAILED, f"{place}: {reason}")
            for digest, place in places
        ]

    def private_key(self, label: str, *, usage: KeyUsage) -> KeyHandle:
        """A cryptography private-key object bound to `usage` whose sign() calls the token."""
        key = self._authorize(label, usage, _EMPTY_SHA256, None, ())
        return make_key_handle(self, key.info, usage)

    def close(self) -> None:
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        self._release()

    def __enter__(self) -> AuditedKeyStore[K]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __reduce_ex__(self, protocol: object) -> object:
        raise TypeError(
            "a key store cannot be pickled: its keys never leave the process"
        )

    # -- the audit protocol ------------------------------------------------------

    def _require_key(self, label: str) -> K:
        self._check_open()
        key = self._find_key(check_label(label))
        if key is None:
            raise KeyNotFoundError(f"no key labelled {label!r} in the token")
        return key

    def _authorize(
        self,
        label: str,
        usage: KeyUsage,
        data_sha256: str,
        mechanism: SignatureMechanism | None,
        data: Sequence[bytes],
    ) -> K:
        """The key, if it may serve this request; otherwise the refusal is recorded and raised."""
        if not isinstance(usage, KeyUsage):
            raise InvalidKeyRequestError("usage must be a KeyUsage value")
        try:
            key = self._require_key(label)
            if usage not in key.info.usages:
                allowed = ", ".join(sorted(u.value for u in key.info.usages))
                raise UsageNotPermittedError(
                    f"key {label!r} may not be used for {usage.value} (it is for: {allowed})"
                )
            if mechanism is not None:
                for item in data:
                    check_mechanism(key.info.algorithm, mechanism, item)
        except (
            KeyNotFoundError,
            UsageNotPermittedError,
            InvalidKeyRequestError,
            TokenTamperedError,
        ) as refusal:
            self._record_refusal(str(label), usage, data_sha256, refusal)
            raise
        return key

    def _event(
        self,
        label: str,
        usage: KeyUsage,
        data_sha256: str,
        result: AuditResult,
        detail: str,
    ) -> AuditEvent:
        context = current_signing_context()
        return AuditEvent(
            actor=context.actor,
            operation=context.operation or f"sign:{usage.value}",
            key_label=label,
            data_sha256=data_sha256,
            result=result,
            detail=detail,
        )

    def _record_granted(
        self, label: str, usage: KeyUsage, data_sha256: str, detail: str
    ) -> None:
        self._write_granted(
            [self._event(label, usage, data_sha256, AuditResult.GRANTED, detail)]
        )

    def _write_granted(self, events: list[AuditEvent]) -> None:
        """Write GRANTED; any failure to write it means no signature (fail closed)."""
        try:
            self._audit.record_all(events)
        except AuditUnavailableError:
            raise
        except Exception as exc:
            raise AuditUnavailableError(
                "the audit log could not be written, so the signature was refused"
            ) from exc

    def _record_refusal(
        self, label: str, usage: KeyUsage, data_sha256: str, refusal: HsmError
    ) -> None:
        event = self._event(
            label, usage, data_sha256, AuditResult.REFUSED, str(refusal)
        )
        try:
            self._audit.record(event)
        except Exception:  # noqa: BLE001 - the refusal stands whatever the sink raised
            _log.exception(
                "could not record a refused key-store request in the audit log"
            )

    def _record_failure(
        self, label: str, usage: KeyUsage, data_sha256: str, reason: str
    ) -> None:
        self._write_failures(
            [self._event(label, usage, data_sha256, AuditResult.FAILED, reason)]
        )

    def _write_failures(self, events: list[AuditEvent]) -> None:
        """Record FAILED for signatures that broke after GRANTED was written."""
        try:
            self._audit.record_all(events)
        except Exception:  # noqa: BLE001 - the signing error is the one to raise
            _log.exception("could not record a failed signature in the audit log")

    def _check_open(self) -> None:
        if self._closed:
            raise HsmError("the key store is closed")


def _as_bytes(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError("data to sign must be bytes")
