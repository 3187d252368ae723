"""The software HSM's own promises: keys wrapped at rest, tamper detection, PIN lockout,
and several processes sharing one token directory."""

from __future__ import annotations

import base64
import contextlib
import concurrent.futures
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    load_der_private_key,
    load_pem_private_key,
    pkcs12,
)

from hsm_sim import soft_token as soft_token_module
from hsm_sim.api import (
    AuditResult,
    HashName,
    KeyAlgorithm,
    KeyUsage,
    SignatureMechanism,
)
from hsm_sim.errors import (
    KeyNotFoundError,
    KeyStoreConfigError,
    PinIncorrectError,
    TokenExistsError,
    TokenLockedError,
    TokenNotFoundError,
    TokenTamperedError,
)
from hsm_sim.soft_token import DEFAULT_SCRYPT_LOG2_N, init_soft_token
from hsm_sim.spec import open_keystore, unlock_token

SHA256 = SignatureMechanism(hash=HashName.SHA256)
SEAL = frozenset({KeyUsage.SEAL})


def key_file(token, label: str) -> Path:
    """The file that holds `label`'s key (its name is derived from the label)."""
    matches = [
        path
        for path in (token.location / "keys").iterdir()
        if json.loads(path.read_bytes())["label"] == label
    ]
    assert len(matches) == 1
    return matches[0]


def secret_parts(private_key) -> list[bytes]:
    """The bytes that would betray `private_key` if they appeared anywhere on disk."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        size = (private_key.curve.key_size + 7) // 8
        return [private_key.private_numbers().private_value.to_bytes(size, "big")]
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return [private_key.private_bytes_raw()]
    assert isinstance(private_key, rsa.RSAPrivateKey)
    numbers = private_key.private_numbers()
    return [
        value.to_bytes((value.bit_length() + 7) // 8, "big")
        for value in (numbers.d, numbers.p)
    ]


def base64_fields(content: bytes) -> list[bytes]:
    """Every base64 string value inside a JSON token file, decoded."""
    try:
        document = json.loads(content)
    except ValueError:
        return []
    found: list[bytes] = []
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            try:
                found.append(base64.b64decode(value, validate=True))
            except ValueError:
                pass
    return found


# -- keys at rest ------------------------------------------------------------------


def test_no_file_in_the_token_holds_a_private_key(soft_token, audit_sink, monkeypatch):
    generated = []
    make_key = soft_token_module._new_private_key

    def keep_a_copy(algorithm):
        generated.append(make_key(algorithm))
        return generated[-1]

    monkeypatch.setattr(soft_token_module, "_new_private_key", keep_a_copy)
    with soft_token.open(audit_sink) as store:
        for algorithm in KeyAlgorithm:
            store.generate_key(algorithm.value, algorithm, SEAL)
    secrets = [part for key in generated for part in secret_parts(key)]
    files = [path for path in soft_token.location.rglob("*") if path.is_file()]

    assert len(generated) == len(KeyAlgorithm) and len(files) >= len(KeyAlgorithm) + 2
    for path in files:
        content = path.read_bytes()
        for blob in [content, *base64_fields(content)]:
            for load in (load_pem_private_key, load_der_private_key):
                with pytest.raises((ValueError, TypeError)):
                    load(blob, password=None)
            for password in (
                None,
                soft_token.user_pin.encode(),
                soft_token.so_pin.encode(),
            ):
                with pytest.raises(ValueError):
                    pkcs12.load_key_and_certificates(blob, password)
            for secret in secrets:
                assert secret not in blob, f"{path.name} holds private key material"


def test_token_directory_is_0700_and_its_files_0600(soft_token, audit_sink):
    with soft_token.open(audit_sink) as store:
        store.generate_key("k", KeyAlgorithm.EC_P256, SEAL)

    for path in [soft_token.location, *soft_token.location.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} has mode {mode:o}"


def test_keys_are_unwrapped_once_per_login_not_per_signature(
    soft_token, audit_sink, monkeypatch
):
    with soft_token.open(audit_sink) as store:
        store.generate_key("k", KeyAlgorithm.EC_P256, SEAL)
        derivations = []
        real_kdf = soft_token_module._key_encryption_key
        monkeypatch.setattr(
            soft_token_module,
            "_key_encryption_key",
            lambda *args: derivations.append(1) or real_kdf(*args),
        )
        for n in range(20):
            store.sign("k", b"%d" % n, SHA256, usage=KeyUsage.SEAL)

    assert derivations == []


def test_a_login_holds_only_the_keys_it_has_used(soft_token, audit_sink, monkeypatch):
    with soft_token.open(audit_sink) as maker:
        for label in ("root", "seal", "token"):
            maker.generate_key(label, KeyAlgorithm.EC_P256, SEAL)
    loads = []
    real_load = soft_token_module.serialization.load_der_private_key
    monkeypatch.setattr(
        soft_token_module.serialization,
        "load_der_private_key",
        lambda *args, **kwargs: loads.append(1) or real_load(*args, **kwargs),
    )
    with soft_token.open(audit_sink) as store:
        # Logging in checks every key file but turns none into a key object.
        assert loads == []
        assert all(key.private_key is None for key in store._keys.values())
        for n in range(5):
            store.sign("seal", b"%d" % n, SHA256, usage=KeyUsage.SEAL)
        assert len(loads) == 1  # once per login, on first use
        held = {label for label, key in store._keys.items() if key.private_key is not None}
        assert held == {"seal"}


# -- tampering ---------------------------------------------------------------------


def test_swapped_key_files_are_detected_at_login(soft_token, audit_sink):
    with soft_token.open(audit_sink) as store:
        store.generate_key("seal-a", KeyAlgorithm.EC_P256, SEAL)
        store.generate_key(
            "root-b", KeyAlgorithm.EC_P256, frozenset({KeyUsage.CERT_SIGN})
        )
    file_a, file_b = key_file(soft_token, "seal-a"), key_file(soft_token, "root-b")
    content_a, content_b = file_a.read_bytes(), file_b.read_bytes()
    file_a.write_bytes(content_b)
    file_b.write_bytes(content_a)

    with pytest.raises(TokenTamperedError, match="renamed or swapped"):
        soft_token.open(audit_sink)


def test_a_swapped_key_file_is_detected_at_use(soft_token, audit_sink):
    with soft_token.open(audit_sink) as store:
        store.generate_key("seal-a", KeyAlgorithm.EC_P256, SEAL)
        store.generate_key("seal-b", KeyAlgorithm.EC_P256, SEAL)
        file_a, file_b = key_file(soft_token, "seal-a"), key_file(soft_token, "seal-b")
        file_a.write_bytes(file_b.read_bytes())

        with pytest.raises(TokenTamperedError):
            store.sign("seal-a", b"x", SHA256, usage=KeyUsage.SEAL)
        *made, event = audit_sink.events
        assert [(e.operation, e.key_label) for e in made] == [
            ("generate-key", "seal-a"),
            ("generate-key", "seal-b"),
        ]
        assert event.result is AuditResult.REFUSED
        assert "renamed or swapped" in event.detail


def test_a_renamed_key_with_an_edited_label_fails_its_integrity_check(
    soft_token, audit_sink
):
    with soft_token.open(audit_sink) as store:
        store.generate_key("seal-a", KeyAlgorithm.EC_P256, SEAL)
    original = key_file(soft_token, "seal-a")
    record = json.loads(original.read_bytes())
    record["label"] = "ca-root"
    original.unlink()
    # Named as the store would name it, so only the authenticated label can give it away.
    renamed = original.parent / soft_token_module._key_file_name("ca-root")
    renamed.write_text(json.dumps(record))

    with pytest.raises(TokenTamperedError, match="integrity"):
        soft_token.open(audit_sink)


def test_widening_a_keys_usages_on_disk_is_detected(soft_token, audit_sink):
    with soft_token.open(audit_sink) as store:
        store.generate_key("seal-a", KeyAlgorithm.EC_P256, SEAL)
        path = key_file(soft_token, "seal-a")
        record = json.loads(path.read_bytes())
        record["usages"] = ["cert-sign", "seal"]
        path.write_text(json.dumps(record))

        with pytest.raises(TokenTamperedError):
            store.sign("seal-a", b"tbs", SHA256, usage=KeyUsage.CERT_SIGN)
    with pytest.raises(TokenTamperedError):
        soft_token.open(audit_sink)


def test_a_key_file_from_another_token_is_refused(soft_token_factory, audit_sink):
    first, second = soft_token_factory("one"), soft_token_factory("two")
    with first.open(audit_sink) as store:
        store.generate_key("seal", KeyAlgorithm.EC_P256, SEAL)
    foreign = key_file(first, "seal")
    (second.location / "keys" / foreign.name).write_bytes(foreign.read_bytes())

    with pytest.raises(TokenTamperedError):
        second.open(audit_sink)


def test_a_damaged_token_file_is_reported(soft_token, audit_sink):
    (soft_token.location / "token.json").write_text("{not json")

    with pytest.raises(TokenTamperedError):
        soft_token.open(audit_sink)


# -- PINs --------------------------------------------------------------------------


def test_five_wrong_pins_lock_the_token_until_the_so_unlocks_it(soft_token, audit_sink):
    with soft_token.open(audit_sink) as store:
        store.generate_key("k", KeyAlgorithm.EC_P256, SEAL)
    for left in (4, 3, 2, 1):
        with pytest.raises(PinIncorrectError, match=f"{left} attempt"):
            soft_token.open(audit_sink, pin="0000-wrong")
    with pytest.raises(PinIncorrectError, match="now locked"):
        soft_token.open(audit_sink, pin="0000-wrong")

    with pytest.raises(TokenLockedError):
        soft_token.open(audit_sink)
    state = json.loads((soft_token.location / "pin-state.json").read_bytes())
    assert state == {"failed_user_logins": 5}

    with pytest.raises(PinIncorrectError):
        unlock_token(soft_token.spec, so_pin=soft_token.user_pin)
    with pytest.raises(TokenLockedError):
        soft_token.open(audit_sink)

    unlock_token(soft_token.spec, so_pin=soft_token.so_pin)
    with soft_token.open(audit_sink) as store:
        store.sign("k", b"after unlock", SHA256, usage=KeyUsage.SEAL)


def test_a_right_pin_resets_the_count_of_wrong_ones(soft_token, audit_sink):
    for _ in range(2):
        for _ in range(4):
            with pytest.raises(PinIncorrectError):
                soft_token.open(audit_sink, pin="0000-wrong")
        soft_token.open(audit_sink).close()


def test_logins_at_once_with_the_right_pin_never_lock_the_token(
    soft_token, audit_sink, monkeypatch
):
    # Six server workers starting together, on a machine slow enough that each PIN
    # check takes a while: none may count the others' attempts in progress as wrong.
    # Threads each open the lock file themselves, so they contend as processes do.
    unwrap = soft_token_module._unwrap_master_key

    def slow_unwrap(*args, **kwargs):
        time.sleep(0.3)
        return unwrap(*args, **kwargs)

    monkeypatch.setattr(soft_token_module, "_unwrap_master_key", slow_unwrap)
    start = threading.Barrier(6)

    def log_in() -> None:
        start.wait()
        soft_token.open(audit_sink).close()

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        logins = [pool.submit(log_in) for _ in range(6)]
        outcomes = [login.exception() for login in logins]

    assert outcomes == [None] * 6
    state = json.loads((soft_token.location / "pin-state.json").read_bytes())
    assert state == {"failed_user_logins": 0}


def test_a_login_that_fails_for_another_reason_than_the_pin_does_not_count(
    soft_token, audit_sink, monkeypatch
):
    # scrypt needs 128 MiB: a worker short of memory must not lock the token for all.
    def out_of_memory(*args, **kwargs):
        raise MemoryError

    with monkeypatch.context() as patched:
        patched.setattr(soft_token_module, "_unwrap_master_key", out_of_memory)
        for _ in range(6):
            with pytest.raises(MemoryError):
                soft_token.open(audit_sink)
    state = json.loads((soft_token.location / "pin-state.json").read_bytes())
    assert state == {"failed_user_logins": 0}
    soft_token.open(audit_sink).close()


def test_a_login_reads_the_token_file_under_the_token_lock(
    soft_token, audit_sink, monkeypatch
):
    # A login queued behind others must check the PIN against the token as it is
    # when its turn comes: the SO may have set a new user PIN meanwhile.
    held = []
    reads_while_held = []
    token_lock, read_token_file = (
        soft_token_module._token_lock,
        soft_token_module._read_token_file,
    )

    @contextlib.contextmanager
    def watched_lock(root):
        with token_lock(root):
            held.append(True)
            try:
                yield
            finally:
                held.pop()

    def watched_read(root):
        reads_while_held.append(bool(held))
        return read_token_file(root)

    monkeypatch.setattr(soft_token_module, "_token_lock", watched_lock)
    monkeypatch.setattr(soft_token_module, "_read_token_file", watched_read)
    soft_token.open(audit_sink).close()
    assert reads_while_held and all(reads_while_held)


def test_a_key_destroyed_while_its_signature_is_audited_does_not_sign(
    soft_token, audit_sink
):
    # The audit append can wait seconds for the database; a key destroyed as
    # compromised meanwhile (by another process) must not sign afterwards.
    with soft_token.open(audit_sink) as other_process:
        other_process.generate_key("k", KeyAlgorithm.EC_P256, SEAL)

        class DestroyingWhileWriting(type(audit_sink)):
            armed = False

            def record_all(self, events):
                super().record_all(events)
                granted = any(e.result is AuditResult.GRANTED for e in events)
                if self.armed and granted:
                    self.armed = False
                    other_process.destroy_key("k")

        sink = DestroyingWhileWriting()
        with soft_token.open(sink) as store:
            for unwrapped_already in (False, True):
                if unwrapped_already:
                    other_process.generate_key("k", KeyAlgorithm.EC_P256, SEAL)
                    store.sign("k", b"unwraps the key", SHA256, usage=KeyUsage.SEAL)
                sink.armed = True
                with pytest.raises(KeyNotFoundError, match="nothing was signed"):
                    store.sign("k", b"after destroy", SHA256, usage=KeyUsage.SEAL)
                assert [e.result for e in sink.events[-2:]] == [
                    AuditResult.GRANTED,
                    AuditResult.FAILED,
                ]


def test_the_so_can_set_a_new_user_pin_without_losing_keys(soft_token, audit_sink):
    with soft_token.open(audit_sink) as store:
        made = store.generate_key("k", KeyAlgorithm.ED25519, SEAL)

    unlock_token(soft_token.spec, so_pin=soft_token.so_pin, new_user_pin="5555-new")

    with pytest.raises(PinIncorrectError):
        soft_token.open(audit_sink)
    with soft_token.open(audit_sink, pin="5555-new") as store:
        assert store.list_keys() == [made]
        store.sign("k", b"x", SignatureMechanism(hash=None), usage=KeyUsage.SEAL)


def test_a_lost_failure_counter_leaves_the_token_locked(soft_token, audit_sink):
    (soft_token.location / "pin-state.json").unlink()

    with pytest.raises(TokenLockedError):
        soft_token.open(audit_sink)
    unlock_token(soft_token.spec, so_pin=soft_token.so_pin)
    soft_token.open(audit_sink).close()


# -- creating tokens ---------------------------------------------------------------


def test_an_existing_token_is_never_overwritten(soft_token):
    before = (soft_token.location / "token.json").read_bytes()

    with pytest.raises(TokenExistsError):
        init_soft_token(
            soft_token.location, user_pin="1111-aaaa", so_pin="2222-bbbb", scrypt_log2_n=14
        )

    assert (soft_token.location / "token.json").read_bytes() == before


@pytest.mark.parametrize(
    ("user_pin", "so_pin", "log2_n", "reason"),
    [
        ("123", "2222-bbbb", 14, "user PIN must have"),
        ("1111-aaaa", "", 14, "SO PIN must have"),
        ("1111-aaaa", "1111-aaaa", 14, "must differ"),
        ("1111-aaaa", "2222-bbbb", 10, "scrypt_log2_n"),
    ],
)
def test_weak_token_settings_are_refused(tmp_path, user_pin, so_pin, log2_n, reason):
    with pytest.raises(KeyStoreConfigError, match=reason):
        init_soft_token(
            tmp_path / "t", user_pin=user_pin, so_pin=so_pin, scrypt_log2_n=log2_n
        )


def test_a_token_is_made_only_in_an_empty_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("someone's files")

    with pytest.raises(KeyStoreConfigError, match="not empty"):
        init_soft_token(tmp_path, user_pin="1111-aaaa", so_pin="2222-bbbb", scrypt_log2_n=14)


def test_the_default_kdf_cost_is_scrypt_2_to_the_17(tmp_path, audit_sink):
    init_soft_token(tmp_path / "t", user_pin="1111-aaaa", so_pin="2222-bbbb")

    token = json.loads((tmp_path / "t" / "token.json").read_bytes())
    assert token["kdf"] == {
        "name": "scrypt",
        "log2_n": DEFAULT_SCRYPT_LOG2_N,
        "r": 8,
        "p": 1,
    }
    assert DEFAULT_SCRYPT_LOG2_N == 17
    open_keystore(f"soft:{tmp_path / 't'}", pin="1111-aaaa", audit=audit_sink).close()


def test_a_missing_token_is_not_found(tmp_path, audit_sink):
    with pytest.raises(TokenNotFoundError):
        open_keystore(f"soft:{tmp_path / 'nowhere'}", pin="1111-aaaa", audit=audit_sink)
    with pytest.raises(TokenNotFoundError):
        unlock_token(f"soft:{tmp_path / 'nowhere'}", so_pin="2222-bbbb")


# -- other processes ---------------------------------------------------------------


def test_keys_made_or_destroyed_by_another_store_are_seen(soft_token, audit_sink):
    with soft_token.open(audit_sink) as first, soft_token.open(audit_sink) as second:
        first.generate_key("victim", KeyAlgorithm.EC_P256, SEAL)
        first.sign("victim", b"cached", SHA256, usage=KeyUsage.SEAL)

        second.generate_key("newcomer", KeyAlgorithm.EC_P256, SEAL)
        second.destroy_key("victim")

        first.sign("newcomer", b"x", SHA256, usage=KeyUsage.SEAL)
        with pytest.raises(KeyNotFoundError):
            first.sign("victim", b"x", SHA256, usage=KeyUsage.SEAL)
        assert [info.label for info in first.list_keys()] == ["newcomer"]
        assert audit_sink.events[-1].result is AuditResult.REFUSED


def test_a_key_replaced_by_another_store_is_used_in_its_new_form(
    soft_token, audit_sink
):
    with soft_token.open(audit_sink) as first, soft_token.open(audit_sink) as second:
        first.generate_key("rotating", KeyAlgorithm.EC_P256, SEAL)
        first.sign("rotating", b"old", SHA256, usage=KeyUsage.SEAL)
        second.destroy_key("rotating")
        replacement = second.generate_key("rotating", KeyAlgorithm.EC_P256, SEAL)

        signature = first.sign("rotating", b"new", SHA256, usage=KeyUsage.SEAL)

        assert first.key_info("rotating") == replacement
        first.public_key("rotating").verify(
            signature, b"new", ec.ECDSA(hashes.SHA256())
        )


WORKER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from hsm_sim.api import KeyAlgorithm, KeyUsage
    from hsm_sim.errors import KeyExistsError
    from hsm_sim.spec import open_keystore

    class DiscardingSink:
        def record(self, event):
            pass
        def record_all(self, events):
            pass

    directory, pin, prefix, count, start_flag = sys.argv[1:]
    store = open_keystore("soft:" + directory, pin=pin, audit=DiscardingSink())
    while not Path(start_flag).exists():
        time.sleep(0.005)
    won = []
    for n in range(int(count)):
        store.generate_key(f"{prefix}-{n}", KeyAlgorithm.EC_P256, frozenset({KeyUsage.SEAL}))
        try:
            store.generate_key(f"contested-{n}", KeyAlgorithm.ED25519, frozenset({KeyUsage.SEAL}))
            won.append(str(n))
        except KeyExistsError:
            pass
    store.close()
    print(",".join(won))
    """
)


def test_two_processes_generating_keys_at_once_lose_nothing(
    soft_token, audit_sink, tmp_path
):
    count = 15
    start_flag = tmp_path / "go"
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with soft_token.open(audit_sink) as store:
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER,
                    str(soft_token.location),
                    soft_token.user_pin,
                    prefix,
                    str(count),
                    str(start_flag),
                ],
                cwd=tmp_path,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for prefix in ("left", "right")
        ]
        start_flag.touch()
        results = [worker.communicate(timeout=120) for worker in workers]
        assert [worker.returncode for worker in workers] == [0, 0], results

        won = [set(filter(None, out.strip().split(","))) for out, _ in results]
        assert won[0].isdisjoint(won[1])
        assert won[0] | won[1] == {str(n) for n in range(count)}
        labels = {info.label for info in store.list_keys()}
        expected = {f"{side}-{n}" for side in ("left", "right") for n in range(count)}
        assert labels == expected | {f"contested-{n}" for n in range(count)}
        # Keys made by other processes after this login sign here too.
        store.sign("right-7", b"m", SHA256, usage=KeyUsage.SEAL)
    leftovers = [
        p.name
        for p in (soft_token.location / "keys").iterdir()
        if not p.name.endswith(".key")
    ]
    assert leftovers == []
