"""What of a request URL may be written to a log.

A request line is personal data as soon as a query names a holder
(`GET /api/v1/licenses?holder=<ID number>`), and a usage code in a path
(`GET /api/v1/licenses/by-code/<code>`) is a bearer secret: whoever reads it fetches
the licence while the code lasts. Logs are kept for a long time and read by many, so
neither may land there: logs get paths without their query string, and `<code>` in
place of a usage code.
"""

from __future__ import annotations

import re

__all__ = ["loggable_path"]

# The usage code after `by-code/`, however the path was spelled on the wire.
_USAGE_CODE = re.compile(r"(by-code/+)[^/]+", re.IGNORECASE)


def loggable_path(path: str) -> str:
    """`path` (or a whole URL) as logs may show it: no query or fragment, no usage
    code."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    return _USAGE_CODE.sub(r"\1<code>", path)
