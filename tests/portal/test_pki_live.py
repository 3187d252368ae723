"""The CA against a real server: `yinxin serve` on loopback, checked by standard clients.

One instance per module, initialised with the demo ceremony and a public base URL that
is this server's own, so the AIA, CRL distribution point and OCSP URLs inside the
certificates lead back to it. openssl (verify, ocsp, ts) and pyhanko-certvalidator
fetch what they need over HTTP, exactly as relying parties would (issue 3, acceptance
2, 3 and the HTTP part of 6).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import http.client
import json
import os
import re
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtensionOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from pyhanko_certvalidator.fetchers.aiohttp_fetchers.crl_client import (
    AIOHttpCRLFetcher,
)
from pyhanko_certvalidator.fetchers.api import Fetchers
from pyhanko_certvalidator.fetchers.common_utils import enumerate_delivery_point_urls
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from pyhanko_certvalidator.util import issuer_serial

from portal.cli import cli
from portal.config import SettingOverrides, resolve_settings
from portal.instance import init_instance
from tests.conftest import require_tool
from tests.portal.live_server import (
    YINXIN_VARIABLES,
    LiveServer,
    free_loopback_port,
    start_server,
)

OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"
DOCUMENT_SIGNING_EKU = "1.3.6.1.5.5.7.3.36"  # RFC 9336; asn1crypto has no name for it
REVOCATION_WAIT_S = 5.0  # the web workers cache a pre-signed response for 0.5 s


@dataclasses.dataclass
class Live:
    home: Path
    server: LiveServer
    uscc: str
    work: Path

    @property
    def url(self) -> str:
        return self.server.url

    def yinxin(self, *args: str) -> dict[str, Any]:
        """Run `yinxin ARGS --home HOME --json` in process; its JSON output."""
        result = CliRunner().invoke(
            cli,
            [*args, "--home", str(self.home), "--json"],
            env=dict.fromkeys(YINXIN_VARIABLES),
        )
        assert result.exit_code == 0, result.output
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def issue(self, name: str, profile: str = "seal", *extra: str) -> Path:
        """A certificate issued with a new HSM key; the PEM file (leaf, then chain)."""
        out = self.work / f"{name}.pem"
        if "--csr" not in extra:
            extra = ("--generate", "--label", name, *extra)
        agency = ("--agency", self.uscc) if profile in ("seal", "api-client") else ()
        self.yinxin(
            "ca", "issue", "--profile", profile, *agency, *extra, "--out", str(out)
        )
        return out

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            data: bytes = response.read()
            return data

    def file(self, name: str, data: bytes) -> Path:
        path = self.work / name
        path.write_bytes(data)
        return path


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    work = tmp_path_factory.mktemp("pki-live")
    port = free_loopback_port()
    home = work / "instance"
    settings = resolve_settings(
        SettingOverrides(home=home, public_base_url=f"http://127.0.0.1:{port}"),
        environ={},
    )
    result = init_instance(settings, demo=True)
    assert result.demo is not None
    server = start_server(
        home, port, work / "server.log", "--workers", "2", "--refresh-interval", "0"
    )
    try:
        assert server.wait_until_healthy()[0] == 200
        node = Live(home=home, server=server, uscc=result.demo.agency_uscc, work=work)
        node.file("root.pem", node.get("/pki/ca/root.pem"))
        yield node
    finally:
        server.kill()


def openssl(live: Live, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("openssl"), *args],
        cwd=live.work,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def certificates(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def serial_of(path: Path) -> str:
    return format(certificates(path)[0].serial_number, "x")


# -- acceptance 2: openssl verify, openssl ocsp, openssl ts --------------------------


@pytest.mark.parametrize(
    ("profile", "key_path"),
    [
        ("seal", "generate"),
        ("document-signer", "generate"),
        ("api-client", "csr"),
        ("seal", "csr"),
    ],
)
def test_openssl_verifies_each_issued_chain(
    live: Live, profile: str, key_path: str
) -> None:
    name = f"chain-{profile}-{key_path}"
    extra: tuple[str, ...] = ()
    if key_path == "csr":
        made = openssl(
            live,
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", f"{name}.key", "-subj", "/CN=ignored by the RA",
            "-out", f"{name}.csr",
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        extra = ("--csr", str(live.work / f"{name}.csr"))

    out = live.issue(name, profile, *extra)

    leaf, *chain = certificates(out)
    assert chain and all(c.issuer != c.subject for c in chain)  # no root bundled
    verified = openssl(
        live, "verify", "-CAfile", "root.pem", "-untrusted", out.name, out.name
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout == f"{out.name}: OK\n"
    access = leaf.extensions.get_extension_for_oid(
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS
    ).value
    urls = {d.access_method: d.access_location.value for d in access}
    issuer_name = next(
        ca["name"]
        for ca in live.yinxin("ca", "list")["cas"]
        if ca["subject"] == chain[0].subject.rfc4514_string()
    )
    assert urls[AuthorityInformationAccessOID.CA_ISSUERS] == (
        f"{live.url}/pki/ca/{issuer_name}.crt"
    )
    assert urls[AuthorityInformationAccessOID.OCSP] == f"{live.url}/pki/ocsp"
    # What the AIA names is what the server hands out.
    assert live.get(f"/pki/ca/{issuer_name}.crt") == chain[0].public_bytes(
        serialization.Encoding.DER
    )


def crl_pem(live: Live, name: str) -> str:
    """The CRL at /pki/crl/NAME.crl, fetched over HTTP, as a PEM file name."""
    crl = x509.load_der_x509_crl(live.get(f"/pki/crl/{name}.crl"))
    live.file(f"{name}.crl.pem", crl.public_bytes(serialization.Encoding.PEM))
    return f"{name}.crl.pem"


def test_after_revocation_openssl_crl_check_fails_with_the_crl_from_http(
    live: Live,
) -> None:
    out = live.issue("crl-check")
    chain = live.file("crl-check-chain.pem", live.get("/pki/ca/seal-ca.pem"))

    def verify(*options: str) -> subprocess.CompletedProcess[str]:
        return openssl(
            live, "verify", "-CAfile", "root.pem", "-untrusted", chain.name,
            "-crl_check", *options, out.name,
        )  # fmt: skip

    def with_crls_from_http() -> subprocess.CompletedProcess[str]:
        return verify(
            "-use_deltas",
            "-CRLfile", crl_pem(live, "seal-ca"),
            "-CRLfile", crl_pem(live, "seal-ca-delta"),
        )  # fmt: skip

    before = with_crls_from_http()
    assert before.returncode == 0, before.stdout + before.stderr

    revoked = live.yinxin("ca", "revoke", serial_of(out), "--reason", "keyCompromise")
    assert revoked["changed"] is True and revoked["reason"] == "keyCompromise"

    # The revocation is in the delta CRL at once (the full CRL follows on schedule).
    after = with_crls_from_http()
    assert after.returncode != 0
    assert (
        "error 23 at 0 depth lookup: certificate revoked" in after.stdout + after.stderr
    )

    # A new full CRL, fetched by openssl itself from the certificate's CRL DP.
    live.yinxin("ca", "crl", "--name", "seal-ca", "--out", str(live.work / "seal.crl"))
    downloaded = verify("-crl_download")
    assert downloaded.returncode != 0
    assert (
        "error 23 at 0 depth lookup: certificate revoked"
        in downloaded.stdout + downloaded.stderr
    )
    # gunicorn writes its access log line after the response: give it a moment.
    deadline = time.monotonic() + 5
    while '"GET /pki/crl/seal-ca.crl HTTP/1.0" 200' not in live.server.log():
        assert time.monotonic() < deadline, live.server.log()
        time.sleep(0.05)


def ocsp_status(live: Live, *target: str, nonce: bool) -> str:
    """What `openssl ocsp -url` says about `target`, after checking the response."""
    result = openssl(
        live, "ocsp", "-url", f"{live.url}/pki/ocsp",
        "-issuer", "seal-ca.pem", *target,
        "-CAfile", "root.pem", "-verify_other", "seal-ca.pem",
        "-nonce" if nonce else "-no_nonce",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Response verify OK" in result.stderr, result.stderr
    assert "WARNING: no nonce in response" not in result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("nonce", [False, True], ids=["no-nonce", "nonce"])
def test_openssl_ocsp_says_good_then_revoked_with_the_reason_and_unknown(
    live: Live, nonce: bool
) -> None:
    live.file("seal-ca.pem", live.get("/pki/ca/seal-ca.pem"))
    out = live.issue(f"ocsp-{'nonce' if nonce else 'plain'}")

    assert f"{out.name}: good" in ocsp_status(live, "-cert", out.name, nonce=nonce)

    live.yinxin("ca", "revoke", serial_of(out), "--reason", "affiliationChanged")

    deadline = time.monotonic() + REVOCATION_WAIT_S
    while f"{out.name}: good" in (
        said := ocsp_status(live, "-cert", out.name, nonce=nonce)
    ):
        assert time.monotonic() < deadline, "OCSP still says good"
        time.sleep(0.1)
    assert f"{out.name}: revoked" in said
    assert "Reason: affiliationChanged" in said

    made_up = ocsp_status(live, "-serial", "0x1234567890abcdef", nonce=nonce)
    assert "0x1234567890abcdef: unknown" in made_up


def test_openssl_ts_query_posted_to_the_tsa_verifies(live: Live) -> None:
    live.file("document.txt", "某某市市场监督管理局 盖章文件\n".encode())
    live.file("infrastructure-ca.pem", live.get("/pki/ca/infrastructure-ca.pem"))
    query = openssl(
        live, "ts", "-query", "-data", "document.txt", "-sha256", "-cert",
        "-out", "document.tsq",
    )  # fmt: skip
    assert query.returncode == 0, query.stderr

    request = urllib.request.Request(
        f"{live.url}/pki/tsa",
        data=(live.work / "document.tsq").read_bytes(),
        headers={"Content-Type": "application/timestamp-query"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"] == "application/timestamp-reply"
        live.file("document.tsr", response.read())

    verified = openssl(
        live, "ts", "-verify", "-in", "document.tsr", "-queryfile", "document.tsq",
        "-CAfile", "root.pem", "-untrusted", "infrastructure-ca.pem",
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "Verification: OK" in verified.stdout


# -- acceptance 3: pyhanko-certvalidator, revocation checked live --------------------


def asn1_certificates(path: Path) -> list[asn1_x509.Certificate]:
    return [
        asn1_x509.Certificate.load(der)
        for _, _, der in asn1_pem.unarmor(path.read_bytes(), multiple=True)
    ]


class _FreshestCrlFetcher(AIOHttpCRLFetcher):
    """pyhanko fetches the CRLs a certificate names; a full CRL may name its delta CRL
    too (freshestCRL, RFC 5280 §5.2.6), which certvalidator then requires but does not
    fetch. This fetches those deltas over HTTP as well."""

    async def fetch(self, cert: Any, *, use_deltas: bool = True) -> Any:
        fetched = list(await super().fetch(cert, use_deltas=use_deltas))
        for full in list(fetched):
            for point in full.freshest_crl_value or ():
                for url in enumerate_delivery_point_urls(point):
                    fetched.append(await self._single_fetch(url))
        self._by_cert[issuer_serial(cert)] = fetched
        return fetched


class _CrlBackend(AIOHttpFetcherBackend):
    def get_fetchers(self) -> Fetchers:
        fetchers = super().get_fetchers()
        return dataclasses.replace(
            fetchers,
            crl_fetcher=_FreshestCrlFetcher(self.session, per_request_timeout=10),
        )


def validate(leaf: asn1_x509.Certificate, make_context: Any, root: Any) -> None:
    """Validate `leaf` for a seal's use, fetching over HTTP; closes what it opened."""
    backend = _CrlBackend()

    async def run() -> None:
        try:
            validator = CertificateValidator(
                leaf, validation_context=make_context(root, backend)
            )
            await validator.async_validate_usage(
                {"non_repudiation"},
                extended_key_usage={DOCUMENT_SIGNING_EKU},
            )
        finally:
            await backend.close()

    asyncio.run(run())


def hard_fail_context(
    root: asn1_x509.Certificate, backend: AIOHttpFetcherBackend
) -> ValidationContext:
    """pyhanko's own hard-fail mode: OCSP where the certificate names a responder."""
    return ValidationContext(
        trust_roots=[root],
        allow_fetching=True,
        revocation_mode="hard-fail",
        fetcher_backend=backend,
    )


def crl_only_context(
    root: asn1_x509.Certificate, backend: AIOHttpFetcherBackend
) -> ValidationContext:
    """CRLs required for every certificate on the path (full CRL plus its delta)."""
    crl_required = RevocationCheckingRule.CRL_REQUIRED
    return ValidationContext(
        trust_roots=[root],
        allow_fetching=True,
        fetcher_backend=backend,
        revinfo_policy=CertRevTrustPolicy(
            RevocationCheckingPolicy(
                ee_certificate_rule=crl_required, intermediate_ca_cert_rule=crl_required
            )
        ),
    )


def requests_since(live: Live, mark: int, pattern: str) -> int:
    return len(re.findall(pattern, live.server.log()[mark:]))


@pytest.mark.parametrize(
    ("make_context", "fetched"),
    [
        (hard_fail_context, r'"POST /pki/ocsp HTTP/1\.1" 200'),
        (crl_only_context, r'"GET /pki/crl/seal-ca-delta\.crl HTTP/1\.1" 200'),
    ],
    ids=["ocsp-hard-fail", "crl-and-delta-required"],
)
def test_pyhanko_certvalidator_checks_a_seal_certificate_live(
    live: Live, make_context: Any, fetched: str
) -> None:
    (root,) = asn1_certificates(live.work / "root.pem")
    out = live.issue(f"certvalidator-{make_context.__name__}")
    leaf = asn1_certificates(out)[0]

    mark = len(live.server.log())
    validate(leaf, make_context, root)
    # gunicorn writes its access log line after the response: give it a moment.
    deadline = time.monotonic() + 5
    while requests_since(live, mark, fetched) < 1:
        assert time.monotonic() < deadline, live.server.log()[mark:]
        time.sleep(0.05)

    live.yinxin("ca", "revoke", serial_of(out), "--reason", "keyCompromise")
    deadline = time.monotonic() + REVOCATION_WAIT_S
    while True:
        try:
            validate(leaf, make_context, root)
        except RevokedError as revoked:
            assert "compromised key" in str(revoked)
            break
        assert time.monotonic() < deadline, "certvalidator still accepts it"
        time.sleep(0.1)


# -- acceptance 6, over HTTP: hostile requests change nothing -------------------------


def state_of(live: Live) -> dict[str, object]:
    """Rows that any accepted request would add to, and the audit log's length."""
    with sqlite3.connect(
        f"file:{live.home / 'yinxin.sqlite3'}?mode=ro", uri=True
    ) as db:
        return {
            table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in (
                "audit_entry",
                "certificate",
                "crl",
                "ocsp_response",
                "timestamp_token",
            )
        }


def post(
    live: Live, path: str, body: bytes, content_type: str
) -> tuple[int, str, bytes]:
    request = urllib.request.Request(
        live.url + path, data=body, headers={"Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def post_chunked(live: Live, path: str, body: bytes) -> tuple[int, bytes]:
    """POST without a Content-Length: the server learns the size only by reading."""
    connection = http.client.HTTPConnection("127.0.0.1", live.server.port, timeout=10)
    try:
        connection.request(
            "POST", path, body=iter([body[:4096], body[4096:]]),
            headers={"Content-Type": OCSP_REQUEST}, encode_chunked=True,
        )  # fmt: skip
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def tsa_status(live: Live, reply: bytes) -> str:
    live.file("hostile.tsr", reply)
    shown = openssl(live, "ts", "-reply", "-in", "hostile.tsr", "-text")
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_hostile_requests_get_clear_answers_and_change_nothing(live: Live) -> None:
    before = state_of(live)
    garbage = os.urandom(300)

    status, content_type, body = post(live, "/pki/ocsp", garbage, OCSP_REQUEST)
    assert (status, content_type) == (200, OCSP_RESPONSE)
    assert ocsp.load_der_ocsp_response(body).response_status is (
        ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    )
    path = "/pki/ocsp/" + quote(base64.b64encode(garbage).decode(), safe="")
    malformed = ocsp.load_der_ocsp_response(live.get(path))
    assert malformed.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    not_base64 = ocsp.load_der_ocsp_response(live.get("/pki/ocsp/%%%not-base64!"))
    assert not_base64.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST

    for oversized in (
        post(live, "/pki/ocsp", b"\x30" * (16 * 1024 + 1), OCSP_REQUEST),
        post(
            live, "/pki/tsa", b"\x30" * (64 * 1024 + 1), "application/timestamp-query"
        ),
    ):
        status, content_type, body = oversized
        assert (status, content_type) == (413, "application/problem+json")
        problem = json.loads(body)
        assert problem["status"] == 413
        assert "larger than" in problem["detail"] and problem["limit"] in (16384, 65536)
    status, body = post_chunked(live, "/pki/ocsp", b"\x30" * (20 * 1024))
    assert status == 413 and json.loads(body)["limit"] == 16384

    status, content_type, body = post(
        live, "/pki/tsa", garbage, "application/timestamp-query"
    )
    assert (status, content_type) == (200, "application/timestamp-reply")
    shown = tsa_status(live, body)
    assert "Status: Rejected" in shown and "not valid DER" in shown

    assert state_of(live) == before


# -- OCSP over GET (RFC 6960 appendix A.1, RFC 5019 caching) --------------------------


def ocsp_request_with_both_slash_and_plus(issuer: x509.Certificate) -> bytes:
    """A real request whose base64 holds '/' and '+', the characters URLs mangle."""
    name_digest = hashes.Hash(hashes.SHA1())
    name_digest.update(issuer.subject.public_bytes())
    name_hash = name_digest.finalize()
    key_bits = issuer.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    key_hash = hashes.Hash(hashes.SHA1())
    key_hash.update(key_bits)
    issuer_key_hash = key_hash.finalize()
    for serial in range(1, 100_000):
        der = (
            ocsp.OCSPRequestBuilder()
            .add_certificate_by_hash(name_hash, issuer_key_hash, serial, hashes.SHA1())
            .build()
            .public_bytes(serialization.Encoding.DER)
        )
        encoded = base64.b64encode(der).decode()
        if "/" in encoded and "+" in encoded:
            return der
    raise AssertionError("no request with both '/' and '+' in its base64")


def test_ocsp_get_accepts_the_request_however_the_url_is_encoded(live: Live) -> None:
    issuer = certificates(live.file("seal-ca.pem", live.get("/pki/ca/seal-ca.pem")))[0]
    der = ocsp_request_with_both_slash_and_plus(issuer)
    encoded = base64.b64encode(der).decode()
    forms = {
        "raw": encoded,
        "percent-encoded": quote(encoded, safe=""),
        "plus-as-space": encoded.replace("+", "%20"),
        "url-safe-unpadded": base64.urlsafe_b64encode(der).decode().rstrip("="),
    }

    answers = {name: live.get("/pki/ocsp/" + form) for name, form in forms.items()}

    for name, answer in answers.items():
        response = ocsp.load_der_ocsp_response(answer)
        assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL, name
        assert response.serial_number == ocsp.load_der_ocsp_request(der).serial_number
        assert response.certificate_status is ocsp.OCSPCertStatus.UNKNOWN, name


def test_ocsp_get_of_a_presigned_response_is_cacheable(live: Live) -> None:
    out = live.issue("cacheable")
    leaf, issuer = certificates(out)[:2]
    der = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf, issuer, hashes.SHA1())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    url = f"{live.url}/pki/ocsp/{quote(base64.b64encode(der).decode(), safe='')}"

    with urllib.request.urlopen(url, timeout=10) as response:
        headers = response.headers
        body = response.read()

    assert headers["Content-Type"] == OCSP_RESPONSE
    parsed = ocsp.load_der_ocsp_response(body)
    assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
    cache_control = headers["Cache-Control"]
    max_age = int(re.search(r"max-age=(\d+)", cache_control).group(1))  # type: ignore[union-attr]
    assert "public" in cache_control and "no-transform" in cache_control
    lifetime = (parsed.next_update_utc - parsed.this_update_utc).total_seconds()
    assert 0 < max_age <= lifetime
    assert headers["ETag"] and headers["Expires"] and headers["Last-Modified"]

    again = urllib.request.Request(url, headers={"If-None-Match": headers["ETag"]})
    with pytest.raises(urllib.error.HTTPError) as not_modified:
        urllib.request.urlopen(again, timeout=10)
    assert not_modified.value.code == 304

    with_nonce = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf, issuer, hashes.SHA1())
        .add_extension(x509.OCSPNonce(os.urandom(16)), critical=False)
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    request = urllib.request.Request(
        live.url + "/pki/ocsp", data=with_nonce, headers={"Content-Type": OCSP_REQUEST}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Cache-Control"] == "no-store"
        assert ocsp.load_der_ocsp_response(
            response.read()
        ).extensions.get_extension_for_class(x509.OCSPNonce)
