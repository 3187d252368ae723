"""The PKCS#11 backend: keys made and used inside a real (or SoftHSMv2) token.

Tokens are found by label, never by slot number (SoftHSM renumbers slots). Private keys
are generated sensitive and non-extractable. What Yinxin knows about a key that PKCS#11
cannot say (its algorithm name and usages) is kept in the token itself, in a private
CKO_DATA object (CKA_APPLICATION "yinxin", CKA_LABEL the key label, CKA_VALUE JSON), so
it survives restarts and travels with the token.

PKCS#11 login state belongs to the whole process, not to a session: logging out one
session logs out all of them. So every key store of a process on the same token shares
one logged-in session (guarded by one lock), and the last one to close logs out.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
from collections.abc import Sequence
from typing import Any

import pkcs11
from asn1crypto.core import OctetString
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from pkcs11 import (
    MGF,
    Attribute,
    KeyType,
    Mechanism,
    MechanismFlag,
    ObjectClass,
    TokenFlag,
)
from pkcs11 import exceptions as p11
from pkcs11.util.ec import (
    encode_ec_public_key,
    encode_ecdsa_signature,
    encode_named_curve_parameters,
)

from hsm_sim.api import (
    AuditSink,
    HashName,
    KeyAlgorithm,
    KeyInfo,
    KeyUsage,
    RsaPadding,
    SignatureMechanism,
)
from hsm_sim.errors import (
    HsmError,
    KeyExistsError,
    KeyNotFoundError,
    KeyStoreConfigError,
    PinIncorrectError,
    TokenLockedError,
    TokenNotFoundError,
    TokenUnavailableError,
)
from hsm_sim.keystore import AuditedKeyStore

__all__ = ["Pkcs11KeyStore", "unlock_pkcs11_token"]

APPLICATION = "yinxin"
_METADATA_FORMAT = 1

_CURVES = {KeyAlgorithm.EC_P256: "secp256r1", KeyAlgorithm.EC_P384: "secp384r1"}
_RSA_BITS = {KeyAlgorithm.RSA_2048: 2048, KeyAlgorithm.RSA_3072: 3072}
_ED25519_OID = "1.3.101.112"

_HASH_MECHANISMS = {
    HashName.SHA256: Mechanism.SHA256,
    HashName.SHA384: Mechanism.SHA384,
    HashName.SHA512: Mechanism.SHA512,
}
_MGF = {
    HashName.SHA256: MGF.SHA256,
    HashName.SHA384: MGF.SHA384,
    HashName.SHA512: MGF.SHA512,
}
_RSA_PKCS_MECHANISMS = {
    HashName.SHA256: Mechanism.SHA256_RSA_PKCS,
    HashName.SHA384: Mechanism.SHA384_RSA_PKCS,
    HashName.SHA512: Mechanism.SHA512_RSA_PKCS,
}
_RSA_PSS_MECHANISMS = {
    HashName.SHA256: Mechanism.SHA256_RSA_PKCS_PSS,
    HashName.SHA384: Mechanism.SHA384_RSA_PKCS_PSS,
    HashName.SHA512: Mechanism.SHA512_RSA_PKCS_PSS,
}
# DER DigestInfo prefixes (RFC 8017 §9.2 note 1), for PKCS#1 v1.5 over a prehashed digest.
_DIGEST_INFO_PREFIXES = {
    HashName.SHA256: bytes.fromhex("3031300d060960864801650304020105000420"),
    HashName.SHA384: bytes.fromhex("3041300d060960864801650304020205000430"),
    HashName.SHA512: bytes.fromhex("3051300d060960864801650304020305000440"),
}

_PRIVATE_TEMPLATE = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
    Attribute.DECRYPT: False,
    Attribute.UNWRAP: False,
    Attribute.DERIVE: False,
}
_PUBLIC_TEMPLATE = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: False,
    Attribute.VERIFY: True,
    Attribute.ENCRYPT: False,
    Attribute.WRAP: False,
    Attribute.DERIVE: False,
}


@dataclasses.dataclass(frozen=True)
class _Pkcs11Key:
    info: KeyInfo
    private_key: pkcs11.PrivateKey


class _SharedLogin:
    """One logged-in session on one token, shared by this process's key stores."""

    def __init__(self, session: pkcs11.Session, pin: str) -> None:
        self.session = session
        self.lock = threading.RLock()
        self.users = 1
        self._salt = secrets.token_bytes(16)
        self._pin_mac = self._mac(pin)

    def _mac(self, pin: str) -> bytes:
        return hmac.new(self._salt, pin.encode("utf-8"), hashlib.sha256).digest()

    def accepts(self, pin: str) -> bool:
        return hmac.compare_digest(self._mac(pin), self._pin_mac)


_logins: dict[tuple[str, str], _SharedLogin] = {}
_registry_lock = threading.Lock()


class Pkcs11KeyStore(AuditedKeyStore[_Pkcs11Key]):
    """A key store on a PKCS#11 token, logged in as the user."""

    def __init__(
        self, module: str, token_label: str, *, pin: str, audit: AuditSink
    ) -> None:
        super().__init__(audit)
        self._module = _module_path(module)
        self._token_label = token_label
        self._login = _acquire_login(self._module, token_label, pin)
        self._keys: dict[str, _Pkcs11Key] = {}

    @property
    def token_label(self) -> str:
        return self._token_label

    def __repr__(self) -> str:
        return f"<Pkcs11KeyStore {self._token_label!r} via {self._module!r}>"

    # -- lifecycle -------------------------------------------------------------

    def _generate_key(
        self, label: str, algorithm: KeyAlgorithm, usages: frozenset[KeyUsage]
    ) -> KeyInfo:
        session = self._login.session
        with self._login.lock:
            if self._metadata_object(label) is not None:
                raise KeyExistsError(f"a key labelled {label!r} already exists")
            key_id = secrets.token_bytes(16)
            public, private = _generate_keypair(session, algorithm, label, key_id)
            try:
                info = KeyInfo(
                    label=label,
                    algorithm=algorithm,
                    usages=usages,
                    created_at=dt.datetime.now(dt.UTC),
                    public_key_der=_subject_public_key_info(public, algorithm),
                )
                session.create_object(
                    {
                        Attribute.CLASS: ObjectClass.DATA,
                        Attribute.APPLICATION: APPLICATION,
                        Attribute.LABEL: label,
                        Attribute.VALUE: _metadata_value(info, key_id),
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: True,
                        Attribute.MODIFIABLE: False,
                    }
                )
            except BaseException:
                public.destroy()
                private.destroy()
                raise
            self._keys[label] = _Pkcs11Key(info, private)
        return info

    def _destroy_key(self, label: str) -> None:
        """Delete the key pair and its metadata; KeyNotFoundError if there is none."""
        with self._login.lock:
            metadata = self._metadata_object(label)
            if metadata is None:
                raise KeyNotFoundError(f"no key labelled {label!r} in the token")
            key_id = bytes.fromhex(_read_metadata(metadata)["id"])
            for object_class in (ObjectClass.PRIVATE_KEY, ObjectClass.PUBLIC_KEY):
                for obj in list(
                    self._login.session.get_objects(
                        {Attribute.CLASS: object_class, Attribute.ID: key_id}
                    )
                ):
                    obj.destroy()
            metadata.destroy()
            self._keys.pop(label, None)

    def _release(self) -> None:
        self._keys.clear()
        _release_login(self._module, self._token_label, self._login)

    # -- lookups ---------------------------------------------------------------

    def _find_key(self, label: str) -> _Pkcs11Key | None:
        cached = self._keys.get(label)
        if cached is not None:
            return cached
        with self._login.lock:
            metadata = self._metadata_object(label)
            key = None if metadata is None else self._load_key(metadata)
            if key is not None:
                self._keys[label] = key
            return key

    def _list_found_keys(self) -> list[_Pkcs11Key]:
        with self._login.lock:
            objects = list(
                self._login.session.get_objects(
                    {
                        Attribute.CLASS: ObjectClass.DATA,
                        Attribute.APPLICATION: APPLICATION,
                    }
                )
            )
            found = [key for key in map(self._load_key, objects) if key is not None]
            self._keys = {key.info.label: key for key in found}
        return found

    def _metadata_object(self, label: str) -> pkcs11.Object | None:
        objects = list(
            self._login.session.get_objects(
                {
                    Attribute.CLASS: ObjectClass.DATA,
                    Attribute.APPLICATION: APPLICATION,
                    Attribute.LABEL: label,
                }
            )
        )
        return objects[0] if objects else None

    def _load_key(self, metadata: pkcs11.Object) -> _Pkcs11Key | None:
        """The key that `metadata` describes, or None if its key pair is gone."""
        record = _read_metadata(metadata)
        key_id = bytes.fromhex(record["id"])
        algorithm = KeyAlgorithm(record["algorithm"])
        session = self._login.session
        try:
            private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=key_id)
            public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, id=key_id)
        except p11.NoSuchKey:
            return None
        info = KeyInfo(
            label=metadata[Attribute.LABEL],
            algorithm=algorithm,
            usages=frozenset(KeyUsage(value) for value in record["usages"]),
            created_at=dt.datetime.fromisoformat(record["created_at"]),
            public_key_der=_subject_public_key_info(public, algorithm),
        )
        return _Pkcs11Key(info, private)

    # -- signing ---------------------------------------------------------------

    def _sign_with_key(
        self, key: _Pkcs11Key, data: bytes, mechanism: SignatureMechanism
    ) -> bytes:
        return self._sign_many_with_key(key, (data,), mechanism)[0]

    def _sign_many_with_key(
        self, key: _Pkcs11Key, items: Sequence[bytes], mechanism: SignatureMechanism
    ) -> list[bytes]:
        try:
            with self._login.lock:
                return [_sign_in_token(key, item, mechanism) for item in items]
        except (p11.ObjectHandleInvalid, p11.KeyHandleInvalid):
            self._keys.pop(key.info.label, None)
            raise KeyNotFoundError(
                f"key {key.info.label!r} is no longer in the token"
            ) from None


def unlock_pkcs11_token(
    module: str, token_label: str, *, so_pin: str, new_user_pin: str | None
) -> None:
    """Log in as security officer and set a new user PIN (C_InitPIN), which unlocks it."""
    if not new_user_pin:
        raise KeyStoreConfigError(
            "a PKCS#11 token is unlocked by setting a new user PIN (C_InitPIN): give one, "
            "or use the token's own tool (softhsm2-util, pkcs11-tool --init-pin)"
        )
    if not so_pin:
        raise PinIncorrectError("the SO PIN is missing")
    module_path = _module_path(module)
    with _registry_lock:
        if (module_path, token_label) in _logins:
            raise KeyStoreConfigError(
                "close the key stores using this token before the security officer logs in"
            )
        token = _find_token(module_path, token_label)
        try:
            session = token.open(rw=True, so_pin=so_pin)
        except (p11.PinIncorrect, p11.PinLenRange, p11.PinInvalid):
            raise PinIncorrectError("wrong SO PIN") from None
        except p11.PinLocked:
            raise TokenLockedError(
                "the SO PIN is locked; only re-initialising the token can recover it"
            ) from None
        except (p11.AnotherUserAlreadyLoggedIn, p11.SessionReadOnlyExists):
            raise KeyStoreConfigError(
                "another program holds a session on the token; close it, then unlock"
            ) from None
        try:
            session.init_pin(new_user_pin)
        except (p11.PinLenRange, p11.PinInvalid):
            raise KeyStoreConfigError(
                "the token refused the new user PIN (length or characters)"
            ) from None
        finally:
            session.close()


# -- the process-wide registry ---------------------------------------------------


def _module_path(module: str) -> str:
    # Kept as written: python-pkcs11 shares one initialised library per path string, and
    # a second spelling of the same file would fail C_Initialize as already initialised.
    if not os.path.isfile(module):
        raise KeyStoreConfigError(f"PKCS#11 module {module} does not exist")
    return module


def _library(module_path: str) -> pkcs11.lib:
    # pkcs11.lib() hands every caller in the process the same initialised library.
    try:
        return pkcs11.lib(module_path)
    except (p11.PKCS11Error, OSError) as exc:
        raise KeyStoreConfigError(f"cannot load PKCS#11 module {module_path}") from exc


def _find_token(module_path: str, token_label: str) -> pkcs11.Token:
    """The token labelled `token_label`; call with _registry_lock held."""
    library = _library(module_path)
    token = _token_by_label(library, token_label)
    if token is None and not any(path == module_path for path, _ in _logins):
        # A module lists the tokens that existed at C_Initialize. Re-initialising finds
        # tokens created since, but ends every session, so only while none is open.
        library.reinitialize()
        token = _token_by_label(library, token_label)
    if token is None:
        raise TokenNotFoundError(f"no PKCS#11 token labelled {token_label!r}")
    return token


def _token_by_label(library: pkcs11.lib, token_label: str) -> pkcs11.Token | None:
    try:
        return library.get_token(token_label=token_label)
    except p11.NoSuchToken:
        return None
    except p11.MultipleTokensReturned:
        raise KeyStoreConfigError(
            f"several PKCS#11 tokens are labelled {token_label!r}; labels must be unique"
        ) from None


# SoftHSMv2's file store answers CKR_GENERAL_ERROR or "no such token" now and then
# while another process is rewriting it (seen with six workers logging in at once).
_LOGIN_RETRY_DELAYS = (0.05, 0.2, 0.5)


def _acquire_login(module_path: str, token_label: str, pin: str) -> _SharedLogin:
    with _registry_lock:
        shared = _logins.get((module_path, token_label))
        if shared is not None:
            if not shared.accepts(pin):
                raise PinIncorrectError("wrong user PIN")
            shared.users += 1
            return shared
        for delay in (*_LOGIN_RETRY_DELAYS, None):
            try:
                shared = _log_in(module_path, token_label, pin)
            except (p11.GeneralError, p11.DeviceError, TokenNotFoundError) as exc:
                if delay is None:
                    if isinstance(exc, TokenNotFoundError):
                        raise
                    raise TokenUnavailableError(
                        f"PKCS#11 token {token_label!r} did not answer the login "
                        f"({type(exc).__name__}); try again"
                    ) from None
                time.sleep(delay)
            else:
                break
        _logins[(module_path, token_label)] = shared
        return shared


def _log_in(module_path: str, token_label: str, pin: str) -> _SharedLogin:
    """A new login session on the token; call with _registry_lock held."""
    token = _find_token(module_path, token_label)
    if token.flags & TokenFlag.USER_PIN_LOCKED:
        raise TokenLockedError(
            "the token's user PIN is locked; the security officer must unlock it"
        )
    try:
        # Read-write, because a failed login leaks its session in python-pkcs11, and
        # leaked read-only sessions would stop the security officer from logging in.
        session = token.open(rw=True, user_pin=pin)
    except (p11.PinIncorrect, p11.PinLenRange, p11.PinInvalid):
        raise PinIncorrectError("wrong user PIN") from None
    except p11.PinLocked:
        raise TokenLockedError(
            "the token's user PIN is locked; the security officer must unlock it"
        ) from None
    except p11.PinExpired:
        raise PinIncorrectError("the user PIN has expired; set a new one") from None
    except p11.UserAlreadyLoggedIn:
        raise KeyStoreConfigError(
            "other code in this process is logged in to the token outside the key store"
        ) from None
    except (p11.TokenNotPresent, p11.TokenNotRecognised, p11.DeviceRemoved):
        raise TokenNotFoundError(
            f"PKCS#11 token {token_label!r} went away"
        ) from None
    return _SharedLogin(session, pin)


def _release_login(module_path: str, token_label: str, shared: _SharedLogin) -> None:
    with _registry_lock:
        shared.users -= 1
        if shared.users > 0:
            return
        del _logins[(module_path, token_label)]
        with shared.lock:
            try:
                shared.session.close()
            except p11.PKCS11Error as exc:
                raise HsmError("the PKCS#11 session did not close cleanly") from exc


# -- keys ------------------------------------------------------------------------


def _generate_keypair(
    session: pkcs11.Session, algorithm: KeyAlgorithm, label: str, key_id: bytes
) -> tuple[pkcs11.PublicKey, pkcs11.PrivateKey]:
    common: dict[str, Any] = {
        "store": True,
        "label": label,
        "id": key_id,
        "capabilities": MechanismFlag.SIGN | MechanismFlag.VERIFY,
        "public_template": _PUBLIC_TEMPLATE,
        "private_template": _PRIVATE_TEMPLATE,
    }
    if algorithm in _RSA_BITS:
        return session.generate_keypair(KeyType.RSA, _RSA_BITS[algorithm], **common)
    if algorithm is KeyAlgorithm.ED25519:
        key_type, curve = KeyType.EC_EDWARDS, _ED25519_OID
    else:
        key_type, curve = KeyType.EC, _CURVES[algorithm]
    parameters = session.create_domain_parameters(
        key_type,
        {Attribute.EC_PARAMS: encode_named_curve_parameters(curve)},
        local=True,
    )
    return parameters.generate_keypair(**common)


def _subject_public_key_info(
    public: pkcs11.PublicKey, algorithm: KeyAlgorithm
) -> bytes:
    if algorithm in _CURVES:
        return encode_ec_public_key(public)
    if algorithm is KeyAlgorithm.ED25519:
        point = public[Attribute.EC_POINT]
        # PKCS#11 3.0 says DER OCTET STRING; some modules hand back the raw 32 bytes.
        raw = point if len(point) == 32 else bytes(OctetString.load(point))
        key: Any = ed25519.Ed25519PublicKey.from_public_bytes(raw)
    else:
        key = rsa.RSAPublicNumbers(
            int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"),
            int.from_bytes(public[Attribute.MODULUS], "big"),
        ).public_key()
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _metadata_value(info: KeyInfo, key_id: bytes) -> bytes:
    return json.dumps(
        {
            "format": _METADATA_FORMAT,
            "id": key_id.hex(),
            "algorithm": info.algorithm.value,
            "usages": sorted(usage.value for usage in info.usages),
            "created_at": info.created_at.isoformat(),
        },
        sort_keys=True,
    ).encode("utf-8")


def _read_metadata(metadata: pkcs11.Object) -> dict[str, Any]:
    try:
        record = json.loads(metadata[Attribute.VALUE])
        if record["format"] != _METADATA_FORMAT:
            raise ValueError("unknown metadata format")
        return dict(record)
    except (ValueError, KeyError, TypeError):
        raise HsmError(
            f"the Yinxin metadata of key {metadata[Attribute.LABEL]!r} is unreadable"
        ) from None


def _sign_in_token(
    key: _Pkcs11Key, data: bytes, mechanism: SignatureMechanism
) -> bytes:
    """One signature; the caller holds the session lock."""
    private = key.private_key
    if key.info.algorithm is KeyAlgorithm.ED25519:
        return private.sign(data, mechanism=Mechanism.EDDSA)
    assert mechanism.hash is not None  # checked by AuditedKeyStore before GRANTED
    if key.info.algorithm in _CURVES:
        # SoftHSM (and many HSMs) offer only raw CKM_ECDSA: hash here, DER-encode r||s.
        digest = (
            data
            if mechanism.prehashed
            else hashlib.new(mechanism.hash.value, data).digest()
        )
        return encode_ecdsa_signature(private.sign(digest, mechanism=Mechanism.ECDSA))
    if mechanism.rsa_padding is RsaPadding.PKCS1V15:
        if mechanism.prehashed:
            digest_info = _DIGEST_INFO_PREFIXES[mechanism.hash] + data
            return private.sign(digest_info, mechanism=Mechanism.RSA_PKCS)
        return private.sign(data, mechanism=_RSA_PKCS_MECHANISMS[mechanism.hash])
    pss_parameters = (
        _HASH_MECHANISMS[mechanism.hash],
        _MGF[mechanism.hash],
        hashlib.new(mechanism.hash.value).digest_size,
    )
    pss_mechanism = (
        Mechanism.RSA_PKCS_PSS
        if mechanism.prehashed
        else _RSA_PSS_MECHANISMS[mechanism.hash]
    )
    return private.sign(data, mechanism=pss_mechanism, mechanism_param=pss_parameters)
