"""How fast the certificate authority issues, builds CRLs and answers OCSP (issue 3,
acceptance 5), all in one run on a node in a temporary directory (SQLite, soft HSM,
the real SQL audit log, the demo ceremony).

    .venv/bin/python bench/pki.py [--crl-entries N] [--ocsp-url URL]

Figures, one line each, then one JSON object with all of them on the last line:
- issuance: seal certificates issued per second through the whole lint gate (build,
  throwaway signature, pkilint PKIX + ETSI legal person, our lints, reserve the serial,
  one HSM signature, store) against linting the same certificates alone
  (`issue_vs_lint_ratio`, target >= 0.6);
- a full CRL of `--crl-entries` revoked certificates (default 1,000,000, bulk-inserted):
  seconds to publish it (target <= 20), with the database read and the build-and-sign
  parts;
- on a CA with 100,000 revoked certificates, seconds from revoke() until both OCSP and
  the delta CRL show the revocation (target <= 1);
- OCSP responses per second in process: pre-signed (no nonce, SHA-1 CertID) through
  RevocationService.respond_ocsp, and live signing with build_ocsp_response alone
  (`ocsp_presigned_vs_build_ratio`); with `--ocsp-url`, also over HTTP with concurrent
  clients against a running server (`ocsp_http_vs_build_ratio`; target >= 1,500/s);
  without it, bench/ocsp_http.py starts `yinxin serve` (gunicorn, 2 workers) on a
  node of its own and loads it (`ocsp_http_per_s`, `ocsp_http_ratio`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from sqlalchemy import LargeBinary, case, func, insert, literal, select, update

from bench.ocsp_http import measure_ocsp_over_served_http
from hsm_sim.audit import SqlAuditLog
from hsm_sim.soft_token import MIN_SCRYPT_LOG2_N, init_soft_token
from hsm_sim.spec import open_keystore
from hsm_sim.storage import UTCDateTime
from pki.ca import CertificateAuthority, IssuanceRequest, IssuedCertificate
from pki.ca_models import CaRow, CertificateRow, CertificateState, RevocationReason
from pki.ceremony import run_ceremony
from pki.ceremony_config import DEMO_CEREMONY_PATH, load_ceremony_config
from pki.certificates import AgencySubject, NodeEndpoints, agency_subject_name
from pki.lint import lint_certificate
from pki.ocsp import GOOD, build_ocsp_response
from pki.revocation import RevocationService
from portal.db import make_engine, session_factory, upgrade_database

USER_PIN, SO_PIN = "bench-user-1", "bench-officer-2"
SUBJECT = agency_subject_name(
    AgencySubject(name="某某市市场监督管理局", uscc="91350100M000100Y43")
)
ISSUANCE_ROUNDS = 5
ISSUED_PER_ROUND = 40
LATENCY_REVOKED = 100_000
PRESIGNED_SERIALS = 200
ROUND_SECONDS = 1.0
ROUNDS = 3


class Node:
    """A node in `home`: migrated SQLite database, soft token, audit log, ceremony."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True)
        self.url = f"sqlite:///{home / 'yinxin.sqlite3'}"
        upgrade_database(self.url)
        init_soft_token(
            home / "hsm",
            user_pin=USER_PIN,
            so_pin=SO_PIN,
            scrypt_log2_n=MIN_SCRYPT_LOG2_N,
        )
        self.engine = make_engine(self.url)
        self.sessions = session_factory(self.engine)
        self.audit = SqlAuditLog(self.url)
        self.keystore = open_keystore(
            f"soft:{home / 'hsm'}", pin=USER_PIN, audit=self.audit
        )
        self.ca = CertificateAuthority(
            keystore=self.keystore,
            sessions=self.sessions,
            endpoints=NodeEndpoints("http://pki.example.gov.cn"),
        )
        run_ceremony(load_ceremony_config(DEMO_CEREMONY_PATH), ca=self.ca)
        self.revocation = RevocationService(ca=self.ca)

    def close(self) -> None:
        self.keystore.close()
        self.audit.close()
        self.engine.dispose()


def _seal_request() -> IssuanceRequest:
    return IssuanceRequest(
        profile="seal",
        subject=SUBJECT,
        public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
    )


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def measure(operation: Callable[[], object]) -> float:
    """Operations per second: the median of a few timed rounds, after a warm-up call."""
    operation()
    rates = []
    for _ in range(ROUNDS):
        count = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < ROUND_SECONDS:
            operation()
            count += 1
        rates.append(count / elapsed)
    return statistics.median(rates)


# -- (a) issuance through the lint gate vs the lint alone ------------------------------


def measure_issuance(node: Node) -> tuple[float, float, float]:
    """(certificates issued/s through the gate, the same certificates linted/s alone,
    and the median of the per-round ratios).

    Issuing and linting alternate, round by round, so that load from other processes
    on the machine weighs on both sides of each ratio alike.
    """
    profile = node.ca.profile("seal")
    issuer = node.ca.issuer("seal-ca").certificate
    node.ca.issue(_seal_request())  # warm pkilint's validators and the throwaway key
    issue_rates, lint_rates, ratios = [], [], []
    for _ in range(ISSUANCE_ROUNDS):
        requests = [_seal_request() for _ in range(ISSUED_PER_ROUND)]
        started = time.perf_counter()
        issued: list[IssuedCertificate] = [
            node.ca.issue(request) for request in requests
        ]
        issue_rate = _rate(len(issued), time.perf_counter() - started)
        started = time.perf_counter()
        for certificate in issued:
            report = lint_certificate(
                certificate.certificate, profile=profile, issuer=issuer
            )
            assert report.passed, report.blocking
        lint_rate = _rate(len(issued), time.perf_counter() - started)
        issue_rates.append(issue_rate)
        lint_rates.append(lint_rate)
        ratios.append(issue_rate / lint_rate)
    return (
        statistics.median(issue_rates),
        statistics.median(lint_rates),
        statistics.median(ratios),
    )


# -- bulk revoked certificates ---------------------------------------------------------


def bulk_revoke(node: Node, issuer_name: str, count: int) -> None:
    """Insert `count` revoked certificates under `issuer_name`, in one INSERT ... SELECT
    over a recursive CTE of row numbers: the database makes the rows, Python none.

    Serials are 2**158 + n, in hex; reasons cycle through the final ones.
    """
    issuer = node.ca.issuer(issuer_name)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    reasons = [
        r for r in RevocationReason if r is not RevocationReason.CERTIFICATE_HOLD
    ]
    numbers = select(literal(0).label("n")).cte("numbers", recursive=True)
    numbers = numbers.union_all(select(numbers.c.n + 1).where(numbers.c.n < count - 1))
    if node.engine.dialect.name == "sqlite":
        serial = func.printf("4%039x", numbers.c.n)
    else:
        serial = literal("4") + func.lpad(func.to_hex(numbers.c.n), 39, "0")
    columns = {
        "issuer_id": literal(issuer.id),
        "serial": serial,
        "profile": literal("seal"),
        "subject": literal("CN=bulk"),
        "state": literal(CertificateState.ISSUED.value),
        "lint_der": literal(b"", LargeBinary),
        "tolerated_findings": literal(""),
        "not_before": literal(now, UTCDateTime()),
        "not_after": literal(now + dt.timedelta(days=365), UTCDateTime()),
        "created_at": literal(now, UTCDateTime()),
        "revoked_at": literal(now, UTCDateTime()),
        "revocation_reason": case(
            *(
                (numbers.c.n % len(reasons) == i, literal(r.value))
                for i, r in enumerate(reasons)
            )
        ),
        "revocation_sequence": numbers.c.n + 1,  # plus the sequence taken below
    }
    with node.engine.begin() as connection:
        start = (
            connection.execute(
                update(CaRow)
                .where(CaRow.id == issuer.id)
                .values(revocation_sequence=CaRow.revocation_sequence + count)
                .returning(CaRow.revocation_sequence)
            ).scalar_one()
            - count
        )
        columns["revocation_sequence"] = numbers.c.n + (start + 1)
        connection.execute(
            insert(CertificateRow.__table__).from_select(
                list(columns), select(*columns.values()).select_from(numbers)
            )
        )


@contextlib.contextmanager
def timed_methods(*names: str) -> Iterator[dict[str, float]]:
    """Seconds spent in RevocationService methods `names` while the block runs."""
    spent = dict.fromkeys(names, 0.0)
    descriptors = {name: RevocationService.__dict__[name] for name in names}

    def timing(name: str, function: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started

        return wrapper

    for name, descriptor in descriptors.items():
        if isinstance(descriptor, staticmethod):
            setattr(
                RevocationService, name, staticmethod(timing(name, descriptor.__func__))
            )
        else:
            setattr(RevocationService, name, timing(name, descriptor))
    try:
        yield spent
    finally:
        for name, descriptor in descriptors.items():
            setattr(RevocationService, name, descriptor)


# -- (b) a large full CRL ---------------------------------------------------------------


def measure_large_crl(workdir: Path, entries: int) -> dict[str, float]:
    node = Node(workdir / "crl-node")
    try:
        started = time.perf_counter()
        bulk_revoke(node, "seal-ca", entries)
        inserted = time.perf_counter() - started
        with timed_methods("_entries", "_sign_crl") as spent:
            started = time.perf_counter()
            info = node.revocation.publish_crl("seal-ca")
            total = time.perf_counter() - started
        assert info.entry_count == entries, info.entry_count
        return {
            "bulk_insert_s": inserted,
            "publish_s": total,
            "read_s": spent["_entries"],
            "sign_s": spent["_sign_crl"],
            "der_mb": len(info.der) / 1e6,
        }
    finally:
        node.close()


# -- (c) revocation to OCSP and delta CRL ------------------------------------------------


def _ocsp_request(certificate: x509.Certificate, issuer: x509.Certificate) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        certificate, issuer, hashes.SHA1()
    )
    return builder.build().public_bytes(Encoding.DER)


def measure_revocation_latency(workdir: Path, revoked: int) -> dict[str, float]:
    node = Node(workdir / "latency-node")
    try:
        bulk_revoke(node, "seal-ca", revoked)
        node.revocation.publish_crl("seal-ca")
        issued = node.ca.issue(_seal_request())
        request = _ocsp_request(
            issued.certificate, node.ca.issuer("seal-ca").certificate
        )
        node.revocation.respond_ocsp(request)  # pre-signed "good", as in service
        started = time.perf_counter()
        node.revocation.revoke(issued.serial, RevocationReason.KEY_COMPROMISE)
        revoke_s = time.perf_counter() - started
        response = ocsp.load_der_ocsp_response(node.revocation.respond_ocsp(request))
        delta = x509.load_der_x509_crl(
            node.revocation.latest_crl("seal-ca", delta=True).der
        )
        visible_s = time.perf_counter() - started
        assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert (
            delta.get_revoked_certificate_by_serial_number(
                issued.certificate.serial_number
            )
            is not None
        )
        return {"revoke_s": revoke_s, "visible_s": visible_s}
    finally:
        node.close()


# -- (d) OCSP -------------------------------------------------------------------------


def presigned_requests(node: Node, count: int) -> list[bytes]:
    """No-nonce SHA-1 requests for `count` new certificates, their responses pre-signed."""
    issuer = node.ca.issuer("seal-ca")
    requests = []
    for _ in range(count):
        issued = node.ca.issue(_seal_request())
        requests.append(_ocsp_request(issued.certificate, issuer.certificate))
    node.revocation.presign_ocsp(
        issuer, [f"{ocsp.load_der_ocsp_request(r).serial_number:x}" for r in requests]
    )
    return requests


def measure_ocsp_in_process(node: Node, requests: list[bytes]) -> tuple[float, float]:
    """(pre-signed responses/s through respond_ocsp, live build_ocsp_response/s)."""
    cycle = iter(requests * 10_000)
    presigned = measure(lambda: node.revocation.respond_ocsp(next(cycle)))
    issuer = node.ca.issuer("seal-ca")
    responder = node.revocation.responder(issuer)
    cert_id = responder.cert_id(ocsp.load_der_ocsp_request(requests[0]).serial_number)
    now = dt.datetime.now(dt.UTC)
    built = measure(
        lambda: build_ocsp_response(cert_id, responder=responder, status=GOOD, now=now)
    )
    return presigned, built


def measure_ocsp_over_http(
    base_url: str, requests: list[bytes], *, clients: int = 8, seconds: float = 5.0
) -> float:
    """OCSP responses/s from a running server's `/pki/ocsp` (POST), `clients` at once.

    Each client keeps one HTTP/1.1 connection open and cycles through `requests`; every
    response must be a successful OCSP response.
    """
    parts = urlsplit(base_url)
    path = (parts.path.rstrip("/") or "") + "/pki/ocsp"
    counts = [0] * clients
    failures: list[str] = []
    deadline = time.perf_counter() + seconds

    def client(number: int) -> None:
        connection = http.client.HTTPConnection(
            parts.hostname, parts.port or 80, timeout=10
        )
        try:
            position = number
            while time.perf_counter() < deadline:
                body = requests[position % len(requests)]
                position += 1
                connection.request(
                    "POST", path, body, {"Content-Type": "application/ocsp-request"}
                )
                response = connection.getresponse()
                der = response.read()
                if response.status != 200 or (
                    ocsp.load_der_ocsp_response(der).response_status
                    is not ocsp.OCSPResponseStatus.SUCCESSFUL
                ):
                    failures.append(f"HTTP {response.status}")
                    return
                counts[number] += 1
        except (OSError, ValueError, http.client.HTTPException) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    threads = [
        threading.Thread(target=client, args=(number,)) for number in range(clients)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"OCSP over HTTP failed: {failures[0]}")
    return sum(counts) / elapsed


# -- the run -------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--crl-entries", type=int, default=1_000_000, help="size of the large CRL"
    )
    parser.add_argument(
        "--latency-revoked",
        type=int,
        default=LATENCY_REVOKED,
        help="revoked certificates on the CA when the revocation latency is measured",
    )
    parser.add_argument(
        "--ocsp-url",
        help="base URL of a running node (its /pki/ocsp is measured over HTTP)",
    )
    parser.add_argument("--ocsp-clients", type=int, default=8)
    arguments = parser.parse_args(argv)

    figures: dict[str, float | int | str | None] = {}

    def report(name: str, value: float | None, text: str) -> None:
        figures[name] = None if value is None else round(value, 3 if value < 100 else 0)
        shown = (
            "n/a"
            if value is None
            else (f"{value:,.0f}" if value >= 100 else f"{value:.3f}")
        )
        print(f"{text:<72} {shown:>10}", flush=True)

    with tempfile.TemporaryDirectory(prefix="yinxin-bench-pki-") as temporary:
        workdir = Path(temporary)
        node = Node(workdir / "node")
        try:
            issue_rate, lint_rate, ratio = measure_issuance(node)
            report(
                "issue_per_s",
                issue_rate,
                "seal certificates issued/s through the lint gate",
            )
            report(
                "lint_per_s",
                lint_rate,
                "the same certificates linted/s (pkilint + own lints) alone",
            )
            report(
                "issue_vs_lint_ratio",
                ratio,
                "issue_vs_lint_ratio, median of rounds (target >= 0.6)",
            )

            requests = presigned_requests(node, PRESIGNED_SERIALS)
            presigned, built = measure_ocsp_in_process(node, requests)
            report(
                "ocsp_presigned_per_s",
                presigned,
                "OCSP pre-signed responses/s via respond_ocsp, in process",
            )
            report(
                "ocsp_build_per_s",
                built,
                "OCSP responses signed/s by build_ocsp_response alone (HSM key)",
            )
            report(
                "ocsp_presigned_vs_build_ratio",
                presigned / built,
                "ocsp_presigned_vs_build_ratio",
            )
            if arguments.ocsp_url:
                http_rate = measure_ocsp_over_http(
                    arguments.ocsp_url, requests, clients=arguments.ocsp_clients
                )
                report(
                    "ocsp_http_per_s",
                    http_rate,
                    "OCSP responses/s over HTTP (target >= 1,500)",
                )
                report(
                    "ocsp_http_vs_build_ratio",
                    http_rate / built,
                    "ocsp_http_vs_build_ratio",
                )
        finally:
            node.close()

        if not arguments.ocsp_url:
            served = measure_ocsp_over_served_http(
                workdir / "served", clients=arguments.ocsp_clients
            )
            report(
                "ocsp_http_per_s",
                served.http_per_s,
                "OCSP responses/s over HTTP, yinxin serve, 2 workers (target >= 1,500)",
            )
            report(
                "ocsp_http_ratio",
                served.http_per_s / built,
                "ocsp_http_ratio (HTTP / build_ocsp_response in process)",
            )

        latency = measure_revocation_latency(workdir, arguments.latency_revoked)
        report(
            "revoke_s",
            latency["revoke_s"],
            f"revoke() on a CA with {arguments.latency_revoked:,} revoked, seconds",
        )
        report(
            "revocation_visible_s",
            latency["visible_s"],
            "seconds until OCSP and the delta CRL show it (target <= 1)",
        )

        crl = measure_large_crl(workdir, arguments.crl_entries)
        figures["crl_entries"] = arguments.crl_entries
        report(
            "crl_bulk_insert_s",
            crl["bulk_insert_s"],
            f"bulk insert of {arguments.crl_entries:,} revoked rows, seconds",
        )
        report(
            "crl_publish_s",
            crl["publish_s"],
            "publish_crl: full CRL, seconds (target <= 20)",
        )
        report(
            "crl_read_s",
            crl["read_s"],
            "  of which reading the entries from the database",
        )
        report("crl_sign_s", crl["sign_s"], "  of which building and signing the CRL")
        report("crl_der_mb", crl["der_mb"], "CRL size, MB")
    print(json.dumps(figures, ensure_ascii=False))


if __name__ == "__main__":
    main()
