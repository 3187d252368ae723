"""The key-ceremony configuration: one file describes a region's whole CA hierarchy.

Like Boulder's `ceremony` tool, everything the ceremony does is written down before
it runs: names, algorithms, lifetimes, path lengths and name constraints. Unknown
keys are refused so a typo cannot silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography import x509

from hsm_sim.api import KeyAlgorithm
from pki.errors import CeremonyConfigError
from pki.profiles import PROFILES, CertificateProfile, IssuerRole

__all__ = [
    "CaSpec",
    "ProfileLifetime",
    "CeremonyConfig",
    "load_ceremony_config",
    "parse_ceremony_config",
    "DEMO_CEREMONY_PATH",
]

DEMO_CEREMONY_PATH = Path(__file__).with_name("demo_ceremony.toml")
_ISSUING_ROLES = (IssuerRole.SEAL, IssuerRole.DOCUMENT, IssuerRole.INFRASTRUCTURE)


@dataclasses.dataclass(frozen=True)
class CaSpec:
    name: str  # short name: URLs (/pki/ca/<name>.crt) and CLI (--name)
    role: IssuerRole
    common_name: str
    algorithm: KeyAlgorithm
    lifetime_days: int
    path_length: int | None
    permitted_subtrees: tuple[x509.Name, ...] = ()

    @property
    def key_label(self) -> str:
        return f"ca-{self.name}"


@dataclasses.dataclass(frozen=True)
class ProfileLifetime:
    default_days: int
    max_days: int


@dataclasses.dataclass(frozen=True)
class CeremonyConfig:
    organization: str  # O of the node's own certificates
    root: CaSpec
    issuing: tuple[CaSpec, ...]
    profile_lifetimes: Mapping[str, ProfileLifetime]
    crl_next_update_hours: int
    ocsp_next_update_hours: int

    def profiles(self) -> dict[str, CertificateProfile]:
        """The certificate profiles with the lifetimes this ceremony sets."""
        profiles = dict(PROFILES)
        for name, lifetime in self.profile_lifetimes.items():
            profiles[name] = profiles[name].with_validity(lifetime.default_days, lifetime.max_days)
        return profiles

    def issuing_ca(self, role: IssuerRole) -> CaSpec:
        for spec in self.issuing:
            if spec.role is role:
                return spec
        raise CeremonyConfigError(f"the ceremony defines no {role.value} CA")


def _take(table: Mapping[str, Any], where: str, allowed: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise CeremonyConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    out = {}
    for key, kind in allowed.items():
        if key in table:
            value = table[key]
            if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
                raise CeremonyConfigError(f"{where}.{key}: wrong type {type(value).__name__}")
            out[key] = value
    return out


def _require(values: Mapping[str, Any], where: str, *keys: str) -> None:
    missing = [k for k in keys if k not in values]
    if missing:
        raise CeremonyConfigError(f"{where}: missing {', '.join(missing)}")


def _ca_spec(table: Mapping[str, Any], where: str, *, root: bool) -> CaSpec:
    values = _take(
        table,
        where,
        {
            "name": str,
            "role": str,
            "common_name": str,
            "algorithm": str,
            "lifetime_days": int,
            "path_length": int,
            "permitted_subtrees": list,
        },
    )
    _require(values, where, "name", "common_name", "algorithm", "lifetime_days")
    name = values["name"]
    if not name.replace("-", "").isalnum() or not name.isascii() or name != name.lower():
        raise CeremonyConfigError(f"{where}.name: use lowercase letters, digits and hyphens")
    if name.endswith("-delta"):
        # /pki/crl/<name>-delta.crl is where every CA's delta CRL is published.
        raise CeremonyConfigError(f"{where}.name: a CA name cannot end in -delta")
    try:
        algorithm = KeyAlgorithm.parse(values["algorithm"])
    except ValueError as exc:
        raise CeremonyConfigError(f"{where}.algorithm: {exc}") from None
    if algorithm not in PROFILES["root" if root else "sub-ca"].allowed_algorithms:
        raise CeremonyConfigError(f"{where}.algorithm: {algorithm.value} is not allowed for a CA")
    if root:
        role = IssuerRole.ROOT
    else:
        _require(values, where, "role")
        try:
            role = IssuerRole(values["role"])
        except ValueError:
            raise CeremonyConfigError(
                f"{where}.role: use one of {', '.join(r.value for r in _ISSUING_ROLES)}"
            ) from None
        if role not in _ISSUING_ROLES:
            raise CeremonyConfigError(f"{where}.role: {role.value} is not an issuing role")
    lifetime = values["lifetime_days"]
    if not 1 <= lifetime <= 10958:
        raise CeremonyConfigError(f"{where}.lifetime_days: must be between 1 and 10958")
    path_length = values.get("path_length")
    if path_length is not None and path_length < 0:
        raise CeremonyConfigError(f"{where}.path_length: must not be negative")
    subtrees = []
    for text in values.get("permitted_subtrees", []):
        try:
            subtrees.append(x509.Name.from_rfc4514_string(text))
        except ValueError as exc:
            raise CeremonyConfigError(f"{where}.permitted_subtrees: {text!r}: {exc}") from None
    return CaSpec(
        name=name,
        role=role,
        common_name=values["common_name"],
        algorithm=algorithm,
        lifetime_days=lifetime,
        path_length=path_length,
        permitted_subtrees=tuple(subtrees),
    )


def parse_ceremony_config(data: Mapping[str, Any]) -> CeremonyConfig:
    top = _take(
        data,
        "ceremony",
        {"node": dict, "root": dict, "issuing": list, "profiles": dict, "revocation": dict},
    )
    _require(top, "ceremony", "node", "root", "issuing")
    node = _take(top["node"], "node", {"organization": str})
    _require(node, "node", "organization")
    root = _ca_spec(top["root"], "root", root=True)
    issuing = tuple(
        _ca_spec(table, f"issuing[{i}]", root=False) for i, table in enumerate(top["issuing"])
    )
    roles = [spec.role for spec in issuing]
    for role in _ISSUING_ROLES:
        if roles.count(role) != 1:
            raise CeremonyConfigError(f"issuing: exactly one CA with role {role.value!r} is required")
    names = [root.name] + [spec.name for spec in issuing]
    if len(set(names)) != len(names):
        raise CeremonyConfigError("CA names must be unique")
    for spec in issuing:
        if spec.lifetime_days > root.lifetime_days:
            raise CeremonyConfigError(f"{spec.name}: an issuing CA cannot outlive the root")

    lifetimes: dict[str, ProfileLifetime] = {}
    for profile_name, table in top.get("profiles", {}).items():
        if profile_name not in PROFILES:
            raise CeremonyConfigError(f"profiles.{profile_name}: no such profile")
        values = _take(table, f"profiles.{profile_name}", {"default_days": int, "max_days": int})
        _require(values, f"profiles.{profile_name}", "default_days")
        maximum = values.get("max_days", PROFILES[profile_name].max_validity.days)
        if not 1 <= values["default_days"] <= maximum:
            raise CeremonyConfigError(f"profiles.{profile_name}: default_days must be 1..max_days")
        if maximum > PROFILES[profile_name].max_validity.days:
            raise CeremonyConfigError(
                f"profiles.{profile_name}.max_days: the {profile_name} profile allows at most "
                f"{PROFILES[profile_name].max_validity.days} days"
            )
        lifetimes[profile_name] = ProfileLifetime(values["default_days"], maximum)

    revocation = _take(
        top.get("revocation", {}), "revocation", {"crl_next_update_hours": int, "ocsp_next_update_hours": int}
    )
    return CeremonyConfig(
        organization=node["organization"],
        root=root,
        issuing=issuing,
        profile_lifetimes=lifetimes,
        crl_next_update_hours=revocation.get("crl_next_update_hours", 24),
        ocsp_next_update_hours=revocation.get("ocsp_next_update_hours", 24),
    )


def load_ceremony_config(path: Path | str) -> CeremonyConfig:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise CeremonyConfigError(f"cannot read the ceremony file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CeremonyConfigError(f"the ceremony file {path} is not valid TOML: {exc}") from None
    return parse_ceremony_config(data)
