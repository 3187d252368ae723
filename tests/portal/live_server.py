"""A real `yinxin serve` (gunicorn, the console script) on a loopback port, for tests.

The server's output goes to a file, so a test can read the access and error log while
the server runs (a pipe nobody reads would fill up and stall it).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from portal.config import WEB_LIMITS

YINXIN_VARIABLES = (
    "YINXIN_HOME",
    "YINXIN_DATABASE_URL",
    "YINXIN_HSM",
    "YINXIN_HSM_PIN",
    "YINXIN_HSM_SO_PIN",
    "YINXIN_REGION",
    "YINXIN_DEBUG",
    "YINXIN_PUBLIC_URL",
    "YINXIN_REFRESH_INTERVAL",
    "YINXIN_CEREMONY_CONFIG",
    *(limit.env_name for limit in WEB_LIMITS),
)
YINXIN_SCRIPT = Path(sys.executable).parent / "yinxin"


def subprocess_environment(**variables: str) -> dict[str, str]:
    """The test process's environment without YINXIN_*, plus `variables`."""
    environment = {k: v for k, v in os.environ.items() if k not in YINXIN_VARIABLES}
    environment.update(variables)
    return environment


def free_loopback_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def get_health(port: int) -> tuple[int, dict[str, str]]:
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


@dataclasses.dataclass
class LiveServer:
    """`yinxin serve` for `home` on `port`, its output in `log_file`."""

    home: Path
    port: int
    process: subprocess.Popen[bytes]
    log_file: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def wait_until_healthy(self, deadline_s: float = 60) -> tuple[int, dict[str, str]]:
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"yinxin serve exited with {self.process.returncode}:\n{self.log()}"
                )
            try:
                return get_health(self.port)
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise AssertionError(
            f"yinxin serve did not answer on port {self.port} within {deadline_s} s"
        )

    def stop(self) -> int:
        """SIGTERM (a graceful stop), then the exit code; SIGKILL if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        return self.process.returncode

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def start_server(
    home: Path, port: int, log_file: Path, *args: str, **variables: str
) -> LiveServer:
    """Start `yinxin serve --home HOME --port PORT ARGS` in its own process group."""
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [
                str(YINXIN_SCRIPT),
                "serve",
                "--home",
                str(home),
                "--port",
                str(port),
                *args,
            ],
            env=subprocess_environment(**variables),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the workers go with it
        )
    return LiveServer(home=home, port=port, process=process, log_file=log_file)


def multipart(fields: dict[str, str | tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type."""
    boundary = "yinxin-" + secrets.token_hex(12)
    body = bytearray()
    for name, value in fields.items():
        body += f"--{boundary}\r\n".encode()
        if isinstance(value, tuple):
            filename, data = value
            body += (
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            body += data
        else:
            body += f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            body += value.encode()
        body += b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), f"multipart/form-data; boundary={boundary}"


def post(
    url: str, fields: dict[str, str | tuple[str, bytes]], headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    body, content_type = multipart(fields)
    request = urllib.request.Request(
        url, data=body, method="POST", headers={**headers, "Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()
