"""Trust services for stamping: the HTTP clients against a node's endpoints served over
real HTTP, the in-process node source, and failures that become TrustServiceError; the
HTTP source fetches only http(s) URLs, follows no redirect and bounds the whole answer
in time."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import DocumentSecurityStore, validate_pdf_signature

from hsm_sim.errors import ErrorCategory
from seal.errors import TrustServiceError
from seal.signer import to_asn1_certificate
from seal.stamping import At, Level, Stamper, StampRequest
from seal.trust_services import (
    HttpRevocationSource,
    NodeRevocationSource,
    TrustServices,
    http_timestamp_client,
    http_trust_services,
)
from tests.helpers.node import AGENCY_USCC, Node, build_node
from tests.seal.conftest import issue_credential

VISIBLE = (At(page=1, x_mm=100, y_mm=100),)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _NodeEndpoints(BaseHTTPRequestHandler):
    """The node's /pki/tsa, /pki/ocsp and /pki/crl/<ca>.crl, as relying parties reach them."""

    node: Node
    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""

    def _answer(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.requests.append(f"POST {self.path}")
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/pki/tsa":
            self._answer(
                self.node.timestamps.respond(body).response_der,
                "application/timestamp-reply",
            )
        elif self.path == "/pki/ocsp":
            self._answer(
                self.node.revocation.respond_ocsp(body), "application/ocsp-response"
            )
        else:
            self.send_error(404)

    def do_GET(self) -> None:
        self.requests.append(f"GET {self.path}")
        name = self.path.removeprefix("/pki/crl/").removesuffix(".crl")
        if not self.path.startswith("/pki/crl/"):
            self.send_error(404)
            return
        crl = self.node.revocation.latest_crl(name) or self.node.revocation.publish_crl(
            name
        )
        self._answer(crl.der, "application/pkix-crl")


@pytest.fixture(scope="module")
def http_node(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Node, str, list[str]]]:
    """A node whose certificates name a local port, served by a real HTTP server there."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    node = build_node(tmp_path_factory.mktemp("http-node") / "node", base_url=base_url)
    seen: list[str] = []
    handler = type("Handler", (_NodeEndpoints,), {"node": node, "requests": seen})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield node, base_url, seen
    server.shutdown()
    server.server_close()
    node.close()


def test_b_lt_over_http_embeds_what_the_node_serves(http_node, seal_image, pdf_factory):
    node, base_url, seen = http_node
    credential = issue_credential(
        node,
        key_label="seal-http",
        agency_uscc=AGENCY_USCC,
        image_pdf=seal_image,
        seal_data=b"\x04\x00",
    )
    stamper = Stamper(credential, services=http_trust_services(f"{base_url}/pki/tsa"))
    sealed = stamper.stamp(
        pdf_factory(), StampRequest(placements=VISIBLE, level=Level.B_LT)
    )

    assert "POST /pki/tsa" in seen
    assert seen.count("POST /pki/ocsp") >= 2  # the seal certificate and its CA's
    reader = PdfFileReader(io.BytesIO(sealed))
    (signature,) = reader.embedded_regular_signatures
    root = to_asn1_certificate(credential.chain[-1])
    offline = DocumentSecurityStore.read_dss(reader).as_validation_context(
        {"trust_roots": [root], "allow_fetching": False, "revocation_mode": "require"}
    )
    status = validate_pdf_signature(signature, offline)
    assert status.bottom_line, status.pretty_print_details()


def test_an_unreachable_tsa_is_a_trust_service_error(credential, pdf_factory):
    nowhere = f"http://127.0.0.1:{_free_port()}/pki/tsa"
    stamper = Stamper(
        credential,
        services=TrustServices(timestamp=http_timestamp_client(nowhere, timeout=2)),
    )
    with pytest.raises(TrustServiceError, match="did not answer") as failure:
        stamper.stamp(pdf_factory(), StampRequest(placements=VISIBLE, level=Level.B_T))
    assert failure.value.category is ErrorCategory.UNAVAILABLE


class _CrlsOnly:
    """This node's CRLs, with its OCSP responder down."""

    def __init__(self, node: Node) -> None:
        self._node = NodeRevocationSource(node.revocation)

    def ocsp(self, url: str, request_der: bytes) -> bytes:
        raise TrustServiceError(f"{url} is down")

    def crl(self, url: str) -> bytes:
        return self._node.crl(url)


class _NothingAnswers(_CrlsOnly):
    def crl(self, url: str) -> bytes:
        raise TrustServiceError(f"{url} is down")


def test_crls_stand_in_for_a_down_ocsp_responder(
    node, credential, services, pdf_factory, trust_root
):
    stamper = Stamper(
        credential,
        services=TrustServices(
            timestamp=services.timestamp, revocation=_CrlsOnly(node)
        ),
    )
    sealed = stamper.stamp(
        pdf_factory(), StampRequest(placements=VISIBLE, level=Level.B_LT)
    )
    reader = PdfFileReader(io.BytesIO(sealed))
    dss = reader.root["/DSS"]
    assert len(dss["/CRLs"]) >= 2 and "/OCSPs" not in dss
    offline = DocumentSecurityStore.read_dss(reader).as_validation_context(
        {
            "trust_roots": [trust_root],
            "allow_fetching": False,
            "revocation_mode": "require",
        }
    )
    (signature,) = reader.embedded_regular_signatures
    assert validate_pdf_signature(signature, offline).bottom_line


def test_no_revocation_data_refuses_b_lt_and_signs_nothing(
    node, credential, services, pdf_factory
):
    stamper = Stamper(
        credential,
        services=TrustServices(
            timestamp=services.timestamp, revocation=_NothingAnswers(node)
        ),
    )
    granted = node.granted_signatures(credential.key.label)
    with pytest.raises(TrustServiceError, match="revocation data") as failure:
        stamper.stamp(pdf_factory(), StampRequest(placements=VISIBLE, level=Level.B_LT))
    assert failure.value.category is ErrorCategory.UNAVAILABLE
    assert node.granted_signatures(credential.key.label) == granted


def test_the_node_source_serves_only_this_nodes_urls(node):
    source = NodeRevocationSource(node.revocation)
    with pytest.raises(TrustServiceError, match="not this node's OCSP responder"):
        source.ocsp("http://elsewhere.example/ocsp", b"")
    with pytest.raises(TrustServiceError, match="not a CRL this node publishes"):
        source.crl("http://elsewhere.example/ca.crl")
    crl_url = node.ca.endpoints.crl_url("seal-ca")
    assert source.crl(crl_url) == node.revocation.latest_crl("seal-ca").der


# -- what the HTTP source fetches: URLs from uploaded documents' certificates -----------


@dataclasses.dataclass(frozen=True)
class _Pki:
    """A CA, its CRL (DER) and a certificate whose CRL distribution point and OCSP
    responder are the URLs given."""

    ca: x509.Certificate
    crl_der: bytes
    leaf: x509.Certificate


def _pki(url: str) -> _Pki:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    now = dt.datetime.now(dt.UTC)

    def certificate(subject: x509.Name, *extensions: x509.ExtensionType):
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
        )
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(key, hashes.SHA256())

    where = x509.UniformResourceIdentifier(url)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(now - dt.timedelta(hours=1))
        .next_update(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return _Pki(
        ca=certificate(name, x509.BasicConstraints(ca=True, path_length=None)),
        crl_der=crl.public_bytes(Encoding.DER),
        leaf=certificate(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Uploaded")]),
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([where], None, None, None)]
            ),
            x509.AuthorityInformationAccess(
                [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, where)]
            ),
        ),
    )


@pytest.mark.parametrize("local", [False, True], ids=["etc-passwd", "a-real-crl"])
def test_a_file_url_named_by_an_uploaded_certificate_is_not_opened(tmp_path, local):
    # pyhanko-certvalidator happens to pass on only http(s) URLs today; the source
    # must not depend on what its callers filter.
    crl_file = tmp_path / "ca.crl"
    pki = _pki(crl_file.as_uri() if local else "file:///etc/passwd")
    crl_file.write_bytes(pki.crl_der)  # what urllib would read from the disk
    extensions = pki.leaf.extensions
    (point,) = extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    (responder,) = extensions.get_extension_for_class(
        x509.AuthorityInformationAccess
    ).value
    source = HttpRevocationSource(timeout=2)
    with pytest.raises(TrustServiceError, match="not an http or https URL"):
        source.crl(point.full_name[0].value)
    with pytest.raises(TrustServiceError, match="not an http or https URL"):
        source.ocsp(responder.access_location.value, b"0\x00")


class _Tricks(BaseHTTPRequestHandler):
    """/crl serves a CRL, /moved redirects to it, /drip sends it a byte at a time."""

    crl_der: bytes

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""

    def do_GET(self) -> None:
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/crl")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/pkix-crl")
        self.send_header("Content-Length", str(len(self.crl_der)))
        self.end_headers()
        if self.path == "/crl":
            self.wfile.write(self.crl_der)
            return
        try:
            for at in range(len(self.crl_der)):
                self.wfile.write(self.crl_der[at : at + 1])
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass  # the client gave up, as it should


@pytest.fixture(scope="module")
def tricks() -> Iterator[str]:
    handler = type("Handler", (_Tricks,), {"crl_der": _pki("http://x/").crl_der})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_redirects_are_not_followed(tricks):
    source = HttpRevocationSource(timeout=2)
    assert source.crl(f"{tricks}/crl")
    with pytest.raises(TrustServiceError, match="HTTP 302"):
        source.crl(f"{tricks}/moved")


def test_the_timeout_bounds_the_whole_answer_not_each_read(tricks):
    # About 0.05 s per byte: every read is quick, the whole CRL takes seconds.
    with pytest.raises(TrustServiceError, match=r"did not answer within 0.3 s"):
        HttpRevocationSource(timeout=0.3).crl(f"{tricks}/drip")
