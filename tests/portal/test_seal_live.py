"""Seals end to end through a real `yinxin serve` (gunicorn, 2 workers): an agency's
client stamps over HTTP, anyone verifies over HTTP, `yinxin verify pdf --online` checks
revocation live against the server, and a revoked seal stops stamping and fails.

The instance's public URL is its own server's, so the OCSP and CRL URLs inside the
seal certificate lead back to it.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from portal.cli import cli
from portal.config import SettingOverrides, resolve_settings
from portal.instance import init_instance
from seal.fonts import SealFont
from tests.portal.conftest import make_document
from tests.portal.live_server import (
    YINXIN_VARIABLES,
    LiveServer,
    free_loopback_port,
    post,
    start_server,
)
from tests.portal.seal_checks import pdfsig_says_valid

REVOCATION_WAIT_S = 5.0


def yinxin(home: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        cli, [*args, "--home", str(home), "--json"], env=dict.fromkeys(YINXIN_VARIABLES)
    )
    document = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.exit_code, document


class Node:
    def __init__(self, home: Path, server: LiveServer, client: dict[str, str]) -> None:
        self.home = home
        self.server = server
        self.client = client
        self.seal_id = ""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    work = tmp_path_factory.mktemp("seal-live")
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
    # A script's headers: its credentials, and the marker that says no browser sent
    # the multipart upload from another site.
    live = Node(
        home, server, {"Authorization": f"Basic {token}", "X-Yinxin-Client": "1"}
    )
    try:
        server.wait_until_healthy()
        # `yinxin init --demo` made the demo agency's official seal and granted it.
        assert result.demo.official_seal_id is not None
        live.seal_id = result.demo.official_seal_id
        yield live
    finally:
        server.stop()


def test_concurrent_stamps_share_the_workers_stampers(
    node: Node, document_font: SealFont
) -> None:
    """Twelve stamps at once on 2 workers x 4 threads, through the stampers each
    worker shares between its threads: every one valid, each of its own document."""
    documents = [
        make_document(document_font, pages=n % 3 + 1, keyword_pages=(1,))
        for n in range(12)
    ]

    def stamp_one(document: bytes) -> tuple[int, bytes]:
        status, _, body = post(
            f"{node.server.url}/api/v1/seals/{node.seal_id}/stamp",
            {
                "file": ("n.pdf", document),
                "placement": '{"keyword": "盖章处"}',
                "level": "B-T",
            },
            node.client,
        )
        return status, body

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(stamp_one, documents))
    assert [status for status, _ in results] == [200] * len(documents)
    for (_, sealed), document in zip(results, documents, strict=True):
        assert sealed.startswith(document)  # an incremental update of that document
        status, _, body = post(
            f"{node.server.url}/api/v1/verify/pdf", {"file": ("x.pdf", sealed)}, {}
        )
        assert status == 200 and json.loads(body)["valid"]


def test_stamp_and_verify_over_http_then_revoke(
    node: Node, document_font: SealFont, tmp_path: Path
) -> None:
    document = make_document(document_font)
    url = node.server.url
    status, headers, sealed = post(
        f"{url}/api/v1/seals/{node.seal_id}/stamp",
        {
            "file": ("notice.pdf", document),
            "placement": json.dumps({"keyword": "盖章处", "occurrence": "all"}),
            "seam": "true",
            "level": "B-B",
        },
        node.client,
    )
    assert status == 200, sealed[:500]
    assert headers["Content-Type"] == "application/pdf"
    assert 'filename="notice-sealed.pdf"' in headers["Content-Disposition"]
    sealed_path = tmp_path / "notice-sealed.pdf"
    sealed_path.write_bytes(sealed)
    pdfsig_says_valid(sealed_path)

    status, _, body = post(f"{url}/api/v1/verify/pdf", {"file": ("x.pdf", sealed)}, {})
    assert status == 200
    report = json.loads(body)
    assert report["valid"], report["reason"]

    # A relying party with only the root certificate, no instance: revocation comes
    # live from the server the certificate names (B-B embeds none).
    root = tmp_path / "root.pem"
    code, _ = yinxin(node.home, "ca", "export", "--name", "root", "--out", str(root))
    assert code == 0
    elsewhere = tmp_path / "no-instance"
    code, offline = yinxin(
        elsewhere, "verify", "pdf", str(sealed_path), "--trust", str(root)
    )
    assert code == 0
    assert offline["signatures"][0]["revocation"]["status"] == "not-checked"
    code, online = yinxin(
        elsewhere, "verify", "pdf", str(sealed_path), "--trust", str(root), "--online"
    )
    assert code == 0, online["reason"]
    assert online["signatures"][0]["revocation"]["status"] == "good"
    assert online["signatures"][0]["revocation"]["source"] == "online"

    code, revoked = yinxin(
        node.home, "seal", "revoke", node.seal_id, "--reason", "keyCompromise"
    )
    assert code == 0 and revoked["status"] == "revoked"
    status, _, body = post(
        f"{url}/api/v1/seals/{node.seal_id}/stamp",
        {"file": ("notice.pdf", document), "level": "B-B"},
        node.client,
    )
    assert status == 403
    assert json.loads(body)["type"] == "urn:yinxin:problem:seal-not-usable"
    # Each web worker keeps a pre-signed OCSP answer for 0.5 s.
    deadline = time.monotonic() + REVOCATION_WAIT_S
    while True:
        code, after = yinxin(
            elsewhere,
            "verify",
            "pdf",
            str(sealed_path),
            "--trust",
            str(root),
            "--online",
        )
        if code != 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert code == 1, after["reason"]
    assert after["signatures"][0]["revocation"]["status"] == "revoked"
    # The server's own verifier asks its own responder, in process.
    status, _, body = post(f"{url}/api/v1/verify/pdf", {"file": ("x.pdf", sealed)}, {})
    assert status == 200 and json.loads(body)["valid"] is False
