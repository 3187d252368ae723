"""Licences end to end through the console script and a real `yinxin serve` (gunicorn,
2 workers) on an instance made by `yinxin init --demo` (its official seal included),
whose public URL is the server's: the status-list URIs in every credential lead to it.

Acceptance 1: `yinxin license issue` with the business-licence example; its PDF printed
to pixels by `pdftoppm -r 150`; the QR code read by `zbarimg` (an independent reader);
`yinxin license verify` says VALID with the right fields from that text and from the
picture, offline and `--online` against the server's /status; `pdfsig` says the seal is
valid; `yinxin license revoke`, and the same QR code gives REVOKED online and offline.
Then the REST API: issuance by the demo client, a usage code that fetches the PDF
once, verification of an uploaded photo of the QR code, and the status list's forms.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from certs import decode_and_verify_status_list
from certs.status import decode_and_verify_status_list_cwt
from portal.config import SettingOverrides, resolve_settings
from portal.instance import init_instance
from portal.services import Services
from tests.conftest import require_tool
from tests.portal.conftest import (
    BUSINESS_LICENCE,
    FOOD_PERMIT,
    example_data,
    example_file,
)
from tests.portal.live_server import (
    YINXIN_SCRIPT,
    LiveServer,
    free_loopback_port,
    post,
    start_server,
    subprocess_environment,
)
from tests.portal.seal_checks import pdfsig_says_valid

ACCESS_LOG_WAIT_S = 10.0


class Node:
    def __init__(
        self, home: Path, server: LiveServer, agency: str, client: dict[str, str]
    ) -> None:
        self.home = home
        self.server = server
        self.agency = agency
        self.client = client


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    work = tmp_path_factory.mktemp("licence-live")
    port = free_loopback_port()
    home = work / "instance"
    settings = resolve_settings(
        SettingOverrides(home=home, public_base_url=f"http://127.0.0.1:{port}"),
        environ={},
    )
    result = init_instance(settings, demo=True)
    assert result.demo is not None
    secret = result.demo.client_secret_file.read_text().strip()
    token = base64.b64encode(f"{result.demo.client_id}:{secret}".encode()).decode()
    server = start_server(
        home, port, work / "server.log", "--workers", "2", "--refresh-interval", "0"
    )
    try:
        server.wait_until_healthy()
        yield Node(
            home,
            server,
            result.demo.agency_uscc,
            {"Authorization": f"Basic {token}"},
        )
    finally:
        server.stop()


def yinxin(
    home: Path, *args: str, expect: int | None = 0
) -> tuple[int, dict[str, Any]]:
    """The console script with --home and --json; its exit code and JSON object."""
    run = subprocess.run(
        [str(YINXIN_SCRIPT), *args, "--home", str(home), "--json"],
        env=subprocess_environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if expect is not None:
        assert run.returncode == expect, run.stderr + run.stdout
    return run.returncode, json.loads(run.stdout) if run.stdout.strip() else {}


def printed_page(pdf: Path, work: Path) -> Path:
    """The PDF's first page as a 150 dpi PNG, as a printer and scanner would see it."""
    pdftoppm = require_tool("pdftoppm")
    subprocess.run(
        [pdftoppm, "-r", "150", "-png", "-singlefile", str(pdf), str(work / "page")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return work / "page.png"


def zbar_read(image: Path) -> str:
    zbarimg = require_tool("zbarimg")
    run = subprocess.run(
        [zbarimg, "--quiet", "--raw", str(image)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def wait_for_log(server: LiveServer, text: str) -> None:
    deadline = time.monotonic() + ACCESS_LOG_WAIT_S
    while text not in server.log():
        assert time.monotonic() < deadline, f"{text!r} not in the server's log"
        time.sleep(0.1)


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def post_json(
    url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        method="POST",
        headers={**headers, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_issue_print_scan_verify_revoke(node: Node, tmp_path: Path) -> None:
    """Acceptance 1 through the console script and the live server."""
    pdf = tmp_path / "licence.pdf"
    _, issued = yinxin(
        node.home, "license", "issue", "--type", BUSINESS_LICENCE,
        "--agency", node.agency, "--data", str(example_file(BUSINESS_LICENCE)),
        "--out-pdf", str(pdf),
    )  # fmt: skip
    page = printed_page(pdf, tmp_path)
    scanned = zbar_read(page)
    assert scanned == issued["token"]

    expected = example_data(BUSINESS_LICENCE)
    for arguments in (("--token", scanned), ("--qr-image", str(page))):
        _, verdict = yinxin(node.home, "license", "verify", *arguments)
        assert verdict["verdict"] == "VALID", verdict["reason"]
        assert verdict["licence_id"] == issued["identifier"]
        assert verdict["fields"] == {"uscc": expected["uscc"], "name": expected["name"]}
        assert verdict["status"]["checked"] is True
    report = pdfsig_says_valid(pdf)
    assert "某某市市场监督管理局" in report

    # Online: the status list comes over HTTP from the URI in the token — the server.
    list_path = "/status/" + issued["status_list"]["uri"].rsplit("/", 1)[1]
    assert issued["status_list"]["uri"] == node.server.url + list_path
    _, online = yinxin(node.home, "license", "verify", "--token", scanned, "--online")
    assert online["verdict"] == "VALID" and online["status"]["source"] == "fetched"
    wait_for_log(node.server, f"GET {list_path} ")

    _, revoked = yinxin(
        node.home, "license", "revoke", issued["identifier"], "--reason", "吊销营业执照"
    )
    assert revoked["status"] == "revoked"
    for extra in (("--online",), ()):
        code, after = yinxin(
            node.home, "license", "verify", "--token", scanned, *extra, expect=None
        )
        assert (code, after["verdict"]) == (1, "REVOKED"), after["reason"]
        assert after["status"]["status"] == "invalid"
    code, from_picture = yinxin(
        node.home, "license", "verify", "--qr-image", str(page), expect=None
    )
    assert (code, from_picture["verdict"]) == (1, "REVOKED")


def test_the_api_issues_hands_out_by_usage_code_and_verifies_a_photo(
    node: Node, tmp_path: Path
) -> None:
    url = node.server.url
    status, issued = post_json(
        f"{url}/api/v1/licenses",
        {"type": FOOD_PERMIT, "agency": node.agency, "data": example_data(FOOD_PERMIT)},
        node.client,
    )
    assert status == 201, issued
    identifier = issued["identifier"]

    status, made = post_json(
        f"{url}/api/v1/licenses/{identifier}/usage-codes",
        {"ttl": "10m", "purpose": "银行开户"},
        node.client,
    )
    assert status == 201, made
    status, headers, pdf = http_get(url + made["fetch"])
    assert status == 200 and headers["Content-Type"] == "application/pdf"
    status, _, again = http_get(url + made["fetch"])
    assert status == 404 and b"unknown, expired or used up" in again

    # A verifier photographs the printed licence and uploads the picture.
    (tmp_path / "fetched.pdf").write_bytes(pdf)
    page = printed_page(tmp_path / "fetched.pdf", tmp_path)
    status, _, body = post(
        f"{url}/api/v1/verify/licence",
        {"qr_image": ("photo.png", page.read_bytes())},
        {},
    )
    verdict = json.loads(body)
    assert status == 200 and verdict["verdict"] == "VALID", verdict["reason"]
    assert verdict["licence_id"] == identifier
    assert verdict["fields"]["number"] == example_data(FOOD_PERMIT)["number"]
    status, _, body = post(
        f"{url}/api/v1/verify/licence", {"pdf": ("licence.pdf", pdf)}, {}
    )
    assert json.loads(body)["verdict"] == "VALID"

    # The status list, as any verifier fetches it: both forms verify.
    uri = issued["status_list"]["uri"]
    services = Services(resolve_settings(SettingOverrides(home=node.home), environ={}))
    try:
        trust = services.licence_registry().signer_trust()
    finally:
        services.close()
    status, headers, jwt = http_get(uri)
    assert status == 200 and headers["Content-Type"] == "application/statuslist+jwt"
    assert headers["Cache-Control"].startswith("public, max-age=")
    now = dt.datetime.now(dt.UTC)
    decode_and_verify_status_list(jwt.decode(), trust=trust, now=now, expected_uri=uri)
    status, headers, cwt = http_get(uri, {"Accept": "application/statuslist+cwt"})
    assert headers["Content-Type"] == "application/statuslist+cwt"
    decode_and_verify_status_list_cwt(cwt, trust=trust, now=now, expected_uri=uri)


def test_the_access_log_shows_neither_holders_nor_usage_codes(node: Node) -> None:
    """A holder's ID number in a query and a usage code in a path (a bearer secret)
    reach the server, and its access log shows the requests without either."""
    url = node.server.url
    data = example_data(FOOD_PERMIT) | {"number": "JY24403050077777"}
    status, issued = post_json(
        f"{url}/api/v1/licenses", {"type": FOOD_PERMIT, "data": data}, node.client
    )
    assert status == 201, issued
    holder = data["uscc"]
    status, made = post_json(
        f"{url}/api/v1/licenses/{issued['identifier']}/usage-codes",
        {"ttl": "10m", "uses": 2},
        node.client,
    )
    assert status == 201, made
    code = made["code"]
    for fetch in (made["fetch"], made["fetch"].lower()):
        status, _, _ = http_get(url + fetch)
        assert status == 200
    status, _, listed = http_get(
        f"{url}/api/v1/licenses?holder={holder}&limit=5", node.client
    )
    assert status == 200 and issued["identifier"] in listed.decode()
    status, found = post_json(
        f"{url}/api/v1/licenses/search", {"holder": holder}, node.client
    )
    assert status == 200 and found["licences"][0]["identifier"] == issued["identifier"]

    for line in (
        "GET /api/v1/licenses HTTP/1.1",
        "POST /api/v1/licenses/search HTTP/1.1",
        "GET /api/v1/licenses/by-code/<code> HTTP/1.1",
    ):
        wait_for_log(node.server, line)
    log = node.server.log()
    assert log.count("GET /api/v1/licenses/by-code/<code> HTTP/1.1") >= 2
    secret = base64.b64decode(node.client["Authorization"].split()[1]).decode()
    secret = secret.split(":", 1)[1]
    for hidden in (code, code.lower(), code.replace("-", ""), holder, secret):
        assert hidden not in log, hidden
    assert "holder=" not in log
