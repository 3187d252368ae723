"""The registry of agencies, API clients and staff users, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hsm_sim.errors import ErrorCategory
from pki.errors import (
    AgencyExistsError,
    AgencyNotFoundError,
    AuthenticationError,
    ClientExistsError,
    ClientNotFoundError,
    ForbiddenScopeError,
    InvalidNameError,
    InvalidRegionCodeError,
    InvalidRoleError,
    InvalidScopeError,
    InvalidUsccError,
    InvalidUsernameError,
    StaffUserExistsError,
    StaffUserNotFoundError,
    WeakPasswordError,
)
from pki.models import ApiClient, StaffUser
from pki.registry import (
    DEFAULT_CLIENT_SCOPES,
    ClientScope,
    StaffRole,
    add_api_client,
    add_staff_user,
    authenticate_client,
    authenticate_staff,
    disable_api_client,
    get_agency,
    get_staff_user,
    list_agencies,
    list_api_clients,
    register_agency,
    set_client_scopes,
)
from portal.db import make_engine, session_factory, upgrade_database

MARKET_BUREAU = dict(name="某某市市场监督管理局", uscc="91350100M000100Y43", region="350100")
JUSTICE_BUREAU = dict(name="荥阳市司法局", uscc="11410182005291054B", region="410182")
PASSWORD = "correct horse battery staple"


@pytest.fixture
def session(database_url: str) -> Iterator[Session]:
    upgrade_database(database_url)
    engine = make_engine(database_url)
    try:
        with session_factory(engine)() as session:
            yield session
    finally:
        engine.dispose()


# Agencies ----------------------------------------------------------------------------


def test_an_agency_is_registered_and_found_by_its_code(session: Session):
    record = register_agency(session, **MARKET_BUREAU)
    session.commit()
    assert (record.name, record.uscc, record.region_code) == (
        "某某市市场监督管理局", "91350100M000100Y43", "350100"
    )
    assert record.created_at.tzinfo is not None
    assert get_agency(session, " 91350100m000100y43 ") == record
    register_agency(session, **JUSTICE_BUREAU)
    assert [a.uscc for a in list_agencies(session)] == [
        "91350100M000100Y43", "11410182005291054B"
    ]


def test_a_duplicate_code_is_a_conflict_that_names_the_holder(session: Session):
    register_agency(session, **MARKET_BUREAU)
    session.commit()
    with pytest.raises(AgencyExistsError) as caught:
        register_agency(session, name="另一个局", uscc="91350100 M000100Y43", region="350100")
    assert str(caught.value) == (
        "an agency with unified social credit code 91350100M000100Y43 is already "
        "registered (某某市市场监督管理局)"
    )
    assert caught.value.category is ErrorCategory.CONFLICT


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"uscc": "91350100M000100Y44"}, InvalidUsccError, "check character should be 3"),
        ({"region": "35010"}, InvalidRegionCodeError, "6-digit GB/T 2260"),
        ({"region": "990000"}, InvalidRegionCodeError, "province-level code"),
        ({"name": "   "}, InvalidNameError, "the agency name is empty"),
        ({"name": "局\x07"}, InvalidNameError, "control or invisible"),
        ({"name": "局" * 201}, InvalidNameError, "longer than 200"),
    ],
)
def test_bad_agency_input_is_refused_with_a_reason(
    session: Session, changes: dict, error: type, message: str
):
    with pytest.raises(error, match=message) as caught:
        register_agency(session, **{**MARKET_BUREAU, **changes})
    assert caught.value.category is ErrorCategory.BAD_REQUEST
    assert list_agencies(session) == []


def test_an_unknown_agency_is_not_found(session: Session):
    with pytest.raises(AgencyNotFoundError, match="no agency with unified social") as caught:
        get_agency(session, "914403001922038216")
    assert caught.value.category is ErrorCategory.NOT_FOUND


# API clients -------------------------------------------------------------------------


def test_an_api_client_secret_is_shown_once_and_stored_only_as_its_hash(session: Session):
    register_agency(session, **MARKET_BUREAU)
    client, secret = add_api_client(session, agency_uscc=MARKET_BUREAU["uscc"], name="审批系统")
    session.commit()
    assert client.client_id.startswith("cl_")
    assert secret.startswith("ycs_") and len(secret) == 4 + 43  # 32 bytes, base64url
    assert (client.agency_uscc, client.name, client.disabled) == (
        "91350100M000100Y43", "审批系统", False
    )
    stored = session.scalars(select(ApiClient)).one()
    assert stored.secret_sha256 == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(vars(stored))
    assert authenticate_client(session, client.client_id, secret) == client
    assert list_api_clients(session, MARKET_BUREAU["uscc"]) == [client]


def test_client_authentication_never_says_which_part_was_wrong(session: Session):
    register_agency(session, **MARKET_BUREAU)
    client, secret = add_api_client(session, agency_uscc=MARKET_BUREAU["uscc"], name="app")
    _, other_secret = add_api_client(session, agency_uscc=MARKET_BUREAU["uscc"], name="app2")
    attempts = [
        (client.client_id, other_secret),
        (client.client_id, secret[:-1]),
        (client.client_id, ""),
        ("cl_0000000000000000", secret),
        ("", ""),
    ]
    for client_id, presented in attempts:
        with pytest.raises(AuthenticationError) as caught:
            authenticate_client(session, client_id, presented)
        assert str(caught.value) == "invalid API client credentials"
        assert caught.value.category is ErrorCategory.UNAUTHORIZED


def test_a_disabled_client_is_refused(session: Session):
    register_agency(session, **MARKET_BUREAU)
    client, secret = add_api_client(session, agency_uscc=MARKET_BUREAU["uscc"], name="app")
    disabled = disable_api_client(session, client.client_id)
    session.commit()
    assert disabled.disabled and disabled.disabled_at is not None
    with pytest.raises(AuthenticationError, match="this API client has been disabled"):
        authenticate_client(session, client.client_id, secret)
    with pytest.raises(AuthenticationError, match="invalid API client credentials"):
        authenticate_client(session, client.client_id, "ycs_wrong")
    with pytest.raises(ClientNotFoundError):
        disable_api_client(session, "cl_nope")


def test_a_client_may_do_only_what_its_scopes_allow(session: Session):
    register_agency(session, **MARKET_BUREAU)
    plain, plain_secret = add_api_client(
        session, agency_uscc=MARKET_BUREAU["uscc"], name="plain"
    )
    assert plain.scopes == DEFAULT_CLIENT_SCOPES
    # Revoking licences and handing out usage codes are never given by default.
    assert ClientScope.LICENCE_MANAGE not in plain.scopes
    assert ClientScope.LICENCE_USAGE_CODE not in plain.scopes
    with pytest.raises(ForbiddenScopeError, match="licence:manage") as refused:
        plain.require(ClientScope.LICENCE_MANAGE)
    assert refused.value.category is ErrorCategory.FORBIDDEN

    admin, admin_secret = add_api_client(
        session,
        agency_uscc=MARKET_BUREAU["uscc"],
        name="admin",
        scopes=["licence:manage", "licence:read"],
    )
    session.commit()
    authenticated = authenticate_client(session, admin.client_id, admin_secret)
    assert authenticated.scopes == {ClientScope.LICENCE_MANAGE, ClientScope.LICENCE_READ}
    authenticated.require(ClientScope.LICENCE_MANAGE)
    with pytest.raises(ForbiddenScopeError):
        authenticated.require(ClientScope.SEAL_STAMP)

    widened = set_client_scopes(session, plain.client_id, "seal:stamp licence:usage-code")
    session.commit()
    assert authenticate_client(session, plain.client_id, plain_secret).scopes == (
        widened.scopes
    ) == {ClientScope.SEAL_STAMP, ClientScope.LICENCE_USAGE_CODE}


def test_an_unknown_scope_is_refused_with_the_known_ones(session: Session):
    register_agency(session, **MARKET_BUREAU)
    with pytest.raises(InvalidScopeError, match="licence:manage"):
        add_api_client(
            session, agency_uscc=MARKET_BUREAU["uscc"], name="x", scopes=["root:everything"]
        )
    assert list_api_clients(session, MARKET_BUREAU["uscc"]) == []


def test_client_names_are_unique_within_an_agency(session: Session):
    register_agency(session, **MARKET_BUREAU)
    register_agency(session, **JUSTICE_BUREAU)
    add_api_client(session, agency_uscc=MARKET_BUREAU["uscc"], name="app")
    add_api_client(session, agency_uscc=JUSTICE_BUREAU["uscc"], name="app")
    with pytest.raises(ClientExistsError, match="already has an API client named 'app'"):
        add_api_client(session, agency_uscc=MARKET_BUREAU["uscc"], name="app")
    with pytest.raises(AgencyNotFoundError):
        add_api_client(session, agency_uscc="914403001922038216", name="app")


def test_a_client_added_meanwhile_is_a_conflict_not_a_database_error(
    session: Session, monkeypatch: pytest.MonkeyPatch
):
    register_agency(session, **MARKET_BUREAU)
    session.commit()
    check = session.scalar

    def check_then_lose_the_race(statement, *args, **kwargs):
        found = check(statement, *args, **kwargs)
        if "FROM api_client" in str(statement):
            # Another request adds the same client after our check, before our insert.
            with Session(session.get_bind()) as other:
                add_api_client(other, agency_uscc=MARKET_BUREAU["uscc"], name="app")
                other.commit()
        return found

    monkeypatch.setattr(session, "scalar", check_then_lose_the_race)
    with pytest.raises(ClientExistsError, match="already has an API client named 'app'"):
        add_api_client(session, agency_uscc=MARKET_BUREAU["uscc"], name="app")
    session.rollback()
    monkeypatch.undo()
    assert [c.name for c in list_api_clients(session, MARKET_BUREAU["uscc"])] == ["app"]


# Staff users -------------------------------------------------------------------------


def test_staff_users_sign_in_with_argon2_hashed_passwords(session: Session):
    register_agency(session, **MARKET_BUREAU)
    clerk = add_staff_user(
        session, username=" Zhang.Wei ", password=PASSWORD, role="agency-clerk",
        agency_uscc=MARKET_BUREAU["uscc"],
    )
    operator = add_staff_user(session, username="ops", password=PASSWORD,
                              role=StaffRole.OPERATOR)
    session.commit()
    assert (clerk.username, clerk.role, clerk.agency_uscc) == (
        "zhang.wei", StaffRole.AGENCY_CLERK, "91350100M000100Y43"
    )
    assert (operator.role, operator.agency_uscc) == (StaffRole.OPERATOR, None)
    stored = session.scalars(select(StaffUser).where(StaffUser.username == "zhang.wei")).one()
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash
    assert authenticate_staff(session, "ZHANG.WEI", PASSWORD) == clerk
    assert get_staff_user(session, "ops") == operator


def test_staff_authentication_never_says_which_part_was_wrong(session: Session):
    add_staff_user(session, username="ops", password=PASSWORD, role="operator")
    for username, password in (("ops", PASSWORD + "!"), ("nobody", PASSWORD)):
        with pytest.raises(AuthenticationError) as caught:
            authenticate_staff(session, username, password)
        assert str(caught.value) == "invalid username or password"


def test_an_outdated_password_hash_is_upgraded_at_sign_in(session: Session):
    add_staff_user(session, username="ops", password=PASSWORD, role="operator")
    user = session.scalars(select(StaffUser)).one()
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    user.password_hash = weak.hash(PASSWORD)
    session.commit()
    authenticate_staff(session, "ops", PASSWORD)
    session.commit()
    assert not PasswordHasher().check_needs_rehash(
        session.scalars(select(StaffUser)).one().password_hash
    )


@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"role": "operator"}, InvalidRoleError, "belongs to no agency"),
        ({"agency_uscc": None}, InvalidRoleError, "needs an agency"),
        ({"role": "boss"}, InvalidRoleError, "unknown staff role 'boss'; use one of"),
        ({"username": "x"}, InvalidUsernameError, "3-64 characters"),
        ({"username": "张伟"}, InvalidUsernameError, "lowercase letters"),
        ({"password": "short"}, WeakPasswordError, "at least 12 characters"),
        ({"password": "a" * 20}, WeakPasswordError, "5 different characters"),
    ],
)
def test_bad_staff_input_is_refused_with_a_reason(
    session: Session, changes: dict, error: type, message: str
):
    register_agency(session, **MARKET_BUREAU)
    arguments = dict(username="clerk", password=PASSWORD, role="agency-clerk",
                     agency_uscc=MARKET_BUREAU["uscc"])
    with pytest.raises(error, match=message) as caught:
        add_staff_user(session, **{**arguments, **changes})
    assert caught.value.category is ErrorCategory.BAD_REQUEST
    assert PASSWORD not in str(caught.value)


def test_usernames_are_unique(session: Session):
    add_staff_user(session, username="ops", password=PASSWORD, role="operator")
    with pytest.raises(StaffUserExistsError, match="the username 'ops' is taken"):
        add_staff_user(session, username="OPS", password=PASSWORD, role="operator")
    with pytest.raises(StaffUserNotFoundError):
        get_staff_user(session, "nobody")


def test_the_database_refuses_an_operator_tied_to_an_agency(session: Session):
    agency = register_agency(session, **MARKET_BUREAU)
    session.commit()
    with pytest.raises(IntegrityError):
        session.execute(
            text(
                "INSERT INTO staff_user (username, password_hash, role, agency_id, created_at) "
                "VALUES ('x', 'h', 'operator', :agency, CURRENT_TIMESTAMP)"
            ),
            {"agency": agency.id},
        )
    session.rollback()
