"""Licence types: the shipped data files, their checks at load, and licence data checks."""

from __future__ import annotations

import copy
import datetime as dt
import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from certs.errors import (
    LicenceDataError,
    LicenceTypeDefinitionError,
    UnknownLicenceTypeError,
)
from certs.types import (
    LICENCE_TYPES_DIR,
    LONG_TERM,
    QR_FIELDS_BUDGET_BYTES,
    FieldKind,
    HolderKind,
    LicenceType,
    ValidityRules,
    default_licence_types,
    describe_types,
    get_licence_type,
    load_licence_types,
    mask_id_number,
    parse_licence_type,
    validate_licence_data,
)
from hsm_sim.errors import ErrorCategory

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "licences"
BUSINESS_LICENCE = "11100000YXML00000Q001"
FOOD_PERMIT = "11100000YXML00000Q002"
TOUR_GUIDE_CARD = "11100000YXML00000Q003"
# The sample number of GB 11643-1999 itself: valid, and nobody's.
SAMPLE_ID_NUMBER = "11010519491231002X"


def example(code: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / f"{code}.json").read_text(encoding="utf-8"))


def business_document() -> dict[str, Any]:
    return tomllib.loads(
        (LICENCE_TYPES_DIR / "business-licence.toml").read_text(encoding="utf-8")
    )


def problems_of(document: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(LicenceTypeDefinitionError) as caught:
        parse_licence_type(document, source="test.toml")
    assert caught.value.category is ErrorCategory.INTERNAL
    assert str(caught.value).startswith("licence type test.toml")
    return caught.value.problems


def data_problems(code: str, data: object) -> tuple[str, ...]:
    with pytest.raises(LicenceDataError) as caught:
        validate_licence_data(get_licence_type(code), data)
    assert caught.value.category is ErrorCategory.BAD_REQUEST
    assert caught.value.type_code == code
    return caught.value.problems


# The shipped types.


def test_shipped_types_load() -> None:
    types = default_licence_types()
    assert list(types) == [BUSINESS_LICENCE, FOOD_PERMIT, TOUR_GUIDE_CARD]
    business = types[BUSINESS_LICENCE]
    assert business.name.zh == "营业执照"
    assert [spec.name for spec in business.fields] == [
        "uscc",
        "name",
        "company_type",
        "legal_representative",
        "registered_capital",
        "established_on",
        "business_term",
        "business_scope",
        "address",
    ]
    assert types[FOOD_PERMIT].name.zh == "食品经营许可证"
    person = types[TOUR_GUIDE_CARD]
    assert person.holder.kind is HolderKind.PERSON
    assert person.field(person.holder.code_field).kind is FieldKind.ID_NUMBER
    assert load_licence_types() is not types  # loading again reads the files again
    assert get_licence_type(FOOD_PERMIT) is types[FOOD_PERMIT]


def test_every_type_has_an_example() -> None:
    assert sorted(path.stem for path in EXAMPLES.glob("*.json")) == sorted(
        default_licence_types()
    )


@pytest.mark.parametrize("code", [BUSINESS_LICENCE, FOOD_PERMIT, TOUR_GUIDE_CARD])
def test_example_validates_as_it_is(code: str) -> None:
    data = example(code)
    normalised = validate_licence_data(get_licence_type(code), data)
    assert normalised == data  # the examples are already in normal form


def test_unknown_type() -> None:
    with pytest.raises(UnknownLicenceTypeError) as caught:
        get_licence_type("11100000YXML00000Q999")
    assert caught.value.category is ErrorCategory.NOT_FOUND
    assert "11100000YXML00000Q999" in str(caught.value)


def test_describe_types_is_json() -> None:
    described = describe_types()
    assert json.loads(json.dumps(described, ensure_ascii=False)) == described
    by_code = {entry["code"]: entry for entry in described}
    business = by_code[BUSINESS_LICENCE]
    assert business["name"] == {"zh": "营业执照", "en": "Business licence"}
    assert business["holder"]["kind"] == "organisation"
    assert business["qr_fields"] == ["uscc", "name"]
    assert business["validity"]["long_term_allowed"] is True
    assert business["layout"]["style"] == "business-licence"
    company_type = next(f for f in business["fields"] if f["name"] == "company_type")
    assert {"code": "llc", "zh": "有限责任公司", "en": "Limited liability company"} in (
        company_type["values"]
    )
    guide = by_code[TOUR_GUIDE_CARD]
    id_field = next(f for f in guide["fields"] if f["name"] == "id_number")
    assert id_field["on_qr"] and id_field["masked_on_qr"]


def test_the_qr_never_carries_a_full_identity_number() -> None:
    guide = get_licence_type(TOUR_GUIDE_CARD)
    data = validate_licence_data(guide, example(TOUR_GUIDE_CARD))
    qr = guide.qr_values(data)
    assert qr == {
        "card_number": "D-4403-001234",
        "name": "张三",
        "id_number": "110***********002X",
    }
    assert mask_id_number(SAMPLE_ID_NUMBER) == "110***********002X"
    # The field that identifies the holder is not on the printed layout either.
    layout = guide.layout
    assert "id_number" not in layout.header + sum(layout.columns, ())


def test_disclosable_fields() -> None:
    guide = get_licence_type(TOUR_GUIDE_CARD)
    assert [spec.name for spec in guide.disclosable_fields] == [
        "card_number",
        "name",
        "gender",
        "id_number",
        "level",
        "languages",
        "affiliation",
        "qualification_number",
    ]
    permit = get_licence_type(FOOD_PERMIT)
    assert "supervisor" not in [spec.name for spec in permit.disclosable_fields]


# Licence data.


def test_normalisation() -> None:
    data = example(BUSINESS_LICENCE) | {
        "uscc": " 91440300ma5gyx001n ",
        "company_type": "有限责任公司（自然人投资或控股）",
        "registered_capital": 1000000,
        "business_term": "长期",
        "name": "  深圳市印信示例科技有限公司 ",
    }
    normalised = validate_licence_data(get_licence_type(BUSINESS_LICENCE), data)
    assert normalised["uscc"] == "91440300MA5GYX001N"
    assert normalised["company_type"] == "llc-natural-person"
    assert normalised["registered_capital"] == "1000000.00"
    assert normalised["business_term"] == LONG_TERM
    assert normalised["name"] == "深圳市印信示例科技有限公司"
    guide = example(TOUR_GUIDE_CARD) | {"id_number": SAMPLE_ID_NUMBER.lower()}
    del guide["qualification_number"]  # optional: left out of the result
    normalised = validate_licence_data(get_licence_type(TOUR_GUIDE_CARD), guide)
    assert normalised["id_number"] == SAMPLE_ID_NUMBER
    assert "qualification_number" not in normalised


@pytest.mark.parametrize(
    ("amount", "normalised"),
    [
        (0, "0.00"),
        (12.5, "12.50"),
        ("1000000", "1000000.00"),
        ("0.05", "0.05"),
        (3e6, "3000000.00"),
    ],
)
def test_money(amount: object, normalised: str) -> None:
    data = example(BUSINESS_LICENCE) | {"registered_capital": amount}
    result = validate_licence_data(get_licence_type(BUSINESS_LICENCE), data)
    assert result["registered_capital"] == normalised


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("name", None, "name (名称): is required but missing"),
        ("name", "   ", "name (名称): is required but missing"),
        ("name", 42, "name (名称): must be text, got a number"),
        ("name", ["a"], "name (名称): must be text, got an array"),
        ("name", "深圳" * 31, "name (名称): is too long: 62 characters, at most 60"),
        (
            "name",
            "深圳\n示例",
            "must not contain line breaks, control or unassigned characters",
        ),
        (
            "name",
            "深圳\u202e示例",
            "must not contain line breaks, control or unassigned",
        ),
        ("established_on", "2021/03/15", "must be a date written YYYY-MM-DD"),
        (
            "established_on",
            "2021-02-30",
            "established_on (成立日期): is not a real calendar date",
        ),
        ("established_on", "1899-12-31", "must be a date from 1900 on"),
        (
            "established_on",
            "long-term",
            "must be a date; this field cannot be long-term",
        ),
        (
            "business_term",
            "forever",
            'must be a date written YYYY-MM-DD or "long-term"',
        ),
        (
            "uscc",
            "91440300MA5GYX001X",
            (
                "uscc (统一社会信用代码): the unified social credit code's check "
                "character should be N, got X"
            ),
        ),
        ("uscc", "91440300MA5GYX001", "has 18 characters, got 17"),
        (
            "company_type",
            "plc",
            "company_type (类型): must be one of llc, llc-sole-natural-person",
        ),
        ("registered_capital", "1,000,000", "must be an amount in yuan: digits"),
        ("registered_capital", 1.234, "with at most two decimals"),
        ("registered_capital", -5, "must be an amount in yuan"),
        ("registered_capital", True, "must be an amount in yuan, got true/false"),
        ("registered_capital", "1" * 16, "must be an amount in yuan"),
        ("business_scope", "经" * 901, "is too long: 901 characters, at most 900"),
    ],
)
def test_each_kind_of_bad_data_is_named(
    field: str, value: object, problem: str
) -> None:
    data = example(BUSINESS_LICENCE) | {field: value}
    problems = data_problems(BUSINESS_LICENCE, data)
    assert len(problems) == 1
    assert problem in problems[0]


def test_text_fields_keep_line_breaks() -> None:
    data = example(BUSINESS_LICENCE) | {
        "business_scope": "一般经营项目：软件开发。\n许可经营项目：无。"
    }
    result = validate_licence_data(get_licence_type(BUSINESS_LICENCE), data)
    assert "\n" in result["business_scope"]


def test_patterns_are_explained() -> None:
    data = example(FOOD_PERMIT) | {"number": "JY44403050012345"}
    (problem,) = data_problems(FOOD_PERMIT, data)
    assert problem == (
        "number (许可证编号): must be JY followed by 14 digits, the first of them 1, 2 or 3"
    )


def test_every_problem_is_named_at_once() -> None:
    data = example(FOOD_PERMIT)
    del data["operator"]
    data |= {
        "number": "JY1",
        "uscc": "92440305MA5GYX002A",
        "business_form": "bakery",
        "colour": "red",
        "premises": "号" * 121,
    }
    problems = data_problems(FOOD_PERMIT, data)
    assert len(problems) == 6
    text = "; ".join(problems)
    for expected in (
        "unknown field 'colour'",
        "operator (经营者名称): is required but missing",
        "number (许可证编号): must be JY followed by 14 digits",
        "uscc (社会信用代码): the unified social credit code's check character",
        "business_form (主体业态): must be one of food-sales, catering, canteen",
        "premises (经营场所): is too long: 121 characters, at most 120",
    ):
        assert expected in text


def test_data_must_be_an_object() -> None:
    assert data_problems(FOOD_PERMIT, ["a"]) == (
        "the licence data must be a JSON object of field names and values",
    )
    assert "field names must be text" in data_problems(
        FOOD_PERMIT, example(FOOD_PERMIT) | {1: "x"}
    )


@pytest.mark.parametrize(
    ("id_number", "problem"),
    [
        ("11010519491231002", "must have 18 characters, got 17"),
        ("1101051949123100AX", "must be 17 digits followed by a digit or X"),
        ("99010519491231002X", "does not start with a province code"),
        ("11010519491331002X", "characters 7-14 are not a real date of birth"),
        ("11010518891231002X", "characters 7-14 are not a plausible date of birth"),
        ("11010520991231002X", "characters 7-14 are not a plausible date of birth"),
        (
            "110105194912310021",
            "the check character does not match (a mistyped digit?)",
        ),
        (
            "11010519491231012X",
            "the check character does not match (a mistyped digit?)",
        ),
    ],
)
def test_identity_numbers_are_checked_but_never_echoed(
    id_number: str, problem: str
) -> None:
    data = example(TOUR_GUIDE_CARD) | {"id_number": id_number}
    with pytest.raises(LicenceDataError) as caught:
        validate_licence_data(
            get_licence_type(TOUR_GUIDE_CARD), data, today=dt.date(2025, 6, 1)
        )
    (reported,) = caught.value.problems
    assert reported == f"id_number (公民身份号码): {problem}"
    message = str(caught.value)
    assert id_number not in message
    # Not even a run of its digits: birth dates and sequence numbers are personal data.
    for start in range(len(id_number) - 5):
        assert id_number[start : start + 6] not in message


# Validity.


def test_validity_rules() -> None:
    permit = get_licence_type(FOOD_PERMIT).validity
    issued = dt.date(2025, 6, 1)
    assert permit.valid_until(issued) == dt.date(2030, 5, 31)
    assert permit.valid_until(issued, dt.date(2027, 1, 1)) == dt.date(2027, 1, 1)
    with pytest.raises(
        LicenceDataError, match="valid at most 5 years, until 2030-05-31"
    ):
        permit.valid_until(issued, dt.date(2030, 6, 1))
    with pytest.raises(LicenceDataError, match="cannot be long-term"):
        permit.valid_until(issued, long_term=True)
    with pytest.raises(LicenceDataError, match="must come after the issue date"):
        permit.valid_until(issued, issued)
    business = get_licence_type(BUSINESS_LICENCE).validity
    assert business.valid_until(issued) is None
    assert business.valid_until(issued, long_term=True) is None
    with pytest.raises(LicenceDataError, match="either an end date or a long-term"):
        business.valid_until(issued, dt.date(2030, 1, 1), long_term=True)
    leap = ValidityRules(default_years=3, max_years=3)
    assert leap.valid_until(dt.date(2024, 2, 29)) == dt.date(2027, 2, 27)
    assert get_licence_type(TOUR_GUIDE_CARD).validity.valid_until(issued) == dt.date(
        2028, 5, 31
    )


# Type files.


def test_a_valid_document_parses() -> None:
    parsed = parse_licence_type(business_document(), source="copy.toml")
    assert isinstance(parsed, LicenceType)
    assert parsed.source == "copy.toml"
    assert parsed.fields == get_licence_type(BUSINESS_LICENCE).fields


def test_unknown_keys_are_refused_everywhere() -> None:
    document = business_document()
    document["colour"] = "red"
    document["fields"][0]["hidden"] = True
    document["layout"]["font"] = "Song"
    document["validity"]["grace_days"] = 3
    problems = problems_of(document)
    assert len(problems) == 4
    assert any(p.startswith("colour: unknown key") for p in problems)
    assert any(p.startswith("fields[0].hidden: unknown key") for p in problems)
    assert any(p.startswith("layout.font: unknown key") for p in problems)
    assert any(p.startswith("validity.grace_days: unknown key") for p in problems)


def _mutated(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(business_document())
    change(document)
    return document


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda d: d.pop("code"), "code: the type code has 21 characters"),
        (
            lambda d: d.update(code="11100000YXML00000R001"),
            (
                "code: the type code's defining department: the unified social credit "
                "code's check character should be Q, got R"
            ),
        ),
        (lambda d: d.pop("layout"), "layout: is missing"),
        (lambda d: d["name"].pop("en"), "name.en: is missing"),
        (
            lambda d: d["fields"][2].update(type="strng"),
            "fields[2].type: unknown type 'strng'",
        ),
        (
            lambda d: d["fields"][1].pop("max_length"),
            "fields[1].max_length: is missing",
        ),
        (
            lambda d: d["fields"][1].update(max_length=0),
            "fields[1].max_length: must be a whole",
        ),
        (
            lambda d: d["fields"][1].update(name="Name"),
            "fields[1].name: must be 1 to 32",
        ),
        (
            lambda d: d["fields"][1].update(name="uscc"),
            "fields[1].name: 'uscc' is declared twice",
        ),
        (
            lambda d: d["fields"][1].update(on_qr="yes"),
            "fields[1].on_qr: must be true or false",
        ),
        (
            lambda d: d["fields"][0].update(max_length=5),
            "fields[0].max_length: does not apply",
        ),
        (lambda d: d["fields"][2].pop("values"), "fields[2].values: is missing"),
        (
            lambda d: d["fields"][2]["values"].append(
                dict(d["fields"][2]["values"][0])
            ),
            "fields[2].values[7]: code 'llc' or label '有限责任公司' appears twice",
        ),
        (
            lambda d: d["fields"][1].update(pattern="[a-"),
            "fields[1].pattern: is not a valid",
        ),
        (
            lambda d: d["fields"][1].update(pattern="[a-z]+"),
            "fields[1].pattern_hint: is missing",
        ),
        (
            lambda d: d["fields"][1].update(masked_on_qr=True),
            "does not apply to a string field",
        ),
        (
            lambda d: d.update(number_field="licence_no"),
            "number_field: 'licence_no' is not a",
        ),
        (
            lambda d: d["holder"].update(kind="person"),
            "holder.code_field: a person's code field",
        ),
        (lambda d: d["holder"].update(kind="robot"), "holder.kind: must be one of"),
        (
            lambda d: d["validity"].update(long_term_allowed=False),
            "validity: without default_years a licence is long-term",
        ),
        (
            lambda d: d.update(validity={"default_years": 6, "max_years": 5}),
            "validity.default_years: must not exceed max_years",
        ),
        (lambda d: d["layout"].update(style="poster"), "layout.style: must be one of"),
        (
            lambda d: d["layout"].update(columns=[["name"]]),
            "layout.columns: the business-licence style has 2 column(s)",
        ),
        (
            lambda d: d["layout"]["columns"][0].append("founder"),
            "layout.columns[0][4]: 'founder' is not a declared field",
        ),
        (
            lambda d: d["layout"]["columns"][1].append("name"),
            "layout.columns[1][4]: field 'name' is placed twice",
        ),
        (
            lambda d: d["layout"]["templates"].update(business_term="{opened} 至"),
            "layout.templates.business_term: placeholders must be {field} names",
        ),
        (
            lambda d: d["layout"]["templates"].update(nothing="{name}"),
            "layout.templates.nothing: names no field placed on the layout",
        ),
        (
            lambda d: d["layout"].update(footnotes=["a", "b", "c", "d"]),
            "at most 3 strings",
        ),
        (
            lambda d: d["layout"].update(title=""),
            "layout.title: must be a non-empty string",
        ),
        (
            lambda d: d["fields"][3].update(on_qr=True),
            f"more than the {QR_FIELDS_BUDGET_BYTES} that keep the QR code at version 20",
        ),
    ],
)
def test_each_problem_in_a_type_file_is_named(change: Any, problem: str) -> None:
    problems = problems_of(_mutated(change))
    assert any(problem in p for p in problems), problems


def test_identity_numbers_go_on_the_qr_only_masked() -> None:
    document = tomllib.loads(
        (LICENCE_TYPES_DIR / "tour-guide-card.toml").read_text(encoding="utf-8")
    )
    id_field = next(f for f in document["fields"] if f["name"] == "id_number")
    del id_field["masked_on_qr"]
    assert problems_of(document) == (
        (
            "fields[3].on_qr: an identity number goes on the QR code only masked "
            "(masked_on_qr = true)"
        ),
    )
    id_field.update(on_qr=False, masked_on_qr=True)
    assert problems_of(document) == ("fields[3].masked_on_qr: needs on_qr = true",)


def test_several_problems_in_a_type_file_are_named_together() -> None:
    document = business_document()
    document["code"] = "BAD"
    document["fields"][1]["type"] = "words"
    document["layout"]["style"] = "poster"
    problems = problems_of(document)
    assert len(problems) >= 3
    assert str(len(problems)) + " problems" in str(
        pytest.raises(
            LicenceTypeDefinitionError, parse_licence_type, document, source="x"
        ).value
    )


def test_loading_a_directory(tmp_path: Path) -> None:
    with pytest.raises(LicenceTypeDefinitionError, match="holds no licence type files"):
        load_licence_types(tmp_path)
    source = (LICENCE_TYPES_DIR / "business-licence.toml").read_text(encoding="utf-8")
    (tmp_path / "a.toml").write_text(source, encoding="utf-8")
    assert list(load_licence_types(tmp_path)) == [BUSINESS_LICENCE]
    (tmp_path / "b.toml").write_text(source, encoding="utf-8")
    with pytest.raises(
        LicenceTypeDefinitionError,
        match=f"b.toml: code {BUSINESS_LICENCE} is already declared by a.toml",
    ):
        load_licence_types(tmp_path)
    (tmp_path / "b.toml").write_text("code = [", encoding="utf-8")
    with pytest.raises(LicenceTypeDefinitionError, match="b.toml: is not valid TOML"):
        load_licence_types(tmp_path)
