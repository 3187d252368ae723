"""GB/T 36904 e-licence identifiers: real identifiers, single-character changes, round trips."""

from __future__ import annotations

import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from certs.errors import LicenceIdentifierError
from certs.identifiers import (
    CHECK_ALPHABET,
    IDENTIFIER_ROOT,
    MAX_NUMBER_LENGTH,
    LicenceIdentifier,
    compute_check_character,
    validate_type_code,
)
from hsm_sim.errors import ErrorCategory
from pki.uscc import USCC_ALPHABET, compute_uscc_check_character

# Found in public code that integrates with the national e-licence platform.
REAL_IDENTIFIERS = [
    "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.002.S",
    "1.2.156.3005.2.11100000000013338W087.11370800MB28559184.37080001202411010001.001.3",
    "1.2.156.3005.2.11100000000013338W009.11330105002500287C.2025052201.002.0",
]
# An older local system's identifier: a 6-digit division code where the USCC goes.
REAL_DIVISION_CODE_IDENTIFIER = (
    "1.2.156.3005.2.11100000MB03271699022.340100.000000016.001.9"
)

# Every printable ASCII character, and look-alikes a copy from a web page can bring in.
REPLACEMENTS = string.printable.strip() + " \u3002\uff0e\uff33\uff10\u00b7\u200b"


def test_real_identifiers_validate() -> None:
    first = LicenceIdentifier.parse(REAL_IDENTIFIERS[0])
    assert first == LicenceIdentifier(
        type_code="11100000000013338W011",
        agency_code="11430000006122244L",
        number="20230000403",
        version=2,
        check="S",
    )
    for text in REAL_IDENTIFIERS + [REAL_DIVISION_CODE_IDENTIFIER]:
        identifier = LicenceIdentifier.parse(text)
        assert str(identifier) == text
        assert identifier.checked_data == "".join(text.split(".")[5:9])


@pytest.mark.parametrize("text", REAL_IDENTIFIERS + [REAL_DIVISION_CODE_IDENTIFIER])
def test_every_single_character_change_is_rejected(text: str) -> None:
    """Root, dots, every field and the check character itself: any change is caught."""
    accepted = []
    for position, original in enumerate(text):
        for replacement in REPLACEMENTS:
            if replacement == original:
                continue
            changed = text[:position] + replacement + text[position + 1 :]
            try:
                LicenceIdentifier.parse(changed)
            except LicenceIdentifierError:
                continue
            accepted.append((position, replacement))
    assert accepted == []


def test_build_reproduces_the_real_check_characters() -> None:
    for text in REAL_IDENTIFIERS:
        parsed = LicenceIdentifier.parse(text)
        built = LicenceIdentifier.build(
            parsed.type_code, parsed.agency_code, parsed.number, parsed.version
        )
        assert built == parsed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "1.2.156.3005.3.11100000000013338W011.11430000006122244L.20230000403.002.S",
            "starts with 1.2.156.3005.2.",
        ),
        (
            "11100000000013338W011.11430000006122244L.20230000403.002.S",
            "starts with 1.2.156.3005.2.",
        ),
        (
            "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.002",
            "has 5 fields after 1.2.156.3005.2",
        ),
        (
            "1.2.156.3005.2.11100000000013338W011.11430000006122244L.2023.0000403.002.S",
            "got 6",
        ),
        (
            "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.002.T",
            "the check character should be S, got T",
        ),
        (
            "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.002.s",
            "character 73 of the identifier (in the check character) is 's'",
        ),
        (
            "1.2.156.3005.2.11100000000013338W011.11430000006122244L.2023000o403.002.S",
            "character 64 of the identifier (in the licence number) is 'o'",
        ),
        (
            "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.000.S",
            "the version is 3 digits from 001 to 999, got '000'",
        ),
        (
            "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.02.S",
            "the version is 3 digits",
        ),
        (
            "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.002.SS",
            "the check character is one character, got 2",
        ),
        (
            "1.2.156.3005.2.11100000000013338W11.11430000006122244L.20230000403.002.S",
            "the type code has 21 characters",
        ),
        (
            "1.2.156.3005.2.11100000000013338X011.11430000006122244L.20230000403.002.S",
            (
                "the type code's defining department: the unified social credit "
                "code's check character should be W, got X"
            ),
        ),
        (
            "1.2.156.3005.2.11100000000013338WABC.11430000006122244L.20230000403.002.S",
            "ends in a 3-digit sequence number",
        ),
        (
            "1.2.156.3005.2.11100000000013338W011.11430000006122244.20230000403.002.S",
            "the agency code is the issuing agency's 18-character",
        ),
        (
            "1.2.156.3005.2.11100000000013338W011.11430000006122244K.20230000403.002.S",
            (
                "the agency code: the unified social credit code's check character "
                "should be L, got K"
            ),
        ),
        (
            "1.2.156.3005.2.11100000MB03271699022.990100.000000016.001.9",
            "the agency code: region code 990100 does not start with a province",
        ),
        (
            "1.2.156.3005.2.11100000000013338W011.11430000006122244L..002.S",
            "the licence number is empty",
        ),
        ("", "the e-licence identifier is empty"),
        ("1.2.156.3005.2." + "1" * 200, "has at most"),
    ],
)
def test_problems_are_named(text: str, reason: str) -> None:
    with pytest.raises(LicenceIdentifierError) as caught:
        LicenceIdentifier.parse(text)
    assert reason in str(caught.value)
    assert caught.value.category is ErrorCategory.BAD_REQUEST
    assert isinstance(caught.value, ValueError)


def test_surrounding_whitespace_is_ignored_when_reading() -> None:
    assert (
        str(LicenceIdentifier.parse(f"  {REAL_IDENTIFIERS[0]}\n"))
        == REAL_IDENTIFIERS[0]
    )


def test_not_a_string_is_refused() -> None:
    with pytest.raises(LicenceIdentifierError, match="is a text string"):
        LicenceIdentifier.parse(b"1.2.156.3005.2")  # type: ignore[arg-type]


def test_construction_checks_the_check_character() -> None:
    with pytest.raises(LicenceIdentifierError, match="should be S, got Q"):
        LicenceIdentifier(
            "11100000000013338W011", "11430000006122244L", "20230000403", 2, "Q"
        )
    with pytest.raises(LicenceIdentifierError, match="from 1 to 999"):
        LicenceIdentifier(
            "11100000000013338W011", "11430000006122244L", "20230000403", 0, "S"
        )
    with pytest.raises(LicenceIdentifierError, match="from 1 to 999"):
        LicenceIdentifier(
            "11100000000013338W011", "11430000006122244L", "20230000403", True, "S"
        )  # type: ignore[arg-type]


def test_build_refuses_what_it_must_not_issue() -> None:
    with pytest.raises(LicenceIdentifierError, match="unified social credit code"):
        LicenceIdentifier.build("11100000MB03271699022", "340100", "000000016", 1)
    with pytest.raises(LicenceIdentifierError, match="from 1 to 999, got 1000"):
        LicenceIdentifier.build(
            "11100000000013338W011", "11430000006122244L", "1", 1000
        )
    with pytest.raises(LicenceIdentifierError, match="1 to 40 characters"):
        LicenceIdentifier.build(
            "11100000000013338W011", "11430000006122244L", "1" * (MAX_NUMBER_LENGTH + 1)
        )
    with pytest.raises(
        LicenceIdentifierError, match="character 3 of the licence number"
    ):
        LicenceIdentifier.build("11100000000013338W011", "11430000006122244L", "20-1")


def test_next_version_links_a_change_or_renewal() -> None:
    first = LicenceIdentifier.build(
        "11100000000013338W011", "11430000006122244L", "20230000403"
    )
    assert first.version == 1
    assert str(first).endswith(".001." + first.check)
    second = first.next_version()
    assert (second.type_code, second.agency_code, second.number) == (
        first.type_code,
        first.agency_code,
        first.number,
    )
    assert second.version == 2
    assert second == LicenceIdentifier.parse(REAL_IDENTIFIERS[0])
    older = LicenceIdentifier.parse(REAL_DIVISION_CODE_IDENTIFIER).next_version()
    assert str(older).startswith(
        f"{IDENTIFIER_ROOT}.11100000MB03271699022.340100.000000016.002."
    )
    last = LicenceIdentifier.build(
        "11100000000013338W011", "11430000006122244L", "1", 999
    )
    with pytest.raises(LicenceIdentifierError, match="version 999 is the last"):
        last.next_version()


def test_check_character_algorithm() -> None:
    # ISO/IEC 7064 MOD 37,36 makes the whole string, check character included, "check" to 1.
    for text in REAL_IDENTIFIERS:
        data = "".join(text.split(".")[5:9])
        assert compute_check_character(data) == text[-1]
    assert compute_check_character("") == CHECK_ALPHABET[1]
    with pytest.raises(LicenceIdentifierError, match="character 2 of the checked data"):
        compute_check_character("A.")


def test_validate_type_code() -> None:
    assert validate_type_code("11100000000013338W011") == "11100000000013338W011"
    with pytest.raises(LicenceIdentifierError, match="21 characters"):
        validate_type_code(11100000000013338)


def _uscc() -> st.SearchStrategy[str]:
    letters = st.sampled_from(USCC_ALPHABET)
    digits = st.sampled_from("0123456789")

    def complete(parts: tuple[str, ...]) -> str:
        body = "".join(parts)
        return body + compute_uscc_check_character(body)

    return st.tuples(letters, letters, *[digits] * 6, *[letters] * 9).map(complete)


_FIELDS = st.tuples(
    _uscc().flatmap(
        lambda code: st.from_regex(r"\A[0-9]{3}\Z").map(lambda seq: code + seq)
    ),
    _uscc(),
    st.text(alphabet=CHECK_ALPHABET, min_size=1, max_size=MAX_NUMBER_LENGTH),
    st.integers(min_value=1, max_value=999),
)


@given(_FIELDS)
@example(("11100000000013338W011", "11430000006122244L", "20230000403", 2))
def test_build_parse_round_trip(fields: tuple[str, str, str, int]) -> None:
    built = LicenceIdentifier.build(*fields)
    text = str(built)
    assert LicenceIdentifier.parse(text) == built
    assert compute_check_character(built.checked_data) == built.check


@given(_FIELDS, st.data())
def test_any_single_substitution_is_rejected(
    fields: tuple[str, str, str, int], data: st.DataObject
) -> None:
    text = str(LicenceIdentifier.build(*fields))
    position = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    replacement = data.draw(
        st.sampled_from(CHECK_ALPHABET + ".-").filter(lambda c: c != text[position])
    )
    changed = text[:position] + replacement + text[position + 1 :]
    with pytest.raises(LicenceIdentifierError):
        LicenceIdentifier.parse(changed)
