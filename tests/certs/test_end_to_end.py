"""Acceptance 1, end to end: issue a licence, print its PDF to pixels with pdftoppm at
150 dpi, read the QR code with zbarimg (an independent reader), and our verifier says
VALID with the right fields; pdfsig says the seal is valid; revoked, the same QR code
gives REVOKED from the re-signed status list. Then suspension, expiry, wrong trust, a
tampered token, and the usage code round trip, all from the same printed page."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select

from certs.issuance import LicenceRegistry
from certs.models import StatusListRow
from certs.token import SignerList
from certs.types import get_licence_type
from certs.usage_codes import UsageCodeRejectedError, UsageCodes
from certs.verdict import Verdict
from certs.verify import LicenceTrust, verify_licence
from pki.ca_models import ServicePurpose
from pki.timestamping import service_credential
from tests.certs.conftest import (
    FOOD_PERMIT,
    OPERATOR,
    MovableClock,
    example_data,
)
from tests.conftest import require_tool
from tests.helpers.node import AGENCY_NAME, AGENCY_USCC, Node


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def printed_page(pdf: bytes, tmp_path: Path) -> Path:
    pdftoppm = require_tool("pdftoppm")
    source = tmp_path / "licence.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        [
            pdftoppm,
            "-r",
            "150",
            "-png",
            "-singlefile",
            str(source),
            str(tmp_path / "page"),
        ],
        check=True,
        capture_output=True,
    )
    return tmp_path / "page.png"


def zbar_read(image: Path) -> str:
    zbarimg = require_tool("zbarimg")
    run = subprocess.run(
        [zbarimg, "--quiet", "--raw", str(image)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_issue_print_scan_verify_revoke(
    licences: LicenceRegistry,
    licence_trust: LicenceTrust,
    node_status,
    licence_node: Node,
    tmp_path: Path,
) -> None:
    data = example_data(FOOD_PERMIT)
    data["number"] = "JY23501000000777"
    issued = licences.issue_licence(
        FOOD_PERMIT, AGENCY_USCC, data, actor="client:e2e", principal=OPERATOR
    )

    page = printed_page(issued.pdf, tmp_path)
    scanned = zbar_read(page)
    # zbarimg ends its output with a newline; the verifier takes the text as it is.
    assert scanned.strip() == issued.token
    result = verify_licence(
        token=scanned, trust=licence_trust, status_source=node_status, now=now()
    )
    assert result.verdict is Verdict.VALID, result.reason
    assert result.licence_id == issued.identifier
    assert result.fields == {
        "number": "JY23501000000777",
        "operator": data["operator"],
    }
    assert result.fields == get_licence_type(FOOD_PERMIT).qr_values(issued.record.data)
    assert result.status is not None and result.status.checked
    # Our own reader (zxing-cpp) on the same printed page agrees.
    from_image = verify_licence(
        qr_image=page.read_bytes(),
        trust=licence_trust,
        status_source=node_status,
        now=now(),
    )
    assert from_image.verdict is Verdict.VALID
    assert from_image.licence_id == issued.identifier

    pdfsig = require_tool("pdfsig")
    report = subprocess.run(
        [pdfsig, "-nocert", str(tmp_path / "licence.pdf")],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    assert "Signature Validation: Signature is Valid." in report
    assert f"Signer Certificate Common Name: {AGENCY_NAME}" in report
    pdf_result = verify_licence(
        pdf=issued.pdf, trust=licence_trust, status_source=node_status, now=now()
    )
    assert pdf_result.verdict is Verdict.VALID, pdf_result.reason

    uri = issued.record.status_list_uri
    before = _signed_version(licence_node, uri)
    licences.revoke(issued.identifier, "吊销许可证", actor="staff:e2e")
    assert _signed_version(licence_node, uri) > before  # the list was re-signed
    revoked = verify_licence(
        token=zbar_read(page), trust=licence_trust, status_source=node_status, now=now()
    )
    assert revoked.verdict is Verdict.REVOKED, revoked.reason
    pdf_revoked = verify_licence(
        pdf=issued.pdf, trust=licence_trust, status_source=node_status, now=now()
    )
    assert pdf_revoked.verdict is Verdict.REVOKED


def test_suspend_expire_trust_and_tamper_from_the_printed_page(
    licences: LicenceRegistry,
    licence_trust: LicenceTrust,
    node_status,
    licence_node: Node,
    tmp_path: Path,
) -> None:
    data = example_data(FOOD_PERMIT)
    data["number"] = "JY33501000000888"
    issued = licences.issue_licence(
        FOOD_PERMIT, AGENCY_USCC, data, actor="client:e2e", principal=OPERATOR
    )
    scanned = zbar_read(printed_page(issued.pdf, tmp_path))

    def verdict(token: str = scanned, **options) -> Verdict:
        arguments = {"trust": licence_trust, "status_source": node_status, "now": now()}
        arguments.update(options)
        return verify_licence(token=token, **arguments).verdict

    licences.suspend(issued.identifier, actor="staff:e2e", note="核查")
    assert verdict() is Verdict.SUSPENDED
    licences.reinstate(issued.identifier, actor="staff:e2e")
    assert verdict() is Verdict.VALID

    expires = issued.record.token_expires_at
    assert expires is not None
    # The verifier's clock after the token's expiry (offline: no status list then).
    assert verdict(status_source=None, now=expires + dt.timedelta(seconds=1)) is (
        Verdict.EXPIRED
    )

    _, tsa_certificate, _ = service_credential(licence_node.ca, ServicePurpose.TSA)
    assert verdict(trust=LicenceTrust(signers=SignerList([tsa_certificate]))) is (
        Verdict.UNTRUSTED_ISSUER
    )

    text = scanned.strip()
    for position in (len(text) // 3, len(text) // 2, len(text) - 10):
        replacement = "0" if text[position] != "0" else "1"
        flipped = text[:position] + replacement + text[position + 1 :]
        assert verdict(flipped) in (Verdict.INVALID_SIGNATURE, Verdict.MALFORMED)


def test_usage_code_round_trip(licences: LicenceRegistry, licence_node: Node) -> None:
    data = example_data(FOOD_PERMIT)
    data["number"] = "JY13501000000999"
    issued = licences.issue_licence(
        FOOD_PERMIT, AGENCY_USCC, data, actor="client:e2e", principal=OPERATOR
    )
    code, _ = licences.create_usage_code(
        issued.identifier, actor="holder:e2e", purpose="办理食品经营备案"
    )
    assert licences.fetch_by_usage_code(code, requester="client:verifier") == (
        issued.pdf
    )
    with pytest.raises(UsageCodeRejectedError, match="used up"):
        licences.fetch_by_usage_code(code, requester="client:verifier")

    clock = MovableClock()
    codes = UsageCodes(sessions=licence_node.sessions, clock=clock)
    late_code, _ = codes.create_usage_code(
        issued.identifier,
        actor="holder:e2e",
        purpose="办理",
        ttl=dt.timedelta(minutes=10),
    )
    clock.advance(dt.timedelta(minutes=11))
    with pytest.raises(UsageCodeRejectedError, match="expired"):
        codes.fetch_by_usage_code(late_code, requester="client:verifier")
    logged = [entry.outcome.value for entry in codes.usage_log(issued.identifier)]
    assert sorted(logged) == ["expired", "fetched", "used-up"]


def _signed_version(node: Node, uri: str) -> int:
    with node.sessions() as session:
        return session.scalar(
            select(StatusListRow.signed_version).where(StatusListRow.uri == uri)
        )
