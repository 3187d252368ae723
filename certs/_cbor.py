"""CBOR decoding with the limits a token verifier needs against hostile input.

cbor2 (6.x) enforces a nesting limit, refuses indefinite lengths and duplicate map
keys when asked. It also turns some tags into Python objects on its own — bignums,
shared references (which can build cycles), sets, regexes, decimals — so every tag it
knows is overridden here: a tag is refused unless the caller allows it, and an
allowed tag yields its plain content. Without bignum tags a CBOR integer has at most
64 bits, so no claim can carry a huge integer.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterable
from typing import Any

import cbor2

__all__ = ["CborError", "CborLimits", "decode_cbor", "encode_cbor"]

# Every tag cbor2 6 decodes by itself (found by probing 0..69999 and the large ones).
_CBOR2_SEMANTIC_TAGS = (
    0, 1, 2, 3, 4, 5, 25, 28, 29, 30, 35, 36, 37, 52, 54, 100, 256, 258, 260, 261,
    1004, 43000, 55799,
)  # fmt: skip


class CborError(ValueError):
    """Bytes that are not CBOR within the limits; the message says why."""


@dataclasses.dataclass(frozen=True)
class CborLimits:
    max_bytes: int = 65536
    max_depth: int = 16


class _TagRefused(Exception):
    def __init__(self, tag: int) -> None:
        super().__init__(tag)
        self.tag = tag


def _refuse(tag: int) -> Callable[[Any, bool], Any]:
    def refuse(value: Any, immutable: bool) -> Any:
        raise _TagRefused(tag)

    return refuse


def _unwrap(value: Any, immutable: bool) -> Any:
    return value


_DECODERS_CACHE: dict[frozenset[int], dict[int, Callable[[Any, bool], Any]]] = {}
_HOOKS_CACHE: dict[frozenset[int], Callable[[cbor2.CBORTag, bool], Any]] = {}


def _semantic_decoders(
    allowed_tags: frozenset[int],
) -> dict[int, Callable[[Any, bool], Any]]:
    decoders = _DECODERS_CACHE.get(allowed_tags)
    if decoders is None:
        decoders = {
            tag: _unwrap if tag in allowed_tags else _refuse(tag)
            for tag in _CBOR2_SEMANTIC_TAGS
        }
        _DECODERS_CACHE[allowed_tags] = decoders
    return decoders


def _tag_hook(allowed_tags: frozenset[int]) -> Callable[[cbor2.CBORTag, bool], Any]:
    hook = _HOOKS_CACHE.get(allowed_tags)
    if hook is None:

        def hook(tag: cbor2.CBORTag, immutable: bool) -> Any:
            if tag.tag in allowed_tags:
                return tag.value
            raise _TagRefused(tag.tag)

        _HOOKS_CACHE[allowed_tags] = hook
    return hook


def decode_cbor(
    data: bytes,
    *,
    limits: CborLimits = CborLimits(),
    allowed_tags: Iterable[int] = (),
) -> Any:
    """The one CBOR item that fills `data`; CborError naming the problem otherwise."""
    if len(data) > limits.max_bytes:
        raise CborError(f"CBOR item is {len(data)} bytes, more than {limits.max_bytes}")
    allowed = frozenset(allowed_tags)
    stream = io.BytesIO(data)
    try:
        item = cbor2.CBORDecoder(
            stream,
            tag_hook=_tag_hook(allowed),
            semantic_decoders=_semantic_decoders(allowed),
            max_depth=limits.max_depth,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        ).decode()
    except cbor2.CBORDecodeError as exc:
        refused = exc.__cause__ if isinstance(exc.__cause__, _TagRefused) else None
        if refused is not None:
            raise CborError(f"CBOR tag {refused.tag} is not allowed here") from None
        raise CborError(f"not well-formed CBOR: {_first_line(exc)}") from None
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        raise CborError(f"not well-formed CBOR: {_first_line(exc)}") from None
    trailing = len(data) - stream.tell()
    if trailing:
        raise CborError(f"{trailing} bytes follow the CBOR item")
    return item


def encode_cbor(value: Any) -> bytes:
    """Deterministic CBOR (RFC 8949 §4.2) of `value`; ValueError if it has no CBOR form."""
    try:
        return cbor2.dumps(value, canonical=True)
    except (cbor2.CBOREncodeError, TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"cannot encode as CBOR: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]
