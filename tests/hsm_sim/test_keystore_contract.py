"""The KeyStore contract, run against both backends: the software HSM and SoftHSMv2."""

from __future__ import annotations

import concurrent.futures
import copy
import datetime as dt
import hashlib
import pickle

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from hsm_sim.api import (
    AuditEvent,
    AuditResult,
    HashName,
    KeyAlgorithm,
    KeyStore,
    KeyUsage,
    RsaPadding,
    SignatureMechanism,
    signing_context,
)
from hsm_sim.errors import (
    AuditUnavailableError,
    HsmError,
    InvalidKeyRequestError,
    KeyExistsError,
    KeyNotExportableError,
    KeyNotFoundError,
    PinIncorrectError,
    PinMissingError,
    UnsupportedAlgorithmError,
    UsageNotPermittedError,
)
from hsm_sim.keys import EcKeyHandle, Ed25519KeyHandle, RsaKeyHandle
from hsm_sim.spec import open_keystore

SHA256 = SignatureMechanism(hash=HashName.SHA256)
HASHES = {"sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512}
MECHANISMS = {
    KeyAlgorithm.EC_P256: [
        SHA256,
        SignatureMechanism(hash=HashName.SHA384),
        SignatureMechanism(hash=HashName.SHA256, prehashed=True),
    ],
    KeyAlgorithm.EC_P384: [
        SignatureMechanism(hash=HashName.SHA384),
        SignatureMechanism(hash=HashName.SHA512, prehashed=True),
    ],
    KeyAlgorithm.ED25519: [SignatureMechanism(hash=None)],
    KeyAlgorithm.RSA_2048: [
        SignatureMechanism(hash=HashName.SHA256, rsa_padding=RsaPadding.PKCS1V15),
        SignatureMechanism(hash=HashName.SHA256, rsa_padding=RsaPadding.PSS),
        SignatureMechanism(
            hash=HashName.SHA384, rsa_padding=RsaPadding.PKCS1V15, prehashed=True
        ),
        SignatureMechanism(
            hash=HashName.SHA512, rsa_padding=RsaPadding.PSS, prehashed=True
        ),
    ],
    KeyAlgorithm.RSA_3072: [
        SignatureMechanism(hash=HashName.SHA384, rsa_padding=RsaPadding.PSS),
    ],
}
CERT_USAGES = frozenset({KeyUsage.CERT_SIGN, KeyUsage.CRL_SIGN, KeyUsage.OCSP_SIGN})
# Every key a test makes is audited first: the entry it writes.
GENERATED = ("generate-key", AuditResult.GRANTED)


def audit_trail(sink) -> list[tuple[str, AuditResult]]:
    """(operation, result) of every event the store wrote, oldest first."""
    return [(event.operation, event.result) for event in sink.events]


def lifecycle_sha256(operation: str, label: str, request: str) -> str:
    """The data_sha256 of a generate-key or destroy-key entry."""
    return hashlib.sha256(f"{operation}\0{label}\0{request}".encode()).hexdigest()


def payload_for(mechanism: SignatureMechanism, message: bytes) -> bytes:
    """What to hand to sign(): the message, or its digest for a prehashed mechanism."""
    if mechanism.prehashed:
        assert mechanism.hash is not None
        return hashlib.new(mechanism.hash.value, message).digest()
    return message


def verify(
    public_key: object, signature: bytes, message: bytes, mechanism: SignatureMechanism
) -> None:
    """Verify with cryptography alone; InvalidSignature if it does not check out."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        public_key.verify(signature, message)
        return
    assert mechanism.hash is not None
    hash_algorithm = HASHES[mechanism.hash.value]()
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        public_key.verify(signature, message, ec.ECDSA(hash_algorithm))
        return
    assert isinstance(public_key, rsa.RSAPublicKey)
    rsa_padding: padding.AsymmetricPadding = (
        padding.PKCS1v15()
        if mechanism.rsa_padding is RsaPadding.PKCS1V15
        else padding.PSS(padding.MGF1(hash_algorithm), hash_algorithm.digest_size)
    )
    public_key.verify(signature, message, rsa_padding, hash_algorithm)


# -- keys: generate, inspect, list, destroy -------------------------------------------


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm), ids=lambda a: a.value)
def test_each_algorithm_signs_verifiably_with_its_public_key(store, algorithm):
    info = store.generate_key("key-1", algorithm, frozenset({KeyUsage.SEAL}))

    assert isinstance(store, KeyStore)
    assert (info.label, info.algorithm, info.usages) == (
        "key-1",
        algorithm,
        {KeyUsage.SEAL},
    )
    assert info.created_at.tzinfo is not None
    public_key = store.public_key("key-1")
    assert (
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == info.public_key_der
    )
    assert store.key_info("key-1") == info
    message = f"document for {algorithm.value}".encode()
    for mechanism in MECHANISMS[algorithm]:
        signature = store.sign(
            "key-1", payload_for(mechanism, message), mechanism, usage=KeyUsage.SEAL
        )
        verify(public_key, signature, message, mechanism)
        with pytest.raises(InvalidSignature):
            verify(public_key, signature, message + b".", mechanism)


def test_key_sizes_and_curves_are_the_ones_asked_for(store):
    sizes = {
        KeyAlgorithm.EC_P256: ("secp256r1", 256),
        KeyAlgorithm.EC_P384: ("secp384r1", 384),
        KeyAlgorithm.RSA_2048: (None, 2048),
    }
    for algorithm, (curve, bits) in sizes.items():
        store.generate_key(algorithm.value, algorithm, frozenset({KeyUsage.TOKEN}))
        handle = store.private_key(algorithm.value, usage=KeyUsage.TOKEN)
        assert handle.key_size == bits
        assert handle.public_key().key_size == bits
        if curve is not None:
            assert handle.curve.name == curve


def test_list_keys_returns_every_key_sorted_by_label(store):
    assert store.list_keys() == []
    store.generate_key("b-seal", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
    store.generate_key("a-root", KeyAlgorithm.EC_P384, CERT_USAGES)
    store.generate_key("c-token", KeyAlgorithm.ED25519, frozenset({KeyUsage.TOKEN}))

    listed = store.list_keys()

    assert [info.label for info in listed] == ["a-root", "b-seal", "c-token"]
    assert listed[0].usages == CERT_USAGES
    assert listed[2].algorithm is KeyAlgorithm.ED25519


def test_destroyed_key_is_gone_for_every_operation(store, audit_sink):
    store.generate_key("doomed", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
    store.generate_key("kept", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))

    store.destroy_key("doomed")

    assert [info.label for info in store.list_keys()] == ["kept"]
    with pytest.raises(KeyNotFoundError):
        store.public_key("doomed")
    with pytest.raises(KeyNotFoundError):
        store.sign("doomed", b"x", SHA256, usage=KeyUsage.SEAL)
    with pytest.raises(KeyNotFoundError):
        store.destroy_key("doomed")
    assert [(e.operation, e.key_label, e.result) for e in audit_sink.events] == [
        ("generate-key", "doomed", AuditResult.GRANTED),
        ("generate-key", "kept", AuditResult.GRANTED),
        ("destroy-key", "doomed", AuditResult.GRANTED),
        ("sign:seal", "doomed", AuditResult.REFUSED),
        ("destroy-key", "doomed", AuditResult.GRANTED),
        ("destroy-key", "doomed", AuditResult.FAILED),
    ]


def test_destroyed_label_can_be_used_for_a_new_key(store):
    first = store.generate_key(
        "reused", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL})
    )
    store.destroy_key("reused")
    second = store.generate_key(
        "reused", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL})
    )

    assert second.public_key_der != first.public_key_der
    signature = store.sign("reused", b"x", SHA256, usage=KeyUsage.SEAL)
    verify(store.public_key("reused"), signature, b"x", SHA256)


def test_duplicate_label_is_refused_and_the_first_key_kept(store):
    first = store.generate_key("dup", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))

    with pytest.raises(KeyExistsError):
        store.generate_key("dup", KeyAlgorithm.ED25519, frozenset({KeyUsage.CERT_SIGN}))

    assert store.key_info("dup") == first
    assert len(store.list_keys()) == 1


def test_unknown_label_is_not_found_and_a_signing_attempt_is_audited(store, audit_sink):
    for lookup in (store.key_info, store.public_key):
        with pytest.raises(KeyNotFoundError):
            lookup("missing")
    with pytest.raises(KeyNotFoundError):
        store.private_key("missing", usage=KeyUsage.SEAL)
    with pytest.raises(KeyNotFoundError):
        store.sign("missing", b"data", SHA256, usage=KeyUsage.SEAL)

    signing = audit_sink.events[-1]
    assert signing.result is AuditResult.REFUSED
    assert signing.key_label == "missing"
    assert signing.data_sha256 == hashlib.sha256(b"data").hexdigest()


@pytest.mark.parametrize(
    "label", ["", " padded", "tab\there", "x" * 129, "new\nline"], ids=repr
)
def test_malformed_labels_are_refused(store, audit_sink, label):
    with pytest.raises(InvalidKeyRequestError):
        store.generate_key(label, KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
    with pytest.raises(InvalidKeyRequestError):
        store.destroy_key(label)

    # Refused before anything was attempted: nothing to audit.
    assert audit_sink.events == []


def test_a_key_needs_a_usage(store, audit_sink):
    with pytest.raises(InvalidKeyRequestError):
        store.generate_key("no-usage", KeyAlgorithm.EC_P256, frozenset())
    with pytest.raises(InvalidKeyRequestError):
        store.generate_key("no-algorithm", "ec-p256", frozenset({KeyUsage.SEAL}))

    assert audit_sink.events == []
    assert store.list_keys() == []


def test_any_printable_label_works(store):
    label = "市场监督管理局 公章/2025: #1"
    store.generate_key(label, KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))

    assert [info.label for info in store.list_keys()] == [label]
    verify(
        store.public_key(label),
        store.sign(label, b"m", SHA256, usage=KeyUsage.SEAL),
        b"m",
        SHA256,
    )


def test_keys_survive_closing_and_reopening_the_token(token, store, audit_sink):
    made = store.generate_key(
        "lasting", KeyAlgorithm.EC_P384, frozenset({KeyUsage.TSA, KeyUsage.AUDIT})
    )
    store.close()

    reopened = token.open(audit_sink)
    try:
        assert reopened.list_keys() == [made]
        mechanism = SignatureMechanism(hash=HashName.SHA384)
        signature = reopened.sign("lasting", b"later", mechanism, usage=KeyUsage.AUDIT)
        verify(
            serialization.load_der_public_key(made.public_key_der),
            signature,
            b"later",
            mechanism,
        )
    finally:
        reopened.close()


def test_a_closed_store_refuses_everything(store):
    store.generate_key("k", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
    store.close()

    with pytest.raises(HsmError, match="closed"):
        store.sign("k", b"x", SHA256, usage=KeyUsage.SEAL)
    with pytest.raises(HsmError, match="closed"):
        store.list_keys()
    store.close()  # closing twice is harmless


def test_the_store_itself_cannot_be_pickled(store):
    with pytest.raises(TypeError):
        pickle.dumps(store)


# -- making and destroying keys: audited before they happen -------------------------


def test_making_a_key_is_audited_granted_before_the_key_exists(
    store, audit_sink, monkeypatch
):
    real_generate = store._generate_key
    seen_while_making = []

    def generate_after_checking_the_log(*args):
        seen_while_making.append((list(audit_sink.events), store.list_keys()))
        return real_generate(*args)

    monkeypatch.setattr(store, "_generate_key", generate_after_checking_the_log)
    with signing_context(actor="registrar:li", operation="make-seal:350100000001"):
        store.generate_key("seal-1", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
    store.generate_key("issuer", KeyAlgorithm.EC_P384, CERT_USAGES)

    (logged, keys_then), _ = seen_while_making
    assert keys_then == []
    assert logged == audit_sink.events[:1]
    made_seal, made_issuer = audit_sink.events
    assert made_seal == AuditEvent(
        actor="registrar:li",
        operation="generate-key",
        key_label="seal-1",
        data_sha256=lifecycle_sha256("generate-key", "seal-1", "ec-p256 for seal"),
        result=AuditResult.GRANTED,
        detail="ec-p256 for seal (make-seal:350100000001)",
    )
    assert (made_issuer.actor, made_issuer.detail) == (
        "system",
        "ec-p384 for cert-sign,crl-sign,ocsp-sign",
    )
    assert [info.label for info in store.list_keys()] == ["issuer", "seal-1"]


@pytest.mark.parametrize(
    "failure",
    [OSError("disk full"), AuditUnavailableError("audit database is read-only")],
    ids=["sink-broken", "sink-unavailable"],
)
def test_no_key_is_made_when_the_audit_log_cannot_be_written(
    store, audit_sink, monkeypatch, failure
):
    attempts = []
    monkeypatch.setattr(store, "_generate_key", lambda *args: attempts.append(args))
    audit_sink.fail_with = failure

    with pytest.raises(AuditUnavailableError) as refused:
        store.generate_key("seal-1", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))

    assert attempts == []
    assert store.list_keys() == []
    assert audit_sink.events == []
    if isinstance(failure, OSError):
        assert str(refused.value) == (
            "the audit log could not be written, so the generate-key was refused"
        )
        assert refused.value.__cause__ is failure
    else:
        assert refused.value is failure


def test_a_taken_label_is_audited_granted_then_failed(store, audit_sink):
    first = store.generate_key("dup", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))

    with pytest.raises(KeyExistsError) as refused:
        store.generate_key("dup", KeyAlgorithm.ED25519, frozenset({KeyUsage.TOKEN}))

    assert store.list_keys() == [first]
    _, attempt, failure = audit_sink.events
    assert (attempt.operation, attempt.result, attempt.detail) == (
        "generate-key",
        AuditResult.GRANTED,
        "ed25519 for token",
    )
    assert (failure.operation, failure.key_label, failure.result) == (
        "generate-key",
        "dup",
        AuditResult.FAILED,
    )
    assert failure.detail == str(refused.value) == "a key labelled 'dup' already exists"
    assert failure.data_sha256 == attempt.data_sha256


def test_destroying_a_key_is_audited_granted_before_the_key_is_gone(
    store, audit_sink, monkeypatch
):
    made = store.generate_key(
        "doomed", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL})
    )
    real_destroy = store._destroy_key
    seen_while_destroying = []

    def destroy_after_checking_the_log(label):
        seen_while_destroying.append((list(audit_sink.events), store.key_info(label)))
        real_destroy(label)

    monkeypatch.setattr(store, "_destroy_key", destroy_after_checking_the_log)
    with signing_context(actor="operator:wang", operation="revoke-seal:350100000001"):
        store.destroy_key("doomed")

    ((logged, info_then),) = seen_while_destroying
    assert info_then == made
    assert logged == audit_sink.events
    _, destroyed = audit_sink.events
    assert destroyed == AuditEvent(
        actor="operator:wang",
        operation="destroy-key",
        key_label="doomed",
        data_sha256=lifecycle_sha256("destroy-key", "doomed", ""),
        result=AuditResult.GRANTED,
        detail="(revoke-seal:350100000001)",
    )
    assert store.list_keys() == []


def test_a_key_stays_when_its_destruction_cannot_be_audited(store, audit_sink):
    store.generate_key("kept", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
    audit_sink.fail_with = OSError("disk full")

    with pytest.raises(AuditUnavailableError, match="the destroy-key was refused"):
        store.destroy_key("kept")

    audit_sink.fail_with = None
    assert [info.label for info in store.list_keys()] == ["kept"]
    signature = store.sign("kept", b"still here", SHA256, usage=KeyUsage.SEAL)
    verify(store.public_key("kept"), signature, b"still here", SHA256)
    assert audit_trail(audit_sink) == [GENERATED, ("sign:seal", AuditResult.GRANTED)]


def test_destroying_an_unknown_label_is_audited_failed(store, audit_sink):
    with pytest.raises(KeyNotFoundError) as refused:
        store.destroy_key("never-made")

    attempt, failure = audit_sink.events
    assert (attempt.operation, attempt.key_label, attempt.result) == (
        "destroy-key",
        "never-made",
        AuditResult.GRANTED,
    )
    assert (failure.operation, failure.key_label, failure.result) == (
        "destroy-key",
        "never-made",
        AuditResult.FAILED,
    )
    assert failure.detail == str(refused.value)
    assert "never-made" in failure.detail


@pytest.mark.parametrize("operation", ["generate-key", "destroy-key"])
def test_a_token_failing_to_make_or_destroy_a_key_is_audited_failed(
    store, audit_sink, monkeypatch, operation
):
    store.generate_key("k", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
    keys_before = store.list_keys()

    def broken_token(*args):
        raise RuntimeError("device error 0x31")

    if operation == "generate-key":
        monkeypatch.setattr(store, "_generate_key", broken_token)
        with pytest.raises(HsmError) as raised:
            store.generate_key("k2", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
    else:
        monkeypatch.setattr(store, "_destroy_key", broken_token)
        with pytest.raises(HsmError) as raised:
            store.destroy_key("k")

    assert "0x31" not in str(raised.value)
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert store.list_keys() == keys_before
    assert audit_trail(audit_sink) == [
        GENERATED,
        (operation, AuditResult.GRANTED),
        (operation, AuditResult.FAILED),
    ]
    assert audit_sink.events[-1].detail == str(raised.value)


# -- usages and the audit log ------------------------------------------------------


def test_a_key_refuses_a_usage_it_was_not_made_for_and_the_refusal_is_audited(
    store, audit_sink
):
    store.generate_key("seal-key", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))

    with signing_context(actor="clerk-7"), pytest.raises(UsageNotPermittedError):
        store.sign("seal-key", b"tbs certificate", SHA256, usage=KeyUsage.CERT_SIGN)

    made, event = audit_sink.events
    assert (made.operation, made.key_label) == ("generate-key", "seal-key")
    assert event.result is AuditResult.REFUSED
    assert (event.actor, event.operation, event.key_label) == (
        "clerk-7",
        "sign:cert-sign",
        "seal-key",
    )
    assert event.data_sha256 == hashlib.sha256(b"tbs certificate").hexdigest()


def test_a_handle_for_a_missing_usage_is_refused_at_once(store, audit_sink):
    store.generate_key("seal-key", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))

    with pytest.raises(UsageNotPermittedError):
        store.private_key("seal-key", usage=KeyUsage.CRL_SIGN)

    assert audit_trail(audit_sink) == [
        GENERATED,
        ("sign:crl-sign", AuditResult.REFUSED),
    ]


def test_every_signature_is_audited_granted_before_it_is_made(
    store, audit_sink, monkeypatch
):
    store.generate_key("k", KeyAlgorithm.EC_P256, frozenset({KeyUsage.OCSP_SIGN}))
    real_sign = store._sign_with_key
    granted_before_signing = []

    def sign_after_checking_the_log(key, data, mechanism):
        granted_before_signing.append(
            [(e.result, e.data_sha256) for e in audit_sink.events]
            == [
                (
                    AuditResult.GRANTED,
                    lifecycle_sha256("generate-key", "k", "ec-p256 for ocsp-sign"),
                ),
                (AuditResult.GRANTED, hashlib.sha256(data).hexdigest()),
            ]
        )
        return real_sign(key, data, mechanism)

    monkeypatch.setattr(store, "_sign_with_key", sign_after_checking_the_log)
    with signing_context(actor="ocsp-responder", operation="ocsp:refresh"):
        store.sign("k", b"response", SHA256, usage=KeyUsage.OCSP_SIGN)

    assert granted_before_signing == [True]
    _, event = audit_sink.events
    assert (event.actor, event.operation, event.key_label, event.detail) == (
        "ocsp-responder",
        "ocsp:refresh",
        "k",
        "",
    )


def test_no_signature_comes_out_when_the_audit_log_cannot_be_written(
    store, audit_sink, monkeypatch
):
    store.generate_key("k", KeyAlgorithm.EC_P256, frozenset({KeyUsage.CERT_SIGN}))
    handle = store.private_key("k", usage=KeyUsage.CERT_SIGN)
    signatures_made = []
    real_sign = store._sign_with_key
    monkeypatch.setattr(
        store,
        "_sign_with_key",
        lambda *args: signatures_made.append(args) or real_sign(*args),
    )
    audit_sink.fail_with = OSError("disk full")

    with pytest.raises(AuditUnavailableError):
        store.sign("k", b"data", SHA256, usage=KeyUsage.CERT_SIGN)
    with pytest.raises(AuditUnavailableError):
        self_signed_builder(handle).sign(handle, hashes.SHA256())

    assert signatures_made == []


def test_a_sink_reporting_unavailable_is_passed_through(store, audit_sink):
    store.generate_key("k", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
    audit_sink.fail_with = AuditUnavailableError("audit database is read-only")

    with pytest.raises(AuditUnavailableError, match="read-only"):
        store.sign("k", b"data", SHA256, usage=KeyUsage.SEAL)


def test_a_signature_that_fails_after_granted_is_audited_failed(
    store, audit_sink, monkeypatch
):
    store.generate_key("k", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))

    def broken_token(*args):
        raise RuntimeError("device error 0x30")

    monkeypatch.setattr(store, "_sign_with_key", broken_token)

    with pytest.raises(HsmError) as raised:
        store.sign("k", b"data", SHA256, usage=KeyUsage.SEAL)

    assert "0x30" not in str(raised.value)
    assert isinstance(raised.value.__cause__, RuntimeError)
    assert audit_trail(audit_sink) == [
        GENERATED,
        ("sign:seal", AuditResult.GRANTED),
        ("sign:seal", AuditResult.FAILED),
    ]


@pytest.mark.parametrize(
    ("algorithm", "mechanism"),
    [
        (KeyAlgorithm.ED25519, SHA256),
        (KeyAlgorithm.EC_P256, SignatureMechanism(hash=None)),
        (
            KeyAlgorithm.EC_P256,
            SignatureMechanism(hash=HashName.SHA256, rsa_padding=RsaPadding.PSS),
        ),
        (
            KeyAlgorithm.EC_P256,
            SignatureMechanism(hash=HashName.SHA256, prehashed=True),
        ),
        (KeyAlgorithm.RSA_2048, SHA256),
        (KeyAlgorithm.EC_P256, SignatureMechanism(hash="sha256")),
        (KeyAlgorithm.EC_P256, "ecdsa-with-SHA256"),
    ],
    ids=[
        "ed25519-with-hash",
        "ec-without-hash",
        "ec-with-padding",
        "short-digest",
        "rsa-without-padding",
        "hash-as-text",
        "not-a-mechanism",
    ],
)
def test_a_mechanism_unfit_for_the_key_is_refused_and_audited(
    store, audit_sink, algorithm, mechanism
):
    store.generate_key("k", algorithm, frozenset({KeyUsage.SEAL}))

    with pytest.raises(InvalidKeyRequestError):
        store.sign("k", b"not a digest", mechanism, usage=KeyUsage.SEAL)

    assert audit_trail(audit_sink) == [GENERATED, ("sign:seal", AuditResult.REFUSED)]


def test_sign_batch_writes_an_audit_entry_per_item_then_every_signature(
    store, audit_sink
):
    store.generate_key("ocsp", KeyAlgorithm.EC_P256, frozenset({KeyUsage.OCSP_SIGN}))
    items = [f"response {n}".encode() for n in range(5)]

    signatures = store.sign_batch("ocsp", items, SHA256, usage=KeyUsage.OCSP_SIGN)

    public_key = store.public_key("ocsp")
    for item, signature in zip(items, signatures, strict=True):
        verify(public_key, signature, item, SHA256)
    made, *granted = audit_sink.events
    assert (made.operation, made.key_label) == ("generate-key", "ocsp")
    batch = hashlib.sha256(b"".join(hashlib.sha256(item).digest() for item in items))
    assert [(e.result, e.data_sha256, e.detail) for e in granted] == [
        (
            AuditResult.GRANTED,
            hashlib.sha256(item).hexdigest(),
            f"item {n} of 5 in batch {batch.hexdigest()}",
        )
        for n, item in enumerate(items, start=1)
    ]


def test_a_batch_that_fails_to_sign_records_each_item_as_failed(
    store, audit_sink, monkeypatch
):
    store.generate_key("ocsp", KeyAlgorithm.EC_P256, frozenset({KeyUsage.OCSP_SIGN}))

    def broken(*args, **kwargs):
        raise RuntimeError("device error")

    monkeypatch.setattr(store, "_sign_many_with_key", broken)
    with pytest.raises(HsmError):
        store.sign_batch("ocsp", [b"a", b"b"], SHA256, usage=KeyUsage.OCSP_SIGN)

    results = [(e.result, e.data_sha256) for e in audit_sink.events[1:]]
    digests = [hashlib.sha256(item).hexdigest() for item in (b"a", b"b")]
    assert results == [(AuditResult.GRANTED, d) for d in digests] + [
        (AuditResult.FAILED, d) for d in digests
    ]


def test_sign_batch_checks_usage_and_signs_nothing_for_an_empty_batch(
    store, audit_sink
):
    store.generate_key("seal", KeyAlgorithm.ED25519, frozenset({KeyUsage.SEAL}))

    assert (
        store.sign_batch("seal", [], SignatureMechanism(hash=None), usage=KeyUsage.SEAL)
        == []
    )
    with pytest.raises(UsageNotPermittedError):
        store.sign_batch(
            "seal", [b"a"], SignatureMechanism(hash=None), usage=KeyUsage.TOKEN
        )

    assert audit_trail(audit_sink) == [GENERATED, ("sign:token", AuditResult.REFUSED)]


def test_sign_batch_refuses_when_the_audit_log_is_down(store, audit_sink):
    store.generate_key("ocsp", KeyAlgorithm.EC_P256, frozenset({KeyUsage.OCSP_SIGN}))
    audit_sink.fail_with = OSError("no space left")

    with pytest.raises(AuditUnavailableError):
        store.sign_batch("ocsp", [b"a", b"b"], SHA256, usage=KeyUsage.OCSP_SIGN)


# -- handles with cryptography's builders --------------------------------------------


NAME = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "某市市场监督管理局"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Yinxin Test Root"),
    ]
)
NOW = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def self_signed_builder(handle) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(NAME)
        .issuer_name(NAME)
        .public_key(handle.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm), ids=lambda a: a.value)
def test_certificate_crl_and_ocsp_builders_sign_with_a_handle(
    store, audit_sink, algorithm
):
    store.generate_key("issuer", algorithm, CERT_USAGES)
    hash_algorithm = None if algorithm is KeyAlgorithm.ED25519 else hashes.SHA256()

    cert_key = store.private_key("issuer", usage=KeyUsage.CERT_SIGN)
    with signing_context(actor="ceremony", operation="issue-root"):
        certificate = self_signed_builder(cert_key).sign(cert_key, hash_algorithm)
    certificate.verify_directly_issued_by(certificate)

    revoked = (
        x509.RevokedCertificateBuilder()
        .serial_number(12345)
        .revocation_date(NOW)
        .build()
    )
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(NAME)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=1))
        .add_revoked_certificate(revoked)
        .sign(store.private_key("issuer", usage=KeyUsage.CRL_SIGN), hash_algorithm)
    )
    assert crl.is_signature_valid(certificate.public_key())

    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=certificate,
            issuer=certificate,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=NOW,
            next_update=NOW + dt.timedelta(hours=12),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, certificate)
        .sign(store.private_key("issuer", usage=KeyUsage.OCSP_SIGN), hash_algorithm)
    )
    reparsed = ocsp.load_der_ocsp_response(
        response.public_bytes(serialization.Encoding.DER)
    )
    mechanism = SignatureMechanism(
        hash=None if hash_algorithm is None else HashName.SHA256,
        rsa_padding=RsaPadding.PKCS1V15 if algorithm.value.startswith("rsa") else None,
    )
    verify(
        certificate.public_key(),
        reparsed.signature,
        reparsed.tbs_response_bytes,
        mechanism,
    )

    assert [(e.actor, e.operation, e.result) for e in audit_sink.events] == [
        ("system", "generate-key", AuditResult.GRANTED),
        ("ceremony", "issue-root", AuditResult.GRANTED),
        ("system", "sign:crl-sign", AuditResult.GRANTED),
        ("system", "sign:ocsp-sign", AuditResult.GRANTED),
    ]
    assert (
        audit_sink.events[2].data_sha256
        == hashlib.sha256(crl.tbs_certlist_bytes).hexdigest()
    )


@pytest.mark.parametrize(
    ("hash_algorithm", "mgf_hash"),
    [(hashes.SHA256(), hashes.SHA256()), (hashes.SHA384(), hashes.SHA384())],
    ids=["sha256", "sha384"],
)
def test_rsa_pss_certificates_sign_with_a_handle(store, hash_algorithm, mgf_hash):
    store.generate_key("rsa", KeyAlgorithm.RSA_2048, frozenset({KeyUsage.CERT_SIGN}))
    handle = store.private_key("rsa", usage=KeyUsage.CERT_SIGN)
    pss = padding.PSS(padding.MGF1(mgf_hash), padding.PSS.DIGEST_LENGTH)

    certificate = self_signed_builder(handle).sign(
        handle, hash_algorithm, rsa_padding=pss
    )

    certificate.verify_directly_issued_by(certificate)


def test_handle_sign_translates_prehashed_arguments(store):
    store.generate_key("ec", KeyAlgorithm.EC_P384, frozenset({KeyUsage.TSA}))
    store.generate_key("rsa", KeyAlgorithm.RSA_2048, frozenset({KeyUsage.TSA}))
    digest = hashlib.sha384(b"timestamp request").digest()
    prehashed = utils.Prehashed(hashes.SHA384())

    ec_handle = store.private_key("ec", usage=KeyUsage.TSA)
    ec_signature = ec_handle.sign(digest, ec.ECDSA(prehashed))
    rsa_handle = store.private_key("rsa", usage=KeyUsage.TSA)
    rsa_signature = rsa_handle.sign(digest, padding.PKCS1v15(), prehashed)

    ec_handle.public_key().verify(
        ec_signature, b"timestamp request", ec.ECDSA(hashes.SHA384())
    )
    rsa_handle.public_key().verify(
        rsa_signature, b"timestamp request", padding.PKCS1v15(), hashes.SHA384()
    )


def test_handles_are_cryptography_private_keys_of_the_right_kind(store):
    for algorithm, kind, handle_type in [
        (KeyAlgorithm.EC_P256, ec.EllipticCurvePrivateKey, EcKeyHandle),
        (KeyAlgorithm.ED25519, ed25519.Ed25519PrivateKey, Ed25519KeyHandle),
        (KeyAlgorithm.RSA_2048, rsa.RSAPrivateKey, RsaKeyHandle),
    ]:
        store.generate_key(algorithm.value, algorithm, frozenset({KeyUsage.CLIENT}))
        handle = store.private_key(algorithm.value, usage=KeyUsage.CLIENT)
        assert isinstance(handle, kind) and isinstance(handle, handle_type)
        assert (handle.label, handle.usage, handle.algorithm) == (
            algorithm.value,
            KeyUsage.CLIENT,
            algorithm,
        )
        assert algorithm.value in repr(handle)


def test_handles_never_reveal_the_private_key(store):
    for algorithm in (
        KeyAlgorithm.EC_P256,
        KeyAlgorithm.ED25519,
        KeyAlgorithm.RSA_2048,
    ):
        store.generate_key(algorithm.value, algorithm, frozenset({KeyUsage.SEAL}))
        handle = store.private_key(algorithm.value, usage=KeyUsage.SEAL)
        with pytest.raises(KeyNotExportableError):
            handle.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        with pytest.raises(KeyNotExportableError):
            pickle.dumps(handle)
        if isinstance(handle, Ed25519KeyHandle):
            with pytest.raises(KeyNotExportableError):
                handle.private_bytes_raw()
        else:
            with pytest.raises(KeyNotExportableError):
                handle.private_numbers()
        # A handle holds no key material, so a copy may simply be the handle.
        assert copy.copy(handle) is handle and copy.deepcopy(handle) is handle


def test_handles_only_sign(store):
    store.generate_key("ec", KeyAlgorithm.EC_P256, frozenset({KeyUsage.CLIENT}))
    store.generate_key("rsa", KeyAlgorithm.RSA_2048, frozenset({KeyUsage.CLIENT}))
    peer = ec.generate_private_key(ec.SECP256R1()).public_key()

    with pytest.raises(UsageNotPermittedError):
        store.private_key("ec", usage=KeyUsage.CLIENT).exchange(ec.ECDH(), peer)
    with pytest.raises(UsageNotPermittedError):
        store.private_key("rsa", usage=KeyUsage.CLIENT).decrypt(
            b"\x00" * 256, padding.PKCS1v15()
        )


def test_handles_refuse_signature_schemes_the_token_does_not_offer(store):
    store.generate_key("ec", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
    store.generate_key("rsa", KeyAlgorithm.RSA_2048, frozenset({KeyUsage.SEAL}))
    ec_handle = store.private_key("ec", usage=KeyUsage.SEAL)
    rsa_handle = store.private_key("rsa", usage=KeyUsage.SEAL)

    with pytest.raises(UnsupportedAlgorithmError):
        ec_handle.sign(b"m", ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    with pytest.raises(UnsupportedAlgorithmError):
        ec_handle.sign(b"m", ec.ECDSA(hashes.SHA1()))
    with pytest.raises(UnsupportedAlgorithmError):
        rsa_handle.sign(
            b"m",
            padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.MAX_LENGTH),
            hashes.SHA256(),
        )
    with pytest.raises(UnsupportedAlgorithmError):
        rsa_handle.sign(
            b"m", padding.PSS(padding.MGF1(hashes.SHA512()), 32), hashes.SHA256()
        )


def test_a_handle_signs_for_the_usage_it_was_obtained_for(store, audit_sink):
    store.generate_key(
        "multi", KeyAlgorithm.ED25519, frozenset({KeyUsage.SEAL, KeyUsage.TOKEN})
    )

    store.private_key("multi", usage=KeyUsage.TOKEN).sign(b"cwt")

    assert [event.operation for event in audit_sink.events] == [
        "generate-key",
        "sign:token",
    ]


# -- opening -----------------------------------------------------------------------


def test_a_wrong_pin_is_refused(token, audit_sink):
    with pytest.raises(PinIncorrectError):
        token.open(audit_sink, pin="0000-wrong")


@pytest.mark.parametrize("pin", [None, ""])
def test_a_missing_pin_is_refused_before_touching_the_token(token, audit_sink, pin):
    with pytest.raises(PinMissingError):
        open_keystore(token.spec, pin=pin, audit=audit_sink)


def test_threads_can_share_one_store(store, audit_sink):
    store.generate_key("shared", KeyAlgorithm.EC_P256, frozenset({KeyUsage.OCSP_SIGN}))
    messages = [f"response {n}".encode() for n in range(80)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        signatures = list(
            pool.map(
                lambda m: store.sign("shared", m, SHA256, usage=KeyUsage.OCSP_SIGN),
                messages,
            )
        )

    public_key = store.public_key("shared")
    for message, signature in zip(messages, signatures, strict=True):
        verify(public_key, signature, message, SHA256)
    assert audit_trail(audit_sink) == [
        GENERATED,
        *[("sign:ocsp-sign", AuditResult.GRANTED)] * len(messages),
    ]
    assert sorted(event.data_sha256 for event in audit_sink.events[1:]) == sorted(
        hashlib.sha256(message).hexdigest() for message in messages
    )
