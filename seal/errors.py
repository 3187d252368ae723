"""Errors of the seal package.

Every error carries an `ErrorCategory`; the portal maps it to an HTTP status or an
exit code. Messages are shown to users as they are: they name the problem with the
document or the request in one line and never carry key material or document content.
"""

from __future__ import annotations

from hsm_sim.errors import ErrorCategory

__all__ = [
    "SealError",
    "StampError",
    "DocumentLockedError",
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
