"""Fixtures for the portal: a real instance (soft HSM, SQLite), made once and copied.

`yinxin init` costs a second or two (scrypt for the PINs, migrations), so one demo
instance is made per session and each test gets its own copy: the config file names
no absolute paths, so a copied instance works where it is copied to.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from pki.registry import ClientScope, add_api_client, register_agency
from portal.cli import cli
from portal.config import SettingOverrides, Settings, resolve_settings
from portal.instance import InitResult, init_instance
from portal.services import Services
from seal.fonts import SealFont, SealFontUnavailableError, load_seal_font
from seal.image import SealKind
from seal.lifecycle import SealRecord, SealRequest
from tests.conftest import require
from tests.portal.live_server import (
    YINXIN_SCRIPT,
    YINXIN_VARIABLES,
    free_loopback_port,
    subprocess_environment,
)


@pytest.fixture(autouse=True)
def clean_yinxin_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the YINXIN_* variables they set themselves."""
    for name in YINXIN_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, InitResult]:
    home = tmp_path_factory.mktemp("template") / "instance"
    settings = resolve_settings(SettingOverrides(home=home), environ={})
    return home, init_instance(settings, demo=True)


@pytest.fixture
def instance_home(demo_template: tuple[Path, InitResult], tmp_path: Path) -> Path:
    """A fresh copy of a demo instance (soft HSM, SQLite) for one test."""
    template, _ = demo_template
    home = tmp_path / "instance"
    shutil.copytree(template, home)
    return home


@pytest.fixture
def demo_uscc(demo_template: tuple[Path, InitResult]) -> str:
    _, result = demo_template
    assert result.demo is not None
    return result.demo.agency_uscc


@pytest.fixture
def instance_settings(instance_home: Path) -> Settings:
    return resolve_settings(SettingOverrides(home=instance_home), environ={})


YinxinRunner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_yinxin() -> YinxinRunner:
    """Run the installed `yinxin` console script: run_yinxin(*args, NAME=value...)."""

    def run(
        *args: str, timeout: float = 120, **variables: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(YINXIN_SCRIPT), *args],
            env=subprocess_environment(**variables),
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture
def start_yinxin() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start the `yinxin` console script in the background; stopped after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, **variables: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [str(YINXIN_SCRIPT), *args],
            env=subprocess_environment(**variables),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: the workers go with it
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture
def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    return free_loopback_port()


@pytest.fixture
def softhsm_token_env(softhsm_module: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh SoftHSMv2 token in its own configuration, as environment variables for a
    subprocess (SoftHSM reads SOFTHSM2_CONF once per process)."""
    tokens = tmp_path / "softhsm-tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    label = "yinxin-test"
    user_pin, so_pin = "user-pin-4711", "so-pin-0815"
    subprocess.run(
        [
            "softhsm2-util",
            "--init-token",
            "--free",
            "--label",
            label,
            "--so-pin",
            so_pin,
            "--pin",
            user_pin,
        ],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        check=True,
        capture_output=True,
        timeout=60,
    )
    yield {
        "SOFTHSM2_CONF": str(conf),
        "YINXIN_HSM": f"pkcs11:module={softhsm_module};token={label}",
        "YINXIN_HSM_PIN": user_pin,
        "YINXIN_HSM_SO_PIN": so_pin,
    }


# -- seals: a demo instance with a second agency and seals, made once and copied --------

OTHER_AGENCY_NAME = "荥阳市司法局"
OTHER_AGENCY_USCC = "11410182005291054B"
OTHER_AGENCY_REGION = "410182"
KEYWORD = "盖章处"


@dataclasses.dataclass(frozen=True)
class SealWorld:
    """Who and what the seal template holds (the same in every copy of it)."""

    demo_uscc: str
    demo_client_id: str
    demo_secret: str
    staff_username: str
    other_client_id: str
    other_secret: str
    official: SealRecord  # the demo agency's (made by init --demo), granted
    suspended: SealRecord  # the demo agency's contract seal, granted, suspended
    ungranted: SealRecord  # the demo agency's finance seal, no grant
    foreign: SealRecord  # the other agency's, granted to the other client


@pytest.fixture(scope="session")
def seal_template(
    demo_template: tuple[Path, InitResult], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, SealWorld]:
    """The demo instance plus another agency with its own client, and four seals."""
    source, result = demo_template
    assert result.demo is not None
    home = tmp_path_factory.mktemp("seal-template") / "instance"
    shutil.copytree(source, home)
    services = Services(resolve_settings(SettingOverrides(home=home), environ={}))
    try:
        with services.session() as session:
            register_agency(
                session,
                name=OTHER_AGENCY_NAME,
                uscc=OTHER_AGENCY_USCC,
                region=OTHER_AGENCY_REGION,
            )
            # Every scope: the tests with it are about agencies, not scopes.
            other_client, other_secret = add_api_client(
                session,
                agency_uscc=OTHER_AGENCY_USCC,
                name="司法局办公系统",
                scopes=list(ClientScope),
            )
        seals = services.seal_registry()
        demo = result.demo

        def make(uscc: str, kind: SealKind, client_id: str | None) -> SealRecord:
            record = seals.make_seal(SealRequest(agency_uscc=uscc, kind=kind))
            if client_id is not None:
                seals.grant(record.id, client_id=client_id)
            return record

        # `yinxin init --demo` made the demo agency's official seal and granted it.
        assert demo.official_seal_id is not None
        official = seals.get_seal(demo.official_seal_id)
        contract = make(demo.agency_uscc, SealKind.CONTRACT, demo.client_id)
        suspended = seals.suspend_seal(contract.id, note="under review")
        ungranted = make(demo.agency_uscc, SealKind.FINANCE, None)
        foreign = make(OTHER_AGENCY_USCC, SealKind.OFFICIAL, other_client.client_id)
    finally:
        services.close()
    world = SealWorld(
        demo_uscc=demo.agency_uscc,
        demo_client_id=demo.client_id,
        demo_secret=demo.client_secret_file.read_text(encoding="utf-8").strip(),
        staff_username=demo.staff_username,
        other_client_id=other_client.client_id,
        other_secret=other_secret,
        official=official,
        suspended=suspended,
        ungranted=ungranted,
        foreign=foreign,
    )
    return home, world


@pytest.fixture
def seal_world(seal_template: tuple[Path, SealWorld]) -> SealWorld:
    return seal_template[1]


@pytest.fixture
def seal_home(seal_template: tuple[Path, SealWorld], tmp_path: Path) -> Path:
    """A fresh copy of the seal template for one test."""
    home = tmp_path / "instance"
    shutil.copytree(seal_template[0], home)
    return home


@pytest.fixture(scope="session")
def document_font() -> SealFont:
    try:
        return load_seal_font()
    except SealFontUnavailableError as exc:
        require(False, f"no CJK TrueType font for the sample documents: {exc}")
        raise


def make_document(
    font: SealFont, pages: int = 3, *, keyword_pages: tuple[int, ...] = (2, 3)
) -> bytes:
    """An A4 notice of `pages` pages with 盖章处 near the bottom of `keyword_pages`
    (1-based), at (380 pt, 150 pt) from the bottom-left corner."""
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    for page in range(1, pages + 1):
        pdf.setFont(font.reportlab_name, 14)
        pdf.drawString(72, A4[1] - 90, f"关于印发示范文件的通知（第{page}页）")
        if page in keyword_pages:
            pdf.drawString(380, 150, KEYWORD)
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


@pytest.fixture(scope="session")
def sample_pdf(document_font: SealFont) -> bytes:
    """Three A4 pages, 盖章处 on pages 2 and 3."""
    return make_document(document_font)


def count_rows(home: Path, sql: str, *parameters: object) -> int:
    """One count from the instance's SQLite database, read-only."""
    with sqlite3.connect(f"file:{home / 'yinxin.sqlite3'}?mode=ro", uri=True) as db:
        value: int = db.execute(sql, parameters).fetchone()[0]
    return value


def granted_signatures(home: Path) -> int:
    return count_rows(home, "SELECT count(*) FROM audit_entry WHERE result = 'granted'")


# -- licences: the demo instance with one licence of each shipped type, made once ------

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "licences"
BUSINESS_LICENCE = "11100000YXML00000Q001"
FOOD_PERMIT = "11100000YXML00000Q002"
TOUR_GUIDE = "11100000YXML00000Q003"
SHIPPED_TYPES = (BUSINESS_LICENCE, FOOD_PERMIT, TOUR_GUIDE)


def example_file(type_code: str) -> Path:
    """The shipped example data of a licence type (docs/examples/licences/)."""
    return EXAMPLES / f"{type_code}.json"


def example_data(type_code: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        example_file(type_code).read_text(encoding="utf-8")
    )
    return document


def write_holder_key(path: Path) -> Path:
    """A holder's EC P-256 private key as an unencrypted PEM file."""
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def cli_json(home: Path, *args: str) -> dict[str, Any]:
    """`yinxin ARGS --home HOME --json` in process, asserted to succeed; its object."""
    result = CliRunner().invoke(
        cli,
        [*args, "--home", str(home), "--json"],
        env=dict.fromkeys(YINXIN_VARIABLES),
    )
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@dataclasses.dataclass(frozen=True)
class LicenceWorld:
    """What the licence template holds (the same in every copy of it)."""

    demo_uscc: str
    client_id: str
    client_secret: str
    official_seal_id: str
    business: dict[str, Any]  # `license issue --json` of the business licence example
    food: dict[str, Any]  # ... of the food permit example
    guide: dict[str, Any]  # ... of the tour guide card, bound to holder_key
    holder_key: Path  # the guide's holder's private key (PEM)
    stranger_key: Path  # another P-256 key


@pytest.fixture(scope="session")
def licence_template(
    demo_template: tuple[Path, InitResult], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, LicenceWorld]:
    """The demo instance (with its official seal) and three licences issued by the CLI."""
    source, result = demo_template
    assert result.demo is not None and result.demo.official_seal_id is not None
    work = tmp_path_factory.mktemp("licence-template")
    home = work / "instance"
    shutil.copytree(source, home)
    holder_key = write_holder_key(work / "holder.pem")
    stranger_key = write_holder_key(work / "stranger.pem")
    uscc = result.demo.agency_uscc

    def issue(type_code: str, *extra: str) -> dict[str, Any]:
        return cli_json(
            home, "license", "issue", "--type", type_code, "--agency", uscc,
            "--data", str(example_file(type_code)),
            "--out-pdf", str(work / f"{type_code}.pdf"), *extra,
        )  # fmt: skip

    world = LicenceWorld(
        demo_uscc=uscc,
        client_id=result.demo.client_id,
        client_secret=result.demo.client_secret_file.read_text().strip(),
        official_seal_id=result.demo.official_seal_id,
        business=issue(BUSINESS_LICENCE),
        food=issue(FOOD_PERMIT),
        guide=issue(TOUR_GUIDE, "--holder-key", str(holder_key)),
        holder_key=holder_key,
        stranger_key=stranger_key,
    )
    return home, world


@pytest.fixture
def licence_world(licence_template: tuple[Path, LicenceWorld]) -> LicenceWorld:
    return licence_template[1]


@pytest.fixture
def licence_home(licence_template: tuple[Path, LicenceWorld], tmp_path: Path) -> Path:
    """A fresh copy of the licence template for one test."""
    home = tmp_path / "instance"
    shutil.copytree(licence_template[0], home)
    return home
