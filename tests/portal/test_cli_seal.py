"""`yinxin seal ...` on a copy of the seal template (demo instance, soft HSM, SQLite):
making, listing, the lifecycle, grants, images, stamping in every placement mode and
level, batches, and every refusal as one line with its category's exit code."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pwd
from pathlib import Path

import pytest
from PIL import Image

from hsm_sim.errors import ErrorCategory
from seal.fonts import SealFont
from seal.verify import SignatureKind
from tests.portal.conftest import (
    OTHER_AGENCY_USCC,
    SealWorld,
    count_rows,
    granted_signatures,
    make_document,
)
from tests.portal.seal_checks import (
    invoke,
    one_error_line,
    pdfsig_says_valid,
    run_json,
    seal_layout,
    verify_on_node,
)

DEMO_AGENCY = "某某市市场监督管理局"


def hashlib_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stamp_log_rows(home: Path, outcome: str | None = None) -> int:
    if outcome is None:
        return count_rows(home, "SELECT count(*) FROM stamp_log")
    return count_rows(home, "SELECT count(*) FROM stamp_log WHERE outcome = ?", outcome)


# -- making and reading -----------------------------------------------------------------


def test_make_a_legal_representatives_seal_and_a_finance_seal(
    seal_home: Path, seal_world: SealWorld
) -> None:
    person = run_json(
        seal_home,
        "seal",
        "make",
        "--agency",
        seal_world.demo_uscc,
        "--type",
        "legal-rep",
        "--name",
        "王小明",
    )
    assert person["type"] == "legal-rep"
    assert person["person_name"] == "王小明"
    assert person["name"] == f"{DEMO_AGENCY}法定代表人章（王小明）"
    assert person["status"] == "active"

    finance = run_json(
        seal_home,
        "seal",
        "make",
        "--agency",
        seal_world.demo_uscc,
        "--type",
        "finance",
        "--name",
        DEMO_AGENCY,
        "--valid-until",
        "2027-06-30",
    )
    assert finance["name"] == f"{DEMO_AGENCY}财务专用章"
    # The end of 30 June in China (UTC+8) is 15:59:59 UTC.
    assert dt.datetime.fromisoformat(finance["valid_until"]) == dt.datetime(
        2027, 6, 30, 15, 59, 59, tzinfo=dt.UTC
    )
    assert finance["es_id"] != person["es_id"]
    listed = {s["id"] for s in run_json(seal_home, "seal", "list")["seals"]}
    assert {person["id"], finance["id"]} <= listed

    text = invoke(
        seal_home,
        "seal",
        "make",
        "--agency",
        seal_world.demo_uscc,
        "--type",
        "official",
    )
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith(f"Made {DEMO_AGENCY} (sl_")


def test_make_refusals_change_nothing(seal_home: Path, seal_world: SealWorld) -> None:
    before = run_json(seal_home, "seal", "list")["seals"]
    cases = [
        (
            ("--type", "contract", "--name", "别的名字"),
            ErrorCategory.BAD_REQUEST,
            "registered name",
        ),
        (("--type", "legal-rep"), ErrorCategory.BAD_REQUEST, "person's name"),
        (
            ("--type", "official", "--valid-until", "2020-01-01"),
            ErrorCategory.BAD_REQUEST,
            "future",
        ),
        (("--type", "stamp"), ErrorCategory.BAD_REQUEST, "'stamp' is not one of"),
        (
            ("--type", "official", "--valid-until", "31.12.2027"),
            ErrorCategory.BAD_REQUEST,
            "YYYY-MM-DD",
        ),
    ]
    for extra, category, words in cases:
        result = invoke(
            seal_home, "seal", "make", "--agency", seal_world.demo_uscc, *extra
        )
        if "YYYY" in words:
            assert (
                "'31.12.2027' does not match the format '%Y-%m-%d'"
                in one_error_line(result, category)
            )
        else:
            assert words in one_error_line(result, category)
    unknown = invoke(
        seal_home,
        "seal",
        "make",
        "--agency",
        "91350100MA2Y8BYX2A",
        "--type",
        "official",
    )
    assert "no agency" in one_error_line(unknown, ErrorCategory.NOT_FOUND)
    assert run_json(seal_home, "seal", "list")["seals"] == before


def test_list_filters_by_agency_and_status(
    seal_home: Path, seal_world: SealWorld
) -> None:
    everything = run_json(seal_home, "seal", "list")["seals"]
    assert [s["id"] for s in everything] == [
        seal_world.official.id,
        seal_world.suspended.id,
        seal_world.ungranted.id,
        seal_world.foreign.id,
    ]
    other = run_json(seal_home, "seal", "list", "--agency", OTHER_AGENCY_USCC)["seals"]
    assert [s["id"] for s in other] == [seal_world.foreign.id]
    suspended = run_json(seal_home, "seal", "list", "--status", "suspended")["seals"]
    assert [(s["id"], s["suspension_note"]) for s in suspended] == [
        (seal_world.suspended.id, "under review")
    ]
    text = invoke(seal_home, "seal", "list", "--agency", seal_world.demo_uscc)
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(
        f"{seal_world.official.id}  {seal_world.official.es_id}  official"
    )


def test_show_names_the_seal_and_who_may_stamp(
    seal_home: Path, seal_world: SealWorld
) -> None:
    shown = run_json(seal_home, "seal", "show", seal_world.official.es_id)
    assert shown["id"] == seal_world.official.id
    assert shown["agency"] == {"uscc": seal_world.demo_uscc, "name": DEMO_AGENCY}
    assert [g["principal"] for g in shown["grants"]] == [
        f"client:{seal_world.demo_client_id}"
    ]
    text = invoke(seal_home, "seal", "show", seal_world.ungranted.id)
    assert text.exit_code == 0
    assert "nobody but the operator" in text.stdout
    assert f"{DEMO_AGENCY}财务专用章" in text.stdout
    missing = invoke(seal_home, "seal", "show", "sl_0000000000000000")
    assert "no seal" in one_error_line(missing, ErrorCategory.NOT_FOUND)


def test_suspend_reinstate_and_revoke(seal_home: Path, seal_world: SealWorld) -> None:
    seal_id = seal_world.official.id
    suspended = run_json(
        seal_home, "seal", "suspend", seal_id, "--note", "key holder on leave"
    )
    assert (suspended["status"], suspended["suspension_note"]) == (
        "suspended",
        "key holder on leave",
    )
    again = invoke(seal_home, "seal", "suspend", seal_id)
    assert again.exit_code == 0 and "suspended since" in again.stdout
    assert run_json(seal_home, "seal", "reinstate", seal_id)["status"] == "active"

    hold = invoke(seal_home, "seal", "revoke", seal_id, "--reason", "certificateHold")
    assert "suspend the seal" in one_error_line(hold, ErrorCategory.BAD_REQUEST)
    nonsense = invoke(seal_home, "seal", "revoke", seal_id, "--reason", "boredom")
    one_error_line(nonsense, ErrorCategory.BAD_REQUEST)
    revoked = run_json(
        seal_home, "seal", "revoke", seal_id, "--reason", "keyCompromise"
    )
    assert (revoked["status"], revoked["revocation_reason"]) == (
        "revoked",
        "keyCompromise",
    )
    back = invoke(seal_home, "seal", "reinstate", seal_id)
    assert "cannot be reinstated" in one_error_line(back, ErrorCategory.CONFLICT)
    # Its key is gone from the HSM, and its certificate revoked at the CA.
    labels = {k["label"] for k in run_json(seal_home, "hsm", "keys")["keys"]}
    assert seal_world.official.key_label not in labels
    assert (
        count_rows(
            seal_home,
            "SELECT count(*) FROM certificate WHERE serial = ? AND revoked_at IS NOT NULL",
            seal_world.official.certificate_serial,
        )
        == 1
    )
    # The key's destruction is audited under the operator who revoked the seal.
    operator = f"cli:{pwd.getpwuid(os.getuid()).pw_name}(uid {os.getuid()})"
    assert (
        count_rows(
            seal_home,
            "SELECT count(*) FROM audit_entry WHERE operation LIKE 'destroy%' "
            "AND key_label = ? AND actor = ?",
            seal_world.official.key_label,
            operator,
        )
        == 1
    )


def test_grant_and_withdraw(seal_home: Path, seal_world: SealWorld) -> None:
    seal_id = seal_world.ungranted.id
    granted = run_json(
        seal_home, "seal", "grant", seal_id, "--staff", seal_world.staff_username
    )
    assert granted["principal"] == f"staff:{seal_world.staff_username}"
    text = invoke(
        seal_home, "seal", "grant", seal_id, "--client", seal_world.demo_client_id
    )
    assert (
        text.stdout
        == f"client:{seal_world.demo_client_id} may stamp with seal {seal_id}.\n"
    )
    principals = [
        g["principal"] for g in run_json(seal_home, "seal", "show", seal_id)["grants"]
    ]
    assert principals == [
        f"staff:{seal_world.staff_username}",
        f"client:{seal_world.demo_client_id}",
    ]

    withdrawn = run_json(
        seal_home, "seal", "withdraw", seal_id, "--client", seal_world.demo_client_id
    )
    assert withdrawn["withdrawn_at"] is not None
    twice = invoke(
        seal_home, "seal", "withdraw", seal_id, "--client", seal_world.demo_client_id
    )
    assert "has no grant" in one_error_line(twice, ErrorCategory.NOT_FOUND)

    foreign = invoke(
        seal_home, "seal", "grant", seal_id, "--client", seal_world.other_client_id
    )
    assert "does not belong to agency" in one_error_line(
        foreign, ErrorCategory.BAD_REQUEST
    )
    both = invoke(seal_home, "seal", "grant", seal_id, "--client", "x", "--staff", "y")
    assert "name one principal" in one_error_line(both, ErrorCategory.BAD_REQUEST)
    neither = invoke(seal_home, "seal", "withdraw", seal_id)
    assert "name one principal" in one_error_line(neither, ErrorCategory.BAD_REQUEST)
    nobody = invoke(seal_home, "seal", "grant", seal_id, "--client", "cl_nobody")
    one_error_line(nobody, ErrorCategory.NOT_FOUND)


def test_export_image_as_png_and_vector_pdf(
    seal_home: Path, seal_world: SealWorld, tmp_path: Path
) -> None:
    png = tmp_path / "seal.png"
    document = run_json(
        seal_home,
        "seal",
        "export-image",
        "--seal",
        seal_world.official.id,
        "--out",
        str(png),
    )
    assert document["format"] == "png"
    with Image.open(png) as image:
        assert image.format == "PNG" and image.mode == "RGBA"
        # The seal's real size at 300 dpi.
        width_mm = seal_world.official.size_mm[0]
        assert abs(image.width - width_mm / 25.4 * 300) <= 2
    pdf = tmp_path / "seal.pdf"
    assert (
        run_json(
            seal_home,
            "seal",
            "export-image",
            "--seal",
            seal_world.official.es_id,
            "--out",
            str(pdf),
        )["format"]
        == "pdf"
    )
    assert pdf.read_bytes().startswith(b"%PDF-")

    missing = invoke(
        seal_home,
        "seal",
        "export-image",
        "--seal",
        "sl_0000000000000000",
        "--out",
        str(tmp_path / "x.png"),
    )
    one_error_line(missing, ErrorCategory.NOT_FOUND)
    nowhere = invoke(
        seal_home,
        "seal",
        "export-image",
        "--seal",
        seal_world.official.id,
        "--out",
        str(tmp_path / "no" / "x.png"),
    )
    assert "does not exist" in one_error_line(nowhere, ErrorCategory.BAD_REQUEST)


def test_seal_log_lists_stamps_newest_first(
    seal_home: Path,
    seal_world: SealWorld,
    sample_pdf: bytes,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Who stamps is the process's real user, whatever the environment claims.
    for variable in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(variable, "mallory")
    operator = f"{pwd.getpwuid(os.getuid()).pw_name}(uid {os.getuid()})"
    source = tmp_path / "in.pdf"
    source.write_bytes(sample_pdf)
    for index in range(2):
        stamped = invoke(
            seal_home,
            "seal",
            "stamp",
            "--seal",
            seal_world.official.id,
            str(source),
            str(tmp_path / f"out{index}.pdf"),
            "--level",
            "B-B",
        )
        assert stamped.exit_code == 0, stamped.output
    entries = run_json(seal_home, "seal", "log", seal_world.official.id)["stamps"]
    assert [e["outcome"] for e in entries] == ["stamped", "stamped"]
    assert entries[0]["id"] > entries[1]["id"]
    assert [e["principal"] for e in entries] == [f"operator:{operator}"] * 2
    assert entries[0]["sealed_sha256"] == hashlib_of(tmp_path / "out1.pdf")
    assert (
        count_rows(
            seal_home, "SELECT count(*) FROM audit_entry WHERE actor LIKE '%mallory%'"
        )
        == 0
    )
    text = invoke(seal_home, "seal", "log")
    assert text.exit_code == 0 and seal_world.official.es_id in text.stdout


# -- stamping ---------------------------------------------------------------------------

# Each placement mode: CLI options, the page of the visible seal, its centre (mm from
# the top-left, or None to skip), and the pages with seal images drawn into them.
KEYWORD_CENTRE = (141.5, 243.0)  # 盖章处 at (380, 150) pt, 14 pt CJK
PLACEMENTS = {
    "coordinates": (("--page", "2", "--x", "60", "--y", "80"), 2, (60.0, 80.0), set()),
    "several-coordinates": (
        (
            "--page",
            "1",
            "--x",
            "150",
            "--y",
            "240",
            "--page",
            "3",
            "--x",
            "40",
            "--y",
            "40",
        ),
        1,
        (150.0, 240.0),
        {3},
    ),
    "keyword-first": (("--keyword", "盖章处"), 2, KEYWORD_CENTRE, set()),
    "keyword-last": (
        ("--keyword", "盖章处", "--occurrence", "last"),
        3,
        KEYWORD_CENTRE,
        set(),
    ),
    "keyword-all": (
        ("--keyword", "盖章处", "--occurrence", "all"),
        2,
        KEYWORD_CENTRE,
        {3},
    ),
    "keyword-second": (
        ("--keyword", "盖章处", "--occurrence", "2"),
        3,
        KEYWORD_CENTRE,
        set(),
    ),
    "seam-right": (("--seam",), None, None, {1, 2, 3}),
    "seam-left-and-keyword": (
        ("--keyword", "盖章处", "--seam", "--side", "left"),
        2,
        KEYWORD_CENTRE,
        {1, 2, 3},
    ),
    "invisible": ((), None, None, set()),
}


@pytest.mark.parametrize("mode", PLACEMENTS)
def test_stamp_places_the_seal(
    mode: str, seal_home: Path, seal_world: SealWorld, sample_pdf: bytes, tmp_path: Path
) -> None:
    options, page, centre, drawn = PLACEMENTS[mode]
    source, target = tmp_path / "notice.pdf", tmp_path / "sealed.pdf"
    source.write_bytes(sample_pdf)
    result = run_json(
        seal_home,
        "seal",
        "stamp",
        "--seal",
        seal_world.official.id,
        str(source),
        str(target),
        "--level",
        "B-B",
        *options,
    )
    sealed = target.read_bytes()
    assert result["sealed_sha256"] == hashlib_of(target)
    assert result["level"] == "B-B"
    layout = seal_layout(sealed)
    assert layout.field_page == page
    if centre is not None:
        assert layout.field_centre_mm is not None
        assert layout.field_centre_mm == pytest.approx(centre, abs=6)
    assert layout.drawn_pages == drawn
    report = verify_on_node(seal_home, sealed)
    assert report.valid, report.reason
    assert [s.seal.es_id for s in report.seals if s.seal] == [seal_world.official.es_id]


@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT", "B-LTA"])
def test_stamp_at_each_level(
    level: str,
    seal_home: Path,
    seal_world: SealWorld,
    sample_pdf: bytes,
    tmp_path: Path,
) -> None:
    source, target = tmp_path / "notice.pdf", tmp_path / "sealed.pdf"
    source.write_bytes(sample_pdf)
    run_json(
        seal_home,
        "seal",
        "stamp",
        "--seal",
        seal_world.official.id,
        str(source),
        str(target),
        "--level",
        level,
        "--keyword",
        "盖章处",
    )
    report = verify_on_node(seal_home, target.read_bytes())
    assert report.valid, report.reason
    seal, *rest = report.signatures
    assert (seal.timestamp is not None) == (level != "B-B")
    assert [s.kind for s in rest] == (
        [SignatureKind.DOCUMENT_TIMESTAMP] if level == "B-LTA" else []
    )
    if level in ("B-LT", "B-LTA"):
        assert seal.revocation is not None and seal.revocation.source == "embedded"
        assert "not checked" not in report.reason


def test_certify_and_pdfsig_on_a_cli_stamped_file(
    seal_home: Path, seal_world: SealWorld, sample_pdf: bytes, tmp_path: Path
) -> None:
    source, target = tmp_path / "notice.pdf", tmp_path / "sealed.pdf"
    source.write_bytes(sample_pdf)
    text = invoke(
        seal_home,
        "seal",
        "stamp",
        "--seal",
        seal_world.official.id,
        str(source),
        str(target),
        "--page",
        "1",
        "--x",
        "150",
        "--y",
        "240",
        "--certify",
    )
    assert text.exit_code == 0, text.output
    assert text.stdout.startswith(
        f"Sealed {target} with {DEMO_AGENCY} ({seal_world.official.id}"
    )
    assert "level B-LT" in text.stdout and "certifying" in text.stdout
    report = verify_on_node(seal_home, target.read_bytes())
    assert report.valid, report.reason
    assert report.signatures[0].kind is SignatureKind.CERTIFICATION
    pdfsig = pdfsig_says_valid(target)
    assert f"O={DEMO_AGENCY}" in pdfsig
    assert f"NTRCN-{seal_world.demo_uscc}" in pdfsig
    # Certified with no changes allowed: a second seal is refused.
    again = invoke(
        seal_home,
        "seal",
        "stamp",
        "--seal",
        seal_world.official.id,
        str(target),
        str(tmp_path / "twice.pdf"),
    )
    assert "no changes allowed" in one_error_line(again, ErrorCategory.CONFLICT)


def test_stamp_refusals(
    seal_home: Path, seal_world: SealWorld, sample_pdf: bytes, tmp_path: Path
) -> None:
    pdf = tmp_path / "notice.pdf"
    pdf.write_bytes(sample_pdf)
    text_file = tmp_path / "notice.txt"
    text_file.write_text("not a PDF at all\n")
    out = str(tmp_path / "out.pdf")
    official = seal_world.official.id
    signatures = granted_signatures(seal_home)
    cases: list[tuple[tuple[str, ...], ErrorCategory, str]] = [
        (
            ("--seal", official, str(text_file), out),
            ErrorCategory.BAD_REQUEST,
            "not a PDF",
        ),
        (
            (
                "--seal",
                official,
                str(pdf),
                out,
                "--page",
                "9",
                "--x",
                "10",
                "--y",
                "10",
            ),
            ErrorCategory.BAD_REQUEST,
            "page 9 does not exist",
        ),
        (
            (
                "--seal",
                official,
                str(pdf),
                out,
                "--page",
                "1",
                "--x",
                "400",
                "--y",
                "10",
            ),
            ErrorCategory.BAD_REQUEST,
            "outside page 1",
        ),
        (
            ("--seal", official, str(pdf), out, "--keyword", "不存在的字"),
            ErrorCategory.BAD_REQUEST,
            "was not found",
        ),
        (
            (
                "--seal",
                official,
                str(pdf),
                out,
                "--keyword",
                "盖章处",
                "--occurrence",
                "5",
            ),
            ErrorCategory.BAD_REQUEST,
            "no occurrence 5",
        ),
        (
            ("--seal", official, str(pdf), out, "--page", "1", "--x", "10"),
            ErrorCategory.BAD_REQUEST,
            "all three of --page, --x and --y",
        ),
        (
            ("--seal", official, str(pdf), out, "--occurrence", "last"),
            ErrorCategory.BAD_REQUEST,
            "--occurrence goes with --keyword",
        ),
        (
            ("--seal", official, str(pdf), out, "--side", "left"),
            ErrorCategory.BAD_REQUEST,
            "go with --seam",
        ),
        (
            (
                "--seal",
                official,
                str(pdf),
                out,
                "--keyword",
                "盖章处",
                "--occurrence",
                "zero",
            ),
            ErrorCategory.BAD_REQUEST,
            "first, last, all or a number",
        ),
        (
            ("--seal", official, str(pdf), out, "--level", "B-XL"),
            ErrorCategory.BAD_REQUEST,
            "unknown PAdES level",
        ),
        (
            ("--seal", official, str(pdf), str(tmp_path / "missing" / "out.pdf")),
            ErrorCategory.BAD_REQUEST,
            "does not exist",
        ),
        (
            ("--seal", "sl_0000000000000000", str(pdf), out),
            ErrorCategory.NOT_FOUND,
            "no seal",
        ),
        (
            ("--seal", seal_world.suspended.id, str(pdf), out),
            ErrorCategory.FORBIDDEN,
            "suspended",
        ),
    ]
    for args, category, words in cases:
        result = invoke(seal_home, "seal", "stamp", *args)
        assert words in one_error_line(result, category), args
    assert not (tmp_path / "out.pdf").exists()
    assert granted_signatures(seal_home) == signatures
    assert stamp_log_rows(seal_home, "stamped") == 0
    # Refused before logging (bad options, a suspended seal) or logged as failed.
    assert stamp_log_rows(seal_home) == stamp_log_rows(seal_home, "failed") > 0


def test_stamp_a_one_page_document_with_a_seam_is_refused(
    seal_home: Path, seal_world: SealWorld, document_font: SealFont, tmp_path: Path
) -> None:
    source = tmp_path / "one.pdf"
    source.write_bytes(make_document(document_font, pages=1, keyword_pages=(1,)))
    result = invoke(
        seal_home,
        "seal",
        "stamp",
        "--seal",
        seal_world.official.id,
        str(source),
        str(tmp_path / "out.pdf"),
        "--seam",
    )
    assert "at least two pages" in one_error_line(result, ErrorCategory.BAD_REQUEST)


# -- batches ----------------------------------------------------------------------------


def make_batch(directory: Path, document_font: SealFont) -> None:
    directory.mkdir()
    for index in range(3):
        (directory / f"notice-{index}.pdf").write_bytes(
            make_document(document_font, pages=index + 1, keyword_pages=(index + 1,))
        )
    (directory / "broken.pdf").write_bytes(b"%PDF-1.7\nthis is not really a PDF\n")
    (directory / "readme.txt").write_text("not stamped: not a .pdf\n")


def test_batch_stamps_every_pdf_and_skips_a_bad_one(
    seal_home: Path, seal_world: SealWorld, document_font: SealFont, tmp_path: Path
) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    make_batch(source, document_font)
    result = invoke(
        seal_home,
        "seal",
        "batch",
        "--seal",
        seal_world.official.id,
        "--in",
        str(source),
        "--out",
        str(target),
        "--keyword",
        "盖章处",
        "--level",
        "B-T",
    )
    assert result.exit_code == 1, result.output
    assert result.stdout.startswith(f"Stamped 3 of 4 PDF file(s) into {target}")
    assert "1 skipped" in result.stdout
    assert "skipped broken.pdf: the document is not" in result.stderr
    assert "stamping" in result.stderr  # the progress bar
    assert sorted(p.name for p in target.iterdir()) == [
        "notice-0.pdf",
        "notice-1.pdf",
        "notice-2.pdf",
    ]
    for index in range(3):
        sealed = (target / f"notice-{index}.pdf").read_bytes()
        assert verify_on_node(seal_home, sealed).valid
        assert seal_layout(sealed).field_page == index + 1
    # One stamp-log entry per file, the bad one as failed.
    assert stamp_log_rows(seal_home, "stamped") == 3
    assert stamp_log_rows(seal_home, "failed") == 1


def test_batch_json_has_no_progress_bar(
    seal_home: Path, seal_world: SealWorld, document_font: SealFont, tmp_path: Path
) -> None:
    source, target = tmp_path / "in", tmp_path / "out"
    make_batch(source, document_font)
    result = invoke(
        seal_home,
        "seal",
        "batch",
        "--seal",
        seal_world.official.es_id,
        "--in",
        str(source),
        "--out",
        str(target),
        "--level",
        "B-B",
        "--json",
    )
    assert result.exit_code == 1
    assert result.stderr == ""
    document = json.loads(result.stdout)
    assert [Path(item["file"]).name for item in document["stamped"]] == [
        "notice-0.pdf",
        "notice-1.pdf",
        "notice-2.pdf",
    ]
    assert [Path(item["file"]).name for item in document["failed"]] == ["broken.pdf"]
    assert all(
        item["sealed_sha256"] == hashlib_of(Path(item["out"]))
        for item in document["stamped"]
    )


def test_batch_refusals(
    seal_home: Path, seal_world: SealWorld, document_font: SealFont, tmp_path: Path
) -> None:
    source = tmp_path / "in"
    make_batch(source, document_font)
    same = invoke(
        seal_home,
        "seal",
        "batch",
        "--seal",
        seal_world.official.id,
        "--in",
        str(source),
        "--out",
        str(source),
    )
    assert "must not be the input directory" in one_error_line(
        same, ErrorCategory.BAD_REQUEST
    )
    suspended = invoke(
        seal_home,
        "seal",
        "batch",
        "--seal",
        seal_world.suspended.id,
        "--in",
        str(source),
        "--out",
        str(tmp_path / "out"),
    )
    one_error_line(suspended, ErrorCategory.FORBIDDEN)
    assert stamp_log_rows(seal_home) == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = invoke(
        seal_home,
        "seal",
        "batch",
        "--seal",
        seal_world.official.id,
        "--in",
        str(empty),
        "--out",
        str(tmp_path / "out2"),
    )
    assert nothing.exit_code == 0
    assert "holds no *.pdf files" in nothing.stderr
