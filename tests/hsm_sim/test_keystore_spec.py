"""Parsing YINXIN_HSM specs, and the package's public entry points in a clean interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hsm_sim.errors import KeyStoreConfigError, PinMissingError
from hsm_sim.spec import (
    Pkcs11TokenSpec,
    SoftTokenSpec,
    open_keystore,
    parse_keystore_spec,
    unlock_token,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("soft:instance/hsm", SoftTokenSpec(Path("instance/hsm"))),
        ("soft:/var/lib/yinxin/hsm", SoftTokenSpec(Path("/var/lib/yinxin/hsm"))),
        (
            "pkcs11:module=/usr/lib/softhsm/libsofthsm2.so;token=seal-ca",
            Pkcs11TokenSpec("/usr/lib/softhsm/libsofthsm2.so", "seal-ca"),
        ),
        (
            " pkcs11: token = 市 CA ; module=/opt/hsm/lib.so; ",
            Pkcs11TokenSpec("/opt/hsm/lib.so", "市 CA"),
        ),
    ],
)
def test_well_formed_specs_parse(text, expected):
    parsed = parse_keystore_spec(text)

    assert parsed == expected
    assert parse_keystore_spec(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "must be soft:"),
        ("/var/lib/hsm", "must be soft:"),
        ("soft:", "needs a token directory"),
        ("soft:   ", "needs a token directory"),
        ("hsm:/x", "unknown key-store kind"),
        ("pkcs11:", "missing module= and token="),
        ("pkcs11:module=/lib.so", "missing token="),
        ("pkcs11:token=t", "missing module="),
        ("pkcs11:module=/lib.so;token=", "must be name=value"),
        ("pkcs11:module=/lib.so;token", "must be name=value"),
        ("pkcs11:module=/lib.so;token=a;token=b", "given twice"),
        ("pkcs11:module=/lib.so;slot=0", "never by slot"),
        ("pkcs11:module=/lib.so;token=t;pin=1234", "unknown field 'pin'"),
    ],
)
def test_malformed_specs_say_what_is_wrong(text, reason):
    with pytest.raises(KeyStoreConfigError, match=reason):
        parse_keystore_spec(text)


def test_a_malformed_spec_is_reported_before_a_missing_pin(audit_sink):
    with pytest.raises(KeyStoreConfigError):
        open_keystore("soft:", pin=None, audit=audit_sink)
    with pytest.raises(PinMissingError):
        open_keystore("soft:/nonexistent", pin=None, audit=audit_sink)


def test_unlocking_needs_the_so_pin():
    with pytest.raises(PinMissingError):
        unlock_token("soft:/nonexistent", so_pin="")


PUBLIC_API_SCRIPT = textwrap.dedent(
    """
    import datetime as dt, sys
    import hsm_sim
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    missing = [name for name in hsm_sim.__all__ if not hasattr(hsm_sim, name)]
    assert not missing, missing

    class ListSink:
        def __init__(self):
            self.events = []
        def record(self, event):
            self.events.append(event)
        def record_all(self, events):
            self.events.extend(events)

    directory = sys.argv[1]
    hsm_sim.init_soft_token(directory, user_pin="1111-user", so_pin="2222-so-pin", scrypt_log2_n=14)
    sink = ListSink()
    store = hsm_sim.open_keystore(f"soft:{directory}", pin="1111-user", audit=sink)
    assert isinstance(store, hsm_sim.KeyStore)
    store.generate_key("root", hsm_sim.KeyAlgorithm.EC_P256, frozenset({hsm_sim.KeyUsage.CERT_SIGN}))
    key = store.private_key("root", usage=hsm_sim.KeyUsage.CERT_SIGN)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root")])
    now = dt.datetime.now(dt.timezone.utc)
    with hsm_sim.signing_context(actor="ceremony", operation="issue-root"):
        certificate = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
    certificate.verify_directly_issued_by(certificate)
    assert [(e.actor, e.operation, e.result) for e in sink.events] == [
        ("system", "generate-key", hsm_sim.AuditResult.GRANTED),
        ("ceremony", "issue-root", hsm_sim.AuditResult.GRANTED),
    ]
    store.close()
    print("ok")
    """
)


def test_the_public_api_works_from_a_clean_interpreter(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    completed = subprocess.run(
        [sys.executable, "-c", PUBLIC_API_SCRIPT, str(tmp_path / "token")],
        check=False,
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"
