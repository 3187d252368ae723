"""SM2 signature verification (GB/T 32918.2, with SM3 and the ID rules of GM/T 0009).

`cryptography` knows SM3 but not the SM2 curve, so the curve arithmetic comes from gmalg
(pure Python, standard library only). Only verification lives here: Yinxin's own keys are
ECDSA keys inside hsm_sim; SM2 is needed to check seals made elsewhere.
"""

from __future__ import annotations

import gmalg
from asn1crypto import core

SM2_CURVE_OID = "1.2.156.10197.1.301"
# GM/T 0009-2012 §10: the user ID to use when the parties agreed on none.
DEFAULT_USER_ID = b"1234567812345678"
_COORDINATE_BYTES = 32


class _SignatureValue(core.Sequence):
    """SM2Signature ::= SEQUENCE { R INTEGER, S INTEGER } (GM/T 0009 §7.3)."""

    _fields = [("r", core.Integer), ("s", core.Integer)]


def _split_signature(signature: bytes) -> tuple[int, int] | None:
    # GM/T 0009 says DER; some vendors store the bare 64-byte R || S.
    if len(signature) == 2 * _COORDINATE_BYTES and signature[0] != 0x30:
        return (
            int.from_bytes(signature[:_COORDINATE_BYTES], "big"),
            int.from_bytes(signature[_COORDINATE_BYTES:], "big"),
        )
    try:
        value = _SignatureValue.load(signature, strict=True)
        return value["r"].native, value["s"].native
    except (ValueError, TypeError):
        return None


def verify_sm2_signature(
    public_point: bytes,
    data: bytes,
    signature: bytes,
    *,
    user_id: bytes = DEFAULT_USER_ID,
) -> bool:
    """True when `signature` is an SM2-with-SM3 signature of `data` by the key at
    `public_point` (uncompressed 04 || X || Y); False for any mismatch or malformed input."""
    if len(public_point) != 1 + 2 * _COORDINATE_BYTES or public_point[0] != 0x04:
        return False
    parts = _split_signature(signature)
    if parts is None:
        return False
    r, s = parts
    if not (0 < r < 1 << 256 and 0 < s < 1 << 256):
        return False
    verifier = gmalg.SM2(uid=user_id, pk=public_point)
    if not verifier.verify_pk(public_point):
        return False
    return bool(
        verifier.verify(
            data,
            r.to_bytes(_COORDINATE_BYTES, "big"),
            s.to_bytes(_COORDINATE_BYTES, "big"),
        )
    )
