"""The unified social credit code (统一社会信用代码) of GB 32100-2015.

18 characters: registration authority (1), organisation category (1), administrative
division code (6 digits, GB/T 2260), organisation code (9), check character (1). The
alphabet is 0-9 and A-Z without I, O, Z, S and V (31 characters); the check character
is ISO 7064-style MOD 31 with weights 3^i mod 31. Because 31 is prime and no weight is
a multiple of 31, changing any one character always changes the check character.
"""

from __future__ import annotations

import unicodedata

from pki.errors import InvalidUsccError

__all__ = [
    "USCC_ALPHABET",
    "USCC_LENGTH",
    "compute_uscc_check_character",
    "normalize_uscc",
    "validate_uscc",
]

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_LENGTH = 18
_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_VALUES = {character: value for value, character in enumerate(USCC_ALPHABET)}
_DIVISION_POSITIONS = range(2, 8)  # zero-based: characters 3-8


def normalize_uscc(text: str) -> str:
    """`text` in canonical form: full-width characters folded, spaces removed, upper case."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(folded.split()).upper()


def compute_uscc_check_character(body: str) -> str:
    """The check character for the first 17 characters of a code (already normalised)."""
    if len(body) != USCC_LENGTH - 1:
        raise InvalidUsccError(
            f"the check character is computed over 17 characters, got {len(body)}"
        )
    total = 0
    for position, (character, weight) in enumerate(zip(body, _WEIGHTS, strict=True), 1):
        value = _VALUES.get(character)
        if value is None:
            raise InvalidUsccError(_illegal_character_message(character, position))
        total += value * weight
    return USCC_ALPHABET[(31 - total % 31) % 31]


def validate_uscc(text: str) -> str:
    """The normalised code, or InvalidUsccError saying in one line what is wrong."""
    code = normalize_uscc(text)
    if not code:
        raise InvalidUsccError("the unified social credit code is empty")
    if len(code) != USCC_LENGTH:
        raise InvalidUsccError(
            f"a unified social credit code has {USCC_LENGTH} characters, got {len(code)}"
        )
    for position, character in enumerate(code, 1):
        if character not in _VALUES:
            raise InvalidUsccError(_illegal_character_message(character, position))
    for index in _DIVISION_POSITIONS:
        if not code[index].isdigit():
            raise InvalidUsccError(
                "characters 3-8 of a unified social credit code are the administrative "
                f"division code and must be digits; character {index + 1} is {code[index]!r}"
            )
    expected = compute_uscc_check_character(code[:-1])
    if code[-1] != expected:
        raise InvalidUsccError(
            "the unified social credit code's check character should be "
            f"{expected}, got {code[-1]}"
        )
    return code


def _illegal_character_message(character: str, position: int) -> str:
    return (
        f"character {position} of the unified social credit code is {character!r}, which "
        "is not allowed (use 0-9 and A-Z except I, O, S, V and Z)"
    )
