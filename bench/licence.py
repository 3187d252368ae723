"""Licence figures of the issue's acceptance 5, on a real region node, in one run.

    .venv/bin/python bench/licence.py [--quick]

Builds a throw-away node (SQLite, soft HSM, audit log, CA ceremony), makes the agency's
official seal through the seal registry and issues licences through the licence
registry (certs.issuance), as the portal does. Then:

- offline LC1 verification: tokens of real issued licences through `verify_token`
  plus the status lookup in a cached, verified status list (certs.verify's
  StatusListCache, as an offline verifier keeps it), against raw ECDSA P-256
  verifications of the same signed bytes in alternating rounds of the same run
  (bench/licence_token.py's measure functions; `ratio` = ours / raw, target >= 0.5);
- LC1 tokens issued per second through the HSM, one by one and in batches
  (`encode_tokens`, an audit entry a token, one commit a batch; target >= 2,000/s);
- full licences issued per second: validation, identifier, status index, token,
  SD-JWT, PDF, the official seal stamped at PAdES B-LT with the node's TSA and
  revocation data, stored in the database; one by one, and through the batch path
  (`issue_licences`, tokens signed in one batch);
- the QR version (ECC Q) of each shipped type issued with its example data.

Prints one line per figure, then one JSON object with all of them (the last line).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.licence_token import (
    measure_offline_verification,
    measure_token_issuance,
)
from certs.issuance import LicenceRegistry, LicenceRequest
from certs.status import StatusType
from certs.token import TokenVerification, Verdict
from certs.types import default_licence_types
from certs.verify import StatusListCache
from pki.ca_models import ServicePurpose
from pki.timestamping import service_credential
from seal.image import SealKind
from seal.lifecycle import Principal, SealRegistry, SealRequest
from seal.trust_services import node_trust_services
from tests.helpers.node import AGENCY_USCC, build_node

REGION = "350100"
BASE_URL = "http://pki.example.gov.cn"
EXAMPLES = ROOT / "docs" / "examples" / "licences"
TOUR_GUIDE = "11100000YXML00000Q003"


BENCH = Principal.of(operator="bench")


def example(type_code: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{type_code}.json").read_text(encoding="utf-8"))


def guide_card(serial: int) -> dict[str, Any]:
    """A tour guide card: serial licence numbers, so any number can be issued."""
    data = example(TOUR_GUIDE)
    data["card_number"] = f"D-3501-{serial:06d}"
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds and licences (a smoke run)"
    )
    args = parser.parse_args()
    rounds, per_round, single, batch_size, full = (
        (3, 500, 100, 300, 5) if args.quick else (7, 2000, 300, 1000, 40)
    )
    with tempfile.TemporaryDirectory(prefix="yinxin-bench-licence-") as scratch:
        node = build_node(Path(scratch) / "node")
        try:
            figures = run(
                node,
                rounds=rounds,
                per_round=per_round,
                single=single,
                batch_size=batch_size,
                full=full,
            )
        finally:
            node.close()
    print(
        f"offline LC1 verification (decode + verify + cached status lookup): "
        f"{figures['verify_tokens_per_s']}/s"
    )
    print(f"raw ECDSA P-256 verification: {figures['raw_ecdsa_p256_verify_per_s']}/s")
    print(f"ratio: {figures['ratio']} (target >= 0.5)")
    print(
        f"LC1 tokens issued one by one: {figures['issue_single_tokens_per_s']}/s; "
        f"in batches of {figures['batch_size']}: {figures['issue_batch_tokens_per_s']}/s "
        "(target >= 2000)"
    )
    print(
        f"full licences issued (PDF + B-LT seal + token + SD-JWT + database): "
        f"{figures['licences_per_s']}/s one by one, "
        f"{figures['licences_batch_per_s']}/s through the batch path "
        f"({figures['licences_issued']} each)"
    )
    for code, version in figures["qr_version_by_type"].items():
        print(f"QR version of {code} with its example data: {version} (ECC Q)")
    print(json.dumps(figures, ensure_ascii=False))


def run(
    node: Any, *, rounds: int, per_round: int, single: int, batch_size: int, full: int
) -> dict[str, Any]:
    seals = SealRegistry(ra=node.ra, revocation=node.revocation)
    seals.make_seal(SealRequest(agency_uscc=AGENCY_USCC, kind=SealKind.OFFICIAL))
    licences = LicenceRegistry(
        seals=seals,
        services=node_trust_services(node.timestamps, node.revocation),
        region=REGION,
        base_url=BASE_URL,
    )

    qr_versions = {}
    for code in default_licence_types():
        issued = licences.issue_licence(
            code, AGENCY_USCC, example(code), actor="bench", principal=BENCH
        )
        qr_versions[code] = issued.qr_version

    # Warm up once (fonts, the stamper's reserved size), then time.
    licences.issue_licence(
        TOUR_GUIDE, AGENCY_USCC, guide_card(0), actor="bench", principal=BENCH
    )
    start = time.perf_counter()
    issued_tokens = [
        licences.issue_licence(
            TOUR_GUIDE, AGENCY_USCC, guide_card(serial), actor="bench", principal=BENCH
        ).token
        for serial in range(1, full + 1)
    ]
    licences_per_s = full / (time.perf_counter() - start)
    requests = [
        LicenceRequest(TOUR_GUIDE, AGENCY_USCC, guide_card(serial))
        for serial in range(full + 1, 2 * full + 1)
    ]
    start = time.perf_counter()
    batch = licences.issue_licences(requests, actor="bench", principal=BENCH)
    licences_batch_per_s = full / (time.perf_counter() - start)
    if batch.failed:
        raise RuntimeError(f"batch issuance failed: {batch.failed[0].reason}")

    # Offline verification of the issued tokens, with the status looked up in a cached
    # copy of the node's signed list (verified once when it was added).
    trust = licences.signer_trust()
    signer = next(iter(trust))
    at = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    cache = StatusListCache(trust=trust)
    status_uri = batch.issued[0].record.status_list_uri
    cache.add(
        licences.status_list_token(status_uri.rsplit("/", 1)[1]), uri=status_uri, now=at
    )

    def status_lookup(result: TokenVerification) -> None:
        licence = result.licence
        if (
            result.verdict is not Verdict.VALID
            or licence is None
            or licence.status is None
        ):
            raise RuntimeError(f"bench token does not verify: {result.reason}")
        answer = cache.lookup(licence.status, issuer=licence.issuer, now=at)
        if answer.status is not StatusType.VALID:
            raise RuntimeError(f"bench licence status: {answer.reason}")

    verification = measure_offline_verification(
        issued_tokens,
        trust=trust,
        public_key=signer.certificate.public_key(),
        at=at,
        check=status_lookup,
        rounds=rounds,
        per_round=per_round,
    )
    document_signer = signer.certificate
    label, _, _ = service_credential(node.ca, ServicePurpose.DOCUMENT_SIGNER)
    issuance = measure_token_issuance(
        node.keystore,
        label,
        document_signer,
        issued_at=document_signer.not_valid_before_utc + dt.timedelta(hours=1),
        single_count=single,
        batch_size=batch_size,
    )
    return {
        "verify_tokens_per_s": round(verification.tokens_per_second),
        "raw_ecdsa_p256_verify_per_s": round(verification.raw_ecdsa_per_second),
        "ratio": round(verification.ratio, 3),
        "issue_single_tokens_per_s": round(issuance.single_per_second),
        "issue_batch_tokens_per_s": round(issuance.batch_per_second),
        "batch_size": issuance.batch_size,
        "licences_per_s": round(licences_per_s, 2),
        "licences_batch_per_s": round(licences_batch_per_s, 2),
        "licences_issued": full,
        "qr_version_by_type": qr_versions,
    }


if __name__ == "__main__":
    main()
