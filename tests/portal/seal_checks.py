"""What the seal tests look at in their output: the CLI's answer, where a seal sits, and
what a verifier makes of the document."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from pyhanko.pdf_utils.generic import IndirectObject
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import enumerate_sig_fields

from hsm_sim.errors import ErrorCategory
from portal.cli import cli
from portal.config import SettingOverrides, resolve_settings
from portal.errors import EXIT_CODE_BY_CATEGORY
from portal.services import Services
from seal.verify import PdfVerification, verify_pdf
from tests.conftest import require_tool

POINTS_PER_MM = 72 / 25.4
# Resources name the stamper gives the seal image drawn into page content.
DRAWN_SEAL = "/YinxinSeal"


def invoke(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, [*args, "--home", str(home)])


def run_json(home: Path, *args: str) -> dict[str, Any]:
    result = invoke(home, *args, "--json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def one_error_line(result: Result, category: ErrorCategory) -> str:
    """The single `yinxin: error:` line of a failed command, its exit code checked."""
    assert result.exit_code == EXIT_CODE_BY_CATEGORY[category], result.output
    assert result.stdout == ""
    text = result.stderr
    assert text.startswith("yinxin: error: ") and text.count("\n") == 1, text
    assert "Traceback" not in text
    return text.removeprefix("yinxin: error: ").rstrip("\n")


@dataclasses.dataclass(frozen=True)
class SealLayout:
    """Where the seals of a stamped document are."""

    field_page: int | None  # 1-based page of the signature's visible seal
    field_centre_mm: tuple[float, float] | None  # from the page's top-left corner
    drawn_pages: frozenset[int]  # pages with seal images drawn into their content


def seal_layout(pdf: bytes) -> SealLayout:
    reader = PdfFileReader(io.BytesIO(pdf))
    kids = reader.root["/Pages"].raw_get("/Kids")
    page_numbers = {ref.idnum: index for index, ref in enumerate(kids, start=1)}
    drawn = frozenset(
        number
        for ref in kids
        for number in [page_numbers[ref.idnum]]
        if DRAWN_SEAL in ref.get_object()["/Resources"].get("/XObject", {})
    )
    fields = list(enumerate_sig_fields(reader))
    field = fields[0][2].get_object()  # the first seal (a B-LTA timestamp follows)
    x0, y0, x1, y1 = (float(v) for v in field["/Rect"])
    if x1 - x0 < 1:
        return SealLayout(None, None, drawn)
    page_ref = field.raw_get("/P")
    assert isinstance(page_ref, IndirectObject)
    height = float(page_ref.get_object()["/MediaBox"][3])
    centre = ((x0 + x1) / 2 / POINTS_PER_MM, (height - (y0 + y1) / 2) / POINTS_PER_MM)
    return SealLayout(page_numbers[page_ref.idnum], centre, drawn)


def verify_on_node(home: Path, pdf: bytes) -> PdfVerification:
    """verify_pdf trusting the instance's root CA, as its operator would."""
    services = Services(resolve_settings(SettingOverrides(home=home), environ={}))
    try:
        return verify_pdf(pdf, trust_roots=services.trust_roots())
    finally:
        services.close()


def pdfsig_says_valid(pdf_path: Path) -> str:
    """pdfsig's report, asserted to call every seal (CAdES signature) valid. pdfsig
    exits 0 even when a digest does not match, so its text is what counts; it does not
    check document timestamps (B-LTA), which are left out."""
    pdfsig = require_tool("pdfsig")
    report = subprocess.run(
        [pdfsig, str(pdf_path)], capture_output=True, text=True, timeout=60, check=False
    ).stdout
    seals = [
        block
        for block in report.split("Signature #")[1:]
        if "Signature Type: ETSI.CAdES.detached" in block
    ]
    assert seals, report
    for block in seals:
        assert "Signature Validation: Signature is Valid." in block, report
    return report
