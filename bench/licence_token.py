"""How fast LC1 tokens are verified offline and issued, on a real region node.

    .venv/bin/python bench/licence_token.py [--quick]

Builds a throw-away node (SQLite, soft HSM, audit log, CA ceremony) and takes its
DOCUMENT_SIGNER credential: the HSM key that signs licence tokens, and its certificate.

- Offline verification: `verify_token` (prefix, Base45, bounded zlib, COSE parse,
  ES256 signature, claims, dates; no status lookup — the caller adds one through
  `check`) against raw ECDSA P-256 verifications of the same signed bytes with
  cryptography, in alternating rounds of the same run. `ratio` = ours / raw.
- Issuance: tokens encoded per second through the HSM, single path (`encode_token`:
  one audited, fsync'd signature a token) and batch path (`encode_tokens`: the key
  store's `sign_batch`, an audit entry per token in one commit). The batch path is the one that
  meets the issue's 2,000 tokens/s.

Prints one line per figure, then one JSON object with all of them. The functions are
reused by bench/licence.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import base45
import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from certs.qr import qr_version
from certs.token import (
    LicenceClaims,
    SignerList,
    SignerTrust,
    StatusReference,
    TokenVerification,
    Verdict,
    encode_token,
    encode_tokens,
    verify_token,
)
from hsm_sim.api import KeyStore, KeyUsage
from pki.ca_models import ServicePurpose
from pki.timestamping import service_credential
from tests.helpers.node import build_node


@dataclasses.dataclass(frozen=True)
class VerificationRate:
    tokens_per_second: float  # median over rounds
    raw_ecdsa_per_second: float  # median over rounds, same run
    rounds: int
    per_round: int

    @property
    def ratio(self) -> float:
        return self.tokens_per_second / self.raw_ecdsa_per_second


@dataclasses.dataclass(frozen=True)
class IssuanceRate:
    single_per_second: float  # encode_token, one audited signature a token
    batch_per_second: float  # encode_tokens, an audit entry a token, one commit
    single_count: int
    batch_size: int
    batches: int


def sample_licence_claims(issued_at: dt.datetime, index: int) -> LicenceClaims:
    """A business licence with the six short fields a QR token carries."""
    return LicenceClaims(
        issuer="350100",
        issued_at=issued_at,
        expires_at=issued_at + dt.timedelta(days=180),
        licence_id=f"1.2.156.3005.2.11100000000013338W011.91350100M000100Y43.{index:011d}.001.0",
        type_code="11100000000013338W011",
        fields={
            "name": "福州市某某信息技术有限公司",
            "uscc": "91350100M000100Y43",
            "type": "有限责任公司（自然人投资或控股）",
            "legal_representative": "张三",
            "registered_capital": "壹佰万元整",
            "established": "2020-01-01",
        },
        status=StatusReference(index, "https://pki.example.gov.cn/status/350100-1"),
    )


def _raw_verifier(
    token: str, public_key: ec.EllipticCurvePublicKey
) -> Callable[[], None]:
    """A bare ECDSA verification of exactly what the token's signature covers."""
    message = cbor2.loads(zlib.decompress(base45.b45decode(token[4:]))).value
    protected, _, payload, signature = message
    signed = cbor2.dumps(["Signature1", protected, b"", payload])
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    algorithm = ec.ECDSA(hashes.SHA256())
    return lambda: public_key.verify(der, signed, algorithm)


def measure_offline_verification(
    tokens: Sequence[str],
    *,
    trust: SignerTrust,
    public_key: ec.EllipticCurvePublicKey,
    at: dt.datetime,
    check: Callable[[TokenVerification], Any] | None = None,
    rounds: int = 7,
    per_round: int = 2000,
) -> VerificationRate:
    """Verifications per second of `tokens` (cycled), `check` timed with each, against
    raw ECDSA verifications of the first token's signed bytes, rounds alternating."""
    raw = _raw_verifier(tokens[0], public_key)
    for token in tokens:
        result = verify_token(token, trust=trust, at=at)
        if result.verdict is not Verdict.VALID:
            raise RuntimeError(f"bench token does not verify: {result.reason}")
    schedule = [tokens[i % len(tokens)] for i in range(per_round)]
    ours_rates, raw_rates = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            raw()
        raw_rates.append(per_round / (time.perf_counter() - start))
        start = time.perf_counter()
        for token in schedule:
            result = verify_token(token, trust=trust, at=at)
            if check is not None:
                check(result)
        ours_rates.append(per_round / (time.perf_counter() - start))
    return VerificationRate(
        tokens_per_second=statistics.median(ours_rates),
        raw_ecdsa_per_second=statistics.median(raw_rates),
        rounds=rounds,
        per_round=per_round,
    )


def measure_token_issuance(
    keystore: KeyStore,
    key_label: str,
    certificate: x509.Certificate,
    *,
    issued_at: dt.datetime,
    single_count: int = 300,
    batch_size: int = 1000,
    batches: int = 3,
) -> IssuanceRate:
    """Tokens encoded per second through the key store, one by one and in batches."""
    key = keystore.private_key(key_label, usage=KeyUsage.TOKEN)
    claims = [
        sample_licence_claims(issued_at, i)
        for i in range(max(single_count, batch_size))
    ]
    start = time.perf_counter()
    for index in range(single_count):
        encode_token(claims[index], signer_key=key, signer_certificate=certificate)
    single = single_count / (time.perf_counter() - start)
    start = time.perf_counter()
    for _ in range(batches):
        encode_tokens(
            claims[:batch_size],
            keystore=keystore,
            key_label=key_label,
            signer_certificate=certificate,
        )
    batch = batches * batch_size / (time.perf_counter() - start)
    return IssuanceRate(
        single_per_second=single,
        batch_per_second=batch,
        single_count=single_count,
        batch_size=batch_size,
        batches=batches,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds and tokens (a smoke run)"
    )
    args = parser.parse_args()
    rounds, per_round, single, batch_size = (
        (3, 500, 100, 300)
        if args.quick
        else (
            7,
            2000,
            300,
            1000,
        )
    )
    with tempfile.TemporaryDirectory(prefix="yinxin-bench-token-") as scratch:
        node = build_node(Path(scratch) / "node")
        try:
            label, certificate, _ = service_credential(
                node.ca, ServicePurpose.DOCUMENT_SIGNER
            )
            issued_at = certificate.not_valid_before_utc + dt.timedelta(hours=1)
            tokens = encode_tokens(
                [sample_licence_claims(issued_at, i) for i in range(100)],
                keystore=node.keystore,
                key_label=label,
                signer_certificate=certificate,
            )
            verification = measure_offline_verification(
                tokens,
                trust=SignerList([certificate]),
                public_key=certificate.public_key(),
                at=issued_at + dt.timedelta(days=1),
                rounds=rounds,
                per_round=per_round,
            )
            issuance = measure_token_issuance(
                node.keystore,
                label,
                certificate,
                issued_at=issued_at,
                single_count=single,
                batch_size=batch_size,
            )
        finally:
            node.close()
    figures = {
        "verify_tokens_per_s": round(verification.tokens_per_second),
        "raw_ecdsa_p256_verify_per_s": round(verification.raw_ecdsa_per_second),
        "ratio": round(verification.ratio, 3),
        "issue_single_tokens_per_s": round(issuance.single_per_second),
        "issue_batch_tokens_per_s": round(issuance.batch_per_second),
        "batch_size": issuance.batch_size,
        "token_chars": len(tokens[0]),
        "qr_version_ecc_q": qr_version(tokens[0], "Q"),
    }
    print(
        f"offline verification: {figures['verify_tokens_per_s']}/s "
        "(decode + verify, no status lookup)"
    )
    print(f"raw ECDSA P-256 verification: {figures['raw_ecdsa_p256_verify_per_s']}/s")
    print(f"ratio: {figures['ratio']} (target >= 0.5)")
    print(
        f"tokens issued, one audited signature each: "
        f"{figures['issue_single_tokens_per_s']}/s"
    )
    print(
        f"tokens issued in batches of {issuance.batch_size} "
        "(an audit entry per token, one commit per batch): "
        f"{figures['issue_batch_tokens_per_s']}/s (target >= 2000)"
    )
    print(
        f"sample token: {figures['token_chars']} characters, "
        f"QR version {figures['qr_version_ecc_q']} at ECC Q"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
