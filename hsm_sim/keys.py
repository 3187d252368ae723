"""Key handles: cryptography private-key objects whose only power is to ask the token to sign.

They subclass cryptography's private-key interfaces, so `CertificateBuilder.sign()`, the
CRL and OCSP builders (and anything else that calls `key.sign(...)`) work with them
unchanged. Each handle is bound to one usage, chosen when it was obtained; that usage
goes with every signature it asks for. Nothing here holds or can reveal key material.
"""

from __future__ import annotations

from typing import Any, NoReturn, Protocol

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.padding import AsymmetricPadding
from cryptography.hazmat.primitives.serialization import load_der_public_key

from hsm_sim.api import (
    HashName,
    KeyAlgorithm,
    KeyInfo,
    KeyUsage,
    RsaPadding,
    SignatureMechanism,
)
from hsm_sim.errors import (
    KeyNotExportableError,
    UnsupportedAlgorithmError,
    UsageNotPermittedError,
)

__all__ = [
    "EcKeyHandle",
    "Ed25519KeyHandle",
    "KeyHandle",
    "RsaKeyHandle",
    "make_key_handle",
    "mechanism_for_hash",
]

_HASH_NAMES = {
    "sha256": HashName.SHA256,
    "sha384": HashName.SHA384,
    "sha512": HashName.SHA512,
}


class _Signer(Protocol):
    def sign(
        self, label: str, data: bytes, mechanism: SignatureMechanism, *, usage: KeyUsage
    ) -> bytes: ...


def mechanism_for_hash(
    algorithm: hashes.HashAlgorithm | utils.Prehashed,
    rsa_padding: RsaPadding | None = None,
) -> SignatureMechanism:
    """The mechanism for cryptography's hash (or `Prehashed`) argument."""
    prehashed = isinstance(algorithm, utils.Prehashed)
    hash_algorithm = algorithm._algorithm if prehashed else algorithm
    if not isinstance(hash_algorithm, hashes.HashAlgorithm):
        raise TypeError("expected a cryptography hash algorithm")
    name = _HASH_NAMES.get(hash_algorithm.name)
    if name is None:
        raise UnsupportedAlgorithmError(
            f"the key store does not sign with {hash_algorithm.name}; use SHA-256, -384 or -512"
        )
    return SignatureMechanism(hash=name, rsa_padding=rsa_padding, prehashed=prehashed)


class _HandleMixin:
    """What every handle shares: identity, delegation of sign(), and refusals."""

    _store: _Signer
    _info: KeyInfo
    _usage: KeyUsage

    def _bind(self, store: _Signer, info: KeyInfo, usage: KeyUsage) -> None:
        self._store = store
        self._info = info
        self._usage = usage
        self._public_key = load_der_public_key(info.public_key_der)

    @property
    def label(self) -> str:
        return self._info.label

    @property
    def usage(self) -> KeyUsage:
        return self._usage

    @property
    def algorithm(self) -> KeyAlgorithm:
        return self._info.algorithm

    def _sign_in_token(self, data: bytes, mechanism: SignatureMechanism) -> bytes:
        return self._store.sign(self._info.label, data, mechanism, usage=self._usage)

    def _refuse_export(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise KeyNotExportableError(
            f"key {self._info.label!r} lives in the key store and cannot be exported"
        )

    def _refuse_other_use(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise UsageNotPermittedError(f"key {self._info.label!r} can only sign")

    # A handle holds no key material and never changes, so a copy can be itself (as
    # cryptography's own key objects do); pickling would try to ship the key store.
    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return self

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        self._refuse_export()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} label={self._info.label!r} "
            f"algorithm={self._info.algorithm.value} usage={self._usage.value}>"
        )


class EcKeyHandle(_HandleMixin, ec.EllipticCurvePrivateKey):
    """An ECDSA key (P-256, P-384) in the token."""

    def __init__(self, store: _Signer, info: KeyInfo, usage: KeyUsage) -> None:
        self._bind(store, info, usage)

    def sign(
        self,
        data: utils.Buffer,
        signature_algorithm: ec.EllipticCurveSignatureAlgorithm,
    ) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise UnsupportedAlgorithmError(
                "an EC key in the key store signs only with ECDSA"
            )
        if signature_algorithm.deterministic_signing:
            raise UnsupportedAlgorithmError(
                "the key store does not make deterministic ECDSA signatures"
            )
        return self._sign_in_token(
            bytes(data), mechanism_for_hash(signature_algorithm.algorithm)
        )

    def public_key(self) -> ec.EllipticCurvePublicKey:
        assert isinstance(self._public_key, ec.EllipticCurvePublicKey)
        return self._public_key

    @property
    def curve(self) -> ec.EllipticCurve:
        return self.public_key().curve

    @property
    def key_size(self) -> int:
        return self.public_key().key_size

    exchange = _HandleMixin._refuse_other_use
    private_numbers = _HandleMixin._refuse_export
    private_bytes = _HandleMixin._refuse_export


class RsaKeyHandle(_HandleMixin, rsa.RSAPrivateKey):
    """An RSA key (2048, 3072) in the token; PKCS#1 v1.5, or PSS salted with the digest length."""

    def __init__(self, store: _Signer, info: KeyInfo, usage: KeyUsage) -> None:
        self._bind(store, info, usage)

    def sign(
        self,
        data: utils.Buffer,
        padding: AsymmetricPadding,
        algorithm: hashes.HashAlgorithm | utils.Prehashed,
    ) -> bytes:
        mechanism = mechanism_for_hash(algorithm, _rsa_padding(padding, algorithm))
        return self._sign_in_token(bytes(data), mechanism)

    def public_key(self) -> rsa.RSAPublicKey:
        assert isinstance(self._public_key, rsa.RSAPublicKey)
        return self._public_key

    @property
    def key_size(self) -> int:
        return self.public_key().key_size

    decrypt = _HandleMixin._refuse_other_use
    private_numbers = _HandleMixin._refuse_export
    private_bytes = _HandleMixin._refuse_export


class Ed25519KeyHandle(_HandleMixin, ed25519.Ed25519PrivateKey):
    """An Ed25519 key in the token."""

    def __init__(self, store: _Signer, info: KeyInfo, usage: KeyUsage) -> None:
        self._bind(store, info, usage)

    def sign(self, data: utils.Buffer) -> bytes:
        return self._sign_in_token(bytes(data), SignatureMechanism(hash=None))

    def public_key(self) -> ed25519.Ed25519PublicKey:
        assert isinstance(self._public_key, ed25519.Ed25519PublicKey)
        return self._public_key

    private_bytes = _HandleMixin._refuse_export
    private_bytes_raw = _HandleMixin._refuse_export


KeyHandle = EcKeyHandle | RsaKeyHandle | Ed25519KeyHandle

_HANDLE_TYPES: dict[
    KeyAlgorithm, type[EcKeyHandle | RsaKeyHandle | Ed25519KeyHandle]
] = {
    KeyAlgorithm.EC_P256: EcKeyHandle,
    KeyAlgorithm.EC_P384: EcKeyHandle,
    KeyAlgorithm.ED25519: Ed25519KeyHandle,
    KeyAlgorithm.RSA_2048: RsaKeyHandle,
    KeyAlgorithm.RSA_3072: RsaKeyHandle,
}


def make_key_handle(store: _Signer, info: KeyInfo, usage: KeyUsage) -> KeyHandle:
    """The handle class that fits `info.algorithm`, bound to `usage`."""
    return _HANDLE_TYPES[info.algorithm](store, info, usage)


def _rsa_padding(
    rsa_padding: AsymmetricPadding, algorithm: hashes.HashAlgorithm | utils.Prehashed
) -> RsaPadding:
    if isinstance(rsa_padding, padding.PKCS1v15):
        return RsaPadding.PKCS1V15
    if not isinstance(rsa_padding, padding.PSS):
        raise UnsupportedAlgorithmError(
            "an RSA key in the key store signs with PKCS#1 v1.5 or PSS"
        )
    # cryptography offers no public accessors for the PSS parameters.
    salt_length = rsa_padding._salt_length
    mgf = rsa_padding._mgf
    hash_algorithm = (
        algorithm._algorithm if isinstance(algorithm, utils.Prehashed) else algorithm
    )
    digest_size = hash_algorithm.digest_size
    if not (salt_length is padding.PSS.DIGEST_LENGTH or salt_length == digest_size):
        raise UnsupportedAlgorithmError(
            "the key store signs PSS only with a salt as long as the digest (PSS.DIGEST_LENGTH)"
        )
    mgf_hash = mgf._algorithm if isinstance(mgf, padding.MGF1) else None
    if mgf_hash is None or mgf_hash.name != hash_algorithm.name:
        raise UnsupportedAlgorithmError(
            "the key store signs PSS only with MGF1 over the signing hash"
        )
    return RsaPadding.PSS
