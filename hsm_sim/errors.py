"""Errors of the key store, and the error categories every Yinxin package shares.

`ErrorCategory` lives here because hsm_sim is the lowest layer: every package can
import it, and only the portal maps a category to an HTTP status or an exit code.
Messages are shown to users as they are, so they never carry key material, PINs,
secrets or personal data.
"""

from __future__ import annotations

import enum

__all__ = [
    "ErrorCategory",
    "HsmError",
    "KeyNotFoundError",
    "KeyExistsError",
    "KeyNotExportableError",
    "UsageNotPermittedError",
    "UnsupportedAlgorithmError",
    "PinIncorrectError",
    "PinMissingError",
    "TokenLockedError",
    "TokenNotFoundError",
    "TokenUnavailableError",
    "KeyStoreConfigError",
    "AuditError",
    "AuditUnavailableError",
    "InvalidKeyRequestError",
    "TokenExistsError",
    "TokenTamperedError",
]


class ErrorCategory(enum.Enum):
    """Coarse kind of failure; the portal turns it into an HTTP status."""

    BAD_REQUEST = "bad_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    LOCKED = "locked"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


class HsmError(Exception):
    """Root of every key-store error."""

    category: ErrorCategory = ErrorCategory.INTERNAL


class KeyNotFoundError(HsmError):
    category = ErrorCategory.NOT_FOUND


class KeyExistsError(HsmError):
    category = ErrorCategory.CONFLICT


class KeyNotExportableError(HsmError):
    """Raised by key handles for private_bytes()/private_numbers(): keys never leave."""

    category = ErrorCategory.FORBIDDEN


class UsageNotPermittedError(HsmError):
    category = ErrorCategory.FORBIDDEN


class UnsupportedAlgorithmError(HsmError):
    category = ErrorCategory.BAD_REQUEST


class PinIncorrectError(HsmError):
    category = ErrorCategory.UNAUTHORIZED


class PinMissingError(HsmError):
    category = ErrorCategory.UNAUTHORIZED


class TokenLockedError(HsmError):
    category = ErrorCategory.LOCKED


class TokenNotFoundError(HsmError):
    category = ErrorCategory.NOT_FOUND


class TokenUnavailableError(HsmError):
    """The token did not answer (a device or library error); trying again may work."""

    category = ErrorCategory.UNAVAILABLE


class KeyStoreConfigError(HsmError):
    category = ErrorCategory.BAD_REQUEST


class AuditError(HsmError):
    """The audit log is inconsistent or cannot be read."""

    category = ErrorCategory.INTERNAL


class AuditUnavailableError(AuditError):
    """The audit entry could not be written, so the signature is refused."""

    category = ErrorCategory.UNAVAILABLE


class InvalidKeyRequestError(HsmError):
    """A malformed key request: bad label, no usage, a mechanism unfit for the key."""

    category = ErrorCategory.BAD_REQUEST


class TokenExistsError(HsmError):
    """Token creation refused because a token is already there."""

    category = ErrorCategory.CONFLICT


class TokenTamperedError(HsmError):
    """A token file failed its integrity check (edited, renamed or swapped)."""

    category = ErrorCategory.INTERNAL
