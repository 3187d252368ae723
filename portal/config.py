"""Instance settings, resolved once: flags > environment > config file > defaults.

The instance directory (`YINXIN_HOME`, default `./instance`) holds the config file
`yinxin.toml`, the SQLite database, the software-HSM token and the secrets directory.
The config file names settings, never secrets: the HSM user PIN comes from
`YINXIN_HSM_PIN` or from the PIN file the config points at (written by `yinxin init`).
Next to it, `ceremony.toml` is the copy of the ceremony file the node's CA hierarchy
was built from (profile lifetimes, revocation intervals, the node's organization).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hsm_sim.errors import ErrorCategory
from pki.certificates import NodeEndpoints
from pki.regions import validate_region_code

__all__ = [
    "CEREMONY_FILE_NAME",
    "CONFIG_FILE_NAME",
    "DEFAULT_HOME",
    "DEFAULT_PUBLIC_BASE_URL",
    "DEFAULT_REFRESH_INTERVAL",
    "DEFAULT_REGION",
    "ConfigError",
    "SettingOverrides",
    "Settings",
    "default_database_url",
    "default_hsm_spec",
    "describe_database_url",
    "read_config_file",
    "resolve_settings",
]

CONFIG_FILE_NAME = "yinxin.toml"
CEREMONY_FILE_NAME = "ceremony.toml"
DEFAULT_HOME = Path("instance")
# Beijing's administrative division code (GB/T 2260): a real region for the demo.
DEFAULT_REGION = "110000"
# Where relying parties reach this node; it goes into every certificate's AIA and CRL
# distribution point, so a real node sets its public http:// name before the ceremony.
DEFAULT_PUBLIC_BASE_URL = "http://127.0.0.1:8000"
# Seconds between the server's re-signing of stale CRLs and OCSP responses (0: never).
DEFAULT_REFRESH_INTERVAL = 300
MAX_REFRESH_INTERVAL = 24 * 3600
SECRETS_DIR_NAME = "secrets"
USER_PIN_FILE_NAME = "hsm-user.pin"
SO_PIN_FILE_NAME = "hsm-so.pin"

# Environment variables and the setting each one sets.
ENV_HOME = "YINXIN_HOME"
ENV_DATABASE_URL = "YINXIN_DATABASE_URL"
ENV_HSM = "YINXIN_HSM"
ENV_HSM_PIN = "YINXIN_HSM_PIN"
ENV_REGION = "YINXIN_REGION"
ENV_PUBLIC_URL = "YINXIN_PUBLIC_URL"
ENV_REFRESH_INTERVAL = "YINXIN_REFRESH_INTERVAL"
# The ceremony file `yinxin init` and `yinxin ca ceremony` run, when no flag names one.
ENV_CEREMONY_CONFIG = "YINXIN_CEREMONY_CONFIG"

# Keys the config file may hold, and the TOML type of each.
CONFIG_KEY_TYPES: dict[str, type] = {
    "region": str,
    "database_url": str,
    "hsm": str,
    "hsm_pin_file": str,
    "public_base_url": str,
    "refresh_interval": int,
}
CONFIG_KEYS = tuple(CONFIG_KEY_TYPES)


class ConfigError(ValueError):
    """The configuration cannot be used as given; the message says which setting and why."""

    category = ErrorCategory.BAD_REQUEST


@dataclasses.dataclass(frozen=True)
class SettingOverrides:
    """Settings given on the command line (None: not given)."""

    home: Path | None = None
    database_url: str | None = None
    hsm: str | None = None
    region: str | None = None
    public_base_url: str | None = None
    refresh_interval: int | None = None


@dataclasses.dataclass(frozen=True)
class Settings:
    """Where this instance keeps its data and how it reaches its database and HSM."""

    home: Path
    database_url: str
    hsm: str  # key-store spec: "soft:<dir>" or "pkcs11:module=<path>;token=<label>"
    region: str
    hsm_pin_file: Path | None = None
    hsm_pin: str | None = dataclasses.field(default=None, repr=False, compare=False)
    public_base_url: str = DEFAULT_PUBLIC_BASE_URL
    refresh_interval: int = DEFAULT_REFRESH_INTERVAL

    @property
    def config_file(self) -> Path:
        return self.home / CONFIG_FILE_NAME

    @property
    def ceremony_file(self) -> Path:
        """The copy of the ceremony file the CA hierarchy was built from."""
        return self.home / CEREMONY_FILE_NAME

    @property
    def endpoints(self) -> NodeEndpoints:
        return NodeEndpoints(self.public_base_url)

    @property
    def secrets_dir(self) -> Path:
        return self.home / SECRETS_DIR_NAME

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def run_dir(self) -> Path:
        """Lock files of the running server."""
        return self.home / "run"

    @property
    def audit_key_label(self) -> str:
        return f"audit-{self.region}"

    @property
    def uses_soft_hsm(self) -> bool:
        return self.hsm.startswith("soft:")

    def describe_database(self) -> str:
        return describe_database_url(self.database_url)


def default_database_url(home: Path) -> str:
    return f"sqlite:///{home / 'yinxin.sqlite3'}"


def default_hsm_spec(home: Path) -> str:
    return f"soft:{home / 'hsm'}"


def describe_database_url(url: str) -> str:
    """The URL with any password masked, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def read_config_file(path: Path) -> dict[str, str | int]:
    """The settings in `path` ({} if it does not exist); unknown or mistyped keys rejected."""
    try:
        with path.open("rb") as stream:
            document = tomllib.load(stream)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(
            f"config file {path} cannot be read: {exc.strerror}"
        ) from None
    unknown = sorted(set(document) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key(s) {', '.join(unknown)}; "
            f"known keys: {', '.join(CONFIG_KEYS)}"
        )
    for key, value in document.items():
        if CONFIG_KEY_TYPES[key] is int:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ConfigError(f"config file {path}: {key} must be an integer")
        elif not isinstance(value, str) or not value.strip():
            raise ConfigError(f"config file {path}: {key} must be a non-empty string")
    return dict(document)


def _environment_value(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value; an empty variable counts as unset."""
    value = environ.get(name, "").strip()
    return value or None


def _resolve_soft_path(spec: str, home: Path) -> str:
    """Make a relative `soft:` directory relative to the instance, not the working dir."""
    if not spec.startswith("soft:"):
        return spec
    directory = Path(spec.removeprefix("soft:"))
    if not directory.is_absolute():
        directory = home / directory
    return f"soft:{directory}"


def _check_database_url(url: str, origin: str) -> str:
    try:
        make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{origin}: not a database URL (e.g. sqlite:///path or "
            "postgresql+psycopg://user@host/db)"
        ) from None
    return url


def _check_hsm_spec(spec: str, origin: str) -> str:
    if not spec.startswith(("soft:", "pkcs11:")) or spec in ("soft:", "pkcs11:"):
        raise ConfigError(
            f"{origin}: key-store spec {spec!r} must be soft:<dir> or "
            "pkcs11:module=<path>;token=<label>"
        )
    return spec


def _check_public_base_url(url: str, origin: str) -> str:
    try:
        return NodeEndpoints(url.strip()).base_url
    except ValueError as exc:
        raise ConfigError(f"{origin}: {exc}") from None


def _check_refresh_interval(value: str | int, origin: str) -> int:
    try:
        seconds = int(value)
    except ValueError:
        raise ConfigError(
            f"{origin}: the refresh interval is a whole number of seconds, got {value!r}"
        ) from None
    if not 0 <= seconds <= MAX_REFRESH_INTERVAL:
        raise ConfigError(
            f"{origin}: the refresh interval must be 0 (off) to {MAX_REFRESH_INTERVAL} "
            f"seconds, got {seconds}"
        )
    return seconds


def _read_pin_file(path: Path) -> str:
    try:
        pin = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"HSM PIN file {path} cannot be read: {exc.strerror}"
        ) from None
    if not pin:
        raise ConfigError(f"HSM PIN file {path} is empty")
    return pin


def resolve_settings(
    overrides: SettingOverrides = SettingOverrides(),
    environ: Mapping[str, str] | None = None,
    *,
    read_pin: bool = True,
) -> Settings:
    """The instance's settings: flags > environment > config file > defaults.

    With `read_pin`, the user PIN is read from `YINXIN_HSM_PIN` or, failing that, from
    the PIN file (config `hsm_pin_file`, default secrets/hsm-user.pin) when it exists.
    """
    env = os.environ if environ is None else environ
    home = overrides.home or Path(_environment_value(env, ENV_HOME) or DEFAULT_HOME)
    home = home.expanduser().absolute()
    config_path = home / CONFIG_FILE_NAME
    from_file = read_config_file(config_path)

    def pick(
        flag: str | int | None, env_name: str, key: str, default: str | int
    ) -> tuple[Any, str]:
        if flag is not None:
            return flag, f"--{key.replace('_', '-')}"
        from_env = _environment_value(env, env_name)
        if from_env is not None:
            return from_env, env_name
        if key in from_file:
            return from_file[key], f"{config_path} ({key})"
        return default, f"default {key}"

    region, region_origin = pick(overrides.region, ENV_REGION, "region", DEFAULT_REGION)
    try:
        region = validate_region_code(region)
    except ValueError as exc:
        raise ConfigError(f"{region_origin}: {exc}") from None
    database_url = _check_database_url(
        *pick(
            overrides.database_url,
            ENV_DATABASE_URL,
            "database_url",
            default_database_url(home),
        )
    )
    hsm = _resolve_soft_path(
        _check_hsm_spec(*pick(overrides.hsm, ENV_HSM, "hsm", default_hsm_spec(home))),
        home,
    )

    public_base_url = _check_public_base_url(
        *pick(
            overrides.public_base_url,
            ENV_PUBLIC_URL,
            "public_base_url",
            DEFAULT_PUBLIC_BASE_URL,
        )
    )
    refresh_interval = _check_refresh_interval(
        *pick(
            overrides.refresh_interval,
            ENV_REFRESH_INTERVAL,
            "refresh_interval",
            DEFAULT_REFRESH_INTERVAL,
        )
    )

    pin_file_setting = from_file.get("hsm_pin_file")
    if pin_file_setting is not None:
        pin_file = Path(str(pin_file_setting)).expanduser()
        pin_file = pin_file if pin_file.is_absolute() else home / pin_file
    else:
        pin_file = home / SECRETS_DIR_NAME / USER_PIN_FILE_NAME

    pin: str | None = None
    if read_pin:
        pin = _environment_value(env, ENV_HSM_PIN)
        if pin is None and (pin_file_setting is not None or pin_file.exists()):
            pin = _read_pin_file(pin_file)

    return Settings(
        home=home,
        database_url=database_url,
        hsm=hsm,
        region=region,
        hsm_pin_file=pin_file,
        hsm_pin=pin,
        public_base_url=public_base_url,
        refresh_interval=refresh_interval,
    )
