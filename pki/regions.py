"""Administrative division codes (行政区划代码, GB/T 2260) that name a region.

Only the shape and the province are checked: six digits whose first two name a
province-level division. The full table has thousands of entries and changes every
year, so a code such as 110105 (Beijing, Chaoyang) is accepted without a table lookup.
"""

from __future__ import annotations

import re

from pki.errors import InvalidRegionCodeError

__all__ = ["PROVINCE_CODES", "validate_region_code"]

# The two-digit province-level prefixes of GB/T 2260 (provinces, autonomous regions,
# municipalities, Taiwan, Hong Kong and Macao).
PROVINCE_CODES = frozenset(
    {
        "11", "12", "13", "14", "15",
        "21", "22", "23",
        "31", "32", "33", "34", "35", "36", "37",
        "41", "42", "43", "44", "45", "46",
        "50", "51", "52", "53", "54",
        "61", "62", "63", "64", "65",
        "71", "81", "82",
    }
)  # fmt: skip

_SIX_DIGITS = re.compile(r"[0-9]{6}")


def validate_region_code(text: str) -> str:
    """The code with surrounding spaces removed, or InvalidRegionCodeError saying why."""
    code = text.strip()
    if not _SIX_DIGITS.fullmatch(code):
        raise InvalidRegionCodeError(
            f"a region code is a 6-digit GB/T 2260 administrative division code "
            f"such as 110000 or 440305, got {code[:20]!r}"
        )
    if code[:2] not in PROVINCE_CODES:
        raise InvalidRegionCodeError(
            f"region code {code} does not start with a province-level code "
            "(11-15, 21-23, 31-37, 41-46, 50-54, 61-65, 71, 81 or 82)"
        )
    return code
