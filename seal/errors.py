"""Errors of the seal package.

Every error carries an `ErrorCategory`; the portal maps it to an HTTP status or an
exit code. Messages are shown to users as they are: they name the problem with the
document or the request in one line and never carry key material or document content.
"""

from __future__ import annotations

from hsm_sim.errors import ErrorCategory

__all__ = [
    "DocumentLockedError",
    "SealError",
    "StampError",
    "TrustServiceError",
]


class SealError(Exception):
    """Root of every seal error."""

    category: ErrorCategory = ErrorCategory.INTERNAL


class StampError(SealError):
    """The document or the stamping request cannot be stamped as asked."""

    category = ErrorCategory.BAD_REQUEST


class DocumentLockedError(StampError):
    """The document's certification signature allows no further signatures."""

    category = ErrorCategory.CONFLICT


class TrustServiceError(SealError):
    """The timestamp authority or a revocation source did not answer usefully."""

    category = ErrorCategory.UNAVAILABLE


# The seal registry: making seals, their lifecycle, grants, stamp authorization
# (seal/lifecycle.py).

__all__ += [
    "GrantNotFoundError",
    "PrincipalNotFoundError",
    "SealMakerError",
    "SealNotFoundError",
    "SealNotUsableError",
    "SealRequestError",
    "SealStateError",
    "StampForbiddenError",
]


class SealNotFoundError(SealError):
    category = ErrorCategory.NOT_FOUND


class SealRequestError(SealError, ValueError):
    """A request to make or manage a seal that cannot be carried out as given."""

    category = ErrorCategory.BAD_REQUEST


class SealStateError(SealError):
    """A lifecycle change the seal's state does not allow (reinstating a revoked seal)."""

    category = ErrorCategory.CONFLICT


class SealMakerError(SealError):
    """The node's seal-maker credential cannot sign seal data."""

    category = ErrorCategory.INTERNAL


class PrincipalNotFoundError(SealError):
    """No API client or staff user of that name (when granting or withdrawing)."""

    category = ErrorCategory.NOT_FOUND


class GrantNotFoundError(SealError):
    category = ErrorCategory.NOT_FOUND


class StampForbiddenError(SealError):
    """The client or user may not stamp with this seal: another agency's, or no grant."""

    category = ErrorCategory.FORBIDDEN


class SealNotUsableError(StampForbiddenError):
    """The seal is suspended, revoked or expired: no one may stamp with it."""
