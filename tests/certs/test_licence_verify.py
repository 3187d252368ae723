"""The licence verifier: every input kind, every verdict, the status lookup and its
stated freshness (offline cache, this node in process, HTTP), and the PDF checks that
tie the seal, the QR code and the printed identifier together."""

from __future__ import annotations

import datetime as dt
import http.server
import io
import logging
import threading
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select

from certs.errors import InvalidStatusListError
from certs.issuance import IssuedLicence, LicenceRegistry
from certs.layout import CHINA_STANDARD_TIME, render_licence_pdf, seal_spot
from certs.models import StatusListRow
from certs.qr import qr_png
from certs.sdjwt import HolderKeyRequiredError, present
from certs.status import StatusList, encode_status_list_jwt
from certs.status_service import StatusLists
from certs.token import SignerList, StatusReference, TrustedSigner
from certs.types import get_licence_type
from certs.verdict import Verdict
from certs.verify import (
    LicenceTrust,
    LicenceVerifyRequestError,
    StatusListCache,
    http_status_fetcher,
    verify_licence,
)
from hsm_sim.api import KeyStore
from hsm_sim.errors import PinMissingError
from hsm_sim.spec import open_keystore
from pki.ca_models import ServicePurpose
from pki.timestamping import service_credential
from seal.lifecycle import SealRegistry
from seal.stamping import At, Level, StampRequest
from seal.trust_services import TrustServices
from tests.certs.conftest import (
    BASE_URL,
    OTHER_USCC,
    REGION,
    TOUR_GUIDE,
    DocumentSigner,
    GuideCards,
)
from tests.helpers.node import AGENCY_NAME, Node


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def card(guide_cards: GuideCards) -> IssuedLicence:
    return guide_cards.issue()


def check(licence_trust: LicenceTrust, status_source=None, **given):
    return verify_licence(
        trust=licence_trust,
        status_source=status_source,
        now=given.pop("at", now()),
        **given,
    )


# -- tokens and QR images ----------------------------------------------------------------


def test_a_valid_token_gives_its_fields_and_a_dated_status(
    card: IssuedLicence, licence_trust, node_status
) -> None:
    result = check(licence_trust, node_status, token=card.token)
    assert result.verdict is Verdict.VALID, result.reason
    assert result.licence_id == card.identifier
    assert result.type_code == TOUR_GUIDE
    assert result.issuer == REGION
    assert result.fields == get_licence_type(TOUR_GUIDE).qr_values(card.record.data)
    assert result.status is not None and result.status.checked
    assert result.status.status == "valid"
    assert result.status.as_of is not None
    assert "status as of " in result.reason
    shown = result.to_dict()
    assert {"verdict", "reason", "fields"} <= set(shown)
    assert shown["verdict"] == "VALID"
    assert shown["status"]["idx"] == card.record.status_index


def test_a_qr_image_is_read_and_verified(card, licence_trust, node_status) -> None:
    image = qr_png(card.token, box_size=3)
    result = check(licence_trust, node_status, qr_image=image)
    assert (result.verdict, result.input) == (Verdict.VALID, "qr-image")
    blank = qr_png("HELLO")
    assert (
        check(licence_trust, node_status, qr_image=blank).verdict is Verdict.MALFORMED
    )
    garbage = check(licence_trust, node_status, qr_image=b"not an image")
    assert garbage.verdict is Verdict.MALFORMED
    assert "PNG or JPEG" in garbage.reason


def test_time_trust_and_tampering_verdicts(
    card: IssuedLicence,
    licence_trust: LicenceTrust,
    node_status,
    licence_node: Node,
) -> None:
    expires = card.record.token_expires_at
    assert expires is not None
    late = check(
        licence_trust,
        node_status,
        token=card.token,
        at=expires + dt.timedelta(seconds=1),
    )
    assert late.verdict is Verdict.EXPIRED
    early = check(
        licence_trust,
        node_status,
        token=card.token,
        at=card.record.issued_at - dt.timedelta(minutes=5),
    )
    assert early.verdict is Verdict.NOT_YET_VALID

    _, tsa_certificate, _ = service_credential(licence_node.ca, ServicePurpose.TSA)
    strangers = LicenceTrust(signers=SignerList([tsa_certificate]))
    assert check(strangers, token=card.token).verdict is Verdict.UNTRUSTED_ISSUER
    signer = licence_trust.signers.signers_for_kid(
        next(iter(licence_trust.signers)).kid  # type: ignore[call-overload]
    )[0]
    other_region = LicenceTrust(
        signers=SignerList([TrustedSigner(signer.certificate, issuer="110000")])
    )
    wrong = check(other_region, token=card.token)
    assert wrong.verdict is Verdict.UNTRUSTED_ISSUER
    assert "110000" in wrong.reason

    body = card.token[4:]
    position = len(body) // 2
    flipped = (
        "LC1:"
        + body[:position]
        + ("A" if body[position] != "A" else "B")
        + body[position + 1 :]
    )
    tampered = check(licence_trust, node_status, token=flipped)
    assert tampered.verdict in (Verdict.INVALID_SIGNATURE, Verdict.MALFORMED)
    assert tampered.fields == {}
    for bad in ("", "HC1:ABC", "LC1:" + "%" * 40, "LC1:" + "A" * 5000):
        assert check(licence_trust, token=bad).verdict is Verdict.MALFORMED


def test_exactly_one_input(card: IssuedLicence, licence_trust) -> None:
    with pytest.raises(LicenceVerifyRequestError):
        check(licence_trust)
    with pytest.raises(LicenceVerifyRequestError):
        check(licence_trust, token=card.token, sd_jwt=card.sd_jwt)


# -- status ------------------------------------------------------------------------------


def test_revoked_and_suspended_from_the_node_at_once(
    guide_cards: GuideCards, licences: LicenceRegistry, licence_trust, node_status
) -> None:
    today = dt.datetime.now(CHINA_STANDARD_TIME).date()
    issued = guide_cards.issue(valid_until=today + dt.timedelta(days=1))
    licences.suspend(issued.identifier, actor="t")
    result = check(licence_trust, node_status, token=issued.token)
    assert result.verdict is Verdict.SUSPENDED
    assert result.status is not None and result.status.status == "suspended"
    licences.reinstate(issued.identifier, actor="t")
    assert (
        check(licence_trust, node_status, token=issued.token).verdict is Verdict.VALID
    )
    licences.revoke(issued.identifier, "吊销", actor="t")
    revoked = check(licence_trust, node_status, token=issued.token)
    assert revoked.verdict is Verdict.REVOKED
    # A revoked licence is reported as revoked even once its token has expired
    # (tomorrow night; the status list signed now lasts 48 hours).
    expires = issued.record.token_expires_at
    assert expires is not None
    later = check(
        licence_trust,
        node_status,
        token=issued.token,
        at=expires + dt.timedelta(seconds=1),
    )
    assert later.verdict is Verdict.REVOKED, later.reason


def test_offline_cache_states_its_freshness(
    guide_cards: GuideCards,
    licences: LicenceRegistry,
    licence_trust,
    document_signer: DocumentSigner,
) -> None:
    issued = guide_cards.issue()
    uri = issued.record.status_list_uri
    list_id = uri.rsplit("/", 1)[1]
    cache = StatusListCache(trust=document_signer.trust)
    none_yet = check(licence_trust, cache, token=issued.token)
    assert none_yet.verdict is Verdict.VALID
    assert none_yet.status is not None and not none_yet.status.checked
    assert "status not checked" in none_yet.reason

    snapshot = licences.status_list_token(list_id, "cwt")
    verified = cache.add(snapshot, uri=uri, now=now())
    licences.revoke(issued.identifier, "test", actor="t")
    # Offline, the cached list (signed before the revocation) is what there is.
    stale = check(licence_trust, cache, token=issued.token)
    assert stale.verdict is Verdict.VALID
    assert stale.status is not None and stale.status.as_of == verified.issued_at
    assert stale.status.source == "cache"
    # Past its ttl it is still used, and said to be.
    assert verified.refresh_at is not None and verified.expires_at is not None
    past_ttl = check(
        licence_trust,
        cache,
        token=issued.token,
        at=verified.refresh_at + dt.timedelta(seconds=1),
    )
    assert (
        past_ttl.status is not None and past_ttl.status.source == "cache past its ttl"
    )
    # Past its exp it is not used at all.
    expired = check(
        licence_trust,
        cache,
        token=issued.token,
        at=verified.expires_at + dt.timedelta(seconds=1),
    )
    assert expired.status is not None and not expired.status.checked
    # A fresh copy shows the revocation.
    cache.add(licences.status_list_token(list_id), uri=uri, now=now())
    assert check(licence_trust, cache, token=issued.token).verdict is Verdict.REVOKED


class KeyStoreWithoutPin:
    """The node's soft token as `yinxin license verify` has it, without the PIN: every
    use fails as hsm_sim fails then (PinMissingError)."""

    def __init__(self, node: Node) -> None:
        self._spec = f"soft:{node.home / 'hsm'}"
        self._audit = node.audit

    def __getattr__(self, name: str) -> object:
        def use(*args: object, **kwargs: object) -> object:
            store: KeyStore = open_keystore(self._spec, pin=None, audit=self._audit)
            return getattr(store, name)(*args, **kwargs)

        return use


def test_this_node_s_lists_are_read_without_signing_and_say_how_fresh(
    guide_cards: GuideCards,
    licences: LicenceRegistry,
    seals: SealRegistry,
    trust_services: TrustServices,
    licence_trust,
    licence_node: Node,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A verifier whose key store cannot sign reads the stored list as it is: a stale
    or expired list is not signed on the way (no attempt, no warning), and the answer
    says when the list was signed, that changes are pending, or that it expired."""
    without_pin = KeyStoreWithoutPin(licence_node)
    with pytest.raises(PinMissingError):
        without_pin.list_keys()
    verifier = LicenceRegistry(
        seals=seals,
        services=trust_services,
        region=REGION,
        base_url=BASE_URL,
        status_lists=StatusLists(
            sessions=licence_node.sessions,
            ca=licence_node.ca,
            keystore=without_pin,  # type: ignore[arg-type]
            region=REGION,
            base_url=BASE_URL,
        ),
    )
    status = verifier.status_source()
    issued = guide_cards.issue()
    uri = issued.record.status_list_uri
    with licence_node.sessions.begin() as session:
        row = session.scalars(
            select(StatusListRow).where(StatusListRow.uri == uri)
        ).one()
        signed_at, expires_at = row.signed_at, row.expires_at
        StatusLists.record_change(session, row.id)  # a change not yet signed
    assert signed_at is not None and expires_at is not None
    audit_before = licence_node.audit_entry_count()
    caplog.set_level(logging.DEBUG)
    try:
        stale = check(licence_trust, status, token=issued.token)
        assert stale.verdict is Verdict.VALID, stale.reason
        assert stale.status is not None and stale.status.checked
        assert (stale.status.as_of, stale.status.source) == (signed_at, "stored")
        assert "not signed into the list yet" in stale.status.reason
        # Less than refresh_before (24 h) left: /status would sign it; this reads it.
        soon = check(
            licence_trust,
            status,
            token=issued.token,
            at=expires_at - dt.timedelta(hours=1),
        )
        assert soon.status is not None and soon.status.checked
        assert soon.status.as_of == signed_at
        expired = check(
            licence_trust,
            status,
            token=issued.token,
            at=expires_at + dt.timedelta(seconds=1),
        )
        assert expired.verdict is Verdict.VALID  # the token's own verdict stands
        assert expired.status is not None and not expired.status.checked
        assert expired.status.as_of == signed_at
        assert "expired at" in expired.status.reason
        assert "status not checked" in expired.reason
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
        assert licence_node.audit_entry_count() == audit_before  # nothing attempted
    finally:
        assert licences.publish_status_lists() >= 1
    # Signed again (by the schedule, here): nothing pending any more.
    fresh = check(licence_trust, status, token=issued.token)
    assert fresh.status is not None and fresh.status.checked
    assert "not signed" not in fresh.status.reason


def test_a_list_from_an_untrusted_signer_another_uri_or_issuer_is_refused(
    card: IssuedLicence,
    licences: LicenceRegistry,
    document_signer: DocumentSigner,
    licence_node: Node,
) -> None:
    uri = card.record.status_list_uri
    token = licences.status_list_token(uri.rsplit("/", 1)[1])
    _, tsa_certificate, _ = service_credential(licence_node.ca, ServicePurpose.TSA)
    with pytest.raises(InvalidStatusListError, match="signer"):
        StatusListCache(trust=SignerList([tsa_certificate])).add(
            token, uri=uri, now=now()
        )
    cache = StatusListCache(trust=document_signer.trust)
    with pytest.raises(InvalidStatusListError, match="another list"):
        cache.add(token, uri=uri + "0", now=now())
    # A signer trusted for any issuer signs a list for another region: the list is
    # kept, but not used for this region's licence.
    unbound = StatusListCache(trust=SignerList([document_signer.certificate]))
    foreign = encode_status_list_jwt(
        StatusList(size=card.record.status_index + 8),
        uri=uri,
        iat=now(),
        exp=now() + dt.timedelta(hours=1),
        ttl=60,
        signer_key=document_signer.key,
        signer_certificate=document_signer.certificate,
        issuer="110000",
    )
    unbound.add(foreign, uri=uri, now=now())
    reference = StatusReference(card.record.status_index, uri)
    answer = unbound.lookup(reference, issuer=REGION, now=now())
    assert answer.status is None and "another issuer" in answer.reason


class _ListServer(http.server.BaseHTTPRequestHandler):
    licences: LicenceRegistry

    def do_GET(self) -> None:
        list_id = self.path.rsplit("/", 1)[1]
        try:
            body = str(self.licences.status_list_token(list_id)).encode()
        except LookupError:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/statuslist+jwt")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def list_server(licences: LicenceRegistry) -> Iterator[str]:
    handler = type("Handler", (_ListServer,), {"licences": licences})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_status_over_http(
    card: IssuedLicence, licence_trust, document_signer, list_server: str
) -> None:
    fetch = http_status_fetcher(timeout=5)
    list_id = card.record.status_list_uri.rsplit("/", 1)[1]

    def from_test_server(uri: str):
        return fetch(f"{list_server}/status/{uri.rsplit('/', 1)[1]}")

    cache = StatusListCache(trust=document_signer.trust, fetch=from_test_server)
    result = check(licence_trust, cache, token=card.token)
    assert result.verdict is Verdict.VALID
    assert result.status is not None and result.status.source == "fetched"
    again = check(licence_trust, cache, token=card.token)
    assert again.status is not None and again.status.source == "cache"
    assert fetch(f"{list_server}/status/999999-1") is None
    assert list_id
    with pytest.raises(ValueError, match="http"):
        fetch("file:///etc/passwd")


# -- SD-JWT presentations -------------------------------------------------------------


def test_presentations(
    guide_cards: GuideCards, licences: LicenceRegistry, licence_trust, node_status
) -> None:
    holder = ec.generate_private_key(ec.SECP256R1())
    issued = guide_cards.issue(holder_key=holder.public_key())
    shown = licences.present_licence(
        issued.identifier, ["name", "level"], holder_key=holder, nonce="n1", aud="bank"
    )
    result = check(licence_trust, node_status, sd_jwt=shown, nonce="n1", aud="bank")
    assert result.verdict is Verdict.VALID, result.reason
    assert result.key_bound is True
    assert result.disclosed == ("level", "name")
    assert result.fields["name"] == issued.record.data["name"]
    assert "id_number" not in result.fields
    assert result.licence_id == issued.identifier
    wrong_nonce = check(
        licence_trust, node_status, sd_jwt=shown, nonce="n2", aud="bank"
    )
    assert wrong_nonce.verdict is not Verdict.VALID
    assert "nonce" in wrong_nonce.reason
    # The registry refuses to present it without the holder's key ...
    with pytest.raises(HolderKeyRequiredError, match="bound to its holder's key"):
        licences.present_licence(issued.identifier, ["name", "level"])
    # ... and the same credential shown without a key-binding JWT is taken for a copy.
    copied = present(
        licences.licence_sd_jwt(issued.identifier), disclose=["name", "level"]
    )
    for nonce in (None, "n1"):
        replayed = check(licence_trust, node_status, sd_jwt=copied, nonce=nonce)
        assert replayed.verdict is Verdict.INVALID_SIGNATURE
        assert "no key-binding JWT" in replayed.reason
    licences.revoke(issued.identifier, "test", actor="t")
    revoked = check(licence_trust, node_status, sd_jwt=shown, nonce="n1", aud="bank")
    assert revoked.verdict is Verdict.REVOKED
    assert check(licence_trust, sd_jwt="not~a~credential").verdict is Verdict.MALFORMED


# -- PDFs ------------------------------------------------------------------------------


def test_a_sealed_licence_pdf(card: IssuedLicence, licence_trust, node_status) -> None:
    result = check(licence_trust, node_status, pdf=card.pdf)
    assert result.verdict is Verdict.VALID, result.reason
    assert result.seal is not None
    assert result.seal.agency == AGENCY_NAME
    assert result.seal.timestamped and result.seal.valid
    assert result.licence_id == card.identifier
    assert result.fields["card_number"] == card.record.data["card_number"]
    assert "printed identifier agree" in result.reason


def test_a_pdf_checked_without_the_region_root_is_untrusted(
    card: IssuedLicence, licence_trust, licence_node: Node
) -> None:
    no_roots = LicenceTrust(signers=licence_trust.signers)
    assert check(no_roots, pdf=card.pdf).verdict is Verdict.UNTRUSTED_ISSUER
    wrong_root = LicenceTrust(
        signers=licence_trust.signers,
        seal_roots=[licence_node.ca.issuer("document-ca").certificate],
    )
    result = check(wrong_root, pdf=card.pdf)
    assert result.verdict is Verdict.UNTRUSTED_ISSUER, result.reason
    assert result.seal is not None and result.seal.intact


def test_tampered_unsealed_and_foreign_pdfs(
    card: IssuedLicence,
    guide_cards: GuideCards,
    licences: LicenceRegistry,
    seals: SealRegistry,
    other_official_seal,
    licence_trust,
    node_status,
) -> None:
    # One byte of the signed revision changed (a comment: the file still parses).
    tampered = card.pdf.replace(b"ReportLab Generated", b"ReportLab generated", 1)
    assert tampered != card.pdf
    broken = check(licence_trust, node_status, pdf=tampered)
    assert broken.verdict is Verdict.INVALID_SIGNATURE, broken.reason
    assert check(licence_trust, pdf=b"%PDF-1.7 nothing").verdict is Verdict.MALFORMED
    assert check(licence_trust, pdf=b"hello").verdict is Verdict.MALFORMED

    licence_type = get_licence_type(TOUR_GUIDE)
    record = card.record

    def render(identifier: str, token: str) -> bytes:
        return render_licence_pdf(
            licence_type,
            record.data,
            identifier=identifier,
            qr_png=qr_png(token),
            issuer_name=AGENCY_NAME,
            issued_at=record.issued_at,
            valid_until=record.valid_until,
        )

    def stamp(pdf: bytes, seal_id: str) -> bytes:
        authorization = seals.authorize_stamp(seal_id, operator="tests")
        spot = seal_spot(licence_type)
        return seals.stamp_document(
            authorization,
            licences._stamper_for(authorization),
            pdf,
            StampRequest(
                placements=(At(spot.page, spot.x_mm, spot.y_mm),),
                level=Level.B_LT,
                certify=True,
            ),
        )

    unsealed = render(card.identifier, card.token)
    result = check(licence_trust, node_status, pdf=unsealed)
    assert result.verdict is Verdict.MALFORMED
    # Sealed by another agency than the one the identifier names.
    foreign = stamp(unsealed, other_official_seal.id)
    result = check(licence_trust, node_status, pdf=foreign)
    assert result.verdict is Verdict.UNTRUSTED_ISSUER, result.reason
    assert OTHER_USCC in result.reason
    # The QR code of one licence on the page of another.
    other = guide_cards.issue()
    mixed = stamp(render(card.identifier, other.token), record.seal_id or "")
    result = check(licence_trust, node_status, pdf=mixed)
    assert result.verdict is Verdict.MALFORMED
    assert "printed" in result.reason


@pytest.mark.parametrize(("width", "height"), [(30, 20_000), (3, 200_000)])
def test_a_slim_pdf_image_is_not_enlarged_beyond_the_pixel_limit(
    width: int, height: int
) -> None:
    """Narrow images are enlarged for the QR reader; a 30x20000 image (600,000 pixels,
    a few hundred bytes of Flate in a hostile PDF) became 300x200000 before it was
    ever checked. The enlargement stays within MAX_QR_IMAGE_PIXELS."""
    from PIL import Image
    from pyhanko.pdf_utils import generic

    from certs.verify import MAX_QR_IMAGE_PIXELS, _image_png

    image = generic.StreamObject(
        {
            generic.NameObject("/Subtype"): generic.NameObject("/Image"),
            generic.NameObject("/Width"): generic.NumberObject(width),
            generic.NameObject("/Height"): generic.NumberObject(height),
            generic.NameObject("/ColorSpace"): generic.NameObject("/DeviceGray"),
            generic.NameObject("/BitsPerComponent"): generic.NumberObject(8),
        },
        stream_data=bytes(width * height),
    )
    png = _image_png(image)
    if png is not None:
        with Image.open(io.BytesIO(png)) as decoded:
            assert decoded.width * decoded.height <= MAX_QR_IMAGE_PIXELS


def test_a_status_server_that_drips_its_answer_is_given_up_on() -> None:
    """The socket timeout bounds each read, not the fetch: a server sending a byte a
    little faster than the timeout held a verifier for as long as it liked (8 MiB at
    a byte per 4 s is over a year). The fetch as a whole has a time limit."""
    import socket
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def drip() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n"
                b"Content-Type: application/statuslist+jwt\r\n\r\n"
            )
            for _ in range(60):  # at most 6 s, so the unfixed fetcher ends too
                if stop.is_set():
                    return
                try:
                    connection.sendall(b"e")
                except OSError:
                    return
                time.sleep(0.1)

    server = threading.Thread(target=drip, daemon=True)
    server.start()
    fetch = http_status_fetcher(timeout=1, max_seconds=1.5)
    started = time.monotonic()
    try:
        with pytest.raises(OSError, match="longer than"):
            fetch(f"http://127.0.0.1:{port}/status/1")
        assert time.monotonic() - started < 4
    finally:
        stop.set()
        server.join(10)
        listener.close()
