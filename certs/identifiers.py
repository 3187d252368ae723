"""E-licence identifiers (电子证照标识) of GB/T 36904-2018.

    1.2.156.3005.2.<type code>.<agency code>.<licence number>.<version>.<check>

- type code (证照类型代码): 21 characters, the unified social credit code of the
  department that defines the licence type followed by a 3-digit sequence number
  (11100000000013338W011: the Ministry of Housing and Urban-Rural Development's 11th);
- agency code (颁证单位代码): the issuing agency's 18-character unified social credit
  code; identifiers from older local systems carry a 6-digit administrative division
  code here instead, and are accepted when read;
- licence number (证照编号/流水号): 1 to 40 characters from 0-9 and A-Z, chosen by the
  issuing system (a year and a serial number, say);
- version (版本号): 3 digits from 001; a change or renewal issues the next version;
- check character (校验位): ISO/IEC 7064 MOD 37,36 over the four fields above
  concatenated without the dots, one of 0-9 and A-Z.

MOD 37,36 catches every single-character substitution in the checked fields; the root,
the dots and each field's shape are checked separately, so any one changed character
anywhere in an identifier is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from certs.errors import LicenceIdentifierError
from pki.errors import InvalidRegionCodeError, InvalidUsccError
from pki.regions import validate_region_code
from pki.uscc import USCC_LENGTH, validate_uscc

__all__ = [
    "IDENTIFIER_ROOT",
    "LicenceIdentifier",
    "compute_check_character",
    "validate_type_code",
]

IDENTIFIER_ROOT = "1.2.156.3005.2"
CHECK_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
TYPE_CODE_LENGTH = USCC_LENGTH + 3
REGION_AGENCY_CODE_LENGTH = 6
MAX_NUMBER_LENGTH = 40
MAX_VERSION = 999

_MODULUS = len(CHECK_ALPHABET)  # 36; the hybrid system works modulo 36 and 37
_VALUES = {character: value for value, character in enumerate(CHECK_ALPHABET)}
_PREFIX = IDENTIFIER_ROOT + "."
_FIELD_NAMES = (
    "type code",
    "agency code",
    "licence number",
    "version",
    "check character",
)
# Longest possible identifier, with room to spare; longer input is refused unread.
_MAX_TEXT_LENGTH = (
    len(_PREFIX) + TYPE_CODE_LENGTH + USCC_LENGTH + MAX_NUMBER_LENGTH + 3 + 1 + 4
)
_VERSION = re.compile(r"[0-9]{3}")


def compute_check_character(data: str) -> str:
    """The ISO/IEC 7064 MOD 37,36 check character of `data` (0-9 and A-Z only)."""
    product = _MODULUS
    for position, character in enumerate(data, 1):
        value = _VALUES.get(character)
        if value is None:
            raise LicenceIdentifierError(
                f"character {position} of the checked data is {character!r}; "
                "only 0-9 and A-Z (upper case) are allowed"
            )
        total = (product + value) % _MODULUS or _MODULUS
        product = (total * 2) % (_MODULUS + 1)
    return CHECK_ALPHABET[(_MODULUS + 1 - product) % _MODULUS]


@dataclass(frozen=True)
class LicenceIdentifier:
    """A GB/T 36904 identifier whose every field and check character are valid."""

    type_code: str
    agency_code: str
    number: str
    version: int
    check: str

    def __post_init__(self) -> None:
        _check_type_code(self.type_code)
        _check_agency_code(self.agency_code)
        _check_number(self.number)
        if (
            not isinstance(self.version, int)
            or isinstance(self.version, bool)
            or not 1 <= self.version <= MAX_VERSION
        ):
            raise LicenceIdentifierError(
                f"the version is a number from 1 to {MAX_VERSION}, written as 3 digits"
            )
        if not isinstance(self.check, str) or len(self.check) != 1:
            raise LicenceIdentifierError("the check character is one character")
        expected = compute_check_character(self.checked_data)
        if self.check != expected:
            raise LicenceIdentifierError(
                "the check character should be "
                f"{expected}, got {self.check if self.check in _VALUES else _show(self.check)}"
            )

    @classmethod
    def parse(cls, text: str) -> LicenceIdentifier:
        """The identifier in `text`, or LicenceIdentifierError naming the first problem."""
        if not isinstance(text, str):
            raise LicenceIdentifierError("an e-licence identifier is a text string")
        text = text.strip()
        if not text:
            raise LicenceIdentifierError("the e-licence identifier is empty")
        if len(text) > _MAX_TEXT_LENGTH:
            raise LicenceIdentifierError(
                f"an e-licence identifier has at most {_MAX_TEXT_LENGTH} characters, "
                f"got {len(text)}"
            )
        if not text.startswith(_PREFIX):
            raise LicenceIdentifierError(
                f"an e-licence identifier starts with {_PREFIX} (GB/T 36904)"
            )
        fields = text[len(_PREFIX) :].split(".")
        if len(fields) != len(_FIELD_NAMES):
            raise LicenceIdentifierError(
                f"an e-licence identifier has {len(_FIELD_NAMES)} fields after "
                f"{IDENTIFIER_ROOT} ({', '.join(_FIELD_NAMES)}), got {len(fields)}"
            )
        offset = len(_PREFIX)
        for name, field in zip(_FIELD_NAMES, fields, strict=True):
            _check_characters(name, field, offset)
            offset += len(field) + 1
        type_code, agency_code, number, version, check = fields
        if not _VERSION.fullmatch(version) or version == "000":
            raise LicenceIdentifierError(
                f"the version is 3 digits from 001 to {MAX_VERSION}, got {version[:8]!r}"
            )
        if len(check) != 1:
            raise LicenceIdentifierError(
                f"the check character is one character, got {len(check)}"
            )
        return cls(type_code, agency_code, number, int(version), check)

    @classmethod
    def build(
        cls, type_code: str, agency_code: str, number: str, version: int = 1
    ) -> LicenceIdentifier:
        """A new identifier with its check character computed.

        The agency code must be a unified social credit code: the 6-digit division
        codes of older systems are only read, never issued.
        """
        if not isinstance(agency_code, str) or len(agency_code) != USCC_LENGTH:
            raise LicenceIdentifierError(
                f"the agency code of a new identifier is the issuing agency's "
                f"{USCC_LENGTH}-character unified social credit code"
            )
        _check_type_code(type_code)
        _check_agency_code(agency_code)
        _check_number(number)
        if isinstance(version, bool) or not isinstance(version, int):
            raise LicenceIdentifierError("the version is a whole number")
        if not 1 <= version <= MAX_VERSION:
            raise LicenceIdentifierError(
                f"the version is a number from 1 to {MAX_VERSION}, got {version}"
            )
        data = type_code + agency_code + number + f"{version:03d}"
        return cls(
            type_code, agency_code, number, version, compute_check_character(data)
        )

    def next_version(self) -> LicenceIdentifier:
        """The identifier of the licence's next version (after a change or renewal)."""
        if self.version >= MAX_VERSION:
            raise LicenceIdentifierError(
                f"version {MAX_VERSION} is the last one an identifier can carry; "
                "issue the licence under a new licence number"
            )
        following = self.version + 1
        data = self.type_code + self.agency_code + self.number + f"{following:03d}"
        return LicenceIdentifier(
            self.type_code,
            self.agency_code,
            self.number,
            following,
            compute_check_character(data),
        )

    @property
    def checked_data(self) -> str:
        """The four fields without dots: what the check character is computed over."""
        return self.type_code + self.agency_code + self.number + f"{self.version:03d}"

    def __str__(self) -> str:
        return ".".join(
            (
                IDENTIFIER_ROOT,
                self.type_code,
                self.agency_code,
                self.number,
                f"{self.version:03d}",
                self.check,
            )
        )


def _check_characters(name: str, field: str, offset: int | None = None) -> None:
    """Refuse characters outside 0-9 A-Z; `offset` places the field in a whole identifier."""
    if not field:
        raise LicenceIdentifierError(f"the {name} is empty")
    for index, character in enumerate(field):
        if character not in _VALUES:
            where = (
                f"character {index + 1} of the {name}"
                if offset is None
                else f"character {offset + index + 1} of the identifier (in the {name})"
            )
            raise LicenceIdentifierError(
                f"{where} is {_show(character)}, which is not allowed; "
                "an identifier's fields use 0-9 and A-Z (upper case)"
            )


def validate_type_code(type_code: object) -> str:
    """`type_code` if it is a valid GB/T 36904 type code, else LicenceIdentifierError."""
    _check_type_code(type_code)
    return type_code  # type: ignore[return-value]  # checked to be a str


def _check_type_code(type_code: object) -> None:
    if not isinstance(type_code, str) or len(type_code) != TYPE_CODE_LENGTH:
        raise LicenceIdentifierError(
            f"the type code has {TYPE_CODE_LENGTH} characters: the defining "
            "department's unified social credit code and a 3-digit sequence number"
        )
    _check_characters("type code", type_code)
    try:
        validate_uscc(type_code[:USCC_LENGTH])
    except InvalidUsccError as exc:
        raise LicenceIdentifierError(
            f"the type code's defining department: {exc}"
        ) from None
    if not type_code[USCC_LENGTH:].isdigit():
        raise LicenceIdentifierError(
            "the type code ends in a 3-digit sequence number, got "
            f"{type_code[USCC_LENGTH:]!r}"
        )


def _check_agency_code(agency_code: object) -> None:
    if not isinstance(agency_code, str) or len(agency_code) not in (
        USCC_LENGTH,
        REGION_AGENCY_CODE_LENGTH,
    ):
        raise LicenceIdentifierError(
            f"the agency code is the issuing agency's {USCC_LENGTH}-character unified "
            f"social credit code (or, in older identifiers, a "
            f"{REGION_AGENCY_CODE_LENGTH}-digit division code)"
        )
    _check_characters("agency code", agency_code)
    try:
        if len(agency_code) == USCC_LENGTH:
            validate_uscc(agency_code)
        else:
            validate_region_code(agency_code)
    except (InvalidUsccError, InvalidRegionCodeError) as exc:
        raise LicenceIdentifierError(f"the agency code: {exc}") from None


def _check_number(number: object) -> None:
    if not isinstance(number, str) or not 1 <= len(number) <= MAX_NUMBER_LENGTH:
        raise LicenceIdentifierError(
            f"the licence number has 1 to {MAX_NUMBER_LENGTH} characters"
        )
    _check_characters("licence number", number)


def _show(character: str) -> str:
    return repr(character)
