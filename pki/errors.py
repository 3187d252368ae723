"""Errors raised by the pki package.

Each carries a coarse `category` (hsm_sim.errors.ErrorCategory) that the portal maps
to an HTTP status or an exit code. Messages are shown to users as they are: one line,
saying what was wrong, never a secret, a password or a full credential.
"""

from __future__ import annotations

from hsm_sim.errors import ErrorCategory

__all__ = [
    "PkiError",
    "InvalidUsccError",
    "InvalidRegionCodeError",
    "InvalidNameError",
    "InvalidUsernameError",
    "WeakPasswordError",
    "InvalidRoleError",
    "AgencyNotFoundError",
    "AgencyExistsError",
    "ClientNotFoundError",
    "ClientExistsError",
    "StaffUserNotFoundError",
    "StaffUserExistsError",
    "AuthenticationError",
]


class PkiError(Exception):
    """Root of every pki error."""

    category: ErrorCategory = ErrorCategory.INTERNAL


# Registry: bad input.


class InvalidUsccError(PkiError, ValueError):
    """A unified social credit code (GB 32100) is malformed or fails its check character."""

    category = ErrorCategory.BAD_REQUEST


class InvalidRegionCodeError(PkiError, ValueError):
    """Not a GB/T 2260 administrative division code."""

    category = ErrorCategory.BAD_REQUEST


class InvalidNameError(PkiError, ValueError):
    category = ErrorCategory.BAD_REQUEST


class InvalidUsernameError(PkiError, ValueError):
    category = ErrorCategory.BAD_REQUEST


class WeakPasswordError(PkiError, ValueError):
    category = ErrorCategory.BAD_REQUEST


class InvalidRoleError(PkiError, ValueError):
    """A staff role that does not exist, or does not fit the user's agency (or lack of one)."""

    category = ErrorCategory.BAD_REQUEST


# Registry: lookups and uniqueness.


class AgencyNotFoundError(PkiError):
    category = ErrorCategory.NOT_FOUND


class AgencyExistsError(PkiError):
    category = ErrorCategory.CONFLICT


class ClientNotFoundError(PkiError):
    category = ErrorCategory.NOT_FOUND


class ClientExistsError(PkiError):
    category = ErrorCategory.CONFLICT


class StaffUserNotFoundError(PkiError):
    category = ErrorCategory.NOT_FOUND


class StaffUserExistsError(PkiError):
    category = ErrorCategory.CONFLICT


class AuthenticationError(PkiError):
    """Credentials did not check out; the message never says which part was wrong."""

    category = ErrorCategory.UNAUTHORIZED


# OCSP and timestamping (pki/ocsp.py, pki/tsa.py).

__all__ += [
    "MalformedOcspRequestError",
    "OcspIssuerMismatchError",
    "UnsuitableSigningCertificateError",
]


class MalformedOcspRequestError(PkiError, ValueError):
    """An OCSP request that cannot be answered; the responder sends malformedRequest."""

    category = ErrorCategory.BAD_REQUEST


class OcspIssuerMismatchError(PkiError, ValueError):
    """Asked to sign a status for a CertID whose issuer the responder does not serve."""

    category = ErrorCategory.INTERNAL


class UnsuitableSigningCertificateError(PkiError, ValueError):
    """An OCSP responder or TSA certificate that does not fit its role or its key."""

    category = ErrorCategory.INTERNAL


# The certificate authority (pki/ca.py, pki/ra.py, pki/ceremony.py, pki/revocation.py).

__all__ += [
    "UnknownProfileError",
    "UnknownCaError",
    "CeremonyConfigError",
    "CeremonyError",
    "CsrError",
    "KeyPolicyError",
    "LintFailedError",
    "IssuanceError",
    "InvalidSerialError",
    "UnknownSerialError",
    "RevocationError",
]


class UnknownProfileError(PkiError, ValueError):
    category = ErrorCategory.BAD_REQUEST


class UnknownCaError(PkiError):
    category = ErrorCategory.NOT_FOUND


class CeremonyConfigError(PkiError, ValueError):
    """The ceremony file is not usable; the message names the key and the problem."""

    category = ErrorCategory.BAD_REQUEST


class CeremonyError(PkiError):
    """The ceremony cannot run (for example: the hierarchy already exists)."""

    category = ErrorCategory.CONFLICT


class CsrError(PkiError, ValueError):
    """A certificate signing request that is malformed or fails proof of possession."""

    category = ErrorCategory.BAD_REQUEST


class KeyPolicyError(PkiError, ValueError):
    """A public key the profile does not allow (weak, or of a type we do not issue for)."""

    category = ErrorCategory.BAD_REQUEST


class LintFailedError(PkiError):
    """The lint gate refused the certificate; nothing was signed by the HSM."""

    category = ErrorCategory.INTERNAL

    def __init__(self, profile: str, findings: list[str]) -> None:
        self.profile = profile
        self.findings = tuple(findings)
        shown = "; ".join(findings[:5]) + ("; ..." if len(findings) > 5 else "")
        super().__init__(f"the {profile} certificate failed the lint gate: {shown}")


class IssuanceError(PkiError):
    category = ErrorCategory.INTERNAL


class InvalidSerialError(PkiError, ValueError):
    category = ErrorCategory.BAD_REQUEST


class UnknownSerialError(PkiError):
    category = ErrorCategory.NOT_FOUND


class RevocationError(PkiError):
    """A revocation that cannot be done (for example: releasing a final revocation)."""

    category = ErrorCategory.CONFLICT


__all__ += ["MissingAgencyError"]


class MissingAgencyError(PkiError, ValueError):
    category = ErrorCategory.BAD_REQUEST


__all__ += ["InvalidReasonError"]


class InvalidReasonError(PkiError, ValueError):
    """A revocation reason that RFC 5280 does not define."""

    category = ErrorCategory.BAD_REQUEST


__all__ += ["InvalidScopeError", "ForbiddenScopeError"]


class InvalidScopeError(PkiError, ValueError):
    """An API client scope that does not exist."""

    category = ErrorCategory.BAD_REQUEST


class ForbiddenScopeError(PkiError):
    """The API client was not given the right to do this."""

    category = ErrorCategory.FORBIDDEN
