"""How fast Yinxin stamps PDFs, against bare pyHanko on the same documents and key type.

    .venv/bin/python bench/stamp.py [--quick]

Builds a throw-away region node (SQLite, soft HSM, audit log, CA ceremony), issues an
ECDSA P-256 seal certificate for an HSM key and a second one for an in-memory key, and
stamps the same reportlab documents (1 page, 50 pages) both ways:

- bare: pyHanko's `sign_pdf` with its default settings and a `SimpleSigner` holding the
  in-memory key (an invisible signature; pyHanko sizes the CMS with a dry run);
- ours: `Stamper.stamp` at B-B with the visible seal image, through the key store, so
  each signature also writes its fsync'd, hash-chained audit entry.

Then ours at B-T and B-LT (the node's TSA, OCSP and CRLs called in process), batch
throughput over 200 one-page files (B-B, written to disk), and the peak Python memory
(tracemalloc) stamping a 500-page document with a seam seal on every page.

Prints one line per figure, then one JSON object with all of them. `ratio` is ours /
bare for the 1-page B-B median (below 1 = faster than bare pyHanko; the target is
<= 0.6); `ratio_50_pages` the same for 50 pages.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from asn1crypto import keys as asn1_keys
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko_certvalidator.registry import SimpleCertificateStore
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from hsm_sim.api import KeyUsage
from pki.ca import IssuanceRequest
from seal.fonts import load_seal_font
from seal.image import SealImageSpec, SealKind, render_seal_pdf
from seal.signer import to_asn1_certificate
from seal.stamping import At, Level, SealCredential, SeamSeal, Stamper, StampRequest
from seal.trust_services import node_trust_services
from tests.helpers.node import AGENCY_NAME, AGENCY_USCC, build_node

SEAL_DATA = bytes(range(256)) * 24  # about the size of a real SESeal with its picture


def make_document(pages: int) -> bytes:
    font = load_seal_font()
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    for index in range(pages):
        pdf.setFont(font.reportlab_name, 12)
        for line in range(40):
            pdf.drawString(
                60,
                780 - 18 * line,
                f"第{index + 1}页 第{line + 1}行：关于印发示范文件的通知，请各单位遵照执行。",
            )
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def median_ms(run: Callable[[], object], repeats: int) -> float:
    return paired_medians_ms(run, None, repeats)[0]


def paired_medians_ms(
    first: Callable[[], object], second: Callable[[], object] | None, repeats: int
) -> tuple[float, float]:
    """Medians of `first` and `second` run alternately, so load from other processes
    on the machine weighs on both alike. One warm-up each (imports, caches, first
    TSA/OCSP answers)."""
    runs = [first] if second is None else [first, second]
    times: list[list[float]] = [[] for _ in runs]
    for run in runs:
        run()
    for _ in range(repeats):
        for index, run in enumerate(runs):
            start = time.perf_counter()
            run()
            times[index].append((time.perf_counter() - start) * 1000)
    medians = [statistics.median(t) for t in times]
    return medians[0], medians[-1]


def bare_signer(node, subject) -> signers.SimpleSigner:
    """pyHanko's SimpleSigner with an in-memory P-256 key, certified by the same seal CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    issued = node.ca.issue(
        IssuanceRequest(profile="seal", subject=subject, public_key=key.public_key())
    )
    chain = node.ca.chain(node.ca.issuer(issued.issuer))
    certificate = to_asn1_certificate(issued.certificate)
    return signers.SimpleSigner(
        signing_cert=certificate,
        signing_key=asn1_keys.PrivateKeyInfo.load(
            key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        ),
        cert_registry=SimpleCertificateStore.from_certs(
            [certificate, *map(to_asn1_certificate, chain)]
        ),
    )


def sign_bare(signer: signers.SimpleSigner, pdf: bytes) -> bytes:
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    return signers.sign_pdf(
        writer, signers.PdfSignatureMetadata(field_name="Signature1"), signer=signer
    ).getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer repeats and files (a smoke run)"
    )
    args = parser.parse_args()
    repeats, batch_files, big_pages = (5, 20, 100) if args.quick else (30, 200, 500)

    with tempfile.TemporaryDirectory(prefix="yinxin-bench-stamp-") as scratch:
        home = Path(scratch)
        node = build_node(home / "node")
        issued = node.ra.issue_with_new_key(
            profile_name="seal", key_label="bench-seal", agency_uscc=AGENCY_USCC
        )
        credential = SealCredential(
            key=node.keystore.private_key("bench-seal", usage=KeyUsage.SEAL),
            certificate=issued.certificate,
            chain=tuple(node.ca.chain(node.ca.issuer(issued.issuer))),
            image_pdf=render_seal_pdf(
                SealImageSpec(
                    name=AGENCY_NAME, kind=SealKind.OFFICIAL, code="3501000000001"
                )
            ),
            seal_data=SEAL_DATA,
            name="bench-seal",
        )
        stamper = Stamper(
            credential, services=node_trust_services(node.timestamps, node.revocation)
        )
        bare = bare_signer(node, issued.certificate.subject)
        one_page, fifty_pages = make_document(1), make_document(50)
        visible = (At(page=1, x_mm=150, y_mm=240),)

        def ours(pdf: bytes, level: Level) -> Callable[[], bytes]:
            request = StampRequest(placements=visible, level=level)
            return lambda: stamper.stamp(pdf, request, actor="bench")

        figures: dict[str, float] = {}
        figures["bare_1_page_ms"], figures["ours_b_b_1_page_ms"] = paired_medians_ms(
            lambda: sign_bare(bare, one_page), ours(one_page, Level.B_B), repeats
        )
        figures["bare_50_pages_ms"], figures["ours_b_b_50_pages_ms"] = (
            paired_medians_ms(
                lambda: sign_bare(bare, fifty_pages),
                ours(fifty_pages, Level.B_B),
                repeats,
            )
        )
        figures["ratio"] = figures["ours_b_b_1_page_ms"] / figures["bare_1_page_ms"]
        figures["ratio_50_pages"] = (
            figures["ours_b_b_50_pages_ms"] / figures["bare_50_pages_ms"]
        )
        figures["ours_b_t_1_page_ms"] = median_ms(ours(one_page, Level.B_T), repeats)
        figures["ours_b_lt_1_page_ms"] = median_ms(ours(one_page, Level.B_LT), repeats)
        figures["ours_b_lt_50_pages_ms"] = median_ms(
            ours(fifty_pages, Level.B_LT), max(3, repeats // 3)
        )

        inbox, outbox = home / "batch-in", home / "batch-out"
        inbox.mkdir()
        for index in range(batch_files):
            (inbox / f"{index:04d}.pdf").write_bytes(one_page)
        start = time.perf_counter()
        report = stamper.stamp_batch(
            inbox,
            outbox,
            StampRequest(placements=visible, level=Level.B_B),
            actor="bench",
        )
        elapsed = time.perf_counter() - start
        if report.failed or len(report.stamped) != batch_files:
            raise SystemExit(f"batch failed: {report.failed[:1]}")
        figures["batch_files"] = batch_files
        figures["batch_files_per_s"] = batch_files / elapsed

        big = make_document(big_pages)
        tracemalloc.start()
        start = time.perf_counter()
        sealed = stamper.stamp(
            big, StampRequest(placements=visible, seam=SeamSeal(), level=Level.B_B)
        )
        figures["big_pages"] = big_pages
        figures["big_stamp_ms"] = (time.perf_counter() - start) * 1000
        figures["big_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        figures["big_input_mib"] = len(big) / 2**20
        figures["big_output_mib"] = len(sealed) / 2**20
        node.close()

    for name, value in figures.items():
        print(f"{name:24} {value:10.3f}")
    print(json.dumps({k: round(v, 3) for k, v in figures.items()}))


if __name__ == "__main__":
    main()
