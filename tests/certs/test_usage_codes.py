"""Usage codes (用证码): readable codes stored only hashed, bounded in time and uses,
every fetch logged whatever its outcome, one use taken once even under concurrency."""

from __future__ import annotations

import datetime as dt
import math
import re
import threading

import pytest
from sqlalchemy import select

from certs.issuance import LicenceRegistry, LicenceStateError
from certs.models import UsageCodeRow, UsageFetchOutcome, UsageFetchRow
from certs.usage_codes import (
    CODE_ALPHABET,
    CODE_LENGTH,
    DEFAULT_PURPOSE,
    MAX_USES,
    UsageCodeDocument,
    UsageCodeError,
    UsageCodeRejectedError,
    UsageCodes,
    normalise_usage_code,
)
from hsm_sim.errors import ErrorCategory
from tests.certs.conftest import GuideCards, MovableClock
from tests.helpers.node import Node

SHOWN = re.compile(r"[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}")


def outcomes(codes: UsageCodes, identifier: str) -> list[UsageFetchOutcome]:
    return [entry.outcome for entry in reversed(codes.usage_log(identifier))]


def test_codes_are_readable_unambiguous_and_strong_enough() -> None:
    assert len(set(CODE_ALPHABET)) == len(CODE_ALPHABET) == 32
    assert not set("ILOU") & set(CODE_ALPHABET)
    assert CODE_LENGTH * math.log2(len(CODE_ALPHABET)) >= 40
    assert normalise_usage_code("7k3qm x2p9a") == "7K3QMX2P9A"
    assert normalise_usage_code("oil0o-11111") == "01100" + "11111"
    for bad in ("", "7K3QM", "7K3QM-X2P9A-1", "7K3QM-X2P9U", "７K3QM-X2P9A", 42):
        assert normalise_usage_code(bad) is None  # type: ignore[arg-type]


def test_fetch_once_then_used_up_every_attempt_logged(
    licences: LicenceRegistry, guide_cards: GuideCards, licence_node: Node
) -> None:
    issued = guide_cards.issue()
    code, expires_at = licences.create_usage_code(
        issued.identifier, actor="holder:web", purpose="银行开户"
    )
    assert SHOWN.fullmatch(code)
    assert (
        dt.timedelta(minutes=9)
        < expires_at - dt.datetime.now(dt.UTC)
        <= (dt.timedelta(minutes=10))
    )
    with licence_node.sessions() as session:
        stored = session.scalars(
            select(UsageCodeRow).order_by(UsageCodeRow.id.desc()).limit(1)
        ).one()
        columns = [str(getattr(stored, c.key)) for c in UsageCodeRow.__table__.columns]
    assert not any(code.replace("-", "") in value for value in columns)
    assert (stored.uses_allowed, stored.uses_left, stored.purpose) == (1, 1, "银行开户")

    pdf = licences.fetch_by_usage_code(code, requester="client:cl_bank")
    assert pdf == issued.pdf == licences.licence_pdf(issued.identifier)
    with pytest.raises(UsageCodeRejectedError, match="used up") as again:
        licences.fetch_by_usage_code(code, requester="client:cl_bank")
    assert again.value.outcome is UsageFetchOutcome.USED_UP
    assert again.value.category is ErrorCategory.FORBIDDEN
    assert outcomes(licences.usage_codes, issued.identifier) == [
        UsageFetchOutcome.FETCHED,
        UsageFetchOutcome.USED_UP,
    ]
    assert licences.usage_codes.usage_log(issued.identifier)[0].requester == (
        "client:cl_bank"
    )


def test_codes_read_back_loosely_and_allow_several_uses(
    licences: LicenceRegistry, guide_cards: GuideCards
) -> None:
    issued = guide_cards.issue()
    code, _ = licences.create_usage_code(
        issued.identifier, actor="holder", purpose="招投标", uses=3
    )
    spoken = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    for _ in range(3):
        assert licences.fetch_by_usage_code(spoken, requester="r") == issued.pdf
    with pytest.raises(UsageCodeRejectedError):
        licences.fetch_by_usage_code(code, requester="r")


def test_a_fetch_can_name_the_licence_it_hands_out(
    licences: LicenceRegistry, guide_cards: GuideCards
) -> None:
    """For naming the download: the identifier comes with the PDF, and the fetch is
    one use of the code like any other."""
    issued = guide_cards.issue()
    code, _ = licences.create_usage_code(issued.identifier, actor="holder", uses=2)
    document = licences.fetch_by_usage_code_document(code, requester="client:cl_bank")
    assert document == UsageCodeDocument(issued.identifier, issued.pdf)
    assert licences.fetch_by_usage_code(code, requester="client:cl_bank") == (
        issued.pdf
    )
    with pytest.raises(UsageCodeRejectedError, match="used up") as refused:
        licences.fetch_by_usage_code_document(code, requester="client:cl_bank")
    assert refused.value.outcome is UsageFetchOutcome.USED_UP
    assert outcomes(licences.usage_codes, issued.identifier) == [
        UsageFetchOutcome.FETCHED,
        UsageFetchOutcome.FETCHED,
        UsageFetchOutcome.USED_UP,
    ]


def test_an_expired_code_is_refused_and_logged(
    licences: LicenceRegistry, guide_cards: GuideCards, licence_node: Node
) -> None:
    clock = MovableClock()
    codes = UsageCodes(sessions=licence_node.sessions, clock=clock)
    issued = guide_cards.issue()
    code, expires_at = codes.create_usage_code(
        issued.identifier, actor="holder", purpose="租房", ttl=dt.timedelta(minutes=2)
    )
    clock.advance(dt.timedelta(minutes=2))
    assert clock() >= expires_at
    with pytest.raises(UsageCodeRejectedError, match="expired") as refused:
        codes.fetch_by_usage_code(code, requester="landlord")
    assert refused.value.outcome is UsageFetchOutcome.EXPIRED
    assert outcomes(codes, issued.identifier) == [UsageFetchOutcome.EXPIRED]


def test_an_unknown_code_is_logged_without_the_code(
    licences: LicenceRegistry, licence_node: Node
) -> None:
    with pytest.raises(UsageCodeRejectedError, match="no licence") as refused:
        licences.fetch_by_usage_code("ZZZZZ-ZZZZZ", requester="guesser")
    assert refused.value.category is ErrorCategory.NOT_FOUND
    with pytest.raises(UsageCodeRejectedError):
        licences.fetch_by_usage_code("not a code at all", requester="guesser")
    with licence_node.sessions() as session:
        last = session.scalars(
            select(UsageFetchRow).order_by(UsageFetchRow.id.desc()).limit(2)
        ).all()
    assert [(r.usage_code_id, r.outcome, r.requester) for r in last] == [
        (None, UsageFetchOutcome.UNKNOWN_CODE, "guesser")
    ] * 2
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    assert licences.usage_codes.unmatched_fetches(since=since) >= 2


def test_a_licence_no_longer_valid_is_not_handed_out(
    licences: LicenceRegistry, guide_cards: GuideCards
) -> None:
    issued = guide_cards.issue()
    code, _ = licences.create_usage_code(issued.identifier, actor="h", purpose="p")
    licences.suspend(issued.identifier, actor="staff")
    with pytest.raises(UsageCodeRejectedError, match="no longer valid") as refused:
        licences.fetch_by_usage_code(code, requester="r")
    assert refused.value.outcome is UsageFetchOutcome.LICENCE_NOT_VALID
    with pytest.raises(LicenceStateError, match="suspended"):
        licences.create_usage_code(issued.identifier, actor="h", purpose="p")
    licences.reinstate(issued.identifier, actor="staff")
    assert licences.fetch_by_usage_code(code, requester="r") == issued.pdf


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl": dt.timedelta(seconds=30)}, "1 minute to 7 days"),
        ({"ttl": dt.timedelta(days=8)}, "1 minute to 7 days"),
        ({"uses": 0}, f"1 to {MAX_USES} uses"),
        ({"uses": MAX_USES + 1}, f"1 to {MAX_USES} uses"),
        ({"uses": True}, f"1 to {MAX_USES} uses"),
        ({"purpose": "  "}, "say what the code is for"),
        ({"purpose": "用" * 201}, "say what the code is for"),
    ],
)
def test_bounds_on_making_a_code(
    licences: LicenceRegistry, guide_cards: GuideCards, options, message
) -> None:
    issued = guide_cards.issue()
    arguments = {"actor": "h", "purpose": "p", **options}
    with pytest.raises(UsageCodeError, match=message):
        licences.create_usage_code(issued.identifier, **arguments)


def test_a_one_use_code_is_used_once_under_concurrency(
    licences: LicenceRegistry, guide_cards: GuideCards
) -> None:
    issued = guide_cards.issue()
    code, _ = licences.create_usage_code(issued.identifier, actor="h")
    results: list[str] = []
    barrier = threading.Barrier(4)

    def fetch() -> None:
        barrier.wait()
        try:
            licences.fetch_by_usage_code(code, requester="racer")
            results.append("fetched")
        except UsageCodeRejectedError as exc:
            results.append(exc.outcome.value)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["fetched"] + ["used-up"] * 3
    log = licences.usage_codes.usage_log(issued.identifier)
    assert len(log) == 4
    assert {entry.purpose for entry in log} == {DEFAULT_PURPOSE}
