"""The import-linter contracts in pyproject.toml hold, and they do catch a violation."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
LAYERS = ("portal", "certs", "seal", "pki", "hsm_sim")


def run_lint_imports(directory: Path) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHONPATH": str(directory)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-logo", "--no-cache", "pyproject.toml"],
        cwd=directory,
        env=environment,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )


def importlinter_section() -> str:
    """The [tool.importlinter] tables of the project's pyproject.toml, as written."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    tables = re.findall(
        r"^\[\[?tool\.importlinter[^\n]*\n(?:(?!\[).*\n?)*", text, flags=re.MULTILINE
    )
    assert tables, "pyproject.toml has no [tool.importlinter] configuration"
    return "".join(tables)


def test_project_keeps_every_import_contract() -> None:
    result = run_lint_imports(ROOT)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert re.search(r"Contracts: (\d+) kept, 0 broken", report), report


def test_contracts_catch_an_upward_import_and_flask_below_the_portal(
    tmp_path: Path,
) -> None:
    for package in LAYERS:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "hsm_sim" / "keys.py").write_text("import portal\n")
    (tmp_path / "pki" / "web.py").write_text("import flask\n")
    (tmp_path / "pyproject.toml").write_text(importlinter_section())

    result = run_lint_imports(tmp_path)

    report = result.stdout + result.stderr
    assert result.returncode != 0, report
    assert "hsm_sim.keys -> portal" in report, report
    assert "pki.web -> flask" in report, report
