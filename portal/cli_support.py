"""What every `yinxin` command shares: the instance options, settings, services and output.

Command modules (portal/cli.py, portal/cli_ca.py) import these; portal/cli.py holds
the root group that turns every failure into one line and an exit code.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import pwd
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from hsm_sim.errors import ErrorCategory
from portal.config import SettingOverrides, Settings, resolve_settings
from portal.errors import InstanceNotFoundError
from portal.services import Services
from seal.lifecycle import Principal

__all__ = [
    "CliState",
    "InputFileError",
    "OutputFileError",
    "check_output_path",
    "cli_actor",
    "cli_principal",
    "console",
    "emit_json",
    "instance_options",
    "json_option",
    "load_settings",
    "open_services",
    "operator_name",
    "read_input_file",
    "require_instance",
    "table",
    "warn",
    "write_output",
]

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass
class CliState:
    """What the error handler needs to know about the command that ran."""

    home: Path | None = None
    command_path: str = "yinxin"


# -- output --------------------------------------------------------------------------


def _json_default(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def emit_json(document: dict[str, Any]) -> None:
    """One JSON object on stdout."""
    click.echo(json.dumps(document, ensure_ascii=False, default=_json_default))


def console() -> Console:
    return Console(soft_wrap=True, highlight=False)


def warn(message: str) -> None:
    click.echo(f"yinxin: warning: {message}", err=True)


def table(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]
) -> Table:
    result = Table(title=title, title_justify="left")
    for column in columns:
        result.add_column(column)
    for row in rows:
        result.add_row(*(str(cell) for cell in row))
    return result


# -- options shared by every command -------------------------------------------------


def instance_options(command: F) -> F:
    """--home, --database-url and --hsm: flags win over environment and config file."""
    options = [
        click.option(
            "--home",
            type=click.Path(file_okay=False, path_type=Path),
            help="Instance directory [env YINXIN_HOME; default ./instance].",
        ),
        click.option(
            "--database-url",
            metavar="URL",
            help="Database [env YINXIN_DATABASE_URL; default SQLite in the instance].",
        ),
        click.option(
            "--hsm",
            metavar="SPEC",
            help="Key store: soft:<dir> or pkcs11:module=<path>;token=<label> "
            "[env YINXIN_HSM; default soft:<home>/hsm].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def json_option(command: F) -> F:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON object."
    )(command)


def load_settings(
    home: Path | None,
    database_url: str | None,
    hsm: str | None,
    *,
    region: str | None = None,
    public_base_url: str | None = None,
    refresh_interval: int | None = None,
    read_pin: bool = True,
) -> Settings:
    """The settings for this command, remembering the home for the error log."""
    overrides = SettingOverrides(
        home=home,
        database_url=database_url,
        hsm=hsm,
        region=region,
        public_base_url=public_base_url,
        refresh_interval=refresh_interval,
    )
    settings = resolve_settings(overrides, read_pin=read_pin)
    context = click.get_current_context()
    state = context.find_object(CliState)
    if state is not None:
        state.home = settings.home
        state.command_path = context.command_path
    return settings


def require_instance(settings: Settings) -> None:
    if not settings.config_file.is_file():
        raise InstanceNotFoundError(
            f"no Yinxin instance at {settings.home} (no {settings.config_file.name}); "
            "create one with: yinxin init --home " + str(settings.home)
        )


@contextmanager
def open_services(settings: Settings) -> Iterator[Services]:
    """The instance's services for one command, closed when it ends."""
    require_instance(settings)
    services = Services(settings)
    try:
        services.check_database()
        yield services
    finally:
        services.close()


def operator_name() -> str:
    """The operating-system user running this command, as `name(uid N)`.

    From the process's real user id, never from LOGNAME or USER: anyone can set those,
    and this name goes into the audit log and the stamp log.
    """
    uid = os.getuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:  # a uid without a passwd entry (containers)
        name = "unknown"
    return f"{name[:40]}(uid {uid})"


def cli_actor() -> str:
    """Who the audit log names for signatures made by this command."""
    return f"cli:{operator_name()}"


def cli_principal() -> Principal:
    """Who stamps for this command: the node's operator, by name (the stamp log)."""
    return Principal.of(operator=operator_name())


# -- files the commands read and write ------------------------------------------------


class InputFileError(ValueError):
    """An input file that cannot be read, or is larger than the command accepts."""

    category = ErrorCategory.BAD_REQUEST


def read_input_file(path: Path, limit: int) -> bytes:
    """The file's bytes; InputFileError if it cannot be read or holds more than `limit`."""
    try:
        with path.open("rb") as stream:
            data = stream.read(limit + 1)
    except OSError as exc:
        reason = (exc.strerror or type(exc).__name__).lower()
        raise InputFileError(f"cannot read {path}: {reason}") from None
    if len(data) > limit:
        raise InputFileError(
            f"{path} is larger than {limit // (1024 * 1024)} MiB, the most accepted"
        )
    return data


class OutputFileError(ValueError):
    """An --out file that cannot be written; said before anything is changed."""

    category = ErrorCategory.BAD_REQUEST


def check_output_path(path: Path) -> None:
    """Refuse an output path that cannot be written, before any state changes."""
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputFileError(f"{path} is a directory; give a file name for the output")
    if not directory.is_dir():
        raise OutputFileError(
            f"cannot write {path}: the directory {directory} does not exist"
        )
    if not os.access(directory, os.W_OK | os.X_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        raise OutputFileError(f"cannot write {path}: permission denied")


def _umask() -> int:
    """The process's umask. Reading it means setting it: meanwhile it is the strict
    0o077, so a file another thread makes just then is only ever more private."""
    current = os.umask(0o077)
    os.umask(current)
    return current


def write_output(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all.

    The data goes to a new file with a random name in the same directory, created
    exclusively (so no file or symlink put there beforehand is followed), and is then
    renamed over `path`; the file gets the mode a new file would (0666 less the umask).
    """
    directory = path.parent if str(path.parent) else Path(".")
    partial: str | None = None
    try:
        descriptor, partial = tempfile.mkstemp(
            dir=directory, prefix=f".{path.name}.", suffix=".partial"
        )
        with os.fdopen(descriptor, "wb") as stream:
            os.fchmod(stream.fileno(), 0o666 & ~_umask())
            stream.write(data)
        os.replace(partial, path)
    except OSError as exc:
        if partial is not None:
            Path(partial).unlink(missing_ok=True)
        reason = (exc.strerror or type(exc).__name__).lower()
        raise OutputFileError(f"cannot write {path}: {reason}") from None
