"""`yinxin serve`: the real console script under gunicorn, end to end."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from hsm_sim.errors import ErrorCategory
from portal.cli import cli
from portal.errors import EXIT_CODE_BY_CATEGORY

Starter = Callable[..., subprocess.Popen[str]]


def get_health(port: int) -> tuple[int, dict[str, str]]:
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def wait_for_health(
    port: int, server: subprocess.Popen[str], deadline_s: float = 60
) -> tuple[int, dict[str, str]]:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            output = server.communicate()[0]
            raise AssertionError(
                f"yinxin serve exited with {server.returncode}:\n{output}"
            )
        try:
            return get_health(port)
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise AssertionError(
        f"yinxin serve did not answer on port {port} within {deadline_s} s"
    )


def test_serve_answers_healthz_then_stops_on_sigterm(
    instance_home: Path, free_port: int, start_yinxin: Starter
) -> None:
    server = start_yinxin(
        "serve",
        "--home",
        str(instance_home),
        "--port",
        str(free_port),
        "--workers",
        "2",
    )

    status, body = wait_for_health(free_port, server)
    assert (status, body) == (200, {"status": "ok", "database": "ok", "hsm": "ok"})

    server.send_signal(signal.SIGTERM)
    output = server.communicate(timeout=30)[0]
    assert server.returncode == 0, output
    assert f"Listening at: http://127.0.0.1:{free_port}" in output
    assert '"GET /healthz HTTP/1.1" 200' in output
    pin = (instance_home / "secrets" / "hsm-user.pin").read_text().strip()
    assert pin not in output


def test_serve_refuses_to_start_without_the_pin(
    instance_home: Path, free_port: int
) -> None:
    (instance_home / "secrets" / "hsm-user.pin").unlink()

    result = CliRunner().invoke(
        cli, ["serve", "--home", str(instance_home), "--port", str(free_port)]
    )

    assert result.exit_code == EXIT_CODE_BY_CATEGORY[ErrorCategory.UNAUTHORIZED]
    assert (
        result.stderr
        == "yinxin: error: the key store needs the user PIN (YINXIN_HSM_PIN)\n"
    )


def test_serve_refuses_to_start_without_an_instance(
    tmp_path: Path, free_port: int
) -> None:
    result = CliRunner().invoke(
        cli, ["serve", "--home", str(tmp_path / "none"), "--port", str(free_port)]
    )
    assert result.exit_code == EXIT_CODE_BY_CATEGORY[ErrorCategory.NOT_FOUND]
    assert result.stderr.startswith("yinxin: error: no Yinxin instance at")
