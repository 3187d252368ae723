"""OCSP over HTTP from the real server, against the in-process response builder.

    .venv/bin/python bench/ocsp_http.py [--serials N] [--clients N] [--seconds S]

Makes a demo instance in a temporary directory (`init_instance`, the demo ceremony,
the public URL of the server it is about to start), issues `--serials` seal
certificates and pre-signs their OCSP responses, starts `yinxin serve` (gunicorn,
2 workers, the console script) on a free loopback port, and loads /pki/ocsp with
`--clients` threads, each keeping one HTTP/1.1 connection alive and POSTing no-nonce
requests for those serials in turn. Every response is parsed and must be successful.

Figures: `ocsp_http_per_s` (target >= 1,500 on 2 cores), `ocsp_build_per_s` (signing a
response with build_ocsp_response and the HSM key, in process) and `ocsp_http_ratio`
(the first over the second). bench/pki.py runs this too.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from hsm_sim.api import signing_context
from pki.ca import IssuanceRequest
from pki.certificates import AgencySubject, agency_subject_name
from pki.ocsp import GOOD, build_ocsp_response
from portal.config import SettingOverrides, resolve_settings
from portal.instance import init_instance
from portal.services import Services

YINXIN = Path(sys.executable).parent / "yinxin"
SUBJECT = agency_subject_name(
    AgencySubject(name="某某市市场监督管理局", uscc="91350100M000100Y43")
)
ROUND_SECONDS = 1.0
ROUNDS = 3


@dataclasses.dataclass(frozen=True)
class OcspHttpFigures:
    http_per_s: float
    build_per_s: float
    clients: int
    serials: int
    workers: int

    @property
    def ratio(self) -> float:
        return self.http_per_s / self.build_per_s


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _rate(operation: Callable[[], object]) -> float:
    """Operations per second: the median of a few timed rounds, after a warm-up call."""
    operation()
    rates = []
    for _ in range(ROUNDS):
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < ROUND_SECONDS:
            operation()
            count += 1
        rates.append(count / elapsed)
    return statistics.median(rates)


def prepare_node(home: Path, base_url: str, serials: int) -> tuple[list[bytes], float]:
    """A demo instance with `serials` seal certificates whose responses are pre-signed;
    the no-nonce OCSP requests for them, and the in-process build rate."""
    overrides = SettingOverrides(home=home, public_base_url=base_url)
    init_instance(resolve_settings(overrides, environ={}), demo=True)
    # Resolved again: the PIN file exists only now.
    services = Services(resolve_settings(overrides, environ={}))
    try:
        ca, revocation = services.certificate_authority(), services.revocation()
        issuer = ca.issuer("seal-ca")
        requests = []
        with signing_context(actor="bench"):
            for _ in range(serials):
                key = ec.generate_private_key(ec.SECP256R1()).public_key()
                issued = ca.issue(
                    IssuanceRequest(profile="seal", subject=SUBJECT, public_key=key)
                )
                builder = ocsp.OCSPRequestBuilder().add_certificate(
                    issued.certificate, issuer.certificate, hashes.SHA1()
                )
                requests.append(builder.build().public_bytes(Encoding.DER))
            revocation.presign_ocsp(
                issuer,
                [f"{ocsp.load_der_ocsp_request(r).serial_number:x}" for r in requests],
            )
            responder = revocation.responder(issuer)
            cert_id = responder.cert_id(
                ocsp.load_der_ocsp_request(requests[0]).serial_number
            )
            now = dt.datetime.now(dt.UTC)
            built = _rate(
                lambda: build_ocsp_response(
                    cert_id, responder=responder, status=GOOD, now=now
                )
            )
        return requests, built
    finally:
        services.close()


@contextmanager
def running_server(home: Path, port: int, workers: int, log: Path) -> Iterator[str]:
    """`yinxin serve` for `home` until the block ends; yields its base URL."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("YINXIN_")}
    with log.open("wb") as output:
        server = subprocess.Popen(
            [
                str(YINXIN), "serve", "--home", str(home), "--port", str(port),
                "--workers", str(workers), "--refresh-interval", "0",
            ],
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"yinxin serve exited:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=5):
                    break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise RuntimeError("yinxin serve did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


def load_ocsp(
    url: str, requests: list[bytes], *, clients: int, seconds: float
) -> float:
    """Successful OCSP responses per second from `url`/pki/ocsp, `clients` at once."""
    port = int(url.rsplit(":", 1)[1])
    counts = [0] * clients
    failures: list[str] = []
    start = threading.Barrier(clients + 1)
    stop_at: list[float] = []

    def client(number: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        position = number
        try:
            start.wait()
            while time.perf_counter() < stop_at[0]:
                connection.request(
                    "POST",
                    "/pki/ocsp",
                    requests[position % len(requests)],
                    {"Content-Type": "application/ocsp-request"},
                )
                response = connection.getresponse()
                body = response.read()
                position += clients
                if response.status != 200 or (
                    ocsp.load_der_ocsp_response(body).response_status
                    is not ocsp.OCSPResponseStatus.SUCCESSFUL
                ):
                    failures.append(f"HTTP {response.status}")
                    return
                counts[number] += 1
        except (OSError, ValueError, http.client.HTTPException) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    stop_at.append(began + seconds)
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"OCSP over HTTP failed: {failures[0]}")
    return sum(counts) / elapsed


def measure_ocsp_over_served_http(
    workdir: Path,
    *,
    serials: int = 200,
    clients: int = 8,
    seconds: float = 5.0,
    workers: int = 2,
) -> OcspHttpFigures:
    port = _free_port()
    home = workdir / "http-node"
    requests, built = prepare_node(home, f"http://127.0.0.1:{port}", serials)
    with running_server(home, port, workers, workdir / "http-node.log") as url:
        load_ocsp(url, requests, clients=clients, seconds=0.5)  # warm up the workers
        served = load_ocsp(url, requests, clients=clients, seconds=seconds)
    return OcspHttpFigures(
        http_per_s=served,
        build_per_s=built,
        clients=clients,
        serials=serials,
        workers=workers,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serials", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="yinxin-bench-ocsp-") as temporary:
        figures = measure_ocsp_over_served_http(
            Path(temporary),
            serials=arguments.serials,
            clients=arguments.clients,
            seconds=arguments.seconds,
            workers=arguments.workers,
        )
    lines = {
        "ocsp_http_per_s": (
            figures.http_per_s,
            "OCSP responses/s over HTTP (>= 1,500)",
        ),
        "ocsp_build_per_s": (figures.build_per_s, "OCSP responses built/s in process"),
        "ocsp_http_ratio": (figures.ratio, "ocsp_http_ratio (HTTP / in-process build)"),
    }
    for value, text in lines.values():
        shown = f"{value:,.0f}" if value >= 100 else f"{value:.3f}"
        print(f"{text:<72} {shown:>10}", flush=True)
    print(
        json.dumps(
            {name: round(value, 3) for name, (value, _) in lines.items()}
            | {
                "clients": figures.clients,
                "serials": figures.serials,
                "workers": figures.workers,
            }
        )
    )


if __name__ == "__main__":
    main()
