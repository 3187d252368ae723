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
    "LicenceDataError",
    "LicenceFontUnavailableError",
    "LicenceIdentifierError",
    "LicenceLayoutError",
    "LicenceTypeDefinitionError",
    "LicenseError",
    "QrCapacityError",
    "QrDecodeError",
    "TokenClaimsError",
    "TokenFormatError",
    "TokenSignerError",
    "UnknownLicenceTypeError",
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


class LicenceIdentifierError(LicenseError, ValueError):
    """Not a valid GB/T 36904 e-licence identifier; the message names the problem."""

    category = ErrorCategory.BAD_REQUEST


class LicenceTypeDefinitionError(LicenseError):
    """A licence type's data file is invalid: a deployment fault, found at start."""

    category = ErrorCategory.INTERNAL

    def __init__(self, source: str, problems: list[str] | tuple[str, ...]) -> None:
        self.source = source
        self.problems = tuple(problems)
        super().__init__(
            f"licence type {source}: " + "; ".join(self.problems)
            if len(self.problems) == 1
            else f"licence type {source} has {len(self.problems)} problems: "
            + "; ".join(self.problems)
        )


class UnknownLicenceTypeError(LicenseError, LookupError):
    """No licence type has the code asked for."""

    category = ErrorCategory.NOT_FOUND


class LicenceDataError(LicenseError, ValueError):
    """Licence data that does not fit its type; `problems` names every one of them.

    Each problem names the field and what is wrong, never the value given: the data
    holds names and identity numbers.
    """

    category = ErrorCategory.BAD_REQUEST

    def __init__(self, type_code: str, problems: list[str] | tuple[str, ...]) -> None:
        self.type_code = type_code
        self.problems = tuple(problems)
        count = len(self.problems)
        super().__init__(
            f"the licence data has {count} problem{'s' if count > 1 else ''}: "
            + "; ".join(self.problems)
        )


class LicenceLayoutError(LicenseError, ValueError):
    """A licence PDF cannot be laid out from what was given (an unreadable QR image...)."""

    category = ErrorCategory.BAD_REQUEST


class LicenceFontUnavailableError(LicenseError):
    """No CJK TrueType font to set licences in: the operator must install one."""

    category = ErrorCategory.UNAVAILABLE


# SD-JWT VC and compact JWS (certs.sdjwt), Token Status List (certs.status).

__all__ += [
    "DisclosureNotFoundError",
    "InvalidStatusListError",
    "JoseError",
    "JoseSignatureError",
    "MalformedJoseError",
    "SdJwtError",
    "StatusListError",
    "StatusListFullError",
    "UntrustedJoseSignerError",
]


class SdJwtError(LicenseError, ValueError):
    """An SD-JWT cannot be issued or presented as asked (claims, holder key, nonce...)."""

    category = ErrorCategory.BAD_REQUEST


class DisclosureNotFoundError(SdJwtError):
    """A presentation asked for a field the credential cannot disclose."""


class JoseError(LicenseError, ValueError):
    """A compact JWS failed verification; the subclass says how, the message why."""

    category = ErrorCategory.BAD_REQUEST


class MalformedJoseError(JoseError):
    """Not a well-formed JWS of the expected kind (encoding, JSON, alg, typ, crit)."""


class JoseSignatureError(JoseError):
    """The signature does not verify with any candidate key."""


class UntrustedJoseSignerError(JoseError):
    """No trusted document signer fits the JWS (unknown kid, or not valid at signing)."""


class StatusListError(LicenseError, ValueError):
    """A Token Status List cannot be built, read or changed as asked."""

    category = ErrorCategory.BAD_REQUEST


class InvalidStatusListError(StatusListError):
    """A status list token failed verification (signature, subject, time, compression)."""


class StatusListFullError(StatusListError):
    """Every index of the status list is taken."""

    category = ErrorCategory.CONFLICT
