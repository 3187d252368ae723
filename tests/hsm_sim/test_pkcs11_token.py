"""The PKCS#11 backend against SoftHSMv2: what lands in the token, logins, SO unlock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pkcs11.exceptions
import pytest

from hsm_sim import pkcs11_token
from hsm_sim.api import (
    AuditResult,
    HashName,
    KeyAlgorithm,
    KeyUsage,
    SignatureMechanism,
)
from hsm_sim.errors import (
    ErrorCategory,
    KeyNotFoundError,
    KeyStoreConfigError,
    PinIncorrectError,
    TokenNotFoundError,
    TokenUnavailableError,
)
from hsm_sim.spec import open_keystore, unlock_token

SHA256 = SignatureMechanism(hash=HashName.SHA256)
SEAL = frozenset({KeyUsage.SEAL})

# Runs in a fresh interpreter: a second process looking at the token with python-pkcs11
# directly, and reopening it through hsm_sim as a restarted service would.
INSPECTOR = textwrap.dedent(
    """
    import json, sys
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.exceptions import AttributeSensitive, AttributeTypeInvalid
    from hsm_sim.spec import open_keystore

    module, label, pin = sys.argv[1:]
    token = pkcs11.lib(module).get_token(token_label=label)
    report = {"private_keys": [], "data": []}
    with token.open(user_pin=pin) as session:
        for key in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}):
            flags = {}
            for name in ("SENSITIVE", "ALWAYS_SENSITIVE", "EXTRACTABLE", "NEVER_EXTRACTABLE",
                         "SIGN", "DECRYPT", "DERIVE", "UNWRAP", "PRIVATE"):
                try:
                    flags[name] = bool(key[getattr(Attribute, name)])
                except AttributeTypeInvalid:
                    flags[name] = None  # not an attribute of this key type
            secret = Attribute.PRIVATE_EXPONENT if key.key_type == KeyType.RSA else Attribute.VALUE
            try:
                key[secret]
                flags["value_readable"] = True
            except AttributeSensitive:
                flags["value_readable"] = False
            report["private_keys"].append({"label": key.label, **flags})
        for obj in session.get_objects({Attribute.CLASS: ObjectClass.DATA}):
            report["data"].append({
                "application": obj[Attribute.APPLICATION],
                "label": obj[Attribute.LABEL],
                "private": bool(obj[Attribute.PRIVATE]),
                "value": json.loads(obj[Attribute.VALUE]),
            })

    class DiscardingSink:
        def record(self, event):
            pass
        def record_all(self, events):
            pass

    store = open_keystore(f"pkcs11:module={module};token={label}", pin=pin, audit=DiscardingSink())
    report["listed"] = [
        [info.label, info.algorithm.value, sorted(u.value for u in info.usages)]
        for info in store.list_keys()
    ]
    store.close()
    print(json.dumps(report))
    """
)


def token_label(token) -> str:
    return token.spec.rsplit("token=", 1)[1]


def module_path(token) -> str:
    return token.spec.split("module=", 1)[1].split(";", 1)[0]


def test_keys_are_sensitive_non_extractable_and_carry_their_usages_in_the_token(
    softhsm_token, audit_sink, tmp_path
):
    with softhsm_token.open(audit_sink) as store:
        store.generate_key(
            "ca-root",
            KeyAlgorithm.EC_P384,
            frozenset({KeyUsage.CERT_SIGN, KeyUsage.CRL_SIGN}),
        )
        store.generate_key("seal", KeyAlgorithm.ED25519, SEAL)
        store.generate_key("tsa", KeyAlgorithm.RSA_2048, frozenset({KeyUsage.TSA}))

    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            INSPECTOR,
            module_path(softhsm_token),
            token_label(softhsm_token),
            softhsm_token.user_pin,
        ],
        check=False,
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)

    assert sorted(key["label"] for key in report["private_keys"]) == [
        "ca-root",
        "seal",
        "tsa",
    ]
    for key in report["private_keys"]:
        assert key == {
            "label": key["label"],
            "SENSITIVE": True,
            "ALWAYS_SENSITIVE": True,
            "EXTRACTABLE": False,
            "NEVER_EXTRACTABLE": True,
            "SIGN": True,
            "DECRYPT": False,
            "DERIVE": False,
            "UNWRAP": False,
            "PRIVATE": True,
            "value_readable": False,
        }
    metadata = {entry["label"]: entry for entry in report["data"]}
    assert metadata["ca-root"]["application"] == "yinxin"
    assert metadata["ca-root"]["private"] is True
    assert metadata["ca-root"]["value"]["usages"] == ["cert-sign", "crl-sign"]
    assert report["listed"] == [
        ["ca-root", "ec-p384", ["cert-sign", "crl-sign"]],
        ["seal", "ed25519", ["seal"]],
        ["tsa", "rsa-2048", ["tsa"]],
    ]


def test_stores_in_one_process_share_the_login(softhsm_token, audit_sink):
    first = softhsm_token.open(audit_sink)
    second = softhsm_token.open(audit_sink)
    try:
        first.generate_key("shared", KeyAlgorithm.EC_P256, SEAL)
        with pytest.raises(PinIncorrectError):
            softhsm_token.open(audit_sink, pin="0000-wrong")
        first.close()

        # Closing one store must not log the other out.
        second.sign("shared", b"still logged in", SHA256, usage=KeyUsage.SEAL)
    finally:
        first.close()
        second.close()


def test_a_key_destroyed_behind_a_stores_back_is_refused(softhsm_token, audit_sink):
    with (
        softhsm_token.open(audit_sink) as first,
        softhsm_token.open(audit_sink) as second,
    ):
        first.generate_key("victim", KeyAlgorithm.EC_P256, SEAL)
        first.sign("victim", b"cached", SHA256, usage=KeyUsage.SEAL)
        second.destroy_key("victim")
        audit_sink.events.clear()

        with pytest.raises(KeyNotFoundError):
            first.sign("victim", b"again", SHA256, usage=KeyUsage.SEAL)
        assert [event.result for event in audit_sink.events] == [
            AuditResult.GRANTED,
            AuditResult.FAILED,
        ]
        assert first.list_keys() == []


def test_the_so_unlocks_by_setting_a_new_user_pin(softhsm_token, audit_sink):
    with softhsm_token.open(audit_sink) as store:
        made = store.generate_key("k", KeyAlgorithm.EC_P256, SEAL)
        with pytest.raises(KeyStoreConfigError, match="close the key stores"):
            unlock_token(
                softhsm_token.spec, so_pin=softhsm_token.so_pin, new_user_pin="7777-new"
            )

    with pytest.raises(KeyStoreConfigError, match="new user PIN"):
        unlock_token(softhsm_token.spec, so_pin=softhsm_token.so_pin)
    with pytest.raises(PinIncorrectError):
        unlock_token(softhsm_token.spec, so_pin="0000-wrong", new_user_pin="7777-new")

    unlock_token(
        softhsm_token.spec, so_pin=softhsm_token.so_pin, new_user_pin="7777-new"
    )

    with pytest.raises(PinIncorrectError):
        softhsm_token.open(audit_sink)
    with softhsm_token.open(audit_sink, pin="7777-new") as store:
        assert store.list_keys() == [made]


def test_a_token_created_after_the_module_was_loaded_is_found(
    softhsm_token_factory, audit_sink
):
    earlier = softhsm_token_factory()
    earlier.open(audit_sink).close()
    later = softhsm_token_factory()

    with later.open(audit_sink) as store:
        assert store.list_keys() == []


def test_an_unknown_token_label_is_not_found(
    softhsm_module, softhsm_tokens_dir, audit_sink
):
    with pytest.raises(TokenNotFoundError):
        open_keystore(
            f"pkcs11:module={softhsm_module};token=no-such-token",
            pin="1234",
            audit=audit_sink,
        )


def test_a_missing_module_is_a_configuration_error(tmp_path, audit_sink):
    with pytest.raises(KeyStoreConfigError, match="does not exist"):
        open_keystore(
            f"pkcs11:module={tmp_path / 'libnothing.so'};token=t",
            pin="1234",
            audit=audit_sink,
        )


def test_a_login_the_token_fails_to_answer_is_retried(
    softhsm_token, audit_sink, monkeypatch
):
    # SoftHSMv2 answers CKR_GENERAL_ERROR now and then while another process
    # rewrites its file store; a worker starting then must not fail with a 500.
    find_token = pkcs11_token._find_token
    failures = iter([pkcs11.exceptions.GeneralError(), pkcs11.exceptions.DeviceError()])

    def flaky_find_token(module_path, token_label):
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return find_token(module_path, token_label)

    monkeypatch.setattr(pkcs11_token, "_LOGIN_RETRY_DELAYS", (0, 0, 0))
    monkeypatch.setattr(pkcs11_token, "_find_token", flaky_find_token)
    with softhsm_token.open(audit_sink) as store:
        store.generate_key("k", KeyAlgorithm.EC_P256, SEAL)


def test_a_token_that_never_answers_is_reported_unavailable(
    softhsm_token, audit_sink, monkeypatch
):
    def broken(module_path, token_label):
        raise pkcs11.exceptions.GeneralError()

    monkeypatch.setattr(pkcs11_token, "_LOGIN_RETRY_DELAYS", (0, 0, 0))
    monkeypatch.setattr(pkcs11_token, "_find_token", broken)
    with pytest.raises(TokenUnavailableError, match="did not answer the login") as failure:
        softhsm_token.open(audit_sink)
    assert failure.value.category is ErrorCategory.UNAVAILABLE
