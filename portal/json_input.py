"""JSON from callers, parsed within a depth bound.

Python's json module recurses once per nested array or object: a body of a few
thousand `[` ends in RecursionError (a 500 for anyone who can send a body), and a
merely deep document would make every walk over it recurse as deeply. So the nesting
is measured first, without recursion, and a document nested deeper than any Yinxin
input needs is refused with a clear reason. Sizes are bounded where the text is read.

What parses but no layer below can use is refused as invalid JSON too, not left to
fail later as a 500: a number longer than int()'s digit limit, and a string holding a
NUL (PostgreSQL cannot store it) or a lone UTF-16 surrogate (no UTF-8 encoding).
"""

from __future__ import annotations

import json
import re
from typing import Any

from hsm_sim.errors import ErrorCategory

__all__ = ["MAX_JSON_DEPTH", "JsonTooDeepError", "json_depth_exceeds", "load_json"]

# Licence data, placements and JWKs are two or three levels deep.
MAX_JSON_DEPTH = 32
# A JSON string (its escapes included) or one bracket. Brackets inside strings do not
# nest; in valid JSON this finds the strings exactly as the parser does, and past the
# first invalid character the parser stops anyway.
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


class JsonTooDeepError(ValueError):
    """JSON nested deeper than the caller accepts."""

    category = ErrorCategory.BAD_REQUEST


def json_depth_exceeds(text: str, max_depth: int) -> bool:
    """Whether arrays and objects in `text` nest deeper than `max_depth`."""
    if text.count("[") + text.count("{") <= max_depth:
        return False
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(text):
        token = match[0]
        if token in ("[", "{"):
            depth += 1
            if depth > max_depth:
                return True
        elif token in ("]", "}"):
            depth -= 1
    return False


def _unusable_text(document: Any) -> str | None:
    """What no Yinxin input may hold, if a string (key or value) holds it: a NUL
    (which PostgreSQL cannot store) or a lone UTF-16 surrogate (which is no
    character: encoding it to UTF-8, for a database, a PDF or a token, fails)."""
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str):
            if "\x00" in value:
                return "a string holds a NUL character (\\u0000)"
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    return "a string holds a lone UTF-16 surrogate"
    return None


def load_json(text: str, *, source: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads(text) for text nested at most `max_depth` deep (JsonTooDeepError
    naming `source` otherwise); JSONDecodeError as json.loads raises it, and also for
    a number too long to convert and for strings no Yinxin input may hold."""
    if json_depth_exceeds(text, max_depth):
        raise JsonTooDeepError(
            f"{source} nests arrays or objects deeper than {max_depth} levels"
        )
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError:
        # int()'s digit limit (sys.get_int_max_str_digits): a plain ValueError, which
        # callers that catch JSONDecodeError would let through as a 500.
        raise json.JSONDecodeError("a number has too many digits", text, 0) from None
    problem = _unusable_text(document)
    if problem is not None:
        raise json.JSONDecodeError(problem, text, 0)
    return document
