"""Key-store specs (`YINXIN_HSM`): parsing them, and opening or unlocking what they name.

soft:<directory>                          the software HSM in that token directory
pkcs11:module=<path>;token=<label>        a PKCS#11 token, found by its label
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from hsm_sim.api import AuditSink, KeyStore
from hsm_sim.errors import KeyStoreConfigError, PinMissingError
from hsm_sim.pkcs11_token import Pkcs11KeyStore, unlock_pkcs11_token
from hsm_sim.soft_token import SoftKeyStore, unlock_soft_token

__all__ = [
    "KeyStoreSpec",
    "Pkcs11TokenSpec",
    "SoftTokenSpec",
    "open_keystore",
    "parse_keystore_spec",
    "unlock_token",
]

_PKCS11_FIELDS = ("module", "token")


@dataclasses.dataclass(frozen=True)
class SoftTokenSpec:
    directory: Path

    def __str__(self) -> str:
        return f"soft:{self.directory}"


@dataclasses.dataclass(frozen=True)
class Pkcs11TokenSpec:
    module: str
    token_label: str

    def __str__(self) -> str:
        return f"pkcs11:module={self.module};token={self.token_label}"


KeyStoreSpec = SoftTokenSpec | Pkcs11TokenSpec


def parse_keystore_spec(spec: str) -> KeyStoreSpec:
    """The token `spec` names; KeyStoreConfigError with the reason if it is malformed."""
    if not isinstance(spec, str):
        raise KeyStoreConfigError("the key-store spec must be a string")
    kind, colon, rest = spec.strip().partition(":")
    if not colon:
        raise KeyStoreConfigError(
            "the key-store spec must be soft:<directory> or pkcs11:module=<path>;token=<label>"
        )
    if kind == "soft":
        if not rest.strip():
            raise KeyStoreConfigError(
                "soft: needs a token directory, as in soft:instance/hsm"
            )
        return SoftTokenSpec(Path(rest.strip()))
    if kind == "pkcs11":
        fields = _parse_pkcs11_fields(rest)
        return Pkcs11TokenSpec(module=fields["module"], token_label=fields["token"])
    raise KeyStoreConfigError(f"unknown key-store kind {kind!r}; use soft: or pkcs11:")


def _parse_pkcs11_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in text.split(";"):
        if not part.strip():
            continue
        name, equals, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not equals or not value:
            raise KeyStoreConfigError(
                f"pkcs11: field {part.strip()!r} must be name=value"
            )
        if name not in _PKCS11_FIELDS:
            raise KeyStoreConfigError(
                f"pkcs11: unknown field {name!r}; use module=<path>;token=<label>"
                + (
                    " (tokens are found by label, never by slot)"
                    if name == "slot"
                    else ""
                )
            )
        if name in fields:
            raise KeyStoreConfigError(f"pkcs11: field {name!r} is given twice")
        fields[name] = value
    missing = [name for name in _PKCS11_FIELDS if name not in fields]
    if missing:
        raise KeyStoreConfigError(
            "pkcs11: missing " + " and ".join(f"{name}=" for name in missing)
        )
    return fields


def open_keystore(spec: str, *, pin: str | None, audit: AuditSink) -> KeyStore:
    """Log in to the token `spec` names with the user `pin`; every signature goes to `audit`."""
    parsed = parse_keystore_spec(spec)
    if not pin:
        raise PinMissingError("the key store needs the user PIN (YINXIN_HSM_PIN)")
    if isinstance(parsed, SoftTokenSpec):
        return SoftKeyStore(parsed.directory, pin=pin, audit=audit)
    return Pkcs11KeyStore(parsed.module, parsed.token_label, pin=pin, audit=audit)


def unlock_token(
    spec: str, *, so_pin: str | None, new_user_pin: str | None = None
) -> None:
    """The security officer's unlock: reset the failed-PIN lock, optionally setting a new
    user PIN (required for PKCS#11, where unlocking is C_InitPIN)."""
    parsed = parse_keystore_spec(spec)
    if not so_pin:
        raise PinMissingError("unlocking the token needs the SO PIN")
    if isinstance(parsed, SoftTokenSpec):
        unlock_soft_token(parsed.directory, so_pin=so_pin, new_user_pin=new_user_pin)
    else:
        unlock_pkcs11_token(
            parsed.module, parsed.token_label, so_pin=so_pin, new_user_pin=new_user_pin
        )
