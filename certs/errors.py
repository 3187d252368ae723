"""Errors raised by the certs package.

Each carries a coarse `category` (hsm_sim.errors.ErrorCategory) that the portal maps
to an HTTP status or an exit code. Messages are shown to users as they are: one line,
saying what was wrong, never key material, a full token or personal data.

Verifying a token never raises for bad input: it returns a verdict with a reason.
These errors are for requests that cannot be carried out (claims that cannot be
encoded, a signer key that does not fit its certificate, an image without a QR code)
and for the separate decoding stages, which the verifier turns into MALFORMED.
"""

from __future__ import annotations

from hsm_sim.errors import ErrorCategory

__all__ = [
    "LicenseError",
    "TokenClaimsError",
    "TokenSignerError",
    "TokenFormatError",
    "QrCapacityError",
    "QrDecodeError",
]


class LicenseError(Exception):
    """Root of every certs error."""

    category: ErrorCategory = ErrorCategory.INTERNAL


class TokenClaimsError(LicenseError, ValueError):
    """Claims that cannot go into a token (wrong type, out of range, too large)."""

    category = ErrorCategory.BAD_REQUEST


class TokenSignerError(LicenseError, ValueError):
    """The signer key or certificate cannot sign tokens (wrong curve, mismatched pair)."""

    category = ErrorCategory.BAD_REQUEST


class TokenFormatError(LicenseError, ValueError):
    """A token failed one decoding stage; `stage` names it (a `certs.token.TokenStage`)."""

    category = ErrorCategory.BAD_REQUEST

    def __init__(self, stage: object, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage
        self.reason = reason


class QrCapacityError(LicenseError, ValueError):
    """The token does not fit in the largest QR code allowed."""

    category = ErrorCategory.BAD_REQUEST


class QrDecodeError(LicenseError, ValueError):
    """No readable QR code in the image, or the image itself cannot be read."""

    category = ErrorCategory.BAD_REQUEST
