"""Settings precedence: flags > environment > config file > defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from portal.config import (
    DEFAULT_REGION,
    ConfigError,
    SettingOverrides,
    Settings,
    describe_database_url,
    resolve_settings,
)
from tests.conftest import require


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "yinxin.toml").write_text(text, encoding="utf-8")


def test_defaults_place_everything_in_the_home(tmp_path: Path) -> None:
    settings = resolve_settings(SettingOverrides(home=tmp_path), environ={})

    assert settings.home == tmp_path
    assert settings.database_url == f"sqlite:///{tmp_path / 'yinxin.sqlite3'}"
    assert settings.hsm == f"soft:{tmp_path / 'hsm'}"
    assert settings.region == DEFAULT_REGION == "110000"
    assert settings.hsm_pin is None
    assert settings.config_file == tmp_path / "yinxin.toml"


def test_home_defaults_to_instance_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_settings(environ={}).home == tmp_path / "instance"
    assert (
        resolve_settings(environ={"YINXIN_HOME": "elsewhere"}).home
        == tmp_path / "elsewhere"
    )
    assert (
        resolve_settings(
            SettingOverrides(home=tmp_path / "flag"), {"YINXIN_HOME": "env"}
        ).home
        == tmp_path / "flag"
    )


@pytest.mark.parametrize(
    ("setting", "env_name", "file_value", "env_value", "flag_value"),
    [
        ("region", "YINXIN_REGION", "320000", "440300", "510100"),
        (
            "database_url",
            "YINXIN_DATABASE_URL",
            "sqlite:////srv/file.sqlite3",
            "sqlite:////srv/env.sqlite3",
            "postgresql+psycopg://yinxin@db.example/yinxin",
        ),
        (
            "hsm",
            "YINXIN_HSM",
            "soft:/srv/file-hsm",
            "soft:/srv/env-hsm",
            "pkcs11:module=/usr/lib/softhsm/libsofthsm2.so;token=yinxin",
        ),
        (
            "public_base_url",
            "YINXIN_PUBLIC_URL",
            "http://pki.file.example.gov.cn",
            "http://pki.env.example.gov.cn",
            "http://pki.flag.example.gov.cn:8080",
        ),
    ],
)
def test_each_setting_takes_flag_over_environment_over_file_over_default(
    tmp_path: Path,
    setting: str,
    env_name: str,
    file_value: str,
    env_value: str,
    flag_value: str,
) -> None:
    write_config(tmp_path, f'{setting} = "{file_value}"\n')
    home = SettingOverrides(home=tmp_path)
    flagged = SettingOverrides(home=tmp_path, **{setting: flag_value})

    default = getattr(
        resolve_settings(SettingOverrides(home=tmp_path / "empty"), {}), setting
    )
    assert getattr(resolve_settings(home, {}), setting) == file_value != default
    assert getattr(resolve_settings(home, {env_name: env_value}), setting) == env_value
    assert (
        getattr(resolve_settings(flagged, {env_name: env_value}), setting) == flag_value
    )


def test_the_refresh_interval_takes_flag_over_environment_over_file(
    tmp_path: Path,
) -> None:
    write_config(tmp_path, "refresh_interval = 60\n")
    home = SettingOverrides(home=tmp_path)

    assert (
        resolve_settings(SettingOverrides(home=tmp_path / "x"), {}).refresh_interval
        == 300
    )
    assert resolve_settings(home, {}).refresh_interval == 60
    assert (
        resolve_settings(home, {"YINXIN_REFRESH_INTERVAL": "0"}).refresh_interval == 0
    )
    flagged = SettingOverrides(home=tmp_path, refresh_interval=5)
    assert (
        resolve_settings(flagged, {"YINXIN_REFRESH_INTERVAL": "0"}).refresh_interval
        == 5
    )


def test_the_public_url_loses_its_trailing_slash_and_names_the_endpoints(
    tmp_path: Path,
) -> None:
    settings = resolve_settings(
        SettingOverrides(home=tmp_path), {"YINXIN_PUBLIC_URL": "http://pki.example.cn/"}
    )
    assert settings.public_base_url == "http://pki.example.cn"
    assert (
        settings.endpoints.crl_url("seal-ca")
        == "http://pki.example.cn/pki/crl/seal-ca.crl"
    )
    assert settings.ceremony_file == tmp_path / "ceremony.toml"


def test_an_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    write_config(tmp_path, 'region = "320000"\n')
    settings = resolve_settings(SettingOverrides(home=tmp_path), {"YINXIN_REGION": " "})
    assert settings.region == "320000"


def test_a_relative_soft_token_directory_is_inside_the_home(tmp_path: Path) -> None:
    write_config(tmp_path, 'hsm = "soft:tokens/main"\n')
    settings = resolve_settings(SettingOverrides(home=tmp_path), {})
    assert settings.hsm == f"soft:{tmp_path / 'tokens' / 'main'}"


def test_unknown_keys_in_the_config_file_are_rejected_by_name(tmp_path: Path) -> None:
    write_config(tmp_path, 'region = "110000"\nhsm_pin = "123456"\ndatabse_url = "x"\n')
    with pytest.raises(ConfigError) as caught:
        resolve_settings(SettingOverrides(home=tmp_path), {})
    message = str(caught.value)
    assert "unknown key(s) databse_url, hsm_pin" in message
    assert "known keys: region, database_url, hsm, hsm_pin_file" in message
    assert "123456" not in message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("region = 110000\n", "region must be a non-empty string"),
        ('region = "11000"\n', "6-digit"),
        ('region = "990000"\n', "province-level"),
        ('hsm = "vault:secret"\n', "must be soft:<dir> or pkcs11:"),
        ('database_url = "not a url"\n', "not a database URL"),
        ('public_base_url = "https://pki.example.cn"\n', "must be an http:// URL"),
        ('public_base_url = "pki.example.cn"\n', "must be an http:// URL"),
        ('refresh_interval = "often"\n', "refresh_interval must be an integer"),
        ("refresh_interval = -1\n", r"must be 0 \(off\) to 86400 seconds"),
        ("region = \n", "not valid TOML"),
    ],
)
def test_bad_config_values_say_what_is_wrong(
    tmp_path: Path, text: str, reason: str
) -> None:
    write_config(tmp_path, text)
    with pytest.raises(ConfigError, match=reason):
        resolve_settings(SettingOverrides(home=tmp_path), {})


def test_a_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^YINXIN_REGION: .*6-digit"):
        resolve_settings(SettingOverrides(home=tmp_path), {"YINXIN_REGION": "beijing"})
    with pytest.raises(ConfigError, match="^YINXIN_REFRESH_INTERVAL: .*whole number"):
        resolve_settings(
            SettingOverrides(home=tmp_path), {"YINXIN_REFRESH_INTERVAL": "5m"}
        )


def test_pin_comes_from_environment_before_the_pin_file(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "hsm-user.pin").write_text("from-file-pin\n")
    (secrets / "hsm-user.pin").chmod(0o600)
    home = SettingOverrides(home=tmp_path)

    assert resolve_settings(home, {}).hsm_pin == "from-file-pin"
    assert (
        resolve_settings(home, {"YINXIN_HSM_PIN": "from-env-pin"}).hsm_pin
        == "from-env-pin"
    )
    assert resolve_settings(home, {}, read_pin=False).hsm_pin is None


@pytest.mark.parametrize("file_mode", [0o640, 0o604, 0o660, 0o644])
def test_a_pin_file_others_can_read_is_refused(tmp_path: Path, file_mode: int) -> None:
    pin_file = tmp_path / "secrets" / "hsm-user.pin"
    pin_file.parent.mkdir()
    pin_file.write_text("exposed-pin\n")
    pin_file.chmod(file_mode)
    with pytest.raises(ConfigError) as caught:
        resolve_settings(SettingOverrides(home=tmp_path), {})
    assert str(caught.value) == (
        f"the HSM PIN file {pin_file} can be read or changed by others; make it "
        f"yours only: chmod 600 {pin_file}"
    )
    # The PIN from the environment needs no file, and reading no PIN reads no file.
    assert resolve_settings(SettingOverrides(home=tmp_path), {}, read_pin=False)
    pin_file.chmod(0o600)
    assert resolve_settings(SettingOverrides(home=tmp_path), {}).hsm_pin == (
        "exposed-pin"
    )


def test_a_pin_file_of_another_user_is_refused(tmp_path: Path) -> None:
    require(os.geteuid() == 0, "only root can give a file to another user")
    pin_file = tmp_path / "hsm-user.pin"
    pin_file.write_text("their-pin\n")
    pin_file.chmod(0o600)
    os.chown(pin_file, 65534, 65534)
    write_config(tmp_path, f'hsm_pin_file = "{pin_file}"\n')
    with pytest.raises(ConfigError, match="belongs to another user") as caught:
        resolve_settings(SettingOverrides(home=tmp_path), {})
    assert str(pin_file) in str(caught.value)
    assert "their-pin" not in str(caught.value)


def test_the_web_limits_take_environment_over_file_over_default(
    tmp_path: Path,
) -> None:
    defaults = resolve_settings(SettingOverrides(home=tmp_path / "x"), {})
    assert defaults.web_limits() == {
        "YINXIN_TRUSTED_PROXIES": 0,
        "YINXIN_OCSP_LIVE_RATE_LIMIT": 120,
        "YINXIN_TSA_RATE_LIMIT": 60,
        "YINXIN_VERIFY_RATE_LIMIT": 60,
        "YINXIN_USAGE_CODE_RATE_LIMIT": 10,
        "YINXIN_AUTH_FAILURE_LIMIT": 10,
        "YINXIN_AUTH_FAILURE_WINDOW": 300,
    }
    write_config(tmp_path, "trusted_proxies = 1\ntsa_rate_limit = 5\n")
    home = SettingOverrides(home=tmp_path)
    from_file = resolve_settings(home, {})
    assert (from_file.trusted_proxies, from_file.tsa_rate_limit) == (1, 5)
    from_env = resolve_settings(home, {"YINXIN_TSA_RATE_LIMIT": "7"})
    assert (from_env.trusted_proxies, from_env.tsa_rate_limit) == (1, 7)
    with pytest.raises(ConfigError, match="^YINXIN_TRUSTED_PROXIES: trusted_proxies"):
        resolve_settings(home, {"YINXIN_TRUSTED_PROXIES": "11"})
    with pytest.raises(ConfigError, match="ocsp_live_rate_limit is a whole number"):
        resolve_settings(home, {"YINXIN_OCSP_LIVE_RATE_LIMIT": "lots"})
    write_config(tmp_path, "verify_rate_limit = 0\n")
    with pytest.raises(ConfigError, match=r"verify_rate_limit must be 1 to"):
        resolve_settings(home, {})


def test_pin_file_named_in_config_must_exist(tmp_path: Path) -> None:
    write_config(tmp_path, 'hsm_pin_file = "/nonexistent/pin"\n')
    with pytest.raises(
        ConfigError, match="HSM PIN file /nonexistent/pin cannot be read"
    ):
        resolve_settings(SettingOverrides(home=tmp_path), {})


def test_settings_are_frozen_and_never_show_the_pin(tmp_path: Path) -> None:
    settings = resolve_settings(
        SettingOverrides(home=tmp_path), {"YINXIN_HSM_PIN": "s3cret-PIN"}
    )
    assert settings.hsm_pin == "s3cret-PIN"
    assert "s3cret-PIN" not in repr(settings)
    assert "s3cret-PIN" not in str(settings)
    with pytest.raises(AttributeError):
        settings.region = "320000"  # type: ignore[misc]
    assert isinstance(settings, Settings)


def test_database_passwords_are_masked_in_descriptions() -> None:
    described = describe_database_url(
        "postgresql+psycopg://yinxin:hunter2@db.example/yinxin"
    )
    assert "hunter2" not in described
    assert described == "postgresql+psycopg://yinxin:***@db.example/yinxin"
