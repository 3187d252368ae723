"""The Makefile's Debian step: installs only what is missing, and tells a non-root user
exactly which packages to install."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534


def run_make(*args: str, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    command = [require_tool("make"), "-s", "-C", str(ROOT), *args]
    if as_nobody and os.geteuid() == 0:
        command = [
            require_tool("setpriv"),
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
            *command,
        ]
    return subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=120
    )


def test_tools_that_are_present_need_nothing() -> None:
    require_tool("softhsm2-util")
    result = run_make("debian-tools", "DEBIAN_TOOLS=softhsm2:softhsm2-util")
    assert result.returncode == 0, result.stderr
    assert result.stdout == result.stderr == ""


def test_the_default_tool_lists_are_satisfied_here() -> None:
    for target in ("debian-tools", "debian-runtime"):
        result = run_make(target)
        assert result.returncode == 0, result.stderr


def test_the_tool_lists_name_every_package_the_project_uses() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for package in (
        "fonts-arphic-uming:/usr/share/fonts/truetype/arphic/uming.ttc",
        "fonts-wqy-zenhei:/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
        "openssl:openssl",
        "poppler-utils:pdfsig",
        "poppler-utils:pdftoppm",
        "qpdf:qpdf",
        "zbar-tools:zbarimg",
        "softhsm2:softhsm2-util",
        "opensc:pkcs11-tool",
    ):
        assert package in makefile, package


def test_a_missing_package_is_named_for_a_user_who_is_not_root() -> None:
    require_tool("softhsm2-util")
    tools = (
        "DEBIAN_TOOLS=yinxin-absent-tool:yinxin-no-such-command "
        "softhsm2:softhsm2-util yinxin-absent-file:/nonexistent/yinxin-probe"
    )

    result = run_make("debian-tools", tools, as_nobody=True)

    assert result.returncode != 0
    assert (
        "missing Debian packages: yinxin-absent-tool yinxin-absent-file"
        in result.stderr
    )
    assert (
        "sudo apt-get install -y yinxin-absent-tool yinxin-absent-file" in result.stderr
    )
    assert "softhsm2 " not in result.stderr


def test_make_run_names_the_runtime_packages_once_each() -> None:
    require_tool("softhsm2-util")
    runtime = (
        "DEBIAN_RUNTIME=yinxin-absent-font:/nonexistent/font.ttc "
        "yinxin-absent-font:/nonexistent/other.ttc softhsm2:softhsm2-util"
    )

    result = run_make("debian-runtime", runtime, as_nobody=True)

    assert result.returncode != 0
    assert "missing Debian packages: yinxin-absent-font\n" in result.stderr
    assert "then run make run again" in result.stderr
    assert "sudo apt-get install -y yinxin-absent-font\n" in result.stderr
