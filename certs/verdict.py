"""The bottom line of every licence check: QR token, SD-JWT presentation or sealed PDF."""

from __future__ import annotations

import enum

__all__ = ["Verdict"]


class Verdict(enum.Enum):
    """What a verifier tells its user; stored and printed by value."""

    VALID = "VALID"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"  # no trusted key makes the signature check
    UNTRUSTED_ISSUER = "UNTRUSTED_ISSUER"  # no trusted signer fits the issuer or its dates
    EXPIRED = "EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    REVOKED = "REVOKED"
    SUSPENDED = "SUSPENDED"
    MALFORMED = "MALFORMED"  # not a well-formed credential; nothing in it can be trusted

    @property
    def is_valid(self) -> bool:
        return self is Verdict.VALID
