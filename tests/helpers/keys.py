"""A stand-in for an HSM key handle: a key object that can only sign."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec


def sign_only_key(inner: ec.EllipticCurvePrivateKey) -> ec.EllipticCurvePrivateKey:
    """An EC key whose every method but sign() and public_key() fails the test."""

    class SignOnlyKey(ec.EllipticCurvePrivateKey):
        curve = inner.curve
        key_size = inner.key_size

        def sign(
            self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm
        ) -> bytes:
            return inner.sign(data, signature_algorithm)

        def public_key(self) -> ec.EllipticCurvePublicKey:
            return inner.public_key()

        def exchange(self, *args: object) -> bytes:
            raise AssertionError("exchange() called")

        def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
            raise AssertionError("private_numbers() called")

        def private_bytes(self, *args: object) -> bytes:
            raise AssertionError("private_bytes() called")

        def __copy__(self) -> SignOnlyKey:
            return self

        def __deepcopy__(self, memo: object) -> SignOnlyKey:
            return self

    return SignOnlyKey()
