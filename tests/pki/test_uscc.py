"""Unified social credit codes (GB 32100-2015): real codes pass, every single-character
change fails, and each kind of mistake gets its own one-line reason."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hsm_sim.errors import ErrorCategory
from pki.errors import InvalidUsccError
from pki.uscc import (
    USCC_ALPHABET,
    compute_uscc_check_character,
    normalize_uscc,
    validate_uscc,
)

# Real, published codes, each seen in public documents. The agency codes (11...) are
# the issuers inside real GB/T 36904 licence identifiers (shared/research/license.md).
PUBLISHED_CODES = {
    "11100000000013338W": "the ministry defining construction-safety licence types",
    "11430000006122244L": "a Hunan provincial agency issuing such licences",
    "11370800MB28559184": "a Jining (Shandong) agency issuing such licences",
    "11330105002500287C": "a Hangzhou Gongshu district agency issuing such licences",
    "11140800558745220K": "晋中市文化和旅游局 (Jinzhong culture and tourism bureau)",
    "11410182005291054B": "荥阳市司法局 (Xingyang justice bureau, in a court judgment)",
    "914403001922038216": "华为技术有限公司 (Huawei Technologies Co., Ltd.)",
    "91350100M000100Y43": "the worked example of GB 32100-2015",
}

WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

# A code's first 17 characters: authority and category (any alphabet character),
# six digits of administrative division, nine of organisation code.
bodies = st.builds(
    lambda head, division, organisation: head + division + organisation,
    st.text(USCC_ALPHABET, min_size=2, max_size=2),
    st.text("0123456789", min_size=6, max_size=6),
    st.text(USCC_ALPHABET, min_size=9, max_size=9),
)


@pytest.mark.parametrize("code", sorted(PUBLISHED_CODES))
def test_published_codes_are_valid(code: str):
    assert validate_uscc(code) == code


def test_the_weights_are_powers_of_three_mod_31():
    assert WEIGHTS == tuple(pow(3, i, 31) for i in range(17))


def test_mod_31_changes_the_check_character_for_every_single_substitution():
    """The proof, exhaustively: a substitution at position i changes the weighted sum by
    w_i * d with 1 <= |d| <= 30. Since 31 is prime and no w_i is a multiple of 31, that is
    never 0 mod 31, so the check character always changes."""
    for weight in WEIGHTS:
        for difference in range(1, 31):
            assert (weight * difference) % 31 != 0
            assert (weight * -difference) % 31 != 0


@given(bodies)
@example("91350100M000100Y4")
def test_a_code_with_its_check_character_validates(body: str):
    code = body + compute_uscc_check_character(body)
    assert validate_uscc(code) == code


@given(bodies, st.integers(0, 17), st.integers(1, 30))
@example("91350100M000100Y4", 17, 1)
@example("91350100M000100Y4", 0, 30)
def test_any_single_character_change_is_rejected(body: str, position: int, shift: int):
    code = body + compute_uscc_check_character(body)
    replacement = USCC_ALPHABET[(USCC_ALPHABET.index(code[position]) + shift) % 31]
    changed = code[:position] + replacement + code[position + 1 :]
    assert changed != code
    with pytest.raises(InvalidUsccError):
        validate_uscc(changed)


def test_input_is_normalised():
    assert normalize_uscc(" 9135 0100m000100y43\u3000") == "91350100M000100Y43"
    assert validate_uscc("９１３５０１００Ｍ０００１００Ｙ４３") == "91350100M000100Y43"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "the unified social credit code is empty"),
        ("91350100M000100Y4", "a unified social credit code has 18 characters, got 17"),
        ("91350100M000100Y433", "a unified social credit code has 18 characters, got 19"),
        (
            "91350100M0001O0Y43",
            "character 14 of the unified social credit code is 'O', which is not allowed "
            "(use 0-9 and A-Z except I, O, S, V and Z)",
        ),
        (
            "91350100M000100Y4-",
            "character 18 of the unified social credit code is '-', which is not allowed "
            "(use 0-9 and A-Z except I, O, S, V and Z)",
        ),
        (
            "9135A100M000100Y43",
            "characters 3-8 of a unified social credit code are the administrative "
            "division code and must be digits; character 5 is 'A'",
        ),
        (
            "91350100M000100Y44",
            "the unified social credit code's check character should be 3, got 4",
        ),
    ],
)
def test_each_mistake_has_a_clear_reason(text: str, message: str):
    with pytest.raises(InvalidUsccError) as caught:
        validate_uscc(text)
    assert str(caught.value) == message
    assert caught.value.category is ErrorCategory.BAD_REQUEST


def test_a_check_character_of_zero_comes_from_a_remainder_of_zero():
    """31 - 0 = 31 wraps to 0: find a body whose weighted sum is a multiple of 31."""
    body = "11000000000000000"  # 1*1 + 1*3 = 4; adjust with the last position (weight 28)
    total = 4
    for value in range(31):
        candidate = body[:-1] + USCC_ALPHABET[value]
        if (total + value * 28) % 31 == 0:
            break
    assert compute_uscc_check_character(candidate) == "0"
    assert validate_uscc(candidate + "0") == candidate + "0"
