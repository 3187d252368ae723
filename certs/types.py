"""Licence types (证照类型), declared as data files and checked when they are loaded.

Each file in `certs/licence_types/` declares one type: its code (the 21-character
GB/T 36904 type code), names, holder, fields, validity rules and PDF layout. A file with
an unknown key, a wrong value or a dangling field reference is refused with every
problem named, so a bad deployment fails at start rather than at the first issuance.

Licence data is checked against its type by `validate_licence_data`, which names every
problem at once and never echoes a value: the data holds people's names and identity
numbers.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import re
import string
import tomllib
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from certs.errors import (
    LicenceDataError,
    LicenceIdentifierError,
    LicenceTypeDefinitionError,
    UnknownLicenceTypeError,
)
from certs.identifiers import validate_type_code
from pki.errors import InvalidUsccError
from pki.regions import PROVINCE_CODES
from pki.uscc import validate_uscc

__all__ = [
    "LONG_TERM",
    "QR_FIELDS_BUDGET_BYTES",
    "EnumValue",
    "FieldKind",
    "FieldSpec",
    "HolderKind",
    "HolderSpec",
    "LayoutSpec",
    "LayoutStyle",
    "LicenceType",
    "LicenceTypes",
    "LocalisedText",
    "ValidityRules",
    "default_licence_types",
    "describe_types",
    "get_licence_type",
    "load_licence_type",
    "load_licence_types",
    "mask_id_number",
    "validate_licence_data",
]

LICENCE_TYPES_DIR = Path(__file__).with_name("licence_types")
LONG_TERM = "long-term"
_LONG_TERM_SPELLINGS = frozenset({LONG_TERM, "长期"})

# The QR fields of a type, CBOR-encoded with their worst-case values, must fit in this
# many bytes. Measured with a realistic CWT (region, times, identifier, type code,
# status index and URI, ES256 signature, zlib, Base45): 211 bytes of fields made a
# 699-character `LC1:` string, and version 20 at ECC level Q holds 702.
QR_FIELDS_BUDGET_BYTES = 220

_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_ENUM_CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MONEY = re.compile(r"[0-9]{1,15}(\.[0-9]{1,2})?")
_MONEY_LIMIT = Decimal(10) ** 15  # the Chinese upper-case amount goes up to 万亿
_MAX_STRING_LENGTH = 1000
_MAX_TEXT_LENGTH = 5000
_MAX_YEARS = 50
_ID_NUMBER_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_NUMBER_CHECK = "10X98765432"


class FieldKind(enum.Enum):
    """What a field holds; decides how its value is checked, normalised and printed."""

    STRING = "string"  # one line
    TEXT = "text"  # a paragraph (business scope, ...)
    DATE = "date"  # YYYY-MM-DD, or "long-term" where allowed
    MONEY = "money"  # an amount in yuan, two decimals
    ENUM = "enum"  # one of the declared codes
    USC_CODE = "usc-code"  # a unified social credit code (GB 32100)
    ID_NUMBER = "id-number"  # a citizen identity number (GB 11643)


class HolderKind(enum.Enum):
    ORGANISATION = "organisation"
    PERSON = "person"


class LayoutStyle(enum.Enum):
    """The look of the PDF: page, frame and where the title, QR code and seal go."""

    BUSINESS_LICENCE = "business-licence"  # A4 landscape, red and gold frame
    PERMIT = "permit"  # A4 portrait, ruled table, blue frame
    CERTIFICATE = "certificate"  # A4 portrait, a person's certificate, green frame


@dataclass(frozen=True)
class LocalisedText:
    zh: str
    en: str


@dataclass(frozen=True)
class EnumValue:
    code: str
    label: LocalisedText


@dataclass(frozen=True)
class FieldSpec:
    """One field of a licence type."""

    name: str
    kind: FieldKind
    label: LocalisedText
    required: bool = True
    on_qr: bool = False
    masked_on_qr: bool = False
    disclosable: bool = False
    max_length: int | None = None
    pattern: str | None = None
    pattern_hint: str | None = None
    values: tuple[EnumValue, ...] = ()
    allow_long_term: bool = False

    def enum_label(self, code: str) -> LocalisedText:
        for value in self.values:
            if value.code == code:
                return value.label
        raise KeyError(code)

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "name": self.name,
            "type": self.kind.value,
            "label": {"zh": self.label.zh, "en": self.label.en},
            "required": self.required,
            "on_qr": self.on_qr,
            "masked_on_qr": self.masked_on_qr,
            "disclosable": self.disclosable,
        }
        if self.max_length is not None:
            described["max_length"] = self.max_length
        if self.pattern is not None:
            described["pattern"] = self.pattern
            described["pattern_hint"] = self.pattern_hint
        if self.values:
            described["values"] = [
                {"code": v.code, "zh": v.label.zh, "en": v.label.en}
                for v in self.values
            ]
        if self.kind is FieldKind.DATE:
            described["allow_long_term"] = self.allow_long_term
        return described


@dataclass(frozen=True)
class HolderSpec:
    """Who holds licences of a type, and which fields give the holder's name and code."""

    kind: HolderKind
    name_field: str
    code_field: str


@dataclass(frozen=True)
class ValidityRules:
    """How long a licence of the type is valid.

    Without `default_years` a licence is long-term (长期) unless the issuer asks for an
    end date; `max_years` caps what an issuer may ask for.
    """

    long_term_allowed: bool = False
    default_years: int | None = None
    max_years: int | None = None

    def valid_until(
        self,
        issued_on: dt.date,
        requested: dt.date | None = None,
        *,
        long_term: bool = False,
        type_code: str = "",
    ) -> dt.date | None:
        """The last day of validity, or None for a long-term licence."""
        if long_term:
            if requested is not None:
                raise LicenceDataError(
                    type_code, ["ask for either an end date or a long-term licence"]
                )
            if not self.long_term_allowed:
                raise LicenceDataError(
                    type_code, ["licences of this type cannot be long-term"]
                )
            return None
        if requested is not None:
            if requested <= issued_on:
                raise LicenceDataError(
                    type_code, ["the end of validity must come after the issue date"]
                )
            if self.max_years is not None:
                latest = _last_day(issued_on, self.max_years)
                if requested > latest:
                    raise LicenceDataError(
                        type_code,
                        [
                            (
                                "licences of this type are valid at most "
                                f"{self.max_years} years, until {latest.isoformat()}"
                            )
                        ],
                    )
            return requested
        if self.default_years is None:
            return None
        return _last_day(issued_on, self.default_years)

    def describe(self) -> dict[str, Any]:
        return {
            "long_term_allowed": self.long_term_allowed,
            "default_years": self.default_years,
            "max_years": self.max_years,
        }


@dataclass(frozen=True)
class LayoutSpec:
    """What the type's PDF shows, in which order; `certs.layout` draws it."""

    style: LayoutStyle
    title: str
    issuer_label: str
    columns: tuple[tuple[str, ...], ...]
    header: tuple[str, ...] = ()
    subtitle: str | None = None
    footnotes: tuple[str, ...] = ()
    templates: Mapping[str, str] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "style": self.style.value,
            "title": self.title,
            "subtitle": self.subtitle,
            "header": list(self.header),
            "columns": [list(column) for column in self.columns],
            "issuer_label": self.issuer_label,
            "footnotes": list(self.footnotes),
            "templates": dict(self.templates),
        }


@dataclass(frozen=True)
class LicenceType:
    """A licence type as declared in its data file, checked."""

    code: str
    name: LocalisedText
    holder: HolderSpec
    number_field: str
    validity: ValidityRules
    fields: tuple[FieldSpec, ...]
    layout: LayoutSpec
    source: str = ""

    def field(self, name: str) -> FieldSpec:
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def qr_fields(self) -> tuple[FieldSpec, ...]:
        """The fields that go into the LC1 QR token, in declaration order."""
        return tuple(spec for spec in self.fields if spec.on_qr)

    @property
    def disclosable_fields(self) -> tuple[FieldSpec, ...]:
        """The fields that become selective disclosures in the SD-JWT VC."""
        return tuple(spec for spec in self.fields if spec.disclosable)

    def qr_values(self, data: Mapping[str, str]) -> dict[str, str]:
        """The QR fields of validated `data`, masked where the type says so."""
        values: dict[str, str] = {}
        for spec in self.qr_fields:
            if spec.name in data:
                value = data[spec.name]
                values[spec.name] = (
                    mask_id_number(value) if spec.masked_on_qr else value
                )
        return values

    def describe(self) -> dict[str, Any]:
        """A JSON-safe description, as `yinxin license types --json` prints it."""
        return {
            "code": self.code,
            "name": {"zh": self.name.zh, "en": self.name.en},
            "holder": {
                "kind": self.holder.kind.value,
                "name_field": self.holder.name_field,
                "code_field": self.holder.code_field,
            },
            "number_field": self.number_field,
            "validity": self.validity.describe(),
            "fields": [spec.describe() for spec in self.fields],
            "qr_fields": [spec.name for spec in self.qr_fields],
            "disclosable_fields": [spec.name for spec in self.disclosable_fields],
            "layout": self.layout.describe(),
        }


class LicenceTypes(Mapping[str, LicenceType]):
    """The loaded licence types by code, in the order of their file names."""

    def __init__(self, types: Mapping[str, LicenceType]) -> None:
        self._types = dict(types)

    def __getitem__(self, code: str) -> LicenceType:
        try:
            return self._types[code]
        except KeyError:
            raise UnknownLicenceTypeError(
                f"no licence type has the code {str(code)[:40]!r}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)


# Loading.


def load_licence_type(path: str | Path) -> LicenceType:
    """The licence type declared in the TOML file at `path`, checked."""
    path = Path(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise LicenceTypeDefinitionError(
            path.name, [f"cannot be read: {exc}"]
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise LicenceTypeDefinitionError(
            path.name, [f"is not valid TOML: {exc}"]
        ) from None
    return parse_licence_type(document, source=path.name)


def parse_licence_type(document: Mapping[str, Any], *, source: str) -> LicenceType:
    """The licence type declared by `document` (a parsed data file), checked."""
    reader = _Reader()
    licence_type = reader.licence_type(document)
    if reader.problems or licence_type is None:
        raise LicenceTypeDefinitionError(source, reader.problems)
    return _with_source(licence_type, source)


def load_licence_types(directory: str | Path | None = None) -> LicenceTypes:
    """Every licence type declared in `directory` (default: the packaged types)."""
    directory = LICENCE_TYPES_DIR if directory is None else Path(directory)
    paths = sorted(directory.glob("*.toml"))
    if not paths:
        raise LicenceTypeDefinitionError(
            str(directory), ["the directory holds no licence type files (*.toml)"]
        )
    types: dict[str, LicenceType] = {}
    for path in paths:
        licence_type = load_licence_type(path)
        if licence_type.code in types:
            raise LicenceTypeDefinitionError(
                path.name,
                [
                    (
                        f"code {licence_type.code} is already declared by "
                        f"{types[licence_type.code].source}"
                    )
                ],
            )
        types[licence_type.code] = licence_type
    return LicenceTypes(types)


@functools.cache
def default_licence_types() -> LicenceTypes:
    """The packaged licence types, loaded once."""
    return load_licence_types()


def get_licence_type(code: str, types: LicenceTypes | None = None) -> LicenceType:
    """The licence type with `code`, or UnknownLicenceTypeError."""
    return (default_licence_types() if types is None else types)[code]


def describe_types(types: LicenceTypes | None = None) -> list[dict[str, Any]]:
    """Every licence type as JSON-safe data, for `yinxin license types --json`."""
    return [
        licence_type.describe()
        for licence_type in (
            default_licence_types() if types is None else types
        ).values()
    ]


def _with_source(licence_type: LicenceType, source: str) -> LicenceType:
    return LicenceType(
        code=licence_type.code,
        name=licence_type.name,
        holder=licence_type.holder,
        number_field=licence_type.number_field,
        validity=licence_type.validity,
        fields=licence_type.fields,
        layout=licence_type.layout,
        source=source,
    )


class _Reader:
    """Reads a type document, collecting every problem with the path of its key."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}" if path else message)

    def table(
        self,
        value: object,
        path: str,
        required: frozenset[str],
        optional: frozenset[str] = frozenset(),
    ) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.problem(path, "must be a table")
            return None
        for key in value:
            if key not in required and key not in optional:
                known = ", ".join(sorted(required | optional))
                self.problem(_join(path, key), f"unknown key (known keys: {known})")
        for key in sorted(required):
            if key not in value:
                self.problem(_join(path, key), "is missing")
        return value

    def text(self, value: object, path: str, max_length: int) -> str | None:
        if not isinstance(value, str) or not value.strip():
            self.problem(path, "must be a non-empty string")
            return None
        if len(value) > max_length:
            self.problem(path, f"must have at most {max_length} characters")
            return None
        return value

    def flag(self, value: object, path: str) -> bool:
        if not isinstance(value, bool):
            self.problem(path, "must be true or false")
            return False
        return value

    def whole_number(self, value: object, path: str, low: int, high: int) -> int | None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not low <= value <= high
        ):
            self.problem(path, f"must be a whole number from {low} to {high}")
            return None
        return value

    def localised(self, value: object, path: str) -> LocalisedText | None:
        table = self.table(value, path, frozenset({"zh", "en"}))
        if table is None:
            return None
        zh = (
            self.text(table.get("zh"), _join(path, "zh"), 100)
            if "zh" in table
            else None
        )
        en = (
            self.text(table.get("en"), _join(path, "en"), 200)
            if "en" in table
            else None
        )
        return LocalisedText(zh, en) if zh and en else None

    def licence_type(self, document: Mapping[str, Any]) -> LicenceType | None:
        table = self.table(
            dict(document),
            "",
            frozenset(
                {
                    "code",
                    "name",
                    "holder",
                    "number_field",
                    "validity",
                    "fields",
                    "layout",
                }
            ),
        )
        if table is None:
            return None
        code = self.type_code(table.get("code"))
        name = self.localised(table["name"], "name") if "name" in table else None
        fields = self.fields(table.get("fields")) if "fields" in table else None
        by_name = {spec.name: spec for spec in fields or ()}
        holder = self.holder(table["holder"], by_name) if "holder" in table else None
        number_field = (
            self.field_reference(table["number_field"], "number_field", by_name)
            if "number_field" in table
            else None
        )
        if number_field is not None and not by_name[number_field].required:
            self.problem("number_field", f"field {number_field!r} must be required")
        validity = self.validity(table["validity"]) if "validity" in table else None
        layout = self.layout(table["layout"], by_name) if "layout" in table else None
        if fields is not None:
            self.qr_budget(fields)
        if None in (code, name, fields, holder, number_field, validity, layout):
            return None
        return LicenceType(
            code=code,
            name=name,
            holder=holder,
            number_field=number_field,
            validity=validity,
            fields=fields,
            layout=layout,
        )

    def type_code(self, value: object) -> str | None:
        try:
            return validate_type_code(value)
        except LicenceIdentifierError as exc:
            self.problem("code", str(exc))
            return None

    def fields(self, value: object) -> tuple[FieldSpec, ...] | None:
        if not isinstance(value, list) or not value:
            self.problem("fields", "must be a non-empty array of tables ([[fields]])")
            return None
        specs: list[FieldSpec] = []
        seen: set[str] = set()
        for index, item in enumerate(value):
            spec = self.field_spec(item, f"fields[{index}]")
            if spec is None:
                continue
            if spec.name in seen:
                self.problem(
                    f"fields[{index}].name", f"{spec.name!r} is declared twice"
                )
                continue
            seen.add(spec.name)
            specs.append(spec)
        return tuple(specs) if len(specs) == len(value) else None

    def field_spec(self, value: object, path: str) -> FieldSpec | None:
        table = self.table(
            value,
            path,
            frozenset({"name", "type", "label"}),
            frozenset(
                {
                    "required",
                    "on_qr",
                    "masked_on_qr",
                    "disclosable",
                    "max_length",
                    "pattern",
                    "pattern_hint",
                    "values",
                    "allow_long_term",
                }
            ),
        )
        if table is None:
            return None
        problems_before = len(self.problems)
        name = table.get("name")
        if not isinstance(name, str) or not _FIELD_NAME.fullmatch(name):
            self.problem(
                _join(path, "name"),
                "must be 1 to 32 characters of a-z, 0-9 and _, starting with a letter",
            )
        kind = None
        if "type" in table:
            try:
                kind = FieldKind(table["type"])
            except ValueError:
                choices = ", ".join(k.value for k in FieldKind)
                self.problem(
                    _join(path, "type"),
                    f"unknown type {str(table['type'])[:30]!r} (choose from {choices})",
                )
        label = (
            self.localised(table["label"], _join(path, "label"))
            if "label" in table
            else None
        )
        required = self.flag(table.get("required", True), _join(path, "required"))
        on_qr = self.flag(table.get("on_qr", False), _join(path, "on_qr"))
        masked = self.flag(
            table.get("masked_on_qr", False), _join(path, "masked_on_qr")
        )
        disclosable = self.flag(
            table.get("disclosable", False), _join(path, "disclosable")
        )
        allow_long_term = self.flag(
            table.get("allow_long_term", False), _join(path, "allow_long_term")
        )
        max_length = None
        pattern = None
        pattern_hint = None
        values: tuple[EnumValue, ...] = ()
        if kind is not None:
            self.kind_rules(table, path, kind)
            if kind in (FieldKind.STRING, FieldKind.TEXT) and "max_length" in table:
                ceiling = (
                    _MAX_TEXT_LENGTH if kind is FieldKind.TEXT else _MAX_STRING_LENGTH
                )
                max_length = self.whole_number(
                    table["max_length"], _join(path, "max_length"), 1, ceiling
                )
            if "pattern" in table:
                pattern = self.pattern(table["pattern"], _join(path, "pattern"))
                if "pattern_hint" not in table:
                    self.problem(
                        _join(path, "pattern_hint"),
                        "is missing: say in words what the pattern asks for",
                    )
                else:
                    pattern_hint = self.text(
                        table["pattern_hint"], _join(path, "pattern_hint"), 100
                    )
            elif "pattern_hint" in table:
                self.problem(_join(path, "pattern_hint"), "needs a pattern")
            if kind is FieldKind.ENUM and "values" in table:
                values = self.enum_values(table["values"], _join(path, "values"))
        if masked and not on_qr:
            self.problem(_join(path, "masked_on_qr"), "needs on_qr = true")
        if kind is FieldKind.ID_NUMBER and on_qr and not masked:
            # Full identity numbers never go on a QR code anyone can photograph.
            self.problem(
                _join(path, "on_qr"),
                "an identity number goes on the QR code only masked (masked_on_qr = true)",
            )
        if len(self.problems) > problems_before or kind is None or label is None:
            return None
        return FieldSpec(
            name=name,
            kind=kind,
            label=label,
            required=required,
            on_qr=on_qr,
            masked_on_qr=masked,
            disclosable=disclosable,
            max_length=max_length,
            pattern=pattern,
            pattern_hint=pattern_hint,
            values=values,
            allow_long_term=allow_long_term,
        )

    def kind_rules(self, table: Mapping[str, Any], path: str, kind: FieldKind) -> None:
        """Refuse keys that do not apply to the field's type, and require those that do."""
        allowed = {
            FieldKind.STRING: {"max_length", "pattern", "pattern_hint"},
            FieldKind.TEXT: {"max_length"},
            FieldKind.DATE: {"allow_long_term"},
            FieldKind.ENUM: {"values"},
            FieldKind.ID_NUMBER: {"masked_on_qr"},
        }.get(kind, set())
        for key in (
            "max_length",
            "pattern",
            "pattern_hint",
            "values",
            "allow_long_term",
        ):
            if key in table and key not in allowed:
                self.problem(
                    _join(path, key), f"does not apply to a {kind.value} field"
                )
        if "masked_on_qr" in table and "masked_on_qr" not in allowed:
            self.problem(
                _join(path, "masked_on_qr"), f"does not apply to a {kind.value} field"
            )
        if kind in (FieldKind.STRING, FieldKind.TEXT) and "max_length" not in table:
            self.problem(
                _join(path, "max_length"), f"is missing: a {kind.value} field needs one"
            )
        if kind is FieldKind.ENUM and "values" not in table:
            self.problem(
                _join(path, "values"), "is missing: an enum field needs its values"
            )

    def pattern(self, value: object, path: str) -> str | None:
        if not isinstance(value, str) or not value:
            self.problem(path, "must be a regular expression")
            return None
        try:
            re.compile(value)
        except re.error as exc:
            self.problem(path, f"is not a valid regular expression: {exc}")
            return None
        return value

    def enum_values(self, value: object, path: str) -> tuple[EnumValue, ...]:
        if not isinstance(value, list) or not value:
            self.problem(path, "must be a non-empty array of {code, zh, en} tables")
            return ()
        values: list[EnumValue] = []
        codes: set[str] = set()
        labels: set[str] = set()
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]"
            table = self.table(item, item_path, frozenset({"code", "zh", "en"}))
            if table is None or len(table) != 3:
                continue
            code = table["code"]
            if not isinstance(code, str) or not _ENUM_CODE.fullmatch(code):
                self.problem(
                    _join(item_path, "code"),
                    "must be 1 to 40 characters of a-z, 0-9 and -",
                )
                continue
            zh = self.text(table["zh"], _join(item_path, "zh"), 60)
            en = self.text(table["en"], _join(item_path, "en"), 120)
            if zh is None or en is None:
                continue
            if code in codes or zh in labels:
                self.problem(item_path, f"code {code!r} or label {zh!r} appears twice")
                continue
            codes.add(code)
            labels.add(zh)
            values.append(EnumValue(code, LocalisedText(zh, en)))
        return tuple(values)

    def field_reference(
        self, value: object, path: str, by_name: Mapping[str, FieldSpec]
    ) -> str | None:
        if not isinstance(value, str) or value not in by_name:
            if by_name:
                self.problem(path, f"{str(value)[:40]!r} is not a declared field")
            return None
        return value

    def holder(
        self, value: object, by_name: Mapping[str, FieldSpec]
    ) -> HolderSpec | None:
        keys = frozenset({"kind", "name_field", "code_field"})
        table = self.table(value, "holder", keys)
        if table is None or not keys <= set(table):
            return None
        try:
            kind = HolderKind(table["kind"])
        except ValueError:
            choices = ", ".join(k.value for k in HolderKind)
            self.problem("holder.kind", f"must be one of {choices}")
            return None
        name_field = self.field_reference(
            table["name_field"], "holder.name_field", by_name
        )
        code_field = self.field_reference(
            table["code_field"], "holder.code_field", by_name
        )
        if name_field is None or code_field is None:
            return None
        expected_code = (
            FieldKind.ID_NUMBER if kind is HolderKind.PERSON else FieldKind.USC_CODE
        )
        problems_before = len(self.problems)
        if by_name[code_field].kind is not expected_code:
            self.problem(
                "holder.code_field",
                f"a {kind.value}'s code field must be a {expected_code.value} field",
            )
        if by_name[name_field].kind is not FieldKind.STRING:
            self.problem("holder.name_field", "must be a string field")
        for reference in (name_field, code_field):
            if not by_name[reference].required:
                self.problem("holder", f"field {reference!r} must be required")
        if len(self.problems) > problems_before:
            return None
        return HolderSpec(kind, name_field, code_field)

    def validity(self, value: object) -> ValidityRules | None:
        table = self.table(
            value,
            "validity",
            frozenset(),
            frozenset({"long_term_allowed", "default_years", "max_years"}),
        )
        if table is None:
            return None
        problems_before = len(self.problems)
        long_term = self.flag(
            table.get("long_term_allowed", False), "validity.long_term_allowed"
        )
        default_years = (
            self.whole_number(
                table["default_years"], "validity.default_years", 1, _MAX_YEARS
            )
            if "default_years" in table
            else None
        )
        max_years = (
            self.whole_number(table["max_years"], "validity.max_years", 1, _MAX_YEARS)
            if "max_years" in table
            else None
        )
        if default_years is None and not long_term and "default_years" not in table:
            self.problem(
                "validity",
                "without default_years a licence is long-term: set long_term_allowed = true",
            )
        if default_years and max_years and default_years > max_years:
            self.problem("validity.default_years", "must not exceed max_years")
        if len(self.problems) > problems_before:
            return None
        return ValidityRules(long_term, default_years, max_years)

    def layout(
        self, value: object, by_name: Mapping[str, FieldSpec]
    ) -> LayoutSpec | None:
        table = self.table(
            value,
            "layout",
            frozenset({"style", "title", "columns", "issuer_label"}),
            frozenset({"subtitle", "header", "footnotes", "templates"}),
        )
        if table is None:
            return None
        problems_before = len(self.problems)
        style = None
        if "style" in table:
            try:
                style = LayoutStyle(table["style"])
            except ValueError:
                choices = ", ".join(s.value for s in LayoutStyle)
                self.problem("layout.style", f"must be one of {choices}")
        title = self.text(table.get("title"), "layout.title", 20)
        subtitle = (
            self.text(table["subtitle"], "layout.subtitle", 40)
            if "subtitle" in table
            else None
        )
        issuer_label = self.text(table.get("issuer_label"), "layout.issuer_label", 10)
        placed: list[str] = []
        header = self.field_list(
            table.get("header", []), "layout.header", by_name, placed
        )
        columns: list[tuple[str, ...]] = []
        raw_columns = table.get("columns")
        wanted_columns = 2 if style is LayoutStyle.BUSINESS_LICENCE else 1
        if not isinstance(raw_columns, list) or len(raw_columns) != wanted_columns:
            if style is not None:
                self.problem(
                    "layout.columns",
                    f"the {style.value} style has {wanted_columns} column(s) of field names",
                )
        else:
            for index, column in enumerate(raw_columns):
                columns.append(
                    self.field_list(column, f"layout.columns[{index}]", by_name, placed)
                )
        footnotes: tuple[str, ...] = ()
        raw_footnotes = table.get("footnotes", [])
        if not isinstance(raw_footnotes, list) or len(raw_footnotes) > 3:
            self.problem("layout.footnotes", "must be an array of at most 3 strings")
        else:
            footnotes = tuple(
                note
                for index, item in enumerate(raw_footnotes)
                if (note := self.text(item, f"layout.footnotes[{index}]", 80))
                is not None
            )
        templates = self.templates(table.get("templates", {}), by_name, placed)
        if len(self.problems) > problems_before or style is None:
            return None
        return LayoutSpec(
            style=style,
            title=title,
            subtitle=subtitle,
            issuer_label=issuer_label,
            header=header,
            columns=tuple(columns),
            footnotes=footnotes,
            templates=templates,
        )

    def field_list(
        self,
        value: object,
        path: str,
        by_name: Mapping[str, FieldSpec],
        placed: list[str],
    ) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.problem(path, "must be an array of field names")
            return ()
        names: list[str] = []
        for index, item in enumerate(value):
            reference = self.field_reference(item, f"{path}[{index}]", by_name)
            if reference is None:
                continue
            if reference in placed:
                self.problem(f"{path}[{index}]", f"field {reference!r} is placed twice")
                continue
            placed.append(reference)
            names.append(reference)
        return tuple(names)

    def templates(
        self, value: object, by_name: Mapping[str, FieldSpec], placed: list[str]
    ) -> dict[str, str]:
        if not isinstance(value, dict):
            self.problem("layout.templates", "must be a table of field name = template")
            return {}
        templates: dict[str, str] = {}
        for name, template in value.items():
            path = f"layout.templates.{name}"
            if name not in placed:
                self.problem(path, "names no field placed on the layout")
                continue
            text = self.text(template, path, 80)
            if text is None:
                continue
            try:
                references = [
                    ref
                    for _, ref, spec, conv in string.Formatter().parse(text)
                    if ref is not None
                ]
            except ValueError as exc:
                self.problem(path, f"is not a valid template: {exc}")
                continue
            bad = [ref for ref in references if ref not in by_name]
            if bad or name not in references:
                self.problem(
                    path,
                    "placeholders must be {field} names and include the field itself",
                )
                continue
            templates[name] = text
        return templates

    def qr_budget(self, fields: tuple[FieldSpec, ...]) -> None:
        worst = sum(
            _cbor_text_size(len(spec.name)) + _cbor_text_size(_worst_case_bytes(spec))
            for spec in fields
            if spec.on_qr
        )
        if worst > QR_FIELDS_BUDGET_BYTES:
            self.problem(
                "fields",
                f"the QR fields take up to {worst} bytes, more than the "
                f"{QR_FIELDS_BUDGET_BYTES} that keep the QR code at version 20 or below; "
                "lower their max_length or take fields off the QR code",
            )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _cbor_text_size(length: int) -> int:
    header = 1 if length < 24 else 2 if length < 256 else 3
    return header + length


def _worst_case_bytes(spec: FieldSpec) -> int:
    if spec.kind in (FieldKind.STRING, FieldKind.TEXT):
        return 3 * (spec.max_length or _MAX_STRING_LENGTH)  # CJK is 3 bytes in UTF-8
    if spec.kind is FieldKind.ENUM:
        return max(len(value.code) for value in spec.values)
    if spec.kind is FieldKind.DATE:
        return max(len("YYYY-MM-DD"), len(LONG_TERM) if spec.allow_long_term else 0)
    if spec.kind is FieldKind.MONEY:
        return 18  # 15 digits, the point and two decimals
    return 18  # a USCC or an identity number


def _last_day(start: dt.date, years: int) -> dt.date:
    try:
        anniversary = start.replace(year=start.year + years)
    except ValueError:  # 29 February, and the anniversary year is not a leap year
        anniversary = start.replace(year=start.year + years, day=28)
    return anniversary - dt.timedelta(days=1)


# Licence data.


def validate_licence_data(
    licence_type: LicenceType, data: object, *, today: dt.date | None = None
) -> dict[str, str]:
    """`data` normalised for `licence_type`, or LicenceDataError naming every problem.

    Values come back as strings in the type's field order: dates as YYYY-MM-DD or
    "long-term", amounts with two decimals, enum values as their codes, codes in
    upper case. Absent optional fields are left out.
    """
    if not isinstance(data, Mapping):
        raise LicenceDataError(
            licence_type.code,
            ["the licence data must be a JSON object of field names and values"],
        )
    today = today or dt.datetime.now(dt.UTC).date()
    problems: list[str] = []
    known = {spec.name for spec in licence_type.fields}
    for key in data:
        if not isinstance(key, str):
            problems.append("field names must be text")
        elif key not in known:
            problems.append(f"unknown field {key[:40]!r}")
    normalised: dict[str, str] = {}
    for spec in licence_type.fields:
        value = data.get(spec.name)
        where = f"{spec.name} ({spec.label.zh})"
        if value is None or (isinstance(value, str) and not value.strip()):
            if spec.required:
                problems.append(f"{where}: is required but missing")
            continue
        try:
            normalised[spec.name] = _normalise(spec, value, today)
        except _ValueProblem as problem:
            problems.append(f"{where}: {problem}")
    if problems:
        raise LicenceDataError(licence_type.code, problems)
    return normalised


class _ValueProblem(Exception):
    """Why one value does not fit its field; never carries the value."""


def _normalise(spec: FieldSpec, value: object, today: dt.date) -> str:
    if spec.kind is FieldKind.MONEY:
        return _normalise_money(value)
    if not isinstance(value, str):
        raise _ValueProblem(f"must be text, got {_json_type(value)}")
    text = unicodedata.normalize("NFC", value).strip()
    if spec.kind in (FieldKind.STRING, FieldKind.TEXT):
        return _normalise_text(spec, text)
    if spec.kind is FieldKind.DATE:
        return _normalise_date(spec, text)
    if spec.kind is FieldKind.ENUM:
        for choice in spec.values:
            if text in (choice.code, choice.label.zh):
                return choice.code
        codes = ", ".join(choice.code for choice in spec.values)
        raise _ValueProblem(f"must be one of {codes}")
    if spec.kind is FieldKind.USC_CODE:
        try:
            return validate_uscc(text)
        except InvalidUsccError as exc:
            raise _ValueProblem(str(exc)) from None
    return _normalise_id_number(text, today)


def _normalise_text(spec: FieldSpec, text: str) -> str:
    allowed_controls = "\n" if spec.kind is FieldKind.TEXT else ""
    if any(
        unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn")
        and char not in allowed_controls
        for char in text
    ):
        what = "line breaks, " if spec.kind is FieldKind.STRING else ""
        raise _ValueProblem(f"must not contain {what}control or unassigned characters")
    if spec.max_length is not None and len(text) > spec.max_length:
        raise _ValueProblem(
            f"is too long: {len(text)} characters, at most {spec.max_length}"
        )
    if spec.pattern is not None and not re.fullmatch(spec.pattern, text):
        raise _ValueProblem(f"must be {spec.pattern_hint}")
    return text


def _normalise_date(spec: FieldSpec, text: str) -> str:
    if text.lower() in _LONG_TERM_SPELLINGS:
        if not spec.allow_long_term:
            raise _ValueProblem("must be a date; this field cannot be long-term")
        return LONG_TERM
    if not _ISO_DATE.fullmatch(text):
        alternative = ' or "long-term"' if spec.allow_long_term else ""
        raise _ValueProblem(f"must be a date written YYYY-MM-DD{alternative}")
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise _ValueProblem("is not a real calendar date") from None
    if day.year < 1900:
        raise _ValueProblem("must be a date from 1900 on")
    return day.isoformat()


def _normalise_money(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _ValueProblem(f"must be an amount in yuan, got {_json_type(value)}")
    text = repr(value) if isinstance(value, float) else str(value).strip()
    if isinstance(value, float) and text.endswith(".0"):
        text = text[:-2]
    if not _MONEY.fullmatch(text):
        raise _ValueProblem(
            "must be an amount in yuan: digits with at most two decimals, as in 1000000.00"
        )
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise _ValueProblem("must be an amount in yuan") from None
    if amount >= _MONEY_LIMIT:
        raise _ValueProblem("is too large")
    return f"{amount:.2f}"


def _normalise_id_number(text: str, today: dt.date) -> str:
    # Messages name the rule broken, never a digit: the number identifies a person.
    number = text.upper()
    if len(number) != 18:
        raise _ValueProblem(f"must have 18 characters, got {len(number)}")
    if not number[:17].isdigit() or not (number[17].isdigit() or number[17] == "X"):
        raise _ValueProblem("must be 17 digits followed by a digit or X")
    if number[:2] not in PROVINCE_CODES:
        raise _ValueProblem("does not start with a province code")
    try:
        birth = dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise _ValueProblem("characters 7-14 are not a real date of birth") from None
    if birth.year < 1900 or birth > today + dt.timedelta(days=1):
        raise _ValueProblem("characters 7-14 are not a plausible date of birth")
    total = sum(
        int(digit) * weight for digit, weight in zip(number, _ID_NUMBER_WEIGHTS)
    )
    if number[17] != _ID_NUMBER_CHECK[total % 11]:
        raise _ValueProblem("the check character does not match (a mistyped digit?)")
    return number


def mask_id_number(number: str) -> str:
    """An identity number with all but its first 3 and last 4 characters hidden."""
    return number[:3] + "*" * (len(number) - 7) + number[-4:]


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__
