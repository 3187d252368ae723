"""GB/T 38540-2020 seal data (电子印章数据) and signature data (电子签章数据).

Reads GM/T 0031-2014 ("v1"), GB/T 38540-2020 ("v4") and ofdrw's "v5" variant leniently;
writes GB/T 38540-2020 version 4 only, in DER. The model below does not depend on
asn1crypto; the ASN.1 lives in `seal._ses_asn1`.

    der = build_seal(info, maker_certificate=cert_der, sign=maker_sign)
    seal = parse_seal(der)
    check = verify_seal(seal)     # check.maker_signature_ok, check.reason

What the maker signs was settled on the real files in shared/vectors/ses: DER(SES_SealInfo)
in GB/T 38540 seals, SEQUENCE { SES_SealInfo, cert, signatureAlgorithm } in GM/T 0031
seals; the signer of an SES_Signature signs DER(TBS_Sign).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import enum
import re
from collections.abc import Callable, Iterator
from typing import Any

from asn1crypto import core
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from hsm_sim.errors import ErrorCategory
from seal import _ses_asn1 as asn1
from seal._sm2 import SM2_CURVE_OID, verify_sm2_signature

__all__ = [
    "ECDSA_WITH_SHA256",
    "ECDSA_WITH_SHA384",
    "MAX_DATA_BYTES",
    "SM2_WITH_SM3",
    "CertDigest",
    "CertListType",
    "ExtData",
    "SealCheck",
    "SealData",
    "SealDataError",
    "SealInfo",
    "SealPicture",
    "SealSigningError",
    "SignatureCheck",
    "SignatureData",
    "build_seal",
    "describe_seal",
    "describe_signature",
    "encode_seal",
    "encode_seal_info",
    "parse_seal",
    "parse_signature",
    "verify_seal",
    "verify_signature",
]

MAX_DATA_BYTES = 4 * 1024 * 1024
# The deepest real structure (SES_Signature > TBS_Sign > SESeal > SES_SealInfo >
# SES_ESPropertyInfo > SES_CertList > OCTET STRING) is 7 levels; anything far deeper is hostile.
_MAX_DEPTH = 16
_MAX_LIST_ENTRIES = 256
_MAX_STRING_PIECES = 8192

SM2_WITH_SM3 = "1.2.156.10197.1.501"
ECDSA_WITH_SHA256 = "1.2.840.10045.4.3.2"
ECDSA_WITH_SHA384 = "1.2.840.10045.4.3.3"
_ALGORITHM_NAMES = {
    SM2_WITH_SM3: "sm2-with-sm3",
    ECDSA_WITH_SHA256: "ecdsa-with-sha256",
    ECDSA_WITH_SHA384: "ecdsa-with-sha384",
}
_ECDSA_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    ECDSA_WITH_SHA256: hashes.SHA256,
    ECDSA_WITH_SHA384: hashes.SHA384,
}
_SEAL_VERSION_WRITTEN = 4
_LAYOUT_38540_VERSIONS = frozenset({4, 5})

# What asn1crypto and the decoders raise on malformed input.
_PARSE_FAILURES = (ValueError, TypeError, KeyError, IndexError, OverflowError)
# What cryptography raises on a certificate it cannot read or a key it cannot use.
_CERTIFICATE_FAILURES = (ValueError, x509.InvalidVersion, UnsupportedAlgorithm)


class SealDataError(ValueError):
    """Seal or signature data that cannot be read, or seal content that cannot be written."""

    category = ErrorCategory.BAD_REQUEST


class SealSigningError(Exception):
    """The signing callable returned no usable signature for the maker certificate."""

    category = ErrorCategory.INTERNAL


class CertListType(enum.IntEnum):
    """certListType of SES_ESPropertyInfo."""

    CERTIFICATES = 1
    DIGESTS = 2


@dataclasses.dataclass(frozen=True)
class CertDigest:
    """One entry of a certificate digest list: a free-form digest type and the value."""

    digest_type: str
    value: bytes


@dataclasses.dataclass(frozen=True)
class ExtData:
    """A vendor extension (ExtData): OID, criticality, raw value."""

    extn_id: str
    value: bytes
    critical: bool = False


@dataclasses.dataclass(frozen=True)
class SealPicture:
    """SES_ESPictrueInfo: image type ("PNG", "SVG", ...), its bytes, display size in mm."""

    image_type: str
    data: bytes
    width_mm: int
    height_mm: int


@dataclasses.dataclass(frozen=True)
class SealInfo:
    """SES_SealInfo: everything the seal maker signs."""

    es_id: str
    name: str
    seal_type: int
    vendor_id: str
    created: dt.datetime
    valid_start: dt.datetime
    valid_end: dt.datetime
    picture: SealPicture
    cert_list_type: CertListType = CertListType.CERTIFICATES
    certificates: tuple[bytes, ...] = ()
    cert_digests: tuple[CertDigest, ...] = ()
    ext_datas: tuple[ExtData, ...] = ()
    version: int = _SEAL_VERSION_WRITTEN


@dataclasses.dataclass(frozen=True)
class SealData:
    """An electronic seal (SESeal) as read from its encoding."""

    info: SealInfo
    maker_certificate: bytes
    signature_algorithm: str
    signature: bytes
    timestamp: bytes | None = None
    # The exact bytes the maker signed, as found in the file (a lenient reader must not
    # verify a re-encoding). Not part of equality: it is determined by the fields above
    # for every DER file.
    signed_content: bytes = dataclasses.field(default=b"", compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class SignatureData:
    """An electronic signature (SES_Signature): a seal applied to some data."""

    version: int
    seal: SealData
    signed_at: dt.datetime | None
    data_hash: bytes
    property_info: str
    signer_certificate: bytes
    signature_algorithm: str
    signature: bytes
    timestamp: bytes | None = None
    ext_datas: tuple[ExtData, ...] = ()
    signed_content: bytes = dataclasses.field(default=b"", compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class SealCheck:
    """Result of checking a seal's maker signature."""

    maker_signature_ok: bool
    algorithm: str
    maker_subject: str | None
    validity: tuple[dt.datetime, dt.datetime]
    reason: str


@dataclasses.dataclass(frozen=True)
class SignatureCheck:
    """Result of checking an SES_Signature and the seal inside it (not the signed data)."""

    signature_ok: bool
    algorithm: str
    signer_subject: str | None
    signer_listed: bool
    signed_within_validity: bool
    seal: SealCheck
    reason: str

    @property
    def ok(self) -> bool:
        return (
            self.signature_ok
            and self.signer_listed
            and self.signed_within_validity
            and self.seal.maker_signature_ok
        )


# --------------------------------------------------------------------------- reading


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    line = line.replace("seal._ses_asn1.", "").replace("asn1crypto.core.", "")
    return line if len(line) <= 160 else line[:157] + "..."


@contextlib.contextmanager
def _reading(where: str) -> Iterator[None]:
    """Turn whatever the ASN.1 layer raises while reading `where` into a SealDataError."""
    try:
        yield
    except SealDataError:
        raise
    except _PARSE_FAILURES as exc:
        raise SealDataError(f"malformed {where}: {_first_line(exc)}") from None


def _read_header(data: bytes, pos: int, end: int) -> tuple[bool, int | None, int]:
    """(constructed, content length or None for indefinite, header length) at `pos`."""
    if pos >= end:
        raise SealDataError("truncated data: an element is cut off")
    first = data[pos]
    index = pos + 1
    if first & 0x1F == 0x1F:  # high tag number: base-128 digits, last one below 0x80
        for _ in range(4):
            if index >= end:
                raise SealDataError("truncated data: an element tag is cut off")
            index += 1
            if data[index - 1] & 0x80 == 0:
                break
        else:
            raise SealDataError("unsupported data: an element tag is too long")
    if index >= end:
        raise SealDataError("truncated data: an element length is cut off")
    length_byte = data[index]
    index += 1
    if length_byte < 0x80:
        return bool(first & 0x20), length_byte, index - pos
    if length_byte == 0x80:
        return bool(first & 0x20), None, index - pos
    count = length_byte & 0x7F
    if count > 4 or index + count > end:
        raise SealDataError("malformed data: an element length is invalid")
    length = int.from_bytes(data[index : index + count], "big")
    return bool(first & 0x20), length, index + count - pos


def _check_shape(data: bytes) -> None:
    """Walk every element header without recursion: one element filling `data`, nesting
    at most _MAX_DEPTH deep, every length inside its parent, no SEQUENCE or SET of more
    than _MAX_LIST_ENTRIES items (a BER constructed string of no more than
    _MAX_STRING_PIECES pieces). This bounds what the ASN.1 layer (which recurses on
    indefinite lengths, and builds an object of hundreds of bytes per item, so that
    millions of two-byte items take seconds and hundreds of MB) is ever handed."""
    size = len(data)
    open_ends: list[
        int | None
    ] = []  # end of each open constructed element; None = indefinite
    items: list[int] = []  # items left for each open constructed element
    pos = 0
    seen_top = False
    while True:
        while open_ends and open_ends[-1] is not None and pos == open_ends[-1]:
            open_ends.pop()
            items.pop()
        if not open_ends:
            if seen_top:
                if pos != size:
                    raise SealDataError(
                        "malformed data: bytes after the end of the structure"
                    )
                return
            seen_top = True
        limit = size
        for end in reversed(open_ends):
            if end is not None:
                limit = end
                break
        if open_ends and open_ends[-1] is None and data[pos : pos + 2] == b"\x00\x00":
            open_ends.pop()
            items.pop()
            pos += 2
            continue
        if items:
            items[-1] -= 1
            if items[-1] < 0:
                raise SealDataError("unsupported data: an element has too many items")
        constructed, length, header = _read_header(data, pos, limit)
        if length is not None and pos + header + length > limit:
            raise SealDataError(
                "truncated data: an element is longer than what holds it"
            )
        if not constructed:
            if length is None:
                raise SealDataError("malformed data: a primitive element has no length")
            pos += header + length
            continue
        if len(open_ends) >= _MAX_DEPTH:
            raise SealDataError("unsupported data: the structure is nested too deeply")
        open_ends.append(None if length is None else pos + header + length)
        # A universal constructed element other than SEQUENCE (16) or SET (17) is a
        # BER string in pieces (writers cut them at 1000 bytes: up to ~4200 here).
        first = data[pos]
        is_string = first & 0xC0 == 0 and first & 0x1F not in (0x10, 0x11)
        items.append(_MAX_STRING_PIECES if is_string else _MAX_LIST_ENTRIES)
        pos += header


def _check_input(der: object, what: str) -> bytes:
    if not isinstance(der, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be bytes, not {type(der).__name__}")
    data = bytes(der)
    if not data:
        raise SealDataError(f"empty {what}")
    if len(data) > MAX_DATA_BYTES:
        raise SealDataError(
            f"{what} is larger than {MAX_DATA_BYTES // (1024 * 1024)} MiB"
        )
    _check_shape(data)
    return data


def _element_count(data: bytes, what: str) -> int:
    with _reading(what):
        outer = core.Sequence.load(data, strict=True)
        return len(outer)


def _text(value: core.Asn1Value) -> str:
    # IA5String is ASCII, but vendors write other text into it: read it as UTF-8 (an
    # ASCII superset), refuse bytes that are not text at all.
    try:
        return value.contents.decode("utf-8")
    except UnicodeDecodeError:
        raise SealDataError("a text field is not valid UTF-8") from None


def _time(choice: asn1.SesTime, field: str) -> dt.datetime:
    with _reading(field):
        moment = choice.chosen.native
    if not isinstance(moment, dt.datetime) or moment.tzinfo is None:
        raise SealDataError(f"malformed {field}: the time has no time zone")
    return moment.astimezone(dt.UTC)


def _octets(choice: asn1.BitsOrOctets, field: str) -> bytes:
    with _reading(field):
        value = choice.chosen.native
    if not isinstance(value, bytes):
        raise SealDataError(f"malformed {field}: not a byte string")
    return value


def _integer(value: core.Integer, field: str) -> int:
    # Every INTEGER of these structures is small; one of thousands of digits cannot be
    # shown (Python refuses to turn it into text) and breaks whatever reports the seal.
    with _reading(field):
        number = value.native
    if not isinstance(number, int) or not -(2**63) <= number < 2**63:
        raise SealDataError(f"unsupported {field}: the integer is out of range")
    return number


def _optional_octets(value: core.Asn1Value, field: str) -> bytes | None:
    if isinstance(value, core.Void):
        return None
    return _octets(value, field)


def _bounded(items: core.SequenceOf, field: str) -> list[Any]:
    if len(items) > _MAX_LIST_ENTRIES:
        raise SealDataError(
            f"unsupported {field}: more than {_MAX_LIST_ENTRIES} entries"
        )
    return list(items)


def _ext_datas(value: core.Asn1Value, field: str) -> tuple[ExtData, ...]:
    if isinstance(value, core.Void):
        return ()
    with _reading(field):
        return tuple(
            ExtData(
                extn_id=entry["extn_id"].dotted,
                value=entry["extn_value"].native,
                critical=bool(entry["critical"].native),
            )
            for entry in _bounded(value, field)
        )


def _picture(value: asn1.SesPictureInfo) -> SealPicture:
    with _reading("SES_ESPictrueInfo"):
        return SealPicture(
            image_type=_text(value["type"]),
            data=value["data"].native,
            width_mm=_integer(value["width"], "width"),
            height_mm=_integer(value["height"], "height"),
        )


def _cert_list(
    list_type: int, value: core.Any
) -> tuple[tuple[bytes, ...], tuple[CertDigest, ...]]:
    with _reading("SES_CertList"):
        if list_type == CertListType.CERTIFICATES:
            certs = value.parse(asn1.CertInfoList)
            return tuple(c.native for c in _bounded(certs, "SES_CertList")), ()
        if list_type == CertListType.DIGESTS:
            digests = value.parse(asn1.CertDigestList)
            return (), tuple(
                CertDigest(digest_type=_text(d["type"]), value=d["value"].native)
                for d in _bounded(digests, "SES_CertList")
            )
    raise SealDataError(f"unsupported certListType {list_type}: expected 1 or 2")


def _seal_info(value: core.Sequence, *, layout_v1: bool) -> SealInfo:
    with _reading("SES_Header"):
        header = value["header"]
        if _text(header["id"]) != "ES":
            raise SealDataError('malformed SES_Header: the id is not "ES"')
        version = _integer(header["version"], "version")
        vendor_id = _text(header["vid"])
    with _reading("SES_SealInfo"):
        es_id = _text(value["es_id"])
        prop = value["property"]
        picture_value = value["picture"]
        ext_value = value["ext_datas"]
    with _reading("SES_ESPropertyInfo"):
        seal_type = _integer(prop["type"], "type")
        name = prop["name"].native
        if layout_v1:
            list_type = CertListType.CERTIFICATES
            certificates: tuple[bytes, ...] = tuple(
                c.native for c in _bounded(prop["cert_list"], "certList")
            )
            digests: tuple[CertDigest, ...] = ()
        else:
            raw_type = prop["cert_list_type"].native
            certificates, digests = _cert_list(raw_type, prop["cert_list"])
            list_type = CertListType(raw_type)
        times = (prop["create_date"], prop["valid_start"], prop["valid_end"])
    return SealInfo(
        es_id=es_id,
        name=name,
        seal_type=seal_type,
        vendor_id=vendor_id,
        created=_time(times[0], "createDate"),
        valid_start=_time(times[1], "validStart"),
        valid_end=_time(times[2], "validEnd"),
        picture=_picture(picture_value),
        cert_list_type=list_type,
        certificates=certificates,
        cert_digests=digests,
        ext_datas=_ext_datas(ext_value, "extDatas"),
        version=version,
    )


def _der_sequence(body: bytes) -> bytes:
    size = len(body)
    if size < 0x80:
        return b"\x30" + bytes([size]) + body
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return b"\x30" + bytes([0x80 | len(length)]) + length + body


def _seal_from_checked(data: bytes) -> SealData:
    count = _element_count(data, "SESeal")
    if count == 2:
        return _seal_v1(data)
    if count in (4, 5):
        return _seal_38540(data)
    raise SealDataError(
        f"unknown seal layout: SESeal has {count} elements (GM/T 0031 has 2, GB/T 38540 4 or 5)"
    )


def _seal_v1(data: bytes) -> SealData:
    with _reading("SESeal (GM/T 0031)"):
        value = asn1.SESealV1.load(data, strict=True)
        info_value = value["e_seal_info"]
        sign_info = value["sign_info"]
        cert = sign_info["cert"]
        algorithm = sign_info["signature_algorithm"]
        signed_content = _der_sequence(
            info_value.dump() + cert.dump() + algorithm.dump()
        )
        maker_certificate = cert.native
        algorithm_oid = algorithm.dotted
        signature_value = sign_info["sign_data"]
    return SealData(
        info=_seal_info(info_value, layout_v1=True),
        maker_certificate=maker_certificate,
        signature_algorithm=algorithm_oid,
        signature=_octets(signature_value, "signData"),
        signed_content=signed_content,
    )


def _seal_38540(data: bytes) -> SealData:
    with _reading("SESeal (GB/T 38540)"):
        value = asn1.SESeal.load(data, strict=True)
        info_value = value["e_seal_info"]
        signed_content = info_value.dump()
        maker_certificate = value["cert"].native
        algorithm_oid = value["sign_alg_id"].dotted
        signature_value = value["signed_value"]
        timestamp_value = value["time_stamp"]
    return SealData(
        info=_seal_info(info_value, layout_v1=False),
        maker_certificate=maker_certificate,
        signature_algorithm=algorithm_oid,
        signature=_octets(signature_value, "signedValue"),
        timestamp=_optional_octets(timestamp_value, "timeStamp"),
        signed_content=signed_content,
    )


def parse_seal(der: bytes) -> SealData:
    """Read an SESeal of GM/T 0031 (v1), GB/T 38540 (v4) or the v5 variant.

    The layout is told by the element count, as ofdrw's VersionParser does (2 = GM/T 0031,
    4 or 5 = GB/T 38540); SealInfo.version is the header's version number.
    Raises SealDataError for anything that is not a readable seal.
    """
    return _seal_from_checked(_check_input(der, "seal data"))


def _signed_at_v1(time_info: bytes) -> dt.datetime | None:
    # GM/T 0031 timeInfo is "UTCTime text or a timestamp": read the text when it is one.
    try:
        text = time_info.decode("ascii")
    except UnicodeDecodeError:
        return None
    for parser, pattern in (
        (core.UTCTime, r"\d{12}Z"),
        (core.GeneralizedTime, r"\d{14}Z"),
    ):
        if re.fullmatch(pattern, text):
            with contextlib.suppress(*_PARSE_FAILURES):
                return parser(text).native.astimezone(dt.UTC)
    return None


def _signature_v1(data: bytes) -> SignatureData:
    with _reading("SES_Signature (GM/T 0031)"):
        value = asn1.SesSignatureV1.load(data, strict=True)
        to_sign = value["to_sign"]
        signed_content = to_sign.dump()
        version = _integer(to_sign["version"], "version")
        seal_der = to_sign["eseal"].dump()
        property_info = _text(to_sign["property_info"])
        signer_certificate = to_sign["cert"].native
        algorithm_oid = to_sign["signature_algorithm"].dotted
        parts = (to_sign["time_info"], to_sign["data_hash"], value["signature"])
    time_info = _octets(parts[0], "timeInfo")
    signed_at = _signed_at_v1(time_info)
    return SignatureData(
        version=version,
        seal=_seal_from_checked(seal_der),
        signed_at=signed_at,
        data_hash=_octets(parts[1], "dataHash"),
        property_info=property_info,
        signer_certificate=signer_certificate,
        signature_algorithm=algorithm_oid,
        signature=_octets(parts[2], "signature"),
        timestamp=time_info if signed_at is None else None,
        signed_content=signed_content,
    )


def _signature_38540(data: bytes) -> SignatureData:
    with _reading("SES_Signature (GB/T 38540)"):
        value = asn1.SesSignature.load(data, strict=True)
        to_sign = value["to_sign"]
        signed_content = to_sign.dump()
        version = _integer(to_sign["version"], "version")
        seal_der = to_sign["eseal"].dump()
        property_info = _text(to_sign["property_info"])
        signer_certificate = value["cert"].native
        algorithm_oid = value["signature_alg_id"].dotted
        time_info = to_sign["time_info"]
        parts = (to_sign["data_hash"], value["signature"], value["time_stamp"])
        ext_value = to_sign["ext_datas"]
    return SignatureData(
        version=version,
        seal=_seal_from_checked(seal_der),
        signed_at=_time(time_info, "timeInfo"),
        data_hash=_octets(parts[0], "dataHash"),
        property_info=property_info,
        signer_certificate=signer_certificate,
        signature_algorithm=algorithm_oid,
        signature=_octets(parts[1], "signature"),
        timestamp=_optional_octets(parts[2], "timeStamp"),
        ext_datas=_ext_datas(ext_value, "extDatas"),
        signed_content=signed_content,
    )


def parse_signature(der: bytes) -> SignatureData:
    """Read an SES_Signature of GM/T 0031 (2 elements) or GB/T 38540 (4 or 5 elements)."""
    data = _check_input(der, "signature data")
    count = _element_count(data, "SES_Signature")
    if count == 2:
        return _signature_v1(data)
    if count in (4, 5):
        return _signature_38540(data)
    raise SealDataError(
        f"unknown signature layout: SES_Signature has {count} elements "
        "(GM/T 0031 has 2, GB/T 38540 4 or 5)"
    )


# --------------------------------------------------------------------------- writing

_OID = re.compile(r"(0|1|2)(\.(0|[1-9][0-9]{0,18}))+")
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]+")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise SealDataError(message)


def _require_type(value: object, kind: type | tuple[type, ...], field: str) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"{field} must be {getattr(kind, '__name__', kind)}")


def _check_ascii(value: object, field: str) -> None:
    _require_type(value, str, field)
    assert isinstance(value, str)
    _require(bool(value), f"{field} is empty")
    _require(value.isascii(), f"{field} must be ASCII (IA5String)")


def _check_time(value: object, field: str) -> None:
    _require_type(value, dt.datetime, field)
    assert isinstance(value, dt.datetime)
    _require(
        value.utcoffset() == dt.timedelta(0), f"{field} must be an aware UTC datetime"
    )
    _require(value.microsecond == 0, f"{field} must be whole seconds")
    # GeneralizedTime has four year digits; asn1crypto writes earlier years unpadded.
    _require(value.year >= 1000, f"{field} is before the year 1000")


def _check_oid(value: object, field: str) -> None:
    _require_type(value, str, field)
    assert isinstance(value, str)
    _require(bool(_OID.fullmatch(value)), f"{field} is not a dotted object identifier")
    arcs = value.split(".")
    _require(
        arcs[0] == "2" or int(arcs[1]) < 40, f"{field} is not a valid object identifier"
    )


def _check_certificate(der: object, field: str) -> x509.Certificate:
    _require_type(der, bytes, field)
    try:
        return x509.load_der_x509_certificate(der)  # type: ignore[arg-type]
    except _CERTIFICATE_FAILURES:
        raise SealDataError(f"{field} is not a DER X.509 certificate") from None


def _check_seal_info(info: SealInfo, versions: frozenset[int]) -> None:
    _require_type(info, SealInfo, "info")
    _require_type(info.version, int, "version")
    _require(info.version in versions, f"seal version {info.version} is not written")
    _check_ascii(info.vendor_id, "vendor_id")
    _check_ascii(info.es_id, "es_id")
    _require_type(info.name, str, "name")
    _require(bool(info.name.strip()), "name is empty")
    try:
        info.name.encode("utf-8")
    except UnicodeEncodeError:
        raise SealDataError("name is not encodable as UTF-8") from None
    _require_type(info.seal_type, int, "seal_type")
    _require(0 <= info.seal_type < 2**31, "seal_type is out of range")
    for field in ("created", "valid_start", "valid_end"):
        _check_time(getattr(info, field), field)
    _require(info.valid_start <= info.valid_end, "valid_start is after valid_end")
    picture = info.picture
    _require_type(picture, SealPicture, "picture")
    _check_ascii(picture.image_type, "picture.image_type")
    _require_type(picture.data, bytes, "picture.data")
    _require(bool(picture.data), "picture.data is empty")
    for field in ("width_mm", "height_mm"):
        size = getattr(picture, field)
        _require_type(size, int, f"picture.{field}")
        _require(0 < size < 10_000, f"picture.{field} is out of range")
    _require(
        isinstance(info.cert_list_type, CertListType),
        "cert_list_type must be a CertListType",
    )
    _require_type(info.certificates, tuple, "certificates")
    _require_type(info.cert_digests, tuple, "cert_digests")
    if info.cert_list_type is CertListType.CERTIFICATES:
        _require(
            not info.cert_digests, "cert_digests given with cert_list_type CERTIFICATES"
        )
        _require(bool(info.certificates), "certificates is empty")
        for index, cert in enumerate(info.certificates):
            _check_certificate(cert, f"certificates[{index}]")
    else:
        _require(
            not info.certificates, "certificates given with cert_list_type DIGESTS"
        )
        _require(bool(info.cert_digests), "cert_digests is empty")
        for index, digest in enumerate(info.cert_digests):
            _require_type(digest, CertDigest, f"cert_digests[{index}]")
            _require_type(digest.digest_type, str, f"cert_digests[{index}].digest_type")
            _require(
                bool(_PRINTABLE.fullmatch(digest.digest_type)),
                f"cert_digests[{index}].digest_type must be a PrintableString",
            )
            _require_type(digest.value, bytes, f"cert_digests[{index}].value")
            _require(bool(digest.value), f"cert_digests[{index}].value is empty")
    _require(
        len(info.certificates) + len(info.cert_digests) <= _MAX_LIST_ENTRIES,
        f"more than {_MAX_LIST_ENTRIES} entries in the certificate list",
    )
    _require_type(info.ext_datas, tuple, "ext_datas")
    _require(len(info.ext_datas) <= _MAX_LIST_ENTRIES, "too many ext_datas")
    for index, ext in enumerate(info.ext_datas):
        _require_type(ext, ExtData, f"ext_datas[{index}]")
        _check_oid(ext.extn_id, f"ext_datas[{index}].extn_id")
        _require_type(ext.critical, bool, f"ext_datas[{index}].critical")
        _require_type(ext.value, bytes, f"ext_datas[{index}].value")


def _generalized(moment: dt.datetime) -> asn1.SesTime:
    return asn1.SesTime(name="generalized_time", value=moment)


def _seal_info_value(info: SealInfo) -> asn1.SesSealInfo:
    if info.cert_list_type is CertListType.CERTIFICATES:
        cert_list: core.Asn1Value = asn1.CertInfoList(list(info.certificates))
    else:
        cert_list = asn1.CertDigestList(
            [{"type": d.digest_type, "value": d.value} for d in info.cert_digests]
        )
    fields: dict[str, Any] = {
        "header": {"id": "ES", "version": info.version, "vid": info.vendor_id},
        "es_id": info.es_id,
        "property": {
            "type": info.seal_type,
            "name": info.name,
            "cert_list_type": int(info.cert_list_type),
            "cert_list": cert_list,
            "create_date": _generalized(info.created),
            "valid_start": _generalized(info.valid_start),
            "valid_end": _generalized(info.valid_end),
        },
        "picture": {
            "type": info.picture.image_type,
            "data": info.picture.data,
            "width": info.picture.width_mm,
            "height": info.picture.height_mm,
        },
    }
    if info.ext_datas:
        fields["ext_datas"] = [
            {"extn_id": e.extn_id, "critical": e.critical, "extn_value": e.value}
            for e in info.ext_datas
        ]
    return asn1.SesSealInfo(fields)


def encode_seal_info(info: SealInfo) -> bytes:
    """DER(SES_SealInfo) of a version-4 seal: exactly what the seal maker signs."""
    _check_seal_info(info, frozenset({_SEAL_VERSION_WRITTEN}))
    return _seal_info_value(info).dump()


def _encode_seal_parts(
    info: SealInfo,
    certificate: bytes,
    algorithm: str,
    signature: bytes,
    timestamp: bytes | None,
) -> bytes:
    fields: dict[str, Any] = {
        "e_seal_info": _seal_info_value(info),
        "cert": certificate,
        "sign_alg_id": algorithm,
        "signed_value": asn1.BitsOrOctets(name="bits", value=signature),
    }
    if timestamp is not None:
        fields["time_stamp"] = asn1.BitsOrOctets(name="bits", value=timestamp)
    der = asn1.SESeal(fields).dump()
    _require(len(der) <= MAX_DATA_BYTES, "the seal data would exceed the size limit")
    return der


def encode_seal(seal: SealData) -> bytes:
    """The strict DER encoding of a seal in the GB/T 38540 layout (header version 4, or
    ofdrw's version 5 that shares the layout). GM/T 0031 seals are read, never written.

    For a DER file this gives back the very bytes it was read from."""
    _require_type(seal, SealData, "seal")
    _check_seal_info(seal.info, _LAYOUT_38540_VERSIONS)
    _check_oid(seal.signature_algorithm, "signature_algorithm")
    _require_type(seal.maker_certificate, bytes, "maker_certificate")
    _require_type(seal.signature, bytes, "signature")
    _require(
        seal.timestamp is None or isinstance(seal.timestamp, bytes),
        "timestamp must be bytes",
    )
    return _encode_seal_parts(
        seal.info,
        seal.maker_certificate,
        seal.signature_algorithm,
        seal.signature,
        seal.timestamp,
    )


def build_seal(
    info: SealInfo,
    *,
    maker_certificate: bytes,
    sign: Callable[[bytes], bytes],
    signature_algorithm: str = ECDSA_WITH_SHA256,
) -> bytes:
    """Make a GB/T 38540-2020 version-4 SESeal, signed by the seal maker.

    `sign(data) -> signature` signs with the maker's key (an HSM-backed key handle; for
    ECDSA it returns the DER signature over `data` with the algorithm's hash). The result
    is checked against `maker_certificate` before it is returned, so a key that does not
    belong to the certificate never yields a seal.
    """
    tbs = encode_seal_info(info)
    _require(
        signature_algorithm in _ALGORITHM_NAMES,
        f"unsupported signature algorithm {signature_algorithm}",
    )
    _check_certificate(maker_certificate, "maker_certificate")
    fits = _key_fits(maker_certificate, signature_algorithm)
    _require(fits is None, f"maker_certificate: {fits}")
    if not callable(sign):
        raise TypeError("sign must be callable")
    signature = sign(tbs)
    if not isinstance(signature, bytes):
        raise SealSigningError("the signing function did not return bytes")
    ok, _subject, reason = _verify_with_certificate(
        maker_certificate, signature_algorithm, tbs, signature
    )
    if not ok:
        raise SealSigningError(
            f"the maker's signature was not made by its certificate's key: {reason}"
        )
    return _encode_seal_parts(
        info, maker_certificate, signature_algorithm, signature, None
    )


# --------------------------------------------------------------------------- verifying


def _subject(certificate: bytes) -> str | None:
    try:
        return x509.load_der_x509_certificate(certificate).subject.rfc4514_string()
    except _CERTIFICATE_FAILURES:
        return None


def _sm2_point(certificate: bytes) -> bytes | None:
    try:
        key_info = asn1_x509.Certificate.load(certificate, strict=True).public_key
        if key_info.algorithm != "ec":
            return None
        if key_info["algorithm"]["parameters"].chosen.native != SM2_CURVE_OID:
            return None
        point = key_info["public_key"].native
    except _PARSE_FAILURES:
        return None
    return point if isinstance(point, bytes) else None


def _key_fits(certificate: bytes, algorithm: str) -> str | None:
    """None when the certificate's key can make `algorithm` signatures, else why not."""
    name = _ALGORITHM_NAMES.get(algorithm, algorithm)
    if algorithm == SM2_WITH_SM3:
        return (
            None
            if _sm2_point(certificate)
            else f"the certificate's key is not an SM2 key for {name}"
        )
    if algorithm in _ECDSA_HASHES:
        try:
            key = x509.load_der_x509_certificate(certificate).public_key()
        except _CERTIFICATE_FAILURES:
            return f"the certificate's key cannot be used for {name}"
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return f"the certificate's key is not an EC key for {name}"
        return None
    return f"unsupported signature algorithm {algorithm}"


def _verify_with_certificate(
    certificate: bytes, algorithm: str, data: bytes, signature: bytes
) -> tuple[bool, str | None, str]:
    """(verified, certificate subject, reason)."""
    subject = _subject(certificate)
    if subject is None:
        return False, None, "the certificate cannot be read"
    unfit = _key_fits(certificate, algorithm)
    if unfit is not None:
        return False, subject, unfit
    if algorithm == SM2_WITH_SM3:
        point = _sm2_point(certificate)
        assert point is not None
        ok = verify_sm2_signature(point, data, signature)
    else:
        key = x509.load_der_x509_certificate(certificate).public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey)
        try:
            key.verify(signature, data, ec.ECDSA(_ECDSA_HASHES[algorithm]()))
            ok = True
        except InvalidSignature:
            ok = False
    return (
        ok,
        subject,
        "the signature verifies" if ok else "the signature does not verify",
    )


def verify_seal(seal: SealData) -> SealCheck:
    """Check the seal maker's signature over the seal as read. Reports problems with the
    certificate or the algorithm in the result; raises only for a non-SealData argument."""
    _require_type(seal, SealData, "seal")
    ok, subject, reason = _verify_with_certificate(
        seal.maker_certificate,
        seal.signature_algorithm,
        seal.signed_content,
        seal.signature,
    )
    return SealCheck(
        maker_signature_ok=ok,
        algorithm=_ALGORITHM_NAMES.get(
            seal.signature_algorithm, seal.signature_algorithm
        ),
        maker_subject=subject,
        validity=(seal.info.valid_start, seal.info.valid_end),
        reason=f"maker: {reason}",
    )


_DIGESTS = {
    "sm3": hashes.SM3,
    "sha256": hashes.SHA256,
    "sha-256": hashes.SHA256,
    "sha1": hashes.SHA1,
}


def _listed(info: SealInfo, certificate: bytes) -> bool:
    if info.cert_list_type is CertListType.CERTIFICATES:
        return certificate in info.certificates
    for entry in info.cert_digests:
        algorithm = _DIGESTS.get(entry.digest_type.strip().lower())
        if algorithm is not None:
            digest = hashes.Hash(algorithm())
            digest.update(certificate)
            if digest.finalize() == entry.value:
                return True
    return False


def verify_signature(signature: SignatureData) -> SignatureCheck:
    """Check an SES_Signature: the signer's signature over TBS_Sign as read, the signer's
    certificate in the seal's certificate list, the signing time inside the seal's
    validity, and the seal's maker signature. The signed document's hash is the caller's."""
    _require_type(signature, SignatureData, "signature")
    seal_check = verify_seal(signature.seal)
    ok, subject, reason = _verify_with_certificate(
        signature.signer_certificate,
        signature.signature_algorithm,
        signature.signed_content,
        signature.signature,
    )
    listed = _listed(signature.seal.info, signature.signer_certificate)
    info = signature.seal.info
    within = signature.signed_at is not None and (
        info.valid_start <= signature.signed_at <= info.valid_end
    )
    if not ok:
        summary = f"signer: {reason}"
    elif not seal_check.maker_signature_ok:
        summary = seal_check.reason
    elif not listed:
        summary = "the signer's certificate is not in the seal's certificate list"
    elif not within:
        summary = "the signing time is outside the seal's validity"
    else:
        summary = "signer and maker signatures verify"
    return SignatureCheck(
        signature_ok=ok,
        algorithm=_ALGORITHM_NAMES.get(
            signature.signature_algorithm, signature.signature_algorithm
        ),
        signer_subject=subject,
        signer_listed=listed,
        signed_within_validity=within,
        seal=seal_check,
        reason=summary,
    )


# --------------------------------------------------------------------------- describing


def describe_seal(seal: SealData) -> dict[str, Any]:
    """A JSON-safe summary of a seal, for `yinxin seal show` and reports."""
    _require_type(seal, SealData, "seal")
    info = seal.info
    return {
        "version": info.version,
        "es_id": info.es_id,
        "name": info.name,
        "type": info.seal_type,
        "vendor_id": info.vendor_id,
        "created": info.created.isoformat(),
        "valid_start": info.valid_start.isoformat(),
        "valid_end": info.valid_end.isoformat(),
        "picture": {
            "type": info.picture.image_type,
            "bytes": len(info.picture.data),
            "width_mm": info.picture.width_mm,
            "height_mm": info.picture.height_mm,
        },
        "maker_subject": _subject(seal.maker_certificate),
        "signature_algorithm": _ALGORITHM_NAMES.get(
            seal.signature_algorithm, seal.signature_algorithm
        ),
        "cert_list_type": info.cert_list_type.name.lower(),
        "certificates": [_subject(c) for c in info.certificates],
        "cert_digests": [
            {"type": d.digest_type, "value": d.value.hex()} for d in info.cert_digests
        ],
        "ext_datas": [
            {"id": e.extn_id, "critical": e.critical, "bytes": len(e.value)}
            for e in info.ext_datas
        ],
        "timestamped": seal.timestamp is not None,
    }


def describe_signature(signature: SignatureData) -> dict[str, Any]:
    """A JSON-safe summary of an SES_Signature and its seal."""
    _require_type(signature, SignatureData, "signature")
    return {
        "version": signature.version,
        "signed_at": signature.signed_at.isoformat() if signature.signed_at else None,
        "data_hash": signature.data_hash.hex(),
        "property_info": signature.property_info,
        "signer_subject": _subject(signature.signer_certificate),
        "signature_algorithm": _ALGORITHM_NAMES.get(
            signature.signature_algorithm, signature.signature_algorithm
        ),
        "timestamped": signature.timestamp is not None,
        "seal": describe_seal(signature.seal),
    }
