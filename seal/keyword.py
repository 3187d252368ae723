"""Find text on PDF pages, for placing a seal on a keyword such as 盖章处.

pyHanko has no text extraction, so pdfminer.six reads the glyphs. Each page is
interpreted with the identity matrix, so positions come out in the page's default
user space (the space of /MediaBox and annotation /Rect), whatever the page's
/Rotate: the stamper turns them into a placement itself.

Whitespace is ignored on both sides, so "盖 章 处" on the page matches "盖章处".

The documents are agencies' uploads, so the search is bounded (`SearchLimits`): it
runs in a child process (seal/_keyword_search.py) whose address space and CPU time are
capped and which is killed when its wall-clock budget is spent; inside it, every
stream pdfminer decodes is bounded like verification's (seal.verify.VerifyLimits), and
at most `max_pages` pages are read. Starting the process costs about 0.1 s.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import subprocess
import sys
from collections.abc import Collection
from pathlib import Path

from seal import _keyword_search as child
from seal.errors import StampError
from seal.verify import VerifyLimits

__all__ = ["SearchLimits", "TextMatch", "find_text"]

_LOG = logging.getLogger(__name__)
MiB = 1024 * 1024
_SEARCH_SCRIPT = Path(child.__file__)


@dataclasses.dataclass(frozen=True)
class SearchLimits:
    """Bounds on the work one keyword search may do.

    The stream bounds and the time budget are verification's: a document that can be
    verified can be searched."""

    max_pages: int = 1000
    max_stream_bytes: int = VerifyLimits.max_stream_bytes  # one decoded stream
    max_decoded_bytes: int = VerifyLimits.max_decoded_bytes  # all decoding
    max_memory_bytes: int = 768 * MiB  # the search process's address space
    time_budget_seconds: float = VerifyLimits.time_budget_seconds

    def __post_init__(self) -> None:
        for name in (
            "max_pages",
            "max_stream_bytes",
            "max_decoded_bytes",
            "max_memory_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer")
        seconds = self.time_budget_seconds
        if (
            not isinstance(seconds, (int, float))
            or isinstance(seconds, bool)
            or not seconds > 0
        ):
            raise ValueError("time_budget_seconds must be a positive number of seconds")


@dataclasses.dataclass(frozen=True)
class TextMatch:
    """One occurrence of the text: its page (0-based) and box in default user space."""

    page_index: int
    box: tuple[float, float, float, float]  # x0, y0, x1, y1

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2


def _size(count: int) -> str:
    return f"{count / MiB:g} MiB" if count >= MiB else f"{count} bytes"


def find_text(
    pdf: bytes,
    text: str,
    *,
    page_indexes: Collection[int] | None = None,
    limits: SearchLimits = SearchLimits(),
) -> list[TextMatch]:
    """Every occurrence of `text`, in page order and reading order within a page.

    `page_indexes` (0-based) limits the search. StampError if the text is empty, the
    document's text cannot be read, or reading it would go beyond `limits`.
    """
    wanted = child.squeeze(text)
    if not wanted:
        raise StampError("the keyword to place the seal on is empty")
    request = {
        "text": wanted,
        "page_indexes": sorted(page_indexes) if page_indexes is not None else None,
        "max_pages": limits.max_pages,
        "max_stream_bytes": limits.max_stream_bytes,
        "max_decoded_bytes": limits.max_decoded_bytes,
        "max_memory_bytes": limits.max_memory_bytes,
        "time_budget_seconds": limits.time_budget_seconds,
    }
    too_long = StampError(
        "searching the document for the keyword took too long"
        f" (over {limits.time_budget_seconds:g} s)"
    )
    try:
        finished = subprocess.run(
            [sys.executable, "-I", str(_SEARCH_SCRIPT), json.dumps(request)],
            input=bytes(pdf),
            capture_output=True,
            timeout=limits.time_budget_seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise too_long from None
    except OSError as exc:
        _LOG.error("the keyword search process could not be started: %s", exc)
        raise StampError("the keyword search is not available on this node") from None
    if finished.returncode == -signal.SIGXCPU:
        raise too_long
    try:
        answer = json.loads(finished.stdout)
    except ValueError:
        answer = None
    if finished.returncode != 0 or not isinstance(answer, dict):
        # Its stderr is not logged: pdfminer's warnings quote the document.
        _LOG.warning(
            "the keyword search process ended with status %s", finished.returncode
        )
        raise StampError("could not search the text of the document for the keyword")
    if "unreadable" in answer:
        page_index = answer["unreadable"]
        where = f"page {page_index + 1}" if page_index >= 0 else "the document"
        raise StampError(f"could not read the text of {where} to find the keyword")
    refused = answer.get("refused")
    if refused == child.STREAM_TOO_LARGE:
        raise StampError(
            f"a stream in the document expands beyond {_size(limits.max_stream_bytes)};"
            " its text cannot be searched for the keyword"
        )
    if refused == child.DECODED_TOO_MUCH:
        raise StampError(
            f"the document's streams expand beyond {_size(limits.max_decoded_bytes)}"
            " in all; its text cannot be searched for the keyword"
        )
    if refused == child.TOO_MANY_PAGES:
        raise StampError(
            f"the keyword search reads at most {limits.max_pages} pages; place the seal"
            " by page and position in this document"
        )
    if refused == child.OUT_OF_MEMORY:
        raise StampError(
            "searching the document for the keyword needs more than"
            f" {_size(limits.max_memory_bytes)} of memory; place the seal by page and"
            " position in this document"
        )
    return [
        TextMatch(page_index=int(page), box=(x0, y0, x1, y1))
        for page, x0, y0, x1, y1 in answer["matches"]
    ]
