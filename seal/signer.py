"""pyHanko's `Signer` backed by a key in the key store, carrying the seal data.

The private key stays in hsm_sim: `async_sign_raw` hands the signed attributes to the
key handle's `sign()`, and the key store writes the audit entry before it signs. The
entry's operation names the document digest the signature commits to, so the audit
log says which PDF bytes each seal was put on.

The GB/T 38540 seal data (SESeal DER) travels as a signed CMS attribute
(`SEAL_DATA_ATTRIBUTE_OID`, value an OCTET STRING), so a verifier sees which official
seal was used, under the signature that used it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.sign.attributes import (
    CMSAttributeProvider,
    SignedAttributeProviderSpec,
    SigningCertificateV2Provider,
)
from pyhanko.sign.general import as_signing_certificate_v2
from pyhanko.sign.signers.pdf_cms import Signer, select_suitable_signing_md
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pyhanko_certvalidator.util import get_pyca_cryptography_hash

from hsm_sim.api import signing_context
from hsm_sim.keys import EcKeyHandle, Ed25519KeyHandle, KeyHandle, RsaKeyHandle
from pki.oids import ProjectOID

__all__ = ["SEAL_DATA_ATTRIBUTE_OID", "HsmSigner", "to_asn1_certificate"]

SEAL_DATA_ATTRIBUTE_OID = ProjectOID.SEAL_DATA_ATTRIBUTE.dotted_string
STAMP_OPERATION = "stamp"


def to_asn1_certificate(certificate: x509.Certificate) -> asn1_x509.Certificate:
    """The same certificate as asn1crypto (pyHanko's type)."""
    return asn1_x509.Certificate.load(certificate.public_bytes(Encoding.DER))


class _FixedValueProvider(CMSAttributeProvider):
    """An attribute whose value is the same in every signature, encoded once."""

    def __init__(self, attribute_type: str, value: core.Asn1Value) -> None:
        self.attribute_type = attribute_type
        self._value = value

    async def build_attr_value(self, dry_run: bool = False) -> core.Asn1Value:
        return self._value


class _SealSignedAttributes(SignedAttributeProviderSpec):
    """pyHanko's signed attributes for the signature, plus the seal data.

    The signing-certificate-v2 value never changes for a signer, so it is encoded once:
    asn1crypto re-encodes a freshly built one piece by piece, about a quarter of the
    CMS work of every signature.
    """

    def __init__(
        self,
        inner: SignedAttributeProviderSpec,
        signing_certificate: CMSAttributeProvider,
        seal_data: CMSAttributeProvider | None,
    ) -> None:
        self._inner = inner
        self._signing_certificate = signing_certificate
        self._seal_data = seal_data

    def signed_attr_providers(
        self, data_digest: bytes, digest_algorithm: str
    ) -> Iterable[CMSAttributeProvider]:
        for provider in self._inner.signed_attr_providers(
            data_digest=data_digest, digest_algorithm=digest_algorithm
        ):
            if isinstance(provider, SigningCertificateV2Provider):
                yield self._signing_certificate
            else:
                yield provider
        if self._seal_data is not None:
            yield self._seal_data


class HsmSigner(Signer):
    """Signs CMS signed attributes with a key-store key bound to the seal usage.

    `certificate` is the seal certificate; `chain` its issuers up to the root. RSA keys
    sign PKCS#1 v1.5 unless `rsa_pss` (then PSS with a digest-length salt, the only
    PSS the key store makes). The digest follows the key: SHA-256 for P-256 and
    RSA-2048, SHA-384 for P-384 and RSA-3072, SHA-512 for Ed25519.
    """

    def __init__(
        self,
        *,
        key: KeyHandle,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
        seal_data: bytes | None = None,
        rsa_pss: bool = False,
    ) -> None:
        if not isinstance(key, (EcKeyHandle, RsaKeyHandle, Ed25519KeyHandle)):
            raise TypeError("key must be a key-store handle (hsm_sim.keys)")
        if key.public_key() != certificate.public_key():
            raise ValueError("the key does not belong to the seal certificate")
        signing_cert = to_asn1_certificate(certificate)
        self.digest_algorithm = select_suitable_signing_md(signing_cert.public_key)
        super().__init__(
            signing_cert=signing_cert,
            cert_registry=SimpleCertificateStore.from_certs(
                [signing_cert, *(to_asn1_certificate(c) for c in chain)]
            ),
            signature_mechanism=_mechanism(key, self.digest_algorithm, rsa_pss),
            prefer_pss=rsa_pss,
        )
        self._key = key
        self._signing_certificate = _FixedValueProvider(
            "signing_certificate_v2",
            tsp.SigningCertificateV2.load(
                as_signing_certificate_v2(signing_cert).dump()
            ),
        )
        self._seal_data = (
            _FixedValueProvider(SEAL_DATA_ATTRIBUTE_OID, core.OctetString(seal_data))
            if seal_data is not None
            else None
        )

    @property
    def key_label(self) -> str:
        return self._key.label

    def _signed_attr_provider_spec(
        self, *args, **kwargs
    ) -> SignedAttributeProviderSpec:
        return _SealSignedAttributes(
            super()._signed_attr_provider_spec(*args, **kwargs),
            self._signing_certificate,
            self._seal_data,
        )

    async def async_sign_raw(
        self, data: bytes, digest_algorithm: str, dry_run: bool = False
    ) -> bytes:
        if dry_run:
            return _placeholder_signature(self._key)
        operation = f"{STAMP_OPERATION} pdf-{digest_algorithm}:{_document_digest(data)}"
        with signing_context(operation=operation):
            return self._sign(data, digest_algorithm)

    def _sign(self, data: bytes, digest_algorithm: str) -> bytes:
        key = self._key
        if isinstance(key, Ed25519KeyHandle):
            return key.sign(data)
        hash_algorithm = get_pyca_cryptography_hash(digest_algorithm)
        if isinstance(key, EcKeyHandle):
            return key.sign(data, ec.ECDSA(hash_algorithm))
        mechanism = self.signature_mechanism
        assert mechanism is not None
        if mechanism.signature_algo == "rsassa_pss":
            pss = padding.PSS(
                mgf=padding.MGF1(hash_algorithm), salt_length=padding.PSS.DIGEST_LENGTH
            )
            return key.sign(data, pss, hash_algorithm)
        return key.sign(data, padding.PKCS1v15(), hash_algorithm)


def _mechanism(
    key: KeyHandle, digest_algorithm: str, rsa_pss: bool
) -> algos.SignedDigestAlgorithm:
    if isinstance(key, Ed25519KeyHandle):
        return algos.SignedDigestAlgorithm({"algorithm": "ed25519"})
    if isinstance(key, EcKeyHandle):
        return algos.SignedDigestAlgorithm({"algorithm": f"{digest_algorithm}_ecdsa"})
    if not rsa_pss:
        return algos.SignedDigestAlgorithm({"algorithm": f"{digest_algorithm}_rsa"})
    digest = algos.DigestAlgorithm({"algorithm": digest_algorithm})
    return algos.SignedDigestAlgorithm(
        {
            "algorithm": "rsassa_pss",
            "parameters": algos.RSASSAPSSParams(
                {
                    "hash_algorithm": digest,
                    "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": digest},
                    "salt_length": get_pyca_cryptography_hash(
                        digest_algorithm
                    ).digest_size,
                }
            ),
        }
    )


def _placeholder_signature(key: KeyHandle) -> bytes:
    """A signature-sized filler for pyHanko's size estimate; nothing is signed."""
    if isinstance(key, Ed25519KeyHandle):
        return bytes(64)
    public_key = key.public_key()
    size = (public_key.key_size + 7) // 8
    if isinstance(public_key, rsa.RSAPublicKey):
        return bytes(size)
    largest = (1 << (8 * size)) - 1
    return encode_dss_signature(largest, largest)


def _document_digest(signed_attributes: bytes) -> str:
    """The messageDigest the signed attributes commit to, in hex ('?' if absent)."""
    for attribute in cms.CMSAttributes.load(signed_attributes):
        if attribute["type"].native == "message_digest":
            return attribute["values"][0].native.hex()
    return "?"
