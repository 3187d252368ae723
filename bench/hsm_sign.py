"""How fast the key stores sign ECDSA P-256, against raw cryptography on the same data.

    .venv/bin/python bench/hsm_sign.py

Prints one line per figure, then one JSON object with all of them. Ratios are
"signatures per second through the key store / raw cryptography's signatures per
second" (1.0 = no overhead); `ratio` is the software HSM's KeyStore.sign with the audit
cost left out (a sink that discards), the others say what they compare in their name.
Audited figures use the real SQL audit log (hsm_sim.audit.SqlAuditLog) on a temporary
SQLite file: one hash-chained row per signature, committed one by one for sign and
together for sign_batch.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from hsm_sim.api import (
    AuditEvent,
    HashName,
    KeyAlgorithm,
    KeyUsage,
    SignatureMechanism,
)
from hsm_sim.soft_token import init_soft_token
from hsm_sim.spec import open_keystore

SOFTHSM_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
)
USER_PIN, SO_PIN = "bench-user-1", "bench-officer-2"
ROUND_SECONDS = 0.4
ROUNDS = 3
BATCH_SIZE = 100
DATA = bytes(range(256)) * 2  # 512 bytes, about one TBSCertificate
SHA256 = SignatureMechanism(hash=HashName.SHA256)
USAGE = KeyUsage.OCSP_SIGN


class DiscardingSink:
    """Accepts every event and keeps none: the key store's cost without the audit's."""

    def record(self, event: AuditEvent) -> None:
        pass

    def record_all(self, events: Sequence[AuditEvent]) -> None:
        pass


class ListSink:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)

    def record_all(self, events: Sequence[AuditEvent]) -> None:
        self.events.extend(events)


def measure(operation: Callable[[], object], per_call: int = 1) -> float:
    """Operations per second: the median of a few timed rounds, after a warm-up call."""
    operation()
    rates = []
    for _ in range(ROUNDS):
        count = 0
        start = time.perf_counter()
        deadline = start + ROUND_SECONDS
        while True:
            for _ in range(20):
                operation()
            count += 20
            elapsed = time.perf_counter() - start
            if elapsed >= ROUND_SECONDS or time.perf_counter() > deadline:
                break
        rates.append(count * per_call / elapsed)
    return statistics.median(rates)


def sql_audit_sink(workdir: Path):  # -> SqlAuditLog | None
    """The real audit log on a fresh SQLite file, or None when it is not in the tree."""
    try:
        from hsm_sim.audit import SqlAuditLog
        from portal.db import upgrade_database
    except ImportError:
        return None
    url = f"sqlite:///{workdir / 'audit.sqlite3'}"
    upgrade_database(url)
    return SqlAuditLog(url)


def make_softhsm_token(workdir: Path) -> str | None:
    """A fresh SoftHSM token's spec (SOFTHSM2_CONF is set for this process), or None."""
    module = next((m for m in SOFTHSM_MODULES if os.path.exists(m)), None)
    if module is None or shutil.which("softhsm2-util") is None:
        return None
    tokens = workdir / "softhsm-tokens"
    tokens.mkdir()
    conf = workdir / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
        "log.level = ERROR\nslots.removable = false\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(conf)
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            "bench",
            "--so-pin",
            SO_PIN,
            "--pin",
            USER_PIN,
        ],
        check=True,
        capture_output=True,
    )
    return f"pkcs11:module={module};token=bench"


def main() -> None:
    figures: dict[str, float | int | str | None] = {}

    def report(name: str, value: float | None, text: str) -> None:
        figures[name] = None if value is None else round(value, 3 if value < 10 else 0)
        shown = (
            "n/a"
            if value is None
            else (f"{value:,.0f}" if value >= 10 else f"{value:.3f}")
        )
        print(f"{text:<66} {shown:>10}")

    with tempfile.TemporaryDirectory(prefix="yinxin-bench-") as temporary:
        workdir = Path(temporary)
        softhsm_spec = make_softhsm_token(workdir)
        sql_sink = sql_audit_sink(workdir)
        audited_sink = sql_sink if sql_sink is not None else ListSink()
        audit_kind = (
            "SQL audit log on SQLite" if sql_sink is not None else "IN-MEMORY list sink"
        )
        if sql_sink is None:
            print(
                "NOTE: hsm_sim.audit.SqlAuditLog is not available: 'audited' means an in-memory list"
            )
        figures["audit_sink"] = audit_kind

        raw_key = ec.generate_private_key(ec.SECP256R1())
        raw_rate = measure(lambda: raw_key.sign(DATA, ec.ECDSA(hashes.SHA256())))
        report("raw_per_s", raw_rate, "raw cryptography ECDSA P-256 signatures/s")

        token_dir = workdir / "soft-token"
        init_soft_token(token_dir, user_pin=USER_PIN, so_pin=SO_PIN)
        started = time.perf_counter()
        soft = open_keystore(f"soft:{token_dir}", pin=USER_PIN, audit=DiscardingSink())
        report(
            "soft_login_s",
            time.perf_counter() - started,
            "software HSM login (scrypt 2^17), seconds",
        )
        soft.generate_key("bench", KeyAlgorithm.EC_P256, frozenset({USAGE}))
        soft_rate = measure(lambda: soft.sign("bench", DATA, SHA256, usage=USAGE))
        report(
            "soft_sign_per_s",
            soft_rate,
            "software HSM KeyStore.sign/s, audit discarded",
        )
        handle = soft.private_key("bench", usage=USAGE)
        handle_rate = measure(lambda: handle.sign(DATA, ec.ECDSA(hashes.SHA256())))
        report(
            "soft_handle_per_s",
            handle_rate,
            "software HSM handle.sign()/s, audit discarded",
        )
        batch = [DATA] * BATCH_SIZE
        batch_rate = measure(
            lambda: soft.sign_batch("bench", batch, SHA256, usage=USAGE),
            per_call=BATCH_SIZE,
        )
        report(
            "soft_batch_per_s",
            batch_rate,
            f"software HSM sign_batch signatures/s ({BATCH_SIZE} a batch)",
        )
        soft.close()

        memory_sink = ListSink()
        soft = open_keystore(f"soft:{token_dir}", pin=USER_PIN, audit=memory_sink)
        memory_rate = measure(lambda: soft.sign("bench", DATA, SHA256, usage=USAGE))
        report(
            "soft_memory_audit_per_s",
            memory_rate,
            "software HSM KeyStore.sign/s, in-memory list sink",
        )
        soft.close()

        soft = open_keystore(f"soft:{token_dir}", pin=USER_PIN, audit=audited_sink)
        audited_rate = measure(lambda: soft.sign("bench", DATA, SHA256, usage=USAGE))
        report(
            "soft_audited_per_s",
            audited_rate,
            f"software HSM KeyStore.sign/s, {audit_kind}",
        )
        audited_handle = soft.private_key("bench", usage=USAGE)
        audited_handle_rate = measure(
            lambda: audited_handle.sign(DATA, ec.ECDSA(hashes.SHA256()))
        )
        report(
            "soft_audited_handle_per_s",
            audited_handle_rate,
            f"software HSM handle.sign()/s, {audit_kind}",
        )
        audited_batch_rate = measure(
            lambda: soft.sign_batch("bench", batch, SHA256, usage=USAGE),
            per_call=BATCH_SIZE,
        )
        report(
            "soft_audited_batch_per_s",
            audited_batch_rate,
            f"software HSM sign_batch signatures/s, {audit_kind}",
        )
        soft.close()

        softhsm_rate = softhsm_audited_rate = softhsm_batch_rate = None
        if softhsm_spec is None:
            print("NOTE: SoftHSMv2 is not installed: its figures are n/a")
        else:
            p11 = open_keystore(softhsm_spec, pin=USER_PIN, audit=DiscardingSink())
            p11.generate_key("bench", KeyAlgorithm.EC_P256, frozenset({USAGE}))
            softhsm_rate = measure(lambda: p11.sign("bench", DATA, SHA256, usage=USAGE))
            softhsm_batch_rate = measure(
                lambda: p11.sign_batch("bench", batch, SHA256, usage=USAGE),
                per_call=BATCH_SIZE,
            )
            p11.close()
            p11 = open_keystore(softhsm_spec, pin=USER_PIN, audit=audited_sink)
            softhsm_audited_rate = measure(
                lambda: p11.sign("bench", DATA, SHA256, usage=USAGE)
            )
            p11.close()
        report(
            "softhsm_sign_per_s",
            softhsm_rate,
            "SoftHSMv2 via PKCS#11 KeyStore.sign/s, audit discarded",
        )
        report(
            "softhsm_batch_per_s",
            softhsm_batch_rate,
            "SoftHSMv2 via PKCS#11 sign_batch signatures/s",
        )
        report(
            "softhsm_audited_per_s",
            softhsm_audited_rate,
            f"SoftHSMv2 via PKCS#11 KeyStore.sign/s, {audit_kind}",
        )
        if sql_sink is not None:
            sql_sink.close()

    def ratio(rate: float | None) -> float | None:
        return None if rate is None else rate / raw_rate

    print()
    report(
        "ratio",
        ratio(soft_rate),
        "ratio: software HSM KeyStore.sign / raw (audit discarded)",
    )
    report(
        "handle_ratio",
        ratio(handle_rate),
        "handle_ratio: software HSM handle.sign() / raw",
    )
    report(
        "batch_ratio", ratio(batch_rate), "batch_ratio: software HSM sign_batch / raw"
    )
    report(
        "memory_audit_ratio",
        ratio(memory_rate),
        "memory_audit_ratio: KeyStore.sign with list sink / raw",
    )
    report(
        "audited_ratio",
        ratio(audited_rate),
        "audited_ratio: KeyStore.sign with the SQL audit / raw",
    )
    report(
        "audited_handle_ratio",
        ratio(audited_handle_rate),
        "audited_handle_ratio: handle.sign() with the SQL audit / raw",
    )
    report(
        "audited_batch_ratio",
        ratio(audited_batch_rate),
        "audited_batch_ratio: sign_batch with the SQL audit / raw",
    )
    report(
        "softhsm_ratio",
        ratio(softhsm_rate),
        "softhsm_ratio: SoftHSMv2 KeyStore.sign / raw",
    )
    report(
        "softhsm_audited_ratio",
        ratio(softhsm_audited_rate),
        "softhsm_audited_ratio: SoftHSMv2 with the SQL audit / raw",
    )
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
