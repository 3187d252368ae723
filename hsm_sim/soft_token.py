"""The software HSM: a token directory whose private keys are wrapped at rest.

Layout (directory 0700, files 0600):

    token.json      token id and label, scrypt parameters, and the token master key
                    wrapped twice with AES-256-GCM: under scrypt(user PIN) and under
                    scrypt(SO PIN), so the security officer can reset the user PIN
                    without losing keys (the SoftHSM design)
    pin-state.json  consecutive failed user logins; 5 lock the token until the SO unlocks it
    keys/*.key      one file per key: label, algorithm, usages, public key, and the
                    PKCS#8 private key wrapped under the master key with all of those
                    as associated data, so an edited, renamed or swapped file fails
    .lock           flock(2) target serialising writers and logins across processes

scrypt runs once per login, under the lock (logins take turns); the unwrapped keys
stay in memory until close(). Another process may add or destroy keys at any time: a
lookup miss rereads the directory, and every signature first checks that the key's
file is still the one that was loaded.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import fcntl
import functools
import hashlib
import json
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from hsm_sim.api import (
    AuditSink,
    KeyAlgorithm,
    KeyInfo,
    KeyUsage,
    RsaPadding,
    SignatureMechanism,
)
from hsm_sim.errors import (
    InvalidKeyRequestError,
    KeyExistsError,
    KeyNotFoundError,
    KeyStoreConfigError,
    PinIncorrectError,
    TokenExistsError,
    TokenLockedError,
    TokenNotFoundError,
    TokenTamperedError,
)
from hsm_sim.keystore import AuditedKeyStore, check_label, hash_algorithm

__all__ = [
    "DEFAULT_SCRYPT_LOG2_N",
    "MAX_FAILED_USER_LOGINS",
    "MIN_PIN_LENGTH",
    "MIN_SCRYPT_LOG2_N",
    "SoftKeyStore",
    "init_soft_token",
    "unlock_soft_token",
]

FORMAT = "yinxin-soft-token/1"
MAX_FAILED_USER_LOGINS = 5
# The PIN guards the wrapped keys against an offline guesser who copied the token
# directory: with scrypt at ~0.25 s a guess, 8 characters is the floor.
MIN_PIN_LENGTH = 8
MAX_PIN_LENGTH = 255
# scrypt N = 2**17, r = 8 (128 MiB, about 0.25 s) is OWASP's recommendation; 2**14 is
# the floor from the scrypt paper for interactive logins, allowed for throwaway tokens.
DEFAULT_SCRYPT_LOG2_N = 17
MIN_SCRYPT_LOG2_N = 14
MAX_SCRYPT_LOG2_N = 22
SCRYPT_R = 8
SCRYPT_P = 1

_TOKEN_FILE = "token.json"
_PIN_STATE_FILE = "pin-state.json"
_KEYS_DIR = "keys"
_LOCK_FILE = ".lock"
_KEY_SUFFIX = ".key"
_USER = "user"
_SO = "so"


@dataclasses.dataclass(frozen=True)
class _SoftKey:
    info: KeyInfo
    # Unwrapped on the key's first signature in this login, not before: a process
    # holds in memory only the keys it actually uses (a web worker that never signs
    # with the root CA key never has it).
    private_key: PrivateKeyTypes | None
    path: str
    file_stamp: tuple[int, int, int, int]


def init_soft_token(
    directory: str | os.PathLike[str],
    *,
    user_pin: str,
    so_pin: str,
    label: str = "yinxin",
    scrypt_log2_n: int = DEFAULT_SCRYPT_LOG2_N,
) -> None:
    """Create an empty token in `directory` (new or empty); TokenExistsError if one is there."""
    _check_pin(user_pin, "user PIN")
    _check_pin(so_pin, "SO PIN")
    if user_pin == so_pin:
        raise KeyStoreConfigError("the user PIN and the SO PIN must differ")
    if not isinstance(scrypt_log2_n, int) or not (
        MIN_SCRYPT_LOG2_N <= scrypt_log2_n <= MAX_SCRYPT_LOG2_N
    ):
        raise KeyStoreConfigError(
            f"scrypt_log2_n must be between {MIN_SCRYPT_LOG2_N} and {MAX_SCRYPT_LOG2_N}"
        )
    token_label = check_label(label)
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise KeyStoreConfigError(f"{root} is not a directory")
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(root, 0o700)
    with _token_lock(root):
        if (root / _TOKEN_FILE).exists():
            raise TokenExistsError(
                f"a token already exists in {root}; it was left as it is"
            )
        if any(entry.name != _LOCK_FILE for entry in root.iterdir()):
            raise KeyStoreConfigError(
                f"{root} is not empty; a new token needs an empty directory"
            )
        kdf = {"name": "scrypt", "log2_n": scrypt_log2_n, "r": SCRYPT_R, "p": SCRYPT_P}
        token_id = secrets.token_hex(16)
        master_key = AESGCM.generate_key(bit_length=256)
        token = {
            "format": FORMAT,
            "token_id": token_id,
            "label": token_label,
            "created_at": _utcnow().isoformat(),
            "kdf": kdf,
        }
        token[_USER] = _wrap_master_key(master_key, token, _USER, user_pin)
        token[_SO] = _wrap_master_key(master_key, token, _SO, so_pin)
        (root / _KEYS_DIR).mkdir(mode=0o700)
        _write_pin_state(root, failed=0)
        _write_atomically(root / _TOKEN_FILE, _dump_json(token))


def unlock_soft_token(
    directory: str | os.PathLike[str], *, so_pin: str, new_user_pin: str | None = None
) -> None:
    """With the SO PIN: clear the failed-login counter, and set a new user PIN if given."""
    root = Path(directory)
    if new_user_pin is not None:
        _check_pin(new_user_pin, "new user PIN")
        if new_user_pin == so_pin:
            raise KeyStoreConfigError("the user PIN and the SO PIN must differ")
    token = _read_token_file(root)
    try:
        master_key = _unwrap_master_key(token, _SO, so_pin)
    except InvalidTag:
        raise PinIncorrectError("wrong SO PIN") from None
    new_user_wrap = (
        _wrap_master_key(master_key, token, _USER, new_user_pin)
        if new_user_pin is not None
        else None
    )
    with _token_lock(root):
        current = _read_token_file(root)
        if current["token_id"] != token["token_id"]:
            raise TokenTamperedError(
                "the token was replaced while it was being unlocked"
            )
        if new_user_wrap is not None:
            current[_USER] = new_user_wrap
            _write_atomically(root / _TOKEN_FILE, _dump_json(current))
        _write_pin_state(root, failed=0)


class SoftKeyStore(AuditedKeyStore[_SoftKey]):
    """A logged-in session on a software token directory."""

    def __init__(
        self, directory: str | os.PathLike[str], *, pin: str, audit: AuditSink
    ) -> None:
        super().__init__(audit)
        self._root = Path(directory)
        token, master_key = _log_in_user(self._root, pin)
        self._token_id: str = token["token_id"]
        self._token_label: str = token["label"]
        self._master = AESGCM(master_key)
        self._keys_dir = str(self._root / _KEYS_DIR)
        self._keys: dict[str, _SoftKey] = {}
        # Checking every key file now is the login-time integrity check of the whole
        # token; the keys themselves stay wrapped until they are used.
        self._list_found_keys()

    @property
    def directory(self) -> Path:
        return self._root

    @property
    def token_label(self) -> str:
        return self._token_label

    def __repr__(self) -> str:
        return f"<SoftKeyStore {self._token_label!r} at {str(self._root)!r}>"

    # -- lifecycle -------------------------------------------------------------

    def _generate_key(
        self, label: str, algorithm: KeyAlgorithm, usages: frozenset[KeyUsage]
    ) -> KeyInfo:
        path = self._key_path(label)
        if os.path.exists(path):
            raise KeyExistsError(f"a key labelled {label!r} already exists")
        private_key = _new_private_key(algorithm)
        public_der = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        info = KeyInfo(
            label=label,
            algorithm=algorithm,
            usages=usages,
            created_at=_utcnow(),
            public_key_der=public_der,
        )
        content = self._seal_key_file(info, private_key)
        with _token_lock(self._root):
            try:
                _write_atomically(path, content, replace=False)
            except FileExistsError:
                raise KeyExistsError(
                    f"a key labelled {label!r} already exists"
                ) from None
            stamp = _file_stamp(os.stat(path))
        with self._state_lock:
            self._keys[label] = _SoftKey(info, private_key, path, stamp)
        return info

    def _destroy_key(self, label: str) -> None:
        """Delete the key's file for good; KeyNotFoundError if there is none."""
        path = self._key_path(label)
        with _token_lock(self._root):
            try:
                os.unlink(path)
            except FileNotFoundError:
                raise KeyNotFoundError(
                    f"no key labelled {label!r} in the token"
                ) from None
            _fsync_directory(Path(self._keys_dir))
        with self._state_lock:
            self._keys.pop(label, None)

    def _release(self) -> None:
        with self._state_lock:
            self._keys.clear()
            del self._master

    # -- lookups ---------------------------------------------------------------

    def _find_key(self, label: str) -> _SoftKey | None:
        cached = self._keys.get(label)
        path = cached.path if cached is not None else self._key_path(label)
        try:
            stamp = _file_stamp(os.stat(path))
        except FileNotFoundError:
            with self._state_lock:
                self._keys.pop(label, None)
            return None
        if cached is not None and cached.file_stamp == stamp:
            return cached
        try:
            loaded = self._open_key_file(path)
        except FileNotFoundError:
            return None
        if loaded.info.label != label:
            raise TokenTamperedError(
                f"key file {os.path.basename(path)} holds another key's label"
            )
        with self._state_lock:
            self._keys[label] = loaded
        return loaded

    def _list_found_keys(self) -> list[_SoftKey]:
        cached_by_file = {
            _key_file_name(label): key for label, key in self._keys.items()
        }
        found: dict[str, _SoftKey] = {}
        for path in sorted(
            str(p) for p in (self._root / _KEYS_DIR).glob("*" + _KEY_SUFFIX)
        ):
            try:
                stamp = _file_stamp(os.stat(path))
                cached = cached_by_file.get(os.path.basename(path))
                if cached is not None and cached.file_stamp == stamp:
                    key = cached
                else:
                    key = self._open_key_file(path)
            except FileNotFoundError:
                continue  # destroyed by another process while we looked
            found[key.info.label] = key
        with self._state_lock:
            self._keys = found
        return list(found.values())

    # -- signing ---------------------------------------------------------------

    def _sign_with_key(
        self, key: _SoftKey, data: bytes, mechanism: SignatureMechanism
    ) -> bytes:
        private_key = self._unwrapped(key)
        self._check_still_present(key)
        return _sign_locally(private_key, data, mechanism)

    def _sign_many_with_key(
        self, key: _SoftKey, items: Sequence[bytes], mechanism: SignatureMechanism
    ) -> list[bytes]:
        private_key = self._unwrapped(key)
        self._check_still_present(key)
        return [_sign_locally(private_key, item, mechanism) for item in items]

    def _check_still_present(self, key: _SoftKey) -> None:
        """Refuse to sign with a key destroyed or replaced since the request was
        authorised: writing the audit entry in between can wait seconds for the
        database, and a key destroyed as compromised must not sign after that."""
        current = self._keys.get(key.info.label, key)
        try:
            stamp = _file_stamp(os.stat(current.path))
        except FileNotFoundError:
            stamp = None
        if stamp != current.file_stamp:
            raise _destroyed_meanwhile(key)

    def _unwrapped(self, key: _SoftKey) -> PrivateKeyTypes:
        """The key's private half, unwrapped once per login on its first use."""
        if key.private_key is not None:
            return key.private_key
        try:
            loaded = self._open_key_file(key.path, unwrap=True)
        except FileNotFoundError:
            raise _destroyed_meanwhile(key) from None
        if loaded.info != key.info:
            raise TokenTamperedError(
                f"key file {os.path.basename(key.path)} changed while it was in use"
            )
        with self._state_lock:
            self._keys[key.info.label] = loaded
        assert loaded.private_key is not None
        return loaded.private_key

    # -- key files -------------------------------------------------------------

    def _key_path(self, label: str) -> str:
        return os.path.join(self._keys_dir, _key_file_name(label))

    def _associated_data(self, public_fields: dict[str, Any]) -> bytes:
        return _dump_json(
            {"format": FORMAT, "token_id": self._token_id, **public_fields}
        )

    def _seal_key_file(self, info: KeyInfo, private_key: PrivateKeyTypes) -> bytes:
        public_fields = _public_fields(info)
        pkcs8 = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        nonce = secrets.token_bytes(12)
        wrapped = self._master.encrypt(
            nonce, pkcs8, self._associated_data(public_fields)
        )
        return _dump_json(
            {
                **public_fields,
                "nonce": _b64(nonce),
                "wrapped_private_key": _b64(wrapped),
            }
        )

    def _open_key_file(self, path: str, *, unwrap: bool = False) -> _SoftKey:
        """The key in `path`, checked against tampering; TokenTamperedError if it fails.

        The wrapped key is always decrypted, because that is how AES-GCM checks it;
        it is kept as a key object only when `unwrap` asks for it.
        """
        with open(path, "rb") as handle:
            stamp = _file_stamp(os.fstat(handle.fileno()))
            content = handle.read()
        name = os.path.basename(path)
        damaged = TokenTamperedError(f"key file {name} is damaged or was edited")
        try:
            record = json.loads(content)
            public_fields = {name: record[name] for name in _PUBLIC_FIELD_NAMES}
            nonce = _unb64(record["nonce"])
            wrapped = _unb64(record["wrapped_private_key"])
            label = check_label(record["label"])
        except (ValueError, KeyError, TypeError, InvalidKeyRequestError):
            raise damaged from None
        if name != _key_file_name(label):
            raise TokenTamperedError(
                f"key file {name} holds the key of another label (renamed or swapped)"
            )
        try:
            pkcs8 = self._master.decrypt(
                nonce, wrapped, self._associated_data(public_fields)
            )
        except (InvalidTag, ValueError):
            raise TokenTamperedError(
                f"key file {name} failed its integrity check (edited, or from another token)"
            ) from None
        info = _key_info(public_fields)
        private_key = serialization.load_der_private_key(pkcs8, password=None) if unwrap else None
        del pkcs8
        return _SoftKey(info, private_key, path, stamp)


_PUBLIC_FIELD_NAMES = ("label", "algorithm", "usages", "created_at", "public_key")


def _public_fields(info: KeyInfo) -> dict[str, Any]:
    return {
        "label": info.label,
        "algorithm": info.algorithm.value,
        "usages": sorted(usage.value for usage in info.usages),
        "created_at": info.created_at.isoformat(),
        "public_key": _b64(info.public_key_der),
    }


def _key_info(fields: dict[str, Any]) -> KeyInfo:
    """KeyInfo from fields already authenticated by AES-GCM."""
    return KeyInfo(
        label=fields["label"],
        algorithm=KeyAlgorithm(fields["algorithm"]),
        usages=frozenset(KeyUsage(value) for value in fields["usages"]),
        created_at=dt.datetime.fromisoformat(fields["created_at"]),
        public_key_der=_unb64(fields["public_key"]),
    )


def _key_file_name(label: str) -> str:
    # Hashed so any label makes a safe file name; the label itself is inside, authenticated.
    return hashlib.sha256(label.encode("utf-8")).hexdigest() + _KEY_SUFFIX


def _new_private_key(algorithm: KeyAlgorithm) -> PrivateKeyTypes:
    if algorithm is KeyAlgorithm.EC_P256:
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm is KeyAlgorithm.EC_P384:
        return ec.generate_private_key(ec.SECP384R1())
    if algorithm is KeyAlgorithm.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm is KeyAlgorithm.RSA_2048:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


@functools.lru_cache(maxsize=64)
def _local_parameters(mechanism: SignatureMechanism) -> tuple[Any, ...]:
    """cryptography's arguments for `mechanism` (after the data), built once per mechanism."""
    if mechanism.hash is None:
        return ()
    hash_alg = hash_algorithm(mechanism.hash)
    algorithm = utils.Prehashed(hash_alg) if mechanism.prehashed else hash_alg
    if mechanism.rsa_padding is None:
        return (ec.ECDSA(algorithm),)
    if mechanism.rsa_padding is RsaPadding.PKCS1V15:
        return (padding.PKCS1v15(), algorithm)
    return (padding.PSS(padding.MGF1(hash_alg), padding.PSS.DIGEST_LENGTH), algorithm)


def _sign_locally(
    private_key: PrivateKeyTypes, data: bytes, mechanism: SignatureMechanism
) -> bytes:
    return private_key.sign(data, *_local_parameters(mechanism))  # type: ignore[union-attr, call-arg]


# -- token file and PIN ----------------------------------------------------------


def _check_pin(pin: object, what: str) -> None:
    if not isinstance(pin, str) or not (MIN_PIN_LENGTH <= len(pin) <= MAX_PIN_LENGTH):
        raise KeyStoreConfigError(
            f"the {what} must have {MIN_PIN_LENGTH} to {MAX_PIN_LENGTH} characters"
        )


def _key_encryption_key(token: dict[str, Any], salt: bytes, pin: str) -> bytes:
    kdf = token["kdf"]
    return Scrypt(
        salt=salt, length=32, n=2 ** kdf["log2_n"], r=kdf["r"], p=kdf["p"]
    ).derive(pin.encode("utf-8"))


def _master_key_associated_data(token: dict[str, Any], role: str) -> bytes:
    return _dump_json(
        {
            "format": FORMAT,
            "token_id": token["token_id"],
            "role": role,
            "kdf": token["kdf"],
        }
    )


def _wrap_master_key(
    master_key: bytes, token: dict[str, Any], role: str, pin: str
) -> dict[str, str]:
    salt = secrets.token_bytes(16)
    nonce = secrets.token_bytes(12)
    kek = AESGCM(_key_encryption_key(token, salt, pin))
    wrapped = kek.encrypt(nonce, master_key, _master_key_associated_data(token, role))
    return {
        "salt": _b64(salt),
        "nonce": _b64(nonce),
        "wrapped_master_key": _b64(wrapped),
    }


def _unwrap_master_key(token: dict[str, Any], role: str, pin: str) -> bytes:
    """The master key, or InvalidTag when the PIN is wrong."""
    if not isinstance(pin, str) or not pin:
        raise InvalidTag()
    wrap = token[role]
    kek = AESGCM(_key_encryption_key(token, _unb64(wrap["salt"]), pin))
    return kek.decrypt(
        _unb64(wrap["nonce"]),
        _unb64(wrap["wrapped_master_key"]),
        _master_key_associated_data(token, role),
    )


def _log_in_user(root: Path, pin: str) -> tuple[dict[str, Any], bytes]:
    """The token file and its master key if `pin` is the user PIN; counts failures,
    locks after the fifth.

    The whole attempt runs under the token lock, reading the token file there too (a
    PIN reset by the SO meanwhile must not make the new PIN look wrong). Logins from
    several processes take turns (one scrypt each, once per process start), and none
    of them mistakes another's attempt in progress for a failure: counting in-flight
    attempts as failures once locked a token whose server started six workers at once.
    """
    with _token_lock(root):
        token = _read_token_file(root)
        failed = _read_pin_state(root)
        if failed >= MAX_FAILED_USER_LOGINS:
            raise TokenLockedError(
                "the token is locked after repeated wrong PINs; the security officer must unlock it"
            )
        # Count the attempt before trying it: a process killed mid-attempt has used it.
        _write_pin_state(root, failed=failed + 1)
        try:
            master_key = _unwrap_master_key(token, _USER, pin)
        except InvalidTag:
            left = MAX_FAILED_USER_LOGINS - failed - 1
            if left <= 0:
                raise PinIncorrectError(
                    "wrong user PIN; the token is now locked until the security officer unlocks it"
                ) from None
            raise PinIncorrectError(
                f"wrong user PIN ({left} attempt{'s' if left > 1 else ''} left before the token locks)"
            ) from None
        except BaseException:
            # Not an answer about the PIN (out of memory for scrypt, an interrupt):
            # the attempt does not count.
            _write_pin_state(root, failed=failed)
            raise
        _write_pin_state(root, failed=0)
    return token, master_key


def _read_token_file(root: Path) -> dict[str, Any]:
    path = root / _TOKEN_FILE
    try:
        content = path.read_bytes()
    except FileNotFoundError:
        raise TokenNotFoundError(f"no software token in {root}") from None
    except NotADirectoryError:
        raise TokenNotFoundError(f"no software token in {root}") from None
    try:
        token = json.loads(content)
        well_formed = (
            token["format"] == FORMAT
            and isinstance(token["token_id"], str)
            and isinstance(token["label"], str)
            and _is_known_kdf(token["kdf"])
            and all(_is_wrap_record(token[role]) for role in (_USER, _SO))
        )
    except (ValueError, KeyError, TypeError):
        well_formed = False
    if not well_formed:
        raise TokenTamperedError(f"{path} is damaged or is not a Yinxin software token")
    return token


def _is_known_kdf(kdf: Any) -> bool:
    return (
        kdf["name"] == "scrypt"
        and isinstance(kdf["log2_n"], int)
        and MIN_SCRYPT_LOG2_N <= kdf["log2_n"] <= MAX_SCRYPT_LOG2_N
        and kdf["r"] == SCRYPT_R
        and kdf["p"] == SCRYPT_P
    )


def _is_wrap_record(wrap: Any) -> bool:
    return all(_unb64(wrap[name]) for name in ("salt", "nonce", "wrapped_master_key"))


def _read_pin_state(root: Path) -> int:
    try:
        state = json.loads((root / _PIN_STATE_FILE).read_bytes())
        failed = state["failed_user_logins"]
    except FileNotFoundError:
        # A missing counter must not reset the lockout: treat the token as locked.
        return MAX_FAILED_USER_LOGINS
    except (ValueError, KeyError, TypeError):
        return MAX_FAILED_USER_LOGINS
    if not isinstance(failed, int) or failed < 0:
        return MAX_FAILED_USER_LOGINS
    return failed


def _write_pin_state(root: Path, *, failed: int) -> None:
    _write_atomically(
        root / _PIN_STATE_FILE, _dump_json({"failed_user_logins": failed})
    )


# -- files -----------------------------------------------------------------------


@contextlib.contextmanager
def _token_lock(root: Path) -> Iterator[None]:
    """An exclusive flock on the token, shared by every process that opens it."""
    try:
        fd = os.open(root / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    except (FileNotFoundError, NotADirectoryError):
        raise TokenNotFoundError(f"no software token in {root}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _write_atomically(
    target: str | Path, content: bytes, *, replace: bool = True
) -> None:
    """Write a 0600 file that is either absent or complete, even across a crash.

    With replace=False an existing file is left alone and FileExistsError raised.
    """
    path = Path(target)
    temporary = path.parent / f".{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            view = memoryview(content)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(temporary, path)
        else:
            os.link(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _destroyed_meanwhile(key: _SoftKey) -> KeyNotFoundError:
    return KeyNotFoundError(
        f"key {key.info.label!r} was destroyed or replaced while the signature was "
        "being authorised; nothing was signed"
    )


def _file_stamp(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_ino, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size)


def _dump_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise TypeError("expected base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as exc:
        raise ValueError("bad base64") from exc


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
