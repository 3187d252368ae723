"""Stamping options as people give them — `yinxin seal stamp` flags or the API's form
fields — checked and turned into a `seal.StampRequest`, with one line for anything wrong.

Placements in JSON (the API's `placement` field), one object or a list of them:

    {"page": 1, "x_mm": 150, "y_mm": 240}          the seal's centre, mm from top-left
    {"keyword": "盖章处", "occurrence": "last"}     first (default), last, all or N

The first placement carries the signature's visible appearance; the others are drawn
into the pages under the same signature.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from hsm_sim.errors import ErrorCategory
from portal.json_input import load_json
from seal.stamping import At, Level, OnKeyword, Placement, SeamSeal, Side, StampRequest

__all__ = [
    "DEFAULT_SEAM_PAGES",
    "MAX_KEYWORD_LENGTH",
    "MAX_PLACEMENTS",
    "MAX_PLACEMENT_JSON",
    "MAX_SEAM_PAGES",
    "StampOptionError",
    "build_stamp_request",
    "parse_flag",
    "parse_level",
    "parse_occurrence",
    "parse_seam",
    "placements_from_json",
]

MAX_PLACEMENTS = 50
MAX_KEYWORD_LENGTH = 100
MAX_PLACEMENT_JSON = 16 * 1024
DEFAULT_SEAM_PAGES = SeamSeal().pages_per_image
MAX_SEAM_PAGES = 200
# Larger than any page a PDF allows (14,400 pt is 5 m): a sanity bound, the stamper
# checks the real page size.
_MAX_MM = 5080.0
_AT_KEYS = frozenset({"page", "x_mm", "y_mm"})
_KEYWORD_KEYS = frozenset({"keyword", "occurrence"})
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


class StampOptionError(ValueError):
    """A stamping option that cannot be used as given."""

    category = ErrorCategory.BAD_REQUEST


def parse_level(text: str) -> Level:
    """B-B, B-T, B-LT or B-LTA (also `lt`, `b_lta`)."""
    try:
        return Level.parse(text)
    except ValueError as exc:
        raise StampOptionError(str(exc)[:200]) from None


def parse_occurrence(value: str | int) -> str | int:
    """first, last, all, or a number counted from 1."""
    if isinstance(value, bool):
        raise StampOptionError("the occurrence must be first, last, all or a number")
    if isinstance(value, int):
        number = value
    else:
        text = value.strip().lower()
        if text in ("first", "last", "all"):
            return text
        if not text.isdigit() or len(text) > 6:
            raise StampOptionError(
                f"the occurrence must be first, last, all or a number, not {value[:20]!r}"
            )
        number = int(text)
    if number < 1:
        raise StampOptionError("keyword occurrences are counted from 1")
    return number


def parse_flag(text: str, name: str) -> bool:
    """A yes/no form field: true/false, 1/0, yes/no, on/off (empty: false)."""
    wanted = text.strip().lower()
    if wanted in _TRUE:
        return True
    if wanted in _FALSE:
        return False
    raise StampOptionError(f"{name} must be true or false, not {text[:20]!r}")


def parse_seam(text: str) -> Side | None:
    """The API's `seam` field: false (none), true or right, left."""
    wanted = text.strip().lower()
    if wanted in (side.value for side in Side):
        return Side(wanted)
    try:
        return Side.RIGHT if parse_flag(wanted, "seam") else None
    except StampOptionError:
        raise StampOptionError(
            f"seam must be false, true, right or left, not {text[:20]!r}"
        ) from None


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise StampOptionError(f"{name} must be a number of millimetres")
    number = float(value)
    if not math.isfinite(number) or not 0 <= number <= _MAX_MM:
        raise StampOptionError(f"{name} must be between 0 and {_MAX_MM:g} mm")
    return number


def _placement(item: Any, position: int) -> Placement:
    where = f"placement {position}"
    if not isinstance(item, dict):
        raise StampOptionError(
            f"{where} must be an object: {{page, x_mm, y_mm}} or {{keyword, occurrence}}"
        )
    keys = set(item)
    if "keyword" in keys:
        unknown = keys - _KEYWORD_KEYS
        if unknown:
            raise StampOptionError(
                f"{where}: unknown field(s) {', '.join(sorted(unknown))[:80]} next to keyword"
            )
        keyword = item["keyword"]
        if not isinstance(keyword, str) or not keyword.strip():
            raise StampOptionError(f"{where}: keyword must be non-empty text")
        if len(keyword) > MAX_KEYWORD_LENGTH:
            raise StampOptionError(
                f"{where}: keyword has more than {MAX_KEYWORD_LENGTH} characters"
            )
        return OnKeyword(keyword, parse_occurrence(item.get("occurrence", "first")))
    if keys != _AT_KEYS:
        missing = _AT_KEYS - keys
        detail = (
            f"missing {', '.join(sorted(missing))}"
            if missing
            else f"unknown field(s) {', '.join(sorted(keys - _AT_KEYS))[:80]}"
        )
        raise StampOptionError(
            f"{where} needs exactly page, x_mm and y_mm (or keyword): {detail}"
        )
    page = item["page"]
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise StampOptionError(f"{where}: page must be a whole number from 1")
    return At(page, _number(item["x_mm"], "x_mm"), _number(item["y_mm"], "y_mm"))


def placements_from_json(text: str) -> tuple[Placement, ...]:
    """Placements from JSON: one object or a list of up to MAX_PLACEMENTS."""
    if len(text) > MAX_PLACEMENT_JSON:
        raise StampOptionError(
            f"placement is longer than {MAX_PLACEMENT_JSON} characters"
        )
    try:
        value = load_json(text, source="placement")
    except json.JSONDecodeError:
        raise StampOptionError("placement is not valid JSON") from None
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_PLACEMENTS:
        raise StampOptionError(f"at most {MAX_PLACEMENTS} placements in one stamping")
    return tuple(_placement(item, index) for index, item in enumerate(items, start=1))


def build_stamp_request(
    placements: Sequence[Placement],
    *,
    seam: Side | None = None,
    seam_pages: int = DEFAULT_SEAM_PAGES,
    level: Level = Level.B_LT,
    certify: bool = False,
) -> StampRequest:
    """The stamp request; no placement and no seam seal makes an invisible seal."""
    if len(placements) > MAX_PLACEMENTS:
        raise StampOptionError(f"at most {MAX_PLACEMENTS} placements in one stamping")
    if not 2 <= seam_pages <= MAX_SEAM_PAGES:
        raise StampOptionError(
            f"a seam seal spans 2 to {MAX_SEAM_PAGES} pages per seal image"
        )
    return StampRequest(
        placements=tuple(placements),
        seam=SeamSeal(side=seam, pages_per_image=seam_pages)
        if seam is not None
        else None,
        level=level,
        certify=certify,
    )
