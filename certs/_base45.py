"""Base45 (RFC 9285): the text form of QR tokens.

Encoding goes through the `base45` package. Decoding is our own because it sits on
every verification and the package decodes in a Python loop (about 43 µs for a
660-character token against about 7 µs here, where one ECDSA verification costs
about 46 µs): each of the three character positions of every group is spread into
a 32-bit lane of one big integer, so one multiply-add over the whole token computes
every group's value, and slicing the result back into bytes checks and splits them.
The tests hold it to the package's output on random data.
"""

from __future__ import annotations

import base45

__all__ = ["ALPHABET", "Base45Error", "b45decode", "b45encode"]

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

_INVALID = 0xFF
_VALUES = bytearray([_INVALID] * 256)
for _value, _char in enumerate(ALPHABET):
    _VALUES[ord(_char)] = _value
_TRANSLATION = bytes(_VALUES)


class Base45Error(ValueError):
    """Text that is not Base45; the message says where."""


def b45encode(data: bytes) -> str:
    return base45.b45encode(data).decode("ascii")


def b45decode(text: str) -> bytes:
    """The bytes `text` encodes; Base45Error for anything RFC 9285 does not allow."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise Base45Error(
            f"character at position {exc.start} is not in the Base45 alphabet"
        ) from None
    values = raw.translate(_TRANSLATION)
    bad = values.find(_INVALID)
    if bad >= 0:
        raise Base45Error(f"character at position {bad} is not in the Base45 alphabet")
    groups, rest = divmod(len(values), 3)
    if rest == 1:
        raise Base45Error("Base45 text ends with a lone character (truncated?)")
    whole = 3 * groups
    lanes = []
    for position in range(3):
        spread = bytearray(4 * groups)
        spread[3::4] = values[position:whole:3]
        lanes.append(int.from_bytes(spread, "big"))
    # c + 45*d + 2025*e < 2**17 for any group, so no lane carries into the next.
    group_values = (lanes[0] + 45 * lanes[1] + 2025 * lanes[2]).to_bytes(
        4 * groups, "big"
    )
    if group_values[1::4].strip(b"\0"):
        index = next(i for i, byte in enumerate(group_values[1::4]) if byte)
        raise Base45Error(f"group at position {3 * index} is larger than two bytes")
    out = bytearray(2 * groups + (rest == 2))
    out[0 : 2 * groups : 2] = group_values[2::4]
    out[1 : 2 * groups : 2] = group_values[3::4]
    if rest == 2:
        last = values[whole] + 45 * values[whole + 1]
        if last > 0xFF:
            raise Base45Error(f"group at position {whole} is larger than one byte")
        out[-1] = last
    return bytes(out)
