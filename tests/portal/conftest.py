"""Fixtures for the portal: a real instance (soft HSM, SQLite), made once and copied.

`yinxin init` costs a second or two (scrypt for the PINs, migrations), so one demo
instance is made per session and each test gets its own copy: the config file names
no absolute paths, so a copied instance works where it is copied to.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from portal.config import SettingOverrides, Settings, resolve_settings
from portal.instance import InitResult, init_instance
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
