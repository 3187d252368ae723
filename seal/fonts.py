"""The CJK TrueType font that seal inscriptions are set in.

The rules for seals ask for Song type (宋体). AR PL UMing (Debian fonts-arphic-uming) is
a free Song face with glyf outlines, which reportlab can subset and embed; Noto CJK is
CFF-based and reportlab cannot embed it. WenQuanYi Zen Hei (a Hei face, Debian
fonts-wqy-zenhei) is the fallback. `YINXIN_SEAL_FONT` names any other TrueType file.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import ImageFont
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont

from hsm_sim.errors import ErrorCategory
from seal.errors import SealError

__all__ = [
    "SEAL_FONT_ENV",
    "SealFont",
    "SealFontUnavailableError",
    "load_seal_font",
]

SEAL_FONT_ENV = "YINXIN_SEAL_FONT"
UMING_PATH = Path("/usr/share/fonts/truetype/arphic/uming.ttc")
ZENHEI_PATH = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")

_log = logging.getLogger(__name__)


class SealFontUnavailableError(SealError):
    """No usable seal font: the operator must install one or point the config at one."""

    category = ErrorCategory.UNAVAILABLE


@dataclass(frozen=True)
class SealFont:
    """A loaded seal font: registered with reportlab, openable by Pillow.

    `em_centre` is the height of the em box's middle above the baseline and
    `digit_height` the ink height of the digits, both as fractions of the font size:
    glyphs are placed by their centre, and the invoice rules give digit heights in ink.
    """

    path: Path
    family: str
    reportlab_name: str
    em_centre: float
    digit_height: float
    _code_points: frozenset[int] = field(repr=False, compare=False)
    _advances: dict[int, float] = field(repr=False, compare=False)

    def missing_characters(self, text: str) -> list[str]:
        """The distinct characters of `text` the font has no glyph for, in order."""
        missing: list[str] = []
        for char in text:
            if ord(char) not in self._code_points and char not in missing:
                missing.append(char)
        return missing

    def advance(self, char: str) -> float:
        """Advance width of `char` as a fraction of the font size."""
        return self._advances.get(ord(char), 1.0)

    def pillow_font(self, size_px: int) -> ImageFont.FreeTypeFont:
        return _pillow_font(str(self.path), size_px)


@functools.lru_cache(maxsize=32)
def _pillow_font(path: str, size_px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size_px, index=0)


def load_seal_font(path: str | os.PathLike[str] | None = None) -> SealFont:
    """The seal font at `path`, else `$YINXIN_SEAL_FONT`, else UMing, else Zen Hei."""
    if path is not None:
        return _load(Path(path).resolve())
    configured = os.environ.get(SEAL_FONT_ENV)
    if configured:
        candidate = Path(configured)
        if not candidate.is_file():
            raise SealFontUnavailableError(
                f"{SEAL_FONT_ENV} names {configured}, which is not a file"
            )
        return _load(candidate.resolve())
    if UMING_PATH.is_file():
        return _load(UMING_PATH)
    if ZENHEI_PATH.is_file():
        _log.warning(
            "seal font AR PL UMing (Debian fonts-arphic-uming) is missing; "
            "using WenQuanYi Zen Hei, a Hei face where the rules ask for Song"
        )
        return _load(ZENHEI_PATH)
    raise SealFontUnavailableError(
        "no seal font: install the Debian package fonts-arphic-uming (AR PL UMing, "
        f"a Song face) or set {SEAL_FONT_ENV} to a TrueType CJK font file"
    )


@functools.lru_cache(maxsize=4)
def _load(path: Path) -> SealFont:
    if not path.is_file():
        raise SealFontUnavailableError(f"seal font {path} is not a file")
    # One reportlab registration per file; the name only has to be unique and stable.
    reportlab_name = "YinxinSeal-" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    try:
        font = TTFont(reportlab_name, str(path), subfontIndex=0)
    except TTFError as exc:
        raise SealFontUnavailableError(
            f"seal font {path} cannot be embedded: {exc} "
            "(a TrueType font with glyf outlines is needed; CFF/OpenType-PS is not)"
        ) from exc
    pdfmetrics.registerFont(font)
    face = font.face
    code_points = frozenset(face.charToGlyph)
    advances = {
        cp: face.getCharWidth(cp) / 1000.0 for cp in _digits_and_latin(code_points)
    }
    return SealFont(
        path=path,
        family=face.name.decode("latin-1")
        if isinstance(face.name, bytes)
        else str(face.name),
        reportlab_name=reportlab_name,
        em_centre=(face.ascent + face.descent) / 2000.0,
        digit_height=_digit_ink_height(path),
        _code_points=code_points,
        _advances=advances,
    )


def _digits_and_latin(code_points: Iterable[int]) -> list[int]:
    # CJK glyphs are all one em wide; only the narrow ones need their advance looked up.
    return [cp for cp in code_points if cp < 0x3000]


def _digit_ink_height(path: Path) -> float:
    probe_size = 1000
    bbox = _pillow_font(str(path), probe_size).getbbox("0123456789", anchor="ls")
    return (bbox[3] - bbox[1]) / probe_size
