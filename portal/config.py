"""Instance settings, resolved once: flags > environment > config file > defaults.

The instance directory (`YINXIN_HOME`, default `./instance`) holds the config file
`yinxin.toml`, the SQLite database, the software-HSM token and the secrets directory.
The config file names settings, never secrets: the HSM user PIN comes from
`YINXIN_HSM_PIN` or from the PIN file the config points at (written by `yinxin init`),
which is read only when it belongs to the user running Yinxin and nobody else may
read it (0600: a PIN others can read is no secret). Next to it, `ceremony.toml` is the copy of the ceremony file the node's CA hierarchy
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
    "CONFIG_KEYS",
    "DEFAULT_HOME",
    "DEFAULT_PUBLIC_BASE_URL",
    "DEFAULT_REFRESH_INTERVAL",
    "DEFAULT_REGION",
    "WEB_LIMITS",
    "WEB_LIMIT_DEFAULTS",
    "ConfigError",
    "SettingOverrides",
    "Settings",
    "WebLimit",
    "default_database_url",
    "default_hsm_spec",
    "describe_database_url",
    "read_config_file",
    "read_secret_file",
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
# The SO PIN is needed only to unlock the token (`yinxin hsm unlock --so-pin-file`):
# init writes it apart from everything the server reads, to be moved offline.
OFFLINE_DIR_NAME = "move-offline"
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


@dataclasses.dataclass(frozen=True)
class WebLimit:
    """A whole-number setting of the web app: config key `key`, environment variable
    YINXIN_<KEY> (also its key in the Flask app's config, where tests may set it)."""

    key: str
    default: int
    minimum: int
    maximum: int
    meaning: str

    @property
    def env_name(self) -> str:
        return f"YINXIN_{self.key.upper()}"


# The web app's limits and trust in proxies (README.md, "Configuration"). Rate limits
# count per client address and per web worker, in a sliding window.
WEB_LIMITS: tuple[WebLimit, ...] = (
    WebLimit(
        "trusted_proxies", 0, 0, 10,
        "reverse proxies in front of the node whose X-Forwarded-For and "
        "X-Forwarded-Proto are believed (0: none, the peer is the client)",
    ),
    WebLimit(
        "ocsp_live_rate_limit", 120, 1, 1_000_000,
        "OCSP requests a minute per address that need a live signature (a nonce, "
        "a CertID not hashed with SHA-1, or no pre-signed answer); beyond: tryLater",
    ),
    WebLimit(
        "tsa_rate_limit", 60, 1, 1_000_000,
        "timestamp requests a minute per address; beyond: 429 with a rejection",
    ),
    WebLimit(
        "verify_rate_limit", 60, 1, 1_000_000,
        "PDF and licence verifications a minute per address; beyond: 429",
    ),
    WebLimit(
        "usage_code_rate_limit", 10, 1, 1_000_000,
        "licence fetches by usage code a minute per address; beyond: 429",
    ),
    WebLimit(
        "auth_failure_limit", 10, 1, 1_000_000,
        "failed API authentications per address and client id in the window; "
        "beyond: 429 for that pair",
    ),
    WebLimit(
        "auth_failure_window", 300, 1, 86_400,
        "the window of auth_failure_limit, in seconds",
    ),
)  # fmt: skip

_WEB_DEFAULTS = {limit.key: limit.default for limit in WEB_LIMITS}
# The defaults by environment-variable name, the web app config's keys.
WEB_LIMIT_DEFAULTS = {limit.env_name: limit.default for limit in WEB_LIMITS}

# Keys the config file may hold, and the TOML type of each.
CONFIG_KEY_TYPES: dict[str, type] = {
    "region": str,
    "database_url": str,
    "hsm": str,
    "hsm_pin_file": str,
    "public_base_url": str,
    "refresh_interval": int,
    **{limit.key: int for limit in WEB_LIMITS},
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
    # WEB_LIMITS, one field each
    trusted_proxies: int = _WEB_DEFAULTS["trusted_proxies"]
    ocsp_live_rate_limit: int = _WEB_DEFAULTS["ocsp_live_rate_limit"]
    tsa_rate_limit: int = _WEB_DEFAULTS["tsa_rate_limit"]
    verify_rate_limit: int = _WEB_DEFAULTS["verify_rate_limit"]
    usage_code_rate_limit: int = _WEB_DEFAULTS["usage_code_rate_limit"]
    auth_failure_limit: int = _WEB_DEFAULTS["auth_failure_limit"]
    auth_failure_window: int = _WEB_DEFAULTS["auth_failure_window"]

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
    def offline_dir(self) -> Path:
        """Where init leaves what must be moved off the node (the SO PIN)."""
        return self.home / OFFLINE_DIR_NAME

    def web_limits(self) -> dict[str, int]:
        """The WEB_LIMITS values by environment-variable name (the app config's keys)."""
        return {limit.env_name: getattr(self, limit.key) for limit in WEB_LIMITS}

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


def _check_web_limit(limit: WebLimit, value: str | int, origin: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(
            f"{origin}: {limit.key} is a whole number, got {str(value)[:20]!r}"
        ) from None
    if not limit.minimum <= number <= limit.maximum:
        raise ConfigError(
            f"{origin}: {limit.key} must be {limit.minimum} to {limit.maximum}, "
            f"got {number}"
        )
    return number


def read_secret_file(path: Path, what: str) -> str:
    """The secret in `path` (a PIN), stripped; ConfigError unless only its owner, the
    user running this process, can read it, and it holds something."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ConfigError(
            f"the {what} file {path} cannot be read: {exc.strerror}"
        ) from None
    with os.fdopen(descriptor, "rb") as stream:
        status = os.fstat(stream.fileno())
        if status.st_uid != os.geteuid():
            raise ConfigError(
                f"the {what} file {path} belongs to another user; it must be yours, "
                f"readable by you only: chown {os.geteuid()} {path}; chmod 600 {path}"
            )
        if status.st_mode & 0o077:
            raise ConfigError(
                f"the {what} file {path} can be read or changed by others; "
                f"make it yours only: chmod 600 {path}"
            )
        try:
            pin = stream.read(4096).decode("utf-8").strip()
        except UnicodeDecodeError:
            raise ConfigError(f"the {what} file {path} is not UTF-8 text") from None
    if not pin:
        raise ConfigError(f"the {what} file {path} is empty")
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

    limits = {
        limit.key: _check_web_limit(
            limit, *pick(None, limit.env_name, limit.key, limit.default)
        )
        for limit in WEB_LIMITS
    }

    pin: str | None = None
    if read_pin:
        pin = _environment_value(env, ENV_HSM_PIN)
        if pin is None and (pin_file_setting is not None or pin_file.exists()):
            pin = read_secret_file(pin_file, "HSM PIN")

    return Settings(
        home=home,
        database_url=database_url,
        hsm=hsm,
        region=region,
        hsm_pin_file=pin_file,
        hsm_pin=pin,
        public_base_url=public_base_url,
        refresh_interval=refresh_interval,
        **limits,
    )
